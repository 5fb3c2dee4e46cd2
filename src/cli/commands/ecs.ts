import { Option, type Command } from 'commander';
import { DEFAULT_PACING, DEFAULT_RETRIES, DEFAULT_SHARDS, MAX_RETRIES, MAX_SHARDS } from '../../core/ecs-restore-options.js';
import type { EcsJobReport } from '../../engine/ecs/restore.js';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import type { Output } from '../output.js';
import { archiveRefArgument, integerOption, secondsOption } from '../parse.js';
import { count, formatDuration } from '../progress.js';
import { sessionOptions } from './common.js';

interface RestoreFlags {
  shards?: number;
  retries: number;
  timeout?: number;
  detach?: boolean;
  volume?: string;
  logWait: number;
}

export function registerEcs(program: Command, wrap: Wrap): void {
  const ecs = program.command('ecs').description('large restores run as ECS tasks in the cloud, watched to the end');
  ecs
    .command('restore')
    .description('restore an archive or a snapshot into a new snapshot with ECS tasks, one per shard of its blocks (or resume its unfinished job)')
    .argument('<archive-or-snapshot>', 'archive id (or the id of its snapshot) whose objects are readable, or a completed snapshot the index knows', archiveRefArgument('<archive-or-snapshot>'))
    .addOption(new Option('--shards <n>', `tasks to split the blocks into (default ${DEFAULT_SHARDS})`).argParser(integerOption('--shards', 1, MAX_SHARDS)))
    .addOption(new Option('--retries <n>', 'new attempts per failed shard').default(DEFAULT_RETRIES).argParser(integerOption('--retries', 0, MAX_RETRIES)))
    .addOption(new Option('--timeout <seconds>', 'give up waiting after this long (the tasks go on)').argParser(secondsOption('--timeout')))
    .option('--detach', 'launch the tasks and return; the same command again follows and completes the job')
    .option('--volume <name>', "volume to file the new snapshot under (default: the source's volume + -restored)")
    .addOption(
      new Option('--log-wait <seconds>', "how long a stopped task's log may stay quiet before its last line counts as read")
        .default(DEFAULT_PACING.logSettleMs, String(DEFAULT_PACING.logSettleMs / 1000))
        .argParser(secondsOption('--log-wait')),
    )
    .action(wrap((ctx: CommandContext, source: string, flags: RestoreFlags) => runRestore(ctx, source, flags)));
  ecs
    .command('status')
    .description('an ECS restore job as the index and ECS see it now (starts and stops nothing); without a job, every job')
    .argument('[job]', 'job id (j-...)')
    .action(wrap((ctx: CommandContext, job: string | undefined) => runStatus(ctx, job)));
}

async function runRestore(ctx: CommandContext, source: string, flags: RestoreFlags): Promise<number> {
  const output = ctx.output();
  const { openEcsSession } = await import('../../ecs-session.js');
  const { ecsRestore } = await import('../../engine/ecs/restore.js');
  const session = await openEcsSession(sessionOptions(ctx));
  let report: EcsJobReport;
  try {
    report = await ecsRestore(session.deps, {
      source,
      ...(flags.shards === undefined ? {} : { shards: flags.shards }),
      retries: flags.retries,
      ...(flags.timeout === undefined ? {} : { timeoutMs: flags.timeout }),
      detach: Boolean(flags.detach),
      ...(flags.volume === undefined ? {} : { volume: flags.volume }),
      signal: ctx.signal,
      onLine: (shard, line) => output.note(`[shard ${shard}] ${line}`),
      onNote: (message) => output.note(`ecs: ${message}`),
      pacing: { logSettleMs: flags.logWait },
    });
  } finally {
    await session.close();
  }
  output.result(report, () => describeReport(report));
  if (report.state === 'failed') {
    showLastLines(output, report);
    // The worker's own exit code becomes snapline's; a failure without one (no capacity, host lost) is a remote failure.
    return report.exitCode ?? ExitCodes.REMOTE;
  }
  return ExitCodes.OK;
}

async function runStatus(ctx: CommandContext, jobId: string | undefined): Promise<number> {
  const output = ctx.output();
  const { openEcsSession } = await import('../../ecs-session.js');
  const { ecsStatus } = await import('../../engine/ecs/restore.js');
  const session = await openEcsSession(sessionOptions(ctx));
  try {
    if (jobId === undefined) {
      const jobs = session.deps.index.ecsJobs.list();
      output.result(jobs, () =>
        jobs.length === 0 ? ['no ECS jobs'] : jobs.map((j) => `${j.jobId}  ${j.state.padEnd(9)}  ${j.source} -> ${j.snapshotId ?? '(not started)'}  ${j.createdAt.toISOString()}`),
      );
      return ExitCodes.OK;
    }
    const report = await ecsStatus(session.deps, jobId);
    output.result(report, () => describeReport(report));
    return ExitCodes.OK;
  } finally {
    await session.close();
  }
}

function describeReport(report: EcsJobReport): string[] {
  const head: Record<EcsJobReport['state'], string> = {
    completed: `restored ${report.source} into ${report.snapshotId} with job ${report.jobId} (${count(report.shards.length, 'shard')}) in ${formatDuration(report.durationMs)}`,
    failed: `job ${report.jobId} failed; snapshot ${report.snapshotId} stays pending: run the same command again to retry the failed shards`,
    detached: `job ${report.jobId} runs ${count(report.shards.length, 'shard')} into ${report.snapshotId}; follow it with \`snapline ecs status ${report.jobId}\`, finish it with the same command`,
    running: `job ${report.jobId} is running: ${report.source} into ${report.snapshotId}`,
    abandoned: `job ${report.jobId} was abandoned`,
  };
  return [
    head[report.state],
    ...report.shards.map((s) => {
      const task = s.taskArn === null ? 'no task' : `${s.lastStatus}${s.exitCode === null ? '' : ` exit ${s.exitCode}`}${s.stopCode === null ? '' : ` (${s.stopCode})`}`;
      return `  shard ${s.shard}: blocks ${s.fromBlock}..${s.toBlock}, ${s.state}, ${count(s.attempts, 'attempt')}, ${task}${s.message === null ? '' : `: ${s.message}`}`;
    }),
  ];
}

function showLastLines(output: Output, report: EcsJobReport): void {
  for (const shard of report.shards) {
    if (shard.state !== 'failed' || shard.lastLines.length === 0) continue;
    output.note(`last lines of shard ${shard.shard}'s log:`);
    for (const line of shard.lastLines.slice(-10)) output.note(`  ${line}`);
  }
}
