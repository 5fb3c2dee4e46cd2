/**
 * `prune` with retention policies and `schedule` through the CLI (main() in
 * this process): policies from the options and from the config file, the
 * dry run that names the rules keeping each snapshot, misspelt config keys,
 * bad options, `backup --if-idle` on a busy volume, and schedules installed,
 * listed and removed in a unit folder of the test's own.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { BlockIndex } from '../../src/index/index.js';
import { ExitCodes } from '../../src/errors.js';
import { runInProcess } from '../support/in-process.js';
import { randomBlocks, writeBlocks } from '../support/images.js';

let work: string;
let emulator: RunningEmulator;
let index: string;
let config: string;
let image: string;
const snapshots: string[] = [];

function snapline(args: string[], env: NodeJS.ProcessEnv = {}) {
  return runInProcess(args, { dataDir: join(work, 'data'), env: { XDG_CONFIG_HOME: join(work, 'config'), ...env } });
}
const globals = () => ['--config', config, '--connection', 'local', '--endpoint-url', emulator.url, '--index', index, '--no-progress'];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-retention-cli-'));
  index = join(work, 'index.db');
  config = join(work, 'config.yaml');
  writeFileSync(config, 'volumes:\n  disk:\n    retention:\n      keep_last: 2\n      keep_tags: [hold=yes]\n', { mode: 0o600 });
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
  image = join(work, 'disk.img');
  writeBlocks(image, randomBlocks([0]), 4 * BLOCK_SIZE);
  for (let i = 0; i < 4; i += 1) {
    writeBlocks(image, randomBlocks([1]));
    const run = await snapline([...globals(), '--json', 'backup', image, '--volume', 'disk', ...(i === 0 ? ['--tag', 'hold=yes'] : [])]);
    expect(run.code, run.stderr).toBe(0);
    snapshots.push((JSON.parse(run.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!.snapshotId);
  }
}, 120_000);

afterAll(async () => {
  await emulator?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('prune with a retention policy', () => {
  it('--dry-run prints every snapshot with the rules that keep it, or "removed", and deletes nothing', async () => {
    const run = await snapline([...globals(), 'prune', '--keep-last', '2', '--utc', '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    const lines = run.stdout.trim().split('\n');
    expect(lines[0]).toBe('disk: keep last 2 (periods in UTC)');
    expect(lines.slice(1, 5).map((l) => l.trim().split(/\s+/)[0])).toEqual([...snapshots].reverse());
    expect(lines[1]).toMatch(/kept: newest, head \(the next backup builds on it\), last$/);
    expect(lines[2]).toMatch(/kept: last$/);
    expect(lines[3]).toMatch(/\d{4}-\d\d-\d\d \d\d:\d\d\s+removed$/);
    expect(lines[4]).toMatch(/removed$/);
    expect(lines[5]).toBe('would delete 2 snapshots');
    expect(states()).toEqual(['completed', 'completed', 'completed', 'completed']);
  });

  it('--json gives the same decisions', async () => {
    const run = await snapline([...globals(), '--json', 'prune', '--keep-within', '1d', '--keep-daily', 'unlimited', '--dry-run']);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { dryRun: boolean; volumes: Array<{ policy: string; snapshots: Array<{ snapshotId: string; keptBy: string[]; removed: boolean }> }>; deleted: unknown[] };
    expect(result).toMatchObject({ dryRun: true, deleted: [] });
    expect(result.volumes[0]!.policy).toBe('daily unlimited, within 1d');
    expect(result.volumes[0]!.snapshots.every((s) => !s.removed && s.keptBy.includes('within 1d'))).toBe(true);
  });

  it('a plain prune applies the config file\'s policy of the volume: the tagged one and the two newest stay', async () => {
    const run = await snapline([...globals(), 'prune']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('disk: keep last 2, tag hold=yes');
    expect(run.stdout).toContain('deleted 1 snapshots');
    expect(states()).toEqual(['completed', 'deleted', 'completed', 'completed']);
    // The next incremental backup builds on the newest.
    writeBlocks(image, randomBlocks([2]));
    const next = await snapline([...globals(), '--json', 'backup', image, '--volume', 'disk']);
    expect(JSON.parse(next.stdout)).toMatchObject({ backups: [{ parentSnapshotId: snapshots[3], blocksUploaded: 1 }] });
  });

  it('refuses bad options and a misspelt config key, naming them', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['prune', '--keep-daily', '0'], /--keep-daily must be a whole number from 1 to 1000000 or "unlimited", got "0"/],
      [['prune', '--keep-weekly', 'lots'], /--keep-weekly must be a whole number/],
      [['prune', '--keep-within', '7w'], /--keep-within must be a duration such as 7d, 36h or 1y6m/],
      [['prune', '--keep-tag', 'a,,b'], /--keep-tag must be a tag key or key=value/],
      [['prune', '--older-than-days', '-1'], /--older-than-days must be a whole number from 0/],
    ];
    for (const [args, message] of cases) {
      const run = await snapline([...globals(), ...args]);
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringMatching(message) });
    }
    const typo = join(work, 'typo.yaml');
    writeFileSync(typo, 'volumes:\n  disk:\n    retention:\n      keep_dialy: 7\n', { mode: 0o600 });
    const run = await snapline([...globals(), '--config', typo, 'prune']);
    expect(run.code).toBe(ExitCodes.USAGE);
    expect(run.stderr).toContain(`${typo}:4: volumes.disk.retention.keep_dialy: unknown key (did you mean keep_daily?)`);
    const none = join(work, 'none.yaml');
    writeFileSync(none, 'connections: {}\n', { mode: 0o600 });
    const refused = await snapline([...globals(), '--config', none, 'prune']);
    expect(refused.code).toBe(ExitCodes.USAGE);
    expect(refused.stderr).toContain('no retention policy for volume disk');
  });
});

describe('backup --if-idle', () => {
  it('exits 75 and says so when a backup of the volume is running; without it, 5', async () => {
    const held = BlockIndex.open(index);
    try {
      const lock = held.locks.acquire('volume:disk');
      const runsBefore = held.history.listRuns({ volume: 'disk' }).length;
      // A lock of this process counts as held by a live process.
      const idle = await snapline([...globals(), 'backup', image, '--volume', 'disk', '--if-idle']);
      expect({ code: idle.code, stdout: idle.stdout }).toMatchObject({ code: ExitCodes.BUSY, stdout: expect.stringMatching(/^skipped: a backup of disk is running: volume:disk is in use by pid/) });
      const plain = await snapline([...globals(), 'backup', image, '--volume', 'disk']);
      expect(plain.code).toBe(ExitCodes.CONFLICT);
      const pruned = await snapline([...globals(), 'prune', '--volume', 'disk', '--if-idle']);
      expect({ code: pruned.code, stdout: pruned.stdout }).toMatchObject({ code: ExitCodes.BUSY, stdout: expect.stringContaining('skipped disk: a backup of it is running') });
      // A run skipped with --if-idle counts as a success for a scheduler: it is no failure in the run history (status would call the volume failing).
      expect(held.history.listRuns({ volume: 'disk' }).slice(runsBefore).map((r) => [r.operation, r.errorCode])).toEqual([['backup', 'CONFLICT']]);
      lock.release();
    } finally {
      held.close();
    }
  });
});

describe('schedule', () => {
  it('install --print shows the units; install writes them, list shows them, remove deletes them; systemctl is left to the user', async () => {
    const units = join(work, 'units');
    const env = { SNAPLINE_SYSTEMD_UNIT_DIR: units };
    const printed = await snapline(['--connection', 'local', '--index', index, 'schedule', 'install', 'disk', '--source', image, '--every', 'daily', '--at', '02:15', '--random-delay', '20min', '--print'], env);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toContain(`# ${join(units, 'snapline-backup-disk.service')}`);
    expect(printed.stdout).toContain(`--connection local --index ${index} --no-progress backup ${image} --volume disk --if-idle`);
    expect(printed.stdout).toContain('OnCalendar=*-*-* 02:15:00');
    expect(printed.stdout).toContain('RandomizedDelaySec=20min');

    const installed = await snapline(
      ['--config', config, '--index', index, 'schedule', 'install', 'disk', '--source', image, '--every', '0 3 * * 1-5', '--user', '--prune', '--metrics-file', 'snapline.prom'],
      env,
    );
    expect(installed.code, installed.stderr).toBe(0);
    expect(readFileSync(join(units, 'snapline-backup-disk.service'), 'utf8')).toContain(`ExecStart=${process.execPath}`);
    // Both runs write the one metrics file, its path made absolute (the unit runs in /).
    const metrics = resolve('snapline.prom');
    expect(readFileSync(join(units, 'snapline-backup-disk.service'), 'utf8')).toContain(`--no-progress backup ${image} --volume disk --if-idle --metrics-file ${metrics}\n`);
    expect(readFileSync(join(units, 'snapline-backup-disk.service'), 'utf8')).toContain(`--config ${config} --index ${index} --no-progress prune --volume disk --if-idle --metrics-file ${metrics}\n`);
    const noPolicy = await snapline(['--config', config, '--index', index, 'schedule', 'install', 'other', '--source', image, '--every', 'daily', '--prune'], env);
    expect({ code: noPolicy.code, stderr: noPolicy.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringContaining(`--prune needs a retention policy for volume other in ${config}`) });
    expect(installed.stdout).toContain(`wrote ${join(units, 'snapline-backup-disk.service')}`);
    expect(installed.stdout).toContain('systemctl --user enable --now snapline-backup-disk.timer');
    expect(readFileSync(join(units, 'snapline-backup-disk.timer'), 'utf8')).toContain('OnCalendar=Mon..Fri *-*-* 03:00:00');

    const listed = await snapline(['--json', 'schedule', 'list', '--user'], env);
    expect(JSON.parse(listed.stdout)).toMatchObject({ dir: units, schedules: [{ volume: 'disk', source: image, every: '0 3 * * 1-5', prune: true, onCalendar: ['Mon..Fri *-*-* 03:00:00'] }] });

    const removed = await snapline(['schedule', 'remove', 'disk', '--user'], env);
    expect(removed.code, removed.stderr).toBe(0);
    expect((await snapline(['schedule', 'list', '--user'], env)).stdout).toBe(`no scheduled backups in ${units}\n`);
    const again = await snapline(['schedule', 'remove', 'disk', '--user'], env);
    expect({ code: again.code, stderr: again.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringContaining(`no scheduled backup of volume disk in ${units}`) });
  });

  it('the scheduled run gets the Region and profile the environment chose for the install (they outrank the connection), never its keys', async () => {
    const units = join(work, 'units-env');
    const env = { SNAPLINE_SYSTEMD_UNIT_DIR: units, AWS_REGION: 'eu-central-1', AWS_PROFILE: 'backup-writer', AWS_ACCESS_KEY_ID: 'AKIAENVKEYNOTSAVED01', AWS_SECRET_ACCESS_KEY: 'env-secret-not-saved' };
    const printed = await snapline(['--json', '--index', index, 'schedule', 'install', 'disk', '--source', image, '--every', 'daily', '--print'], env);
    expect(printed.code, printed.stderr).toBe(0);
    const { service, crontab } = JSON.parse(printed.stdout) as { service: string; crontab: string };
    expect(service).toContain('Environment=AWS_REGION=eu-central-1\n');
    expect(service).toContain('Environment=AWS_PROFILE=backup-writer\n');
    expect(crontab).toContain(' AWS_REGION=eu-central-1 AWS_PROFILE=backup-writer ');
    for (const text of [service, crontab, printed.stderr]) {
      expect(text).not.toContain('AKIAENVKEYNOTSAVED01');
      expect(text).not.toContain('env-secret-not-saved');
    }
    // Keys without a profile: the scheduled run will not have them, and the install says so.
    const keysOnly = await snapline(['--index', index, 'schedule', 'install', 'disk', '--source', image, '--every', 'daily', '--print'], { ...env, AWS_PROFILE: '' });
    expect(keysOnly.stderr).toContain('AWS_ACCESS_KEY_ID is set here, and the scheduled run does not get it');
    expect(keysOnly.stdout + keysOnly.stderr).not.toContain('env-secret-not-saved');
  });

  it('--crontab prints the line for cron; bad input names the option and writes nothing', async () => {
    const units = join(work, 'units-bad');
    mkdirSync(units);
    const env = { SNAPLINE_SYSTEMD_UNIT_DIR: units };
    const cron = await snapline(['--index', index, 'schedule', 'install', 'disk', '--source', image, '--every', 'hourly', '--at', '20', '--crontab'], env);
    expect(cron.stdout).toMatch(new RegExp(`^20 \\* \\* \\* \\* SNAPLINE_DATA_DIR=\\S+ \\S+ \\S+snapline.js --index ${index} --no-progress backup ${image} --volume disk --if-idle >/dev/null\\n$`));
    const cases: Array<[string[], RegExp]> = [
      [['--every', '0 3 * *'], /--every "0 3 \* \*" must be hourly, daily or a cron expression of 5 fields/],
      [['--every', '0 3 * * mon-fry'], /--every "0 3 \* \* mon-fry" has a bad day-of-week field "mon-fry"/],
      [['--every', 'daily', '--at', '7pm'], /--at must be a time of day HH:MM/],
      [['--every', '0 3 * * *', '--at', '03:00'], /--at goes with --every hourly or daily/],
      [['--every', 'daily', '--random-delay', '10'], /--random-delay must be a delay/],
    ];
    for (const [args, message] of cases) {
      const run = await snapline(['schedule', 'install', 'disk', '--source', image, ...args], env);
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringMatching(message) });
    }
    const missing = await snapline(['schedule', 'install', 'disk', '--source', join(work, 'nope.img'), '--every', 'daily'], env);
    expect(missing.stderr).toContain(`--source ${join(work, 'nope.img')} does not exist`);
    const badName = await snapline(['schedule', 'install', 'a/b', '--source', image, '--every', 'daily'], env);
    expect(badName.code).toBe(ExitCodes.USAGE);
    expect((await snapline(['--json', 'schedule', 'list'], env)).stdout).toContain('"schedules": []');
  });
});

/** The states of the index's snapshots of volume disk, oldest first (read through a second opening of the file). */
function states(): string[] {
  const opened = BlockIndex.open(index);
  try {
    return opened.lineage.listSnapshots('disk').map((s) => s.state);
  } finally {
    opened.close();
  }
}
