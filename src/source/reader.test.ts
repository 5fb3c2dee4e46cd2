import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { openSource, type BlockSource } from './open.js';
import { nativeHoleSeeker } from './holes.js';
import { MAX_HOLE_RUN_BLOCKS, readSlabs, type SourceRun } from './reader.js';
import { SlabPool, type Slab } from './slabs.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-reader-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withSource<T>(data: Buffer, use: (source: BlockSource) => Promise<T>): Promise<T> {
  const path = join(dir, `image-${randomBytes(4).toString('hex')}.raw`);
  await writeFile(path, data);
  const source = await openSource(path);
  try {
    return await use(source);
  } finally {
    await source.close();
  }
}

/** The slab of a run that must not be a hole. */
function slabOf(run: SourceRun): Slab {
  if (run.hole) throw new Error(`unexpected hole run at block ${run.firstBlock}`);
  return run.slab;
}

/** Collects the blocks the reader yields as copies (zeros for hole runs, unless `keepBytes` is false), releasing each slab. */
async function collect(
  runs: AsyncIterable<SourceRun>,
  keepBytes = true,
): Promise<{ ranges: Array<[number, number]>; holes: Array<[number, number]>; bytes: Buffer }> {
  const ranges: Array<[number, number]> = [];
  const holes: Array<[number, number]> = [];
  const parts: Buffer[] = [];
  for await (const run of runs) {
    if (run.hole) {
      holes.push([run.firstBlock, run.blockCount]);
      if (keepBytes) parts.push(Buffer.alloc(run.blockCount * BLOCK_SIZE));
      continue;
    }
    ranges.push([run.firstBlock, run.blockCount]);
    if (keepBytes) parts.push(Buffer.from(run.slab.bytes.subarray(0, run.blockCount * BLOCK_SIZE)));
    run.slab.release();
  }
  return { ranges, holes, bytes: Buffer.concat(parts) };
}

/** `data` zero-padded to whole blocks. */
function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc(Math.ceil(data.byteLength / BLOCK_SIZE) * BLOCK_SIZE - data.byteLength)]);
}

