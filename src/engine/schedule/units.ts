/**
 * The systemd service and timer of a scheduled backup, and the crontab line
 * for machines without systemd. Pure text in, text out; the files carry
 * their request on a marker line so that `schedule list` reads them back.
 */
import { ErrorCodes, ExitCodes, SnaplineError } from '../../errors.js';
import { formatDelay, type Schedule } from './calendar.js';

/** Exit status of a backup that found another one of the volume running (`backup --if-idle`): not a failure for a timer. */
const BUSY_EXIT_CODE = ExitCodes.BUSY;

export interface ScheduledBackup {
  volume: string;
  /** The source as given (a path, made absolute, or an NBD URL). */
  source: string;
  /** `--every` as given, and `--at`. */
  every: string;
  at?: string;
  /** RandomizedDelaySec=, in seconds. */
  randomDelaySeconds?: number;
  /** `--user` units (the user's manager) or system-wide ones. */
  user: boolean;
  /** The program to run: node, snapline's script, and the global options to repeat (--connection, --config...). */
  command: string[];
  /** After the backup, `prune --volume VOLUME --if-idle` (the config file's policy of the volume). */
  prune?: boolean;
  /** An absolute path: the backup and the prune write their metrics there (`--metrics-file`). */
  metricsFile?: string;
  /** Environment= of the service (HOME for a system unit, SNAPLINE_DATA_DIR, AWS_REGION...), and before the crontab's commands (but HOME). */
  environment?: Record<string, string>;
}

export interface ScheduleUnits {
  /** snapline-backup-VOLUME */
  name: string;
  service: string;
  timer: string;
  /** The same run as a crontab line (for machines without systemd). */
  crontab: string;
}

const MARKER = '# snapline schedule: ';
const VOLUME_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** The unit name of a volume's schedule; INVALID_ARGUMENT for a name backup would refuse. */
export function unitName(volume: string): string {
  if (!VOLUME_NAME.test(volume)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `volume "${volume}" is not a valid name: use 1 to 128 letters, digits, dots, dashes or underscores`, { details: { option: 'volume' } });
  }
  return `snapline-backup-${volume}`;
}

/** The backup's argument list: the command, then `backup SOURCE --volume V --if-idle --no-progress` (and `--metrics-file PATH`). */
export function backupArguments(request: ScheduledBackup): string[] {
  return [...request.command, '--no-progress', 'backup', request.source, '--volume', request.volume, '--if-idle', ...metricsArguments(request)];
}

/** The prune that follows the backup (`--prune`): the volume's policy from the config file. */
export function pruneArguments(request: ScheduledBackup): string[] {
  return [...request.command, '--no-progress', 'prune', '--volume', request.volume, '--if-idle', ...metricsArguments(request)];
}

function metricsArguments(request: ScheduledBackup): string[] {
  return request.metricsFile === undefined ? [] : ['--metrics-file', request.metricsFile];
}

/** The service, the timer and the crontab line of a scheduled backup. */
export function renderUnits(request: ScheduledBackup, schedule: Schedule): ScheduleUnits {
  const name = unitName(request.volume);
  const marker = `${MARKER}${JSON.stringify({ volume: request.volume, source: request.source, every: request.every, at: request.at ?? null, randomDelaySeconds: request.randomDelaySeconds ?? null, prune: Boolean(request.prune) })}`;
  const args = backupArguments(request);
  const prune = request.prune ? pruneArguments(request) : undefined;
  const what = `snapline backup of volume ${request.volume} (${request.source})`;
  const service = [
    marker,
    `# Written by snapline schedule install; remove with: snapline schedule remove ${request.volume}${request.user ? ' --user' : ''}`,
    '[Unit]',
    `Description=${specifierSafe(what)}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    ...Object.entries(request.environment ?? {}).map(([key, value]) => `Environment=${execWord(`${key}=${value}`)}`),
    `ExecStart=${args.map(execWord).join(' ')}`,
    ...(prune === undefined ? [] : ['# Then the retention policy of the volume (the config file\'s volumes.NAME.retention).', `ExecStart=${prune.map(execWord).join(' ')}`]),
    `# ${BUSY_EXIT_CODE}: another backup of the volume was running (its lock is held), so this run did nothing: not a failure.`,
    `SuccessExitStatus=${BUSY_EXIT_CODE}`,
    '# SIGTERM (systemctl stop) ends the backup cleanly: the snapshot stays pending and the next run resumes it.',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=2min',
    'Nice=10',
    'IOSchedulingClass=idle',
    '',
  ].join('\n');
  const timer = [
    marker,
    '[Unit]',
    `Description=${specifierSafe(`${what}, ${schedule.description}`)}`,
    '',
    '[Timer]',
    ...schedule.onCalendar.map((expression) => `OnCalendar=${expression}`),
    '# A run missed while the machine was off is made up at the next boot.',
    'Persistent=true',
    ...(request.randomDelaySeconds === undefined ? [] : [`RandomizedDelaySec=${formatDelay(request.randomDelaySeconds)}`]),
    `Unit=${name}.service`,
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n');
  const delay = request.randomDelaySeconds === undefined ? '' : `sleep $(awk 'BEGIN { srand(); print int(rand() * ${request.randomDelaySeconds}) }') && `;
  // cron gives HOME itself; the rest of the environment goes before each command.
  const env = Object.entries(request.environment ?? {})
    .filter(([key]) => key !== 'HOME')
    .map(([key, value]) => `${key}=${shellWord(value)} `)
    .join('');
  // stdout (the result) is dropped; cron mails what goes to stderr: warnings and errors.
  const pruneAfter = prune === undefined ? '' : ` && ${env}${prune.map(shellWord).join(' ')} >/dev/null`;
  const crontab = `${schedule.cron} ${delay}${env}${args.map(shellWord).join(' ')} >/dev/null${pruneAfter}`;
  return { name, service, timer, crontab };
}

/** The request a unit file written by renderUnits carries; undefined for any other file. */
export function readMarker(text: string): Pick<ScheduledBackup, 'volume' | 'source' | 'every' | 'at' | 'randomDelaySeconds' | 'prune'> | undefined {
  const line = text.split('\n').find((l) => l.startsWith(MARKER));
  if (line === undefined) return undefined;
  try {
    const parsed = JSON.parse(line.slice(MARKER.length)) as { volume?: unknown; source?: unknown; every?: unknown; at?: unknown; randomDelaySeconds?: unknown; prune?: unknown };
    if (typeof parsed.volume !== 'string' || typeof parsed.source !== 'string' || typeof parsed.every !== 'string') return undefined;
    return {
      volume: parsed.volume,
      source: parsed.source,
      every: parsed.every,
      ...(typeof parsed.at === 'string' ? { at: parsed.at } : {}),
      ...(typeof parsed.randomDelaySeconds === 'number' ? { randomDelaySeconds: parsed.randomDelaySeconds } : {}),
      ...(parsed.prune === true ? { prune: true } : {}),
    };
  } catch {
    return undefined;
  }
}

/** One word of ExecStart=: bare when safe, else double-quoted; `%` and `$` escaped (systemd would expand them). */
function execWord(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function specifierSafe(text: string): string {
  return text.replace(/%/g, '%%').replace(/[\r\n]/g, ' ');
}

/** A word as a POSIX shell reads it back; `%` (special in a crontab) escaped. */
function shellWord(word: string): string {
  const quoted = /^[\w@+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
  return quoted.replace(/%/g, '\\%');
}
