import type { Command } from 'commander';
import type { CommandContext, Wrap } from '../context.js';
import { count, formatBytes } from '../progress.js';
import { snapshotIdArgument } from '../parse.js';
import { sessionOptions } from './common.js';
import { formatRanges } from './verify.js';

export function registerDiff(program: Command, wrap: Wrap): void {
  program
    .command('diff')
    .description('the blocks that differ between two snapshots of one lineage')
    .argument('<snapshot-a>', 'the earlier snapshot', snapshotIdArgument('<snapshot-a>'))
    .argument('<snapshot-b>', 'the later snapshot', snapshotIdArgument('<snapshot-b>'))
    .action(
      wrap(async (ctx: CommandContext, first: string, second: string) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const { diff } = await import('../../engine/lineage/diff.js');
        const result = await withSession(sessionOptions(ctx), (session) => diff(session, first, second));
        output.result(result, () => [
          `${first} -> ${second}: ${count(result.changedBlocks, 'block')} changed (${formatBytes(result.changedBytes)}), ${result.addedBlocks} only in ${second}, ${result.removedBlocks} only in ${first}`,
          ...formatRanges(result.ranges),
        ]);
      }),
    );
}
