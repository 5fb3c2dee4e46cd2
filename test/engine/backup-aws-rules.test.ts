/**
 * The backup engine on AWS's real rules, against the strict local endpoint
 * through the real adapters (sessions, SDK, HTTP on loopback), a SQLite
 * index, the hash pool and image files: encrypted lineages, the snapshot
 * Timeout on a scaled clock, CompleteSnapshot answers that are lost, EC2
 * lagging behind, and a ClientToken of every run's own.
 */
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { DescribeSnapshotsCommand, DisableEbsEncryptionByDefaultCommand, EnableEbsEncryptionByDefaultCommand } from '@aws-sdk/client-ec2';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import { type EmulatorOptions } from '../../src/emulator/index.js';
import { backup, defaultVolumeName, type BackupDeps, type BackupOptions } from '../../src/engine/backup/backup.js';
import { createArchive } from '../../src/engine/archive/archive.js';
import { rehydrate } from '../../src/engine/archive/rehydrate.js';
import type { SettleWait } from '../../src/engine/blocks/committer.js';
import { copySnapshot, deleteCopies } from '../../src/engine/dr/copy.js';
import { restore } from '../../src/engine/restore/restore.js';
import { verify } from '../../src/engine/restore/verify.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { HashPool } from '../../src/hashing/index.js';
import { openCopyDestination, type Session, type SessionOptions } from '../../src/session.js';
import { clientsFor } from '../emulator/helpers.js';
import { overwriteBlocks, writeImage } from '../support/images.js';
import { startLocalEndpoint, withLocalSession, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

/** A crash of the process, as a test writer throws it after a call went out. */
const crash = () => new SnaplineError(ErrorCodes.INTERRUPTED, 'the process died (test)');

/** The session's backup parts, with some replaced. */
function depsOf(session: Session, replaced: Partial<BackupDeps> = {}): BackupDeps {
  return { index: session.index, writer: session.writer, reader: session.reader, catalog: session.catalog, hashPool: session.hashPool, slabs: session.slabs, ...replaced };
}

/** The session's writer, but `call` of it goes out and then the process "dies" before the answer is used. */
function dyingAfter(writer: SnapshotWriter, call: 'startSnapshot' | 'completeSnapshot', seen: string[] = []): SnapshotWriter {
  return {
    async startSnapshot(input) {
      const started = await writer.startSnapshot(input);
      seen.push(started.snapshotId);
      if (call === 'startSnapshot') throw crash();
      return started;
    },
    putBlock: (...args) => writer.putBlock(...args),
    async completeSnapshot(...args) {
      await writer.completeSnapshot(...args);
      throw crash();
    },
  };
}

/** A hash pool whose first read at or past byte `at` waits `ms` first: a scan held up, as by a slow or stalled source. */
class HeldHashPool extends HashPool {
  #held = false;

  constructor(
    private readonly at: number,
    private readonly ms: number,
  ) {
    super({ threads: 1 });
  }

  override async readAndHashBlocks(...args: Parameters<HashPool['readAndHashBlocks']>): ReturnType<HashPool['readAndHashBlocks']> {
    const [, position] = args;
    if (!this.#held && position >= this.at) {
      this.#held = true;
      await sleep(this.ms);
    }
    return super.readAndHashBlocks(...args);
  }
}

/** An endpoint of its own (options), a session on a fresh index for each `run`, and images in its folder. */
class World {
  local!: LocalEndpoint;

  async open(prefix: string, emulator: Omit<EmulatorOptions, 'dataDir'> = {}, session: Partial<SessionOptions> = {}): Promise<this> {
    this.local = await startLocalEndpoint(prefix, { emulator: { log: () => undefined, ...emulator }, session });
    return this;
  }

  get session(): Session {
    return this.local.session;
  }

  /** An image of `blocks` pseudo-random blocks named `name`; its path and bytes. */
  image(name: string, blocks: number): { path: string; bytes: Buffer } {
    const path = this.local.pathFor(`${name}.img`);
    return { path, bytes: writeImage(path, { label: path, blocks }) };
  }

  /** Runs `fn` with a session on its own fresh index. */
  withFreshIndex<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    return withLocalSession(this.local.emulator, this.local.pathFor('index.db'), fn);
  }

  async restoredEquals(snapshotId: string, imagePath: string): Promise<void> {
    const target = this.local.pathFor('restored.img');
    await restore(this.session, { snapshotId, target });
    await expectSameBytes(target, imagePath);
  }

  close(): Promise<void> {
    return this.local.close();
  }
}

