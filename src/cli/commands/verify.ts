import type { Command } from 'commander';
import type { BlockRange } from '../../engine/verify.js';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../main.js';
import { snapshotIdArgument } from '../parse.js';
import { count } from '../progress.js';
import { sessionOptions } from './common.js';

export function registerVerify(program: Command, wrap: Wrap): void {
  program
    .command('verify')
    .description('compare a source with a snapshot block by block; exit 0 when equal, 1 when not')
    .argument('<source>', 'image file or block device')
    .argument('<snapshot-id>', 'snapshot to compare with', snapshotIdArgument('<snapshot-id>'))
    .action(
      wrap(async (ctx: CommandContext, source: string, snapshotId: string) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const { verify } = await import('../../engine/verify.js');
        const result = await withSession(sessionOptions(ctx), (session) => verify(session, { source, snapshotId, signal: ctx.signal }));
        output.result(result, () => [
          result.equal
            ? `${result.source} equals ${result.snapshotId} (${count(result.blocksCompared, 'block')} compared, digests from the ${result.expectedFrom})`
            : `${result.source} differs from ${result.snapshotId}: ${result.differingBlocks} of ${count(result.blocksCompared, 'block')}`,
          ...(result.snapshotBytes !== null && result.snapshotBytes !== result.sourceBytes
            ? [`  size: source ${result.sourceBytes} bytes, snapshot ${result.snapshotBytes} bytes`]
            : []),
          ...formatRanges(result.differingRanges),
        ]);
        return result.equal ? ExitCodes.OK : ExitCodes.DIFFERENCES;
      }),
    );
}

/** Block ranges as lines, at most `limit` of them. */
export function formatRanges(ranges: BlockRange[], limit = 20): string[] {
  const lines = ranges.slice(0, limit).map((r) => (r.first === r.last ? `  block ${r.first}` : `  blocks ${r.first}-${r.last}`));
  if (ranges.length > limit) lines.push(`  ... and ${ranges.length - limit} more ranges (--json lists all)`);
  return lines;
}
