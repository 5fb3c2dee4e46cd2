import { describe, expect, it } from 'vitest';
import type { BeginRunInput } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, committedRun, digest, freshIndex, mapOf, runInput, volumeOf } from './index-support.js';

/** The behaviour the engine relies on from a RunJournal (src/core/index-ports.ts), for every implementation. */
export function runJournalContract(name: string, setup: IndexSetup): void {
  describe(`run journal contract: ${name}`, () => {
    const current = freshIndex(setup);
    const run = (volume: string, snapshotId: string, base: string | null = null): BeginRunInput =>
      runInput(volume, snapshotId, base, { description: 'nightly', runOptions: '{"a":1}' });

    it('begins a pending run, one per volume, and refuses a known snapshot id', () => {
      const index = current();
      const vol = volumeOf(index);
      const record = index.runs.beginRun(run(vol, 'snap-1'));
      expect(record).toMatchObject({ snapshotId: 'snap-1', volume: vol, state: 'pending', changedBlocks: 0, runOptions: '{"a":1}', completedAt: null });
      expect(index.runs.pendingRun(vol)?.snapshotId).toBe('snap-1');
      expect(codeOf(() => index.runs.beginRun(run(vol, 'snap-2')))).toBe(ErrorCodes.CONFLICT);
      volumeOf(index, 'other');
      expect(codeOf(() => index.runs.beginRun(run('other', 'snap-1')))).toBe(ErrorCodes.CONFLICT);
      expect(codeOf(() => index.runs.beginRun(run('missing', 'snap-3')))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('takes as base only a completed snapshot of the same volume', () => {
      const index = current();
      const vol = volumeOf(index);
      volumeOf(index, 'other');
      committedRun(index, 'other', 'snap-o', { 0: 1 });
      expect(codeOf(() => index.runs.beginRun(run(vol, 'snap-1', 'snap-o')))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.runs.beginRun(run(vol, 'snap-1', 'snap-none')))).toBe(ErrorCodes.NOT_FOUND);
      index.runs.beginRun(run(vol, 'snap-1'));
      index.runs.abandonRun('snap-1', 'failed');
      expect(codeOf(() => index.runs.beginRun(run(vol, 'snap-2', 'snap-1')))).toBe(ErrorCodes.BAD_STATE);
    });

    it('keeps a run start until the run begins or it is dropped', () => {
      const index = current();
      const vol = volumeOf(index);
      expect(index.runs.runStart(vol)).toBeUndefined();
      const start = index.runs.recordRunStart({ volume: vol, clientToken: 'tok-1', startInput: '{"x":1}', runOptions: null });
      expect(start).toMatchObject({ volume: vol, clientToken: 'tok-1', startInput: '{"x":1}', runOptions: null });
      index.runs.recordRunStart({ volume: vol, clientToken: 'tok-2', startInput: '{"x":2}', runOptions: 'o' });
      expect(index.runs.runStart(vol)).toMatchObject({ clientToken: 'tok-2', runOptions: 'o' });
      index.runs.dropRunStart(vol);
      index.runs.dropRunStart(vol);
      expect(index.runs.runStart(vol)).toBeUndefined();
      index.runs.recordRunStart({ volume: vol, clientToken: 'tok-3', startInput: '{}', runOptions: null });
      index.runs.beginRun(run(vol, 'snap-1'));
      expect(index.runs.runStart(vol)).toBeUndefined();
      expect(codeOf(() => index.runs.recordRunStart({ volume: vol, clientToken: 'tok-4', startInput: '{}', runOptions: null }))).toBe(ErrorCodes.CONFLICT);
      expect(codeOf(() => index.runs.recordRunStart({ volume: 'missing', clientToken: 'tok-5', startInput: '{}', runOptions: null }))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('journals intents until their blocks are recorded, ascending, the newest digest winning', () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun(run(vol, 'snap-1'));
      index.runs.recordIntents('snap-1', [9, 3, 5].map((i) => ({ index: i, digest: digest(i) })));
      index.runs.recordBlocks('snap-1', [{ index: 5, digest: digest(50) }]);
      index.runs.recordBlocks('snap-1', [{ index: 1, digest: digest(1) }, { index: 5, digest: digest(51) }]);
      expect(mapOf(index.runs.unacknowledgedBlocks('snap-1'))).toEqual({ 3: 3, 9: 9 });
      expect([...index.runs.writtenBlocks('snap-1')].map((e) => e.index)).toEqual([1, 5]);
      expect(mapOf(index.runs.writtenBlocks('snap-1'))).toEqual({ 1: 1, 5: 51 });
      expect(index.runs.writtenBlockCount('snap-1')).toBe(2);
    });

    it('records the intents and the acknowledgements of one journal batch together, or none of them', () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun(run(vol, 'snap-1'));
      index.runs.recordIntents('snap-1', [{ index: 4, digest: digest(4) }]);
      index.runs.recordJournal('snap-1', {
        intents: [7, 2].map((i) => ({ index: i, digest: digest(i) })),
        blocks: [
          { index: 7, digest: digest(7) },
          { index: 4, digest: digest(40) },
        ],
      });
      expect(mapOf(index.runs.unacknowledgedBlocks('snap-1'))).toEqual({ 2: 2 });
      expect(mapOf(index.runs.writtenBlocks('snap-1'))).toEqual({ 4: 40, 7: 7 });
      const outside = 1024 ** 3 / (512 * 1024);
      const bad = { intents: [{ index: 9, digest: digest(9) }], blocks: [{ index: outside, digest: digest(1) }] };
      expect(codeOf(() => index.runs.recordJournal('snap-1', bad))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(mapOf(index.runs.unacknowledgedBlocks('snap-1'))).toEqual({ 2: 2 });
      expect(index.runs.writtenBlockCount('snap-1')).toBe(2);
      index.runs.markCompleting('snap-1');
      expect(codeOf(() => index.runs.recordJournal('snap-1', { intents: [], blocks: [] }))).toBe(ErrorCodes.BAD_STATE);
    });

    it('refuses a bad batch whole: nothing of it is recorded', () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun(run(vol, 'snap-1'));
      const outside = 1024 ** 3 / (512 * 1024);
      expect(codeOf(() => index.runs.recordBlocks('snap-1', [{ index: 0, digest: digest(1) }, { index: outside, digest: digest(2) }]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.runs.recordBlocks('snap-1', [{ index: 0, digest: Buffer.alloc(31) }]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.runs.recordIntents('snap-1', [{ index: -1, digest: digest(1) }]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.runs.writtenBlockCount('snap-1')).toBe(0);
      expect(codeOf(() => index.runs.recordBlocks('snap-none', []))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('writes the journal only while pending; reads it while the run is open', () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun(run(vol, 'snap-1'));
      index.runs.recordBlocks('snap-1', [{ index: 2, digest: digest(2) }]);
      index.runs.markCompleting('snap-1');
      index.runs.markCompleting('snap-1');
      expect(index.lineage.getSnapshot('snap-1')?.state).toBe('completing');
      expect(codeOf(() => index.runs.recordBlocks('snap-1', [{ index: 3, digest: digest(3) }]))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.runs.recordIntents('snap-1', [{ index: 3, digest: digest(3) }]))).toBe(ErrorCodes.BAD_STATE);
      expect(mapOf(index.runs.writtenBlocks('snap-1'))).toEqual({ 2: 2 });
      index.runs.commitRun('snap-1');
      expect(codeOf(() => index.runs.writtenBlocks('snap-1'))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.runs.writtenBlockCount('snap-1'))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.runs.markCompleting('snap-1'))).toBe(ErrorCodes.BAD_STATE);
    });

    it('commits a run: its blocks over its base become its map, changedBlocks the blocks recorded; again returns it as is', () => {
      const index = current();
      const vol = volumeOf(index);
      committedRun(index, vol, 'snap-1', { 0: 1, 1: 1, 7: 1 });
      index.runs.beginRun(run(vol, 'snap-2', 'snap-1'));
      expect(mapOf(index.maps.blockMap('snap-2'))).toEqual({ 0: 1, 1: 1, 7: 1 });
      index.runs.recordBlocks('snap-2', [{ index: 1, digest: digest(2) }, { index: 4, digest: digest(2) }]);
      index.runs.markCompleting('snap-2');
      const completedAt = new Date('2026-01-02T03:04:05Z');
      const record = index.runs.commitRun('snap-2', completedAt);
      expect(record).toMatchObject({ state: 'completed', changedBlocks: 2, completedAt, baseSnapshotId: 'snap-1' });
      expect(index.runs.commitRun('snap-2')).toEqual(record);
      expect(mapOf(index.maps.blockMap('snap-2'))).toEqual({ 0: 1, 1: 2, 4: 2, 7: 1 });
      expect(index.runs.pendingRun(vol)).toBeUndefined();
      expect(index.lineage.headSnapshot(vol)?.snapshotId).toBe('snap-2');
    });

    it('abandons an open run for good: state error with the reason, never a head or a base', () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun(run(vol, 'snap-1'));
      index.runs.recordBlocks('snap-1', [{ index: 0, digest: digest(1) }]);
      index.runs.abandonRun('snap-1', 'the source went away');
      index.runs.abandonRun('snap-1', 'again');
      expect(index.lineage.getSnapshot('snap-1')).toMatchObject({ state: 'error', errorReason: 'the source went away' });
      expect(index.runs.pendingRun(vol)).toBeUndefined();
      expect(index.lineage.headSnapshot(vol)).toBeUndefined();
      expect(codeOf(() => index.runs.commitRun('snap-1'))).toBe(ErrorCodes.BAD_STATE);
      committedRun(index, vol, 'snap-2', { 0: 2 });
      expect(codeOf(() => index.runs.abandonRun('snap-2', 'late'))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.runs.abandonRun('snap-2', ''))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });
  });
}