describe('encrypted lineages', () => {
  const world = new World();
  beforeAll(() => world.open('snapline-rules-encrypted-'));
  afterAll(() => world.close());

  it('a full backup and two incrementals of an encrypted lineage: no child is started with Encrypted, every one keeps the key, the restore is byte-identical', async () => {
    const { path, bytes } = world.image('encrypted', 24);
    const options: BackupOptions = { source: path, encrypted: true };
    const full = await backup(world.session, options);
    overwriteBlocks(path, bytes, [3, 17], 'first change');
    const second = await backup(world.session, options);
    overwriteBlocks(path, bytes, [0, 23], 'second change', (i) => i === 0);
    const third = await backup(world.session, options);
    expect([second.parentSnapshotId, third.parentSnapshotId]).toEqual([full.snapshotId, second.snapshotId]);
    expect(third.blocksUploaded).toBe(2);

    const { ec2 } = clientsFor(world.local.emulator.url);
    try {
      const described = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [full.snapshotId!, second.snapshotId!, third.snapshotId!] }));
      const keys = new Set(described.Snapshots!.map((s) => `${s.Encrypted} ${s.KmsKeyId}`));
      expect(keys.size).toBe(1);
      expect([...keys][0]).toMatch(/^true arn:aws:kms:/);
    } finally {
      ec2.destroy();
    }
    await world.restoredEquals(third.snapshotId!, path);
  });

  it('another key or --encrypted over an unencrypted lineage: INVALID_ARGUMENT naming the option, before any snapshot starts', async () => {
    const plain = world.image('plain-lineage', 4);
    await backup(world.session, { source: plain.path });
    const before = world.local.emulator.stats().operations.StartSnapshot?.requests ?? 0;
    const encrypted = await rejection(backup(world.session, { source: plain.path, encrypted: true }));
    expect(encrypted).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, hint: expect.stringContaining('--full') });
    expect(encrypted.message).toMatch(/^encrypted cannot apply/);
    expect(encrypted.details).toEqual({ option: 'encrypted' });

    const keyed = world.image('keyed-lineage', 4);
    const key = 'arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555';
    await backup(world.session, { source: keyed.path, kmsKeyArn: key });
    const other = await rejection(backup(world.session, { source: keyed.path, kmsKeyArn: key.replace('1111', '9999') }));
    expect(other).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    expect(other.message).toMatch(/^kmsKeyArn arn:/);
    expect(other.details).toEqual({ option: 'kmsKeyArn' });
    expect(world.local.emulator.stats().operations.StartSnapshot?.requests).toBe(before + 1);
    // The lineage's own key is fine.
    expect((await backup(world.session, { source: keyed.path, kmsKeyArn: key })).parentSnapshotId).not.toBeNull();
  });

  it('encryption by default enabled over an unencrypted lineage: REMOTE_REJECTED with the hint --full, which starts an encrypted lineage', async () => {
    const { path } = world.image('turned-encrypted', 4);
    await backup(world.session, { source: path });
    const { ec2 } = clientsFor(world.local.emulator.url);
    await ec2.send(new EnableEbsEncryptionByDefaultCommand({}));
    try {
      const refused = await rejection(backup(world.session, { source: path }));
      expect(refused).toMatchObject({ code: ErrorCodes.REMOTE_REJECTED, hint: expect.stringContaining('--full') });
      const full = await backup(world.session, { source: path, full: true });
      // Every zero block would have to be written in an encrypted snapshot; this image has none, so: all 4.
      expect(full.blocksUploaded).toBe(4);
      const described = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [full.snapshotId!] }));
      expect(described.Snapshots?.[0]?.Encrypted).toBe(true);
    } finally {
      await ec2.send(new DisableEbsEncryptionByDefaultCommand({}));
      ec2.destroy();
    }
  });
});

