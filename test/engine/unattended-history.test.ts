/**
 * What `status` and the metrics file say of a volume's last backup, read from
 * a real SQLite index's run history: the last run is the one recorded last,
 * whatever the clock said when it started.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RunEntry } from '../../src/core/run-log.js';
import { prometheusText } from '../../src/engine/ops/metrics.js';
import { volumeStatus } from '../../src/engine/ops/status.js';
import { parsePrometheusText } from '../support/prometheus.js';
import { withIndexAt } from '../support/index-file.js';

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-unattended-'));
  path = join(dir, 'index.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function backupRun(startedAt: string, result: RunEntry['result']): RunEntry {
  const started = new Date(startedAt);
  return {
    operation: 'backup',
    volume: 'db1',
    startedAt: started,
    finishedAt: new Date(started.getTime() + 60_000),
    result,
    errorCode: result === 'failure' ? 'ACCESS_DENIED' : null,
    snapshotId: result === 'failure' ? null : 'snap-0123456789abcdef0',
    changedBlocks: 0,
    changedBytes: 0,
    transferredBlocks: 0,
    transferredBytes: 0,
    liveSnapshots: null,
  };
}

describe('the last backup, after the clock was set back', () => {
  it('a backup that fails after the clock went back is the last one: status says failing, the metrics say 0', () => {
    // The nightly backups ran while the clock was two days ahead; it was then set right, and the next backup failed.
    withIndexAt(path, undefined, (index) => {
      index.history.recordRun(backupRun('2026-12-09T02:30:00Z', 'success'));
      index.history.recordRun(backupRun('2026-12-07T02:30:00Z', 'failure'));
    });
    const status = withIndexAt(path, undefined, (index) => volumeStatus(index, { now: new Date('2026-12-07T03:00:00Z') }));
    expect(status.volumes[0]).toMatchObject({ volume: 'db1', failing: true, health: 'failing', lastBackup: { result: 'failure', errorCode: 'ACCESS_DENIED' } });
    expect(status.attention).toBe(true);

    const families = parsePrometheusText(withIndexAt(path, undefined, (index) => prometheusText(index.history.listRuns())));
    const sample = (name: string) => families.get(name)!.samples.find((s) => s.labels.operation === 'backup' && s.labels.volume === 'db1')!.value;
    expect(sample('snapline_last_run_success')).toBe(0);
    expect(sample('snapline_last_run_timestamp_seconds')).toBe(Date.parse('2026-12-07T02:31:00Z') / 1000);
  });
});
