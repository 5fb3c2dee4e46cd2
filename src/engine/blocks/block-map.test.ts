import { describe, expect, it } from 'vitest';
import type { IndexPorts } from '../../core/index-ports.js';
import { BlockMapCursor } from './block-map.js';

/** A map holding every block below `blocks`, each digest its index; records the windows read and the rows they yield. */
function fakeMaps(blocks: number) {
  const windows: Array<[number, number]> = [];
  let rows = 0;
  const maps = {
    *blockMap(_snapshotId: string, { fromBlock = 0, toBlock = blocks }: { fromBlock?: number; toBlock?: number } = {}) {
      windows.push([fromBlock, toBlock]);
      for (let index = fromBlock; index < Math.min(toBlock, blocks); index += 1) {
        rows += 1;
        yield { index, digest: Buffer.from([index % 256]) };
      }
    },
  };
  return { index: { maps } as unknown as Pick<IndexPorts, 'maps'>, windows, rows: () => rows };
}

describe('BlockMapCursor', () => {
  it('without ranges reads the map window by window', () => {
    const fake = fakeMaps(100_000);
    const cursor = new BlockMapCursor(fake.index, 'snap-1', 16_384);
    expect(cursor.digestAt(5)).toEqual(Buffer.from([5]));
    expect(cursor.digestAt(20_000)).toEqual(Buffer.from([20_000 % 256]));
    expect(fake.windows).toEqual([[5, 16_389], [20_000, 36_384]]);
  });

  it('given the ranges a tracked run asks about, reads only their rows, a narrow gap between them included, not the whole map', () => {
    const fake = fakeMaps(131_072);
    const ranges: Array<[number, number]> = [[10, 11], [40, 42], [20_000, 20_001], [90_000, 90_003], [131_071, 131_072]];
    const cursor = new BlockMapCursor(fake.index, 'snap-1', 16_384, ranges);
    for (const [from, to] of ranges) for (let block = from; block < to; block += 1) expect(cursor.digestAt(block)).toEqual(Buffer.from([block % 256]));
    expect(fake.windows).toEqual([[10, 42], [20_000, 20_001], [90_000, 90_003], [131_071, 131_072]]);
    expect(fake.rows()).toBe(32 + 1 + 3 + 1);
  });

  it('answers a block outside the ranges too, and never reads more than a window at a time', () => {
    const fake = fakeMaps(100_000);
    const cursor = new BlockMapCursor(fake.index, 'snap-1', 100, [[0, 1_000]]);
    expect(cursor.digestAt(0)).toEqual(Buffer.from([0]));
    expect(cursor.digestAt(150)).toEqual(Buffer.from([150]));
    expect(cursor.digestAt(5_000)).toEqual(Buffer.from([5_000 % 256]));
    expect(fake.windows).toEqual([[0, 100], [150, 250], [5_000, 5_001]]);
  });
});