describe("StartSnapshot's Description and Tags", () => {
  const world = new World();
  beforeAll(() => world.open('snapline-rules-start-arguments-'));
  afterAll(() => world.close());

  it('a description or tags StartSnapshot refuses are INVALID_ARGUMENT naming the option, before anything is read or started', async () => {
    const { path } = world.image('arguments', 4);
    const manyTags = Object.fromEntries(Array.from({ length: 49 }, (_, i) => [`k${i}`, 'v']));
    const refused: [Partial<BackupOptions>, string][] = [
      [{ description: '' }, 'description'],
      [{ description: 'd'.repeat(256) }, 'description'],
      [{ tags: { 'aws:owner': 'me' } }, 'tags'],
      [{ tags: { ['k'.repeat(128)]: 'v' } }, 'tags'],
      [{ tags: { key: 'v'.repeat(256) } }, 'tags'],
      [{ tags: manyTags }, 'tags'],
    ];
    const starts = () => world.local.emulator.stats().operations.StartSnapshot?.requests ?? 0;
    const before = starts();
    for (const [options, option] of refused) {
      const err = await rejection(backup(world.session, { source: path, ...options }));
      expect(err.code, JSON.stringify(options).slice(0, 80)).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(err.details?.option).toBe(option);
    }
    expect(starts()).toBe(before);
    expect(world.session.index.runs.runStart(defaultVolumeName(path))).toBeUndefined();

    const longest = { description: 'd'.repeat(255), tags: { ...Object.fromEntries(Object.entries(manyTags).slice(2)), ['k'.repeat(127)]: 'v'.repeat(255) } };
    const result = await backup(world.session, { source: path, ...longest });
    await world.restoredEquals(result.snapshotId!, path);
  });
});

describe("the snapshot's Timeout, on a scaled clock", () => {
  it('an incremental whose scan pauses longer than the default 60-minute Timeout between two changed blocks still completes (scale 3600: 1 s)', async () => {
    const world = await new World().open('snapline-rules-timeout-', { timeScale: 3600 });
    const held = new HeldHashPool(16 * BLOCK_SIZE, 2500);
    try {
      const { path, bytes } = world.image('long-scan', 32);
      await backup(world.session, { source: path });
      overwriteBlocks(path, bytes, [0, 31], 'changed at both ends');
      // The first block is written, then the scan stalls for 2.5 s (2.5 hours of AWS time) before the last.
      const result = await backup(depsOf(world.session, { hashPool: held }), { source: path });
      expect(result.blocksUploaded).toBe(2);
      await world.restoredEquals(result.snapshotId!, path);
    } finally {
      await held.destroy();
      await world.close();
    }
  });

  it('with --timeout 10 (scale 300: 2 s), a scan that takes longer than that before its first changed block still completes: the snapshot starts with that block', async () => {
    const world = await new World().open('snapline-rules-late-start-', { timeScale: 300 });
    const held = new HeldHashPool(8 * BLOCK_SIZE, 4000);
    try {
      const { path, bytes } = world.image('late-change', 32);
      await backup(world.session, { source: path });
      overwriteBlocks(path, bytes, [31], 'changed at the end');
      const starts = world.local.emulator.stats().operations.StartSnapshot?.requests ?? 0;
      const result = await backup(depsOf(world.session, { hashPool: held }), { source: path, timeoutMinutes: 10 });
      expect(result.blocksUploaded).toBe(1);
      expect(world.local.emulator.stats().operations.StartSnapshot?.requests).toBe(starts + 1);
      await world.restoredEquals(result.snapshotId!, path);
    } finally {
      await held.destroy();
      await world.close();
    }
  });
});

