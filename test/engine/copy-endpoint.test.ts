/**
 * The copy engine (engine/dr/copy.ts) through the real adapters against the
 * local endpoint, on a test clock: what a user sees only across runs (a copy
 * waited for again after a wait timeout, not started twice) or after a change
 * made behind snapline's back (an earlier copy deleted in the destination).
 */
import { DeleteSnapshotCommand, DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_COPY_MINUTES } from '../../src/emulator/ec2/copy-snapshot.js';
import { backup } from '../../src/engine/backup/backup.js';
import { COPY_OF_TAG, COPY_SOURCE_REGION_TAG, copySnapshot, type CopyOptions } from '../../src/engine/dr/copy.js';
import { prune } from '../../src/engine/lineage/prune.js';
import { ErrorCodes } from '../../src/errors.js';
import { copyDestinations, openCopyDestination } from '../../src/session.js';
import { clientsFor, TestClock } from '../emulator/helpers.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { startLocalEndpoint, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';

const BLOCK = 524_288;
const REGION = 'eu-west-1';
const clock = new TestClock(Date.now());
let local: LocalEndpoint;
let west: ReturnType<typeof clientsFor>;

beforeAll(async () => {
  local = await startLocalEndpoint('snapline-copy-engine-', { emulator: { now: clock.now } });
  west = clientsFor(local.emulator.url, 2, REGION);
});
afterAll(async () => {
  for (const client of Object.values(west)) client.destroy();
  await local?.close();
});

async function copyOf(snapshotId: string, options: Partial<CopyOptions> = {}) {
  const { session } = local;
  const destination = await openCopyDestination(session, { region: REGION });
  try {
    return await copySnapshot(
      { index: session.index, catalog: session.catalog, sourceRegion: session.connection.settings.region, destination },
      { snapshotId, pollMs: { first: 5, max: 20 }, onProgress: copyTimePasses, ...options },
    );
  } finally {
    await destination.close();
  }
}

/**
 * A copy of the snapshot in REGION, tagged as snapline tags its copies, that
 * the index does not record: made by the destination's own CopySnapshot, as
 * a run that died before recording it (or a retried CopySnapshot) leaves one.
 */
async function unrecordedCopyOf(endpoint: LocalEndpoint, snapshotId: string, input: { encrypted?: boolean } = {}): Promise<string> {
  const { session } = endpoint;
  const destination = await openCopyDestination(session, { region: REGION });
  try {
    const sourceRegion = session.connection.settings.region;
    return await destination.copier.copySnapshot({ sourceRegion, sourceSnapshotId: snapshotId, ...input, tags: { [COPY_OF_TAG]: snapshotId, [COPY_SOURCE_REGION_TAG]: sourceRegion } });
  } finally {
    await destination.close();
  }
}

/** CopySnapshot requests the endpoint answered so far. */
function copySnapshotCalls(endpoint: LocalEndpoint): number {
  return endpoint.emulator.stats().operations.CopySnapshot?.requests ?? 0;
}

/** The copy's time on AWS's clock goes by (called at each look at a pending copy, unless a test says otherwise). */
function copyTimePasses(): void {
  clock.advance(DEFAULT_COPY_MINUTES * 60_000 + 1);
}

async function backupOf(image: string, volume: string): Promise<string> {
  const result = await backup(local.session, { source: image, volume });
  return result.snapshotId!;
}

