import { describe, expect, it } from 'vitest';
import { changedBlockRanges, complementBlockRanges, unionBlockRanges } from './changed-ranges.js';
import { BLOCK_SIZE } from './constants.js';

describe('changed ranges as blocks', () => {
  it('gives every block holding a changed byte, merging neighbours and overlaps, clipped to the source', async () => {
    const ranges = [
      { offset: 10, length: 1 },
      { offset: BLOCK_SIZE - 1, length: 2 },
      { offset: 3 * BLOCK_SIZE, length: BLOCK_SIZE },
      { offset: 3 * BLOCK_SIZE + 5, length: 7 },
      { offset: 4 * BLOCK_SIZE, length: 1 },
      { offset: 9 * BLOCK_SIZE, length: 0 },
      { offset: 10 * BLOCK_SIZE + 1, length: 10 * BLOCK_SIZE },
    ];
    expect(await changedBlockRanges(ranges, 11 * BLOCK_SIZE + 100)).toEqual([
      [0, 2],
      [3, 5],
      [10, 12],
    ]);
  });

  it('unites and complements block ranges', () => {
    expect(unionBlockRanges([[0, 2], [8, 9]], [[2, 3], [5, 6], [8, 10]])).toEqual([[0, 3], [5, 6], [8, 10]]);
    expect(complementBlockRanges([[0, 3], [5, 6], [8, 10]], 12)).toEqual([[3, 5], [6, 8], [10, 12]]);
    expect(complementBlockRanges([], 4)).toEqual([[0, 4]]);
    expect(complementBlockRanges([[0, 4]], 4)).toEqual([]);
  });
});
