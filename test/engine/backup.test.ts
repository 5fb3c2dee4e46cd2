import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { abortError } from '../../src/core/abort.js';
import { checksumOf, linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import { BLOCK_SIZE, GIB } from '../../src/core/constants.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import type { BlockRanges } from '../../src/core/changed-ranges.js';
import { backup, type BackupDeps, type BackupOptions, type BackupProgress, type BackupResult } from '../../src/engine/backup/backup.js';
import { sampleBlocks } from '../../src/engine/backup/tracking.js';
import { SOURCE_BYTES_TAG, VOLUME_TAG } from '../../src/engine/blocks/remote-snapshot.js';
import { ErrorCodes } from '../../src/errors.js';
import { HashPool } from '../../src/hashing/index.js';
import { BlockIndex } from '../../src/index/index.js';
import { SlabPool } from '../../src/source/index.js';
import { MemoryEbs, awsFailure, type MemoryEbsOptions } from '../fakes/memory-ebs.js';
import { seededRandom } from '../support/images.js';
import { rejection } from '../support/rejection.js';

/**
 * The backup engine with real parts: a SQLite index file, the hash pool's
 * worker threads, the slab pool, image files on disk; the in-memory EBS fake
 * (behind the real retry wrappers) stands for AWS and checks counts, the
 * LINEAR aggregate and lineage.
 */

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
const FAST_RETRIES = { baseDelayMs: 1, maxDelayMs: 5 };

/** The fake, also remembering which block indexes it stored, in order. */
class RecordingEbs extends MemoryEbs {
  readonly stored: number[] = [];

  override async putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number): Promise<void> {
    await super.putBlock(snapshotId, blockIndex, data, checksum, progress);
    this.stored.push(blockIndex);
  }

  /** Block indexes stored since `mark` (a former stored.length), ascending and unique. */
  storedSince(mark: number): number[] {
    return sortedUnique(this.stored.slice(mark));
  }
}

/** A disk image in a file, with its bytes kept for comparison. */
class Image {
  constructor(
    readonly path: string,
    public bytes: Buffer,
  ) {
    writeFileSync(path, bytes);
  }

  get blockCount(): number {
    return Math.ceil(this.bytes.length / BLOCK_SIZE);
  }

  /** Block `i` as AWS holds it: the last partial block padded with zeros. */
  block(i: number): Buffer {
    const slice = this.bytes.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
    return slice.length === BLOCK_SIZE ? slice : Buffer.concat([slice, Buffer.alloc(BLOCK_SIZE - slice.length)]);
  }

  /** Overwrites whole blocks in the file and in `bytes`. */
  patch(blocks: ReadonlyMap<number, Buffer>): void {
    const fd = openSync(this.path, 'r+');
    try {
      for (const [i, data] of blocks) {
        writeSync(fd, data, 0, BLOCK_SIZE, i * BLOCK_SIZE);
        data.copy(this.bytes, i * BLOCK_SIZE);
      }
    } finally {
      closeSync(fd);
    }
  }

  /** Block indexes whose content is not all zeros. */
  nonZeroBlocks(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.blockCount; i += 1) if (!this.block(i).equals(ZERO_BLOCK)) out.push(i);
    return out;
  }
}

/** `count` blocks of random data, except the indexes in `zeros`. */
function imageBytes(count: number, zeros: Iterable<number> = []): Buffer {
  const bytes = randomBytes(count * BLOCK_SIZE);
  for (const i of zeros) bytes.fill(0, i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
  return bytes;
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, k) => from + k);
}

/** The blocks of `ranges`, one by one. */
function blocksOf(ranges: BlockRanges): number[] {
  return ranges.flatMap(([from, to]) => range(from, to));
}

function sortedUnique(indexes: Iterable<number>): number[] {
  return [...new Set(indexes)].sort((a, b) => a - b);
}

function without(all: readonly number[], taken: readonly number[]): number[] {
  const set = new Set(taken);
  return all.filter((i) => !set.has(i));
}

let hashPool: HashPool;
beforeAll(() => {
  hashPool = new HashPool({ threads: 2 });
});
afterAll(async () => {
  await hashPool.destroy();
});

/** One test's world: a temp dir with the index file and images, and a fresh fake. */
class Rig {
  readonly dir = mkdtempSync(join(tmpdir(), 'snapline-backup-test-'));
  readonly index = BlockIndex.open(join(this.dir, 'index.db'));
  readonly ebs: RecordingEbs;

  constructor(options: MemoryEbsOptions = {}) {
    this.ebs = new RecordingEbs(options);
  }

  image(name: string, bytes: Buffer): Image {
    return new Image(join(this.dir, name), bytes);
  }

  /** Engine dependencies as a session builds them: the fake behind the retry wrappers and one limiter per direction. */
  deps(options: { signal?: AbortSignal; writer?: (inner: SnapshotWriter) => SnapshotWriter } = {}): BackupDeps {
    const wrap = { policy: FAST_RETRIES, ...(options.signal ? { signal: options.signal } : {}) };
    const writer = resilientWriter(this.ebs, { ...wrap, limiter: new AdaptiveLimiter(8) });
    return {
      index: this.index,
      writer: options.writer ? options.writer(writer) : writer,
      reader: resilientReader(this.ebs, { ...wrap, limiter: new AdaptiveLimiter(8) }),
      catalog: this.ebs,
      hashPool,
      slabs: new SlabPool({ slabCount: 6, blocksPerSlab: 8 }),
    };
  }

