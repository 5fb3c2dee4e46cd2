// The benchmark suite behind bench/run.js: runs each group of figures against
// its same-run reference (bench/lib/figures/), prints a summary table with
// each target and pass/short, and writes bench/results/latest.json and
// latest.svg.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TIB, shortText, spreadText, valueDigits } from './context.js';
import { indexFigures } from './figures/block-index.js';
import { changeTrackingFigures } from './figures/change-tracking.js';
import { commandFigures } from './figures/command.js';
import { hashingFigures } from './figures/hashing.js';
import { memoryFigures } from './figures/memory.js';
import { scanFigures } from './figures/scan.js';
import { sizeFigures } from './figures/size.js';
import { sparseFigures } from './figures/sparse.js';
import { throttleFigures } from './figures/throttle.js';
import { transferFigures } from './figures/transfer.js';
import { GIB, MIB, machine } from './measure.js';
import { chartDocument } from './svg.js';
import { nativeHoleSeeker } from 'snapline/internals';


const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));

/** @type {{ full: import('./context.js').Plan, quick: import('./context.js').Plan }} */
const PLANS = {
  full: {
    rounds: 3,
    imageBytes: GIB,
    hashBytes: 256 * MIB,
    hashRounds: 12,
    concurrencies: [8, 16, 32, 64, 128],
    sweepRounds: 2,
    sizes: [256 * MIB, GIB, 2 * GIB],
    sparse: { sizeBytes: 64 * GIB, dataBytes: GIB },
    indexBlocks: 2_000_000,
    indexJournal: true,
    rss: { sizeBytes: 16 * TIB, dataBytes: 256 * MIB },
    changeTracking: { sizeBytes: 64 * GIB, dataBytes: 8 * GIB },
    command: { imageBytes: 8 * GIB, rounds: 3 },
  },
  quick: {
    rounds: 2,
    imageBytes: 256 * MIB,
    hashBytes: 128 * MIB,
    hashRounds: 8,
    concurrencies: [16, 64],
    sweepRounds: 1,
    sizes: [64 * MIB, 256 * MIB, GIB],
    sparse: { sizeBytes: 16 * GIB, dataBytes: 256 * MIB },
    indexBlocks: 500_000,
    indexJournal: false,
    rss: { sizeBytes: TIB, dataBytes: 64 * MIB },
    changeTracking: { sizeBytes: 4 * GIB, dataBytes: 256 * MIB },
    command: { imageBytes: GIB, rounds: 3 },
  },
};

/** Each group of figures, in the order a full run takes them. */
export const GROUPS = {
  hashing: hashingFigures,
  transfer: transferFigures,
  scan: scanFigures,
  command: commandFigures,
  sparse: sparseFigures,
  index: indexFigures,
  memory: memoryFigures,
  size: sizeFigures,
  throttle: throttleFigures,
  tracking: changeTrackingFigures,
};

/**
 * Runs the chosen groups and writes the report.
 * @param {{ quick: boolean, groups: Array<keyof typeof GROUPS>, rounds?: number }} options
 * @returns {Promise<boolean>} true when a run failed or a check did not hold (a target missed does not count)
 */
