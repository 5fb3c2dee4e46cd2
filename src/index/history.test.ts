import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunEntry } from '../core/run-log.js';
import { ErrorCodes } from '../errors.js';
import type { StoreRef } from './index.js';
import { withIndexAt } from '../../test/support/index-file.js';

const HERE: StoreRef = { id: 'snapline:aaaaaaaaaaaaaaaa', label: 'the local endpoint store aaaaaaaaaaaaaaaa' };
const THERE: StoreRef = { id: 'aws:123456789012:eu-west-1', label: 'AWS account 123456789012, Region eu-west-1' };

let dir: string;
let path: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-runs-'));
  path = join(dir, 'index.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function entry(more: Partial<RunEntry> = {}): RunEntry {
  return {
    operation: 'backup',
    volume: 'disk',
    startedAt: new Date('2026-03-01T02:00:00Z'),
    finishedAt: new Date('2026-03-01T02:03:00Z'),
    result: 'success',
    errorCode: null,
    snapshotId: 'snap-0123',
    changedBlocks: 2,
    changedBytes: 1 << 20,
    transferredBlocks: 2,
    transferredBytes: 1 << 20,
    liveSnapshots: 1,
    ...more,
  };
}

describe('the run history', () => {
  it('keeps failed runs with their code, in the order recorded (not by a clock that was set back), across opens', () => {
    const failed = entry({ startedAt: new Date('2026-03-02T02:00:00Z'), finishedAt: new Date('2026-03-02T02:00:01Z'), result: 'failure', errorCode: 'UNAVAILABLE', snapshotId: null });
    withIndexAt(path, HERE, (index) => {
      index.history.recordRun(failed);
      index.history.recordRun(entry());
    });
    expect(withIndexAt(path, HERE, (index) => index.history.listRuns({ volume: 'disk' }))).toEqual([failed, entry()]);
    expect(withIndexAt(path, HERE, (index) => index.history.listRuns({ operation: 'prune' }))).toEqual([]);
  });

  it("shows a bound index the runs of its store and of none, not another store's", () => {
    withIndexAt(path, THERE, (index) => index.history.recordRun(entry({ volume: 'far' })));
    withIndexAt(path, undefined, (index) => index.history.recordRun(entry({ volume: 'unbound' })));
    withIndexAt(path, HERE, (index) => index.history.recordRun(entry({ volume: 'near' })));
    const volumes = (store: StoreRef | undefined) => withIndexAt(path, store, (index) => index.history.listRuns().map((r) => r.volume));
    expect(volumes(HERE)).toEqual(['unbound', 'near']);
    expect(volumes(THERE)).toEqual(['far', 'unbound']);
    expect(volumes(undefined)).toEqual(['far', 'unbound', 'near']);
  });

  it('refuses an entry that does not hold together, naming the field, and records nothing', () => {
    const refused = (bad: Partial<RunEntry>) => withIndexAt(path, HERE, (index) => expect(() => index.history.recordRun(entry(bad))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT })));
    refused({ result: 'failure' });
    refused({ errorCode: 'UNAVAILABLE' });
    refused({ finishedAt: new Date('2026-03-01T01:00:00Z') });
    refused({ transferredBytes: -1 });
    refused({ operation: 'verify' as RunEntry['operation'] });
    expect(withIndexAt(path, HERE, (index) => index.history.listRuns())).toEqual([]);
  });
});
