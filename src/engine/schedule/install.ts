/**
 * Installs, lists and removes scheduled backups as systemd units in a unit
 * folder. systemctl is reached through a port: it is run only when the
 * service manager is running; otherwise the commands to run are returned.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { scheduleOf } from './calendar.js';
import { readMarker, renderUnits, unitName, type ScheduledBackup, type ScheduleUnits } from './units.js';

/** What the schedule commands need of systemd. */
export interface Systemd {
  /** True when systemd is the running service manager (of the user, for `user`), so systemctl can be run. */
  running(user: boolean): boolean;
  /** Runs `systemctl [--user] ARGS...`; rejects with the failure. */
  systemctl(user: boolean, args: string[]): Promise<void>;
}

export interface InstallResult {
  volume: string;
  servicePath: string;
  timerPath: string;
  /** True when units of the volume were there and are replaced. */
  replaced: boolean;
  /** True when systemctl reloaded systemd and enabled the timer; else `commands` are to be run. */
  activated: boolean;
  commands: string[];
  units: ScheduleUnits;
}

export interface ScheduleEntry {
  volume: string;
  source: string;
  every: string;
  at?: string;
  randomDelaySeconds?: number;
  prune?: boolean;
  timerPath: string;
  /** The OnCalendar= expressions of the timer file. */
  onCalendar: string[];
}

/** The units of a scheduled backup, checked (schedule, volume), without writing anything. */
export function unitsFor(request: ScheduledBackup): ScheduleUnits {
  return renderUnits(request, scheduleOf(request.every, request.at));
}

/**
 * Writes the service and the timer into `dir` (each file whole: written
 * aside, then renamed), replacing the volume's earlier ones; then, when
 * systemd runs, `daemon-reload` and `enable --now` the timer.
 */
export async function installSchedule(request: ScheduledBackup, deps: { dir: string; systemd: Systemd }): Promise<InstallResult> {
  const units = unitsFor(request);
  const servicePath = join(deps.dir, `${units.name}.service`);
  const timerPath = join(deps.dir, `${units.name}.timer`);
  const replaced = (await listSchedules(deps.dir)).some((entry) => entry.volume === request.volume);
  await mkdir(deps.dir, { recursive: true });
  await writeWhole(servicePath, units.service);
  await writeWhole(timerPath, units.timer);
  const steps = [['daemon-reload'], ['enable', '--now', `${units.name}.timer`]];
  const activated = await runSteps(deps.systemd, request.user, steps);
  return { volume: request.volume, servicePath, timerPath, replaced, activated, commands: activated ? [] : steps.map((step) => systemctlLine(request.user, step)), units };
}

/** The scheduled backups whose timers are in `dir`, by volume; a missing folder holds none. */
export async function listSchedules(dir: string): Promise<ScheduleEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new SnaplineError(ErrorCodes.IO_FAILED, `cannot read the unit folder ${dir}: ${(err as Error).message}`);
  }
  const entries: ScheduleEntry[] = [];
  for (const name of names.filter((n) => /^snapline-backup-.+\.timer$/.test(n)).sort()) {
    const timerPath = join(dir, name);
    const text = await readFile(timerPath, 'utf8');
    const marker = readMarker(text);
    if (marker === undefined) continue;
    const onCalendar = text
      .split('\n')
      .filter((line) => line.startsWith('OnCalendar='))
      .map((line) => line.slice('OnCalendar='.length));
    entries.push({ ...marker, timerPath, onCalendar });
  }
  return entries;
}

/**
 * Stops and disables the volume's timer (when systemd runs), then deletes
 * both units and the timer's enablement link; refused when `dir` holds no
 * schedule of the volume (INVALID_ARGUMENT).
 */
export async function removeSchedule(volume: string, user: boolean, deps: { dir: string; systemd: Systemd }): Promise<{ volume: string; removed: string[]; activated: boolean; commands: string[] }> {
  const name = unitName(volume);
  if (!(await listSchedules(deps.dir)).some((entry) => entry.volume === volume)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `no scheduled backup of volume ${volume} in ${deps.dir}`, {
      hint: `\`snapline schedule list${user ? ' --user' : ''}\` shows the scheduled backups${user ? '' : '; add --user for those of your user'}`,
      details: { volume, dir: deps.dir },
    });
  }
  const running = deps.systemd.running(user);
  if (running) await deps.systemd.systemctl(user, ['disable', '--now', `${name}.timer`]);
  const removed = [join(deps.dir, `${name}.timer`), join(deps.dir, `${name}.service`)];
  for (const path of [...removed, join(deps.dir, 'timers.target.wants', `${name}.timer`)]) await rm(path, { force: true });
  if (running) await deps.systemd.systemctl(user, ['daemon-reload']);
  return { volume, removed, activated: running, commands: running ? [] : [systemctlLine(user, ['daemon-reload'])] };
}

async function runSteps(systemd: Systemd, user: boolean, steps: string[][]): Promise<boolean> {
  if (!systemd.running(user)) return false;
  for (const step of steps) await systemd.systemctl(user, step);
  return true;
}

function systemctlLine(user: boolean, args: string[]): string {
  return ['systemctl', ...(user ? ['--user'] : []), ...args].join(' ');
}

async function writeWhole(path: string, text: string): Promise<void> {
  const aside = `${path}.${process.pid}.tmp`;
  try {
    await writeFile(aside, text, { mode: 0o644 });
    await rename(aside, path);
  } catch (err) {
    await rm(aside, { force: true });
    const code = (err as NodeJS.ErrnoException).code;
    throw new SnaplineError(ErrorCodes.IO_FAILED, `cannot write ${path}: ${code ?? (err as Error).message}`, {
      hint: code === 'EACCES' || code === 'EPERM' ? 'system-wide units need root (sudo); --user installs them for your user' : undefined,
    });
  }
}
