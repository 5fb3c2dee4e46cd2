import type { Command } from 'commander';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { RestoreProgress, RestoreResult } from '../../engine/restore/restore.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { snapshotIdArgument } from '../parse.js';
import { count, formatBytes, formatDuration } from '../progress.js';
import type { BlockIndex } from '../../index/index.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags } from '../unattended.js';
import { concurrencyOption, sessionOptions, throttleAwareProgress } from './common.js';
import { addVolumeRestoreOptions, refuseVolumeFlagsWithoutVolume, runVolumeRestore, type VolumeRestoreFlags } from './restore-volume.js';

interface RestoreFlags extends VolumeRestoreFlags, UnattendedFlags {
  force?: boolean;
  incremental?: boolean;
  trustIndex?: boolean;
  verify?: boolean;
  concurrency: number;
}

export function registerRestore(program: Command, wrap: Wrap): void {
  const command = unattendedOptions(program.command('restore'))
    .description('restore a snapshot onto an image file, a block device or a writable NBD export, or (--to-volume) onto a new EBS volume')
    .argument('<snapshot-id>', 'completed snapshot to restore', snapshotIdArgument('<snapshot-id>'))
    .argument('[target]', 'image file, block device (/dev/...) or writable NBD export (nbd://..., nbd+unix://...); none with --to-volume')
    .option('--force', 'overwrite a target file that exists and is not empty, or a device that holds a partition table or a file system')
    .option('--incremental', 'onto an earlier restore: hash the target and fetch only the blocks that differ from the snapshot')
    .option('--trust-index', "with --incremental: do not hash the target, take the index's word for which snapshot it holds and fetch the blocks changed since")
    .option('--verify', 'hash the target afterwards and compare it with the snapshot')
    .addOption(concurrencyOption('downloads in flight'));
  addVolumeRestoreOptions(command).action(
    wrap((ctx: CommandContext, snapshotId: string, target: string | undefined, flags: RestoreFlags) => {
      if (flags.toVolume) {
        if (target !== undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--to-volume makes a new EBS volume: give no target (got '${target}')`);
        refuseTargetFlagsWithVolume(flags, command.getOptionValueSource('concurrency') === 'cli');
        return recordedRun(ctx, { operation: 'restore', flags, volumesOnFailure: volumeOf(snapshotId) }, () => runVolumeRestore(ctx, snapshotId, flags));
      }
      refuseVolumeFlagsWithoutVolume(flags);
      if (target === undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'restore needs a target (image file, device or NBD export), or --to-volume');
      return runRestore(ctx, snapshotId, target, flags);
    }),
  );
}

/** The flags of a restore onto a target, and why each means nothing for a new EBS volume. */
const TARGET_ONLY: [keyof RestoreFlags, string, string][] = [
  ['force', '--force', 'a new volume holds nothing to overwrite'],
  ['incremental', '--incremental', 'a new volume holds no earlier restore'],
  ['trustIndex', '--trust-index', 'a new volume holds no earlier restore'],
  ['verify', '--verify', 'snapline cannot read an EBS volume back (`verify --remote SNAPSHOT` checks the snapshot itself)'],
  ['concurrency', '--concurrency', 'EC2 makes the volume from the snapshot, snapline downloads nothing'],
];

/** Refuses the flags of a restore onto a target with --to-volume (they would be ignored); `concurrencyGiven`: --concurrency was on the command line (it has a default). */
function refuseTargetFlagsWithVolume(flags: RestoreFlags, concurrencyGiven: boolean): void {
  const given = TARGET_ONLY.find(([field]) => (field === 'concurrency' ? concurrencyGiven : flags[field] === true));
  if (given !== undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${given[1]} does not go with --to-volume: ${given[2]}`, { details: { option: given[0] } });
  }
}

/** The volume of a restore that failed: the snapshot's, when the index knows it. */
const volumeOf = (snapshotId: string) => (index: BlockIndex) => [index.lineage.getSnapshot(snapshotId)?.volume ?? null];

function runRestore(ctx: CommandContext, snapshotId: string, target: string, flags: RestoreFlags): Promise<number> {
  return recordedRun(ctx, { operation: 'restore', flags, volumesOnFailure: volumeOf(snapshotId) }, () => restoreRun(ctx, snapshotId, target, flags));
}

async function restoreRun(ctx: CommandContext, snapshotId: string, target: string, flags: RestoreFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { restore } = await import('../../engine/restore/restore.js');
  const { settleWaitText } = await import('../../engine/blocks/committer.js');
  const progress = throttleAwareProgress(output);
  let volume: string | null = null;
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency, onThrottled: progress.onThrottled }), async (session) => {
    const display = progress.display(session);
    volume = session.index.lineage.getSnapshot(snapshotId)?.volume ?? null;
    try {
      return await restore(session, {
        snapshotId,
        target,
        force: flags.force,
        incremental: flags.incremental,
        trustIndex: flags.trustIndex,
        verify: flags.verify,
        window: 2 * flags.concurrency,
        signal: ctx.signal,
        onProgress: (p) => display.update(restoreStatus(p)),
        onSettling: (wait) => output.progressLine(settleWaitText(wait)),
      });
    } finally {
      display.done();
    }
  });
  output.result(result, () => describeRestore(result));
  const outcome = {
    volume,
    snapshotId,
    changedBlocks: 0,
    changedBytes: 0,
    transferredBlocks: result.blocksFetched,
    transferredBytes: result.bytesWritten,
    ...(result.verified === false ? { errorCode: ErrorCodes.CHECKSUM_MISMATCH } : {}),
  };
  return { exitCode: result.verified === false ? ExitCodes.DIFFERENCES : ExitCodes.OK, volumes: [outcome] };
}

