import { Option, type Command } from 'commander';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { integerOption } from '../parse.js';
import { sessionOptions } from './common.js';

interface PruneFlags {
  olderThanDays: number;
  keepLast?: number;
  volume?: string;
  dryRun?: boolean;
}

export function registerPrune(program: Command, wrap: Wrap): void {
  program
    .command('prune')
    .description("delete old snapshots; never a volume's newest completed one, nor one a pending backup builds on")
    .addOption(new Option('--older-than-days <n>', 'delete snapshots started more than this many days ago').argParser(integerOption('--older-than-days', 0, 100_000)).makeOptionMandatory())
    .addOption(new Option('--keep-last <k>', 'keep at least this many newest completed snapshots per volume').argParser(integerOption('--keep-last', 1, 100_000)))
    .option('--volume <name>', 'only this volume')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .action(
      wrap(async (ctx: CommandContext, flags: PruneFlags) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const { prune } = await import('../../engine/lineage/prune.js');
        const result = await withSession(sessionOptions(ctx), (session) => prune(session, flags));
        output.result(result, () => [
          `${result.dryRun ? 'would delete' : 'deleted'} ${result.deleted.length} snapshots`,
          ...result.deleted.map((d) => `  ${d.volume} ${d.snapshotId} (${d.ageDays} days old)`),
          ...result.busyVolumes.map((v) => `  skipped ${v}: a backup of it is running`),
        ]);
        return result.busyVolumes.length > 0 ? ExitCodes.CONFLICT : ExitCodes.OK;
      }),
    );
}
