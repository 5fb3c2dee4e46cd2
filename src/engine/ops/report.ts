import type { RunEntry } from '../../core/run-log.js';
import type { DrillRecord, SnapshotRecord } from '../../core/index-ports.js';
import type { PrunedVolume } from '../lineage/prune.js';
import { volumeStatus, type StatusIndex, type StatusOptions, type StatusResult, type VolumeStatus } from './status.js';

export interface ReportInput {
  status: StatusResult;
  /** Every run of the report's volumes, oldest first. */
  runs: readonly RunEntry[];
  /** The index's snapshots of the report's volumes, every state. */
  snapshots: readonly SnapshotRecord[];
  /** The restore drills of the report's volumes, oldest first. */
  drills?: readonly DrillRecord[];
  /**
   * What the next prune decides for each volume a retention policy applies
   * to (engine/lineage/prune.ts retentionPlan), in the time zone named; a
   * volume without one shows "no policy applied".
   */
  retention?: { timeZone: string; volumes: readonly PrunedVolume[] };
}

/** What the report shows of `options.volume` (else of every volume) from the index alone: all but a retention plan. */
export function indexReport(index: StatusIndex, options: StatusOptions = {}): Omit<ReportInput, 'retention'> {
  const status = volumeStatus(index, options);
  const shown = new Set(status.volumes.map((v) => v.volume));
  return {
    status,
    runs: index.history.listRuns(options.volume === undefined ? {} : { volume: options.volume }),
    snapshots: index.lineage.listSnapshots().filter((s) => shown.has(s.volume)),
    drills: [...shown].flatMap((volume) => index.drills.ofVolume(volume)),
  };
}

/**
 * One self-contained HTML page: inline CSS and SVG, no script, nothing
 * fetched. Per volume: the status row, charts of its backups (bytes changed,
 * duration, throughput, snapshots kept after each backup or prune), its
 * restore drills, a calendar of its snapshots and the retention rules that
 * keep each one. Every number of the status table sits in a
 * data-field/data-value attribute as status --json gives it.
 */
