import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { keysOnlyInEnvironment, scheduleEnvironment, scheduledSource, scheduleHost, snaplineScript, systemdInstalled } from '../../schedule-host.js';
import type { ScheduledBackup } from '../../engine/schedule/units.js';
import type { CommandContext, Wrap } from '../context.js';
import { connectionRequest } from './common.js';

interface InstallFlags {
  source: string;
  every: string;
  at?: string;
  randomDelay?: string;
  user?: boolean;
  print?: boolean;
  crontab?: boolean;
  prune?: boolean;
  metricsFile?: string;
}

export function registerSchedule(program: Command, wrap: Wrap): void {
  const schedule = program.command('schedule').description('scheduled backups as systemd timers (or crontab lines where there is no systemd)');
  schedule
    .command('install')
    .description('write a systemd service and timer that back up SOURCE as VOLUME, and enable the timer')
    .argument('<volume>', 'the volume (lineage) name')
    .requiredOption('--source <path>', 'image file, block device or NBD URL to back up')
    .requiredOption('--every <when>', 'hourly, daily, or a cron expression of 5 fields ("30 2 * * 1-5")')
    .option('--at <time>', 'with daily: HH:MM (default 00:00); with hourly: the minute, MM (default 00)')
    .option('--random-delay <duration>', 'start up to this much later, at random (RandomizedDelaySec): 30min, 2h, 45s')
    .option('--prune', "after each backup, prune the volume by its retention policy in the config file (volumes.NAME.retention)")
    .option('--metrics-file <path>', "the backup (and the prune) write the run history there for node_exporter's textfile collector (made absolute)")
    .option('--user', 'units of your user (~/.config/systemd/user) instead of system-wide ones (/etc/systemd/system)')
    .option('--print', 'print the units instead of writing them')
    .option('--crontab', 'print the crontab line instead (machines without systemd get it anyway)')
    .action(wrap((ctx: CommandContext, volume: string, flags: InstallFlags) => install(ctx, volume, flags)));
  schedule
    .command('list')
    .description('the scheduled backups whose timers snapline wrote')
    .option('--user', 'those of your user')
    .action(
      wrap(async (ctx: CommandContext, flags: { user?: boolean }) => {
        const { listSchedules } = await import('../../engine/schedule/install.js');
        const { dir } = scheduleHost(Boolean(flags.user));
        const entries = await listSchedules(dir);
        ctx.output().result({ dir, schedules: entries }, () =>
          entries.length === 0
            ? [`no scheduled backups in ${dir}`]
            : entries.map((e) => `${e.volume}  ${e.source}  every ${e.every}${e.at ? ` at ${e.at}` : ''}  (OnCalendar=${e.onCalendar.join(' | ')})  ${e.timerPath}`),
        );
      }),
    );
  schedule
    .command('remove')
    .description("stop and disable a volume's timer and delete its units")
    .argument('<volume>', 'the volume')
    .option('--user', 'one of your user')
    .action(
      wrap(async (ctx: CommandContext, volume: string, flags: { user?: boolean }) => {
        const { removeSchedule } = await import('../../engine/schedule/install.js');
        const user = Boolean(flags.user);
        const result = await removeSchedule(volume, user, scheduleHost(user));
        ctx.output().result(result, () => [`removed ${result.removed.join(' and ')}`, ...pending(result.activated, result.commands)]);
      }),
    );
}

async function install(ctx: CommandContext, volume: string, flags: InstallFlags): Promise<void> {
  const output = ctx.output();
  const { installSchedule, unitsFor } = await import('../../engine/schedule/install.js');
  const { parseDelay } = await import('../../engine/schedule/calendar.js');
  const user = Boolean(flags.user);
  const request: ScheduledBackup = {
    volume,
    source: scheduledSource(flags.source),
    every: flags.every,
    ...(flags.at === undefined ? {} : { at: flags.at }),
    ...(flags.randomDelay === undefined ? {} : { randomDelaySeconds: parseDelay(flags.randomDelay) }),
    user,
    ...(flags.prune ? { prune: await checkPolicy(ctx, volume) } : {}),
    ...(flags.metricsFile === undefined ? {} : { metricsFile: resolve(flags.metricsFile) }),
    command: await commandOf(ctx),
    environment: scheduleEnvironment(user),
  };
  const units = unitsFor(request);
  if (keysOnlyInEnvironment()) output.warn('AWS_ACCESS_KEY_ID is set here, and the scheduled run does not get it (a unit file or crontab is no place for keys): it uses the connection\'s credentials, or those of AWS_PROFILE');
  const host = scheduleHost(user);
  const { dir } = host;
  if (flags.crontab || (!flags.print && !systemdInstalled())) {
    output.result({ volume, crontab: units.crontab }, () => [
      ...(flags.crontab ? [] : ['no systemd on this machine: add this line to the crontab (crontab -e) instead']),
      units.crontab,
    ]);
    return;
  }
  if (flags.print) {
    const paths = { servicePath: join(dir, `${units.name}.service`), timerPath: join(dir, `${units.name}.timer`) };
    output.result({ volume, ...paths, service: units.service, timer: units.timer, crontab: units.crontab }, () => [`# ${paths.servicePath}`, units.service, `# ${paths.timerPath}`, units.timer]);
    return;
  }
  const result = await installSchedule(request, host);
  output.result({ ...result, units: undefined }, () => [
    `${result.replaced ? 'replaced' : 'wrote'} ${result.servicePath} and ${result.timerPath}`,
    ...(result.activated ? [`enabled ${units.name}.timer: ${units.timer.split('\n').filter((l) => l.startsWith('OnCalendar=')).join(', ')}`] : []),
    ...pending(result.activated, result.commands),
  ]);
}

/** `--prune` needs the volume's policy in the config file the unit will read: refused at install rather than at 2 a.m. */
async function checkPolicy(ctx: CommandContext, volume: string): Promise<true> {
  const { loadConfig } = await import('../../config/connection.js');
  const file = loadConfig(connectionRequest(ctx));
  const entry = file.volumes.get(volume);
  if (entry?.settings === undefined && entry !== undefined) {
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, entry.errors.join('\n'), { details: { configFile: file.path, volume, problems: entry.errors } });
  }
  if (entry?.settings?.retention === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--prune needs a retention policy for volume ${volume} in ${file.path}, and it has none`, {
      hint: 'add volumes.NAME.retention to the config file (README: Retention and schedules), or leave --prune out',
      details: { option: 'prune' },
    });
  }
  return true;
}

function pending(activated: boolean, commands: string[]): string[] {
  return activated || commands.length === 0 ? [] : ['systemd is not running here; once it is, run:', ...commands.map((c) => `  ${c}`)];
}

/** node, snapline's script, and the global options that decide where the backup goes, with paths made absolute. */
async function commandOf(ctx: CommandContext): Promise<string[]> {
  const globals = ctx.globals();
  const { configPath, defaultIndexPath } = await import('../../config/paths.js');
  const config = configPath(globals.config);
  return [
    process.execPath,
    snaplineScript(),
    ...(config.explicit || existsSync(config.path) ? ['--config', resolve(config.path)] : []),
    ...(globals.connection ? ['--connection', globals.connection] : []),
    ...(globals.endpointUrl ? ['--endpoint-url', globals.endpointUrl] : []),
    ...(globals.region ? ['--region', globals.region] : []),
    '--index',
    resolve(globals.index ?? defaultIndexPath()),
  ];
}
