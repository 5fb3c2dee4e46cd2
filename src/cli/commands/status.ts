import { Option, type Command } from 'commander';
import { formatDurationText, parseDuration } from '../../core/duration.js';
import type { StatusResult, VolumeStatus } from '../../engine/ops/status.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import { table } from '../chart.js';
import type { CommandContext, Wrap } from '../context.js';
import { formatBytes, formatDuration } from '../progress.js';
import { connectionSettings, withIndex } from '../unattended.js';

/** `--expect-every`'s value as milliseconds. */
export function expectEveryOption(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--expect-every must be a duration such as 26h, 1d or 1d12h (units s, m, h, d, w), got "${value}"`, {
      details: { option: 'expectEvery' },
    });
  }
  return ms;
}

export function registerStatus(program: Command, wrap: Wrap): void {
  program
    .command('status')
    .description('per volume: the last backup and its result, the age of the newest good snapshot, the last archive, drill and copy, the space held on EBS (exit 1 when a volume is late or failing)')
    .argument('[volume]', 'only this volume')
    .addOption(new Option('--expect-every <duration>', "a volume whose newest good snapshot is older is late (26h, 1d...; default: the connection's expect_every)").argParser(expectEveryOption))
    .action(wrap((ctx: CommandContext, volume: string | undefined, flags: { expectEvery?: number }) => runStatus(ctx, volume, flags)));
}

/** The status of the index's volumes, from the index alone: no session, no endpoint (the space counts come from its block maps). */
export async function statusOf(ctx: CommandContext, volume: string | undefined, expectEveryMs: number | undefined): Promise<StatusResult> {
  const { volumeStatus } = await import('../../engine/ops/status.js');
  const expected = expectEveryMs ?? (await connectionSettings(ctx, { refuseBroken: true })).expectEveryMs;
  return withIndex(ctx, (index) => volumeStatus(index, { ...(volume === undefined ? {} : { volume }), ...(expected === undefined ? {} : { expectEveryMs: expected }) }));
}

async function runStatus(ctx: CommandContext, volume: string | undefined, flags: { expectEvery?: number }): Promise<number> {
  const output = ctx.output();
  const result = await statusOf(ctx, volume, flags.expectEvery);
  if (volume !== undefined && result.volumes.length === 0) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index knows no volume "${volume}"`, { hint: 'run `snapline status` for every volume', details: { volume } });
  }
  output.result(result, () => describeStatus(result));
  return result.attention ? ExitCodes.DIFFERENCES : ExitCodes.OK;
}

function describeStatus(result: StatusResult): string[] {
  if (result.volumes.length === 0) return ['no volumes in the index'];
  const cells = [['VOLUME', 'HEALTH', 'LAST BACKUP', 'TOOK', 'CHANGED', 'UPLOADED', 'RESULT', 'NEWEST GOOD', 'SNAPSHOTS', 'LAST ARCHIVE', 'LAST DRILL', 'LAST COPY', 'EBS (EST.)']];
  for (const v of result.volumes) cells.push(row(v));
  const expect = result.volumes.find((v) => v.expectEverySeconds !== null)?.expectEverySeconds;
  return [
    ...table(cells),
    expect === undefined || expect === null ? 'no expected interval: give --expect-every (or expect_every in the connection) to tell late volumes' : `expected: a good snapshot every ${formatDurationText(expect * 1000)}`,
    'EBS: the blocks each snapshot adds (counted in the index) x 512 KiB, an estimate',
  ];
}

function row(v: VolumeStatus): string[] {
  const last = v.lastBackup;
  return [
    v.volume,
    v.health,
    last === null ? '-' : last.finishedAt.replace(/\.\d+Z$/, 'Z'),
    last === null ? '-' : formatDuration(last.durationMs),
    last === null ? '-' : formatBytes(last.changedBytes),
    last === null || last.uploadedBytes === null ? '-' : formatBytes(last.uploadedBytes),
    last === null ? '-' : last.result === 'success' ? 'success' : `failed: ${last.errorCode}`,
    v.newestGoodSnapshot === null ? 'none' : `${v.newestGoodSnapshot.snapshotId} (${formatDurationText(v.newestGoodSnapshot.ageSeconds * 1000)} old)`,
    String(v.snapshotCount),
    v.lastArchive === null ? '-' : `${v.lastArchive.archiveId} (${v.lastArchive.snapshotId})`,
    v.lastDrill === null ? '-' : `${v.lastDrill.at} ${v.lastDrill.result}`,
    v.lastCopy === null ? '-' : `${v.lastCopy.copySnapshotId} in ${v.lastCopy.connection === null ? '' : `${v.lastCopy.connection}:`}${v.lastCopy.region}`,
    v.ebsSpace === null ? '-' : `~${formatBytes(v.ebsSpace.estimatedBytes)}`,
  ];
}
