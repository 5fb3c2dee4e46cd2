import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { openSource, type BlockSource } from './open.js';
import { readSlabs, type FilledSlab } from './reader.js';
import { SlabPool } from './slabs.js';

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

/** Collects the blocks the reader yields as copies, releasing each slab. */
async function collect(slabs: AsyncIterable<FilledSlab>): Promise<{ ranges: Array<[number, number]>; bytes: Buffer }> {
  const ranges: Array<[number, number]> = [];
  const parts: Buffer[] = [];
  for await (const { slab, firstBlock, blockCount } of slabs) {
    ranges.push([firstBlock, blockCount]);
    parts.push(Buffer.from(slab.bytes.subarray(0, blockCount * BLOCK_SIZE)));
    slab.release();
  }
  return { ranges, bytes: Buffer.concat(parts) };
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
      first.value.slab.release();
      const next = await third;
      if (next.done) throw new Error('expected a third slab');
      expect(next.value.firstBlock).toBe(2);
      expect(next.value.slab.buffer).toBe(first.value.slab.buffer);
      second.value.slab.release();
      next.value.slab.release();
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
      first.value.slab.release();
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
      first.value.slab.release();
      (await pool.acquire()).release();
    });
  });

  it('a consumer that stops early leaves no slab leased by the reader', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    await withSource(randomBytes(3 * BLOCK_SIZE), async (source) => {
      for await (const { slab } of readSlabs(source, pool)) {
        slab.release();
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
      first.value.slab.release();
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
