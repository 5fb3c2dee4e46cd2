import { Option, type Command } from 'commander';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../main.js';
import { integerOption } from '../parse.js';
import { sessionOptions } from './common.js';

interface PruneFlags {
  olderThanDays: number;
  keepLast?: number;
  volume?: string;
  dryRun?: boolean;
  keepCopies?: boolean;
}

export function registerPrune(program: Command, wrap: Wrap): void {
  program
    .command('prune')
    .description("delete old snapshots; never a volume's newest completed one, nor one a pending backup builds on")
    .addOption(new Option('--older-than-days <n>', 'delete snapshots started more than this many days ago').argParser(integerOption('--older-than-days', 0, 100_000)).makeOptionMandatory())
    .addOption(new Option('--keep-last <k>', 'keep at least this many newest completed snapshots per volume').argParser(integerOption('--keep-last', 1, 100_000)))
    .option('--volume <name>', 'only this volume')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .option('--keep-copies', "keep the deleted snapshots' copies in other Regions (by default they are deleted with them)")
    .action(
      wrap(async (ctx: CommandContext, flags: PruneFlags) => {
        const output = ctx.output();
        const { withSession, copyDestinations } = await import('../../session.js');
        const { prune } = await import('../../engine/lineage/prune.js');
        const globals = ctx.globals();
        const result = await withSession(sessionOptions(ctx), async (session) => {
          const destinations = copyDestinations(session, { ...(globals.config === undefined ? {} : { configPath: globals.config }), onWarning: (m) => output.warn(m), signal: ctx.signal });
          try {
            return await prune({ index: session.index, catalog: session.catalog, destinations }, flags);
          } finally {
            await destinations.close();
          }
        });
        output.result(result, () => [
          `${result.dryRun ? 'would delete' : 'deleted'} ${result.deleted.length} snapshots`,
          ...result.deleted.map((d) => `  ${d.volume} ${d.snapshotId} (${d.ageDays} days old)`),
          ...result.deletedCopies.map((c) => `  ${result.dryRun ? 'would delete' : 'deleted'} its copy ${c.copySnapshotId} in ${c.connection === null ? '' : `${c.connection}:`}${c.region}`),
          ...result.busyVolumes.map((v) => `  skipped ${v}: a backup of it is running`),
        ]);
        return result.busyVolumes.length > 0 ? ExitCodes.CONFLICT : ExitCodes.OK;
      }),
    );
}
