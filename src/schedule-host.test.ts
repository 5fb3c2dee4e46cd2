import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { scheduleInstall } from './index.js';
import { scheduleEnvironment } from './schedule-host.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-schedule-host-'));
  writeFileSync(join(dir, 'disk.img'), '');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the environment of a scheduled run', () => {
  it('the library writes HOME into a system unit, as the command line does, and none into a user unit', async () => {
    expect(scheduleEnvironment(false)).toMatchObject({ HOME: homedir() });
    expect(scheduleEnvironment(true).HOME).toBeUndefined();

    const system = await scheduleInstall({ volume: 'sys', source: join(dir, 'disk.img'), every: 'daily', unitDir: join(dir, 'system') });
    expect(readFileSync(system.servicePath, 'utf8')).toContain(`Environment=HOME=${homedir()}`);
    const user = await scheduleInstall({ volume: 'usr', source: join(dir, 'disk.img'), every: 'daily', user: true, unitDir: join(dir, 'user') });
    expect(readFileSync(user.servicePath, 'utf8')).not.toContain('Environment=HOME=');
  });
});
