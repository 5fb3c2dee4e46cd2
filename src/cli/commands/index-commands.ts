import type { Command } from 'commander';
import { defaultIndexPath } from '../../config/paths.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { snapshotIdArgument } from '../parse.js';
import { sessionOptions } from './common.js';

export function registerIndexCommands(program: Command, wrap: Wrap): void {
  const index = program.command('index').description('the local block index');
  index
    .command('rebuild')
    .description("learn a snapshot's block map by reading it (new machine or lost index)")
    .argument('<snapshot-id>', 'completed snapshot', snapshotIdArgument('<snapshot-id>'))
    .option('--volume <name>', 'volume to file it under (default: its snapline:volume tag)')
    .option('--source <path>', 'image file or block device the volume backs up: its next backup builds on this snapshot')
    .action(
      wrap(async (ctx: CommandContext, snapshotId: string, flags: { volume?: string; source?: string }) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const { rebuildIndex } = await import('../../engine/lineage/rebuild.js');
        const result = await withSession(sessionOptions(ctx), (session) =>
          rebuildIndex(session, { snapshotId, volume: flags.volume, source: flags.source, signal: ctx.signal }),
        );
        output.result(result, () => [`learned ${result.blocks} blocks of ${result.snapshotId} for volume ${result.volume}`]);
      }),
    );
  index
    .command('check')
    .description("check the index file's integrity")
    .action(
      wrap(async (ctx: CommandContext) => {
        const output = ctx.output();
        const path = ctx.globals().index ?? defaultIndexPath();
        const { BlockIndex } = await import('../../index/index.js');
        const opened = BlockIndex.open(path);
        let problems: string[];
        try {
          problems = opened.check();
        } finally {
          opened.close();
        }
        if (problems.length > 0) {
          throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${path} has ${problems.length} problems:\n  ${problems.join('\n  ')}`, {
            details: { path, problems },
          });
        }
        output.result({ path, ok: true, problems }, () => [`${path}: ok`]);
      }),
    );
}