describe("a rehydrated snapshot's Timeout, on a scaled clock", () => {
  /** A hash pool whose first block hashing waits `ms` first: an archive read held up (a slow or throttled store). */
  class HeldBlockHashing extends HashPool {
    #held = false;

    constructor(private readonly ms: number) {
      super({ threads: 1 });
    }

    override async hashBlocks(...args: Parameters<HashPool['hashBlocks']>): ReturnType<HashPool['hashBlocks']> {
      if (!this.#held) {
        this.#held = true;
        await sleep(this.ms);
      }
      return super.hashBlocks(...args);
    }
  }

  it('rehydrate --to-snapshot whose archive reads stall longer than the default 60-minute Timeout before a block still completes (scale 3600: 1 s)', async () => {
    const bucket = 'snapline-rules-rehydrate-timeout';
    const world = await new World().open('snapline-rules-rehydrate-timeout-', { timeScale: 3600 }, { archive: { bucket } });
    const held = new HeldBlockHashing(2500);
    try {
      const { s3 } = clientsFor(world.local.emulator.url);
      try {
        await s3.send(new CreateBucketCommand({ Bucket: bucket }));
      } finally {
        s3.destroy();
      }
      const { path } = world.image('rehydrate-stalled', 6);
      const { snapshotId } = await backup(world.session, { source: path });
      const { archiveId } = await createArchive(world.session, { snapshotId: snapshotId!, to: 's3', storageClass: 'STANDARD' });
      // The snapshot is started, then the first range's blocks wait 2.5 s (2.5 hours of AWS time) to be hashed and written.
      const { index, writer, catalog, archives } = world.session;
      const back = await rehydrate({ index, writer, catalog, archives, hashPool: held }, { archive: archiveId, toSnapshot: true });
      await world.restoredEquals(back.snapshotId!, path);
    } finally {
      await held.destroy();
      await world.close();
    }
  });
});

describe('CompleteSnapshot answers and EC2 lagging behind (ec2LagMs 1500)', () => {
  const world = new World();
  beforeAll(() => world.open('snapline-rules-lag-', { ec2LagMs: 1500 }));
  afterAll(() => world.close());

  it('back-to-back backups: the parent EC2 still shows pending is waited for, not refused', async () => {
    const { path, bytes } = world.image('back-to-back', 4);
    const first = await backup(world.session, { source: path });
    overwriteBlocks(path, bytes, [1], 'next');
    const second = await backup(world.session, { source: path });
    expect(second.parentSnapshotId).toBe(first.snapshotId);
  });

  it('a CompleteSnapshot whose answer is lost: the retry is refused, the run reads the outcome from EC2 and commits', async () => {
    const { path } = world.image('lost-answer', 4);
    const lost = world.local.emulator.stats().faults.lostCompletions;
    world.local.emulator.setFaults({ completionLostResponses: 1 });
    try {
      const result = await backup(world.session, { source: path });
      expect(world.local.emulator.stats().faults.lostCompletions).toBe(lost + 1);
      expect(world.session.index.lineage.getSnapshot(result.snapshotId!)?.state).toBe('completed');
    } finally {
      world.local.emulator.setFaults({});
    }
  });

  it('a run that died after CompleteSnapshot went out is resumed from what EC2 says: completed, without completing it again', async () => {
    const { path } = world.image('died-completing', 4);
    const died = await rejection(backup(depsOf(world.session, { writer: dyingAfter(world.session.writer, 'completeSnapshot') }), { source: path }));
    const snapshotId = died.details?.snapshotId as string;
    expect(world.session.index.lineage.getSnapshot(snapshotId)?.state).toBe('completing');
    const resumed = await backup(world.session, { source: path });
    expect(resumed).toMatchObject({ snapshotId, resumed: true, blocksUploaded: 0 });
    expect(world.session.index.lineage.getSnapshot(snapshotId)?.state).toBe('completed');
  });

  it('a run resumed before EC2 lists its snapshot goes on with that snapshot instead of taking it for gone', async () => {
    const { path } = world.image('not-listed-yet', 8);
    const failing: SnapshotWriter = {
      startSnapshot: (input) => world.session.writer.startSnapshot(input),
      putBlock: () => Promise.reject(new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'refused (test)')),
      completeSnapshot: (...args) => world.session.writer.completeSnapshot(...args),
    };
    await rejection(backup(depsOf(world.session, { writer: failing }), { source: path }));
    const pending = world.session.index.runs.pendingRun(defaultVolumeName(path))!;
    expect(pending.state).toBe('pending');
    const resumed = await backup(world.session, { source: path });
    expect(resumed).toMatchObject({ snapshotId: pending.snapshotId, resumed: true, blocksUploaded: 8 });
  });
});

