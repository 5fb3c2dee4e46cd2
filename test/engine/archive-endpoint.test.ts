/**
 * The archive tier end to end on the local endpoint over loopback HTTP: the
 * real S3 and Glacier adapters through the SDK, the session's stores, a
 * SQLite index in a temp dir, the real worker pool, real image files.
 * Backup, archive, restore request, wait, rehydrate (to a snapshot, then a
 * restore of it; and straight to a file), bytes equal.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateVaultCommand } from '@aws-sdk/client-glacier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients } from '../../src/aws/clients.js';
import { GlacierArchiveStore } from '../../src/aws/glacier-archive.js';
import { S3ArchiveStore } from '../../src/aws/s3-archive.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { ArchiveStore, ArchiveTarget, SnapshotWriter } from '../../src/core/ports.js';
import type { RunningEmulator } from '../../src/emulator/index.js';
import { archiveStatus, deleteArchive, restoreArchive } from '../../src/engine/archive/jobs.js';
import type { ArchivePlaces } from '../../src/engine/archive/places.js';
import { createArchive } from '../../src/engine/archive/archive.js';
import { backup } from '../../src/engine/backup/backup.js';
import { rehydrate } from '../../src/engine/archive/rehydrate.js';
import { restore } from '../../src/engine/restore/restore.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import type { Session } from '../../src/session.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { startLocalEndpoint, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

const MIB = 1024 * 1024;
const BUCKET = 'snapline-archive';
const VAULT = 'snapline-vault';
const DELAYS = { Expedited: 0, Standard: 20, Bulk: 40 };

let local: LocalEndpoint;
let emulator: RunningEmulator;
let session: Session;
let clients: AwsClients;
const pathFor = (name: string) => local.pathFor(name);

beforeAll(async () => {
  local = await startLocalEndpoint('snapline-archive-endpoint-', {
    emulator: { restoreDelayMs: DELAYS, jobDelayMs: DELAYS },
    session: { archive: { bucket: BUCKET, vault: VAULT } },
  });
  ({ emulator, session } = local);
  clients = new AwsClients({ name: 'test', region: 'us-east-1', endpointUrl: emulator.url, credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  await clients.s3().send(new CreateBucketCommand({ Bucket: BUCKET }));
  await clients.glacier().send(new CreateVaultCommand({ accountId: '-', vaultName: VAULT }));
});

afterAll(async () => {
  clients?.destroy();
  await local?.close();
});

async function snapshotOf(image: string, volume: string): Promise<string> {
  const result = await backup(session, { source: image, volume });
  return result.snapshotId!;
}

async function restoreAndWait(archive: string, tier: 'Bulk' | 'Standard' | 'Expedited' = 'Standard'): Promise<void> {
  await restoreArchive(session, { archive, tier });
  await archiveStatus(session, { archive, wait: true, pollMs: { first: 5, max: 50 } });
}

/** A store that does what `real` does, but for the methods given. */
function delegating(real: ArchiveStore, overrides: Partial<Pick<ArchiveStore, 'putPart' | 'getRange'>>): ArchiveStore {
  return {
    target: real.target,
    location: real.location,
    partSizeFor: (maxBytes) => real.partSizeFor(maxBytes),
    putObject: (...args) => real.putObject(...args),
    startUpload: (...args) => real.startUpload(...args),
    putPart: (...args) => real.putPart(...args),
    listParts: (...args) => real.listParts(...args),
    completeUpload: (...args) => real.completeUpload(...args),
    abortUpload: (...args) => real.abortUpload(...args),
    getRange: (...args) => real.getRange(...args),
    requestRestore: (...args) => real.requestRestore(...args),
    restoreStatus: (...args) => real.restoreStatus(...args),
    inventory: (...args) => real.inventory(...args),
    deleteObject: (...args) => real.deleteObject(...args),
    locationExists: () => real.locationExists(),
    ...overrides,
  };
}

const requests = (operation: string) => emulator.stats().operations[operation]?.requests ?? 0;

