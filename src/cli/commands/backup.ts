import { Option, type Command } from 'commander';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { BackupProgress, BackupResult } from '../../engine/backup/backup.js';
import type { CopyResult } from '../../engine/dr/copy.js';
import type { Session } from '../../session.js';
import { ErrorCodes, ExitCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { integerOption, numberOption, secondsOption, snapshotIdArgument, tagOption } from '../parse.js';
import { formatBytes, formatDuration } from '../progress.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags, type VolumeOutcome } from '../unattended.js';
import { concurrencyOption, sessionOptions, startHashThreads, throttleAwareProgress } from './common.js';
import { copyFromSession, describeCopy } from './copy.js';

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
  dirtyBitmap?: string;
  changedBlocks?: string;
  sinceCheckpoint?: string;
  checkpoint?: string;
  verifyUnchanged?: number;
  ifIdle?: boolean;
  copyToRegion?: string;
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
    .option('--dirty-bitmap <name>', "NBD source: read only the blocks its dirty bitmap (qemu:dirty-bitmap:NAME) marks; the rest is the parent's")
    .option('--changed-blocks <file>', 'read only the byte ranges this file lists as changed ("OFFSET LENGTH" a line; see the README); the rest is the parent\'s')
    .option('--since-checkpoint <id>', "the checkpoint the tracker counts changes from; must be the parent's --checkpoint (default: the bitmap's name)")
    .option('--checkpoint <id>', 'the checkpoint this snapshot is taken at (the new bitmap or libvirt checkpoint), for the next run\'s --since-checkpoint')
    .addOption(
      new Option('--verify-unchanged <percent>', 'first read a random sample of the blocks the tracker calls unchanged, ceil(PERCENT/100 x their count) of them drawn without repetition over the whole disk (at least one), and compare them with the parent; a difference fails the run (exit 8)').argParser(
        numberOption('--verify-unchanged', 0, 100),
      ),
    )
    .option('--copy-to-region <region>', `after each successful backup, copy its snapshot into this Region and wait for the copy (a failed copy leaves the backup committed and exits ${ExitCodes.COPY_FAILED})`)
    .option('--if-idle', `when a backup of the volume is running, say so and exit ${ExitCodes.BUSY} instead of failing (for schedulers)`)
    .action(wrap((ctx: CommandContext, sources: string[], flags: BackupFlags) => runBackupCommand(ctx, sources, flags)));
}

/** The volume a lock conflict names (`volume:NAME` held by another run), else undefined. */
function busyVolumeOf(err: unknown): string | undefined {
  const lock = isSnaplineError(err, ErrorCodes.CONFLICT) ? err.details?.lock : undefined;
  return typeof lock === 'string' && lock.startsWith('volume:') ? lock.slice('volume:'.length) : undefined;
}

/**
 * `--if-idle`: a backup refused because the volume's lock is held ends with
 * ExitCodes.BUSY and a note, not an error, and deals with no volume (the run
 * history records no failure for it).
 */
async function ifIdle(ctx: CommandContext, run: Promise<RecordedRun>): Promise<RecordedRun> {
  try {
    return await run;
  } catch (err) {
    const busy = busyVolumeOf(err);
    if (busy === undefined) throw err;
    const skipped = `a backup of ${busy} is running: ${(err as SnaplineError).message}`;
    ctx.output().result({ backups: [], skipped }, () => [`skipped: ${skipped}`]);
    return { exitCode: ExitCodes.BUSY, volumes: [] };
  }
}

async function runBackupCommand(ctx: CommandContext, sources: string[], flags: BackupFlags): Promise<number> {
  if (flags.volume && sources.length > 1) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--volume names one lineage: give one source with it');
  }
  await startHashThreads();
  const { defaultVolumeName } = await import('../../engine/backup/backup.js');
  const volumesOnFailure = () => sources.map((source) => flags.volume ?? defaultVolumeName(source));
  const run = () => (flags.ifIdle ? ifIdle(ctx, backupRun(ctx, sources, flags)) : backupRun(ctx, sources, flags));
  return recordedRun(ctx, { operation: 'backup', flags, volumesOnFailure, record: !flags.dryRun }, run);
}

