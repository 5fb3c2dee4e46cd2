import { describe, expect, it } from 'vitest';
import type { RunEntry } from '../../core/run-log.js';
import { parsePrometheusText } from '../../../test/support/prometheus.js';
import { prometheusText } from './metrics.js';

const at = (iso: string) => new Date(iso);

function run(more: Partial<RunEntry>): RunEntry {
  return {
    operation: 'backup',
    volume: 'disk',
    startedAt: at('2026-01-01T00:00:00Z'),
    finishedAt: at('2026-01-01T00:01:30Z'),
    result: 'success',
    errorCode: null,
    snapshotId: 'snap-0a',
    changedBlocks: 4,
    changedBytes: 4 * 524288,
    transferredBlocks: 3,
    transferredBytes: 3 * 524288,
    liveSnapshots: 2,
    ...more,
  };
}

describe('prometheusText', () => {
  it('is strict exposition text: last run, last success, counters by result and error code, per operation and volume', () => {
    const runs = [
      run({}),
      run({ startedAt: at('2026-01-02T00:00:00Z'), finishedAt: at('2026-01-02T00:00:10Z'), result: 'failure', errorCode: 'UNAVAILABLE', changedBytes: 0, transferredBytes: 0, liveSnapshots: 2 }),
      run({ operation: 'prune', volume: 'disk', changedBlocks: 1, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0, liveSnapshots: 1, finishedAt: at('2026-01-03T00:00:00Z'), startedAt: at('2026-01-03T00:00:00Z') }),
      run({ operation: 'restore', volume: null, result: 'failure', errorCode: 'NOT_FOUND', liveSnapshots: null }),
    ];
    const families = parsePrometheusText(prometheusText(runs));
    const value = (name: string, labels: Record<string, string>) => families.get(name)?.samples.find((s) => JSON.stringify(s.labels) === JSON.stringify(labels))?.value;
    const backup = { operation: 'backup', volume: 'disk' };
    expect(value('snapline_last_run_success', backup)).toBe(0);
    expect(value('snapline_last_run_timestamp_seconds', backup)).toBe(Date.parse('2026-01-02T00:00:10Z') / 1000);
    expect(value('snapline_last_success_timestamp_seconds', backup)).toBe(Date.parse('2026-01-01T00:01:30Z') / 1000);
    expect(value('snapline_last_run_duration_seconds', backup)).toBe(10);
    expect(value('snapline_last_run_changed_blocks', { operation: 'prune', volume: 'disk' })).toBe(1);
    expect(value('snapline_volume_snapshots', { volume: 'disk' })).toBe(1);
    expect(value('snapline_runs_total', { ...backup, result: 'success' })).toBe(1);
    expect(value('snapline_runs_total', { ...backup, result: 'failure' })).toBe(1);
    expect(value('snapline_errors_total', { ...backup, code: 'UNAVAILABLE' })).toBe(1);
    expect(value('snapline_errors_total', { operation: 'restore', volume: '', code: 'NOT_FOUND' })).toBe(1);
    expect(families.get('snapline_last_success_timestamp_seconds')!.samples.some((s) => s.labels.operation === 'restore')).toBe(false);
    for (const family of families.values()) {
      expect(family.name).toMatch(/^snapline_/);
      expect(family.help).toBeTruthy();
    }
  });

  it('escapes label values (backslash, quote, newline) so that the strict reader gives them back', () => {
    const volume = 'a"b\\c\nd';
    const families = parsePrometheusText(prometheusText([run({ volume })]));
    expect(families.get('snapline_last_run_success')!.samples[0]!.labels.volume).toBe(volume);
  });

  it('with no runs: every family with HELP and TYPE and no samples', () => {
    const families = parsePrometheusText(prometheusText([]));
    expect(families.size).toBeGreaterThan(5);
    expect([...families.values()].every((f) => f.samples.length === 0)).toBe(true);
  });
});

describe('the strict reader', () => {
  it('refuses what the collector would refuse', () => {
    expect(() => parsePrometheusText('a{x="1"} 1\n# TYPE a gauge\n')).toThrow(/TYPE after samples/);
    expect(() => parsePrometheusText('a{x="\\t"} 1\n')).toThrow(/bad escape/);
    expect(() => parsePrometheusText('a 1\nb 1\na 2\n')).toThrow(/split/);
    expect(() => parsePrometheusText('a{x="1"} 1\na{x="1"} 2\n')).toThrow(/same labels/);
    expect(() => parsePrometheusText('# TYPE c counter\n')).toThrow(/_total/);
    expect(() => parsePrometheusText('a 1')).toThrow(/newline/);
    expect(() => parsePrometheusText('a one\n')).toThrow(/bad value/);
  });
});
