import type { Command } from 'commander';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { BlockRange, VerifyResult } from '../../engine/restore/verify.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { snapshotIdArgument } from '../parse.js';
import { count } from '../progress.js';
import { concurrencyOption, sessionOptions, startHashThreads, throttleAwareProgress } from './common.js';

interface VerifyFlags {
  remote?: boolean;
  concurrency: number;
}

export function registerVerify(program: Command, wrap: Wrap): void {
  program
    .command('verify')
    .description('compare a source with a snapshot block by block, or (--remote) read and check every block of the snapshot; exit 0 when all agrees, 1 when not')
    .usage('[options] <source> <snapshot-id>  |  --remote [options] [source] <snapshot-id>')
    .argument('<source>', 'image file, block device or NBD export (nbd://..., nbd+unix://...); with --remote it may be left out: the one argument is then the snapshot id')
    .argument('[snapshot-id]', 'snapshot to compare with')
    .option('--remote', "read every block of the snapshot through GetSnapshotBlock and check it against its checksum, the index's digest and the source (when given)")
    .addOption(concurrencyOption('block reads in flight (when the snapshot is read)'))
    .action(wrap((ctx: CommandContext, first: string, second: string | undefined, flags: VerifyFlags) => runVerify(ctx, first, second, flags)));
}

async function runVerify(ctx: CommandContext, first: string, second: string | undefined, flags: VerifyFlags): Promise<number> {
  if (second === undefined && !flags.remote) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'verify needs a source and a snapshot id (with --remote, the snapshot id alone reads and checks the snapshot)');
  }
  // One argument (with --remote) is the snapshot.
  const [source, rawId] = second === undefined ? [undefined, first] : [first, second];
  const snapshotId = snapshotIdArgument('<snapshot-id>')(rawId);
  const output = ctx.output();
  if (source !== undefined) await startHashThreads();
  const { withSession } = await import('../../session.js');
  const { verify } = await import('../../engine/restore/verify.js');
  const { settleWaitText } = await import('../../engine/blocks/committer.js');
  const progress = throttleAwareProgress(output);
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency, onThrottled: progress.onThrottled }), async (session) => {
    const display = progress.display(session);
    try {
      return await verify(session, {
        source,
        snapshotId,
        remote: flags.remote,
        window: 2 * flags.concurrency,
        signal: ctx.signal,
        onSettling: (wait) => output.progressLine(settleWaitText(wait)),
        onProgress: (p) =>
          display.update({ label: 'verify', done: p.blocksDone * BLOCK_SIZE, total: p.totalBlocks * BLOCK_SIZE, detail: `${count(p.blocksRead, 'block')} read from the snapshot` }),
      });
    } finally {
      display.done();
    }
  });
  output.result(result, () => describeVerify(result));
  return result.equal ? ExitCodes.OK : ExitCodes.DIFFERENCES;
}

export function describeVerify(result: VerifyResult): string[] {
  const lines: string[] = [];
  if (result.kind === 'remote') {
    lines.push(`read ${result.snapshotId} in full through GetSnapshotBlock: ${count(result.blocksRead, 'block')}, each matching its checksum`);
    if (!result.indexChecked) lines.push('  the index has no block map of it to compare with');
    else if (result.indexMismatches === 0) lines.push("  the index's block map of it agrees");
    else lines.push(`  the index's block map of it DISAGREES in ${count(result.indexMismatches, 'block')}:`, ...formatRanges(result.indexMismatchRanges));
  }
  if (result.source !== null) {
    const how = result.kind === 'index' ? "with the index's digests; the snapshot itself was not read (--remote reads and checks it)" : 'with the blocks read';
    const sizeDiffers = result.snapshotBytes !== null && result.sourceBytes !== null && result.snapshotBytes !== result.sourceBytes;
    lines.push(
      result.differingBlocks === 0 && !sizeDiffers
        ? `${result.source} equals ${result.snapshotId} (${count(result.blocksCompared, 'block')} compared ${how})`
        : `${result.source} differs from ${result.snapshotId}: ${result.differingBlocks} of ${count(result.blocksCompared, 'block')}`,
    );
    if (sizeDiffers) lines.push(`  size: source ${result.sourceBytes} bytes, snapshot ${result.snapshotBytes} bytes`);
    lines.push(...formatRanges(result.differingRanges));
  }
  return lines;
}

/** Block ranges as lines, at most `limit` of them. */
export function formatRanges(ranges: BlockRange[], limit = 20): string[] {
  const lines = ranges.slice(0, limit).map((r) => (r.first === r.last ? `  block ${r.first}` : `  blocks ${r.first}-${r.last}`));
  if (ranges.length > limit) lines.push(`  ... and ${ranges.length - limit} more ranges (--json lists all)`);
  return lines;
}
