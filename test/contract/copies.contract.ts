import { describe, expect, it } from 'vitest';
import type { NewCopy } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from a CopyCatalog (src/core/index-ports.ts), for every implementation. */
export function copyCatalogContract(name: string, setup: IndexSetup): void {
  describe(`copy catalog contract: ${name}`, () => {
    const current = freshIndex(setup);
    const copy = (copySnapshotId: string, sourceSnapshotId: string, volume = 'vol', region = 'eu-west-1'): NewCopy => ({
      copySnapshotId,
      sourceSnapshotId,
      volume,
      region,
      connection: null,
      encrypted: false,
      kmsKeyId: null,
      incrementalOf: null,
    });

    it('records a copy pending at the time given, with every field it was given', () => {
      const index = current();
      const given: NewCopy = { ...copy('snap-c1', 'snap-a'), connection: 'dr-account', encrypted: true, kmsKeyId: 'alias/dr', incrementalOf: 'snap-c0' };
      const recorded = index.copies.record(given, new Date(1000));
      expect(recorded).toEqual({ ...given, state: 'pending', message: null, createdAt: new Date(1000), completedAt: null });
      expect(index.copies.get('snap-c1')).toEqual(recorded);
      expect(index.copies.get('snap-none')).toBeUndefined();
    });

    it('records a copy found in the destination in the state given: completed at the time given, or deleting', () => {
      const index = current();
      const completed = index.copies.record({ ...copy('snap-c1', 'snap-a'), state: 'completed' }, new Date(1000));
      expect(completed).toMatchObject({ state: 'completed', createdAt: new Date(1000), completedAt: new Date(1000) });
      expect(index.copies.get('snap-c1')).toEqual(completed);
      expect(index.copies.record({ ...copy('snap-c2', 'snap-a'), state: 'deleting' }, new Date(2000))).toMatchObject({ state: 'deleting', completedAt: null });
      expect(index.copies.ofSnapshot('snap-a').map((c) => c.state)).toEqual(['completed', 'deleting']);
    });

    it('refuses a copy id already recorded (CONFLICT), keeping the first', () => {
      const index = current();
      index.copies.record(copy('snap-c1', 'snap-a'), new Date(1000));
      expect(codeOf(() => index.copies.record(copy('snap-c1', 'snap-b'), new Date(2000)))).toBe(ErrorCodes.CONFLICT);
      expect(index.copies.get('snap-c1')).toMatchObject({ sourceSnapshotId: 'snap-a', createdAt: new Date(1000) });
    });

    it('refuses an empty id, source, volume or Region, recording nothing', () => {
      const index = current();
      expect(codeOf(() => index.copies.record(copy('', 'snap-a')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.copies.record(copy('snap-c1', '')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.copies.record(copy('snap-c1', 'snap-a', '')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.copies.record(copy('snap-c1', 'snap-a', 'vol', '')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.copies.list()).toEqual([]);
    });

    it('stamps completedAt when a copy completes and keeps it through a later state; a failed copy has none', () => {
      const index = current();
      index.copies.record(copy('snap-c1', 'snap-a'), new Date(1000));
      index.copies.record(copy('snap-c2', 'snap-a'), new Date(2000));
      expect(index.copies.setState('snap-c1', 'completed', null, new Date(5000))).toMatchObject({ state: 'completed', message: null, completedAt: new Date(5000) });
      expect(index.copies.setState('snap-c1', 'deleted', null, new Date(9000))).toMatchObject({ state: 'deleted', completedAt: new Date(5000) });
      expect(index.copies.setState('snap-c2', 'error', 'key refused', new Date(6000))).toMatchObject({ state: 'error', message: 'key refused', completedAt: null });
      expect(index.copies.get('snap-c2')).toMatchObject({ state: 'error', message: 'key refused', completedAt: null });
      expect(codeOf(() => index.copies.setState('snap-none', 'completed'))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('lists the copies not deleted, oldest first (then by id), of a snapshot, of a volume, or of all', () => {
      const index = current();
      index.copies.record(copy('snap-c3', 'snap-b'), new Date(3000));
      index.copies.record(copy('snap-c2', 'snap-a', 'vol', 'ap-south-1'), new Date(1000));
      index.copies.record(copy('snap-c1', 'snap-a'), new Date(1000));
      index.copies.record(copy('snap-c4', 'snap-a'), new Date(500));
      index.copies.record(copy('snap-c5', 'snap-z', 'other'), new Date(2000));
      index.copies.setState('snap-c4', 'deleted');
      index.copies.setState('snap-c2', 'error', 'key refused');
      // A copy to be deleted with its source is listed until it is deleted.
      index.copies.setState('snap-c1', 'deleting');
      const ids = (records: Array<{ copySnapshotId: string }>) => records.map((c) => c.copySnapshotId);
      expect(ids(index.copies.ofSnapshot('snap-a'))).toEqual(['snap-c1', 'snap-c2']);
      expect(ids(index.copies.ofSnapshot('snap-none'))).toEqual([]);
      expect(ids(index.copies.list('vol'))).toEqual(['snap-c1', 'snap-c2', 'snap-c3']);
      expect(ids(index.copies.list('none'))).toEqual([]);
      expect(ids(index.copies.list())).toEqual(['snap-c1', 'snap-c2', 'snap-c5', 'snap-c3']);
      expect(index.copies.get('snap-c4')).toMatchObject({ state: 'deleted' });
    });

    it('returns copies: changing what it returned or what it was given changes nothing kept', () => {
      const index = current();
      const given = copy('snap-c1', 'snap-a');
      const at = new Date(1000);
      const recorded = index.copies.record(given, at);
      given.region = 'changed';
      at.setTime(0);
      recorded.state = 'deleted';
      index.copies.list()[0]!.volume = 'changed';
      index.copies.ofSnapshot('snap-a')[0]!.createdAt.setTime(0);
      index.copies.get('snap-c1')!.message = 'changed';
      expect(index.copies.get('snap-c1')).toMatchObject({ region: 'eu-west-1', state: 'pending', volume: 'vol', message: null, createdAt: new Date(1000) });
    });
  });
}
