import { Option, type Command } from 'commander';
import { DEFAULT_BENCH_LEVELS, MAX_BENCH_CONCURRENCY, MAX_BENCH_LEVELS } from '../../core/bench-options.js';
import type { BenchEvent, BenchResult, LevelResult, Recommendation } from '../../engine/bench/bench.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import { barChart, table, utf8Terminal } from '../chart.js';
import type { CommandContext, Wrap } from '../context.js';
import { integerOption, numberOption } from '../parse.js';
import { count } from '../progress.js';
import { sessionOptions } from './common.js';

const DEFAULT_LEVELS = DEFAULT_BENCH_LEVELS.join(',');

interface BenchFlags {
  levels: number[];
  seconds: number;
  blocks: number;
  keep?: boolean;
}

export function registerBench(program: Command, wrap: Wrap): void {
  program
    .command('bench')
    .description('measure PutSnapshotBlock and GetSnapshotBlock throughput and latency at several concurrency levels on a scratch snapshot, and recommend a --concurrency')
    .addOption(new Option('--levels <list>', `requests in flight to measure, comma-separated (1..${MAX_BENCH_CONCURRENCY}); each holds a 512 KiB block, so ${MAX_BENCH_CONCURRENCY} take ${MAX_BENCH_CONCURRENCY / 2} MiB`).default(parseLevels(DEFAULT_LEVELS), DEFAULT_LEVELS).argParser(parseLevels))
    .addOption(new Option('--seconds <n>', 'longest measurement per level and direction').default(10).argParser(numberOption('--seconds', 0.1, 3600)))
    .addOption(new Option('--blocks <n>', 'most requests per level and direction (512 KiB each); a level ends at this or --seconds').default(1024).argParser(integerOption('--blocks', 1, 100_000)))
    .option('--keep', 'keep the scratch snapshot and print its id (default: delete it)')
    .action(wrap((ctx: CommandContext, flags: BenchFlags) => runBenchCommand(ctx, flags)));
}

