import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../errors.js';
import { checkTrackingOptions, sinceCheckpointOf, trackingIdentity } from './tracking.js';

describe('change-tracking options', () => {
  it.each([
    [{ dirtyBitmap: 'b', changedBlocksFile: '/f' }, 'changedBlocks', '--dirty-bitmap and --changed-blocks exclude each other'],
    [{ dirtyBitmap: 'b', full: true }, 'dirtyBitmap', '--full reads every block: --dirty-bitmap would not be used'],
    [{ changedBlocksFile: '/f', sinceCheckpoint: 'a', full: true }, 'changedBlocks', '--full reads every block: --changed-blocks would not be used'],
    [{ dirtyBitmap: 'has space' }, 'dirtyBitmap', 'is not a bitmap name'],
    [{ dirtyBitmap: 'b', checkpoint: '' }, 'checkpoint', '--checkpoint "" is not a checkpoint name'],
    [{ sinceCheckpoint: 'a' }, 'sinceCheckpoint', '--since-checkpoint names where a tracker counts changes from'],
    [{ changedBlocksFile: '/f' }, 'sinceCheckpoint', '--changed-blocks needs --since-checkpoint'],
    [{ verifyUnchangedPercent: 5 }, 'verifyUnchangedPercent', '--verify-unchanged checks a tracker'],
    [{ dirtyBitmap: 'b', verifyUnchangedPercent: 101 }, 'verifyUnchangedPercent', 'must be a percentage from 0 to 100, got 101'],
  ])('refuses %j (option %s)', (options, option, message) => {
    expect(() => checkTrackingOptions(options)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, details: { option }, message: expect.stringContaining(message) }));
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
