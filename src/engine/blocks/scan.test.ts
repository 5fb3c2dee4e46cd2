import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ZERO_BLOCK_DIGEST } from '../../core/checksum.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import { ErrorCodes } from '../../errors.js';
import { HashPool } from '../../hashing/index.js';
import { nativeHoleSeeker, openSource, SlabPool } from '../../source/index.js';
import { digestAt, scanSource, type HashedSlab } from './scan.js';

let dir: string;
let pool: HashPool;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-scan-'));
  pool = new HashPool({ threads: 2 });
});

afterAll(async () => {
  await pool.destroy();
  await rm(dir, { recursive: true, force: true });
});

/** Scans `path` and returns, per block, its digest (hex), zero flag and whether it came from a hole run. */
async function scanBlocks(path: string, skipHoles: boolean) {
  const source = await openSource(path);
  const blocks: Array<{ digest: string; zero: boolean; hole: boolean; bytesAreZero: boolean }> = [];
  try {
    // Three slabs, fewer than the default hashAhead of 4: the scan must not wait for a fourth.
    const slabs = new SlabPool({ slabCount: 3, blocksPerSlab: 4 });
    for await (const run of scanSource(source, slabs, pool, { skipHoles })) {
      expect(blocks.length).toBe(run.firstBlock);
      for (let i = 0; i < run.blockCount; i += 1) {
        blocks.push({
          digest: Buffer.from(digestAt(run, i)).toString('hex'),
          zero: run.zero[i] === 1,
          hole: run.hole,
          bytesAreZero: run.hole ? run.slab.block(i).every((byte) => byte === 0) : false,
        });
      }
      run.slab.release();
    }
  } finally {
    await source.close();
  }
  return blocks;
}

describe('scanSource', () => {
  it('gives the blocks of holes the zero digest and flag without reading them, and hashes the rest as a full read does', async (context) => {
    if (nativeHoleSeeker() === undefined) {
      context.skip('the native addon (build/Release/holes.node) is not built');
      return;
    }
    const data = randomBytes(3 * BLOCK_SIZE);
    const path = join(dir, 'sparse.raw');
    const handle = await open(path, 'w');
    await handle.truncate(40 * BLOCK_SIZE + 123);
    await handle.write(data, 0, data.byteLength, 17 * BLOCK_SIZE);
    await handle.close();

    const skipped = await scanBlocks(path, true);
    const read = await scanBlocks(path, false);
    expect(skipped.map((b) => [b.digest, b.zero])).toEqual(read.map((b) => [b.digest, b.zero]));
    const holeBlocks = skipped.flatMap((b, i) => (b.hole ? [i] : []));
    expect(holeBlocks).toEqual([...Array.from({ length: 17 }, (_, i) => i), ...Array.from({ length: 20 }, (_, i) => 20 + i)]);
    expect(skipped.every((b) => !b.hole || (b.zero && b.bytesAreZero && b.digest === ZERO_BLOCK_DIGEST.toString('hex')))).toBe(true);
    const digest = (i: number) => createHash('sha256').update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digest('hex');
    expect(skipped.slice(17, 20).map((b) => b.digest)).toEqual([digest(0), digest(1), digest(2)]);
    expect(read.every((b) => !b.hole)).toBe(true);
  });

  it('yields hole runs in order between hashed slabs and releases every slab on an early stop', async () => {
    const path = join(dir, 'mixed.raw');
    const handle = await open(path, 'w');
    await handle.truncate(30 * BLOCK_SIZE);
    for (const block of [0, 9, 25]) await handle.write(randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, block * BLOCK_SIZE);
    await handle.close();
    const source = await openSource(path);
    const slabs = new SlabPool({ slabCount: 2, blocksPerSlab: 4 });
    try {
      const seen: HashedSlab[] = [];
      for await (const run of scanSource(source, slabs, pool, { hashAhead: 3 })) {
        seen.push(run);
        run.slab.release();
        if (run.firstBlock + run.blockCount > 12) break;
      }
      let next = 0;
      for (const run of seen) {
        expect(run.firstBlock).toBe(next);
        next += run.blockCount;
      }
      // Both slabs are back in the pool.
      const a = await slabs.acquire();
      const b = await slabs.acquire();
      a.release();
      b.release();
    } finally {
      await source.close();
    }
  });

  it('asks keepBytes once a block in order, yields its answers, and fills the slab only with the blocks whose digest differs', async () => {
    const data = randomBytes(10 * BLOCK_SIZE);
    const path = join(dir, 'keep.raw');
    const handle = await open(path, 'w');
    await handle.write(data, 0, data.byteLength, 0);
    await handle.close();
    const digestOf = (i: number) => createHash('sha256').update(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digest();
    // Even blocks are answered with their own digest (not needed), block 3 with another's, the rest with nothing.
    const answer = (i: number) => (i % 2 === 0 ? digestOf(i) : i === 3 ? digestOf(0) : undefined);
    const scanned = async (keepBytes: 'none' | ((blockIndex: number) => Uint8Array | undefined)) => {
      const source = await openSource(path);
      const held: boolean[] = [];
      try {
        for await (const run of scanSource(source, new SlabPool({ slabCount: 2, blocksPerSlab: 4 }), pool, { keepBytes })) {
          for (let i = 0; i < run.blockCount; i += 1) {
            const block = run.firstBlock + i;
            expect(Buffer.from(digestAt(run, i))).toEqual(digestOf(block));
            expect(run.unneededAs?.[i]).toEqual(typeof keepBytes === 'function' ? answer(block) : undefined);
            held.push(Buffer.from(run.slab.block(i)).equals(data.subarray(block * BLOCK_SIZE, (block + 1) * BLOCK_SIZE)));
          }
          run.slab.release();
        }
      } finally {
        await source.close();
      }
      return held;
    };
    const asked: number[] = [];
    const held = await scanned((block) => (asked.push(block), answer(block)));
    expect(asked).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(held).toEqual([false, true, false, true, false, true, false, true, false, true]);
    expect(await scanned('none')).toEqual(Array.from({ length: 10 }, () => false));
  });

  it('a source cut short during the scan is SOURCE_UNUSABLE naming it, and every slab goes back to the pool', async () => {
    const path = join(dir, 'shrinking.raw');
    const handle = await open(path, 'w');
    await handle.write(randomBytes(12 * BLOCK_SIZE), 0, 12 * BLOCK_SIZE, 0);
    await handle.close();
    const source = await openSource(path);
    const slabs = new SlabPool({ slabCount: 2, blocksPerSlab: 4 });
    try {
      const scan = scanSource(source, slabs, pool, { hashAhead: 1 });
      const first = await scan.next();
      if (first.done) throw new Error('expected a slab');
      first.value.slab.release();
      await truncate(path, 6 * BLOCK_SIZE);
      const error: unknown = await (async () => {
        for await (const run of scan) run.slab.release();
      })().catch((err: unknown) => err);
      expect(error).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE });
      expect((error as Error).message).toContain(path);
      expect((error as Error).message).toContain('ended at byte 3145728');
      const a = await slabs.acquire();
      const b = await slabs.acquire();
      a.release();
      b.release();
    } finally {
      await source.close();
    }
  });
});