/** The progress bar of a restore: the blocks of the volume dealt with (fetched, zeroed, found equal, or needing nothing) out of all of them. */
function restoreStatus(p: RestoreProgress) {
  const hashed = p.blocksHashed > 0 ? `hashed ${p.blocksHashed}, ${p.blocksDiffering} differ; ` : '';
  return {
    label: 'restore',
    done: Math.min(p.totalBytes, p.blocksDone * BLOCK_SIZE),
    total: p.totalBytes,
    detail: `${hashed}fetched ${p.blocksFetched} of ${p.blocksListed} listed blocks`,
  };
}

export function describeRestore(result: RestoreResult): string[] {
  const rate = result.durationMs > 0 ? result.bytesWritten / (1024 * 1024) / (result.durationMs / 1000) : 0;
  const lines = [
    `restored ${result.snapshotId} to ${result.target}${result.incrementalFrom ? ` (incrementally from ${result.incrementalFrom})` : result.incremental ? ' (incrementally, finishing its interrupted last restore)' : ''}`,
    ...describeIncremental(result),
    `  listed ${result.blocksListed}, fetched ${result.blocksFetched} blocks, zeroed ${result.blocksZeroed}; wrote ${formatBytes(result.bytesWritten)} in ${formatDuration(result.durationMs)}, ${rate.toFixed(0)} MiB/s`,
  ];
  if (result.verified !== null) {
    const against =
      result.verifiedAgainst === 'index'
        ? `against the index's digests of ${result.snapshotId} (\`verify --remote\` reads the snapshot itself)`
        : `against the blocks read from ${result.snapshotId}`;
    lines.push(result.verified ? `  verified ${against}: the target equals the snapshot` : `  verify FAILED ${against}: the target differs from the snapshot, and the index no longer records that it holds it`);
  }
  return lines;
}

/** How an incremental restore chose the blocks it wrote. */
function describeIncremental(result: RestoreResult): string[] {
  const incremental = result.incremental;
  if (incremental === null) return [];
  if (incremental.method === 'trusted') {
    return [`  trusted the index that the target held ${result.incrementalFrom} (not hashed): ${count(incremental.blocksDiffering, 'block')} changed since`];
  }
  const hashed = `  hashed ${count(incremental.blocksHashed, 'block')} of the target`;
  if (incremental.digestsFrom === 'index') {
    return [`${hashed} against the index's digests of ${result.snapshotId}: ${incremental.blocksDiffering} differ`];
  }
  return [
    `${hashed}: the index has no block map of ${result.snapshotId}, so every block it lists was fetched and ${incremental.blocksDiffering} others held data where it has none`,
    `  (\`snapline index rebuild ${result.snapshotId}\` learns its map, so that the next incremental restore fetches only what differs)`,
  ];
}
