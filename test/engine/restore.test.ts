/**
 * Restore, verify, diff, snapshot listing, prune and index rebuild, each with
 * the real parts: the local endpoint over loopback HTTP through the real
 * adapters (openSession), a SQLite index in a temp dir, the real hash pool and
 * slabs, real files, and loop devices where this machine allows them.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients } from '../../src/aws/clients.js';
import { EbsSnapshotStore } from '../../src/aws/ebs.js';
import { AdaptiveLimiter, resilientReader } from '../../src/aws/retry.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotReader, SnapshotWriter } from '../../src/core/ports.js';
import { verifiedReader } from '../../src/core/verified-reader.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup.js';
import { diff } from '../../src/engine/diff.js';
import { prune } from '../../src/engine/prune.js';
import { rebuildIndex } from '../../src/engine/rebuild.js';
import { restore } from '../../src/engine/restore.js';
import { listSnapshots } from '../../src/engine/snapshots.js';
import { verify } from '../../src/engine/verify.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { openSession, type Session } from '../../src/session.js';
import { mountPointOf, openTarget } from '../../src/target/index.js';
import { TestClock, blockOf, clientsFor, complete, put, start } from '../emulator/helpers.js';

// ---- images ----------------------------------------------------------------

function randomBlocks(indexes: number[]): Map<number, Buffer> {
  return new Map(indexes.map((i) => [i, randomBytes(BLOCK_SIZE)]));
}

/** Writes an image of exactly `sizeBytes`: the given blocks (the last one clipped), holes elsewhere. */
async function writeImage(path: string, sizeBytes: number, blocks: Map<number, Buffer>): Promise<void> {
  const file = await open(path, 'w');
  try {
    await file.truncate(sizeBytes);
    await writeBlocks(file, sizeBytes, blocks);
  } finally {
    await file.close();
  }
}

/** Overwrites blocks of an existing image in place (the size stays). */
async function patchImage(path: string, blocks: Map<number, Buffer>): Promise<void> {
  const file = await open(path, 'r+');
  try {
    await writeBlocks(file, (await file.stat()).size, blocks);
  } finally {
    await file.close();
  }
}

async function writeBlocks(file: Awaited<ReturnType<typeof open>>, sizeBytes: number, blocks: Map<number, Buffer>): Promise<void> {
  for (const [index, data] of blocks) {
    const length = Math.min(BLOCK_SIZE, sizeBytes - index * BLOCK_SIZE);
    if (length > 0) await file.write(data, 0, length, index * BLOCK_SIZE);
  }
}

/** Asserts the two files have the same size and bytes (no deep-equality diff of megabytes). */
async function expectSameBytes(actualPath: string, expectedPath: string): Promise<void> {
  const [actual, expected] = await Promise.all([readFile(actualPath), readFile(expectedPath)]);
  expect(actual.length, `size of ${actualPath}`).toBe(expected.length);
  expect(actual.equals(expected), `bytes of ${actualPath} equal ${expectedPath}`).toBe(true);
}

async function failure(promise: Promise<unknown>): Promise<SnaplineError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    return err as SnaplineError;
  }
  throw new Error('expected a failure, the call succeeded');
}

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

