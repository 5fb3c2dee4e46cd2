import type { Command } from 'commander';
import type { DrillResult, DrillStep } from '../../engine/dr/drill.js';
import type { DrillRecord } from '../../index/index.js';
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { snapshotIdArgument } from '../parse.js';
import { formatDuration } from '../progress.js';
import { concurrencyOption, sessionOptions } from './common.js';
import { addVolumeSettings, volumeSettingsOf, type VolumeFlags } from './restore-volume.js';

interface DrillFlags extends VolumeFlags {
  snapshot?: string;
  toFile?: string;
  concurrency: number;
}

export function registerDrill(program: Command, wrap: Wrap): void {
  const command = program
    .command('drill')
    .description("prove a volume's newest snapshot (or --snapshot) can be recovered and measure how long it takes; exit 4 when a block does not match")
    .argument('<volume>', 'volume name in the index')
    .option('--snapshot <id>', 'the snapshot to drill (default the newest completed one of the volume)', snapshotIdArgument('--snapshot'))
    .option('--to-file <path>', 'also restore to this new file, compare it with the index, and remove it')
    .option('--to-volume', 'also make an EBS volume from the snapshot (needs --availability-zone), check it, and delete it')
    .addOption(concurrencyOption('block reads in flight'));
  addVolumeSettings(command).action(wrap((ctx: CommandContext, volume: string, flags: DrillFlags) => runDrill(ctx, volume, flags)));
}

async function runDrill(ctx: CommandContext, volume: string, flags: DrillFlags): Promise<number> {
  if (flags.toVolume && flags.toFile !== undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--to-volume and --to-file cannot go together: drill one recovery at a time');
  if (!flags.toVolume && (flags.availabilityZone !== undefined || flags.volumeType !== undefined || flags.size !== undefined)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--availability-zone, --volume-type and --size go with --to-volume');
  }
  const toVolume = flags.toVolume ? volumeSettingsOf(flags) : undefined;
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { drill } = await import('../../engine/dr/drill.js');
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency }), (session) =>
    drill(session, {
      volume,
      ...(flags.snapshot === undefined ? {} : { snapshotId: flags.snapshot }),
      ...(flags.toFile === undefined ? {} : { toFile: flags.toFile }),
      ...(toVolume === undefined ? {} : { toVolume }),
      window: 2 * flags.concurrency,
      signal: ctx.signal,
      onStep: (step) => output.verbose(`step: ${step}`),
    }),
  );
  output.result(result, () => describeDrill(result));
  return result.passed ? ExitCodes.OK : ExitCodes.INTEGRITY;
}

const STEP_TEXT: Record<DrillStep['step'], string> = {
  read: 'read and checked every block',
  'restore-file': 'restored to the file',
  'create-volume': 'made the volume',
  'clean-up': 'cleaned up',
};

export function describeDrill(result: DrillResult): string[] {
  return [
    `drill of ${result.volume} on ${result.snapshotId} (${result.kind}): ${result.passed ? 'PASSED' : 'FAILED'}, recovery took ${formatDuration(result.recoveryMs)}`,
    ...result.steps.map((s) => `  ${STEP_TEXT[s.step].padEnd(30)} ${formatDuration(s.durationMs).padStart(8)}  ${s.outcome}`),
    ...(result.message === null ? [] : [`  ${result.message}`]),
    `  recorded in the index (\`snapline snapshots\` shows the last drill of each volume)`,
  ];
}

/** One line per volume for `snapshots`: its last drill. */
export function describeLastDrill(drill: DrillRecord): string {
  const when = drill.finishedAt.toISOString().slice(0, 16).replace('T', ' ');
  const outcome = drill.passed ? 'passed' : `FAILED (${drill.message ?? 'see the drill'})`;
  return `last drill of ${drill.volume}: ${outcome} ${when} UTC on ${drill.snapshotId} (${drill.kind}, recovery ${formatDuration(drill.recoveryMs)})`;
}
