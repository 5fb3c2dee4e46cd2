import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, ExitCodes } from '../../errors.js';
import { installSchedule, listSchedules, removeSchedule, unitsFor, type Systemd } from './install.js';
import type { ScheduledBackup } from './units.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-units-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const request = (more: Partial<ScheduledBackup> = {}): ScheduledBackup => ({
  volume: 'db1',
  source: '/var/lib/images/db 1.img',
  every: 'daily',
  at: '03:30',
  randomDelaySeconds: 1800,
  user: true,
  command: ['/usr/bin/node', '/opt/snapline/bin/snapline.js', '--connection', 'prod', '--index', '/home/ops/.local/share/snapline/index.db'],
  ...more,
});

/** A systemd that records what it is asked; `running` as given. */
function fakeSystemd(running: boolean): Systemd & { calls: string[] } {
  const calls: string[] = [];
  return { calls, running: () => running, systemctl: async (user, args) => void calls.push([...(user ? ['--user'] : []), ...args].join(' ')) };
}

describe('the units of a scheduled backup', () => {
  it('a oneshot service that runs the backup with --if-idle, exit 75 counted a success; a persistent timer with its random delay', () => {
    const units = unitsFor(request({ user: false, environment: { HOME: '/root' } }));
    const lines = (text: string) => text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(lines(units.service)).toEqual([
      '[Unit]',
      'Description=snapline backup of volume db1 (/var/lib/images/db 1.img)',
      'Wants=network-online.target',
      'After=network-online.target',
      '[Service]',
      'Type=oneshot',
      'Environment=HOME=/root',
      'ExecStart=/usr/bin/node /opt/snapline/bin/snapline.js --connection prod --index /home/ops/.local/share/snapline/index.db --no-progress backup "/var/lib/images/db 1.img" --volume db1 --if-idle',
      `SuccessExitStatus=${ExitCodes.BUSY}`,
      'KillSignal=SIGTERM',
      'TimeoutStopSec=2min',
      'Nice=10',
      'IOSchedulingClass=idle',
    ]);
    expect(lines(units.timer)).toEqual([
      '[Unit]',
      'Description=snapline backup of volume db1 (/var/lib/images/db 1.img), daily at 03:30',
      '[Timer]',
      'OnCalendar=*-*-* 03:30:00',
      'Persistent=true',
      'RandomizedDelaySec=30min',
      'Unit=snapline-backup-db1.service',
      '[Install]',
      'WantedBy=timers.target',
    ]);
    expect(units.crontab).toBe(
      "30 3 * * * sleep $(awk 'BEGIN { srand(); print int(rand() * 1800) }') && /usr/bin/node /opt/snapline/bin/snapline.js --connection prod --index /home/ops/.local/share/snapline/index.db --no-progress backup '/var/lib/images/db 1.img' --volume db1 --if-idle >/dev/null",
    );
  });

  it('escapes what systemd and cron would expand: % and $ in paths', () => {
    const units = unitsFor(request({ source: '/srv/100%/$HOME.img', every: '0 4 * * *', at: undefined, randomDelaySeconds: undefined }));
    expect(units.service).toContain('backup "/srv/100%%/$$HOME.img" --volume');
    expect(units.service).toContain('Description=snapline backup of volume db1 (/srv/100%%/$HOME.img)');
    expect(units.crontab).toContain("backup '/srv/100\\%/$HOME.img' --volume");
    expect(units.timer).not.toContain('RandomizedDelaySec');
  });

  it.skipIf(!hasSystemdAnalyze())('systemd-analyze verify finds nothing wrong with the units', () => {
    const units = unitsFor(request({ command: [process.execPath, '/bin/true'] }));
    const service = join(dir, `${units.name}.service`);
    const timer = join(dir, `${units.name}.timer`);
    execFileSync('sh', ['-c', `cat > "${service}"`], { input: units.service });
    execFileSync('sh', ['-c', `cat > "${timer}"`], { input: units.timer });
    let stderr = '';
    try {
      execFileSync('systemd-analyze', ['verify', '--man=no', service, timer], { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    } catch (err) {
      stderr = String((err as { stderr?: string }).stderr ?? '');
    }
    // Without a running systemd, verify may complain about the machine (no /run/systemd, no D-Bus), never about our lines.
    expect(stderr.split('\n').filter((line) => line.includes(units.name))).toEqual([]);
  });

  it('with prune, the service prunes the volume by its policy after the backup, and the crontab line after a backup that ran', () => {
    const units = unitsFor(request({ prune: true, randomDelaySeconds: undefined }));
    const execs = units.service.split('\n').filter((l) => l.startsWith('ExecStart='));
    expect(execs).toEqual([
      'ExecStart=/usr/bin/node /opt/snapline/bin/snapline.js --connection prod --index /home/ops/.local/share/snapline/index.db --no-progress backup "/var/lib/images/db 1.img" --volume db1 --if-idle',
      'ExecStart=/usr/bin/node /opt/snapline/bin/snapline.js --connection prod --index /home/ops/.local/share/snapline/index.db --no-progress prune --volume db1 --if-idle',
    ]);
    expect(units.crontab).toMatch(/--volume db1 --if-idle >\/dev\/null && \/usr\/bin\/node \S+ --connection prod --index \S+ --no-progress prune --volume db1 --if-idle >\/dev\/null$/);
  });

  it('refuses a volume name a backup would refuse', () => {
    expect(() => unitsFor(request({ volume: 'a/b' }))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});

describe('install, list and remove in a unit folder', () => {
  it('writes both units, lists them, replaces them on a second install, and removes them with their enablement link', async () => {
    const systemd = fakeSystemd(false);
    const first = await installSchedule(request(), { dir, systemd });
    expect(first).toMatchObject({ replaced: false, activated: false, commands: ['systemctl --user daemon-reload', 'systemctl --user enable --now snapline-backup-db1.timer'] });
    expect(readFileSync(first.timerPath, 'utf8')).toBe(first.units.timer);
    expect(readFileSync(first.servicePath, 'utf8')).toBe(first.units.service);
    await installSchedule(request({ volume: 'web', every: '*/30 * * * *', at: undefined }), { dir, systemd });
    expect(await listSchedules(dir)).toEqual([
      { volume: 'db1', source: '/var/lib/images/db 1.img', every: 'daily', at: '03:30', randomDelaySeconds: 1800, timerPath: join(dir, 'snapline-backup-db1.timer'), onCalendar: ['*-*-* 03:30:00'] },
      { volume: 'web', source: '/var/lib/images/db 1.img', every: '*/30 * * * *', randomDelaySeconds: 1800, timerPath: join(dir, 'snapline-backup-web.timer'), onCalendar: ['*-*-* *:00,30:00'] },
    ]);
    const again = await installSchedule(request({ at: '04:00' }), { dir, systemd });
    expect(again.replaced).toBe(true);
    expect((await listSchedules(dir)).find((e) => e.volume === 'db1')?.onCalendar).toEqual(['*-*-* 04:00:00']);

    mkdirSync(join(dir, 'timers.target.wants'));
    symlinkSync(join(dir, 'snapline-backup-db1.timer'), join(dir, 'timers.target.wants', 'snapline-backup-db1.timer'));
    const removed = await removeSchedule('db1', true, { dir, systemd });
    expect(removed).toMatchObject({ activated: false, commands: ['systemctl --user daemon-reload'] });
    expect(readdirSync(dir).sort()).toEqual(['snapline-backup-web.service', 'snapline-backup-web.timer', 'timers.target.wants']);
    expect(readdirSync(join(dir, 'timers.target.wants'))).toEqual([]);
    expect(systemd.calls).toEqual([]);
  });

  it('runs systemctl only where systemd runs: daemon-reload and enable --now; disable --now before removing', async () => {
    const systemd = fakeSystemd(true);
    const installed = await installSchedule(request({ user: false }), { dir, systemd });
    expect(installed).toMatchObject({ activated: true, commands: [] });
    await removeSchedule('db1', false, { dir, systemd });
    expect(systemd.calls).toEqual(['daemon-reload', 'enable --now snapline-backup-db1.timer', 'disable --now snapline-backup-db1.timer', 'daemon-reload']);
    expect(existsSync(installed.timerPath)).toBe(false);
  });

  it('refuses to remove a schedule that is not there, and lists none in a missing folder', async () => {
    expect(await listSchedules(join(dir, 'none'))).toEqual([]);
    await expect(removeSchedule('db1', false, { dir, systemd: fakeSystemd(true) })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: `no scheduled backup of volume db1 in ${dir}` });
  });

  it('writes nothing for bad input', async () => {
    await expect(installSchedule(request({ every: '0 25 * * *', at: undefined }), { dir, systemd: fakeSystemd(true) })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(installSchedule(request({ at: '25:00' }), { dir, systemd: fakeSystemd(true) })).rejects.toMatchObject({ message: expect.stringMatching(/^--at /) });
    expect(readdirSync(dir)).toEqual([]);
  });
});

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    console.log('install.test.ts: systemd-analyze is not installed here: the units are not verified by systemd');
    return false;
  }
}