describe.each(['s3', 'glacier'] as const)('round trip through %s', (target) => {
  it('backup, archive, restore job, wait, rehydrate to a snapshot and restore it, and to a file: bytes equal', async () => {
    const image = pathFor('round.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 7, 8, 20, 39, 40]), 40 * BLOCK_SIZE + 1234);
    const volume = `round-${target}`;
    const snapshotId = await snapshotOf(image, volume);

    const created = await createArchive(session, { snapshotId, to: target, segmentBlocks: 4 });
    expect(created).toMatchObject({ target, location: target === 's3' ? BUCKET : VAULT, volume, segments: 2, blocks: 8 });

    const early = await rejection(rehydrate(session, { archive: created.archiveId, toFile: pathFor('early.img') }));
    expect(early.code).toBe(ErrorCodes.BAD_STATE);
    expect(early.message).toMatch(/not readable yet/);

    await restoreAndWait(created.archiveId, target === 's3' ? 'Standard' : 'Expedited');
    const back = await rehydrate(session, { archive: created.archiveId, toSnapshot: true });
    expect(back.snapshotId).toMatch(/^snap-/);
    const restored = pathFor('restored.img');
    await restore(session, { snapshotId: back.snapshotId!, target: restored });
    await expectSameBytes(restored, image);

    const direct = pathFor('direct.img');
    const toFile = await rehydrate(session, { archive: created.archiveId, toFile: direct });
    expect(toFile.ranges).toBeGreaterThan(0);
    await expectSameBytes(direct, image);
  });

  it('an incremental chain of three snapshots rehydrates equal to the newest', async () => {
    const image = pathFor('chain.img');
    const volume = `chain-${target}`;
    writeBlocks(image, randomBlocks([0, 1, 2, 3, 10, 11]), 24 * BLOCK_SIZE);
    const s1 = await snapshotOf(image, volume);
    writeBlocks(image, randomBlocks([1, 15]));
    const s2 = await snapshotOf(image, volume);
    writeBlocks(image, randomBlocks([2, 23]));
    const s3 = await snapshotOf(image, volume);
    const a1 = await createArchive(session, { snapshotId: s1, to: target, segmentBlocks: 3 });
    const a2 = await createArchive(session, { snapshotId: s2, to: target, incremental: true, segmentBlocks: 3 });
    const a3 = await createArchive(session, { snapshotId: s3, to: target, incremental: true, segmentBlocks: 3 });
    expect([a2.blocks, a3.blocks]).toEqual([2, 2]);
    await restoreAndWait(a3.archiveId, target === 's3' ? 'Bulk' : 'Expedited');
    const out = pathFor('chain-back.img');
    const result = await rehydrate(session, { archive: a3.archiveId, toFile: out });
    expect(result.chain).toEqual([a1.archiveId, a2.archiveId, a3.archiveId]);
    await expectSameBytes(out, image);
  });
});

describe('resume of an interrupted multipart upload on the endpoint', () => {
  /** The session's places, with stores whose parts are small and whose putPart can be made to fail after n parts. */
  function placesFailingAfter(target: ArchiveTarget, parts: number): { places: ArchivePlaces; store: ArchiveStore } {
    const real = target === 's3' ? new S3ArchiveStore(clients.s3(), BUCKET, { minPartSize: 8 * MIB }) : new GlacierArchiveStore(clients.glacier(), VAULT, { minPartSize: MIB });
    let left = parts;
    const store = delegating(real, {
      putPart: (...args) => {
        if (left-- <= 0) return Promise.reject(new SnaplineError(ErrorCodes.INTERRUPTED, 'killed mid-upload (test)'));
        return real.putPart(...args);
      },
    });
    return { places: { ...session.archives, store: () => store }, store };
  }

  it.each([
    ['s3', 'UploadPart', 8 * MIB],
    ['glacier', 'glacier:UploadMultipartPart', MIB],
  ] as const)('%s: the rerun sends only the parts the first run did not', async (target, operation, partSize) => {
    const image = pathFor('big.img');
    const blocks = target === 's3' ? 48 : 12;
    writeBlocks(image, randomBlocks(Array.from({ length: blocks }, (_, i) => i)), blocks * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, `resume-${target}`);
    const expectedParts = Math.ceil((blocks * BLOCK_SIZE + blocks * 48 + 64) / partSize);

    const before = requests(operation);
    const failing = placesFailingAfter(target, 3);
    const first = await rejection(createArchive({ ...session, archives: failing.places }, { snapshotId, to: target, segmentBlocks: 1024, partsInFlight: 1 }));
    expect(first.code).toBe(ErrorCodes.INTERRUPTED);
    expect(requests(operation) - before).toBe(3);

    const whole = placesFailingAfter(target, Infinity);
    const second = await createArchive({ ...session, archives: whole.places }, { snapshotId, to: target, segmentBlocks: 1024 });
    expect(second.resumed).toBe(true);
    expect(requests(operation) - before).toBe(expectedParts);

    await restoreAndWait(second.archiveId, target === 's3' ? 'Bulk' : 'Expedited');
    const out = pathFor('resumed.img');
    await rehydrate({ ...session, archives: whole.places }, { archive: second.archiveId, toFile: out });
    await expectSameBytes(out, image);
  });
});

describe('restores asked again', () => {
  it('S3: a restored copy that would expire before the days asked for is kept that long (RestoreObject again); one that lasts longer is left alone', async () => {
    const image = pathFor('extend.img');
    writeBlocks(image, randomBlocks([0, 5]), 6 * BLOCK_SIZE);
    const created = await createArchive(session, { snapshotId: await snapshotOf(image, 'extend'), to: 's3', storageClass: 'GLACIER' });
    await restoreArchive(session, { archive: created.archiveId, tier: 'Expedited', days: 1 });
    await archiveStatus(session, { archive: created.archiveId, wait: true, pollMs: { first: 5, max: 50 } });
    const expiries = async () => (await archiveStatus(session, { archive: created.archiveId }))[0]!.objects.map((o) => Date.parse(o.expiresAt!));
    const DAY = 86_400_000;
    expect(Math.max(...(await expiries()))).toBeLessThanOrEqual(Date.now() + 2 * DAY);

    const longer = await restoreArchive(session, { archive: created.archiveId, tier: 'Expedited', days: 30 });
    expect(longer.objects.length).toBeGreaterThan(1);
    expect(longer.objects.every((o) => o.requested && o.state === 'available')).toBe(true);
    const extended = await expiries();
    for (const expiry of extended) expect(expiry).toBeGreaterThanOrEqual(Date.now() + 29 * DAY);

    const shorter = await restoreArchive(session, { archive: created.archiveId, days: 2 });
    expect(shorter.objects.every((o) => !o.requested && o.state === 'available')).toBe(true);
    expect(await expiries()).toEqual(extended);
  });
});

describe('failures the endpoint injects or refuses', () => {
  it('a failed Glacier job (jobFailureRate) fails the wait; asking again succeeds', async () => {
    const image = pathFor('job.img');
    writeBlocks(image, randomBlocks([0, 3]), 4 * BLOCK_SIZE);
    const created = await createArchive(session, { snapshotId: await snapshotOf(image, 'job'), to: 'glacier' });
    emulator.setFaults({ jobFailureRate: 1 });
    try {
      await restoreArchive(session, { archive: created.archiveId, tier: 'Expedited' });
      const error = await rejection(archiveStatus(session, { archive: created.archiveId, wait: true, pollMs: { first: 5, max: 50 } }));
      expect(error.code).toBe(ErrorCodes.BAD_STATE);
      expect(error.message).toMatch(/failed/);
    } finally {
      emulator.setFaults({});
    }
    await restoreAndWait(created.archiveId, 'Expedited');
    const out = pathFor('job-back.img');
    await rehydrate(session, { archive: created.archiveId, toFile: out });
    await expectSameBytes(out, image);
  });

  it('a corrupted ranged download is detected', async () => {
    const image = pathFor('corrupt.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3]), 8 * BLOCK_SIZE);
    const created = await createArchive(session, { snapshotId: await snapshotOf(image, 'corrupt'), to: 'glacier' });
    await restoreAndWait(created.archiveId, 'Expedited');
    const real = session.archives.store('glacier');
    const flipping = delegating(real, {
      getRange: async (...args) => {
        const range = await real.getRange(...args);
        if (args[1] === 0 && args[2] !== undefined) range.data[100]! ^= 1;
        return range;
      },
    });
    const error = await rejection(rehydrate({ ...session, archives: { ...session.archives, store: () => flipping } }, { archive: created.archiveId, toFile: pathFor('corrupt-back.img') }));
    expect(error.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    expect(error.message).toMatch(/tree hash/);
  });

  it('a rehydration to a snapshot that fails or is interrupted midway deletes its unfinished snapshot', async () => {
    const image = pathFor('unfinished.img');
    const blocks = Array.from({ length: 64 }, (_, i) => i);
    writeBlocks(image, randomBlocks(blocks), blocks.length * BLOCK_SIZE);
    const created = await createArchive(session, { snapshotId: await snapshotOf(image, 'unfinished'), to: 'glacier', segmentBlocks: 4 });
    await restoreAndWait(created.archiveId, 'Expedited');
    const real = session.archives.store('glacier');
    const controller = new AbortController();
    let puts = 0;
    // The first read after a block of the new snapshot was written fails (or is interrupted).
    const failing = (fail: () => void) =>
      delegating(real, {
        getRange: async (...args) => {
          if (requests('PutSnapshotBlock') > puts) fail();
          return real.getRange(...args);
        },
      });
    const runs = [
      { expected: ErrorCodes.CHECKSUM_MISMATCH, store: failing(() => { throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, 'a segment that does not match its tree hash'); }), signal: undefined },
      { expected: ErrorCodes.INTERRUPTED, store: failing(() => controller.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test'))), signal: controller.signal },
    ];
    for (const { expected, store, signal } of runs) {
      puts = requests('PutSnapshotBlock');
      const error = await rejection(rehydrate({ ...session, archives: { ...session.archives, store: () => store } }, { archive: created.archiveId, toSnapshot: true, ...(signal ? { signal } : {}) }));
      expect(error.code).toBe(expected);
      expect(requests('PutSnapshotBlock')).toBeGreaterThan(puts);
      expect(error.details).toMatchObject({ unfinishedSnapshot: 'deleted' });
      const snapshotId = error.details!.snapshotId as string;
      expect(error.hint).toContain(`the unfinished snapshot ${snapshotId} was deleted`);
      expect(await session.catalog.describeSnapshots([snapshotId])).toEqual([]);
    }
  });

  it('a rehydration whose CompleteSnapshot was taken but its answer lost ends with the completed snapshot, not a deletion', async () => {
    const image = pathFor('answer-lost.img');
    writeBlocks(image, randomBlocks([0, 2, 5]), 6 * BLOCK_SIZE);
    const created = await createArchive(session, { snapshotId: await snapshotOf(image, 'answer-lost'), to: 'glacier' });
    await restoreAndWait(created.archiveId, 'Expedited');
    const real = session.writer;
    const losing: SnapshotWriter = {
      startSnapshot: (...args) => real.startSnapshot(...args),
      putBlock: (...args) => real.putBlock(...args),
      completeSnapshot: async (...args) => {
        await real.completeSnapshot(...args);
        throw new SnaplineError(ErrorCodes.UNAVAILABLE, 'the connection was reset before the answer');
      },
    };
    const back = await rehydrate({ ...session, writer: losing }, { archive: created.archiveId, toSnapshot: true });
    const [remote] = await session.catalog.describeSnapshots([back.snapshotId!]);
    expect(remote).toMatchObject({ state: 'completed' });
    const restored = pathFor('answer-lost-back.img');
    await restore(session, { snapshotId: back.snapshotId!, target: restored });
    await expectSameBytes(restored, image);
  });

  it('a vault that does not exist is named', async () => {
    const image = pathFor('novault.img');
    writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'novault');
    const places: ArchivePlaces = { ...session.archives, store: (target) => (target === 'glacier' ? new GlacierArchiveStore(clients.glacier(), 'no-such-vault') : session.archives.store(target)) };
    const error = await rejection(createArchive({ ...session, archives: places }, { snapshotId, to: 'glacier' }));
    expect(error.code).toBe(ErrorCodes.NOT_FOUND);
    expect(error.message).toMatch(/no-such-vault/);
  });
});

describe('the bucket or vault is checked before anything is read', () => {
  /** The session's places with S3 archives going to `bucket` instead. */
  const placesWithBucket = (bucket: string): ArchivePlaces => ({ ...session.archives, store: (target) => (target === 's3' ? session.archiveStore('s3', bucket) : session.archives.store(target)) });

  it('a missing bucket is NOT_FOUND before a block is read, with --create-bucket as hint; createBucket makes it and archives', async () => {
    const image = pathFor('nobucket.img');
    writeBlocks(image, randomBlocks([0, 3]), 4 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'nobucket');
    const places = placesWithBucket('made-by-snapline');
    const reads = () => requests('ListSnapshotBlocks') + requests('GetSnapshotBlock');
    const before = reads();
    const refused = await rejection(createArchive({ ...session, archives: places }, { snapshotId, to: 's3' }));
    expect(refused).toMatchObject({ code: ErrorCodes.NOT_FOUND, message: 'bucket made-by-snapline does not exist' });
    expect(refused.hint).toMatch(/--create-bucket/);
    expect(reads()).toBe(before);
    expect(session.index.archives.list().some((a) => a.snapshotId === snapshotId)).toBe(false);

    const created = await createArchive({ ...session, archives: places }, { snapshotId, to: 's3', createBucket: true });
    expect(created).toMatchObject({ location: 'made-by-snapline', locationCreated: true, blocks: 2 });
    expect(await places.store('s3').locationExists()).toBe(true);
  });

  it('createBucket does not apply to a vault', async () => {
    const image = pathFor('vaultcreate.img');
    writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'vaultcreate');
    const error = await rejection(createArchive(session, { snapshotId, to: 'glacier', createBucket: true }));
    expect(error).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringMatching(/^createBucket applies to S3/), details: { option: 'createBucket' } });
  });
});