describe('reading a snapshot right after its backup, EC2 lagging behind (ec2LagMs 3000)', () => {
  const world = new World();
  const bucket = 'snapline-rules-lag';
  beforeAll(async () => {
    await world.open('snapline-rules-read-lag-', { ec2LagMs: 3000 }, { archive: { bucket } });
    const { s3 } = clientsFor(world.local.emulator.url);
    try {
      await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      s3.destroy();
    }
  });
  afterAll(() => world.close());

  /** A fresh image backed up; EC2 does not list its snapshot yet, or lists it pending, for 3 s after. */
  async function justBackedUp(name: string): Promise<{ path: string; snapshotId: string }> {
    const { path } = world.image(name, 6);
    const { snapshotId } = await backup(world.session, { source: path });
    const [listed] = (await world.session.catalog.describeSnapshots([snapshotId!])).filter((s) => s.state === 'completed');
    expect(listed).toBeUndefined();
    return { path, snapshotId: snapshotId! };
  }

  it('restore waits, saying so, until EC2 lists the snapshot completed, then restores byte-identical', async () => {
    const { path, snapshotId } = await justBackedUp('restore-at-once');
    const waits: SettleWait[] = [];
    const target = world.local.pathFor('restored.img');
    await restore(world.session, { snapshotId, target, onSettling: (wait) => waits.push(wait) });
    await expectSameBytes(target, path);
    expect(waits.length).toBeGreaterThan(0);
    expect(waits[0]).toMatchObject({ snapshotId });
    expect(['unlisted', 'pending']).toContain(waits[0]!.seen);
  });

  it('verify --remote and archive wait as well', async () => {
    const checked = await justBackedUp('verify-at-once');
    const verified = await verify(world.session, { snapshotId: checked.snapshotId, remote: true, source: checked.path });
    expect(verified.equal).toBe(true);
    const archived = await justBackedUp('archive-at-once');
    const created = await createArchive(world.session, { snapshotId: archived.snapshotId, to: 's3', storageClass: 'STANDARD' });
    expect(created).toMatchObject({ snapshotId: archived.snapshotId, blocks: 6 });
  });

  it('copy (as backup --copy-to-region runs it) waits as well, then starts the copy in the other Region', async () => {
    const { snapshotId } = await justBackedUp('copy-at-once');
    const destination = await openCopyDestination(world.session, { region: 'eu-west-1' });
    try {
      const deps = { index: world.session.index, catalog: world.session.catalog, sourceRegion: world.session.connection.settings.region, destination };
      // The copy itself takes minutes on AWS's clock: its start is what counts here.
      const waited = await rejection(copySnapshot(deps, { snapshotId, waitTimeoutMs: 1, pollMs: { first: 1, max: 1 } }));
      expect(waited.code).toBe(ErrorCodes.TIMEOUT);
      expect(world.session.index.copies.ofSnapshot(snapshotId)).toMatchObject([{ state: 'pending', region: 'eu-west-1' }]);
    } finally {
      await destination.close();
    }
  });

  it('a copy deleted right after its CopySnapshot (a prune straight after copy) is deleted once EC2 lists it, not taken for gone', async () => {
    const { snapshotId } = await justBackedUp('copy-then-delete');
    const destination = await openCopyDestination(world.session, { region: 'eu-west-1' });
    try {
      const deps = { index: world.session.index, catalog: world.session.catalog, sourceRegion: world.session.connection.settings.region, destination };
      await rejection(copySnapshot(deps, { snapshotId, waitTimeoutMs: 1, pollMs: { first: 1, max: 1 } }));
      const [copy] = world.session.index.copies.ofSnapshot(snapshotId);
      const destinations = { sourceRegion: deps.sourceRegion, catalogOf: () => Promise.resolve(destination.catalog) };
      await deleteCopies({ index: world.session.index, destinations }, [copy!]);
      expect(world.session.index.copies.get(copy!.copySnapshotId)?.state).toBe('deleted');
      await sleep(3000);
      expect(await destination.catalog.describeSnapshots([copy!.copySnapshotId])).toEqual([]);
    } finally {
      await destination.close();
    }
  });

  /** An S3 archive (readable at once) of a fresh backup of `name`, the image's path, and how many DeleteSnapshot calls were made so far. */
  async function archivedImage(name: string): Promise<{ path: string; archiveId: string; deletions: number }> {
    const { path, snapshotId } = await justBackedUp(name);
    const { archiveId } = await createArchive(world.session, { snapshotId, to: 's3', storageClass: 'STANDARD' });
    return { path, archiveId, deletions: world.local.emulator.stats().operations.DeleteSnapshot?.requests ?? 0 };
  }

  it('a snapshot rehydrated from an archive is restored byte-identical straight afterwards: rehydrate returns once EC2 shows it completed', async () => {
    const { path, archiveId, deletions } = await archivedImage('rehydrate-then-restore');
    const back = await rehydrate(world.session, { archive: archiveId, toSnapshot: true });
    const [listed] = await world.session.catalog.describeSnapshots([back.snapshotId!]);
    expect(listed).toMatchObject({ state: 'completed' });
    const target = world.local.pathFor('rehydrated.img');
    await restore(world.session, { snapshotId: back.snapshotId!, target });
    await expectSameBytes(target, path);
    expect(world.local.emulator.stats().operations.DeleteSnapshot?.requests ?? 0).toBe(deletions);
  });

  it("a rehydration whose CompleteSnapshot answer is lost: EC2 not showing the snapshot completed yet is waited for, the snapshot is not deleted, and it restores byte-identical", async () => {
    const { path, archiveId, deletions } = await archivedImage('rehydrate-answer-lost');
    const lost = world.local.emulator.stats().faults.lostCompletions;
    world.local.emulator.setFaults({ completionLostResponses: 1 });
    let back;
    try {
      back = await rehydrate(world.session, { archive: archiveId, toSnapshot: true });
    } finally {
      world.local.emulator.setFaults({});
    }
    expect(world.local.emulator.stats().faults.lostCompletions).toBe(lost + 1);
    expect(world.local.emulator.stats().operations.DeleteSnapshot?.requests ?? 0).toBe(deletions);
    const target = world.local.pathFor('rehydrated-answer-lost.img');
    await restore(world.session, { snapshotId: back.snapshotId!, target });
    await expectSameBytes(target, path);
  });

  it('a rehydration whose CompleteSnapshot answer is lost and whose snapshot is still pending when the wait ends: the snapshot is left (it may still complete), and the error says so', async () => {
    const { archiveId, deletions } = await archivedImage('rehydrate-still-pending');
    world.local.emulator.setFaults({ completionLostResponses: 1, completionDelayMs: 60_000 });
    let refused;
    try {
      refused = await rejection(rehydrate(world.session, { archive: archiveId, toSnapshot: true, waitTimeoutMs: 5000 }));
    } finally {
      world.local.emulator.setFaults({});
    }
    expect(refused.code).toBe(ErrorCodes.REMOTE_REJECTED);
    expect(refused.details).toMatchObject({ unfinishedSnapshot: 'left' });
    const snapshotId = refused.details!.snapshotId as string;
    expect(refused.message).toContain(`snapshot ${snapshotId} is still pending in EC2`);
    expect(refused.hint).toContain('may still complete');
    expect(world.local.emulator.stats().operations.DeleteSnapshot?.requests ?? 0).toBe(deletions);
    expect(await world.session.catalog.describeSnapshots([snapshotId])).toMatchObject([{ state: 'pending' }]);
  });

  /** Whether EC2 lists `snapshotId` once the lag (3 s) has gone by: a snapshot a DeleteSnapshot missed shows up then. */
  async function listedAfterTheLag(snapshotId: string): Promise<boolean> {
    await sleep(3000);
    return (await world.session.catalog.describeSnapshots([snapshotId])).length > 0;
  }

  it('a rehydration refused right after its snapshot started deletes that snapshot, which DeleteSnapshot finds only once EC2 lists it', async () => {
    const { archiveId } = await archivedImage('rehydrate-refused-at-once');
    const refusing: SnapshotWriter = {
      startSnapshot: (input) => world.session.writer.startSnapshot(input),
      putBlock: () => Promise.reject(new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'refused (test)')),
      completeSnapshot: (...args) => world.session.writer.completeSnapshot(...args),
    };
    const refused = await rejection(rehydrate({ ...world.session, writer: refusing }, { archive: archiveId, toSnapshot: true }));
    expect(refused.details).toMatchObject({ unfinishedSnapshot: 'deleted' });
    expect(await listedAfterTheLag(refused.details!.snapshotId as string)).toBe(false);
  });

  it('a backup whose new snapshot came out encrypted (encryption by default enabled meanwhile) deletes it, which DeleteSnapshot finds only once EC2 lists it', async () => {
    const { path } = world.image('encrypted-meanwhile', 4);
    const { ec2 } = clientsFor(world.local.emulator.url);
    // EC2 answers that the account does not encrypt by default, and the setting is turned on right after.
    const catalog = {
      ...world.session.catalog,
      encryptionByDefault: async () => {
        const answer = await world.session.catalog.encryptionByDefault();
        await ec2.send(new EnableEbsEncryptionByDefaultCommand({}));
        return answer;
      },
    };
    try {
      const refused = await rejection(backup(depsOf(world.session, { catalog }), { source: path }));
      expect(refused.code).toBe(ErrorCodes.BAD_STATE);
      expect(refused.message).toMatch(/came out encrypted/);
      expect(await listedAfterTheLag(refused.details!.snapshotId as string)).toBe(false);
    } finally {
      await ec2.send(new DisableEbsEncryptionByDefaultCommand({}));
      ec2.destroy();
    }
  });
});

