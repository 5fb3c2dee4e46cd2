import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../../test/support/images.js';
import { blockRangesSize, type BlockRanges } from '../../core/changed-ranges.js';
import { ErrorCodes } from '../../errors.js';
import { checkTrackingOptions, sampleBlocks, sampleSize, secureRandom, sinceCheckpointOf, trackingIdentity } from './tracking.js';

describe('change-tracking options', () => {
  it.each([
    [{ dirtyBitmap: 'b', changedBlocksFile: '/f' }, 'changedBlocksFile', 'dirtyBitmap and changedBlocksFile exclude each other'],
    [{ dirtyBitmap: 'b', full: true }, 'dirtyBitmap', 'full reads every block: dirtyBitmap would not be used'],
    [{ changedBlocksFile: '/f', sinceCheckpoint: 'a', full: true }, 'changedBlocksFile', 'full reads every block: changedBlocksFile would not be used'],
    [{ dirtyBitmap: 'has space' }, 'dirtyBitmap', 'dirtyBitmap "has space" is not a bitmap name'],
    [{ dirtyBitmap: 'b', checkpoint: '' }, 'checkpoint', 'checkpoint "" is not a checkpoint name'],
    [{ sinceCheckpoint: 'a' }, 'sinceCheckpoint', 'sinceCheckpoint names where a tracker counts changes from'],
    [{ changedBlocksFile: '/f' }, 'sinceCheckpoint', 'changedBlocksFile needs sinceCheckpoint'],
    [{ verifyUnchangedPercent: 5 }, 'verifyUnchangedPercent', 'verifyUnchangedPercent checks a tracker'],
    [{ dirtyBitmap: 'b', verifyUnchangedPercent: 101 }, 'verifyUnchangedPercent', 'verifyUnchangedPercent must be a percentage from 0 to 100, got 101'],
  ])('refuses %j (option %s)', (options, option, message) => {
    expect(() => checkTrackingOptions(options)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, details: expect.objectContaining({ option }), message: expect.stringContaining(message) }));
  });

  it('takes a bitmap alone (counting from its own name), a checkpoint alone, and a file with its checkpoint', () => {
    expect(() => checkTrackingOptions({ dirtyBitmap: 'gen1', checkpoint: 'gen2', verifyUnchangedPercent: 0.5 })).not.toThrow();
    expect(() => checkTrackingOptions({ checkpoint: 'c1', full: true })).not.toThrow();
    expect(() => checkTrackingOptions({ changedBlocksFile: '/f', sinceCheckpoint: 'era-1' })).not.toThrow();
    expect(sinceCheckpointOf({ dirtyBitmap: 'gen1' })).toBe('gen1');
    expect(sinceCheckpointOf({ dirtyBitmap: 'backup-vda', sinceCheckpoint: 'c1' })).toBe('c1');
  });

  it('gives runs without tracking no identity of it, so that their pending runs still resume', () => {
    expect(trackingIdentity({})).toBeUndefined();
    expect(trackingIdentity({ dirtyBitmap: 'gen1', checkpoint: 'gen2', verifyUnchangedPercent: 10 })).toEqual({ dirtyBitmap: 'gen1', sinceCheckpoint: 'gen1', checkpoint: 'gen2' });
  });
});

/** The blocks of `ranges`, one by one. */
function blocksOf(ranges: BlockRanges): number[] {
  return ranges.flatMap(([from, to]) => Array.from({ length: to - from }, (_, k) => from + k));
}

describe('the --verify-unchanged sample', () => {
  it.each([
    [1000, 1, 10],
    [1000, 0.5, 5],
    [1000, 0.01, 1],
    [3, 50, 2],
    [1, 0.001, 1],
    [7, 100, 7],
    [7, 0, 0],
    [0, 50, 0],
  ])('of %i unchanged blocks at %f %% holds ceil(percent / 100 x blocks) = %i', (unchanged, percent, size) => {
    expect(sampleSize(unchanged, percent)).toBe(size);
  });

  it('draws exactly that many distinct blocks, all of them unchanged ones, whatever the random numbers', () => {
    const unchanged: BlockRanges = [[0, 3], [10, 40], [100, 101], [500, 620]];
    const all = new Set(blocksOf(unchanged));
    for (const percent of [0.1, 1, 10, 33.3, 50, 99, 100]) {
      for (let seed = 1; seed <= 20; seed += 1) {
        const sample = blocksOf(sampleBlocks(unchanged, percent, seededRandom(seed)));
        expect(sample).toHaveLength(sampleSize(all.size, percent));
        expect(new Set(sample).size).toBe(sample.length);
        expect(sample.every((block) => all.has(block))).toBe(true);
        expect(sample).toEqual([...sample].sort((a, b) => a - b));
      }
    }
    // The extremes of the random numbers still fill the sample: the first blocks, or the last.
    expect(blocksOf(sampleBlocks(unchanged, 2, () => 0))).toEqual([0, 1, 2, 10]);
    expect(blocksOf(sampleBlocks(unchanged, 2, () => 1 - 2 ** -32))).toEqual([616, 617, 618, 619]);
  });

  it('spreads over the whole disk: every block is drawn in some of 200 samples of 10 %', () => {
    const unchanged: BlockRanges = [[0, 50], [60, 110]];
    const drawn = new Set<number>();
    const random = secureRandom();
    for (let run = 0; run < 200; run += 1) for (const block of blocksOf(sampleBlocks(unchanged, 10, random))) drawn.add(block);
    // A block missed by all 200 draws has a chance of 0.9^200, below 1e-9.
    expect(drawn.size).toBe(100);
  });

  it('with the real random source, a 50 % sample holds one given block in roughly half of 200 draws', () => {
    // A disk of 32 blocks, 2 of them marked changed: the lying block 17 is among the 30 the tracker calls unchanged.
    const unchanged: BlockRanges = [[0, 5], [6, 20], [21, 32]];
    expect(blockRangesSize(unchanged)).toBe(30);
    const random = secureRandom();
    let caught = 0;
    for (let run = 0; run < 200; run += 1) if (blocksOf(sampleBlocks(unchanged, 50, random)).includes(17)) caught += 1;
    // Binomial(200, 0.5): 100 +- 7; outside 40..160 has a chance far below 1e-15.
    expect(caught).toBeGreaterThanOrEqual(40);
    expect(caught).toBeLessThanOrEqual(160);
  });

  it('the secure source gives numbers in [0, 1) that differ from call to call', () => {
    const random = secureRandom();
    const numbers = Array.from({ length: 10_000 }, () => random());
    expect(numbers.every((n) => n >= 0 && n < 1)).toBe(true);
    expect(new Set(numbers).size).toBeGreaterThan(9_900);
  });
});