async function backupRun(ctx: CommandContext, sources: string[], flags: BackupFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { backup, defaultVolumeName } = await import('../../engine/backup/backup.js');
  const progress = throttleAwareProgress(output);
  const { results, failures, copies } = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency, onThrottled: progress.onThrottled }), async (session) => {
    const display = progress.display(session);
    const latest = new Map<string, BackupProgress>();
    const onProgress = (progress: BackupProgress) => {
      latest.set(progress.volume, progress);
      const all = [...latest.values()];
      const sum = (pick: (p: BackupProgress) => number) => all.reduce((n, p) => n + pick(p), 0);
      const waiting = all.every((p) => p.phase === 'wait');
      const sampled = sum((p) => (p.phase === 'verify' ? (p.blocksSampled ?? 0) : 0));
      display.update({
        label: waiting ? 'waiting for completion' : 'backup',
        done: sum((p) => p.bytesScanned),
        total: sum((p) => p.sourceBytes),
        detail: `${sampled > 0 ? `verifying ${sampled} sampled unchanged blocks, ` : ''}changed ${sum((p) => p.blocksChanged)} uploaded ${sum((p) => p.blocksUploaded)} blocks, ${session.uploadLimiter.limit} in flight`,
      });
    };
    if (flags.copyToRegion !== undefined && !flags.dryRun) {
      const { checkDestination } = await import('../../engine/dr/copy.js');
      checkDestination(session.connection.settings.region, flags.copyToRegion, undefined, 'copyToRegion');
    }
    let settled: Array<PromiseSettledResult<BackupResult>>;
    try {
      // Every backup runs to its end, whatever the others do: each one finished is reported and recorded.
      settled = await Promise.allSettled(
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
            dirtyBitmap: flags.dirtyBitmap,
            changedBlocksFile: flags.changedBlocks,
            sinceCheckpoint: flags.sinceCheckpoint,
            checkpoint: flags.checkpoint,
            verifyUnchangedPercent: flags.verifyUnchanged,
            signal: ctx.signal,
            onProgress,
            onWarning: (message) => output.warn(message),
          }),
        ),
      );
    } finally {
      display.done();
    }
    const results = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failures = settled.flatMap((s, i) => (s.status === 'rejected' ? [{ source: sources[i]!, volume: flags.volume ?? defaultVolumeName(sources[i]!), error: toSnaplineError(s.reason) }] : []));
    // Nothing finished: the run fails with the first error, as a single backup does.
    if (results.length === 0) throw failures[0]!.error;
    return { results, failures, copies: flags.copyToRegion === undefined || flags.dryRun ? undefined : await copyBackups(ctx, session, results, flags.copyToRegion) };
  });
  // --if-idle: a volume whose backup is running is skipped, not failed.
  const skipped = flags.ifIdle ? failures.filter((f) => busyVolumeOf(f.error) !== undefined) : [];
  const failed = failures.filter((f) => !skipped.includes(f));
  // One shape for any number of sources: { backups: [...] }, one library BackupResult per finished backup, in the order given;
  // with --copy-to-region also { copies: [...] }, one per backup, each a CopyResult or { volume, error, code };
  // when some failed (others finished), { failed: [{ source, volume, error, code }] }, and with --if-idle { skipped: [...] } alike.
  const failedCopies = copies?.filter((c) => 'error' in c).length ?? 0;
  const described = (list: typeof failures) => list.map((f) => ({ source: f.source, volume: f.volume, error: f.error.message, code: f.error.code }));
  output.result(
    {
      backups: results,
      ...(copies === undefined ? {} : { copies }),
      ...(failed.length === 0 ? {} : { failed: described(failed) }),
      ...(skipped.length === 0 ? {} : { skipped: described(skipped) }),
    },
    () => [
      ...results.flatMap(describeResult),
      ...(copies ?? []).flatMap((c) => ('error' in c ? [`${c.volume}: the copy to ${flags.copyToRegion} failed: ${c.error}`] : describeCopy(c))),
      ...skipped.map((f) => `skipped: a backup of ${f.volume} is running: ${f.error.message}`),
      ...failed.map((f) => `${f.volume}: the backup of ${f.source} failed: ${f.error.message}`),
    ],
  );
  const volumes: VolumeOutcome[] = [
    ...results.map((r) => ({
      volume: r.volume,
      snapshotId: r.snapshotId,
      changedBlocks: r.blocksChanged,
      changedBytes: r.blocksChanged * BLOCK_SIZE,
      transferredBlocks: r.blocksUploaded,
      transferredBytes: r.bytesUploaded,
    })),
    ...failed.map((f) => ({ volume: f.volume, snapshotId: null, changedBlocks: 0, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0, errorCode: f.error.code })),
  ];
  // A failed backup's exit code (the first in the order given) wins over a failed copy's, which wins over a skip.
  const exitCode = failed.length > 0 ? failed[0]!.error.exitCode : failedCopies > 0 ? ExitCodes.COPY_FAILED : skipped.length > 0 ? ExitCodes.BUSY : ExitCodes.OK;
  return { exitCode, volumes };
}

