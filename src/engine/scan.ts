import type { HashPool } from '../hashing/index.js';
import type { BlockSource, FilledSlab, SlabPool } from '../source/index.js';
import { readSlabs } from '../source/index.js';

/** A slab of source blocks with the SHA-256 and zero flag of each block. */
export interface HashedSlab extends FilledSlab {
  /** 32 bytes per block: block i of the slab at [32*i, 32*i+32). */
  digests: Uint8Array;
  /** 1 where block i of the slab is all zeros. */
  zero: Uint8Array;
}

export interface ScanOptions {
  fromBlock?: number;
  toBlock?: number;
  /** How many slabs may be hashing at once ahead of the consumer. */
  hashAhead?: number;
  signal?: AbortSignal;
}

/**
 * Reads a source once, in ascending block order, and hashes each slab in the
 * worker pool while the next ones are read. Yields slabs in order; the consumer
 * owns each yielded slab and must release it. On abort or error every slab
 * not yet yielded is released.
 */
export async function* scanSource(
  source: BlockSource,
  slabs: SlabPool,
  hashPool: HashPool,
  options: ScanOptions = {},
): AsyncGenerator<HashedSlab> {
  const hashAhead = Math.max(1, options.hashAhead ?? 4);
  const queue: Array<{ filled: FilledSlab; hashed: Promise<HashedSlab> }> = [];
  const hash = async (filled: FilledSlab): Promise<HashedSlab> => {
    const { digests, zero } = await hashPool.hashBlocks(filled.slab.buffer, 0, filled.blockCount, options.signal);
    return { ...filled, digests, zero };
  };
  const takeHead = async (): Promise<HashedSlab> => {
    const head = queue.shift()!;
    try {
      return await head.hashed;
    } catch (err) {
      head.filled.slab.release();
      throw err;
    }
  };
  try {
    for await (const filled of readSlabs(source, slabs, options)) {
      const hashed = hash(filled);
      // Keep a rejection from being reported as unhandled while it waits in the queue.
      hashed.catch(() => undefined);
      queue.push({ filled, hashed });
      if (queue.length >= hashAhead) yield await takeHead();
    }
    while (queue.length > 0) yield await takeHead();
  } finally {
    // A worker may still be reading a queued slab: let it finish before the slab is reused.
    await Promise.allSettled(queue.map((pending) => pending.hashed));
    for (const pending of queue) pending.filled.slab.release();
  }
}

/** The digest of block `i` of a hashed slab, as a view (no copy). */
export function digestAt(slab: HashedSlab, i: number): Uint8Array {
  return slab.digests.subarray(32 * i, 32 * i + 32);
}