describe('readSlabs', () => {
  it('covers the whole source in ascending order, the last partial block padded with zeros, slabs reused', async () => {
    const data = randomBytes(7 * BLOCK_SIZE + 1234);
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 3 });
    const { ranges, bytes } = await withSource(data, (source) => collect(readSlabs(source, pool)));
    expect(ranges).toEqual([
      [0, 3],
      [3, 3],
      [6, 2],
    ]);
    // The one slab was full of random bytes from the earlier reads: the padding must still be zeros.
    expect(bytes.equals(padded(data))).toBe(true);
  });

  it('reads [fromBlock, toBlock) only', async () => {
    const data = randomBytes(10 * BLOCK_SIZE + 99);
    const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 4 });
    const { ranges, bytes } = await withSource(data, (source) => collect(readSlabs(source, pool, { fromBlock: 3, toBlock: 9 })));
    expect(ranges).toEqual([
      [3, 4],
      [7, 2],
    ]);
    expect(bytes.equals(data.subarray(3 * BLOCK_SIZE, 9 * BLOCK_SIZE))).toBe(true);
    const tail = await withSource(data, (source) => collect(readSlabs(source, pool, { fromBlock: 10 })));
    expect(tail.ranges).toEqual([[10, 1]]);
    expect(tail.bytes.equals(padded(data).subarray(10 * BLOCK_SIZE))).toBe(true);
    const none = await withSource(data, (source) => collect(readSlabs(source, pool, { fromBlock: 5, toBlock: 5 })));
    expect(none.ranges).toEqual([]);
  });

  it('refuses a range outside the source', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    await withSource(randomBytes(2 * BLOCK_SIZE), async (source) => {
      for (const range of [{ toBlock: 3 }, { fromBlock: -1 }, { fromBlock: 2, toBlock: 1 }, { fromBlock: 0.5 }]) {
        await expect(collect(readSlabs(source, pool, range))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      }
    });
  });

  it('waits for a free slab: never more slabs out than the pool holds', async () => {
    const data = randomBytes(4 * BLOCK_SIZE);
    const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 1 });
    await withSource(data, async (source) => {
      const reader = readSlabs(source, pool);
      const first = await reader.next();
      const second = await reader.next();
      let thirdArrived = false;
      const third = reader.next().then((result) => ((thirdArrived = true), result));
      for (let i = 0; i < 20 && !thirdArrived; i += 1) await new Promise((resolve) => setImmediate(resolve));
      expect(thirdArrived).toBe(false);
      if (first.done || second.done) throw new Error('expected two slabs');
      slabOf(first.value).release();
      const next = await third;
      if (next.done) throw new Error('expected a third slab');
      expect(next.value.firstBlock).toBe(2);
      expect(slabOf(next.value).buffer).toBe(slabOf(first.value).buffer);
      slabOf(second.value).release();
      slabOf(next.value).release();
      await reader.return(undefined);
    });
  });

  it('on abort throws INTERRUPTED and releases the slab it holds; the consumer keeps what it was given', async () => {
    const data = randomBytes(6 * BLOCK_SIZE);
    const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 1 });
    const controller = new AbortController();
    await withSource(data, async (source) => {
      const reader = readSlabs(source, pool, { signal: controller.signal });
      const first = await reader.next();
      if (first.done) throw new Error('expected a slab');
      // The reader acquires the second slab, reads, then sees the abort before handing it over.
      const pending = reader.next();
      controller.abort();
      await expect(pending).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED });
      expect(await reader.next()).toEqual({ done: true, value: undefined });
      // The second slab is back in the pool; the first is still the consumer's.
      const again = await pool.acquire();
      slabOf(first.value).release();
      const last = await pool.acquire();
      again.release();
      last.release();
    });
  });

  it('on abort while waiting for a slab holds nothing and throws the signal reason', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    const controller = new AbortController();
    const reason = new SnaplineError(ErrorCodes.INTERRUPTED, 'stopped by SIGTERM');
    await withSource(randomBytes(3 * BLOCK_SIZE), async (source) => {
      const reader = readSlabs(source, pool, { signal: controller.signal });
      const first = await reader.next();
      if (first.done) throw new Error('expected a slab');
      const pending = reader.next();
      controller.abort(reason);
      await expect(pending).rejects.toBe(reason);
      slabOf(first.value).release();
      (await pool.acquire()).release();
    });
  });

  it('a consumer that stops early leaves no slab leased by the reader', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    await withSource(randomBytes(3 * BLOCK_SIZE), async (source) => {
      for await (const run of readSlabs(source, pool)) {
        slabOf(run).release();
        break;
      }
      (await pool.acquire()).release();
    });
  });

  it('reports a source truncated under it as SOURCE_UNUSABLE and releases the slab', async () => {
    const path = join(dir, 'shrinking.raw');
    await writeFile(path, randomBytes(4 * BLOCK_SIZE));
    const source = await openSource(path);
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 2 });
    try {
      const reader = readSlabs(source, pool);
      const first = await reader.next();
      if (first.done) throw new Error('expected a slab');
      slabOf(first.value).release();
      await truncate(path, 3 * BLOCK_SIZE);
      const error = await reader.next().catch((err: unknown) => err);
      expect(error).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE });
      expect((error as Error).message).toContain(path);
      (await pool.acquire()).release();
    } finally {
      await source.close();
    }
  });
});

/** An in-memory source with given data regions (byte ranges); everything else is a hole of zeros. */
function regionSource(sizeBytes: number, regions: Array<[number, number]>, fill = 7): BlockSource & { reads: Array<[number, number]> } {
  const reads: Array<[number, number]> = [];
  return {
    path: 'memory',
    kind: 'file',
    sizeBytes,
    fd: -1,
    reads,
    async read(target, position) {
      const length = Math.max(0, Math.min(target.byteLength, sizeBytes - position));
      reads.push([position, length]);
      target.fill(0, 0, length);
      for (const [start, end] of regions) {
        const from = Math.max(start, position);
        const to = Math.min(end, position + length);
        if (from < to) target.fill(fill, from - position, to - position);
      }
      return length;
    },
    dataRegionAt(position) {
      const next = regions.find(([, end]) => end > position);
      if (next === undefined) return { start: sizeBytes, end: sizeBytes };
      return { start: Math.max(next[0], position), end: next[1] };
    },
    async close() {},
  };
}

