import { Option, type Command } from 'commander';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { BackupProgress, BackupResult } from '../../engine/backup/backup.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../main.js';
import { integerOption, secondsOption, snapshotIdArgument, tagOption } from '../parse.js';
import { formatBytes, formatDuration } from '../progress.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags } from '../unattended.js';
import { concurrencyOption, sessionOptions, throttleAwareProgress } from './common.js';

interface BackupFlags extends UnattendedFlags {
  volume?: string;
  parent?: string;
  full?: boolean;
  description?: string;
  tag?: Record<string, string>;
  encrypted?: boolean;
  kmsKeyId?: string;
  timeout?: number;
  concurrency?: number;
  dryRun?: boolean;
  waitTimeout?: number;
  discardPending?: boolean;
}

export function registerBackup(program: Command, wrap: Wrap): void {
  unattendedOptions(program.command('backup'))
    .description('back up image files or block devices to new EBS snapshots, uploading only changed blocks')
    .argument('<source...>', 'image file, block device (/dev/...) or NBD export (nbd://HOST:PORT/EXPORT, nbd+unix:///EXPORT?socket=PATH)')
    .option('--volume <name>', 'lineage name (default: the source file name, or the NBD export name); one source only')
    .option('--parent <snapshot-id>', 'build on this snapshot instead of the newest one of the volume', snapshotIdArgument('--parent'))
    .option('--full', 'start a new lineage: no parent, every non-zero block uploaded')
    .option('--description <text>', 'snapshot description')
    .option('--tag <key=value>', 'snapshot tag (repeatable)', tagOption)
    .option('--encrypted', "encrypt a new lineage (default KMS key unless --kms-key-id); an incremental keeps its parent's encryption")
    .option('--kms-key-id <arn>', "KMS key ARN to encrypt a new lineage with (implies --encrypted); an incremental keeps its parent's key")
    .addOption(
      new Option('--timeout <minutes>', 'minutes a pending snapshot may go without a block, or uncompleted after its last one, before AWS cancels it (default 4320, the most AWS allows)').argParser(
        integerOption('--timeout', 10, 4320),
      ),
    )
    .addOption(concurrencyOption('uploads in flight'))
    .option('--dry-run', 'scan and report what would be uploaded; write nothing')
    .addOption(new Option('--wait-timeout <seconds>', 'stop waiting for the snapshot to complete after this long (it stays resumable)').argParser(secondsOption('--wait-timeout')))
    .option('--discard-pending', 'abandon the volume\'s unfinished backup instead of resuming it')
    .action(wrap((ctx: CommandContext, sources: string[], flags: BackupFlags) => runBackupCommand(ctx, sources, flags)));
}

async function runBackupCommand(ctx: CommandContext, sources: string[], flags: BackupFlags): Promise<number> {
  if (flags.volume && sources.length > 1) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--volume names one lineage: give one source with it');
  }
  const { defaultVolumeName } = await import('../../engine/backup/backup.js');
  const volumesOnFailure = () => sources.map((source) => flags.volume ?? defaultVolumeName(source));
  return recordedRun(ctx, { operation: 'backup', flags, volumesOnFailure, record: !flags.dryRun }, () => backupRun(ctx, sources, flags));
}

async function backupRun(ctx: CommandContext, sources: string[], flags: BackupFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { backup } = await import('../../engine/backup/backup.js');
  const progress = throttleAwareProgress(output);
  const results = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency, onThrottled: progress.onThrottled }), async (session) => {
    const display = progress.display(session);
    const latest = new Map<string, BackupProgress>();
    const onProgress = (progress: BackupProgress) => {
      latest.set(progress.volume, progress);
      const all = [...latest.values()];
      const sum = (pick: (p: BackupProgress) => number) => all.reduce((n, p) => n + pick(p), 0);
      const waiting = all.every((p) => p.phase === 'wait');
      display.update({
        label: waiting ? 'waiting for completion' : 'backup',
        done: sum((p) => p.bytesScanned),
        total: sum((p) => p.sourceBytes),
        detail: `changed ${sum((p) => p.blocksChanged)} uploaded ${sum((p) => p.blocksUploaded)} blocks, ${session.uploadLimiter.limit} in flight`,
      });
    };
    try {
      return await Promise.all(
        sources.map((source) =>
          backup(session, {
            source,
            volume: flags.volume,
            parent: flags.parent,
            full: flags.full,
            description: flags.description,
            tags: flags.tag,
            encrypted: flags.encrypted || Boolean(flags.kmsKeyId),
            kmsKeyArn: flags.kmsKeyId,
            timeoutMinutes: flags.timeout,
            dryRun: flags.dryRun,
            waitTimeoutMs: flags.waitTimeout,
            discardPending: flags.discardPending,
            signal: ctx.signal,
            onProgress,
            onWarning: (message) => output.warn(message),
          }),
        ),
      );
    } finally {
      display.done();
    }
  });
  // One shape for any number of sources: { backups: [...] }, one library BackupResult per source, in the order given.
  output.result({ backups: results }, () => results.flatMap(describeResult));
  const volumes = results.map((r) => ({
    volume: r.volume,
    snapshotId: r.snapshotId,
    changedBlocks: r.blocksChanged,
    changedBytes: r.blocksChanged * BLOCK_SIZE,
    transferredBlocks: r.blocksUploaded,
    transferredBytes: r.bytesUploaded,
  }));
  return { exitCode: ExitCodes.OK, volumes };
}

export function describeResult(result: BackupResult): string[] {
  const seconds = result.durationMs / 1000;
  const rate = seconds > 0 ? result.sourceBytes / (1024 * 1024) / seconds : 0;
  const head = result.dryRun
    ? `dry run of ${result.volume}: would upload ${result.blocksChanged} blocks (${formatBytes(result.blocksChanged * 524288)})`
    : `${result.volume}: ${result.snapshotId}${result.parentSnapshotId ? ` (child of ${result.parentSnapshotId})` : ' (new lineage)'}${result.resumed ? ', resumed' : ''}`;
  return [
    head,
    `  scanned ${result.blocksScanned} blocks (${formatBytes(result.sourceBytes)}) in ${formatDuration(result.durationMs)}, ${rate.toFixed(0)} MiB/s`,
    `  changed ${result.blocksChanged}, uploaded ${result.blocksUploaded} (${formatBytes(result.bytesUploaded)}), zero blocks skipped ${result.blocksZeroSkipped}`,
  ];
}