describe.each([
  ['s3', 'DeleteObject'],
  ['glacier', 'glacier:DeleteArchive'],
] as const)('deleting an archive from %s', (target, deleteOperation) => {
  it('refused while an incremental one builds on it; a dry run deletes nothing; then its objects and records go, and the snapshot can be archived again', async () => {
    const image = pathFor('delete.img');
    const volume = `delete-${target}`;
    writeBlocks(image, randomBlocks([0, 1, 5]), 8 * BLOCK_SIZE);
    const s1 = await snapshotOf(image, volume);
    writeBlocks(image, randomBlocks([2]));
    const s2 = await snapshotOf(image, volume);
    const full = await createArchive(session, { snapshotId: s1, to: target, segmentBlocks: 2 });
    const child = await createArchive(session, { snapshotId: s2, to: target, incremental: true });

    const refused = await rejection(deleteArchive(session, { archive: full.archiveId }));
    expect(refused).toMatchObject({ code: ErrorCodes.CONFLICT, message: `archive ${full.archiveId} cannot be deleted: ${child.archiveId} builds on it` });
    expect(refused.hint).toContain(`\`snapline archive delete ${child.archiveId}\``);

    const deletesBefore = requests(deleteOperation);
    const dry = await deleteArchive(session, { archive: child.archiveId, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, archiveId: child.archiveId, state: 'archived', objects: 2, uploads: 0 });
    expect(requests(deleteOperation)).toBe(deletesBefore);
    expect(session.index.archives.get(child.archiveId)?.state).toBe('archived');

    // By its snapshot's id, as the CLI allows.
    expect(await deleteArchive(session, { archive: s2 })).toMatchObject({ dryRun: false, archiveId: child.archiveId, objects: 2 });
    const objects = full.segments + 1;
    expect(await deleteArchive(session, { archive: full.archiveId })).toMatchObject({ archiveId: full.archiveId, objects });
    expect(requests(deleteOperation) - deletesBefore).toBe(2 + objects);
    expect(session.index.archives.get(full.archiveId)).toMatchObject({ state: 'deleted' });
    expect(session.index.archives.objects(full.archiveId)).toEqual([]);
    if (target === 's3') {
      const left = await session.archives.store('s3').inventory({ prefix: `${volume}/`, start: true });
      expect(left).toMatchObject({ state: 'ready', objects: [] });
    }
    expect(await rejection(deleteArchive(session, { archive: full.archiveId }))).toMatchObject({ code: ErrorCodes.NOT_FOUND, message: expect.stringMatching(/is deleted already/) });

    const again = await createArchive(session, { snapshotId: s1, to: target });
    expect(again.archiveId).not.toBe(full.archiveId);
  });
});

