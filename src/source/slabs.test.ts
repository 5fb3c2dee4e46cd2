import { describe, expect, it } from 'vitest';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import { SlabPool, zeroSlab, type Slab } from './slabs.js';

/** Whether `promise` has settled after the event loop has had a few turns. */
async function hasSettled(promise: Promise<unknown>): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  for (let i = 0; i < 5; i += 1) await nextTurn();
  return settled;
}

describe('SlabPool', () => {
  it('hands out shared slabs of whole blocks with block views over the same memory', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 3 });
    expect(pool.slabBytes).toBe(3 * BLOCK_SIZE);
    const slab = await pool.acquire();
    expect(slab.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(slab.bytes.byteLength).toBe(3 * BLOCK_SIZE);
    const block = slab.block(2);
    expect(block.byteLength).toBe(BLOCK_SIZE);
    block[0] = 0xab;
    expect(slab.bytes[2 * BLOCK_SIZE]).toBe(0xab);
    expect(() => slab.block(3)).toThrow(SnaplineError);
    expect(() => slab.block(-1)).toThrow(SnaplineError);
  });

  it('makes an acquirer wait while all slabs are out and reuses the released buffer', async () => {
    const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 1 });
    const first = await pool.acquire();
    const second = await pool.acquire();
    expect(first.buffer).not.toBe(second.buffer);
    const third = pool.acquire();
    expect(await hasSettled(third)).toBe(false);
    second.release();
    const granted = await third;
    expect(granted.buffer).toBe(second.buffer);
    first.release();
    granted.release();
  });

  it('serves waiters first come, first served', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    const held = await pool.acquire();
    const order: string[] = [];
    const a = pool.acquire().then((slab) => (order.push('a'), slab));
    const b = pool.acquire().then((slab) => (order.push('b'), slab));
    held.release();
    (await a).release();
    (await b).release();
    expect(order).toEqual(['a', 'b']);
  });

  it('release is idempotent: a second release does not free the slab twice', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    const slab = await pool.acquire();
    slab.release();
    slab.release();
    const again = await pool.acquire();
    const waiting = pool.acquire();
    slab.release(); // a stale lease must not free the slab its new holder has
    expect(await hasSettled(waiting)).toBe(false);
    again.release();
    (await waiting).release();
  });

  it('rejects a waiting acquire with INTERRUPTED on abort and keeps the slab for others', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    const held = await pool.acquire();
    const controller = new AbortController();
    const aborted = pool.acquire(controller.signal);
    const after = pool.acquire();
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED });
    held.release();
    const slab: Slab = await after;
    expect(slab.buffer).toBe(held.buffer);
    slab.release();
  });

  it('rejects at once when the signal has already aborted, passing a SnaplineError reason through', async () => {
    const pool = new SlabPool({ slabCount: 1, blocksPerSlab: 1 });
    const reason = new SnaplineError(ErrorCodes.TIMEOUT, 'too slow');
    const error = await pool.acquire(AbortSignal.abort(reason)).catch((err: unknown) => err);
    expect(error).toBe(reason);
    const other = await pool.acquire(AbortSignal.abort()).catch((err: unknown) => err);
    expect(isSnaplineError(other, ErrorCodes.INTERRUPTED)).toBe(true);
    // Nothing was leased: the one slab is still free.
    (await pool.acquire()).release();
  });

  it('onDemand allocates a slab at its first acquire, up to slabCount, then makes acquirers wait as ever', async () => {
    const before = process.memoryUsage().arrayBuffers;
    // 2048 slabs of 8 blocks would be 8 GiB allocated at once.
    const pool = new SlabPool({ slabCount: 2048, blocksPerSlab: 8, onDemand: true });
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * BLOCK_SIZE);
    const first = await pool.acquire();
    const second = await pool.acquire();
    expect(first.buffer).not.toBe(second.buffer);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(64 * BLOCK_SIZE);
    first.release();
    expect((await pool.acquire()).buffer).toBe(first.buffer);

    const small = new SlabPool({ slabCount: 1, blocksPerSlab: 1, onDemand: true });
    const only = await small.acquire();
    const waiting = small.acquire();
    expect(await hasSettled(waiting)).toBe(false);
    only.release();
    expect((await waiting).buffer).toBe(only.buffer);
  });

  it('refuses sizes that are not whole positive numbers, naming the option', () => {
    expect(() => new SlabPool({ slabCount: 0, blocksPerSlab: 1 })).toThrow(/slabCount/);
    expect(() => new SlabPool({ slabCount: 1, blocksPerSlab: 1.5 })).toThrow(/blocksPerSlab/);
  });
});

describe('zeroSlab', () => {
  it('stands for blockCount blocks of zeros with one shared block, and release does nothing', () => {
    const slab = zeroSlab(5);
    const first = slab.block(0);
    expect(first.byteLength).toBe(BLOCK_SIZE);
    expect(first.every((byte) => byte === 0)).toBe(true);
    expect(slab.block(4)).toBe(first);
    expect(zeroSlab(1).block(0).buffer).toBe(first.buffer);
    expect(() => slab.block(5)).toThrow(SnaplineError);
    slab.release();
    slab.release();
    expect(() => zeroSlab(0)).toThrow(SnaplineError);
  });
});