export function reportHtml(input: ReportInput): string {
  const volumes = input.status.volumes;
  const sections = volumes.map((v) => volumeSection(v, input));
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>snapline report ${escape(input.status.generatedAt)}</title>
<style>${STYLE}</style>
</head>
<body>
<h1>snapline report</h1>
<p class="note">Generated <time datetime="${escape(input.status.generatedAt)}">${escape(input.status.generatedAt)}</time>. EBS space is an estimate: the blocks each snapshot adds (ListChangedBlocks, ListSnapshotBlocks) × 512 KiB.</p>
<h2>Status</h2>
${statusTable(volumes)}
${sections.join('\n')}
</body>
</html>
`;
}

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1b1f24; background: #fff; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; font-variant-numeric: tabular-nums; }
th { background: #f3f4f6; }
.note { color: #57606a; }
.ok { color: #1a7f37; } .late, .failing, .late-failing { color: #cf222e; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #57606a; }
svg .bar { fill: #0969da; } svg .bad { fill: #cf222e; } svg .axis { stroke: #8c959f; } svg text { font-size: 10px; fill: #57606a; }
.calendar td { width: 14px; height: 14px; padding: 0; text-align: center; font-size: 9px; }
.calendar td.snap { background: #2da44e; color: #fff; } .calendar td.none { background: #ebedf0; } .calendar td.blank { border: none; }
.retention tr.removed td { color: #cf222e; text-decoration: line-through; }
`;

const STATUS_FIELDS: Array<{ title: string; field: string; value: (v: VolumeStatus) => string | number | null; shown?: (v: VolumeStatus) => string }> = [
  { title: 'Volume', field: 'volume', value: (v) => v.volume },
  { title: 'Health', field: 'health', value: (v) => v.health },
  { title: 'Last backup', field: 'lastBackup.finishedAt', value: (v) => v.lastBackup?.finishedAt ?? null },
  { title: 'Result', field: 'lastBackup.result', value: (v) => v.lastBackup?.result ?? null, shown: (v) => (v.lastBackup === null ? '-' : v.lastBackup.result === 'success' ? 'success' : `failed: ${v.lastBackup.errorCode}`) },
  { title: 'Took', field: 'lastBackup.durationMs', value: (v) => v.lastBackup?.durationMs ?? null, shown: (v) => (v.lastBackup === null ? '-' : seconds(v.lastBackup.durationMs)) },
  { title: 'Changed', field: 'lastBackup.changedBytes', value: (v) => v.lastBackup?.changedBytes ?? null, shown: (v) => (v.lastBackup === null ? '-' : bytes(v.lastBackup.changedBytes)) },
  { title: 'Uploaded', field: 'lastBackup.uploadedBytes', value: (v) => v.lastBackup?.uploadedBytes ?? null, shown: (v) => (v.lastBackup?.uploadedBytes == null ? '-' : bytes(v.lastBackup.uploadedBytes)) },
  { title: 'Newest good snapshot', field: 'newestGoodSnapshot.snapshotId', value: (v) => v.newestGoodSnapshot?.snapshotId ?? null },
  { title: 'Age (s)', field: 'newestGoodSnapshot.ageSeconds', value: (v) => v.newestGoodSnapshot?.ageSeconds ?? null },
  { title: 'Snapshots', field: 'snapshotCount', value: (v) => v.snapshotCount },
  { title: 'Last archive', field: 'lastArchive.archiveId', value: (v) => v.lastArchive?.archiveId ?? null },
  { title: 'Last drill', field: 'lastDrill.at', value: (v) => v.lastDrill?.at ?? null },
  { title: 'Last copy', field: 'lastCopy.copySnapshotId', value: (v) => v.lastCopy?.copySnapshotId ?? null, shown: (v) => (v.lastCopy === null ? '-' : `${v.lastCopy.copySnapshotId} (${v.lastCopy.region})`) },
  { title: 'EBS (estimate)', field: 'ebsSpace.estimatedBytes', value: (v) => v.ebsSpace?.estimatedBytes ?? null, shown: (v) => (v.ebsSpace === null ? '-' : `~${bytes(v.ebsSpace.estimatedBytes)}`) },
];

function statusTable(volumes: readonly VolumeStatus[]): string {
  if (volumes.length === 0) return '<p>No volumes in the index.</p>';
  const head = STATUS_FIELDS.map((f) => `<th>${escape(f.title)}</th>`).join('');
  const rows = volumes.map((v) => {
    const cells = STATUS_FIELDS.map((f) => {
      const value = f.value(v);
      const shown = f.shown?.(v) ?? (value === null ? '-' : String(value));
      const cls = f.field === 'health' ? ` class="${v.health.replace(', ', '-')}"` : '';
      return `<td data-field="${f.field}" data-value="${value === null ? '' : escape(String(value))}"${cls}>${escape(shown)}</td>`;
    });
    return `<tr data-volume="${escape(v.volume)}">${cells.join('')}</tr>`;
  });
  return `<table id="status"><thead><tr>${head}</tr></thead><tbody>\n${rows.join('\n')}\n</tbody></table>`;
}

function volumeSection(status: VolumeStatus, input: ReportInput): string {
  const volume = status.volume;
  const backups = input.runs.filter((r) => r.volume === volume && r.operation === 'backup');
  const counts = input.runs.filter((r) => r.volume === volume && r.liveSnapshots !== null);
  const label = (r: { finishedAt: Date }) => r.finishedAt.toISOString().slice(0, 16).replace('T', ' ');
  const durationS = (r: RunEntry) => (r.finishedAt.getTime() - r.startedAt.getTime()) / 1000;
  const charts = [
    barChart('Bytes changed per backup', backups.map((r) => ({ label: label(r), value: r.changedBytes, bad: r.result === 'failure' })), bytes),
    barChart('Duration per backup', backups.map((r) => ({ label: label(r), value: durationS(r), bad: r.result === 'failure' })), (s) => `${s.toFixed(1)} s`),
    barChart(
      'Upload throughput per backup',
      backups.map((r) => ({ label: label(r), value: durationS(r) > 0 ? r.transferredBytes / durationS(r) : 0, bad: r.result === 'failure' })),
      (v) => `${bytes(v)}/s`,
    ),
    barChart('Snapshots after each backup or prune', counts.map((r) => ({ label: `${label(r)} ${r.operation}`, value: r.liveSnapshots!, bad: false })), (n) => String(Math.round(n))),
  ];
  const snapshots = input.snapshots.filter((s) => s.volume === volume && s.state === 'completed');
  const drills = (input.drills ?? []).filter((d) => d.volume === volume);
  return `<section data-volume="${escape(volume)}">
<h2>${escape(volume)}</h2>
<div class="charts">${charts.join('\n')}</div>
<h3>Restore drills</h3>
${drillSection(drills, label)}
<h3>Snapshot calendar</h3>
${calendar(snapshots)}
${retentionTable(volume, snapshots, input.retention)}
</section>`;
}

interface Point {
  label: string;
  value: number;
  bad: boolean;
}

/** A bar chart in SVG, one bar per point (the newest 60), failed runs in red. */
function barChart(title: string, all: Point[], format: (value: number) => string): string {
  const points = all.slice(-60);
  const width = 360;
  const height = 140;
  const top = 14;
  const bottom = 20;
  const left = 4;
  const largest = Math.max(0, ...points.map((p) => p.value));
  const step = points.length === 0 ? 0 : (width - left) / points.length;
  const bars = points.map((p, i) => {
    const h = largest > 0 ? ((height - top - bottom) * p.value) / largest : 0;
    const x = left + i * step + step * 0.1;
    return `<rect class="${p.bad ? 'bad' : 'bar'}" x="${x.toFixed(1)}" y="${(height - bottom - h).toFixed(1)}" width="${Math.max(1, step * 0.8).toFixed(1)}" height="${h.toFixed(1)}" data-value="${p.value}"><title>${escape(`${p.label}: ${format(p.value)}`)}</title></rect>`;
  });
  const empty = points.length === 0 ? `<text x="${width / 2}" y="${height / 2}" text-anchor="middle">no runs recorded</text>` : '';
  const span = points.length === 0 ? '' : `<text x="${left}" y="${height - 6}">${escape(points[0]!.label)}</text><text x="${width}" y="${height - 6}" text-anchor="end">${escape(points.at(-1)!.label)}</text>`;
  return `<figure><svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escape(title)}">
<text x="${left}" y="10">max ${escape(format(largest))}</text>
<line class="axis" x1="${left}" y1="${height - bottom}" x2="${width}" y2="${height - bottom}"/>
${bars.join('\n')}${empty}${span}
</svg><figcaption>${escape(title)}</figcaption></figure>`;
}

/** One row per month from the first snapshot's to the last's, one cell per day (UTC), green on days with a snapshot. */
function calendar(snapshots: readonly SnapshotRecord[]): string {
  if (snapshots.length === 0) return '<p>No completed snapshots.</p>';
  const byDay = new Map<string, string[]>();
  for (const s of snapshots) {
    const day = s.completedAt!.toISOString().slice(0, 10);
    byDay.set(day, [...(byDay.get(day) ?? []), s.snapshotId]);
  }
  const days = [...byDay.keys()].sort();
  const first = new Date(`${days[0]!.slice(0, 7)}-01T00:00:00Z`);
  const last = new Date(`${days.at(-1)!.slice(0, 7)}-01T00:00:00Z`);
  const rows: string[] = [];
  for (let month = first; month <= last; month = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1))) {
    const name = month.toISOString().slice(0, 7);
    const length = new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 0)).getUTCDate();
    const cells: string[] = [];
    for (let d = 1; d <= 31; d++) {
      if (d > length) {
        cells.push('<td class="blank"></td>');
        continue;
      }
      const day = `${name}-${String(d).padStart(2, '0')}`;
      const ids = byDay.get(day);
      cells.push(ids === undefined ? `<td class="none" title="${day}"></td>` : `<td class="snap" data-day="${day}" title="${escape(`${day}: ${ids.join(', ')}`)}">${ids.length}</td>`);
    }
    rows.push(`<tr><th>${name}</th>${cells.join('')}</tr>`);
  }
  return `<table class="calendar">${rows.join('\n')}</table>`;
}

