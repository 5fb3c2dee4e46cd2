/**
 * The scheduled backups of this machine: where their units go, systemd as it
 * runs here (systemctl), and the command a unit runs. The outer side of the
 * engine's schedule operations (engine/schedule), shared by the command line
 * and the library.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Systemd } from './engine/schedule/install.js';
import { ErrorCodes, SnaplineError } from './errors.js';

/** Overrides the unit folder (tests, packaging); with it set, systemctl is never run. */
const UNIT_DIR_ENV = 'SNAPLINE_SYSTEMD_UNIT_DIR';

/** The unit folder and the systemd of the user's units (`user`) or the system's; a `unitDir` given (or the override) is written without running systemctl. */
export function scheduleHost(user: boolean, unitDir?: string): { dir: string; systemd: Systemd } {
  const override = unitDir ?? process.env[UNIT_DIR_ENV];
  return { dir: override ? resolve(override) : defaultUnitDir(user), systemd: systemdHere(Boolean(override)) };
}

function defaultUnitDir(user: boolean): string {
  if (!user) return '/etc/systemd/system';
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'systemd', 'user');
}

/** What of the environment decides where a backup goes (they outrank the connection's region and credentials), and holds no secret. */
const AWS_CHOICES = ['AWS_REGION', 'AWS_DEFAULT_REGION', 'AWS_PROFILE'] as const;
/** Files the AWS profiles are read from, made absolute. */
const AWS_FILES = ['AWS_CONFIG_FILE', 'AWS_SHARED_CREDENTIALS_FILE'] as const;

/**
 * The environment a scheduled run needs of this one: HOME for a system unit
 * (systemd gives it none, and the data folder and config file live under
 * it), SNAPLINE_DATA_DIR, and the AWS Region, profile and profile files when
 * set here, so that the run goes where this one would. Never keys: a unit
 * file is readable by all.
 */
export function scheduleEnvironment(user: boolean): Record<string, string> {
  const env = process.env;
  return {
    ...(user ? {} : { HOME: homedir() }),
    ...(env.SNAPLINE_DATA_DIR ? { SNAPLINE_DATA_DIR: resolve(env.SNAPLINE_DATA_DIR) } : {}),
    ...Object.fromEntries(AWS_CHOICES.filter((name) => env[name]).map((name) => [name, env[name]!])),
    ...Object.fromEntries(AWS_FILES.filter((name) => env[name]).map((name) => [name, resolve(env[name]!)])),
  };
}

/** True when credentials come from AWS_ACCESS_KEY_ID here (no AWS_PROFILE): a scheduled run does not get them. */
export function keysOnlyInEnvironment(): boolean {
  return Boolean(process.env.AWS_ACCESS_KEY_ID) && !process.env.AWS_PROFILE;
}

/** An NBD URL as given; a path made absolute (the unit runs in /), and refused (naming the option `source`) when nothing is there. */
export function scheduledSource(source: string): string {
  if (/^nbds?(\+unix)?:\/\//.test(source)) return source;
  const absolute = resolve(source);
  if (!existsSync(absolute)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `source ${absolute} does not exist`, { hint: 'give the image file or block device to back up', details: { option: 'source' } });
  }
  return absolute;
}

/** snapline's bin/snapline.js, from this module in src/ or in dist/src/. */
export function snaplineScript(): string {
  for (const candidate of ['../bin/snapline.js', '../../bin/snapline.js']) {
    const url = new URL(candidate, import.meta.url);
    if (existsSync(url)) return url.pathname;
  }
  return resolve(process.argv[1] ?? 'snapline');
}

/** True where systemd is installed (systemctl on the PATH) or running. */
export function systemdInstalled(): boolean {
  if (existsSync('/run/systemd/system')) return true;
  return (process.env.PATH ?? '').split(delimiter).some((dir) => {
    try {
      const path = join(dir, 'systemctl');
      accessSync(path, constants.X_OK);
      return statSync(path).isFile();
    } catch {
      return false;
    }
  });
}

/** systemd as this machine has it; never the real manager when the unit folder is overridden. */
function systemdHere(overridden: boolean): Systemd {
  return {
    running(user) {
      if (overridden || !existsSync('/run/systemd/system')) return false;
      return !user || existsSync(join(process.env.XDG_RUNTIME_DIR || `/run/user/${process.getuid?.() ?? 0}`, 'systemd'));
    },
    async systemctl(user, args) {
      const argv = [...(user ? ['--user'] : []), ...args];
      try {
        await promisify(execFile)('systemctl', argv, { timeout: 60_000 });
      } catch (err) {
        const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
        throw new SnaplineError(ErrorCodes.IO_FAILED, `systemctl ${argv.join(' ')} failed: ${stderr || (err as Error).message}`);
      }
    },
  };
}