describe('a ClientToken of its own for every run', () => {
  const world = new World();
  beforeAll(() => world.open('snapline-rules-token-'));
  afterAll(() => world.close());

  it('a fresh index after an earlier one, same endpoint and image: a new snapshot, not the earlier completed one', async () => {
    const { path } = world.image('fresh-index', 4);
    const earlier = await world.withFreshIndex((session) => backup(session, { source: path }));
    const later = await world.withFreshIndex((session) => backup(session, { source: path }));
    expect(later.snapshotId).not.toBe(earlier.snapshotId);
    expect(later.blocksUploaded).toBe(4);
    await world.restoredEquals(later.snapshotId!, path);
  });

  it('two indexes backing up one image at once: two snapshots, each whole', async () => {
    const { path } = world.image('two-indexes', 8);
    const [a, b] = await Promise.all([
      world.withFreshIndex((session) => backup(session, { source: path })),
      world.withFreshIndex((session) => backup(session, { source: path })),
    ]);
    expect(a.snapshotId).not.toBe(b.snapshotId);
    await world.restoredEquals(a.snapshotId!, path);
    await world.restoredEquals(b.snapshotId!, path);
  });

  it('a run that died between StartSnapshot and recording the snapshot: the rerun gets the same snapshot back through its recorded token', async () => {
    const { path } = world.image('died-starting', 4);
    const started: string[] = [];
    await world.withFreshIndex(async (session) => {
      await rejection(backup(depsOf(session, { writer: dyingAfter(session.writer, 'startSnapshot', started) }), { source: path }));
      expect(session.index.runs.runStart(defaultVolumeName(path))?.clientToken).toMatch(/^snapline-/);
      const rerun = await backup(session, { source: path });
      expect(rerun.snapshotId).toBe(started[0]);
      expect(session.index.runs.runStart(defaultVolumeName(path))).toBeUndefined();
    });
  });
});
