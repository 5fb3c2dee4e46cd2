/**
 * Restore, verify, diff, snapshot listing, prune and index rebuild, each with
 * the real parts: the local endpoint over loopback HTTP through the real
 * adapters (openSession), a SQLite index in a temp dir, the real hash pool and
 * slabs, real files, and loop devices where this machine allows them.
 */
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, link, mkdir, open, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients } from '../../src/aws/clients.js';
import { EbsSnapshotStore } from '../../src/aws/ebs.js';
import { AdaptiveLimiter, resilientReader } from '../../src/aws/retry.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotReader, SnapshotWriter } from '../../src/core/ports.js';
import { verifiedReader } from '../../src/core/verified-reader.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { diff } from '../../src/engine/lineage/diff.js';
import { prune } from '../../src/engine/lineage/prune.js';
import { rebuildIndex } from '../../src/engine/lineage/rebuild.js';
import { restore, type RestoreOptions, type RestoreProgress } from '../../src/engine/restore/restore.js';
import { listSnapshots } from '../../src/engine/lineage/snapshots.js';
import { verify, type VerifyProgress } from '../../src/engine/restore/verify.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import type { Session } from '../../src/session.js';
import { mountPointOf, openTarget } from '../../src/target/index.js';
import { TestClock, blockOf, clientsFor, distinctBlock, snapshotWith } from '../emulator/helpers.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { openLocalSession, startLocalEndpoint, unreadableSnapshots, withLocalSession, type LocalEndpoint } from '../support/local-endpoint.js';
import { attachLoop, loopDevicesUnavailable, runTool, withTinyFilesystem } from '../support/loop-devices.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

const interruption = () => new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test');

/** A reader that aborts `controller` once its first block has been fetched. */
function abortingReader(inner: SnapshotReader, controller: AbortController): SnapshotReader {
  return {
    listBlocks: (id, options) => inner.listBlocks(id, options),
    listChangedBlocks: (first, second, options) => inner.listChangedBlocks(first, second, options),
    async getBlock(id, index, token) {
      const block = await inner.getBlock(id, index, token);
      controller.abort(interruption());
      return block;
    },
  };
}

// ---- the endpoint and sessions ----------------------------------------------

let local: LocalEndpoint;
let emulator: RunningEmulator;
let session: Session;
/** A fresh path in the work folder. */
const pathFor = (name: string) => local.pathFor(name);

/** Runs `fn` with a session on its own fresh index, closed afterwards. */
/**
 * Runs `use` with the session's reader over an endpoint that corrupts every
 * block it serves, retrying with short backoffs so the attempts (3) run out
 * quickly; the faults are cleared afterwards.
 */
async function withCorruptingEndpoint(use: (reader: SnapshotReader) => Promise<void>): Promise<void> {
  emulator.setFaults({ corruptRate: 1 });
  const clients = new AwsClients(session.connection.settings, { concurrency: 8 });
  try {
    await use(
      resilientReader(verifiedReader(new EbsSnapshotStore(clients.ebs())), {
        limiter: new AdaptiveLimiter(8),
        policy: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      }),
    );
  } finally {
    clients.destroy();
    emulator.setFaults({});
  }
}

function withFreshIndex<T>(fn: (fresh: Session) => Promise<T>): Promise<T> {
  return withLocalSession(emulator, pathFor('index.db'), fn);
}

/** Backs up `image` as `volume` and returns the new snapshot's id. */
async function snapshotOf(image: string, volume: string, on: Session = session): Promise<string> {
  const result = await backup(on, { source: image, volume });
  expect(result.snapshotId).toMatch(/^snap-/);
  return result.snapshotId!;
}

function getSnapshotBlockRequests(): number {
  return emulator.stats().operations.GetSnapshotBlock?.requests ?? 0;
}

beforeAll(async () => {
  local = await startLocalEndpoint('snapline-restore-');
  ({ emulator, session } = local);
});

afterAll(() => local?.close());

// ---- round trips -------------------------------------------------------------

