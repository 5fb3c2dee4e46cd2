import type { Command } from 'commander';
import type { VolumeRestoreResult, VolumeStep } from '../../engine/dr/restore-volume.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { CommandContext } from '../context.js';
import { integerOption, tagOption } from '../parse.js';
import { formatDuration } from '../progress.js';
import type { RecordedRun } from '../unattended.js';
import { sessionOptions } from './common.js';

/** The flags of `restore --to-volume` (and of `drill --to-volume`, which takes the same volume settings). */
export interface VolumeFlags {
  toVolume?: boolean;
  availabilityZone?: string;
  volumeType?: string;
  size?: number;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  tag?: Record<string, string>;
}

export interface VolumeRestoreFlags extends VolumeFlags {
  attach?: string;
  device?: string;
  fastRestore?: boolean;
  keepFastRestore?: boolean;
}

/** The volume settings shared by restore and drill. */
export function addVolumeSettings(command: Command): Command {
  return command
    .option('--availability-zone <zone>', 'with --to-volume: the Availability Zone of the volume (that of the instance it will attach to), e.g. us-east-1a')
    .option('--volume-type <type>', 'with --to-volume: gp3 (default), gp2, io1, io2, st1, sc1 or standard')
    .option('--size <GiB>', "with --to-volume: the volume's size, at least the snapshot's (default the snapshot's)", integerOption('--size', 1, 65_536))
    .option('--iops <n>', 'with --to-volume: provisioned IOPS (gp3 3000-80000, io1 100-64000, io2 100-256000; required for io1 and io2)', integerOption('--iops', 1, 256_000))
    .option('--throughput <MiB/s>', 'with --to-volume: gp3 throughput, 125-2000 MiB/s', integerOption('--throughput', 1, 2000))
    .option('--encrypted', 'with --to-volume: encrypt the volume (one from an encrypted snapshot always is)')
    .option('--kms-key-id <key>', 'with --to-volume: the KMS key of the volume (key id, key ARN or alias/...); implies --encrypted')
    .option('--tag <key=value>', 'with --to-volume: volume tag (repeatable)', tagOption);
}

/** Adds the --to-volume flags to the restore command. */
export function addVolumeRestoreOptions(command: Command): Command {
  return addVolumeSettings(command.option('--to-volume', 'restore onto a new EBS volume in AWS (give no target), made from the snapshot by EC2 CreateVolume'))
    .option('--attach <instance-id>', 'with --to-volume: attach the volume to this instance (in the same zone) and wait until attached; needs --device')
    .option('--device <name>', 'with --attach: the device name on the instance, e.g. /dev/sdf')
    .option('--fast-restore', 'with --to-volume: enable fast snapshot restore in the zone first and wait until enabled (billed per hour while enabled; disabled again afterwards)')
    .option('--keep-fast-restore', 'with --fast-restore: leave fast snapshot restore enabled afterwards (it goes on being billed by the hour)');
}

const VOLUME_ONLY: [keyof VolumeRestoreFlags, string][] = [
  ['availabilityZone', '--availability-zone'],
  ['volumeType', '--volume-type'],
  ['size', '--size'],
  ['iops', '--iops'],
  ['throughput', '--throughput'],
  ['encrypted', '--encrypted'],
  ['kmsKeyId', '--kms-key-id'],
  ['tag', '--tag'],
  ['attach', '--attach'],
  ['device', '--device'],
  ['fastRestore', '--fast-restore'],
  ['keepFastRestore', '--keep-fast-restore'],
];

