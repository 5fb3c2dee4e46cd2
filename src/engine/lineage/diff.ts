import { BLOCK_SIZE } from '../../core/constants.js';
import type { SnapshotReader } from '../../core/ports.js';
import type { BlockRange } from '../restore/verify.js';

export interface DiffResult {
  firstSnapshotId: string;
  secondSnapshotId: string;
  changedBlocks: number;
  changedBytes: number;
  /** Blocks the second snapshot has and the first lacks. */
  addedBlocks: number;
  /** Blocks the first snapshot has and the second lacks. */
  removedBlocks: number;
  ranges: BlockRange[];
}

/** The blocks that differ between two snapshots of one lineage (ListChangedBlocks). */
export async function diff(deps: { reader: SnapshotReader }, first: string, second: string): Promise<DiffResult> {
  const ranges: BlockRange[] = [];
  let changed = 0;
  let added = 0;
  let removed = 0;
  for await (const page of deps.reader.listChangedBlocks(first, second)) {
    for (const block of page.blocks) {
      changed += 1;
      if (block.firstToken === undefined) added += 1;
      if (block.secondToken === undefined) removed += 1;
      const last = ranges.at(-1);
      if (last && last.last === block.index - 1) last.last = block.index;
      else ranges.push({ first: block.index, last: block.index });
    }
  }
  return {
    firstSnapshotId: first,
    secondSnapshotId: second,
    changedBlocks: changed,
    changedBytes: changed * BLOCK_SIZE,
    addedBlocks: added,
    removedBlocks: removed,
    ranges,
  };
}