  run(options: BackupOptions, deps: BackupDeps = this.deps()): Promise<BackupResult> {
    return backup(deps, options);
  }

  /** What the index says, for "unchanged" checks. */
  indexState(): string {
    return JSON.stringify({
      volumes: this.index.lineage.listVolumes(),
      snapshots: this.index.lineage.listSnapshots().map((s) => ({ ...s, written: s.state === 'pending' ? this.index.runs.writtenBlockCount(s.snapshotId) : null })),
    });
  }

  /** The snapshot in the fake holds the image block for block (never-written blocks read as zeros unless encrypted). */
  expectHolds(snapshotId: string, image: Image, { encrypted = false } = {}): void {
    expect(this.ebs.inspect(snapshotId)?.status).toBe('completed');
    const content = this.ebs.contentOf(snapshotId);
    for (let i = 0; i < image.blockCount; i += 1) {
      const actual = content.get(i);
      const expected = image.block(i);
      if (actual === undefined) {
        expect(encrypted, `block ${i} of an encrypted snapshot was never written`).toBe(false);
        expect(expected.equals(ZERO_BLOCK), `block ${i} is missing but not zero in the image`).toBe(true);
      } else {
        expect(actual.equals(expected), `block ${i} differs from the image`).toBe(true);
      }
    }
    expect([...content.keys()].filter((i) => i >= image.blockCount), 'blocks past the image').toEqual([]);
  }

  /** The index's map of a committed snapshot equals the image's digests (zero blocks absent or zero). */
  expectIndexMap(snapshotId: string, image: Image): void {
    const map = new Map<number, Buffer>();
    for (const { index, digest } of this.index.maps.blockMap(snapshotId)) map.set(index, Buffer.from(digest));
    for (let i = 0; i < image.blockCount; i += 1) {
      const digest = map.get(i);
      if (digest === undefined) expect(image.block(i).equals(ZERO_BLOCK), `index map lacks non-zero block ${i}`).toBe(true);
      else expect(digest.equals(sha256(image.block(i))), `index digest of block ${i}`).toBe(true);
    }
  }

  /**
   * Makes putBlock fail for good (AccessDenied, not retried) once `okCount`
   * blocks were stored; returns the switch that lets writes through again.
   */
  failPutsAfter(okCount: number): { stop(): void } {
    let failing = true;
    let seen = 0;
    this.ebs.failNext('putBlock', () => awsFailure('ebs:PutSnapshotBlock', 'AccessDeniedException'), {
      times: Number.MAX_SAFE_INTEGER,
      when: () => failing && ++seen > okCount,
    });
    return {
      stop: () => {
        failing = false;
      },
    };
  }

  cleanup(): void {
    this.index.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

let rigs: Rig[] = [];
function rig(options: MemoryEbsOptions = {}): Rig {
  const made = new Rig(options);
  rigs.push(made);
  return made;
}
afterEach(() => {
  for (const r of rigs) r.cleanup();
  rigs = [];
});


/** Writes a snapshot straight into the fake, outside snapline (e.g. taken in AWS after a restore there). */
async function snapshotOutside(ebs: MemoryEbs, blocks: ReadonlyMap<number, Buffer>, parentSnapshotId?: string): Promise<string> {
  const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1, ...(parentSnapshotId ? { parentSnapshotId } : {}) });
  const written: Array<{ index: number; digest: Buffer }> = [];
  for (const [index, data] of blocks) {
    const digest = sha256(data);
    await ebs.putBlock(snapshotId, index, data, checksumOf(digest));
    written.push({ index, digest });
  }
  written.sort((a, b) => a.index - b.index);
  expect(await ebs.completeSnapshot(snapshotId, written.length, linearAggregateOf(written))).toBe('completed');
  return snapshotId;
}