type BackupCopy = CopyResult | { volume: string; error: string; code: string };

/**
 * Copies the snapshot of each backup (the volume's newest when the backup
 * made none) into `region`, one after another. A copy that fails is
 * reported, not thrown: the backups stay committed. An interruption stops it all.
 */
async function copyBackups(ctx: CommandContext, session: Session, results: BackupResult[], region: string): Promise<BackupCopy[]> {
  const copies: BackupCopy[] = [];
  for (const result of results) {
    const snapshotId = result.snapshotId ?? session.index.lineage.headSnapshot(result.volume)?.snapshotId;
    if (snapshotId === undefined) continue;
    try {
      copies.push(await copyFromSession(ctx, session, snapshotId, { toRegion: region }));
    } catch (err) {
      if (!isSnaplineError(err) || err.code === ErrorCodes.INTERRUPTED) throw err;
      copies.push({ volume: result.volume, error: err.message, code: err.code });
    }
  }
  return copies;
}

export function describeResult(result: BackupResult): string[] {
  const seconds = result.durationMs / 1000;
  const rate = seconds > 0 ? result.sourceBytes / (1024 * 1024) / seconds : 0;
  const head = result.dryRun
    ? `dry run of ${result.volume}: would upload ${result.blocksChanged} blocks (${formatBytes(result.blocksChanged * 524288)})`
    : `${result.volume}: ${result.snapshotId}${result.parentSnapshotId ? ` (child of ${result.parentSnapshotId})` : ' (new lineage)'}${result.resumed ? ', resumed' : ''}`;
  const tracking = result.changeTracking;
  const trackingLines =
    tracking?.tracker == null
      ? []
      : tracking.scan === 'tracked'
        ? [`  ${tracking.tracker}: ${tracking.blocksMarked} blocks marked changed, ${result.blocksRead} read${tracking.blocksVerified > 0 ? `, ${tracking.blocksVerified} of the ${tracking.blocksUnchanged} it calls unchanged verified` : ''}; the rest is the parent's`]
        : [`  ${tracking.tracker} not used: every block read`];
  return [
    head,
    `  scanned ${result.blocksScanned} blocks (${formatBytes(result.sourceBytes)}) in ${formatDuration(result.durationMs)}, ${rate.toFixed(0)} MiB/s`,
    ...trackingLines,
    `  changed ${result.blocksChanged}, uploaded ${result.blocksUploaded} (${formatBytes(result.bytesUploaded)}), zero blocks skipped ${result.blocksZeroSkipped}`,
  ];
}
