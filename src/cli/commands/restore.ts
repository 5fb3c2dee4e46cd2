import type { Command } from 'commander';
import type { RestoreResult } from '../../engine/restore.js';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../main.js';
import { snapshotIdArgument } from '../parse.js';
import { ProgressDisplay, formatBytes, formatDuration } from '../progress.js';
import { concurrencyOption, sessionOptions } from './common.js';

interface RestoreFlags {
  force?: boolean;
  incremental?: boolean;
  verify?: boolean;
  concurrency: number;
}

export function registerRestore(program: Command, wrap: Wrap): void {
  program
    .command('restore')
    .description('restore a snapshot onto an image file or a block device')
    .argument('<snapshot-id>', 'completed snapshot to restore', snapshotIdArgument('<snapshot-id>'))
    .argument('<target>', 'image file or block device (/dev/...)')
    .option('--force', 'overwrite a target file that exists and is not empty')
    .option('--incremental', 'fetch only the blocks that differ from the snapshot the target holds (per the index)')
    .option('--verify', 'hash the target afterwards and compare it with the snapshot')
    .addOption(concurrencyOption('downloads in flight'))
    .action(wrap((ctx: CommandContext, snapshotId: string, target: string, flags: RestoreFlags) => runRestore(ctx, snapshotId, target, flags)));
}

async function runRestore(ctx: CommandContext, snapshotId: string, target: string, flags: RestoreFlags): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { restore } = await import('../../engine/restore.js');
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency }), async (session) => {
    const display = new ProgressDisplay(output);
    try {
      return await restore(session, {
        snapshotId,
        target,
        force: flags.force,
        incremental: flags.incremental,
        verify: flags.verify,
        window: 2 * flags.concurrency,
        signal: ctx.signal,
        onProgress: (p) =>
          display.update({
            label: 'restore',
            done: p.bytesWritten,
            total: p.totalBytes,
            detail: `fetched ${p.blocksFetched} of ${p.blocksListed} listed blocks`,
          }),
      });
    } finally {
      display.done();
    }
  });
  output.result(result, () => describeRestore(result));
  return result.verified === false ? ExitCodes.DIFFERENCES : ExitCodes.OK;
}

export function describeRestore(result: RestoreResult): string[] {
  const rate = result.durationMs > 0 ? result.bytesWritten / (1024 * 1024) / (result.durationMs / 1000) : 0;
  const lines = [
    `restored ${result.snapshotId} to ${result.target}${result.incrementalFrom ? ` (incrementally from ${result.incrementalFrom})` : ''}`,
    `  listed ${result.blocksListed}, fetched ${result.blocksFetched} blocks, zeroed ${result.blocksZeroed}; wrote ${formatBytes(result.bytesWritten)} in ${formatDuration(result.durationMs)}, ${rate.toFixed(0)} MiB/s`,
  ];
  if (result.verified !== null) lines.push(result.verified ? '  verified: the target equals the snapshot' : '  verify FAILED: the target differs from the snapshot');
  return lines;
}
