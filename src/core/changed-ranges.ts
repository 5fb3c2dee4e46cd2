import { BLOCK_SIZE, blockCountFor } from './constants.js';

/** Bytes [offset, offset + length) of a source. */
export interface ByteRange {
  offset: number;
  length: number;
}

/** Where a tracker's answer comes from: an NBD dirty bitmap, or a changed-blocks file (any other tracker). */
export type ChangeTrackerKind = 'dirty-bitmap' | 'changed-blocks';

/**
 * A change tracker's answer, the port an incremental backup reads only the
 * changed blocks through: the byte ranges of the source that may have
 * changed since the tracker's checkpoint. Everything outside them is taken
 * as unchanged. The NBD source (qemu:dirty-bitmap) and the changed-blocks
 * file implement it.
 */
export interface ChangedRanges {
  readonly kind: ChangeTrackerKind;
  /** The bitmap's name, or the file's path. */
  readonly name: string;
  /** The tracker in words, for messages. */
  readonly description: string;
  /**
   * The changed ranges, ascending and not overlapping, each non-empty and
   * inside the source. May ask a server as it goes; read once.
   */
  ranges(): AsyncIterable<ByteRange> | Iterable<ByteRange>;
}

/** Block ranges [from, to), ascending, disjoint and not adjacent. */
export type BlockRanges = Array<[from: number, to: number]>;

/**
 * The 512 KiB blocks holding any byte of `ranges` (ascending by offset;
 * overlaps are merged), as block ranges clipped to a source of `sizeBytes`.
 */
export async function changedBlockRanges(ranges: AsyncIterable<ByteRange> | Iterable<ByteRange>, sizeBytes: number): Promise<BlockRanges> {
  const blocks: BlockRanges = [];
  const lastBlock = blockCountFor(sizeBytes);
  for await (const { offset, length } of ranges) {
    if (length <= 0) continue;
    const from = Math.floor(offset / BLOCK_SIZE);
    const to = Math.min(lastBlock, Math.ceil((offset + length) / BLOCK_SIZE));
    if (from >= to) continue;
    addBlockRange(blocks, from, to);
  }
  return blocks;
}

/** Appends [from, to) to ascending `blocks`, merging it with the last range when they touch or overlap; `from` must not go back before the last range's start. */
export function addBlockRange(blocks: BlockRanges, from: number, to: number): void {
  const last = blocks[blocks.length - 1];
  if (last !== undefined && from <= last[1]) last[1] = Math.max(last[1], to);
  else blocks.push([from, to]);
}

/** How many blocks `ranges` hold. */
export function blockRangesSize(ranges: BlockRanges): number {
  let count = 0;
  for (const [from, to] of ranges) count += to - from;
  return count;
}

/** The union of two sets of block ranges, ascending and merged. */
export function unionBlockRanges(a: BlockRanges, b: BlockRanges): BlockRanges {
  const all = [...a, ...b].sort((x, y) => x[0] - y[0]);
  const merged: BlockRanges = [];
  for (const [from, to] of all) addBlockRange(merged, from, to);
  return merged;
}

/** The blocks of [0, totalBlocks) outside `ranges` (ascending, merged). */
export function complementBlockRanges(ranges: BlockRanges, totalBlocks: number): BlockRanges {
  const gaps: BlockRanges = [];
  let at = 0;
  for (const [from, to] of ranges) {
    if (from > at) gaps.push([at, Math.min(from, totalBlocks)]);
    at = Math.max(at, to);
  }
  if (at < totalBlocks) gaps.push([at, totalBlocks]);
  return gaps;
}