describe('restore round trips', () => {
  it('a random image comes back byte-identical at its exact size', async () => {
    const image = pathFor('random.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]), 8 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'random');

    const target = pathFor('random-restored.img');
    const result = await restore(session, { snapshotId, target });

    await expectSameBytes(target, image);
    expect(result).toMatchObject({ snapshotId, target, incrementalFrom: null, sizeBytes: 8 * BLOCK_SIZE, blocksListed: 8, blocksFetched: 8 });
    expect(result.bytesWritten).toBe(8 * BLOCK_SIZE);
    expect(result.verified).toBeNull();
    expect(session.index.targets.get(target)).toMatchObject({ snapshotId, state: 'complete', sizeBytes: 8 * BLOCK_SIZE });
  });

  it('a mostly-zero image comes back identical, and sparse where the snapshot has no block', async () => {
    const image = pathFor('sparse.img');
    const size = 32 * BLOCK_SIZE;
    writeBlocks(image, randomBlocks([0, 13, 31]), size);
    const snapshotId = await snapshotOf(image, 'sparse');

    const target = pathFor('sparse-restored.img');
    const result = await restore(session, { snapshotId, target });

    await expectSameBytes(target, image);
    expect(result.blocksListed).toBe(3);
    expect(result.blocksFetched).toBe(3);
    expect(result.bytesWritten).toBe(3 * BLOCK_SIZE);
    const allocated = (await stat(target)).blocks * 512;
    expect(allocated).toBeGreaterThanOrEqual(3 * BLOCK_SIZE);
    // 29 of 32 blocks are holes: allow a little metadata, nowhere near a fourth block.
    expect(allocated).toBeLessThan(4 * BLOCK_SIZE);
  });

  it('an image that is not a whole number of blocks (nor GiB) keeps its exact size, also from a fresh index', async () => {
    const image = pathFor('unaligned.img');
    const size = 5 * BLOCK_SIZE + 12_345;
    writeBlocks(image, randomBlocks([0, 2, 5]), size);
    const snapshotId = await snapshotOf(image, 'unaligned');

    const target = pathFor('unaligned-restored.img');
    const result = await restore(session, { snapshotId, target });
    await expectSameBytes(target, image);
    expect(result.sizeBytes).toBe(size);
    expect(result.bytesWritten).toBe(2 * BLOCK_SIZE + 12_345);

    // A new machine: the size comes from the snapshot's tag.
    const elsewhere = pathFor('unaligned-fresh-index.img');
    await withFreshIndex((fresh) => restore(fresh, { snapshotId, target: elsewhere }));
    await expectSameBytes(elsewhere, image);
  });

  it('--verify hashes the target afterwards and says it equals the snapshot', async () => {
    const image = pathFor('verified.img');
    writeBlocks(image, randomBlocks([1, 4]), 4 * BLOCK_SIZE + 100);
    const snapshotId = await snapshotOf(image, 'verified');
    const target = pathFor('verified-restored.img');
    const result = await restore(session, { snapshotId, target, verify: true });
    expect(result).toMatchObject({ verified: true, verifiedAgainst: 'index' });
    await expectSameBytes(target, image);
    // A snapshot the index does not map is read to verify against.
    const elsewhere = pathFor('verified-fresh-index.img');
    expect(await withFreshIndex((fresh) => restore(fresh, { snapshotId, target: elsewhere, verify: true }))).toMatchObject({ verified: true, verifiedAgainst: 'snapshot' });
    expect((await restore(session, { snapshotId, target, force: true })).verifiedAgainst).toBeNull();
  });

  it('marks a target the index holds as complete incomplete before a full restore truncates it, so a crash in between claims nothing', async () => {
    const image = pathFor('truncated.img');
    writeBlocks(image, randomBlocks([0, 3]), 4 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'truncated');
    const target = pathFor('truncated-restored.img');
    await restore(session, { snapshotId, target });
    // The target's size each time the index records it (a kill right after a record leaves the file so).
    const sizesWhenRecorded: Array<{ state: string; bytes: number }> = [];
    const targets = session.index.targets;
    const watched = new Proxy(targets, {
      get: (real, key: keyof typeof targets) =>
        key === 'set'
          ? (record: Parameters<typeof targets.set>[0]) => {
              sizesWhenRecorded.push({ state: record.state, bytes: existsSync(target) ? readFileSync(target).length : -1 });
              return real.set(record);
            }
          : (real[key] as (...args: unknown[]) => unknown).bind(real),
    });
    const index = new Proxy(session.index, { get: (real, key: keyof typeof session.index) => (key === 'targets' ? watched : real[key]) });
    await restore({ ...session, index }, { snapshotId, target, force: true });
    expect(sizesWhenRecorded[0]).toEqual({ state: 'incomplete', bytes: 4 * BLOCK_SIZE });
    expect(sizesWhenRecorded.at(-1)?.state).toBe('complete');
  });
});

// ---- block devices -------------------------------------------------------------

const noLoop = loopDevicesUnavailable();

describe.skipIf(noLoop)(`restore onto block devices${noLoop ? ` (skipped: ${noLoop})` : ''}`, () => {
  it('restores onto a loop device: the snapshot bytes, zeros where it has no block, nothing past its size touched; --verify checks the restored bytes alone', async () => {
    const image = pathFor('for-device.img');
    const size = 12 * BLOCK_SIZE + 1000;
    writeBlocks(image, randomBlocks([0, 3, 12]), size);
    const snapshotId = await snapshotOf(image, 'for-device');

    const backing = pathFor('device-backing.img');
    await writeFile(backing, Buffer.alloc(16 * BLOCK_SIZE, 0xa5));
    const loop = attachLoop(backing);
    try {
      const result = await restore(session, { snapshotId, target: loop.device, verify: true });
      expect(result.blocksFetched).toBe(3);
      expect(result.blocksZeroed).toBe(10);
      expect(result).toMatchObject({ verified: true, verifiedAgainst: 'index' });

      const device = await readFile(loop.device);
      expect(device.length).toBe(16 * BLOCK_SIZE);
      expect(device.subarray(0, size).equals(await readFile(image)), 'device holds the image').toBe(true);
      expect(device.subarray(size).every((byte) => byte === 0xa5), 'bytes past the volume untouched').toBe(true);
      expect((await verify(session, { source: image, snapshotId })).equal).toBe(true);

      // A byte changed in the restored bytes' last, partial block is still seen.
      const handle = await open(loop.device, 'r+');
      await handle.write(Buffer.from([0x5a]), 0, 1, size - 1);
      await handle.close();
      expect(await verify(session, { source: loop.device, snapshotId, upToBytes: size })).toMatchObject({ equal: false, differingRanges: [{ first: 12, last: 12 }] });
    } finally {
      loop.detach();
    }
  });

  it('incrementally onto a device: the device is hashed up to the volume size, only the blocks that differ are fetched, nothing past it touched', async () => {
    const image = pathFor('device-rolling.img');
    const size = 6 * BLOCK_SIZE + 1000;
    writeBlocks(image, randomBlocks([0, 1, 2, 3]), size);
    const first = await snapshotOf(image, 'device-rolling');
    writeBlocks(image, randomBlocks([2, 6]));
    const second = await snapshotOf(image, 'device-rolling');

    const backing = pathFor('device-rolling-backing.img');
    await writeFile(backing, Buffer.alloc(8 * BLOCK_SIZE, 0xa5));
    const loop = attachLoop(backing);
    try {
      await restore(session, { snapshotId: first, target: loop.device });
      const before = getSnapshotBlockRequests();
      const result = await restore(session, { snapshotId: second, target: loop.device, incremental: true, verify: true });
      expect(result).toMatchObject({ incremental: { method: 'hashed', digestsFrom: 'index', blocksHashed: 7, blocksDiffering: 2 }, blocksFetched: 2, verified: true });
      expect(getSnapshotBlockRequests() - before).toBe(2);
      const device = await readFile(loop.device);
      expect(device.subarray(0, size).equals(await readFile(image)), 'device holds the image').toBe(true);
      expect(device.subarray(size).every((byte) => byte === 0xa5), 'bytes past the volume untouched').toBe(true);
    } finally {
      loop.detach();
    }
  });

  it('refuses a device smaller than the snapshot, naming both sizes', async () => {
    const image = pathFor('too-big.img');
    writeBlocks(image, randomBlocks([0, 5]), 6 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'too-big');
    const backing = pathFor('small-backing.img');
    await writeFile(backing, Buffer.alloc(2 * BLOCK_SIZE, 0x11));
    const loop = attachLoop(backing);
    try {
      const err = await rejection(restore(session, { snapshotId, target: loop.device }));
      expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(err.message).toContain(loop.device);
      expect(err.message).toContain(`${2 * BLOCK_SIZE} bytes`);
      expect(err.message).toContain(`${6 * BLOCK_SIZE} bytes`);
      expect((await readFile(loop.device)).every((byte) => byte === 0x11), 'device untouched').toBe(true);
    } finally {
      loop.detach();
    }
  });

  it('refuses a device that holds a file system or a partition table without --force, naming what it found; --force overwrites it', async (ctx) => {
    const image = pathFor('over-fs.img');
    writeBlocks(image, randomBlocks([0, 1, 2]), 4 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'over-fs');

    const gptBacking = pathFor('gpt-backing.img');
    const gpt = Buffer.alloc(8 * BLOCK_SIZE);
    gpt.set([0x55, 0xaa], 510);
    gpt.write('EFI PART', 512, 'latin1');
    await writeFile(gptBacking, gpt);
    const fsBacking = pathFor('ext4-backing.img');
    await writeFile(fsBacking, Buffer.alloc(8 * BLOCK_SIZE));
    try {
      runTool('mkfs.ext4', ['-q', '-F', fsBacking]);
    } catch (err) {
      ctx.skip(`cannot make an ext4 file system here: ${(err as Error).message.split('\n')[0]}`);
    }

    for (const [backing, found] of [
      [gptBacking, 'a GPT partition table ("EFI PART" at byte 512)'],
      [fsBacking, 'an ext2/3/4 file system (magic 0xEF53 at byte 1080)'],
    ] as const) {
      const before = await readFile(backing);
      const loop = attachLoop(backing);
      try {
        const record = session.index.targets.get(loop.device);
        const err = await rejection(restore(session, { snapshotId, target: loop.device }));
        expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
        expect(err.message).toBe(`${loop.device} holds ${found}`);
        expect(err.hint).toContain('--force');
        expect((await readFile(loop.device)).equals(before), 'device untouched').toBe(true);
        expect(session.index.targets.get(loop.device), 'index unchanged').toEqual(record);

        await restore(session, { snapshotId, target: loop.device, force: true });
        expect((await readFile(loop.device)).subarray(0, 4 * BLOCK_SIZE).equals(await readFile(image))).toBe(true);
      } finally {
        loop.detach();
      }
    }
  });

  it('refuses a mounted device, and the image file a mounted loop device reads', async (ctx) => {
    const image = pathFor('for-mounted.img');
    writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
    const snapshotId = await snapshotOf(image, 'for-mounted');
    const backing = pathFor('fs-backing.img');
    await writeFile(backing, Buffer.alloc(16 * BLOCK_SIZE));
    const loop = attachLoop(backing);
    const mountPoint = pathFor('mnt');
    await mkdir(mountPoint);
    let mounted = false;
    try {
      try {
        runTool('mkfs.ext4', ['-q', loop.device]);
        runTool('mount', [loop.device, mountPoint]);
        mounted = true;
      } catch (err) {
        ctx.skip(`cannot make and mount a file system here: ${(err as Error).message.split('\n')[0]}`);
      }
      const err = await rejection(restore(session, { snapshotId, target: loop.device, force: true }));
      expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(err.message).toContain('is mounted');
      expect(err.message).toContain(mountPoint);

      // The image file under the mounted loop device, by its name or another (a hard link), in full or incrementally.
      const alias = pathFor('fs-backing-alias.img');
      await link(backing, alias);
      session.index.targets.set({ path: alias, snapshotId, state: 'complete', sizeBytes: 2 * BLOCK_SIZE });
      for (const options of [{ target: backing, force: true }, { target: alias, incremental: true }]) {
        const refused = await rejection(restore(session, { snapshotId, ...options }));
        expect(refused.code).toBe(ErrorCodes.TARGET_UNUSABLE);
        expect(refused.message).toBe(`${options.target} backs ${loop.device}, which is mounted (on ${mountPoint}); unmount it before restoring onto ${options.target}`);
      }
      expect((await stat(backing)).size, 'the image not truncated').toBe(16 * BLOCK_SIZE);
    } finally {
      if (mounted) runTool('umount', [mountPoint]);
      loop.detach();
    }
  });
});

describe('mountPointOf (fake /proc and /sys)', () => {
  it('finds the device or one of its partitions in mountinfo, and nothing when neither is mounted', async () => {
    const root = pathFor('fake-roots');
    const proc = join(root, 'proc');
    const sys = join(root, 'sys');
    await mkdir(join(proc, 'self'), { recursive: true });
    await mkdir(join(sys, 'dev', 'block', '8:16', 'sdb1'), { recursive: true });
    await writeFile(join(sys, 'dev', 'block', '8:16', 'sdb1', 'dev'), '8:17\n');
    await writeFile(join(sys, 'dev', 'block', '8:16', 'size'), '2048\n');
    const sdb = (8n << 8n) | 16n;
    const sda = (8n << 8n) | 0n;
    const lines = (entries: string[]) => `${entries.join('\n')}\n`;
    const root0 = '22 1 0:21 / /proc rw,relatime - proc proc rw';

    await writeFile(join(proc, 'self', 'mountinfo'), lines([root0, '40 1 8:17 / /srv/data rw,relatime - ext4 /dev/sdb1 rw']));
    expect(await mountPointOf(sdb, proc, sys)).toBe('/srv/data');
    expect(await mountPointOf(sda, proc, sys)).toBeUndefined();

    await writeFile(join(proc, 'self', 'mountinfo'), lines([root0, '41 1 8:16 / /mnt/whole rw - xfs /dev/sdb rw']));
    expect(await mountPointOf(sdb, proc, sys)).toBe('/mnt/whole');

    await writeFile(join(proc, 'self', 'mountinfo'), lines([root0]));
    expect(await mountPointOf(sdb, proc, sys)).toBeUndefined();
  });
});

// ---- incremental restore -----------------------------------------------------------

describe('incremental restore', () => {
  let imageA: string;
  let imageB: string;
  let snapA: string;
  let snapB: string;
  let target: string;
  const size = 16 * BLOCK_SIZE;

  beforeAll(async () => {
    // A: data in blocks 0-9, zeros in 10-15. B: 2 and 3 rewritten, 5 now zeros, 11 new.
    const live = pathFor('rolling.img');
    writeBlocks(live, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), size);
    snapA = await snapshotOf(live, 'rolling');
    imageA = pathFor('rolling-a.img');
    await copyFile(live, imageA);
    writeBlocks(live, new Map([...randomBlocks([2, 3, 11]), [5, Buffer.alloc(BLOCK_SIZE)]]));
    snapB = await snapshotOf(live, 'rolling');
    imageB = live;
    target = pathFor('rolling-target.img');
    await restore(session, { snapshotId: snapA, target });
    await expectSameBytes(target, imageA);
  });

  it('B onto a target holding A fetches exactly the changed blocks and gives B', async () => {
    const changed = await diff(session, snapA, snapB);
    expect(changed.changedBlocks).toBe(4);

    const before = getSnapshotBlockRequests();
    const result = await restore(session, { snapshotId: snapB, target, incremental: true });
    // The target is hashed against B's digests: 2, 3 and 11 are fetched; 5, zeros in B, is zeroed without a fetch.
    expect(getSnapshotBlockRequests() - before).toBe(3);
    expect(result).toMatchObject({
      incrementalFrom: snapA,
      incremental: { method: 'hashed', digestsFrom: 'index', blocksHashed: 16, blocksDiffering: 4 },
      blocksListed: 3,
      blocksFetched: 3,
      blocksZeroed: 1,
    });
    await expectSameBytes(target, imageB);
    expect(session.index.targets.get(target)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });

  it('back to A onto a target holding B: zeros where A has no block', async () => {
    const before = getSnapshotBlockRequests();
    const result = await restore(session, { snapshotId: snapA, target, incremental: true });
    // 2, 3 and 5 come from A; 11 is not in A, so it becomes zeros.
    expect(result).toMatchObject({ incrementalFrom: snapB, blocksFetched: 3, blocksZeroed: 1 });
    expect(getSnapshotBlockRequests() - before).toBe(3);
    await expectSameBytes(target, imageA);
  });

  /** Writes `bytes` at byte `offset` of `path`. */
  async function scribble(path: string, offset: number, bytes = Buffer.from('8 bytes!')): Promise<void> {
    const file = await open(path, 'r+');
    try {
      await file.write(bytes, 0, bytes.byteLength, offset);
    } finally {
      await file.close();
    }
  }

  it('a target written to since its last restore: hashing finds the 8 bytes and the restore puts the snapshot back', async () => {
    const changed = pathFor('changed-since.img');
    await restore(session, { snapshotId: snapA, target: changed });

    // The same snapshot again: only the block written to is fetched.
    await scribble(changed, 6 * BLOCK_SIZE + 100);
    const same = await restore(session, { snapshotId: snapA, target: changed, incremental: true });
    expect(same).toMatchObject({ incremental: { method: 'hashed', digestsFrom: 'index', blocksHashed: 16, blocksDiffering: 1 }, blocksFetched: 1, blocksZeroed: 0 });
    await expectSameBytes(changed, imageA);

    // B onto it after writes to block 6 (data in A and B) and block 13 (zeros in both).
    await scribble(changed, 6 * BLOCK_SIZE + 100);
    await scribble(changed, 13 * BLOCK_SIZE + 7);
    const before = getSnapshotBlockRequests();
    const result = await restore(session, { snapshotId: snapB, target: changed, incremental: true });
    // 2, 3, 11 and 6 fetched; 5 (zeros in B) and 13 zeroed.
    expect(result).toMatchObject({ incremental: { blocksHashed: 16, blocksDiffering: 6 }, blocksFetched: 4, blocksZeroed: 2 });
    expect(getSnapshotBlockRequests() - before).toBe(4);
    await expectSameBytes(changed, imageB);
    expect(session.index.targets.get(changed)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });

  it('--trust-index takes the index at its word: the blocks ListChangedBlocks gives, the target not read (a change made since stays)', async () => {
    const trusted = pathFor('trusted.img');
    await restore(session, { snapshotId: snapA, target: trusted });
    await scribble(trusted, 6 * BLOCK_SIZE + 100);
    const result = await restore(session, { snapshotId: snapB, target: trusted, incremental: true, trustIndex: true });
    expect(result).toMatchObject({
      incrementalFrom: snapA,
      incremental: { method: 'trusted', digestsFrom: null, blocksHashed: 0, blocksDiffering: 4 },
      blocksFetched: 4,
    });
    expect(await verify(session, { source: trusted, snapshotId: snapB })).toMatchObject({ equal: false, differingRanges: [{ first: 6, last: 6 }] });
  });

  it('--trust-index onto a file truncated since its last restore: refused (its size says it changed), and hashing puts the snapshot back', async () => {
    const truncated = pathFor('truncated.img');
    await restore(session, { snapshotId: snapA, target: truncated });
    await truncate(truncated, 3 * BLOCK_SIZE);
    for (const snapshotId of [snapB, snapA]) {
      const err = await rejection(restore(session, { snapshotId, target: truncated, incremental: true, trustIndex: true }));
      expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(err.message).toBe(
        `cannot restore incrementally onto ${truncated} trusting the index: it holds ${3 * BLOCK_SIZE} bytes, not the ${size} its last restore left, so it has changed since`,
      );
      expect(err.hint).toContain('leave out --trust-index');
    }
    expect(session.index.targets.get(truncated)).toMatchObject({ snapshotId: snapA, state: 'complete' });

    await restore(session, { snapshotId: snapB, target: truncated, incremental: true });
    await expectSameBytes(truncated, imageB);
  });

  it('--verify finding the target unlike the snapshot: the index marks it incomplete, so --trust-index is refused and --incremental hashes it right', async () => {
    let tokenInA = '';
    for await (const page of session.reader.listBlocks(snapA)) tokenInA = page.blocks.find((b) => b.index === 2)?.token ?? tokenInA;
    // Block 2 of B is answered with A's block 2, its checksum and all: the restore writes it, the verify sees it.
    const swapping: SnapshotReader = {
      listBlocks: (id, options) => session.reader.listBlocks(id, options),
      listChangedBlocks: (first, second, options) => session.reader.listChangedBlocks(first, second, options),
      getBlock: (id, index, token) => (id === snapB && index === 2 ? session.reader.getBlock(snapA, 2, tokenInA) : session.reader.getBlock(id, index, token)),
    };
    const unlike = pathFor('unlike.img');
    const result = await restore({ ...session, reader: swapping }, { snapshotId: snapB, target: unlike, verify: true });
    expect(result).toMatchObject({ verified: false, verifiedAgainst: 'index' });
    expect(session.index.targets.get(unlike)).toMatchObject({ snapshotId: null, state: 'incomplete' });

    const trusted = await rejection(restore(session, { snapshotId: snapB, target: unlike, incremental: true, trustIndex: true }));
    expect(trusted.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    const hashed = await restore(session, { snapshotId: snapB, target: unlike, incremental: true, verify: true });
    expect(hashed).toMatchObject({ incremental: { method: 'hashed', blocksDiffering: 1 }, blocksFetched: 1, verified: true });
    await expectSameBytes(unlike, imageB);
    expect(session.index.targets.get(unlike)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });

  it('a snapshot the index does not map: every block it lists is fetched, the blocks it lacks are compared with zeros', async () => {
    await withFreshIndex(async (fresh) => {
      const elsewhere = pathFor('unmapped.img');
      await restore(fresh, { snapshotId: snapA, target: elsewhere });
      await scribble(elsewhere, 13 * BLOCK_SIZE + 7);
      const result = await restore(fresh, { snapshotId: snapB, target: elsewhere, incremental: true });
      // B lists 0-9 (5 written as zeros) and 11; 13, which it lacks, held data and is zeroed.
      expect(result).toMatchObject({
        incremental: { method: 'hashed', digestsFrom: 'none', blocksHashed: 16, blocksDiffering: 1 },
        blocksListed: 11,
        blocksFetched: 11,
        blocksZeroed: 1,
      });
      await expectSameBytes(elsewhere, imageB);
    });
  });

  it('progress counts the blocks of the volume dealt with, and reaches all of them (full, hashed and trusted)', async () => {
    const runs: RestoreProgress[][] = [];
    const watched = (options: Omit<RestoreOptions, 'onProgress'>) => {
      const seen: RestoreProgress[] = [];
      runs.push(seen);
      return restore(session, { ...options, onProgress: (p) => seen.push(p) });
    };
    const t = pathFor('progress.img');
    await watched({ snapshotId: snapA, target: t });
    await watched({ snapshotId: snapB, target: t, incremental: true });
    await watched({ snapshotId: snapA, target: t, incremental: true, trustIndex: true });
    for (const seen of runs) {
      expect(seen.at(-1)).toMatchObject({ totalBytes: size, totalBlocks: 16, blocksDone: 16 });
      const done = seen.map((p) => p.blocksDone);
      expect(done).toEqual([...done].sort((a, b) => a - b));
    }
    expect(runs[1]!.at(-1)).toMatchObject({ blocksHashed: 16, blocksDiffering: 4, blocksFetched: 3 });
    await expectSameBytes(t, imageA);
  });

  it('refused when the index has no record of the target', async () => {
    const stranger = pathFor('stranger.img');
    await copyFile(imageA, stranger);
    const err = await rejection(restore(session, { snapshotId: snapB, target: stranger, incremental: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toContain(stranger);
    expect(err.message).toContain('no record');
    await expectSameBytes(stranger, imageA);
  });

  it('refused clearly when the target the index remembers is gone', async () => {
    const gone = pathFor('gone.img');
    await restore(session, { snapshotId: snapA, target: gone });
    await rm(gone);
    const err = await rejection(restore(session, { snapshotId: snapB, target: gone, incremental: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`${gone} does not exist: there is nothing to restore onto incrementally`);
  });

  it('onto a target whose snapshot has been deleted: hashed, it works; trusting the index, it is refused clearly', async () => {
    const image = pathFor('short-lived.img');
    writeBlocks(image, randomBlocks([0, 1]), 4 * BLOCK_SIZE);
    const first = await snapshotOf(image, 'short-lived');
    writeBlocks(image, randomBlocks([1]));
    const second = await snapshotOf(image, 'short-lived');
    const held = pathFor('held.img');
    await restore(session, { snapshotId: first, target: held });
    await session.catalog.deleteSnapshot(first);
    const err = await rejection(restore(session, { snapshotId: second, target: held, incremental: true, trustIndex: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`cannot restore incrementally onto ${held} trusting the index: the snapshot it holds, ${first}, no longer exists`);
    expect(err.hint).toContain('leave out --trust-index');
    expect(session.index.targets.get(held)).toMatchObject({ snapshotId: first, state: 'complete' });

    const hashed = await restore(session, { snapshotId: second, target: held, incremental: true });
    expect(hashed).toMatchObject({ incrementalFrom: first, incremental: { method: 'hashed', blocksDiffering: 1 }, blocksFetched: 1 });
    await expectSameBytes(held, image);
  });

  it('an interrupted restore leaves the target marked incomplete; --trust-index is then refused, and --incremental finishes it', async () => {
    const half = pathFor('half.img');
    const controller = new AbortController();
    const err = await rejection(
      restore(
        { ...session, reader: abortingReader(session.reader, controller) },
        { snapshotId: snapB, target: half, window: 2, signal: controller.signal },
      ),
    );
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    expect(err.message).toContain(`${half} is incomplete`);
    expect(err.hint).toContain('--incremental');
    expect(session.index.targets.get(half)).toMatchObject({ snapshotId: null, state: 'incomplete' });

    const trusted = await rejection(restore(session, { snapshotId: snapB, target: half, incremental: true, trustIndex: true }));
    expect(trusted.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(trusted.message).toBe(`cannot restore incrementally onto ${half} trusting the index: its last restore did not finish, or failed its verify`);

    // Hashing finds what the interrupted run wrote: only the rest is fetched.
    const before = getSnapshotBlockRequests();
    const finished = await restore(session, { snapshotId: snapB, target: half, incremental: true });
    expect(finished).toMatchObject({ incrementalFrom: null, incremental: { method: 'hashed', digestsFrom: 'index' } });
    expect(finished.blocksFetched).toBeLessThan(10);
    expect(getSnapshotBlockRequests() - before).toBe(finished.blocksFetched);
    await expectSameBytes(half, imageB);
    expect(session.index.targets.get(half)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });
});

// ---- faults from the endpoint ---------------------------------------------------------

describe('faults from the endpoint', () => {
  let image: string;
  let snapshotId: string;

  beforeAll(async () => {
    image = pathFor('faulty.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]), 8 * BLOCK_SIZE);
    snapshotId = await snapshotOf(image, 'faulty');
  });

  it('a block answered with a wrong checksum is detected and fetched again', async () => {
    emulator.setFaults({ corruptRate: 0.4, seed: 11 });
    emulator.resetStats();
    try {
      const target = pathFor('corrupt-some.img');
      const result = await restore(session, { snapshotId, target });
      const stats = emulator.stats();
      expect(stats.faults.corrupted).toBeGreaterThan(0);
      expect(stats.operations.GetSnapshotBlock!.requests).toBe(8 + stats.faults.corrupted);
      expect(result.blocksFetched).toBe(8);
      await expectSameBytes(target, image);
    } finally {
      emulator.setFaults({});
    }
  });

  it('a block corrupted on every read fails the restore naming it, and the index does not claim the target', async () => {
    await withCorruptingEndpoint(async (reader) => {
      const target = pathFor('corrupt-all.img');
      const err = await rejection(restore({ ...session, reader }, { snapshotId, target }));
      expect(err.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
      expect(err.message).toMatch(new RegExp(`block \\d of ${snapshotId} does not match its checksum`));
      expect(err.message).toContain('gave up after 3 attempts');
      expect(session.index.targets.get(target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    });
  });

  it('pending and errored snapshots are refused', async () => {
    const { pending, errored } = await unreadableSnapshots(emulator);
    const notReady = await rejection(restore(session, { snapshotId: pending, target: pathFor('pending.img') }));
    expect(notReady.code).toBe(ErrorCodes.BAD_STATE);
    expect(notReady.message).toContain(`${pending} is pending`);

    const broken = await rejection(restore(session, { snapshotId: errored, target: pathFor('errored.img') }));
    expect(broken.code).toBe(ErrorCodes.BAD_STATE);
    expect(broken.message).toContain(`${errored} is error`);
  });
});

describe('expired block tokens', () => {
  it('a block token that expired between listing and fetching is replaced by listing again (full and incremental)', async () => {
    const clock = new TestClock(Date.now());
    const clocked = await startEmulator({ dataDir: pathFor('clock-endpoint'), now: clock.now });
    const own = await openLocalSession(clocked, pathFor('clock-index.db'));
    try {
      const image = pathFor('expiring.img');
      writeBlocks(image, randomBlocks([0, 1, 2, 3, 4, 5]), 6 * BLOCK_SIZE);
      const first = await snapshotOf(image, 'expiring', own);

      // The first page of a restore's listing hands out tokens; then eight days pass before any is used.
      let listed = false;
      const afterFirstPage = async function* <T>(pages: AsyncIterable<T>) {
        for await (const page of pages) {
          if (!listed) clock.advance(8 * 24 * 3600 * 1000);
          listed = true;
          yield page;
        }
      };
      const reader: SnapshotReader = {
        listBlocks: (id, options) => afterFirstPage(own.reader.listBlocks(id, options)),
        listChangedBlocks: (a, b, options) => afterFirstPage(own.reader.listChangedBlocks(a, b, options)),
        getBlock: (id, index, token) => own.reader.getBlock(id, index, token),
      };
      const stats = () => clocked.stats().operations;

      clocked.resetStats();
      const target = pathFor('expiring-restored.img');
      const full = await restore({ ...own, reader }, { snapshotId: first, target });
      await expectSameBytes(target, image);
      expect(full.blocksFetched).toBe(6);
      // Every first fetch was refused; each block was listed again and fetched once more.
      expect(stats().GetSnapshotBlock).toMatchObject({ requests: 12, errors: 6 });
      expect(stats().ListSnapshotBlocks!.requests).toBe(1 + 6);

      writeBlocks(image, randomBlocks([1, 4]));
      const second = await snapshotOf(image, 'expiring', own);
      listed = false;
      clocked.resetStats();
      const incremental = await restore({ ...own, reader }, { snapshotId: second, target, incremental: true });
      await expectSameBytes(target, image);
      expect(incremental).toMatchObject({ incrementalFrom: first, blocksFetched: 2 });
      expect(stats().GetSnapshotBlock).toMatchObject({ requests: 4, errors: 2 });
      // One listing for the tokens of the blocks that differ, one more for each refused token.
      expect(stats().ListSnapshotBlocks!.requests).toBe(1 + 2);

      writeBlocks(image, randomBlocks([2, 5]));
      const third = await snapshotOf(image, 'expiring', own);
      listed = false;
      clocked.resetStats();
      const trusted = await restore({ ...own, reader }, { snapshotId: third, target, incremental: true, trustIndex: true });
      await expectSameBytes(target, image);
      expect(trusted).toMatchObject({ incrementalFrom: second, blocksFetched: 2 });
      expect(stats().GetSnapshotBlock).toMatchObject({ requests: 4, errors: 2 });
      expect(stats().ListChangedBlocks!.requests).toBe(1 + 2);
    } finally {
      await own.close();
      await clocked.close();
    }
  });
});

// ---- bad input ---------------------------------------------------------------------

describe('restore refuses bad input clearly', () => {
  let image: string;
  let snapshotId: string;

  beforeAll(async () => {
    image = pathFor('input.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3]), 4 * BLOCK_SIZE);
    snapshotId = await snapshotOf(image, 'input');
  });

  it('an unknown snapshot', async () => {
    const err = await rejection(restore(session, { snapshotId: 'snap-0123456789abcdef0', target: pathFor('unknown.img') }));
    expect(err.code).toBe(ErrorCodes.NOT_FOUND);
    expect(err.message).toContain('snap-0123456789abcdef0 does not exist');
  });

  it('--trust-index without --incremental, before anything is opened', async () => {
    const target = pathFor('trust-alone.img');
    const err = await rejection(restore(session, { snapshotId, target, trustIndex: true }));
    expect(err.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(err.message).toContain('trustIndex goes with incremental');
    expect(err.details).toEqual({ option: 'trustIndex', otherOptions: ['incremental'] });
    expect(existsSync(target)).toBe(false);
  });

  it('a directory', async () => {
    const dir = pathFor('a-directory');
    await mkdir(dir);
    const err = await rejection(restore(session, { snapshotId, target: dir }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`${dir} is a directory; give an image file or a block device`);
  });

  it('an existing non-empty file without --force (untouched), and with --force it is overwritten', async () => {
    const existing = pathFor('existing.img');
    await writeFile(existing, 'precious data');
    const err = await rejection(restore(session, { snapshotId, target: existing }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toContain(`${existing} exists and is not empty`);
    expect(err.hint).toContain('--force');
    expect(await readFile(existing, 'utf8')).toBe('precious data');

    await restore(session, { snapshotId, target: existing, force: true });
    await expectSameBytes(existing, image);
  });

  it('a file of the index under another name (a hard link), even with force: refused, the index untouched', async () => {
    const alias = pathFor('index-alias.img');
    await link(session.index.path, alias);
    const before = await readFile(session.index.path);
    const err = await rejection(restore(session, { snapshotId, target: alias, force: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`${alias} is a file of the index snapline is using (${session.index.path}): restoring onto it would destroy the index`);
    expect(await readFile(session.index.path)).toEqual(before);
    expect(session.index.targets.get(alias)).toBeUndefined();
  });

  it('a folder that does not exist', async () => {
    const target = join(pathFor('missing-folder'), 'x.img');
    const err = await rejection(restore(session, { snapshotId, target }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toContain('does not exist');
  });

  it('no permission to write the target (as root: with the effective uid of nobody for the open)', async () => {
    const dir = pathFor('locked');
    await mkdir(dir, { mode: 0o555 });
    const target = join(dir, 'restore.img');
    const asRoot = process.geteuid?.() === 0;
    // glibc applies seteuid to every thread, so libuv's pool opens as nobody too.
    if (asRoot) process.seteuid!(65_534);
    let err: SnaplineError;
    try {
      err = await rejection(openTarget(target, { sizeBytes: 4 * BLOCK_SIZE, reserved: [] }));
    } finally {
      if (asRoot) process.seteuid!(0);
    }
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`no permission to write ${target}`);
  });

  it('disk full while writing: IO_FAILED, and the index does not claim the target holds the snapshot', async (ctx) => {
    const mountPoint = pathFor('tiny-fs');
    await withTinyFilesystem(mountPoint, (note) => ctx.skip(note), async () => {
      const target = join(mountPoint, 'restore.img');
      const err = await rejection(restore(session, { snapshotId, target }));
      expect(err.code).toBe(ErrorCodes.IO_FAILED);
      expect(err.message).toBe(`no space left to write ${target}; ${target} is incomplete`);
      expect(session.index.targets.get(target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    });
  });
});

// ---- verify -------------------------------------------------------------------------

describe('verify', () => {
  let image: string;
  let snapshotId: string;
  let changed: string;

  beforeAll(async () => {
    image = pathFor('verify.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3, 4, 7, 10]), 10 * BLOCK_SIZE + 4096);
    snapshotId = await snapshotOf(image, 'verify');
    changed = pathFor('verify-changed.img');
    await copyFile(image, changed);
    // One byte in block 3, and a block that is a hole in the snapshot now holds data.
    const file = await open(changed, 'r+');
    await file.write(Buffer.from([0xff]), 0, 1, 3 * BLOCK_SIZE + 17);
    await file.write(Buffer.from([0x01]), 0, 1, 8 * BLOCK_SIZE);
    await file.close();
  });

  it('from the index: equal, then the differing blocks as ranges', async () => {
    const same = await verify(session, { source: image, snapshotId });
    expect(same).toMatchObject({ equal: true, expectedFrom: 'index', blocksCompared: 11, differingBlocks: 0, differingRanges: [] });
    expect(same.snapshotBytes).toBe(10 * BLOCK_SIZE + 4096);

    const different = await verify(session, { source: changed, snapshotId });
    expect(different).toMatchObject({
      equal: false,
      expectedFrom: 'index',
      differingBlocks: 2,
      differingRanges: [
        { first: 3, last: 3 },
        { first: 8, last: 8 },
      ],
    });
  });

  it('with a fresh empty index: reads the snapshot, same answers', async () => {
    const before = getSnapshotBlockRequests();
    const [same, different] = await withFreshIndex(async (fresh) => [
      await verify(fresh, { source: image, snapshotId }),
      await verify(fresh, { source: changed, snapshotId }),
    ]);
    expect(getSnapshotBlockRequests() - before).toBe(14);
    expect(same).toMatchObject({ equal: true, expectedFrom: 'snapshot', differingRanges: [] });
    expect(different).toMatchObject({
      equal: false,
      expectedFrom: 'snapshot',
      differingRanges: [
        { first: 3, last: 3 },
        { first: 8, last: 8 },
      ],
    });
  });

  it('--remote reads every block of the snapshot and checks it against its checksum, the index and the source (when given)', async () => {
    const progress: VerifyProgress[] = [];
    const before = getSnapshotBlockRequests();
    const withSource = await verify(session, { source: image, snapshotId, remote: true, onProgress: (p) => progress.push(p) });
    expect(getSnapshotBlockRequests() - before).toBe(7);
    expect(withSource).toMatchObject({
      kind: 'remote',
      expectedFrom: 'snapshot',
      equal: true,
      blocksRead: 7,
      blocksCompared: 11,
      indexChecked: true,
      indexMismatches: 0,
      differingRanges: [],
    });
    expect(progress.at(-1)).toEqual({ totalBlocks: 11, blocksDone: 11, blocksRead: 7 });

    const alone = await verify(session, { snapshotId, remote: true });
    expect(alone).toMatchObject({ kind: 'remote', source: null, sourceBytes: null, equal: true, blocksRead: 7, blocksCompared: 0, indexChecked: true });

    const different = await verify(session, { source: changed, snapshotId, remote: true });
    expect(different).toMatchObject({
      equal: false,
      indexMismatches: 0,
      differingRanges: [
        { first: 3, last: 3 },
        { first: 8, last: 8 },
      ],
    });

    // Without --remote the index answers and the snapshot is not read.
    const reads = getSnapshotBlockRequests();
    expect(await verify(session, { source: image, snapshotId })).toMatchObject({ kind: 'index', equal: true, blocksRead: 0, indexChecked: false });
    expect(getSnapshotBlockRequests()).toBe(reads);
  });

  it("a snapshot served with other bytes than the index recorded: the index's digests cannot see it, --remote names the block", async () => {
    const otherImage = pathFor('verify-other.img');
    writeBlocks(otherImage, randomBlocks([3]), 4 * BLOCK_SIZE);
    const other = await snapshotOf(otherImage, 'verify-other');
    let otherToken = '';
    for await (const page of session.reader.listBlocks(other)) otherToken = page.blocks.find((b) => b.index === 3)?.token ?? otherToken;
    // Block 3 is answered with the other snapshot's block 3, its checksum and all.
    const swapping: SnapshotReader = {
      listBlocks: (id, options) => session.reader.listBlocks(id, options),
      listChangedBlocks: (first, second, options) => session.reader.listChangedBlocks(first, second, options),
      getBlock: (id, index, token) => (id === snapshotId && index === 3 ? session.reader.getBlock(other, 3, otherToken) : session.reader.getBlock(id, index, token)),
    };
    const deps = { ...session, reader: swapping };
    expect(await verify(deps, { source: image, snapshotId })).toMatchObject({ kind: 'index', equal: true });
    expect(await verify(deps, { source: image, snapshotId, remote: true })).toMatchObject({
      kind: 'remote',
      equal: false,
      indexMismatches: 1,
      indexMismatchRanges: [{ first: 3, last: 3 }],
      differingRanges: [{ first: 3, last: 3 }],
    });
    expect(await verify(deps, { snapshotId, remote: true })).toMatchObject({ equal: false, indexMismatchRanges: [{ first: 3, last: 3 }] });
  });

  it('--remote: a block that fails its checksum on every read fails the verify naming it, where the index said equal', async () => {
    await withCorruptingEndpoint(async (reader) => {
      expect(await verify({ ...session, reader }, { source: image, snapshotId })).toMatchObject({ kind: 'index', equal: true });
      const err = await rejection(verify({ ...session, reader }, { source: image, snapshotId, remote: true }));
      expect(err.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
      expect(err.message).toMatch(new RegExp(`block \\d+ of ${snapshotId} does not match its checksum`));
    });
  });

  it('without a source and without --remote: refused, naming both ways', async () => {
    const err = await rejection(verify(session, { snapshotId }));
    expect(err.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(err.message).toContain('or remote to read');
    expect(err.details).toEqual({ option: 'remote' });
  });

  it('a source of another size is not equal even when its blocks match, with or without the index', async () => {
    const longer = pathFor('verify-longer.img');
    await copyFile(image, longer);
    const file = await open(longer, 'r+');
    await file.truncate(11 * BLOCK_SIZE);
    await file.close();
    const fromIndex = await verify(session, { source: longer, snapshotId });
    const fromSnapshot = await withFreshIndex((fresh) => verify(fresh, { source: longer, snapshotId }));
    for (const result of [fromIndex, fromSnapshot]) {
      expect(result).toMatchObject({ differingBlocks: 0, equal: false, sourceBytes: 11 * BLOCK_SIZE, snapshotBytes: 10 * BLOCK_SIZE + 4096 });
    }
  });

  it('a shorter source differs where the snapshot holds data past its end, also for a snapshot of unknown size', async () => {
    const shorter = pathFor('verify-shorter.img');
    await copyFile(image, shorter);
    const file = await open(shorter, 'r+');
    await file.truncate(5 * BLOCK_SIZE);
    await file.close();
    const pastTheEnd = [
      { first: 7, last: 7 },
      { first: 10, last: 10 },
    ];
    expect(await verify(session, { source: shorter, snapshotId })).toMatchObject({ kind: 'index', equal: false, differingRanges: pastTheEnd });
    expect(await verify(session, { source: shorter, snapshotId, remote: true })).toMatchObject({ kind: 'remote', equal: false, differingRanges: pastTheEnd });

    // A snapshot snapline did not take: no index record, no size tag, so no size check to fall back on.
    const clients = clientsFor(emulator.url);
    const { ebs } = clients;
    try {
      const untagged = await snapshotWith(
        ebs,
        new Map([
          [0, distinctBlock(1)],
          [3, blockOf(0)],
          [5, distinctBlock(2)],
        ]),
      );
      const head = pathFor('verify-untagged-head.img');
      await writeFile(head, Buffer.concat([distinctBlock(1), Buffer.alloc(BLOCK_SIZE)]));
      const result = await verify(session, { source: head, snapshotId: untagged, remote: true });
      expect(result).toMatchObject({ snapshotBytes: null, equal: false, differingRanges: [{ first: 5, last: 5 }] });
      // A block of zeros past the end is no difference.
      const onlyZerosPast = await snapshotWith(
        ebs,
        new Map([
          [0, distinctBlock(1)],
          [3, blockOf(0)],
        ]),
      );
      expect(await verify(session, { source: head, snapshotId: onlyZerosPast, remote: true })).toMatchObject({ snapshotBytes: null, equal: true });
    } finally {
      for (const client of Object.values(clients)) client.destroy();
    }
  });
});

// ---- diff ---------------------------------------------------------------------------

describe('diff', () => {
  it('counts and ranges are what changed between two snapshots, either way round', async () => {
    const image = pathFor('diff.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]), 16 * BLOCK_SIZE);
    const first = await snapshotOf(image, 'diff');
    writeBlocks(image, randomBlocks([1, 2, 3, 6, 12]));
    const second = await snapshotOf(image, 'diff');

    const forward = await diff(session, first, second);
    expect(forward).toEqual({
      firstSnapshotId: first,
      secondSnapshotId: second,
      changedBlocks: 5,
      changedBytes: 5 * BLOCK_SIZE,
      addedBlocks: 1,
      removedBlocks: 0,
      ranges: [
        { first: 1, last: 3 },
        { first: 6, last: 6 },
        { first: 12, last: 12 },
      ],
    });
    const backward = await diff(session, second, first);
    expect(backward).toMatchObject({ changedBlocks: 5, addedBlocks: 0, removedBlocks: 1, ranges: forward.ranges });

    expect(await diff(session, second, second)).toMatchObject({ changedBlocks: 0, ranges: [] });
  });

  it('snapshots of unrelated lineages are refused', async () => {
    const a = pathFor('unrelated-a.img');
    const b = pathFor('unrelated-b.img');
    writeBlocks(a, randomBlocks([0]), 2 * BLOCK_SIZE);
    writeBlocks(b, randomBlocks([1]), 2 * BLOCK_SIZE);
    const err = await rejection(diff(session, await snapshotOf(a, 'unrelated-a'), await snapshotOf(b, 'unrelated-b')));
    expect(err.code).toBe(ErrorCodes.REMOTE_REJECTED);
  });
});

// ---- snapshots and prune ---------------------------------------------------------------

/** A writer that aborts `controller` once the snapshot is started: the backup stays pending. */
function abortingWriter(inner: SnapshotWriter, controller: AbortController): SnapshotWriter {
  return {
    async startSnapshot(input) {
      const started = await inner.startSnapshot(input);
      controller.abort(interruption());
      return started;
    },
    putBlock: (id, index, data, checksum, progress) => inner.putBlock(id, index, data, checksum, progress),
    completeSnapshot: (id, count, checksum) => inner.completeSnapshot(id, count, checksum),
  };
}

describe('snapshots and prune', () => {
  it('lists the lineage with its remote state, and prunes old ones but never the newest nor one a pending run builds on', async () => {
    await withFreshIndex(async (own) => {
      const image = pathFor('lineage.img');
      writeBlocks(image, randomBlocks([0, 1, 2, 3]), 32 * BLOCK_SIZE);
      const s1 = await snapshotOf(image, 'lineage', own);
      writeBlocks(image, randomBlocks([1]));
      const s2 = await snapshotOf(image, 'lineage', own);
      writeBlocks(image, randomBlocks([2, 20]));
      const s3 = await snapshotOf(image, 'lineage', own);
      const s3Image = pathFor('lineage-s3.img');
      await copyFile(image, s3Image);

      const rows = await listSnapshots(own);
      expect(rows.map((r) => [r.snapshotId, r.parentSnapshotId, r.indexState, r.remoteState])).toEqual([
        [s1, null, 'completed', 'completed'],
        [s2, s1, 'completed', 'completed'],
        [s3, s2, 'completed', 'completed'],
      ]);
      expect(rows.map((r) => r.changedBlocks)).toEqual([4, 1, 2]);
      expect(rows[2]).toMatchObject({ volume: 'lineage', volumeSizeGiB: 1, sourceBytes: 32 * BLOCK_SIZE, progress: '100%', ageDays: 0 });
      expect(rows[2]!.tags['snapline:volume']).toBe('lineage');

      // --dry-run names what would go and deletes nothing.
      const dry = await prune(own, { olderThanDays: 0, keepLast: 1, dryRun: true });
      expect(dry.dryRun).toBe(true);
      expect(dry.deleted.map((d) => d.snapshotId)).toEqual([s1, s2]);
      expect((await own.catalog.describeSnapshots([s1, s2, s3])).map((s) => s.state)).toEqual(['completed', 'completed', 'completed']);

      // A backup on top of s1 (--parent), interrupted: it stays pending and builds on s1.
      writeBlocks(image, randomBlocks([3]));
      const controller = new AbortController();
      const interrupted = await rejection(
        backup({ ...own, writer: abortingWriter(own.writer, controller) }, { source: image, volume: 'lineage', parent: s1, signal: controller.signal }),
      );
      expect(interrupted.code).toBe(ErrorCodes.INTERRUPTED);
      const pending = own.index.runs.pendingRun('lineage');
      expect(pending?.parentSnapshotId).toBe(s1);

      const pruned = await prune(own, { olderThanDays: 0, keepLast: 1 });
      expect(pruned.deleted.map((d) => d.snapshotId)).toEqual([s2]);
      expect(pruned.busyVolumes).toEqual([]);
      const remote = new Map((await own.catalog.describeSnapshots([s1, s2, s3])).map((s) => [s.snapshotId, s.state]));
      expect(remote.get(s1)).toBe('completed');
      expect(remote.has(s2)).toBe(false);
      expect(remote.get(s3)).toBe('completed');
      expect(own.index.lineage.getSnapshot(s2)?.state).toBe('deleted');
      expect(own.index.check()).toEqual([]);

      const after = await listSnapshots(own);
      expect(after.map((r) => r.snapshotId)).toEqual([s1, s3, pending!.snapshotId]);
      expect(after[2]).toMatchObject({ indexState: 'pending', remoteState: 'pending' });

      // s3 is whole without s2: in the index and in the endpoint.
      expect(await verify(own, { source: s3Image, snapshotId: s3 })).toMatchObject({ equal: true, expectedFrom: 'index' });
      const target = pathFor('lineage-restored.img');
      await restore(own, { snapshotId: s3, target });
      await expectSameBytes(target, s3Image);
    });
  });

  it('keep-last keeps that many, a younger cut-off keeps the young, and one deleted elsewhere shows as missing', async () => {
    await withFreshIndex(async (own) => {
      const image = pathFor('keep.img');
      writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
      const ids = [];
      for (let i = 0; i < 4; i += 1) {
        writeBlocks(image, randomBlocks([1]));
        ids.push(await snapshotOf(image, 'keep', own));
      }
      expect((await prune(own, { olderThanDays: 1, dryRun: true })).deleted).toEqual([]);
      const kept2 = await prune(own, { olderThanDays: 0, keepLast: 2 });
      expect(kept2.deleted.map((d) => d.snapshotId)).toEqual(ids.slice(0, 2));
      expect((await listSnapshots(own)).map((r) => r.snapshotId)).toEqual(ids.slice(2));

      // Deleted behind snapline's back: still listed from the index, missing in EC2.
      await own.catalog.deleteSnapshot(ids[2]!);
      expect((await listSnapshots(own)).map((r) => [r.snapshotId, r.indexState, r.remoteState])).toEqual([
        [ids[2], 'completed', 'missing'],
        [ids[3], 'completed', 'completed'],
      ]);
    });
  });
});

// ---- index rebuild -----------------------------------------------------------------------

describe('index rebuild', () => {
  it('learns a snapshot into a fresh index: verify from it, and the next backup uploads only changes', async () => {
    const image = pathFor('rebuild.img');
    writeBlocks(image, randomBlocks([0, 2, 4, 6, 8, 12]), 12 * BLOCK_SIZE + 777);
    const snapshotId = await snapshotOf(image, 'rebuild');

    await withFreshIndex(async (fresh) => {
      const missing = await rejection(rebuildIndex(fresh, { snapshotId, source: pathFor('no-such.img') }));
      expect(missing.code).toBe(ErrorCodes.SOURCE_UNUSABLE);

      const learned = await rebuildIndex(fresh, { snapshotId, source: image });
      expect(learned).toMatchObject({ snapshotId, volume: 'rebuild', blocks: 6, sourceBytes: 12 * BLOCK_SIZE + 777 });
      expect(fresh.index.check()).toEqual([]);

      expect(await verify(fresh, { source: image, snapshotId })).toMatchObject({ equal: true, expectedFrom: 'index' });

      writeBlocks(image, randomBlocks([3, 8]));
      const next = await backup(fresh, { source: image, volume: 'rebuild' });
      expect(next).toMatchObject({ parentSnapshotId: snapshotId, blocksChanged: 2, blocksUploaded: 2 });
      const target = pathFor('rebuild-restored.img');
      await restore(fresh, { snapshotId: next.snapshotId!, target });
      await expectSameBytes(target, image);
    });
  });
});
