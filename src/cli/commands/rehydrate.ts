import { Option, type Command } from 'commander';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { CommandContext, Wrap } from '../context.js';
import { archiveRefArgument, secondsOption } from '../parse.js';
import { ProgressDisplay, count, formatBytes, formatDuration } from '../progress.js';
import { concurrencyOption, sessionOptions } from './common.js';

interface RehydrateFlags {
  toSnapshot?: boolean;
  toFile?: string;
  force?: boolean;
  concurrency: number;
  waitTimeout?: number;
}

export function registerRehydrate(program: Command, wrap: Wrap): void {
  program
    .command('rehydrate')
    .description('bring an archive back (its chain of incremental archives applied in order) as a new EBS snapshot or straight onto an image')
    .argument('<archive>', 'archive id, or a snapshot id with one archive', archiveRefArgument('<archive>'))
    .option('--to-snapshot', 'write a new EBS snapshot, completed with the aggregate checksum the manifests give')
    .option('--to-file <image>', 'write onto this image file or block device')
    .option('--force', 'overwrite an image file that exists and is not empty')
    .addOption(concurrencyOption('block uploads in flight (--to-snapshot)'))
    .addOption(new Option('--wait-timeout <seconds>', 'stop waiting for the new snapshot to complete after this long').argParser(secondsOption('--wait-timeout')))
    .action(wrap((ctx: CommandContext, archive: string, flags: RehydrateFlags) => runRehydrate(ctx, archive, flags)));
}

async function runRehydrate(ctx: CommandContext, archive: string, flags: RehydrateFlags): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { rehydrate } = await import('../../engine/archive/rehydrate.js');
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency }), async (session) => {
    const display = new ProgressDisplay(output);
    try {
      return await rehydrate(session, {
        archive,
        toSnapshot: flags.toSnapshot,
        toFile: flags.toFile,
        force: flags.force,
        waitTimeoutMs: flags.waitTimeout,
        signal: ctx.signal,
        onProgress: (p) =>
          display.update({
            label: 'rehydrate',
            done: (p.blocksWritten + p.blocksPassed) * BLOCK_SIZE,
            total: p.totalBlocks * BLOCK_SIZE,
            detail: `${formatBytes(p.bytesDownloaded)} read`,
          }),
      });
    } finally {
      display.done();
    }
  });
  output.result(result, () => [
    `rehydrated ${result.archiveId} (${result.sourceSnapshotId}, volume ${result.volume}) to ${result.snapshotId ?? result.target}`,
    `  ${result.chain.length > 1 ? `chain ${result.chain.join(' -> ')}; ` : ''}${count(result.blocksWritten, 'block')} (${result.zeroBlocks} all zeros) from ${count(result.ranges, 'ranged read')} of ${formatBytes(result.bytesDownloaded)}, each checked, in ${formatDuration(result.durationMs)}`,
  ]);
  return 0;
}