/** "1,4,16": whole numbers from 1 to MAX_BENCH_CONCURRENCY, at most MAX_BENCH_LEVELS of them; sorted, duplicates dropped. */
function parseLevels(value: string): number[] {
  const parts = value.split(',').map((part) => part.trim());
  const level = integerOption('--levels', 1, MAX_BENCH_CONCURRENCY);
  const levels = [...new Set(parts.map((part) => level(part)))].sort((a, b) => a - b);
  if (levels.length > MAX_BENCH_LEVELS) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--levels takes at most ${MAX_BENCH_LEVELS} levels, got ${levels.length}`);
  }
  return levels;
}

async function runBenchCommand(ctx: CommandContext, flags: BenchFlags): Promise<number> {
  const output = ctx.output();
  const { withRemote } = await import('../../session.js');
  const { runBench, LEFTOVER_QUERY, BENCH_TAG } = await import('../../engine/bench/bench.js');
  const { indexPath: _index, archive: _archive, ...options } = sessionOptions(ctx);
  const highest = Math.max(...flags.levels);
  return withRemote({ ...options, concurrency: highest }, async (remote) => {
    if (remote.connection.localEndpoint?.via === 'in-process') {
      output.note('note: the local endpoint runs inside this process and shares its CPU; for the endpoint alone, start `snapline serve` first');
    }
    const maxSockets = remote.connection.settings.maxSockets;
    if (maxSockets !== undefined && maxSockets < highest) {
      output.warn(`the connection allows ${maxSockets} sockets: levels above ${maxSockets} cannot have that many requests in flight`);
    }
    let scratch: string | undefined;
    const onAbort = () => {
      if (scratch === undefined || flags.keep) return;
      output.note(`interrupted: deleting the scratch snapshot ${scratch}; Ctrl-C again exits at once and leaves it (find it with ${LEFTOVER_QUERY})`);
    };
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    const onEvent = (event: BenchEvent) => {
      scratch = event.type === 'started' ? event.snapshotId : scratch;
      const line = progressLine(event);
      if (line !== undefined) output.progressLine(line);
      if (event.type === 'cleanup-done' && event.cleanup === 'failed') {
        output.warn(`could not delete the scratch snapshot ${event.snapshotId}: ${event.message}; find left-overs with ${LEFTOVER_QUERY}`);
      }
    };
    let result: BenchResult;
    try {
      result = await runBench(remote, { levels: flags.levels, durationMs: flags.seconds * 1000, blocksPerLevel: flags.blocks, keep: Boolean(flags.keep), signal: ctx.signal, onEvent });
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
    }
    output.result(result, () => report(result, { ascii: !utf8Terminal(), tag: BENCH_TAG }));
    if (result.mismatches > 0) {
      output.note(`snapline: error: ${count(result.mismatches, 'read')} did not return the bytes or checksum written`);
      return ExitCodes.INTEGRITY;
    }
    if (result.cleanup === 'failed') return ExitCodes.REMOTE;
    if (result.put.every((l) => l.status === 'failed') || result.get.every((l) => l.status === 'failed')) return ExitCodes.REMOTE;
    return ExitCodes.OK;
  });
}

const CALL = { put: 'PutSnapshotBlock', get: 'GetSnapshotBlock' } as const;

function progressLine(event: BenchEvent): string | undefined {
  switch (event.type) {
    case 'started':
      return `scratch snapshot ${event.snapshotId} started (${event.volumeSizeGiB} GiB)`;
    case 'level-started':
      return `measuring ${CALL[event.operation]} at ${event.concurrency} in flight`;
    case 'level-done':
      return `  ${event.result.mibPerSecond.toFixed(1)} MiB/s, ${event.result.requests} requests, ${event.result.throttled} throttled, ${event.result.failed + event.result.mismatched} failed`;
    case 'completing':
      return `completing the scratch snapshot (${count(event.blocks, 'block')})`;
    case 'cleanup-started':
      return `deleting the scratch snapshot ${event.snapshotId}`;
    case 'cleanup-done':
      return undefined;
  }
}

/** The human report: per direction a table and a chart, then the recommendation, the checks and the notes. */
function report(result: BenchResult, style: { ascii: boolean; tag: string }): string[] {
  const lines = [`scratch snapshot ${result.snapshotId} (${result.volumeSizeGiB} GiB, tag ${style.tag}=true), ${count(result.blocksWritten, 'block')} written`];
  for (const [operation, levels, recommended, use] of [
    ['put', result.put, result.recommended.put, 'backup'],
    ['get', result.get, result.recommended.get, 'restore'],
  ] as const) {
    lines.push('', `${CALL[operation]} (${use})`);
    lines.push(...levelTable(levels).map((line) => `  ${line}`));
    lines.push('', '  MiB/s by requests in flight');
    const bars = levels.map((l) => ({
      label: String(l.concurrency),
      value: l.mibPerSecond,
      ...(l.status === 'failed' ? { note: 'most requests failed' } : l.concurrency === recommended?.concurrency ? { note: style.ascii ? '<- recommended' : '◀ recommended' } : {}),
    }));
    lines.push(...barChart(bars, { ascii: style.ascii }).map((line) => `  ${line}`));
  }
  lines.push(
    '',
    `recommended: ${advice(result.recommended.put, 'backup')}; ${advice(result.recommended.get, 'restore')}`,
    `  rule: ${result.rule}`,
    result.mismatches === 0
      ? `reads verified: all ${result.readsVerified} returned the bytes and checksum written`
      : `READS WRONG: ${result.mismatches} of ${result.readsVerified} did not return the bytes or checksum written${warmUpNote(result)}`,
    result.cleanup === 'deleted'
      ? `scratch snapshot ${result.snapshotId} deleted`
      : result.cleanup === 'kept'
        ? `scratch snapshot ${result.snapshotId} kept (--keep): delete it with aws ec2 delete-snapshot --snapshot-id ${result.snapshotId}`
        : `scratch snapshot ${result.snapshotId} NOT deleted`,
    ...result.notes.map((note) => `note: ${note}`),
  );
  return lines;
}

/** The wrong reads of the warm-up rounds, which no table's "wrong" column counts. */
function warmUpNote(result: BenchResult): string {
  const warmUp = result.mismatches - result.get.reduce((sum, l) => sum + l.mismatched, 0);
  return warmUp > 0 ? ` (${warmUp} of them in the untimed warm-up rounds, which the tables do not count)` : '';
}

function advice(recommendation: Recommendation | null, use: string): string {
  return recommendation === null
    ? `no level qualifies for ${use}`
    : `--concurrency ${recommendation.concurrency} for ${use} (${recommendation.mibPerSecond.toFixed(1)} MiB/s)`;
}

function levelTable(levels: readonly LevelResult[]): string[] {
  const ms = (v: number | undefined) => (v === undefined ? '-' : v < 10 ? v.toFixed(2) : v.toFixed(1));
  const rows = [['in flight', 'MiB/s', 'blocks/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'requests', 'throttled', 'failed', 'wrong', 'seconds', 'status']];
  for (const l of levels) {
    rows.push([
      String(l.concurrency),
      l.mibPerSecond.toFixed(1),
      l.blocksPerSecond.toFixed(0),
      ms(l.latencyMs?.p50),
      ms(l.latencyMs?.p90),
      ms(l.latencyMs?.p99),
      ms(l.latencyMs?.max),
      String(l.requests),
      String(l.throttled),
      String(l.failed),
      String(l.mismatched),
      l.seconds.toFixed(2),
      l.status === 'ok' ? 'ok' : l.status === 'errors' ? 'errors' : 'FAILED',
    ]);
  }
  return table(rows, ['right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left']);
}
