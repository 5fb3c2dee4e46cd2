import type { RunEntry } from '../../core/run-log.js';

/**
 * The run history in the Prometheus text exposition format (version 0.0.4),
 * for node_exporter's textfile collector: per operation and volume, the last
 * run and the last success, and counters over the whole history. Every
 * family is written whole (HELP, TYPE, then its samples), so that one file
 * can serve every command. The README lists the names.
 */
export function prometheusText(runs: readonly RunEntry[]): string {
  const last = new Map<string, RunEntry>();
  const lastSuccess = new Map<string, RunEntry>();
  const results = new Map<string, { labels: Labels; count: number }>();
  const errors = new Map<string, { labels: Labels; count: number }>();
  const liveSnapshots = new Map<string, number>();
  for (const run of runs) {
    const key = keyOf(run);
    last.set(key, run);
    if (run.result === 'success') lastSuccess.set(key, run);
    if (run.liveSnapshots !== null && run.volume !== null) liveSnapshots.set(run.volume, run.liveSnapshots);
    count(results, { ...labelsOf(run), result: run.result });
    if (run.errorCode !== null) count(errors, { ...labelsOf(run), code: run.errorCode });
  }
  const lastRuns = [...last.values()];
  const seconds = (ms: number) => ms / 1000;
  const families: Family[] = [
    gauge('snapline_last_run_timestamp_seconds', 'When the last run ended, in seconds since the epoch.', lastRuns, (r) => seconds(r.finishedAt.getTime())),
    gauge('snapline_last_run_success', '1 when the last run succeeded, 0 when it failed.', lastRuns, (r) => (r.result === 'success' ? 1 : 0)),
    gauge('snapline_last_run_duration_seconds', 'How long the last run took.', lastRuns, (r) => seconds(r.finishedAt.getTime() - r.startedAt.getTime())),
    gauge('snapline_last_run_changed_bytes', 'Bytes that differed from the parent snapshot in the last run (backup).', lastRuns, (r) => r.changedBytes),
    gauge('snapline_last_run_changed_blocks', 'Blocks that differed from the parent in the last run (backup), or snapshots deleted (prune).', lastRuns, (r) => r.changedBlocks),
    gauge('snapline_last_run_transferred_bytes', 'Bytes the last run sent (backup, archive) or wrote (restore).', lastRuns, (r) => r.transferredBytes),
    gauge('snapline_last_run_transferred_blocks', 'Blocks the last run sent (backup, archive) or wrote (restore).', lastRuns, (r) => r.transferredBlocks),
    gauge('snapline_last_success_timestamp_seconds', 'When the last successful run ended, in seconds since the epoch.', [...lastSuccess.values()], (r) => seconds(r.finishedAt.getTime())),
    {
      name: 'snapline_volume_snapshots',
      help: 'Completed snapshots of the volume in the index after its last backup or prune.',
      type: 'gauge',
      samples: [...liveSnapshots].map(([volume, value]) => ({ labels: { volume }, value })),
    },
    { name: 'snapline_runs_total', help: 'Runs recorded in the index, by result.', type: 'counter', samples: [...results.values()].map(({ labels, count }) => ({ labels, value: count })) },
    { name: 'snapline_errors_total', help: 'Failed runs recorded in the index, by error code.', type: 'counter', samples: [...errors.values()].map(({ labels, count }) => ({ labels, value: count })) },
  ];
  return families.map(render).join('');
}

type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: Array<{ labels: Labels; value: number }>;
}

function labelsOf(run: RunEntry): Labels {
  return { operation: run.operation, volume: run.volume ?? '' };
}

function keyOf(run: RunEntry): string {
  return JSON.stringify([run.operation, run.volume]);
}

function count(into: Map<string, { labels: Labels; count: number }>, labels: Labels): void {
  const key = JSON.stringify(labels);
  const entry = into.get(key) ?? { labels, count: 0 };
  entry.count += 1;
  into.set(key, entry);
}

function gauge(name: string, help: string, runs: RunEntry[], value: (run: RunEntry) => number): Family {
  return { name, help, type: 'gauge', samples: runs.map((run) => ({ labels: labelsOf(run), value: value(run) })) };
}

function render(family: Family): string {
  const lines = [`# HELP ${family.name} ${family.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${family.name} ${family.type}`];
  for (const sample of family.samples) {
    const labels = Object.entries(sample.labels)
      .map(([key, value]) => `${key}="${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
      .join(',');
    lines.push(`${family.name}{${labels}} ${formatValue(sample.value)}`);
  }
  return `${lines.join('\n')}\n`;
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  return String(value);
}