/** The recovery time of each drill as a chart (failed ones in red), and every drill in a table, newest first. */
function drillSection(drills: readonly DrillRecord[], label: (r: { finishedAt: Date }) => string): string {
  if (drills.length === 0) return '<p>No restore drills recorded (<code>snapline drill VOLUME</code>).</p>';
  const chart = barChart('Recovery time per drill', drills.map((d) => ({ label: `${label(d)} ${d.kind}`, value: d.recoveryMs / 1000, bad: !d.passed })), (s) => `${s.toFixed(1)} s`);
  const rows = [...drills].reverse().map(
    (d) =>
      `<tr data-drill="${d.id}"><td>${escape(isoSeconds(d.finishedAt))}</td><td>${escape(d.snapshotId)}</td><td>${d.kind}</td>` +
      `<td data-field="result" class="${d.passed ? 'ok' : 'failing'}">${d.passed ? 'passed' : 'FAILED'}</td>` +
      `<td data-field="recoveryMs" data-value="${d.recoveryMs}">${seconds(d.recoveryMs)}</td>` +
      `<td data-field="blocksRead" data-value="${d.blocksRead}">${d.blocksRead}</td>` +
      `<td data-field="mismatchedBlocks" data-value="${d.mismatchedBlocks}">${d.mismatchedBlocks}</td><td>${escape(d.message ?? '')}</td></tr>`,
  );
  return `<div class="charts">${chart}</div>
<table class="drills"><thead><tr><th>Finished</th><th>Snapshot</th><th>Kind</th><th>Result</th><th>Recovery</th><th>Blocks read</th><th>Mismatched</th><th>Why it failed</th></tr></thead><tbody>
${rows.join('\n')}
</tbody></table>`;
}

