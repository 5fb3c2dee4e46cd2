import { Option, type Command } from 'commander';
import { ErrorCodes, ExitCodes } from '../../errors.js';
import type { BlockIndex } from '../../index/index.js';
import type { CommandContext, Wrap } from '../main.js';
import { integerOption } from '../parse.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags } from '../unattended.js';
import { sessionOptions } from './common.js';

interface PruneFlags extends UnattendedFlags {
  olderThanDays: number;
  keepLast?: number;
  volume?: string;
  dryRun?: boolean;
}

export function registerPrune(program: Command, wrap: Wrap): void {
  unattendedOptions(program.command('prune'))
    .description("delete old snapshots; never a volume's newest completed one, nor one a pending backup builds on")
    .addOption(new Option('--older-than-days <n>', 'delete snapshots started more than this many days ago').argParser(integerOption('--older-than-days', 0, 100_000)).makeOptionMandatory())
    .addOption(new Option('--keep-last <k>', 'keep at least this many newest completed snapshots per volume').argParser(integerOption('--keep-last', 1, 100_000)))
    .option('--volume <name>', 'only this volume')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .action(
      wrap((ctx: CommandContext, flags: PruneFlags) => {
        const volumesOnFailure = (index: BlockIndex) => (flags.volume ? [flags.volume] : index.listVolumes().map((v) => v.name));
        return recordedRun(ctx, { operation: 'prune', flags, volumesOnFailure, record: !flags.dryRun }, () => pruneRun(ctx, flags));
      }),
    );
}

async function pruneRun(ctx: CommandContext, flags: PruneFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { prune } = await import('../../engine/lineage/prune.js');
  const { result, volumes } = await withSession(sessionOptions(ctx), async (session) => ({
    result: await prune(session, flags),
    volumes: flags.volume ? [flags.volume] : session.index.listVolumes().map((v) => v.name),
  }));
  output.result(result, () => [
    `${result.dryRun ? 'would delete' : 'deleted'} ${result.deleted.length} snapshots`,
    ...result.deleted.map((d) => `  ${d.volume} ${d.snapshotId} (${d.ageDays} days old)`),
    ...result.busyVolumes.map((v) => `  skipped ${v}: a backup of it is running`),
  ]);
  const outcomes = volumes.map((volume) => ({
    volume,
    snapshotId: null,
    changedBlocks: result.deleted.filter((d) => d.volume === volume).length,
    changedBytes: 0,
    transferredBlocks: 0,
    transferredBytes: 0,
    ...(result.busyVolumes.includes(volume) ? { errorCode: ErrorCodes.CONFLICT } : {}),
  }));
  return { exitCode: result.busyVolumes.length > 0 ? ExitCodes.CONFLICT : ExitCodes.OK, volumes: outcomes };
}
