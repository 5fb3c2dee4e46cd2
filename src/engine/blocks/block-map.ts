import type { IndexPorts } from '../../core/index-ports.js';

/**
 * Walks a snapshot's block map (from the index) in ascending block order, one
 * window of blocks at a time: memory stays bounded whatever the volume size,
 * and the index connection is free between windows for the journal's writes.
 */
export class BlockMapCursor {
  #to = 0;
  #indexes: number[] = [];
  #digests: Buffer[] = [];
  #pos = 0;

  /** `snapshotId` null stands for an empty map (a new lineage). */
  constructor(
    private readonly index: Pick<IndexPorts, 'maps'>,
    private readonly snapshotId: string | null,
    private readonly window = 16_384,
  ) {}

  /** The digest of block `blockIndex`, undefined where the map lacks it. Calls must not go backwards. */
  digestAt(blockIndex: number): Buffer | undefined {
    if (this.snapshotId === null) return undefined;
    if (blockIndex >= this.#to) this.#load(blockIndex);
    while (this.#pos < this.#indexes.length && this.#indexes[this.#pos]! < blockIndex) this.#pos += 1;
    return this.#indexes[this.#pos] === blockIndex ? this.#digests[this.#pos] : undefined;
  }

  #load(fromBlock: number): void {
    this.#to = fromBlock + this.window;
    this.#indexes = [];
    this.#digests = [];
    this.#pos = 0;
    for (const { index, digest } of this.index.maps.blockMap(this.snapshotId!, { fromBlock, toBlock: this.#to })) {
      this.#indexes.push(index);
      this.#digests.push(digest);
    }
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
