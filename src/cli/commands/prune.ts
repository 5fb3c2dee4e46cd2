import { Option, type Command } from 'commander';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { RetentionPolicy, TagList } from '../../engine/lineage/retention.js';
import type { PruneResult } from '../../engine/lineage/prune.js';
import { table } from '../chart.js';
import type { CommandContext, Wrap } from '../context.js';
import { integerOption } from '../parse.js';
import type { BlockIndex } from '../../index/index.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags, type VolumeOutcome } from '../unattended.js';
import { connectionRequest, sessionOptions } from './common.js';

/** The retention options prune and report share (see retentionOptions). */
export interface RetentionFlags {
  olderThanDays?: number;
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepTag?: string[];
  utc?: boolean;
}

interface PruneFlags extends UnattendedFlags, RetentionFlags {
  volume?: string;
  dryRun?: boolean;
  ifIdle?: boolean;
  keepCopies?: boolean;
}

const COUNT_FLAGS = [
  ['keepLast', '--keep-last', 'keep the N newest snapshots'],
  ['keepHourly', '--keep-hourly', 'keep the newest snapshot of each of the last N hours that have one'],
  ['keepDaily', '--keep-daily', 'keep the newest snapshot of each of the last N days that have one'],
  ['keepWeekly', '--keep-weekly', 'keep the newest snapshot of each of the last N weeks (Monday to Sunday) that have one'],
  ['keepMonthly', '--keep-monthly', 'keep the newest snapshot of each of the last N months that have one'],
  ['keepYearly', '--keep-yearly', 'keep the newest snapshot of each of the last N years that have one'],
] as const;

export function registerPrune(program: Command, wrap: Wrap): void {
  const command = unattendedOptions(program.command('prune'))
    .description(
      "delete the snapshots a retention policy (the options, else each volume's in the config file) does not keep; never a volume's newest, nor one a pending backup, an archive or an ECS restore builds on",
    );
  retentionOptions(command)
    .option('--volume <name>', 'only this volume')
    .option('--dry-run', 'print every snapshot with the rules that keep it, or "removed"; delete nothing')
    .option('--keep-copies', "keep the deleted snapshots' copies in other Regions (by default they are deleted with them)")
    .option('--if-idle', `when a backup of a volume is running, exit ${ExitCodes.BUSY} instead of ${ExitCodes.CONFLICT} (for schedulers)`)
    .action(
      wrap((ctx: CommandContext, flags: PruneFlags) => {
        const volumesOnFailure = (index: BlockIndex) => (flags.volume ? [flags.volume] : index.lineage.listVolumes().map((v) => v.name));
        return recordedRun(ctx, { operation: 'prune', flags, volumesOnFailure, record: !flags.dryRun }, () => pruneRun(ctx, flags));
      }),
    );
}

/** Adds the retention policy's options (--older-than-days, --keep-*, --utc) to a command. */
export function retentionOptions(command: Command): Command {
  command.addOption(
    new Option('--older-than-days <n>', 'keep every snapshot started less than N days ago; delete older ones no other rule keeps').argParser(integerOption('--older-than-days', 0, 100_000)),
  );
  for (const [, flag, description] of COUNT_FLAGS) command.addOption(new Option(`${flag} <n>`, `${description} (a number, or "unlimited")`));
  return command
    .option('--keep-within <duration>', 'keep every snapshot started within this long of the newest one: 1y6m, 7d, 36h (y, m for months, d, h)')
    .option('--keep-tag <tags>', 'keep every snapshot carrying these tags: key or key=value, several joined by commas (repeatable)', (value: string, previous: string[] = []) => [...previous, value])
    .option('--utc', 'count hours, days, weeks, months and years in UTC instead of the time zone (TZ)');
}

/** The policy the options give, else (none given) each volume's in the config file (all, or `volume`'s), and the time zone of its periods. */
export async function retentionOf(
  ctx: CommandContext,
  flags: RetentionFlags,
  volume: string | undefined,
): Promise<{ policy: RetentionPolicy; policies?: Map<string, RetentionPolicy>; olderThanDays?: number; timeZone: string }> {
  const retention = await import('../../engine/lineage/retention.js');
  const policy = policyOf(flags, retention);
  const policies = retention.isEmptyPolicy(policy) && flags.olderThanDays === undefined ? await configuredPolicies(ctx, volume) : undefined;
  const timeZone = flags.utc ? 'UTC' : Intl.DateTimeFormat().resolvedOptions().timeZone;
  return { policy, ...(policies ? { policies } : {}), ...(flags.olderThanDays === undefined ? {} : { olderThanDays: flags.olderThanDays }), timeZone };
}

