import { describe, expect, it } from 'vitest';
import type { RunEntry } from '../../src/core/run-log.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from the run history, a RunLog (src/core/run-log.ts), for every implementation. */
export function runLogContract(name: string, setup: IndexSetup): void {
  describe(`run log contract: ${name}`, () => {
    const current = freshIndex(setup);
    const at = (minute: number) => new Date(Date.UTC(2026, 2, 1, 2, minute));
    const entry = (more: Partial<RunEntry> = {}): RunEntry => ({
      operation: 'backup',
      volume: 'vol',
      startedAt: at(0),
      finishedAt: at(3),
      result: 'success',
      errorCode: null,
      snapshotId: 'snap-1',
      changedBlocks: 2,
      changedBytes: 1 << 20,
      transferredBlocks: 2,
      transferredBytes: 1 << 20,
      liveSnapshots: 1,
      ...more,
    });

    it('lists every entry as recorded, failed ones too, in the order recorded whatever their times (a clock set back)', () => {
      const index = current();
      const late = entry({ startedAt: at(30), finishedAt: at(31), result: 'failure', errorCode: 'UNAVAILABLE', snapshotId: null, liveSnapshots: null });
      const early = entry();
      const sameStart = entry({ operation: 'prune', volume: null, snapshotId: null, changedBlocks: 1, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0 });
      index.history.recordRun(late);
      index.history.recordRun(early);
      index.history.recordRun(sameStart);
      expect(index.history.listRuns()).toEqual([late, early, sameStart]);
    });

    it('filters by volume, by operation, or both; an entry without a volume matches no volume', () => {
      const index = current();
      const backup = entry();
      const restore = entry({ operation: 'restore', startedAt: at(5), finishedAt: at(6) });
      const other = entry({ volume: 'other', startedAt: at(7), finishedAt: at(8) });
      const anonymous = entry({ operation: 'restore', volume: null, startedAt: at(9), finishedAt: at(10) });
      for (const e of [backup, restore, other, anonymous]) index.history.recordRun(e);
      expect(index.history.listRuns({ volume: 'vol' })).toEqual([backup, restore]);
      expect(index.history.listRuns({ operation: 'restore' })).toEqual([restore, anonymous]);
      expect(index.history.listRuns({ volume: 'vol', operation: 'restore' })).toEqual([restore]);
      expect(index.history.listRuns({ volume: 'other', operation: 'restore' })).toEqual([]);
      expect(index.history.listRuns({ operation: 'archive' })).toEqual([]);
      expect(index.history.listRuns({})).toEqual([backup, restore, other, anonymous]);
    });

    it('refuses an entry that does not hold together (INVALID_ARGUMENT naming the field), recording nothing', () => {
      const index = current();
      const refused = (bad: Partial<RunEntry>, field: string) => {
        let thrown: unknown;
        try {
          index.history.recordRun(entry(bad));
        } catch (err) {
          thrown = err;
        }
        expect(thrown, field).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, details: { argument: field } });
      };
      refused({ operation: 'verify' as RunEntry['operation'] }, 'operation');
      refused({ result: 'maybe' as RunEntry['result'] }, 'result');
      refused({ result: 'failure' }, 'errorCode');
      refused({ errorCode: 'UNAVAILABLE' }, 'errorCode');
      refused({ startedAt: new Date(Number.NaN) }, 'startedAt');
      refused({ finishedAt: at(-1) }, 'finishedAt');
      refused({ changedBlocks: 1.5 }, 'changedBlocks');
      refused({ transferredBytes: -1 }, 'transferredBytes');
      refused({ liveSnapshots: -1 }, 'liveSnapshots');
      refused({ volume: 3 as unknown as string }, 'volume');
      expect(codeOf(() => index.history.recordRun(entry({ snapshotId: 5 as unknown as string })))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.history.listRuns()).toEqual([]);
    });

    it('returns copies: changing what it returned or what it was given changes nothing kept', () => {
      const index = current();
      const given = entry();
      index.history.recordRun(given);
      given.volume = 'changed';
      given.startedAt.setTime(0);
      const listed = index.history.listRuns()[0]!;
      listed.result = 'failure';
      listed.finishedAt.setTime(0);
      expect(index.history.listRuns()).toEqual([entry()]);
    });
  });
}