describe('full and incremental backups', () => {
  it('a full backup stores the image block for block, leaves zero blocks out and is recorded in the index', async () => {
    const r = rig();
    const zeros = [3, 7, 8, 20, 39];
    const image = r.image('disk.img', imageBytes(40, zeros));
    const progress: number[] = [];

    const result = await r.run({ source: image.path, onProgress: (p) => progress.push(p.blocksScanned) });

    const nonZero = image.nonZeroBlocks();
    expect(result).toMatchObject({
      parentSnapshotId: null,
      volume: 'disk.img',
      volumeSizeGiB: 1,
      sourceBytes: 40 * BLOCK_SIZE,
      blocksScanned: 40,
      blocksChanged: nonZero.length,
      blocksUploaded: nonZero.length,
      blocksZeroSkipped: zeros.length,
      bytesUploaded: nonZero.length * BLOCK_SIZE,
      resumed: false,
      dryRun: false,
    });
    const id = result.snapshotId!;
    expect(r.ebs.calls.putBlock).toBe(nonZero.length);
    expect(r.ebs.inspect(id)?.writtenIndexes).toEqual(nonZero);
    r.expectHolds(id, image);
    const [remote] = await r.ebs.describeSnapshots([id]);
    expect(remote?.tags).toMatchObject({ [VOLUME_TAG]: 'disk.img', [SOURCE_BYTES_TAG]: String(40 * BLOCK_SIZE) });
    expect(r.index.lineage.headSnapshot('disk.img')).toMatchObject({ snapshotId: id, state: 'completed', changedBlocks: nonZero.length });
    r.expectIndexMap(id, image);
    expect(progress.at(-1)).toBe(40);
  });

  it('an incremental backup with 1 % of the blocks changed uploads exactly those', async () => {
    const r = rig();
    const image = r.image('big.img', imageBytes(128));
    const first = await r.run({ source: image.path });
    const changed = [17, 90]; // ceil(1 % of 128)
    image.patch(new Map(changed.map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const mark = r.ebs.stored.length;
    const callsBefore = r.ebs.calls.putBlock;

    const second = await r.run({ source: image.path });

    expect(second).toMatchObject({ parentSnapshotId: first.snapshotId, blocksScanned: 128, blocksChanged: 2, blocksUploaded: 2 });
    expect(r.ebs.calls.putBlock - callsBefore).toBe(2);
    expect(r.ebs.storedSince(mark)).toEqual(changed);
    expect(r.ebs.inspect(second.snapshotId!)).toMatchObject({ parentId: first.snapshotId, writtenIndexes: changed });
    r.expectHolds(second.snapshotId!, image);
    r.expectIndexMap(second.snapshotId!, image);

    const third = await r.run({ source: image.path });
    expect(third).toMatchObject({ parentSnapshotId: second.snapshotId, blocksChanged: 0, blocksUploaded: 0 });
  });

  it('an image that is not GiB-aligned: the last partial block is padded and sourceBytes is exact', async () => {
    const r = rig();
    const size = 10 * BLOCK_SIZE + 1000;
    const image = r.image('odd.img', randomBytes(size));

    const result = await r.run({ source: image.path });

    expect(result).toMatchObject({ sourceBytes: size, volumeSizeGiB: 1, blocksScanned: 11, blocksUploaded: 11 });
    const last = r.ebs.contentOf(result.snapshotId!).get(10)!;
    expect(last.subarray(0, 1000).equals(image.bytes.subarray(10 * BLOCK_SIZE))).toBe(true);
    expect(last.subarray(1000).equals(Buffer.alloc(BLOCK_SIZE - 1000))).toBe(true);
    r.expectHolds(result.snapshotId!, image);
    expect(r.index.lineage.getSnapshot(result.snapshotId!)?.sourceBytes).toBe(size);
    expect(r.index.lineage.getVolume('odd.img')?.sizeBytes).toBe(size);
    const [remote] = await r.ebs.describeSnapshots([result.snapshotId!]);
    expect(remote?.tags[SOURCE_BYTES_TAG]).toBe(String(size));
  });
});

describe('zero blocks', () => {
  it('a child writes a block that became zero as zeros, and still leaves out blocks the lineage never wrote', async () => {
    const r = rig();
    const image = r.image('z.img', imageBytes(16, [9, 10]));
    const first = await r.run({ source: image.path });
    image.patch(new Map([[5, Buffer.alloc(BLOCK_SIZE)]]));

    const second = await r.run({ source: image.path });

    expect(second).toMatchObject({ blocksChanged: 1, blocksUploaded: 1, blocksZeroSkipped: 2 });
    expect(r.ebs.inspect(second.snapshotId!)?.writtenIndexes).toEqual([5]);
    expect(r.ebs.contentOf(second.snapshotId!).get(5)?.equals(ZERO_BLOCK)).toBe(true);
    expect(r.ebs.contentOf(first.snapshotId!).get(5)?.equals(ZERO_BLOCK)).toBe(false);
    r.expectHolds(second.snapshotId!, image);
  });

  it('an encrypted snapshot gets every zero block written (unwritten blocks would read as random data)', async () => {
    const r = rig();
    const zeros = [0, 4, 5, 11];
    const image = r.image('enc.img', imageBytes(12, zeros));

    const result = await r.run({ source: image.path, encrypted: true });

    expect(result).toMatchObject({ blocksUploaded: 12, blocksZeroSkipped: 0 });
    expect(r.ebs.inspect(result.snapshotId!)).toMatchObject({ encrypted: true, writtenIndexes: range(0, 12) });
    r.expectHolds(result.snapshotId!, image, { encrypted: true });
  });

  it('encryption by default in the account counts as encrypted: zero blocks are written', async () => {
    const r = rig({ encryptionByDefault: true });
    const image = r.image('def.img', imageBytes(6, [1, 2]));

    const result = await r.run({ source: image.path });

    expect(result).toMatchObject({ blocksUploaded: 6, blocksZeroSkipped: 0 });
    expect(r.ebs.inspect(result.snapshotId!)).toMatchObject({ encrypted: true, writtenIndexes: range(0, 6) });
    expect(r.index.lineage.getSnapshot(result.snapshotId!)?.encrypted).toBe(true);
  });

  it('GetEbsEncryptionByDefault, asked alongside DescribeSnapshots, fails an incremental only where its answer counts (an unencrypted parent)', async () => {
    const r = rig();
    const sealed = r.image('sealed.img', imageBytes(4, [1]));
    const plain = r.image('plain.img', imageBytes(4, [1]));
    const sealedHead = await r.run({ source: sealed.path, encrypted: true });
    await r.run({ source: plain.path });
    const denied = () => awsFailure('ec2:GetEbsEncryptionByDefault', 'AccessDeniedException');

    r.ebs.failNext('encryptionByDefault', denied);
    const child = await r.run({ source: sealed.path });
    expect(child).toMatchObject({ parentSnapshotId: sealedHead.snapshotId, blocksUploaded: 0 });

    r.ebs.failNext('encryptionByDefault', denied);
    expect(await rejection(r.run({ source: plain.path }))).toMatchObject({ code: ErrorCodes.ACCESS_DENIED });
  });
});

describe('parents', () => {
  it('reconciles a parent taken elsewhere: uploads what ListChangedBlocks reports plus what changed, and the result equals the image', async () => {
    const r = rig();
    const image = r.image('p.img', imageBytes(32, [20, 21, 22, 23]));
    const head = await r.run({ source: image.path });
    // Taken outside snapline on the head: junk at 3, junk at 21 (zero in the image, never in the head),
    // and block 10 rewritten with the same bytes (a change by write, not by content).
    const elsewhere = await snapshotOutside(
      r.ebs,
      new Map([
        [3, randomBytes(BLOCK_SIZE)],
        [21, randomBytes(BLOCK_SIZE)],
        [10, Buffer.from(image.block(10))],
      ]),
      head.snapshotId!,
    );
    image.patch(new Map([7, 12].map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const mark = r.ebs.stored.length;

    const result = await r.run({ source: image.path, parent: elsewhere });

    expect(r.ebs.storedSince(mark)).toEqual([3, 7, 10, 12, 21]);
    expect(result).toMatchObject({ parentSnapshotId: elsewhere, blocksChanged: 5, blocksUploaded: 5 });
    expect(r.ebs.inspect(result.snapshotId!)?.parentId).toBe(elsewhere);
    r.expectHolds(result.snapshotId!, image);
    expect(r.index.lineage.getSnapshot(result.snapshotId!)).toMatchObject({ parentSnapshotId: elsewhere, baseSnapshotId: head.snapshotId });
    r.expectIndexMap(result.snapshotId!, image);

    // The index now vouches for the reconciled snapshot: the next run uploads nothing.
    const next = await r.run({ source: image.path });
    expect(next).toMatchObject({ parentSnapshotId: result.snapshotId, blocksUploaded: 0 });
  });

  it('a parent the index does not know and no head: NOT_FOUND with a hint, nothing started, index unchanged', async () => {
    const r = rig();
    const image = r.image('n.img', imageBytes(4));
    const foreign = await snapshotOutside(r.ebs, new Map([[0, randomBytes(BLOCK_SIZE)]]));
    const before = r.indexState();

    const err = await rejection(r.run({ source: image.path, parent: foreign }));

    expect(err.code).toBe(ErrorCodes.NOT_FOUND);
    expect(err.message).toContain(foreign);
    expect(err.hint).toContain('--full');
    expect(err.hint).toContain(`snapline index rebuild ${foreign}`);
    expect(r.ebs.calls.startSnapshot).toBe(1);
    expect(r.indexState()).toBe(before);
  });

  it('a parent that does not exist in AWS: NOT_FOUND naming it', async () => {
    const r = rig();
    const image = r.image('m.img', imageBytes(4));

    const err = await rejection(r.run({ source: image.path, parent: 'snap-0123456789abcdef0' }));

    expect(err.code).toBe(ErrorCodes.NOT_FOUND);
    expect(err.message).toContain('snap-0123456789abcdef0');
    expect(r.ebs.calls.startSnapshot).toBe(0);
    expect(r.index.lineage.listVolumes()).toEqual([]);
  });

  it('a parent of another lineage: REMOTE_REJECTED, nothing started', async () => {
    const r = rig();
    const image = r.image('u.img', imageBytes(4));
    const head = await r.run({ source: image.path });
    const unrelated = await snapshotOutside(r.ebs, new Map([[1, randomBytes(BLOCK_SIZE)]]));
    const before = r.indexState();
    const starts = r.ebs.calls.startSnapshot;

    const err = await rejection(r.run({ source: image.path, parent: unrelated }));

    expect(err.code).toBe(ErrorCodes.REMOTE_REJECTED);
    expect(err.message).toContain(unrelated);
    expect(err.message).toContain(head.snapshotId!);
    expect(err.hint).toContain('--full');
    expect(r.ebs.calls.startSnapshot).toBe(starts);
    expect(r.indexState()).toBe(before);
  });

  it("a source grown past the lineage's VolumeSize: SOURCE_UNUSABLE before anything is read or started", async () => {
    const r = rig();
    const image = r.image('g.img', imageBytes(4));
    await r.run({ source: image.path });
    truncateSync(image.path, GIB + BLOCK_SIZE); // sparse: nothing is written to disk
    const before = r.indexState();
    const starts = r.ebs.calls.startSnapshot;

    const err = await rejection(r.run({ source: image.path }));

    expect(err.code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(err.message).toMatch(/grown to 2 GiB, past the 1 GiB/);
    expect(err.hint).toContain('--full');
    expect(r.ebs.calls.startSnapshot).toBe(starts);
    expect(r.indexState()).toBe(before);
  });
});

describe('resume', () => {
  it('continues the same snapshot after a permanent upload failure, uploading only the missing blocks', async () => {
    const r = rig();
    const image = r.image('r.img', imageBytes(48));
    const failing = r.failPutsAfter(20);

    const err = await rejection(r.run({ source: image.path }));
    expect(err.code).toBe(ErrorCodes.ACCESS_DENIED);
    const pending = r.index.runs.pendingRun('r.img')!;
    expect(pending.state).toBe('pending');
    const storedFirst = r.ebs.inspect(pending.snapshotId)!.writtenIndexes;
    expect(storedFirst.length).toBeGreaterThanOrEqual(20);
    expect(storedFirst.length).toBeLessThan(48);
    // Every block the fake stored was journaled.
    expect([...r.index.runs.writtenBlocks(pending.snapshotId)].map((b) => b.index)).toEqual(storedFirst);

    failing.stop();
    const mark = r.ebs.stored.length;
    const result = await r.run({ source: image.path });

    expect(result).toMatchObject({ snapshotId: pending.snapshotId, resumed: true, blocksUploaded: 48 - storedFirst.length });
    expect(r.ebs.storedSince(mark)).toEqual(without(range(0, 48), storedFirst));
    // The fake checked ChangedBlocksCount and the LINEAR aggregate over both runs' blocks.
    r.expectHolds(pending.snapshotId, image);
    expect(r.index.lineage.headSnapshot('r.img')).toMatchObject({ snapshotId: pending.snapshotId, changedBlocks: 48 });
    expect(r.index.runs.pendingRun('r.img')).toBeUndefined();
  });

  it('uploads again a block whose intent was recorded but never acknowledged', async () => {
    const r = rig();
    const image = r.image('i.img', imageBytes(24));
    const failing = r.failPutsAfter(10);
    await rejection(r.run({ source: image.path }));
    const { snapshotId } = r.index.runs.pendingRun('i.img')!;
    const storedFirst = r.ebs.inspect(snapshotId)!.writtenIndexes;
    // A crash after the intent and the upload, before the acknowledgement reached the journal.
    const unsure = storedFirst[3]!;
    r.index.runs.recordIntents(snapshotId, [{ index: unsure, digest: sha256(image.block(unsure)) }]);

    failing.stop();
    const mark = r.ebs.stored.length;
    const result = await r.run({ source: image.path });

    expect(result.snapshotId).toBe(snapshotId);
    expect(r.ebs.storedSince(mark)).toEqual(sortedUnique([unsure, ...without(range(0, 24), storedFirst)]));
    r.expectHolds(snapshotId, image);
  });

  it('a crash between CompleteSnapshot and the index commit: the rerun only watches and commits, uploading nothing', async () => {
    const r = rig({ pendingPolls: 3 });
    const image = r.image('c.img', imageBytes(16));
    const abort = new AbortController();

    const err = await rejection(
      r.run({ source: image.path, signal: abort.signal, onProgress: (p) => p.phase === 'wait' && abort.abort() }, r.deps({ signal: abort.signal })),
    );
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const pending = r.index.runs.pendingRun('c.img')!;
    expect(pending.state).toBe('completing');
    expect(err.message).toContain(pending.snapshotId);
    expect(r.index.lineage.headSnapshot('c.img')).toBeUndefined();
    const puts = r.ebs.calls.putBlock;
    expect(puts).toBe(16);

    const result = await r.run({ source: image.path });

    expect(result).toMatchObject({ snapshotId: pending.snapshotId, resumed: true, blocksUploaded: 0 });
    expect(r.ebs.calls.putBlock).toBe(puts);
    expect(r.index.lineage.headSnapshot('c.img')?.snapshotId).toBe(pending.snapshotId);
    r.expectHolds(pending.snapshotId, image);
  });

  it('a run marked completing whose CompleteSnapshot never reached the service: the rerun completes it', async () => {
    const r = rig();
    const image = r.image('k.img', imageBytes(8));
    r.ebs.failNext('completeSnapshot', awsFailure('ebs:CompleteSnapshot', 'AccessDeniedException'));

    const err = await rejection(r.run({ source: image.path }));
    expect(err.code).toBe(ErrorCodes.ACCESS_DENIED);
    const pending = r.index.runs.pendingRun('k.img')!;
    expect(pending.state).toBe('completing');
    expect(r.ebs.inspect(pending.snapshotId)?.status).toBe('pending');

    const result = await r.run({ source: image.path, waitTimeoutMs: 5000 });

    expect(result).toMatchObject({ snapshotId: pending.snapshotId, blocksUploaded: 0 });
    r.expectHolds(pending.snapshotId, image);
  });

  it('aborted mid-scan: INTERRUPTED names the pending snapshot, and the next run resumes it without uploading a block twice', async () => {
    const r = rig();
    const image = r.image('a.img', imageBytes(64));
    const abort = new AbortController();
    let stored = 0;
    const deps = r.deps({
      signal: abort.signal,
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        completeSnapshot: (...args) => inner.completeSnapshot(...args),
        putBlock: async (...args) => {
          await inner.putBlock(...args);
          if (++stored === 10) abort.abort();
        },
      }),
    });

    const err = await rejection(r.run({ source: image.path, signal: abort.signal }, deps));

    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const pending = r.index.runs.pendingRun('a.img')!;
    expect(err.message).toContain(pending.snapshotId);
    expect(err.hint).toMatch(/run the same command again/);
    expect(err.details).toMatchObject({ snapshotId: pending.snapshotId });
    const storedFirst = r.ebs.inspect(pending.snapshotId)!.writtenIndexes;
    expect(storedFirst.length).toBeLessThan(64);

    const mark = r.ebs.stored.length;
    const result = await r.run({ source: image.path });

    expect(result).toMatchObject({ snapshotId: pending.snapshotId, resumed: true });
    expect(r.ebs.storedSince(mark)).toEqual(without(range(0, 64), storedFirst));
    r.expectHolds(pending.snapshotId, image);
  });

  it('a snapshot that completes to error: BAD_STATE, the index does not claim it, and the next run starts afresh', async () => {
    const r = rig({ pendingPolls: 1 });
    const image = r.image('e.img', imageBytes(8));
    // Someone else writes into the pending snapshot: its count and aggregate no longer match.
    const deps = r.deps({
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        putBlock: (...args) => inner.putBlock(...args),
        completeSnapshot: async (snapshotId, count, aggregate) => {
          const junk = randomBytes(BLOCK_SIZE);
          await r.ebs.putBlock(snapshotId, 1000, junk, checksumOf(sha256(junk)));
          return inner.completeSnapshot(snapshotId, count, aggregate);
        },
      }),
    });

    const err = await rejection(r.run({ source: image.path }, deps));

    expect(err.code).toBe(ErrorCodes.BAD_STATE);
    const failed = String(err.details?.snapshotId);
    expect(err.message).toContain(failed);
    expect(r.ebs.inspect(failed)?.status).toBe('error');
    expect(r.index.lineage.getSnapshot(failed)?.state).toBe('error');
    expect(r.index.lineage.headSnapshot('e.img')).toBeUndefined();
    expect(r.index.runs.pendingRun('e.img')).toBeUndefined();

    const next = await r.run({ source: image.path });
    expect(next.snapshotId).not.toBe(failed);
    expect(next).toMatchObject({ parentSnapshotId: null, resumed: false });
    r.expectHolds(next.snapshotId!, image);
  });

  it('other arguments while a run is pending: CONFLICT; discardPending abandons the pending run', async () => {
    const r = rig();
    const image = r.image('d.img', imageBytes(12));
    const failing = r.failPutsAfter(4);
    await rejection(r.run({ source: image.path, description: 'first' }));
    failing.stop();
    const { snapshotId } = r.index.runs.pendingRun('d.img')!;
    const before = r.indexState();

    const err = await rejection(r.run({ source: image.path, description: 'second' }));
    expect(err.code).toBe(ErrorCodes.CONFLICT);
    expect(err.message).toContain(snapshotId);
    expect(err.hint).toContain('--discard-pending');
    expect(r.indexState()).toBe(before);

    const result = await r.run({ source: image.path, description: 'second', discardPending: true });
    expect(result.snapshotId).not.toBe(snapshotId);
    expect(result.resumed).toBe(false);
    expect(r.index.lineage.getSnapshot(snapshotId)?.state).toBe('error');
    r.expectHolds(result.snapshotId!, image);
  });
});

describe('runs that must not write', () => {
  it('two backups of one volume at once: the second gets CONFLICT and the first completes', async () => {
    const r = rig();
    const image = r.image('two.img', imageBytes(16));
    // The first run's uploads wait at a gate until the second has been refused.
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let uploading!: () => void;
    const firstUpload = new Promise<void>((resolve) => (uploading = resolve));
    const gated = r.deps({
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        completeSnapshot: (...args) => inner.completeSnapshot(...args),
        putBlock: async (...args) => {
          uploading();
          await gate;
          return inner.putBlock(...args);
        },
      }),
    });
    const first = r.run({ source: image.path }, gated);
    await firstUpload;

    const err = await rejection(r.run({ source: image.path }));
    openGate();

    expect(err.code).toBe(ErrorCodes.CONFLICT);
    expect(err.message).toContain('volume:two.img');
    const done = await first;
    expect(r.ebs.calls.startSnapshot).toBe(1);
    r.expectHolds(done.snapshotId!, image);
  });

  it('a dry run plans only: no snapshot started, nothing uploaded, the index unchanged', async () => {
    const r = rig();
    const image = r.image('dry.img', imageBytes(20, [2, 3]));

    const fresh = await r.run({ source: image.path, dryRun: true });
    expect(fresh).toMatchObject({ dryRun: true, snapshotId: null, blocksScanned: 20, blocksChanged: 18, blocksUploaded: 0, blocksZeroSkipped: 2 });
    expect(r.ebs.calls.startSnapshot).toBe(0);
    expect(r.ebs.calls.putBlock).toBe(0);
    expect(r.index.lineage.listVolumes()).toEqual([]);

    const head = await r.run({ source: image.path });
    image.patch(new Map([4, 9, 15].map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const before = r.indexState();
    const calls = { ...r.ebs.calls };

    const planned = await r.run({ source: image.path, dryRun: true });

    expect(planned).toMatchObject({ dryRun: true, snapshotId: null, parentSnapshotId: head.snapshotId, blocksChanged: 3, blocksUploaded: 0 });
    expect(r.ebs.calls.startSnapshot).toBe(calls.startSnapshot);
    expect(r.ebs.calls.putBlock).toBe(calls.putBlock);
    expect(r.indexState()).toBe(before);
  });
});


describe('change trackers', () => {
  it('a changed-blocks run reads only the blocks it lists; interrupted, it resumes the same snapshot, reading them again and uploading only what is missing', async () => {
    const r = rig();
    const image = r.image('t.img', imageBytes(64));
    await r.run({ source: image.path, checkpoint: 'c1' });
    const changed = [3, 4, 5, 20, 21, 22, 23, 40, 41, 50, 60, 63];
    image.patch(new Map(changed.map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const file = join(r.dir, 'changes.txt');
    writeFileSync(file, changed.map((i) => `${i * BLOCK_SIZE + 100} 1`).join('\n'));
    const options = { source: image.path, changedBlocksFile: file, sinceCheckpoint: 'c1', checkpoint: 'c2' };
    const abort = new AbortController();
    let sent = 0;
    const deps = r.deps({
      signal: abort.signal,
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        completeSnapshot: (...args) => inner.completeSnapshot(...args),
        // Four uploads are stored, then the run is aborted; uploads sent after the fourth end with the abort, as a transfer in flight does.
        putBlock: async (...args) => {
          const n = ++sent;
          if (n > 4) {
            await new Promise((resolve) => (abort.signal.aborted ? resolve(undefined) : abort.signal.addEventListener('abort', resolve, { once: true })));
            throw abortError(abort.signal);
          }
          await inner.putBlock(...args);
          if (n === 4) abort.abort();
        },
      }),
    });

    const err = await rejection(r.run({ ...options, signal: abort.signal }, deps));
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const pending = r.index.runs.pendingRun('t.img')!;
    const storedFirst = r.ebs.inspect(pending.snapshotId)!.writtenIndexes;
    expect(storedFirst.length).toBeLessThan(changed.length);

    const mark = r.ebs.stored.length;
    const result = await r.run(options);
    expect(result).toMatchObject({ snapshotId: pending.snapshotId, resumed: true, blocksScanned: 12, blocksRead: 12, changeTracking: { scan: 'tracked', blocksMarked: 12 } });
    expect(r.ebs.storedSince(mark)).toEqual(without(changed, storedFirst));
    r.expectHolds(pending.snapshotId, image);
    expect(r.index.trackers.get(pending.snapshotId)).toMatchObject({ kind: 'changed-blocks', sinceCheckpoint: 'c1', checkpoint: 'c2', scan: 'tracked' });
  });

  it('a changed-blocks file that leaves out a changed block: trusted, the snapshot lacks the change; with verifyUnchangedPercent 100, TRACKER_UNTRUSTED and nothing started', async () => {
    const r = rig();
    const image = r.image('l.img', imageBytes(16));
    await r.run({ source: image.path, checkpoint: 'c1' });
    image.patch(new Map([[2, randomBytes(BLOCK_SIZE)], [9, randomBytes(BLOCK_SIZE)]]));
    const file = join(r.dir, 'changes.txt');
    writeFileSync(file, `${2 * BLOCK_SIZE} 10\n`);
    const options = { source: image.path, changedBlocksFile: file, sinceCheckpoint: 'c1' };

    const blind = await r.run({ ...options, dryRun: true });
    expect(blind).toMatchObject({ blocksRead: 1, blocksChanged: 1 });

    const before = r.indexState();
    const calls = { ...r.ebs.calls };
    const err = await rejection(r.run({ ...options, verifyUnchangedPercent: 100 }));
    expect(err).toMatchObject({ code: ErrorCodes.TRACKER_UNTRUSTED, details: { option: 'verifyUnchangedPercent', blocksCompared: 15, blocksDiffering: 1, firstBlocks: [9] } });
    expect(err.message).toContain(`the changed-blocks file ${file} cannot be trusted: 1 of 15 blocks it calls unchanged differ from the parent`);
    expect(r.ebs.calls.startSnapshot).toBe(calls.startSnapshot);
    expect(r.ebs.calls.putBlock).toBe(calls.putBlock);
    expect(r.indexState()).toBe(before);
  });

  it('a tracker marking scattered single blocks hands uploads to the limiter beyond one a slab: a one-block range holds no whole slab', async () => {
    const r = rig();
    const image = r.image('w.img', imageBytes(256));
    await r.run({ source: image.path, checkpoint: 'c1' });
    const changed = range(0, 32).map((k) => k * 8);
    image.patch(new Map(changed.map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const file = join(r.dir, 'changes.txt');
    writeFileSync(file, changed.map((i) => `${i * BLOCK_SIZE} 1`).join('\n'));
    let inFlight = 0;
    let most = 0;
    const deps = r.deps({
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        completeSnapshot: (...args) => inner.completeSnapshot(...args),
        putBlock: async (...args) => {
          most = Math.max(most, (inFlight += 1));
          try {
            await new Promise((resolve) => setTimeout(resolve, 20));
            await inner.putBlock(...args);
          } finally {
            inFlight -= 1;
          }
        },
      }),
    });
    const result = await r.run({ source: image.path, changedBlocksFile: file, sinceCheckpoint: 'c1' }, deps);
    expect(result).toMatchObject({ blocksRead: 32, blocksUploaded: 32 });
    // The rig's pool holds 6 slabs of 8 blocks: with a slab a block, at most 6 uploads (fewer, some slabs being read) were ever handed on.
    expect(most).toBeGreaterThan(6);
    r.expectHolds(result.snapshotId!, image);
  });

  it('a tracked run of scattered single blocks writes its journal in batches: fewer transactions than blocks, each upload sent after its intent was written', async () => {
    const r = rig();
    const image = r.image('j.img', imageBytes(256));
    await r.run({ source: image.path, checkpoint: 'c1' });
    const changed = range(0, 32).map((k) => k * 8);
    image.patch(new Map(changed.map((i) => [i, randomBytes(BLOCK_SIZE)])));
    const file = join(r.dir, 'changes.txt');
    writeFileSync(file, changed.map((i) => `${i * BLOCK_SIZE} 1`).join('\n'));
    const runs = r.index.runs;
    const intended = new Set<number>();
    let writes = 0;
    // Every journal write the run makes, whichever method makes it, is one transaction.
    const journal = new Proxy(runs, {
      get: (target, key) => {
        const value: unknown = Reflect.get(target, key, target);
        if (typeof value !== 'function') return value;
        const method = (value as (...args: unknown[]) => unknown).bind(target);
        if (key !== 'recordIntents' && key !== 'recordBlocks' && key !== 'recordJournal') return method;
        return (snapshotId: string, batch: unknown) => {
          writes += 1;
          method(snapshotId, batch);
          const intents = key === 'recordIntents' ? batch : key === 'recordJournal' ? (batch as { intents: unknown }).intents : [];
          for (const block of intents as Array<{ index: number }>) intended.add(block.index);
        };
      },
    });
    const sentBeforeIntent: number[] = [];
    const deps = r.deps({
      writer: (inner) => ({
        startSnapshot: (input) => inner.startSnapshot(input),
        completeSnapshot: (...args) => inner.completeSnapshot(...args),
        putBlock: async (snapshotId, blockIndex, ...rest) => {
          if (!intended.has(blockIndex)) sentBeforeIntent.push(blockIndex);
          await inner.putBlock(snapshotId, blockIndex, ...rest);
        },
      }),
    });
    const result = await r.run({ source: image.path, changedBlocksFile: file, sinceCheckpoint: 'c1' }, { ...deps, index: { ...deps.index, runs: journal } });
    expect(result).toMatchObject({ blocksRead: 32, blocksUploaded: 32 });
    expect(sentBeforeIntent).toEqual([]);
    // One transaction a slab for its intents and one for its acknowledgements would be 64.
    expect(writes).toBeLessThan(changed.length);
    r.expectHolds(result.snapshotId!, image);
  });

  it('verifyUnchangedPercent below 100 reads exactly its sample: a lie in a sampled block fails the run, one outside it passes unseen; both say how many blocks were sampled', async () => {
    const r = rig();
    const image = r.image('s.img', imageBytes(32));
    await r.run({ source: image.path, checkpoint: 'c1' });
    const file = join(r.dir, 'changes.txt');
    writeFileSync(file, `${2 * BLOCK_SIZE} 10\n`);
    const options = { source: image.path, changedBlocksFile: file, verifyUnchangedPercent: 25 };
    // The 31 blocks the file calls unchanged; a 25 % sample of them holds ceil(7.75) = 8, which the same seed draws again.
    const unchanged: BlockRanges = [[0, 2], [3, 32]];
    const sample = blocksOf(sampleBlocks(unchanged, 25, seededRandom(7)));
    expect(sample).toHaveLength(8);
    const outside = without(range(0, 32), [2, ...sample]);
    const phases: BackupProgress[] = [];

    image.patch(new Map([[2, randomBytes(BLOCK_SIZE)], [outside[0]!, randomBytes(BLOCK_SIZE)]]));
    const unseen = await r.run({ ...options, sinceCheckpoint: 'c1', checkpoint: 'c2', onProgress: (p) => phases.push(p) }, { ...r.deps(), random: seededRandom(7) });
    expect(unseen).toMatchObject({ blocksRead: 1, blocksUploaded: 1, changeTracking: { scan: 'tracked', blocksMarked: 1, blocksUnchanged: 31, blocksVerified: 8 } });
    expect(phases.filter((p) => p.phase === 'verify')).toEqual([expect.objectContaining({ blocksSampled: 8 })]);

    // The same blocks called unchanged and the same seed: the same sample, which now holds a lie (the one outside it stays unseen).
    image.patch(new Map([[sample[3]!, randomBytes(BLOCK_SIZE)]]));
    const calls = { ...r.ebs.calls };
    const err = await rejection(r.run({ ...options, sinceCheckpoint: 'c2' }, { ...r.deps(), random: seededRandom(7) }));
    expect(err).toMatchObject({
      code: ErrorCodes.TRACKER_UNTRUSTED,
      details: { option: 'verifyUnchangedPercent', blocksUnchanged: 31, blocksCompared: 8, blocksDiffering: 1, firstBlocks: [sample[3]] },
    });
    expect(err.message).toContain('1 of 8 blocks it calls unchanged differ from the parent');
    expect(err.message).toContain('(a random sample of 8 of the 31 blocks it calls unchanged: 25 %)');
    expect(r.ebs.calls.startSnapshot).toBe(calls.startSnapshot);
  });
});
