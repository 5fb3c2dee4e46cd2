import { BLOCK_SIZE, blockCountFor } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { abortError } from '../core/abort.js';
import type { BlockSource, DataRegion } from './open.js';
import type { Slab, SlabPool } from './slabs.js';

/** Blocks [firstBlock, firstBlock + blockCount) of a source, at the start of `slab`. */
export interface FilledSlab {
  hole?: false;
  slab: Slab;
  firstBlock: number;
  blockCount: number;
}

/** Blocks [firstBlock, firstBlock + blockCount) lie wholly in a hole of the source: they read as zeros and were not read. */
export interface HoleRun {
  hole: true;
  firstBlock: number;
  blockCount: number;
}

/** What readSlabs yields, in ascending block order. */
export type SourceRun = FilledSlab | HoleRun;

/** The longest hole run yielded at once (4 GiB), so consumers see progress and aborts on a huge sparse source. */
export const MAX_HOLE_RUN_BLOCKS = 8192;

export interface ReadSlabsOptions {
  /** First block to read; default 0. */
  fromBlock?: number;
  /** Block to stop before; default the source's block count. */
  toBlock?: number;
  /** Yield blocks wholly inside holes as HoleRuns instead of reading them; default true. */
  skipHoles?: boolean;
  /** Read each slab before yielding it (default true); false leaves the reading to the consumer (slabExtent says what to read). */
  fill?: boolean;
  signal?: AbortSignal;
}

/**
 * Yields slabs in ascending block order covering [fromBlock, toBlock) of the
 * source, one large read per slab, the tail of the source's last block padded
 * with zeros. Blocks wholly inside a hole (of a sparse file, or an extent an
 * NBD server reports as zeros) come as HoleRuns (no slab, nothing read)
 * where the source can find holes; a slab that would
 * run from data into a hole of a whole block or more ends early, so the hole
 * is skipped. The consumer owns and releases each yielded slab. Reads happen
 * only when the consumer asks for the next run, so the pool's size bounds
 * what is in flight. On abort it throws INTERRUPTED (or the signal's
 * SnaplineError reason) and releases the slab it holds; a source that turns
 * out shorter than its size at open gives SOURCE_UNUSABLE.
 */
export async function* readSlabs(source: BlockSource, pool: SlabPool, options: ReadSlabsOptions = {}): AsyncGenerator<SourceRun> {
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
  const holes = options.skipHoles === false ? undefined : new HoleTracker(source);
  for (let firstBlock = fromBlock; firstBlock < toBlock; ) {
    if (signal?.aborted) throw abortError(signal);
    const holeBlocks = (await holes?.holeBlocksAt(firstBlock, toBlock)) ?? 0;
    if (holeBlocks > 0) {
      const blockCount = Math.min(MAX_HOLE_RUN_BLOCKS, holeBlocks);
      yield { hole: true, firstBlock, blockCount };
      firstBlock += blockCount;
      continue;
    }
    const wanted = Math.min(pool.blocksPerSlab, toBlock - firstBlock);
    const blockCount = (await holes?.dataBlocksAt(firstBlock, wanted)) ?? wanted;
    const slab = await pool.acquire(signal);
    let handedOver = false;
    try {
      if (options.fill !== false) await fillSlab(source, slab, firstBlock, blockCount);
      if (signal?.aborted) throw abortError(signal);
      handedOver = true;
      yield { slab, firstBlock, blockCount };
    } finally {
      if (!handedOver) slab.release();
    }
    firstBlock += blockCount;
  }
}

/**
 * Walks a source's data regions alongside an ascending block walk, asking
 * the source only when the walk leaves the region it knows.
 */
class HoleTracker {
  /** Valid from `from` on: [from, region.start) is a hole, [region.start, region.end) data. */
  #from = 0;
  #region: DataRegion | undefined;

  constructor(private readonly source: BlockSource) {}

  /** How many blocks from `block` on (before `toBlock`) lie wholly in a hole. */
  async holeBlocksAt(block: number, toBlock: number): Promise<number> {
    const region = await this.#regionAt(block * BLOCK_SIZE);
    return Math.max(0, Math.min(toBlock, Math.floor(region.start / BLOCK_SIZE)) - block);
  }

  /**
   * How many of the `wanted` blocks from `block` on to read as one slab:
   * fewer when the data ends before them and a whole hole block follows.
   */
  async dataBlocksAt(block: number, wanted: number): Promise<number> {
    const region = await this.#regionAt(block * BLOCK_SIZE);
    const dataEnd = Math.ceil(region.end / BLOCK_SIZE);
    if (dataEnd >= block + wanted || dataEnd * BLOCK_SIZE >= this.source.sizeBytes) return wanted;
    const next = await this.#regionAt(dataEnd * BLOCK_SIZE);
    return Math.floor(next.start / BLOCK_SIZE) > dataEnd ? dataEnd - block : wanted;
  }

  async #regionAt(position: number): Promise<DataRegion> {
    if (this.#region === undefined || position < this.#from || position >= this.#region.end) {
      this.#region = await this.source.dataRegionAt(position);
      this.#from = position;
    }
    return this.#region;
  }
}

/** Reads blocks [firstBlock, firstBlock + blockCount) into the start of `slab`, the tail past the source's end zeros; SOURCE_UNUSABLE when the source ends early. */
export async function fillSlab(source: BlockSource, slab: Slab, firstBlock: number, blockCount: number): Promise<void> {
  const { position, available } = slabExtent(source, firstBlock, blockCount);
  const got = await source.read(slab.bytes.subarray(0, available), position);
  if (got < available) throw sourceEndedError(source, position + got);
  // A reused slab still holds the previous bytes: zero the padding.
  slab.bytes.fill(0, available, blockCount * BLOCK_SIZE);
}

/** Where a slab of `blockCount` blocks from `firstBlock` starts in the source, and how many of its bytes the source holds. */
export function slabExtent(source: BlockSource, firstBlock: number, blockCount: number): { position: number; available: number } {
  const position = firstBlock * BLOCK_SIZE;
  return { position, available: Math.max(0, Math.min(blockCount * BLOCK_SIZE, source.sizeBytes - position)) };
}

/** SOURCE_UNUSABLE for a source that ended at `endedAt`, before its size at open. */
export function sourceEndedError(source: BlockSource, endedAt: number): SnaplineError {
  return new SnaplineError(
    ErrorCodes.SOURCE_UNUSABLE,
    `source ${source.path} ended at byte ${endedAt}, before its size of ${source.sizeBytes} bytes when opened: was it truncated during the backup?`,
    { details: { path: source.path, sizeBytes: source.sizeBytes, endedAt } },
  );
}