describe('copySnapshot', () => {
  it('past --wait-timeout the copy stays recorded pending; the next copy of the snapshot waits for it instead of starting another', async () => {
    const image = local.pathFor('a.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const snapshotId = await backupOf(image, 'a');
    const timedOut = await rejection(copyOf(snapshotId, { waitTimeoutMs: 30, onProgress: () => undefined }));
    expect(timedOut.code).toBe(ErrorCodes.TIMEOUT);
    const [pending] = local.session.index.copies.ofSnapshot(snapshotId);
    expect(pending).toMatchObject({ state: 'pending', region: REGION });

    const done = await copyOf(snapshotId);
    expect(done).toMatchObject({ copySnapshotId: pending!.copySnapshotId, alreadyCopied: false, state: 'completed' });
    expect(local.session.index.copies.ofSnapshot(snapshotId)).toMatchObject([{ copySnapshotId: pending!.copySnapshotId, state: 'completed' }]);
  });

  it('an earlier copy deleted in the destination behind snapline\'s back: recorded deleted, the next copy is full, and its own snapshot is copied anew', async () => {
    const image = local.pathFor('b.img');
    writeBlocks(image, randomBlocks([0, 1]), 2 * BLOCK);
    const first = await backupOf(image, 'b');
    const firstCopy = await copyOf(first);
    await west.ec2.send(new DeleteSnapshotCommand({ SnapshotId: firstCopy.copySnapshotId }));

    writeBlocks(image, randomBlocks([1]));
    const second = await backupOf(image, 'b');
    expect(await copyOf(second)).toMatchObject({ incrementalOf: null });
    expect(local.session.index.copies.get(firstCopy.copySnapshotId)?.state).toBe('deleted');

    const again = await copyOf(first);
    expect(again.alreadyCopied).toBe(false);
    expect(again.copySnapshotId).not.toBe(firstCopy.copySnapshotId);
  });

  it('a copy in the destination that the index never recorded is adopted by the next copy: recorded, waited for and returned, no second CopySnapshot', async () => {
    const image = local.pathFor('e.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const snapshotId = await backupOf(image, 'e');
    const unrecorded = await unrecordedCopyOf(local, snapshotId);
    const copiesBefore = copySnapshotCalls(local);

    const done = await copyOf(snapshotId);
    expect(done).toMatchObject({ copySnapshotId: unrecorded, adopted: true, alreadyCopied: false, state: 'completed', region: REGION, incrementalOf: null });
    expect(copySnapshotCalls(local)).toBe(copiesBefore);
    expect(local.session.index.copies.ofSnapshot(snapshotId)).toMatchObject([{ copySnapshotId: unrecorded, state: 'completed', region: REGION, connection: null, encrypted: false }]);
    expect(await copyOf(snapshotId)).toMatchObject({ copySnapshotId: unrecorded, alreadyCopied: true, adopted: false });
  });

  it('an unrecorded copy that is not as asked (unencrypted, encryption asked) is recorded, and a copy as asked is made', async () => {
    const image = local.pathFor('f.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const snapshotId = await backupOf(image, 'f');
    const unrecorded = await unrecordedCopyOf(local, snapshotId);
    const copiesBefore = copySnapshotCalls(local);

    const done = await copyOf(snapshotId, { encrypted: true });
    expect(done).toMatchObject({ adopted: false, alreadyCopied: false, encrypted: true });
    expect(done.copySnapshotId).not.toBe(unrecorded);
    expect(copySnapshotCalls(local)).toBe(copiesBefore + 1);
    const recorded = new Map(local.session.index.copies.ofSnapshot(snapshotId).map((c) => [c.copySnapshotId, c.encrypted]));
    expect(recorded).toEqual(new Map([[unrecorded, false], [done.copySnapshotId, true]]));
    expect(local.session.index.copies.get(unrecorded)?.state).toBe('pending');
    // The encrypted copy answers for the snapshot copied encrypted again; the unencrypted one does not, and its end (it has come) is recorded.
    expect(await copyOf(snapshotId, { encrypted: true })).toMatchObject({ copySnapshotId: done.copySnapshotId, alreadyCopied: true });
    expect(local.session.index.copies.get(unrecorded)?.state).toBe('completed');
  });
});

// On a clock of its own: a clock moved by hand makes the SDK retry a refusal once as skewed.
describe('prune with copies', () => {
  let own: LocalEndpoint;
  let ownWest: ReturnType<typeof clientsFor>;
  beforeAll(async () => {
    own = await startLocalEndpoint('snapline-copy-prune-', { emulator: { timeScale: 1000 } });
    ownWest = clientsFor(own.emulator.url, 2, REGION);
  });
  afterAll(async () => {
    for (const client of Object.values(ownWest ?? {})) client.destroy();
    await own?.close();
  });

  async function backupHere(image: string, volume: string): Promise<string> {
    return (await backup(own.session, { source: image, volume })).snapshotId!;
  }

  async function copyHere(snapshotId: string) {
    const destination = await openCopyDestination(own.session, { region: REGION });
    try {
      return await copySnapshot({ index: own.session.index, catalog: own.session.catalog, sourceRegion: own.session.connection.settings.region, destination }, { snapshotId, pollMs: { first: 20, max: 100 } });
    } finally {
      await destination.close();
    }
  }

  async function pruneOldest(volume: string) {
    const { session } = own;
    const destinations = copyDestinations(session, {});
    try {
      return await prune({ index: session.index, catalog: session.catalog, destinations }, { keepLast: 1, volume });
    } finally {
      await destinations.close();
    }
  }

  it('a copy recorded pending that the destination no longer has (deleted there while in progress): the next copy records it deleted and copies anew; prune no longer keeps its source for it', async () => {
    const image = own.pathFor('gone.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const first = await backupHere(image, 'gone');
    writeBlocks(image, randomBlocks([0]));
    const second = await backupHere(image, 'gone');
    const goneCopy = (copySnapshotId: string, sourceSnapshotId: string) =>
      own.session.index.copies.record({ copySnapshotId, sourceSnapshotId, volume: 'gone', region: REGION, connection: null, encrypted: false, kmsKeyId: null, incrementalOf: null }, new Date(Date.now() - 3_600_000));
    goneCopy('snap-0aaaaaaaaaaaaaaa1', first);
    goneCopy('snap-0aaaaaaaaaaaaaaa2', second);

    const copy = await copyHere(second);
    expect(copy).toMatchObject({ state: 'completed', alreadyCopied: false });
    expect(copy.copySnapshotId).not.toBe('snap-0aaaaaaaaaaaaaaa2');
    expect(own.session.index.copies.get('snap-0aaaaaaaaaaaaaaa2')?.state).toBe('deleted');
    expect(await describedIn(ownWest, copy.copySnapshotId)).toBe(true);

    const pruned = await pruneOldest('gone');
    expect(pruned.deleted.map((d) => d.snapshotId)).toEqual([first]);
    expect(own.session.index.copies.get('snap-0aaaaaaaaaaaaaaa1')?.state).toBe('deleted');
  });

  it('the source refused (in use): it and its copy both stay, and the next prune deletes both', async () => {
    const image = own.pathFor('c.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const first = await backupHere(image, 'c');
    const copy = await copyHere(first);
    writeBlocks(image, randomBlocks([0]));
    await backupHere(image, 'c');

    own.emulator.setFaults({ snapshotsInUse: 1 });
    try {
      // The refusal is the source's own: it is asked first, its copies only once it is gone.
      expect(await rejection(pruneOldest('c'))).toMatchObject({ code: ErrorCodes.CONFLICT, message: expect.stringContaining(first) });
    } finally {
      own.emulator.setFaults({});
    }
    expect(own.session.index.copies.get(copy.copySnapshotId)?.state).toBe('completed');
    expect(own.session.index.lineage.getSnapshot(first)?.state).toBe('completed');
    expect(await own.session.catalog.describeSnapshots([first])).toHaveLength(1);
    expect(await describedIn(ownWest, copy.copySnapshotId)).toBe(true);

    const pruned = await pruneOldest('c');
    expect(pruned).toMatchObject({ deleted: [{ snapshotId: first }], deletedCopies: [{ copySnapshotId: copy.copySnapshotId }] });
    expect(own.session.index.lineage.getSnapshot(first)?.state).toBe('deleted');
    expect(await describedIn(ownWest, copy.copySnapshotId)).toBe(false);
  });

  it('copies the index does not record go with their source: a second copy of a recorded one (a retried CopySnapshot), and the only copy of a snapshot (a run that died)', async () => {
    const image = own.pathFor('g.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const first = await backupHere(image, 'g');
    const recorded = await copyHere(first);
    const retried = await unrecordedCopyOf(own, first);
    writeBlocks(image, randomBlocks([0]));
    const second = await backupHere(image, 'g');
    const died = await unrecordedCopyOf(own, second);
    writeBlocks(image, randomBlocks([0]));
    await backupHere(image, 'g');

    const pruned = await pruneOldest('g');
    expect(pruned.deleted.map((d) => d.snapshotId)).toEqual([first, second]);
    expect(new Set(pruned.deletedCopies.map((c) => c.copySnapshotId))).toEqual(new Set([recorded.copySnapshotId, retried, died]));
    for (const copySnapshotId of [recorded.copySnapshotId, retried, died]) {
      expect(own.session.index.copies.get(copySnapshotId)?.state).toBe('deleted');
      expect(await describedIn(ownWest, copySnapshotId)).toBe(false);
    }
  });

  it('a copy refused after its source is gone: the index records the source deleted and the copy deleting, and the next prune deletes the copy whatever its policy', async () => {
    const image = own.pathFor('d.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const first = await backupHere(image, 'd');
    const copy = await copyHere(first);
    writeBlocks(image, randomBlocks([0]));
    await backupHere(image, 'd');

    const { session } = own;
    const refusingCopies = {
      sourceRegion: session.connection.settings.region,
      catalogOf: () => Promise.reject(new Error('the destination Region cannot be reached')),
    };
    await expect(prune({ index: session.index, catalog: session.catalog, destinations: refusingCopies }, { keepLast: 1, volume: 'd' })).rejects.toThrow('cannot be reached');
    expect(await session.catalog.describeSnapshots([first]).catch(() => [])).toHaveLength(0);
    expect(session.index.lineage.getSnapshot(first)?.state).toBe('deleted');
    expect(session.index.copies.get(copy.copySnapshotId)?.state).toBe('deleting');
    expect(await describedIn(ownWest, copy.copySnapshotId)).toBe(true);

    // A policy that keeps every snapshot left still finishes the copy the last prune decided to delete.
    const destinations = copyDestinations(session, {});
    let pruned: Awaited<ReturnType<typeof prune>>;
    try {
      pruned = await prune({ index: session.index, catalog: session.catalog, destinations }, { keepLast: 10, volume: 'd' });
    } finally {
      await destinations.close();
    }
    expect(pruned).toMatchObject({ deleted: [], deletedCopies: [{ snapshotId: first, copySnapshotId: copy.copySnapshotId }] });
    expect(session.index.copies.get(copy.copySnapshotId)?.state).toBe('deleted');
    expect(await describedIn(ownWest, copy.copySnapshotId)).toBe(false);
  });

  it('a prune that could not reach the destination: the next one, finishing the copy left deleting, finds and deletes the unrecorded copy of the same source', async () => {
    const image = own.pathFor('h.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const first = await backupHere(image, 'h');
    const copy = await copyHere(first);
    const retried = await unrecordedCopyOf(own, first);
    writeBlocks(image, randomBlocks([0]));
    await backupHere(image, 'h');

    const { session } = own;
    const unreachable = { sourceRegion: session.connection.settings.region, catalogOf: () => Promise.reject(new Error('the destination Region cannot be reached')) };
    await expect(prune({ index: session.index, catalog: session.catalog, destinations: unreachable }, { keepLast: 1, volume: 'h' })).rejects.toThrow('cannot be reached');
    expect(session.index.copies.get(retried)).toBeUndefined();

    const destinations = copyDestinations(session, {});
    let pruned: Awaited<ReturnType<typeof prune>>;
    try {
      pruned = await prune({ index: session.index, catalog: session.catalog, destinations }, { keepLast: 10, volume: 'h' });
    } finally {
      await destinations.close();
    }
    expect(new Set(pruned.deletedCopies.map((c) => c.copySnapshotId))).toEqual(new Set([copy.copySnapshotId, retried]));
    expect(session.index.copies.get(retried)?.state).toBe('deleted');
    expect(await describedIn(ownWest, retried)).toBe(false);
  });
});

async function describedIn(clients: ReturnType<typeof clientsFor>, snapshotId: string): Promise<boolean> {
  try {
    const found = await clients.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
    return (found.Snapshots ?? []).length > 0;
  } catch (err) {
    if ((err as { name?: string }).name === 'InvalidSnapshot.NotFound') return false;
    throw err;
  }
}
