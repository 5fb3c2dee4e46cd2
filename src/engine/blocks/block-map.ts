import type { BlockRanges } from '../../core/changed-ranges.js';
import type { IndexPorts } from '../../core/index-ports.js';

/** Ranges closer than this many blocks are read from the map in one query: a query costs about as much as reading that many rows. */
const COALESCE_GAP_BLOCKS = 64;

/**
 * Walks a snapshot's block map (from the index) in ascending block order, one
 * window of blocks at a time: memory stays bounded whatever the volume size,
 * and the index connection is free between windows for the journal's writes.
 * Given the block ranges the walk will ask about (a tracked run's), a window
 * ends where they leave a gap of more than COALESCE_GAP_BLOCKS, so the rows
 * read follow the ranges, not the size of the map.
 */
export class BlockMapCursor {
  #to = 0;
  #indexes: number[] = [];
  #digests: Buffer[] = [];
  #pos = 0;
  #range = 0;

  /** `snapshotId` null stands for an empty map (a new lineage). */
  constructor(
    private readonly index: Pick<IndexPorts, 'maps'>,
    private readonly snapshotId: string | null,
    private readonly window = 16_384,
    private readonly ranges?: BlockRanges,
  ) {}

  /** The digest of block `blockIndex`, undefined where the map lacks it. Calls must not go backwards. */
  digestAt(blockIndex: number): Buffer | undefined {
    if (this.snapshotId === null) return undefined;
    if (blockIndex >= this.#to) this.#load(blockIndex);
    while (this.#pos < this.#indexes.length && this.#indexes[this.#pos]! < blockIndex) this.#pos += 1;
    return this.#indexes[this.#pos] === blockIndex ? this.#digests[this.#pos] : undefined;
  }

  #load(fromBlock: number): void {
    this.#to = this.#windowEnd(fromBlock);
    this.#indexes = [];
    this.#digests = [];
    this.#pos = 0;
    for (const { index, digest } of this.index.maps.blockMap(this.snapshotId!, { fromBlock, toBlock: this.#to })) {
      this.#indexes.push(index);
      this.#digests.push(digest);
    }
  }

  /** Where a window starting at `fromBlock` ends: `window` blocks on, or earlier at a wide gap between the ranges. */
  #windowEnd(fromBlock: number): number {
    const limit = fromBlock + this.window;
    const ranges = this.ranges;
    if (ranges === undefined) return limit;
    while (this.#range < ranges.length && ranges[this.#range]![1] <= fromBlock) this.#range += 1;
    let end = fromBlock + 1;
    for (let r = this.#range; r < ranges.length; r += 1) {
      const [from, to] = ranges[r]!;
      if (from >= limit || from > end + COALESCE_GAP_BLOCKS) break;
      end = Math.max(end, to);
    }
    return Math.min(end, limit);
  }
}

/** Membership test for an ascending walk over a sorted list of block indexes. */
export class SortedBlockSet {
  #pos = 0;
  constructor(private readonly sorted: readonly number[]) {}

  get size(): number {
    return this.sorted.length;
  }

  /** True when `blockIndex` is in the set. Calls must not go backwards. */
  has(blockIndex: number): boolean {
    while (this.#pos < this.sorted.length && this.sorted[this.#pos]! < blockIndex) this.#pos += 1;
    return this.sorted[this.#pos] === blockIndex;
  }
}