// ---- machine facilities ----------------------------------------------------

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Why loop devices cannot be used here, or undefined when they can. */
function loopDevicesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  const dir = join(tmpdir(), `snapline-loop-probe-${process.pid}`);
  try {
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('truncate', ['-s', '1M', join(dir, 'probe.img')]);
    const device = run('losetup', ['-f', '--show', join(dir, 'probe.img')]);
    run('losetup', ['-d', device]);
    return undefined;
  } catch (err) {
    return `losetup does not work here: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    execFileSync('rm', ['-rf', dir]);
  }
}

/** A loop device over `backing`; detach() is idempotent. */
function attachLoop(backing: string): { device: string; detach: () => void } {
  const device = run('losetup', ['-f', '--show', backing]);
  let attached = true;
  return {
    device,
    detach: () => {
      if (attached) run('losetup', ['-d', device]);
      attached = false;
    },
  };
}

// ---- the endpoint and sessions ----------------------------------------------

let emulator: RunningEmulator;
let work: string;
let session: Session;
let serial = 0;

/** A fresh path in the work folder. */
const pathFor = (name: string) => join(work, `${name}-${++serial}`);

function sessionOn(endpoint: RunningEmulator, indexPath: string): Promise<Session> {
  return openSession({ connection: 'local', endpointUrl: endpoint.url, indexPath, concurrency: 8 });
}

/** Runs `fn` with a session on its own fresh index, closed afterwards. */
async function withFreshIndex<T>(fn: (fresh: Session) => Promise<T>): Promise<T> {
  const fresh = await sessionOn(emulator, pathFor('index.db'));
  try {
    return await fn(fresh);
  } finally {
    await fresh.close();
  }
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
  work = await mkdtemp(join(tmpdir(), 'snapline-restore-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
  session = await sessionOn(emulator, join(work, 'index.db'));
});

afterAll(async () => {
  await session?.close();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

// ---- round trips -------------------------------------------------------------

describe('restore round trips', () => {
  it('a random image comes back byte-identical at its exact size', async () => {
    const image = pathFor('random.img');
    await writeImage(image, 8 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]));
    const snapshotId = await snapshotOf(image, 'random');

    const target = pathFor('random-restored.img');
    const result = await restore(session, { snapshotId, target });

    await expectSameBytes(target, image);
    expect(result).toMatchObject({ snapshotId, target, incrementalFrom: null, sizeBytes: 8 * BLOCK_SIZE, blocksListed: 8, blocksFetched: 8 });
    expect(result.bytesWritten).toBe(8 * BLOCK_SIZE);
    expect(result.verified).toBeNull();
    expect(session.index.getTarget(target)).toMatchObject({ snapshotId, state: 'complete', sizeBytes: 8 * BLOCK_SIZE });
  });

  it('a mostly-zero image comes back identical, and sparse where the snapshot has no block', async () => {
    const image = pathFor('sparse.img');
    const size = 32 * BLOCK_SIZE;
    await writeImage(image, size, randomBlocks([0, 13, 31]));
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
    await writeImage(image, size, randomBlocks([0, 2, 5]));
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
    await writeImage(image, 4 * BLOCK_SIZE + 100, randomBlocks([1, 4]));
    const snapshotId = await snapshotOf(image, 'verified');
    const target = pathFor('verified-restored.img');
    const result = await restore(session, { snapshotId, target, verify: true });
    expect(result.verified).toBe(true);
    await expectSameBytes(target, image);
  });
});

// ---- block devices -------------------------------------------------------------

const noLoop = loopDevicesUnavailable();

describe.skipIf(noLoop)(`restore onto block devices${noLoop ? ` (skipped: ${noLoop})` : ''}`, () => {
  it('restores onto a loop device: the snapshot bytes, zeros where it has no block, nothing past its size touched', async () => {
    const image = pathFor('for-device.img');
    const size = 12 * BLOCK_SIZE + 1000;
    await writeImage(image, size, randomBlocks([0, 3, 12]));
    const snapshotId = await snapshotOf(image, 'for-device');

    const backing = pathFor('device-backing.img');
    await writeFile(backing, Buffer.alloc(16 * BLOCK_SIZE, 0xa5));
    const loop = attachLoop(backing);
    try {
      const result = await restore(session, { snapshotId, target: loop.device });
      expect(result.blocksFetched).toBe(3);
      expect(result.blocksZeroed).toBe(10);

      const device = await readFile(loop.device);
      expect(device.length).toBe(16 * BLOCK_SIZE);
      expect(device.subarray(0, size).equals(await readFile(image)), 'device holds the image').toBe(true);
      expect(device.subarray(size).every((byte) => byte === 0xa5), 'bytes past the volume untouched').toBe(true);
      expect((await verify(session, { source: image, snapshotId })).equal).toBe(true);
    } finally {
      loop.detach();
    }
  });

  it('refuses a device smaller than the snapshot, naming both sizes', async () => {
    const image = pathFor('too-big.img');
    await writeImage(image, 6 * BLOCK_SIZE, randomBlocks([0, 5]));
    const snapshotId = await snapshotOf(image, 'too-big');
    const backing = pathFor('small-backing.img');
    await writeFile(backing, Buffer.alloc(2 * BLOCK_SIZE, 0x11));
    const loop = attachLoop(backing);
    try {
      const err = await failure(restore(session, { snapshotId, target: loop.device }));
      expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(err.message).toContain(loop.device);
      expect(err.message).toContain(`${2 * BLOCK_SIZE} bytes`);
      expect(err.message).toContain(`${6 * BLOCK_SIZE} bytes`);
      expect((await readFile(loop.device)).every((byte) => byte === 0x11), 'device untouched').toBe(true);
    } finally {
      loop.detach();
    }
  });

  it('refuses a mounted device', async (ctx) => {
    const image = pathFor('for-mounted.img');
    await writeImage(image, 2 * BLOCK_SIZE, randomBlocks([0]));
    const snapshotId = await snapshotOf(image, 'for-mounted');
    const backing = pathFor('fs-backing.img');
    await writeFile(backing, Buffer.alloc(16 * BLOCK_SIZE));
    const loop = attachLoop(backing);
    const mountPoint = pathFor('mnt');
    await mkdir(mountPoint);
    let mounted = false;
    try {
      try {
        run('mkfs.ext4', ['-q', loop.device]);
        run('mount', [loop.device, mountPoint]);
        mounted = true;
      } catch (err) {
        ctx.skip(`cannot make and mount a file system here: ${(err as Error).message.split('\n')[0]}`);
      }
      const err = await failure(restore(session, { snapshotId, target: loop.device, force: true }));
      expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(err.message).toContain('is mounted');
      expect(err.message).toContain(mountPoint);
    } finally {
      if (mounted) run('umount', [mountPoint]);
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
    await writeImage(live, size, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
    snapA = await snapshotOf(live, 'rolling');
    imageA = pathFor('rolling-a.img');
    await copyFile(live, imageA);
    await patchImage(live, new Map([...randomBlocks([2, 3, 11]), [5, Buffer.alloc(BLOCK_SIZE)]]));
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
    expect(getSnapshotBlockRequests() - before).toBe(4);
    expect(result).toMatchObject({ incrementalFrom: snapA, blocksListed: 4, blocksFetched: 4, blocksZeroed: 0 });
    await expectSameBytes(target, imageB);
    expect(session.index.getTarget(target)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });

  it('back to A onto a target holding B: zeros where A has no block', async () => {
    const before = getSnapshotBlockRequests();
    const result = await restore(session, { snapshotId: snapA, target, incremental: true });
    // 2, 3 and 5 come from A; 11 is not in A, so it becomes zeros.
    expect(result).toMatchObject({ incrementalFrom: snapB, blocksFetched: 3, blocksZeroed: 1 });
    expect(getSnapshotBlockRequests() - before).toBe(3);
    await expectSameBytes(target, imageA);
  });

  it('refused when the index has no record of the target', async () => {
    const stranger = pathFor('stranger.img');
    await copyFile(imageA, stranger);
    const err = await failure(restore(session, { snapshotId: snapB, target: stranger, incremental: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toContain(stranger);
    expect(err.message).toContain('no record');
    await expectSameBytes(stranger, imageA);
  });

  it('refused clearly when the target the index remembers is gone', async () => {
    const gone = pathFor('gone.img');
    await restore(session, { snapshotId: snapA, target: gone });
    await rm(gone);
    const err = await failure(restore(session, { snapshotId: snapB, target: gone, incremental: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`${gone} does not exist: there is nothing to restore onto incrementally`);
  });

  it('refused clearly when the snapshot the target holds has been deleted', async () => {
    const image = pathFor('short-lived.img');
    await writeImage(image, 4 * BLOCK_SIZE, randomBlocks([0, 1]));
    const first = await snapshotOf(image, 'short-lived');
    await patchImage(image, randomBlocks([1]));
    const second = await snapshotOf(image, 'short-lived');
    const held = pathFor('held.img');
    await restore(session, { snapshotId: first, target: held });
    await session.catalog.deleteSnapshot(first);
    const err = await failure(restore(session, { snapshotId: second, target: held, incremental: true }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`cannot restore incrementally onto ${held}: the snapshot it holds, ${first}, no longer exists`);
    expect(err.hint).toContain('restore in full');
    expect(session.index.getTarget(held)).toMatchObject({ snapshotId: first, state: 'complete' });
  });

  it('an interrupted restore leaves the target marked incomplete, and --incremental is then refused', async () => {
    const half = pathFor('half.img');
    const controller = new AbortController();
    const err = await failure(
      restore(
        { ...session, reader: abortingReader(session.reader, controller) },
        { snapshotId: snapB, target: half, window: 2, signal: controller.signal },
      ),
    );
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    expect(err.message).toContain(`${half} is incomplete`);
    expect(session.index.getTarget(half)).toMatchObject({ snapshotId: null, state: 'incomplete' });

    const again = await failure(restore(session, { snapshotId: snapB, target: half, incremental: true }));
    expect(again.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(again.message).toContain('did not finish');

    // A full restore over it (--force) repairs it.
    await restore(session, { snapshotId: snapB, target: half, force: true });
    await expectSameBytes(half, imageB);
    expect(session.index.getTarget(half)).toMatchObject({ snapshotId: snapB, state: 'complete' });
  });
});

// ---- faults from the endpoint ---------------------------------------------------------

describe('faults from the endpoint', () => {
  let image: string;
  let snapshotId: string;

  beforeAll(async () => {
    image = pathFor('faulty.img');
    await writeImage(image, 8 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]));
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
    emulator.setFaults({ corruptRate: 1 });
    // The session's reader, with short backoffs so the attempts run out quickly.
    const clients = new AwsClients(session.connection.settings, { concurrency: 8 });
    try {
      const reader = resilientReader(verifiedReader(new EbsSnapshotStore(clients.ebs())), {
        limiter: new AdaptiveLimiter(8),
        policy: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      });
      const target = pathFor('corrupt-all.img');
      const err = await failure(restore({ ...session, reader }, { snapshotId, target }));
      expect(err.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
      expect(err.message).toMatch(new RegExp(`block \\d of ${snapshotId} does not match its checksum`));
      expect(err.message).toContain('gave up after 3 attempts');
      expect(session.index.getTarget(target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    } finally {
      clients.destroy();
      emulator.setFaults({});
    }
  });

  it('pending and errored snapshots are refused', async () => {
    const { ebs, ec2, sts, s3 } = clientsFor(emulator.url);
    try {
      emulator.setFaults({ completionDelayMs: 3_600_000 });
      const pending = await start(ebs);
      await put(ebs, pending, 0, blockOf(1));
      expect(await complete(ebs, pending, new Map([[0, blockOf(1)]]))).toBe('pending');
      const notReady = await failure(restore(session, { snapshotId: pending, target: pathFor('pending.img') }));
      expect(notReady.code).toBe(ErrorCodes.BAD_STATE);
      expect(notReady.message).toContain(`${pending} is pending`);

      emulator.setFaults({ completionErrorRate: 1 });
      const errored = await start(ebs);
      await put(ebs, errored, 0, blockOf(2));
      expect(await complete(ebs, errored, new Map([[0, blockOf(2)]]))).toBe('error');
      const broken = await failure(restore(session, { snapshotId: errored, target: pathFor('errored.img') }));
      expect(broken.code).toBe(ErrorCodes.BAD_STATE);
      expect(broken.message).toContain(`${errored} is error`);
    } finally {
      emulator.setFaults({});
      for (const client of [ebs, ec2, sts, s3]) client.destroy();
    }
  });
});

describe('expired block tokens', () => {
  it('a block token that expired between listing and fetching is replaced by listing again (full and incremental)', async () => {
    const clock = new TestClock(Date.now());
    const clocked = await startEmulator({ dataDir: pathFor('clock-endpoint'), now: clock.now });
    const own = await sessionOn(clocked, pathFor('clock-index.db'));
    try {
      const image = pathFor('expiring.img');
      await writeImage(image, 6 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3, 4, 5]));
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

      await patchImage(image, randomBlocks([1, 4]));
      const second = await snapshotOf(image, 'expiring', own);
      listed = false;
      clocked.resetStats();
      const incremental = await restore({ ...own, reader }, { snapshotId: second, target, incremental: true });
      await expectSameBytes(target, image);
      expect(incremental).toMatchObject({ incrementalFrom: first, blocksFetched: 2 });
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
    await writeImage(image, 4 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3]));
    snapshotId = await snapshotOf(image, 'input');
  });

  it('an unknown snapshot', async () => {
    const err = await failure(restore(session, { snapshotId: 'snap-0123456789abcdef0', target: pathFor('unknown.img') }));
    expect(err.code).toBe(ErrorCodes.NOT_FOUND);
    expect(err.message).toContain('snap-0123456789abcdef0 does not exist');
  });

  it('a directory', async () => {
    const dir = pathFor('a-directory');
    await mkdir(dir);
    const err = await failure(restore(session, { snapshotId, target: dir }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`${dir} is a directory; give an image file or a block device`);
  });

  it('an existing non-empty file without --force (untouched), and with --force it is overwritten', async () => {
    const existing = pathFor('existing.img');
    await writeFile(existing, 'precious data');
    const err = await failure(restore(session, { snapshotId, target: existing }));
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toContain(`${existing} exists and is not empty`);
    expect(err.hint).toContain('--force');
    expect(await readFile(existing, 'utf8')).toBe('precious data');

    await restore(session, { snapshotId, target: existing, force: true });
    await expectSameBytes(existing, image);
  });

  it('a folder that does not exist', async () => {
    const target = join(pathFor('missing-folder'), 'x.img');
    const err = await failure(restore(session, { snapshotId, target }));
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
      err = await failure(openTarget(target, { sizeBytes: 4 * BLOCK_SIZE }));
    } finally {
      if (asRoot) process.seteuid!(0);
    }
    expect(err.code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(err.message).toBe(`no permission to write ${target}`);
  });

  it('disk full while writing: IO_FAILED, and the index does not claim the target holds the snapshot', async (ctx) => {
    const mountPoint = pathFor('tiny-fs');
    await mkdir(mountPoint);
    try {
      run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'snapline-test', mountPoint]);
    } catch (err) {
      ctx.skip(`cannot mount a small tmpfs here: ${(err as Error).message.split('\n')[0]}`);
    }
    try {
      const target = join(mountPoint, 'restore.img');
      const err = await failure(restore(session, { snapshotId, target }));
      expect(err.code).toBe(ErrorCodes.IO_FAILED);
      expect(err.message).toBe(`no space left to write ${target}; ${target} is incomplete`);
      expect(session.index.getTarget(target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    } finally {
      run('umount', [mountPoint]);
    }
  });
});

// ---- verify -------------------------------------------------------------------------

describe('verify', () => {
  let image: string;
  let snapshotId: string;
  let changed: string;

  beforeAll(async () => {
    image = pathFor('verify.img');
    await writeImage(image, 10 * BLOCK_SIZE + 4096, randomBlocks([0, 1, 2, 3, 4, 7, 10]));
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
});

// ---- diff ---------------------------------------------------------------------------

describe('diff', () => {
  it('counts and ranges are what changed between two snapshots, either way round', async () => {
    const image = pathFor('diff.img');
    await writeImage(image, 16 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3, 4, 5, 6, 7]));
    const first = await snapshotOf(image, 'diff');
    await patchImage(image, randomBlocks([1, 2, 3, 6, 12]));
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
    await writeImage(a, 2 * BLOCK_SIZE, randomBlocks([0]));
    await writeImage(b, 2 * BLOCK_SIZE, randomBlocks([1]));
    const err = await failure(diff(session, await snapshotOf(a, 'unrelated-a'), await snapshotOf(b, 'unrelated-b')));
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
      await writeImage(image, 32 * BLOCK_SIZE, randomBlocks([0, 1, 2, 3]));
      const s1 = await snapshotOf(image, 'lineage', own);
      await patchImage(image, randomBlocks([1]));
      const s2 = await snapshotOf(image, 'lineage', own);
      await patchImage(image, randomBlocks([2, 20]));
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
      await patchImage(image, randomBlocks([3]));
      const controller = new AbortController();
      const interrupted = await failure(
        backup({ ...own, writer: abortingWriter(own.writer, controller) }, { source: image, volume: 'lineage', parent: s1, signal: controller.signal }),
      );
      expect(interrupted.code).toBe(ErrorCodes.INTERRUPTED);
      const pending = own.index.pendingRun('lineage');
      expect(pending?.parentSnapshotId).toBe(s1);

      const pruned = await prune(own, { olderThanDays: 0, keepLast: 1 });
      expect(pruned.deleted.map((d) => d.snapshotId)).toEqual([s2]);
      expect(pruned.busyVolumes).toEqual([]);
      const remote = new Map((await own.catalog.describeSnapshots([s1, s2, s3])).map((s) => [s.snapshotId, s.state]));
      expect(remote.get(s1)).toBe('completed');
      expect(remote.has(s2)).toBe(false);
      expect(remote.get(s3)).toBe('completed');
      expect(own.index.getSnapshot(s2)?.state).toBe('deleted');
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
      await writeImage(image, 2 * BLOCK_SIZE, randomBlocks([0]));
      const ids = [];
      for (let i = 0; i < 4; i += 1) {
        await patchImage(image, randomBlocks([1]));
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
    await writeImage(image, 12 * BLOCK_SIZE + 777, randomBlocks([0, 2, 4, 6, 8, 12]));
    const snapshotId = await snapshotOf(image, 'rebuild');

    await withFreshIndex(async (fresh) => {
      const missing = await failure(rebuildIndex(fresh, { snapshotId, source: pathFor('no-such.img') }));
      expect(missing.code).toBe(ErrorCodes.SOURCE_UNUSABLE);

      const learned = await rebuildIndex(fresh, { snapshotId, source: image });
      expect(learned).toMatchObject({ snapshotId, volume: 'rebuild', blocks: 6, sourceBytes: 12 * BLOCK_SIZE + 777 });
      expect(fresh.index.check()).toEqual([]);

      expect(await verify(fresh, { source: image, snapshotId })).toMatchObject({ equal: true, expectedFrom: 'index' });

      await patchImage(image, randomBlocks([3, 8]));
      const next = await backup(fresh, { source: image, volume: 'rebuild' });
      expect(next).toMatchObject({ parentSnapshotId: snapshotId, blocksChanged: 2, blocksUploaded: 2 });
      const target = pathFor('rebuild-restored.img');
      await restore(fresh, { snapshotId: next.snapshotId!, target });
      await expectSameBytes(target, image);
    });
  });
});
