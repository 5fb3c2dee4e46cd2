import { describe, expect, it } from 'vitest';
import type { TrackerRecord } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from a TrackerLog (src/core/index-ports.ts), for every implementation. */
export function trackerLogContract(name: string, setup: IndexSetup): void {
  describe(`tracker log contract: ${name}`, () => {
    const current = freshIndex(setup);
    const tracked: Omit<TrackerRecord, 'recordedAt'> = {
      snapshotId: 'snap-1',
      kind: 'dirty-bitmap',
      name: 'gen1',
      sinceCheckpoint: 'gen1',
      checkpoint: 'gen2',
      scan: 'tracked',
      reason: null,
    };

    it('records the tracker of a snapshot with the time, replaces it, and knows nothing of others', () => {
      const index = current();
      expect(index.trackers.get('snap-1')).toBeUndefined();
      const before = Date.now();
      index.trackers.record(tracked);
      const found = index.trackers.get('snap-1')!;
      expect(found).toEqual({ ...tracked, recordedAt: expect.any(Date) });
      expect(found.recordedAt.getTime()).toBeGreaterThanOrEqual(before);
      expect(found.recordedAt.getTime()).toBeLessThanOrEqual(Date.now());
      const full = { snapshotId: 'snap-1', kind: null, name: null, sinceCheckpoint: null, checkpoint: 'gen3', scan: 'full', reason: 'no parent' } as const;
      index.trackers.record(full);
      expect(index.trackers.get('snap-1')).toEqual({ ...full, recordedAt: expect.any(Date) });
      expect(index.trackers.get('snap-2')).toBeUndefined();
    });

    it('returns a copy: changing what it returned or what it was given changes nothing kept', () => {
      const index = current();
      const given = { ...tracked };
      index.trackers.record(given);
      given.checkpoint = 'changed';
      index.trackers.get('snap-1')!.checkpoint = 'changed too';
      expect(index.trackers.get('snap-1')?.checkpoint).toBe('gen2');
    });

    it('refuses an empty snapshot id and a text field that is not text, recording nothing', () => {
      const index = current();
      expect(codeOf(() => index.trackers.get(''))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.trackers.record({ ...tracked, snapshotId: '' }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.trackers.record({ ...tracked, checkpoint: 7 as unknown as string }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.trackers.record({ ...tracked, reason: {} as unknown as string }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.trackers.get('snap-1')).toBeUndefined();
    });
  });
}
