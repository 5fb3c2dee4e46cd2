import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { loadConfigFile } from './file.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-volumes-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function load(text: string) {
  const path = join(dir, 'config.yaml');
  writeFileSync(path, text, { mode: 0o600 });
  return { path, file: loadConfigFile(path, { required: true }) };
}

describe('volumes: in the config file', () => {
  it('reads each volume\'s retention policy', () => {
    const { file } = load(`
volumes:
  db1:
    retention:
      keep_last: 3
      keep_hourly: 24
      keep_daily: 7
      keep_weekly: 5
      keep_monthly: 12
      keep_yearly: unlimited
      keep_within: 2d12h
      keep_tags: [legal=hold, "team=db,tier"]
  scratch: {}
`);
    expect(file.volumes.get('db1')).toEqual({
      name: 'db1',
      errors: [],
      warnings: [],
      settings: {
        retention: {
          keepLast: 3,
          keepHourly: 24,
          keepDaily: 7,
          keepWeekly: 5,
          keepMonthly: 12,
          keepYearly: Infinity,
          keepWithin: { years: 0, months: 0, days: 2, hours: 12 },
          keepTags: [['legal=hold'], ['team=db', 'tier']],
        },
      },
    });
    expect(file.volumes.get('scratch')?.settings).toEqual({});
  });

  it('keeps each volume\'s problems on it, located by line, with the setting a typo meant', () => {
    const { path, file } = load(`
volumes:
  db1:
    retention:
      keep_dialy: 7
      keep_last: 0
      keep_within: 7w
  db2:
    retension: { keep_last: 1 }
  db3:
    retention: {}
  "bad/name": {}
  good:
    retention: { keep_last: 2 }
`);
    expect(file.volumes.get('db1')).toMatchObject({
      settings: undefined,
      errors: [
        `${path}:5: volumes.db1.retention.keep_dialy: unknown key (did you mean keep_daily?)`,
        `${path}:6: volumes.db1.retention.keep_last: must be a whole number from 1 to 1000000 or "unlimited", got 0`,
        `${path}:7: volumes.db1.retention.keep_within: must be a duration such as 7d, 36h or 1y6m (units y, m for months, d, h), got "7w": numbers each followed by a unit`,
      ],
    });
    expect(file.volumes.get('db2')?.errors).toEqual([`${path}:9: volumes.db2.retension: unknown key (did you mean retention?)`]);
    expect(file.volumes.get('db3')?.errors[0]).toContain('volumes.db3.retention: keeps nothing');
    expect(file.volumes.get('bad/name')?.errors).toEqual([`${path}:12: volumes.bad/name: is not a valid volume name: 1 to 128 letters, digits, dots, dashes or underscores`]);
    expect(file.volumes.get('good')?.settings).toEqual({ retention: { keepLast: 2 } });
  });

  it('names a misspelt top-level key, and leaves the file without volumes: alone', () => {
    expect(() => load('volumse:\n  db1: {}\n')).toThrow(expect.objectContaining({ code: ErrorCodes.CONFIG_INVALID, message: expect.stringContaining('volumse: unknown key (did you mean volumes?)') }));
    expect(load('connections: {}\n').file.volumes.size).toBe(0);
  });
});