describe('deleting an unfinished archive', () => {
  it('aborts its multipart upload under way and deletes what it stored', async () => {
    const image = pathFor('unfinished.img');
    writeBlocks(image, randomBlocks(Array.from({ length: 40 }, (_, i) => i)), 40 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'unfinished-archive');
    const real: ArchiveStore = new S3ArchiveStore(clients.s3(), BUCKET, { minPartSize: 8 * MIB });
    let parts = 0;
    const failing = delegating(real, {
      putPart: (...args) => (parts++ < 1 ? real.putPart(...args) : Promise.reject(new SnaplineError(ErrorCodes.INTERRUPTED, 'killed mid-upload (test)'))),
    });
    await rejection(createArchive({ ...session, archives: { ...session.archives, store: () => failing } }, { snapshotId, to: 's3', segmentBlocks: 20, partsInFlight: 1 }));
    const record = session.index.archives.list().find((a) => a.snapshotId === snapshotId)!;
    expect(record.state).toBe('uploading');
    const stored = session.index.archives.objects(record.archiveId).length;

    const aborts = requests('AbortMultipartUpload');
    const result = await deleteArchive(session, { archive: record.archiveId });
    expect(result).toMatchObject({ state: 'uploading', objects: stored, uploads: 1 });
    expect(requests('AbortMultipartUpload') - aborts).toBe(1);
    expect(session.index.archives.get(record.archiveId)?.state).toBe('deleted');
  });
});
