import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from RestoreTargets and AdvisoryLocks (src/core/index-ports.ts), for every implementation. */
export function restoreTargetsContract(name: string, setup: IndexSetup): void {
  describe(`restore targets and locks contract: ${name}`, () => {
    const current = freshIndex(setup);

    it('remembers what a target holds, the last word winning', () => {
      const index = current();
      expect(index.targets.get('/dev/sdb')).toBeUndefined();
      index.targets.set({ path: '/dev/sdb', snapshotId: 'snap-1', state: 'incomplete', sizeBytes: 4096 });
      index.targets.set({ path: '/dev/sdb', snapshotId: 'snap-2', state: 'complete', sizeBytes: 8192 });
      expect(index.targets.get('/dev/sdb')).toMatchObject({ path: '/dev/sdb', snapshotId: 'snap-2', state: 'complete', sizeBytes: 8192 });
      index.targets.set({ path: '/dev/sdb', snapshotId: null, state: 'incomplete', sizeBytes: 0 });
      expect(index.targets.get('/dev/sdb')).toMatchObject({ snapshotId: null, state: 'incomplete' });
      expect(index.targets.get('/dev/sdb')!.updatedAt).toBeInstanceOf(Date);
    });

    it('refuses a bad target record', () => {
      const index = current();
      expect(codeOf(() => index.targets.set({ path: '', snapshotId: null, state: 'complete', sizeBytes: 0 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.targets.set({ path: '/t', snapshotId: null, state: 'done' as 'complete', sizeBytes: 0 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.targets.set({ path: '/t', snapshotId: null, state: 'complete', sizeBytes: -1 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.targets.get('/t')).toBeUndefined();
    });

    it('holds a lock until it is released; releasing twice is harmless', () => {
      const index = current();
      const held = index.locks.acquire('volume:vol');
      expect(codeOf(() => index.locks.acquire('volume:vol'))).toBe(ErrorCodes.CONFLICT);
      const other = index.locks.acquire('target:/dev/sdb');
      held.release();
      held.release();
      index.locks.acquire('volume:vol').release();
      other.release();
      expect(codeOf(() => index.locks.acquire(''))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });

    it('lists the holders of the locks whose names start with a prefix, and no longer the released ones', () => {
      const index = current();
      expect(index.locks.holders('reads:snap-1:')).toEqual([]);
      const first = index.locks.acquire('reads:snap-1:a');
      const second = index.locks.acquire('reads:snap-1:b');
      const other = index.locks.acquire('reads:snap-10:a');
      const holders = index.locks.holders('reads:snap-1:');
      expect(holders.map((h) => h.name).sort()).toEqual(['reads:snap-1:a', 'reads:snap-1:b']);
      expect(holders[0]).toMatchObject({ pid: process.pid, host: expect.any(String), since: expect.any(Date) });
      first.release();
      expect(index.locks.holders('reads:snap-1:').map((h) => h.name)).toEqual(['reads:snap-1:b']);
      second.release();
      other.release();
      expect(index.locks.holders('reads:')).toEqual([]);
      expect(codeOf(() => index.locks.holders(''))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });
  });
}