describe('readSlabs over holes', () => {
  it('yields blocks wholly inside holes as hole runs without reading them, and ends slabs where a whole hole block follows', async () => {
    const B = BLOCK_SIZE;
    // Data: blocks 3..4, a few bytes inside block 9 (the block is read), blocks 10..12 (joined to 9: no whole hole block between).
    const source = regionSource(20 * B + 100, [
      [3 * B, 5 * B],
      [9 * B + 4096, 9 * B + 8192],
      [10 * B, 13 * B],
    ]);
    const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 4 });
    const { ranges, holes, bytes } = await collect(readSlabs(source, pool));
    expect(holes).toEqual([
      [0, 3],
      [5, 4],
      [13, 7],
    ]);
    expect(ranges).toEqual([
      [3, 2],
      [9, 4],
      [20, 1],
    ]);
    const expected = Buffer.alloc(21 * B);
    expected.fill(7, 3 * B, 5 * B);
    expected.fill(7, 9 * B + 4096, 9 * B + 8192);
    expected.fill(7, 10 * B, 13 * B);
    expect(bytes.equals(expected)).toBe(true);
    // Only the data slabs and the tail block were read.
    expect(source.reads.map(([position]) => position / B)).toEqual([3, 9, 20]);
  });

  it('cuts long holes into runs of at most MAX_HOLE_RUN_BLOCKS and honours the block range', async () => {
    const B = BLOCK_SIZE;
    const blocks = 2 * MAX_HOLE_RUN_BLOCKS + 10;
    const source = regionSource(blocks * B, [[(blocks - 1) * B, blocks * B]]);
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 8 });
    const all = await collect(readSlabs(source, pool), false);
    expect(all.holes).toEqual([
      [0, MAX_HOLE_RUN_BLOCKS],
      [MAX_HOLE_RUN_BLOCKS, MAX_HOLE_RUN_BLOCKS],
      [2 * MAX_HOLE_RUN_BLOCKS, 9],
    ]);
    expect(all.ranges).toEqual([[blocks - 1, 1]]);
    const part = await collect(readSlabs(source, pool, { fromBlock: 5, toBlock: 12 }), false);
    expect(part.holes).toEqual([[5, 7]]);
    expect(part.ranges).toEqual([]);
  });

  it('leaves the reading to the consumer with fill: false', async () => {
    const source = regionSource(6 * BLOCK_SIZE, [[0, 6 * BLOCK_SIZE]]);
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 4 });
    const runs = [];
    for await (const run of readSlabs(source, pool, { fill: false })) {
      runs.push([run.firstBlock, run.blockCount]);
      if (!run.hole) run.slab.release();
    }
    expect(runs).toEqual([
      [0, 4],
      [4, 2],
    ]);
    expect(source.reads).toEqual([]);
  });

  it('reads holes like data with skipHoles: false', async () => {
    const B = BLOCK_SIZE;
    const source = regionSource(6 * B, [[2 * B, 3 * B]]);
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 4 });
    const { ranges, holes } = await collect(readSlabs(source, pool, { skipHoles: false }));
    expect(holes).toEqual([]);
    expect(ranges).toEqual([
      [0, 4],
      [4, 2],
    ]);
  });

  it('skips the holes of a sparse file on disk when the native addon is built', async (context) => {
    if (nativeHoleSeeker() === undefined) {
      context.skip('the native addon (build/Release/holes.node) is not built');
      return;
    }
    const path = join(dir, 'sparse.raw');
    const data = randomBytes(2 * BLOCK_SIZE);
    const handle = await open(path, 'w');
    await handle.truncate(64 * BLOCK_SIZE + 77);
    await handle.write(data, 0, data.byteLength, 40 * BLOCK_SIZE);
    await handle.close();
    const source = await openSource(path);
    try {
      const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 8 });
      const { ranges, holes, bytes } = await collect(readSlabs(source, pool));
      expect(holes).toEqual([
        [0, 40],
        [42, 22],
      ]);
      expect(ranges).toEqual([
        [40, 2],
        [64, 1],
      ]);
      const expected = Buffer.alloc(65 * BLOCK_SIZE);
      data.copy(expected, 40 * BLOCK_SIZE);
      expect(bytes.equals(expected)).toBe(true);
    } finally {
      await source.close();
    }
  });
});