/** Each completed snapshot, newest first, with the rules that keep it at the next prune (or that it goes then). */
function retentionTable(volume: string, snapshots: readonly SnapshotRecord[], retention: ReportInput['retention']): string {
  const plan = retention?.volumes.find((v) => v.volume === volume);
  const decided = new Map(plan?.snapshots.map((s) => [s.snapshotId, s]));
  const rows = [...snapshots].reverse().map((s) => {
    const decision = decided.get(s.snapshotId);
    const rules = decision === undefined ? 'no policy applied' : decision.removed ? 'removed at the next prune' : decision.keptBy.join(', ');
    const cls = decision?.removed ? ' class="removed"' : '';
    return `<tr data-snapshot="${escape(s.snapshotId)}"${cls}><td>${escape(isoSeconds(s.completedAt!))}</td><td>${escape(s.snapshotId)}</td><td data-field="keptBy">${escape(rules)}</td></tr>`;
  });
  const policy = plan === undefined ? 'No retention policy applies to this volume (volumes.NAME.retention in the config file, or report --keep-*).' : `Policy: keep ${plan.policy} (periods in ${retention!.timeZone}).`;
  return `<h3>Retention</h3>
<p class="policy">${escape(policy)}</p>
<table class="retention"><thead><tr><th>Completed</th><th>Snapshot</th><th>Kept by</th></tr></thead><tbody>
${rows.join('\n')}
</tbody></table>`;
}

function isoSeconds(at: Date): string {
  return at.toISOString().replace(/\.\d+Z$/, 'Z');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}