async function pruneRun(ctx: CommandContext, flags: PruneFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const retention = await import('../../engine/lineage/retention.js');
  const { policy, policies, olderThanDays, timeZone } = await retentionOf(ctx, flags, flags.volume);
  const { withSession, copyDestinations } = await import('../../session.js');
  const { prune } = await import('../../engine/lineage/prune.js');
  const globals = ctx.globals();
  const result = await withSession(sessionOptions(ctx), async (session) => {
    const destinations = copyDestinations(session, { ...(globals.config === undefined ? {} : { configPath: globals.config }), onWarning: (m) => output.warn(m), signal: ctx.signal });
    try {
      return await prune(
        { index: session.index, catalog: session.catalog, destinations },
        { policy, ...(policies ? { policies } : {}), olderThanDays, timeZone, volume: flags.volume, dryRun: flags.dryRun, keepCopies: flags.keepCopies },
      );
    } finally {
      await destinations.close();
    }
  });
  output.result(result, () => humanLines(result, retention.calendarIn(timeZone)));
  const outcomes: VolumeOutcome[] = result.volumes.map(({ volume }) => ({
    volume,
    snapshotId: null,
    changedBlocks: result.deleted.filter((d) => d.volume === volume).length,
    changedBytes: 0,
    transferredBlocks: 0,
    transferredBytes: 0,
  }));
  // With --if-idle a busy volume is skipped, not failed (exit BUSY counts as a success for a scheduler).
  for (const volume of flags.ifIdle ? [] : result.busyVolumes) {
    outcomes.push({ volume, snapshotId: null, changedBlocks: 0, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0, errorCode: ErrorCodes.CONFLICT });
  }
  const exitCode = result.busyVolumes.length === 0 ? ExitCodes.OK : flags.ifIdle ? ExitCodes.BUSY : ExitCodes.CONFLICT;
  return { exitCode, volumes: outcomes };
}

function policyOf(flags: RetentionFlags, retention: typeof import('../../engine/lineage/retention.js')): RetentionPolicy {
  const policy: RetentionPolicy = {};
  for (const [key] of COUNT_FLAGS) {
    const value = flags[key];
    if (value !== undefined) policy[key] = retention.parseKeepCount(key, value);
  }
  if (flags.keepWithin !== undefined) policy.keepWithin = retention.parseCalendarDuration('keepWithin', flags.keepWithin);
  if (flags.keepTag !== undefined) policy.keepTags = flags.keepTag.map((text): TagList => retention.parseTagList('keepTags', text));
  return policy;
}

/** The retention policies of the config file's volumes (all, or `volume`'s); CONFIG_INVALID when one that applies is broken. */
async function configuredPolicies(ctx: CommandContext, volume: string | undefined): Promise<Map<string, RetentionPolicy>> {
  const { loadConfig } = await import('../../config/connection.js');
  const file = loadConfig(connectionRequest(ctx));
  const output = ctx.output();
  const policies = new Map<string, RetentionPolicy>();
  for (const entry of file.volumes.values()) {
    if (volume !== undefined && entry.name !== volume) continue;
    for (const warning of entry.warnings) output.warn(warning);
    if (entry.settings === undefined) {
      const message = entry.errors.length === 1 ? entry.errors[0]! : `volume ${entry.name} in ${file.path} has ${entry.errors.length} problems:\n  ${entry.errors.join('\n  ')}`;
      throw new SnaplineError(ErrorCodes.CONFIG_INVALID, message, { details: { configFile: file.path, volume: entry.name, problems: entry.errors } });
    }
    if (entry.settings.retention !== undefined) policies.set(entry.name, entry.settings.retention);
  }
  return policies;
}

function humanLines(result: PruneResult, calendar: import('../../engine/lineage/retention.js').Calendar): string[] {
  const when = (iso: string) => {
    const f = calendar.fields(Date.parse(iso));
    const two = (n: number) => String(n).padStart(2, '0');
    return `${f.year}-${two(f.month)}-${two(f.day)} ${two(f.hour)}:${two(f.minute)}`;
  };
  const lines: string[] = [];
  for (const volume of result.volumes) {
    lines.push(`${volume.volume}: keep ${volume.policy} (periods in ${result.timeZone})`);
    const cells = volume.snapshots.map((s) => ['  ', s.snapshotId, when(s.startedAt), s.removed ? 'removed' : `kept: ${s.keptBy.join(', ')}`]);
    lines.push(...table(cells));
  }
  lines.push(`${result.dryRun ? 'would delete' : 'deleted'} ${result.deleted.length} snapshots`);
  for (const c of result.deletedCopies) lines.push(`  ${result.dryRun ? 'would delete' : 'deleted'} the copy ${c.copySnapshotId} of ${c.snapshotId} in ${c.connection === null ? '' : `${c.connection}:`}${c.region}`);
  for (const volume of result.unmanagedVolumes) lines.push(`  left ${volume} alone: no retention policy for it`);
  for (const volume of result.busyVolumes) lines.push(`  skipped ${volume}: a backup of it is running`);
  return lines;
}