/** Refuses volume flags without --to-volume (they would be ignored). */
export function refuseVolumeFlagsWithoutVolume(flags: VolumeRestoreFlags, command = 'restore'): void {
  const given = VOLUME_ONLY.find(([field]) => flags[field] !== undefined);
  if (given !== undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${given[1]} goes with --to-volume (${command} onto an EBS volume)`);
}

/** The availability zone flag, required with --to-volume. */
export function zoneOf(flags: VolumeFlags): string {
  if (flags.availabilityZone === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--to-volume needs --availability-zone: the zone of the instance the volume is for (e.g. us-east-1a)');
  }
  return flags.availabilityZone;
}

/** The engine's volume settings from the flags. */
export function volumeSettingsOf(flags: VolumeFlags) {
  return {
    availabilityZone: zoneOf(flags),
    ...(flags.volumeType === undefined ? {} : { volumeType: flags.volumeType }),
    ...(flags.size === undefined ? {} : { sizeGiB: flags.size }),
    ...(flags.iops === undefined ? {} : { iops: flags.iops }),
    ...(flags.throughput === undefined ? {} : { throughput: flags.throughput }),
    ...(flags.encrypted ? { encrypted: true } : {}),
    ...(flags.kmsKeyId === undefined ? {} : { kmsKeyId: flags.kmsKeyId }),
    ...(flags.tag === undefined ? {} : { tags: flags.tag }),
  };
}

/** `restore --to-volume`: the run (recorded by the caller) made one volume of the snapshot's volume; nothing went through snapline. */
export async function runVolumeRestore(ctx: CommandContext, snapshotId: string, flags: VolumeRestoreFlags): Promise<RecordedRun> {
  if ((flags.attach === undefined) !== (flags.device === undefined)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, flags.attach === undefined ? '--device goes with --attach INSTANCE-ID' : '--attach needs --device (e.g. /dev/sdf)');
  }
  if (flags.keepFastRestore && !flags.fastRestore) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--keep-fast-restore goes with --fast-restore');
  const settings = volumeSettingsOf(flags);
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { restoreToVolume } = await import('../../engine/dr/restore-volume.js');
  let volume: string | null = null;
  const result = await withSession(sessionOptions(ctx), (session) => {
    volume = session.index.lineage.getSnapshot(snapshotId)?.volume ?? null;
    return restoreToVolume(session, {
      snapshotId,
      ...settings,
      ...(flags.attach === undefined ? {} : { attach: { instanceId: flags.attach, device: flags.device! } }),
      fastRestore: flags.fastRestore === true,
      keepFastRestore: flags.keepFastRestore === true,
      signal: ctx.signal,
      onStep: (step) => output.verbose(`step: ${step}`),
    });
  });
  output.result(result, () => describeVolumeRestore(result));
  return { exitCode: ExitCodes.OK, volumes: [{ volume, snapshotId, changedBlocks: 0, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0 }] };
}

const STEP_TEXT: Record<VolumeStep['step'], string> = {
  check: 'checked the snapshot',
  'enable-fast-restore': 'enabled fast snapshot restore',
  'create-volume': 'created the volume',
  attach: 'attached',
  'disable-fast-restore': 'disabled fast snapshot restore',
};

export function describeVolumeRestore(result: VolumeRestoreResult): string[] {
  const lines = [
    `restored ${result.snapshotId} to volume ${result.volumeId}: ${result.state}, ${result.sizeGiB} GiB ${result.volumeType} in ${result.availabilityZone}${result.encrypted ? ', encrypted' : ''}${result.fastRestored ? ', fully initialized (fast snapshot restore)' : ''}`,
    ...result.steps.map((s) => `  ${STEP_TEXT[s.step].padEnd(32)} ${formatDuration(s.durationMs).padStart(8)}  ${s.outcome}`),
    `  total ${formatDuration(result.durationMs)}`,
  ];
  if (result.attachment !== null) lines.push(`  attached to ${result.attachment.instanceId} as ${result.attachment.device}`);
  if (!result.fastRestored) {
    lines.push('  the volume is usable now; its blocks are fetched from the snapshot on first read (slower until each is read once)');
  }
  if (result.fastRestore?.kept) {
    lines.push(`  fast snapshot restore stays enabled for ${result.snapshotId} in ${result.availabilityZone}: it is billed by the hour until disabled`);
  }
  return lines;
}
