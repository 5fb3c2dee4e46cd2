import { BLOCK_SIZE, blockCountFor } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { abortError } from '../core/abort.js';
import type { BlockSource } from './open.js';
import type { Slab, SlabPool } from './slabs.js';

/** Blocks [firstBlock, firstBlock + blockCount) of a source, at the start of `slab`. */
export interface FilledSlab {
  slab: Slab;
  firstBlock: number;
  blockCount: number;
}

export interface ReadSlabsOptions {
  /** First block to read; default 0. */
  fromBlock?: number;
  /** Block to stop before; default the source's block count. */
  toBlock?: number;
  signal?: AbortSignal;
}

/**
 * Yields slabs in ascending block order covering [fromBlock, toBlock) of the
 * source, one large read per slab, the tail of the source's last block padded
 * with zeros. The consumer owns and releases each yielded slab. Reads happen
 * only when the consumer asks for the next slab, so the pool's size bounds
 * what is in flight. On abort it throws INTERRUPTED (or the signal's
 * SnaplineError reason) and releases the slab it holds; a source that turns
 * out shorter than its size at open gives SOURCE_UNUSABLE.
 */
export async function* readSlabs(source: BlockSource, pool: SlabPool, options: ReadSlabsOptions = {}): AsyncGenerator<FilledSlab> {
  const sourceBlocks = blockCountFor(source.sizeBytes);
  const fromBlock = options.fromBlock ?? 0;
  const toBlock = options.toBlock ?? sourceBlocks;
  if (!Number.isSafeInteger(fromBlock) || !Number.isSafeInteger(toBlock) || fromBlock < 0 || fromBlock > toBlock || toBlock > sourceBlocks) {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `block range [${String(fromBlock)}, ${String(toBlock)}) is not inside source ${source.path} (0..${sourceBlocks} blocks)`,
    );
  }
  const { signal } = options;
  for (let firstBlock = fromBlock; firstBlock < toBlock; firstBlock += pool.blocksPerSlab) {
    const blockCount = Math.min(pool.blocksPerSlab, toBlock - firstBlock);
    const slab = await pool.acquire(signal);
    let handedOver = false;
    try {
      await fill(source, slab, firstBlock, blockCount);
      if (signal?.aborted) throw abortError(signal);
      handedOver = true;
      yield { slab, firstBlock, blockCount };
    } finally {
      if (!handedOver) slab.release();
    }
  }
}

async function fill(source: BlockSource, slab: Slab, firstBlock: number, blockCount: number): Promise<void> {
  const start = firstBlock * BLOCK_SIZE;
  const wanted = Math.min(blockCount * BLOCK_SIZE, source.sizeBytes - start);
  const got = await source.read(slab.bytes.subarray(0, wanted), start);
  if (got < wanted) {
    throw new SnaplineError(
      ErrorCodes.SOURCE_UNUSABLE,
      `source ${source.path} ended at byte ${start + got}, before its size of ${source.sizeBytes} bytes when opened: was it truncated during the backup?`,
      { details: { path: source.path, sizeBytes: source.sizeBytes, endedAt: start + got } },
    );
  }
  // A reused slab still holds the previous bytes: zero the padding.
  slab.bytes.fill(0, wanted, blockCount * BLOCK_SIZE);
}
