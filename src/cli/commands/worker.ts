import { Option, type Command } from 'commander';
import type { WorkerSession, WorkerSessionOptions } from '../../ecs-session.js';
import type { CopyShardProgress, CopyShardResult } from '../../engine/ecs/worker.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { integerOption } from '../parse.js';
import { count, formatBytes, formatDuration } from '../progress.js';
import { concurrencyOption, sessionOptions } from './common.js';

interface ShardFlags {
  job: string;
  shard: number;
  snapshot: string;
  from: number;
  to: number;
  encrypted?: boolean;
  concurrency: number;
}

interface SnapshotShardFlags extends ShardFlags {
  sourceSnapshot: string;
}

interface ArchiveShardFlags extends ShardFlags {
  store: string;
  location: string;
  manifest: string;
  s3PathStyle?: boolean;
}

/** The engine's shard work, loaded when a shard runs. */
type WorkerModule = typeof import('../../engine/ecs/worker.js');

/** Time between two progress lines of a worker. */
const PROGRESS_EVERY_MS = 10_000;

/**
 * `snapline worker ...`: what the tasks of `snapline ecs restore` run in
 * their containers. The output is the task's log: a line when it starts,
 * progress every few seconds, a summary, and last the result line the driver
 * checks (stdout); errors go to stderr and set the exit code as usual.
 */
export function registerWorker(program: Command, wrap: Wrap): void {
  const worker = program.command('worker').description('what the tasks of `snapline ecs restore` run (not for direct use)');
  shardOptions(
    worker
      .command('shard')
      .description('copy one block range of a snapshot into a pending snapshot, then print the result line')
      .requiredOption('--source-snapshot <id>', 'completed snapshot to read'),
  ).action(
    wrap((ctx: CommandContext, flags: SnapshotShardFlags) =>
      runShard(ctx, flags, `of ${flags.sourceSnapshot}`, {}, ({ copySnapshotShard }, session, onProgress) =>
        copySnapshotShard(session, { ...targetOf(flags, ctx.signal, onProgress), sourceSnapshotId: flags.sourceSnapshot, window: 2 * flags.concurrency }),
      ),
    ),
  );
  shardOptions(
    worker
      .command('archive-shard')
      .description('write one block range of an archive chain into a pending snapshot, then print the result line')
      .requiredOption('--store <s3|glacier>', 'where the archive is')
      .requiredOption('--location <name>', 'bucket or vault')
      .requiredOption('--manifest <ref>', "the newest archive's manifest (S3 key or Glacier archive id)")
      .option('--s3-path-style', 'address S3 path-style (S3-compatible stores)'),
  ).action(
    wrap((ctx: CommandContext, flags: ArchiveShardFlags) => {
      if (flags.store !== 's3' && flags.store !== 'glacier') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--store must be s3 or glacier, got "${flags.store}"`);
      const archive = { target: flags.store, location: flags.location, s3PathStyle: Boolean(flags.s3PathStyle) } as const;
      return runShard(ctx, flags, `of the archive ${flags.manifest} in ${flags.store} ${flags.location}`, { archive }, ({ applyArchiveShard }, session, onProgress) =>
        applyArchiveShard({ ...session, store: session.store! }, { ...targetOf(flags, ctx.signal, onProgress), manifestRef: flags.manifest }),
      );
    }),
  );
}

function shardOptions(command: Command): Command {
  return command
    .requiredOption('--job <id>', 'the ECS job')
    .addOption(new Option('--shard <n>', 'the shard number').argParser(integerOption('--shard', 0, 1_000_000)).makeOptionMandatory())
    .requiredOption('--snapshot <id>', 'pending snapshot to write')
    .addOption(new Option('--from <block>', 'first block').argParser(integerOption('--from', 0, Number.MAX_SAFE_INTEGER)).makeOptionMandatory())
    .addOption(new Option('--to <block>', 'block after the last').argParser(integerOption('--to', 1, Number.MAX_SAFE_INTEGER)).makeOptionMandatory())
    .option('--encrypted', 'the target is encrypted: all-zero blocks are written too')
    .addOption(concurrencyOption('blocks in flight'));
}

function targetOf(flags: ShardFlags, signal: AbortSignal, onProgress: (p: CopyShardProgress) => void) {
  return { snapshotId: flags.snapshot, fromBlock: flags.from, toBlock: flags.to, encrypted: Boolean(flags.encrypted), signal, onProgress };
}

async function runShard(
  ctx: CommandContext,
  flags: ShardFlags,
  what: string,
  session: Pick<WorkerSessionOptions, 'archive'>,
  work: (worker: WorkerModule, session: WorkerSession, onProgress: (p: CopyShardProgress) => void) => Promise<CopyShardResult>,
): Promise<number> {
  const started = Date.now();
  const say = (line: string) => process.stdout.write(`${line}\n`);
  const label = `shard ${flags.shard}`;
  say(`${label}: writing blocks ${flags.from}..${flags.to} ${what} into ${flags.snapshot} (job ${flags.job})`);
  // A worker has no index and no archive settings of its own: only the connection.
  const { indexPath: _index, archive: _archive, ...connection } = sessionOptions(ctx);
  const { openWorkerSession } = await import('../../ecs-session.js');
  const worker = await import('../../engine/ecs/worker.js');
  const opened = await openWorkerSession({ ...connection, ...session, concurrency: flags.concurrency, newSnapshotIds: [flags.snapshot] });
  let said = Date.now();
  try {
    const result = await work(worker, opened, (p) => {
      if (Date.now() - said < PROGRESS_EVERY_MS) return;
      said = Date.now();
      say(`${label}: ${count(p.blocksListed, 'block')} listed, ${p.blocksWritten} written, ${p.zeroBlocksSkipped} zero skipped`);
    });
    say(
      `${label}: wrote ${count(result.blocksWritten, 'block')} (${formatBytes(result.bytesWritten)}), skipped ${count(result.zeroBlocksSkipped, 'zero block')}, in ${formatDuration(Date.now() - started)}`,
    );
    say(worker.formatShardResult({ job: flags.job, shard: flags.shard, fromBlock: flags.from, toBlock: flags.to, blocksWritten: result.blocksWritten, linear: result.linear }));
    return 0;
  } finally {
    await opened.close();
  }
}