export async function runSuite({ quick, groups, rounds }) {
  const plan = { ...(quick ? PLANS.quick : PLANS.full) };
  if (rounds !== undefined) {
    plan.rounds = rounds;
    plan.command = { ...plan.command, rounds };
  }
  const about = machine();
  console.log(`snapline bench (${quick ? 'quick' : 'full'}): ${about.nproc} cores, ${about.cpu}${about.shaNi ? ' (SHA-NI)' : ''}, ${about.memoryGiB} GiB, Node ${about.node}, load ${about.loadAverage}`);
  console.log(`native hole seeker: ${nativeHoleSeeker() ? 'loaded' : 'missing, holes are read'}`);
  const started = Date.now();
  /** @type {import('./context.js').Context} */
  const ctx = {
    plan,
    dir: await mkdtemp(join(tmpdir(), 'snapline-bench-')),
    figures: [],
    series: { concurrency: [], size: [] },
    errors: [],
    checks: 0,
    images: new Map(),
    shaCeiling: undefined,
    fullBackupMs: new Map(),
  };
  /** @type {Record<string, number>} */
  const groupSeconds = {};
  try {
    for (const group of groups) {
      const groupStart = performance.now();
      try {
        await GROUPS[group](ctx);
      } catch (err) {
        const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
        ctx.errors.push(`${group} failed: ${message}`);
        console.log(`!! ${group} failed: ${message}`);
      }
      groupSeconds[group] = (performance.now() - groupStart) / 1000;
    }
  } finally {
    await rm(ctx.dir, { recursive: true, force: true });
  }
  printSummary(ctx);
  const seconds = (Date.now() - started) / 1000;
  const results = {
    mode: quick ? 'quick' : 'full',
    machine: about,
    startedAt: new Date(started).toISOString(),
    seconds,
    groupSeconds,
    plan,
    figures: ctx.figures,
    series: ctx.series,
    errors: ctx.errors,
  };
  await writeReport(results);
  return ctx.errors.length > 0;
}

/** @param {import('./context.js').Context} ctx */
function printSummary(ctx) {
  const rows = ctx.figures.map((f) => {
    const measured = `${f.value.toFixed(valueDigits(f.unit))} ${f.unit}`;
    const reference = f.reference === undefined ? '' : `${f.reference.value.toFixed(f.reference.unit === 's' ? 3 : 0)} ${f.reference.unit}`;
    const ratio = f.ratio === undefined ? '' : f.ratioUnit === '%' ? `${(100 * f.ratio).toFixed(0)} %` : `${f.ratio.toFixed(2)}x`;
    const verdict = f.pass === undefined ? '' : f.pass ? 'pass' : `short by ${shortText(f)}`;
    return [f.id, measured, reference, ratio, f.target?.text ?? '', verdict, spreadText(f)];
  });
  const header = ['figure', 'measured', 'reference', 'ratio', 'target', 'result', 'all runs'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => /** @type {string} */ (row[i]).length)));
  const line = (/** @type {string[]} */ cells) => cells.map((cell, i) => cell.padEnd(/** @type {number} */ (widths[i]))).join('  ').trimEnd();
  console.log(`\n${line(header)}`);
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
  if (ctx.errors.length === 0) console.log(`\nevery run finished and all ${ctx.checks} checks held`);
  else {
    console.log(`\n${ctx.errors.length} failed run(s) or check(s):`);
    for (const error of ctx.errors) console.log(`  - ${error}`);
  }
}

/**
 * Writes latest.json and, when a chart has data, latest.svg to bench/results/.
 * @param {{ mode: string, machine: ReturnType<typeof machine>, startedAt: string, seconds: number, series: import('./context.js').Context['series'] }} results
 */
async function writeReport(results) {
  await mkdir(RESULTS_DIR, { recursive: true });
  const json = join(RESULTS_DIR, 'latest.json');
  await writeFile(json, `${JSON.stringify(results, null, 2)}\n`);
  /** @type {import('./svg.js').Panel[]} */
  const panels = [];
  if (results.series.concurrency.length > 0) {
    panels.push({ title: 'Throughput against concurrency', xLabel: 'requests in flight', yLabel: 'MiB/s', series: results.series.concurrency, logX: true });
  }
  if (results.series.size.length > 0) {
    panels.push({
      title: 'Throughput against image size',
      xLabel: 'image size',
      yLabel: 'MiB/s',
      series: results.series.size,
      logX: true,
      formatX: (mib) => (mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`),
    });
  }
  const wrote = [json];
  if (panels.length > 0) {
    const svg = join(RESULTS_DIR, 'latest.svg');
    const m = results.machine;
    await writeFile(svg, chartDocument(panels, `snapline bench (${results.mode}) ${results.startedAt}: ${m.nproc} cores, ${m.cpu}, Node ${m.node}; the local endpoint shares the cores`));
    wrote.push(svg);
  }
  console.log(`\nwrote ${wrote.join(' and ')} in ${results.seconds.toFixed(0)} s`);
}
