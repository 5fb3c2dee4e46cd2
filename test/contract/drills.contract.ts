import { describe, expect, it } from 'vitest';
import type { NewDrill } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from DrillRecords (src/core/index-ports.ts), for every implementation. */
export function drillRecordsContract(name: string, setup: IndexSetup): void {
  describe(`drill records contract: ${name}`, () => {
    const current = freshIndex(setup);
    const drill = (volume: string, snapshotId: string, more: Partial<NewDrill> = {}): NewDrill => ({
      volume,
      snapshotId,
      kind: 'read',
      startedAt: new Date('2026-03-01T02:00:00Z'),
      finishedAt: new Date('2026-03-01T02:05:00Z'),
      passed: true,
      recoveryMs: 240_000,
      blocksRead: 2048,
      mismatchedBlocks: 0,
      message: null,
      ...more,
    });

    it('records a drill with a new id, and gives it back as recorded', () => {
      const index = current();
      const failed = drill('vol', 'snap-1', { kind: 'volume', passed: false, mismatchedBlocks: 3, message: '3 blocks differ' });
      const first = index.drills.record(failed);
      expect(first).toEqual({ ...failed, id: expect.any(Number) });
      const second = index.drills.record(drill('vol', 'snap-2', { kind: 'file' }));
      expect(second.id).toBeGreaterThan(first.id);
      expect(index.drills.ofVolume('vol')).toEqual([first, second]);
    });

    it("lists a volume's drills oldest first, and the newest drill of each volume by volume name", () => {
      const index = current();
      const z1 = index.drills.record(drill('zeta', 'snap-z1'));
      const a1 = index.drills.record(drill('alpha', 'snap-a1'));
      const z2 = index.drills.record(drill('zeta', 'snap-z2', { startedAt: new Date('2026-01-01T00:00:00Z') }));
      const m1 = index.drills.record(drill('mid', 'snap-m1'));
      expect(index.drills.lastPerVolume()).toEqual([a1, m1, z2]);
      expect(index.drills.ofVolume('zeta')).toEqual([z1, z2]);
      expect(index.drills.ofVolume('none')).toEqual([]);
    });

    it('refuses an empty volume or snapshot id, recording nothing', () => {
      const index = current();
      expect(codeOf(() => index.drills.record(drill('', 'snap-1')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.drills.record(drill('vol', '')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.drills.lastPerVolume()).toEqual([]);
    });

    it('returns copies: changing what it returned changes nothing kept', () => {
      const index = current();
      const recorded = index.drills.record(drill('vol', 'snap-1'));
      recorded.passed = false;
      index.drills.ofVolume('vol')[0]!.message = 'changed';
      index.drills.lastPerVolume()[0]!.blocksRead = 0;
      expect(index.drills.ofVolume('vol')).toEqual([{ ...drill('vol', 'snap-1'), id: recorded.id }]);
    });
  });
}
