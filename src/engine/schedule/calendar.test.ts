import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../errors.js';
import { cronSchedule, formatDelay, parseDelay, scheduleOf } from './calendar.js';

/** systemd-analyze, when this machine has it: every OnCalendar= expression is also checked by systemd itself. */
const analyze = (() => {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
if (!analyze) console.log('calendar.test.ts: systemd-analyze is not installed here: the OnCalendar= expressions are not checked by systemd (Debian: apt install systemd)');

const BASE = Date.UTC(2026, 0, 1);

/** The next `count` times systemd starts a timer with these OnCalendar= lines, from BASE, in UTC. */
function systemdElapses(expressions: string[], count: number): number[] {
  const times = new Set<number>();
  for (const expression of expressions) {
    const out = execFileSync('systemd-analyze', ['calendar', `--iterations=${count}`, '--base-time=2026-01-01 00:00:00 UTC', expression], { env: { ...process.env, TZ: 'UTC' }, encoding: 'utf8' });
    for (const [, when] of out.matchAll(/(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC/g)) times.add(Date.parse(`${when!.replace(' ', 'T')}Z`));
  }
  return [...times].sort((a, b) => a - b).slice(0, count);
}

/** The next `count` minutes from BASE (BASE itself left out, as systemd does) for which `matches` holds. */
function cronElapses(matches: (d: Date) => boolean, count: number): number[] {
  const out: number[] = [];
  for (let t = BASE + 60_000; out.length < count && t < BASE + 12 * 366 * 86_400_000; t += 60_000) if (matches(new Date(t))) out.push(t);
  return out;
}

/** Cron expressions with what each means, written out as a test of a minute. */
const CASES: Array<[string, (d: Date) => boolean]> = [
  ['*/15 * * * *', (d) => d.getUTCMinutes() % 15 === 0],
  ['30 2 * * 1-5', (d) => d.getUTCMinutes() === 30 && d.getUTCHours() === 2 && d.getUTCDay() >= 1 && d.getUTCDay() <= 5],
  ['0 */6 1,15 * sun', (d) => d.getUTCMinutes() === 0 && d.getUTCHours() % 6 === 0 && (d.getUTCDate() === 1 || d.getUTCDate() === 15 || d.getUTCDay() === 0)],
  ['5 4 * jan-mar mon-fri', (d) => d.getUTCMinutes() === 5 && d.getUTCHours() === 4 && d.getUTCMonth() <= 2 && d.getUTCDay() >= 1 && d.getUTCDay() <= 5],
  ['0 0 29 2 *', (d) => d.getUTCMinutes() === 0 && d.getUTCHours() === 0 && d.getUTCDate() === 29 && d.getUTCMonth() === 1],
  ['10,20-22 8-17/3 * 6,12 0,7', (d) => [10, 20, 21, 22].includes(d.getUTCMinutes()) && [8, 11, 14, 17].includes(d.getUTCHours()) && [5, 11].includes(d.getUTCMonth()) && d.getUTCDay() === 0],
  ['0 0 */2 * mon', (d) => d.getUTCMinutes() === 0 && d.getUTCHours() === 0 && d.getUTCDate() % 2 === 1 && d.getUTCDay() === 1],
  ['7 1 1-7 * 1', (d) => d.getUTCMinutes() === 7 && d.getUTCHours() === 1 && (d.getUTCDate() <= 7 || d.getUTCDay() === 1)],
];

describe('scheduleOf', () => {
  it('writes hourly and daily with --at as OnCalendar= and crontab fields', () => {
    expect(scheduleOf('daily')).toEqual({ onCalendar: ['*-*-* 00:00:00'], cron: '0 0 * * *', description: 'daily at 00:00' });
    expect(scheduleOf('daily', '3:05')).toMatchObject({ onCalendar: ['*-*-* 03:05:00'], cron: '5 3 * * *' });
    expect(scheduleOf('hourly', ':15')).toMatchObject({ onCalendar: ['*-*-* *:15:00'], cron: '15 * * * *' });
    expect(scheduleOf('hourly', '7')).toMatchObject({ onCalendar: ['*-*-* *:07:00'], cron: '7 * * * *' });
  });

  it('translates cron fields: steps, ranges, lists, names, Sunday as 7, and "day of month or day of week" as two expressions', () => {
    expect(cronSchedule('*/15 * * * *').onCalendar).toEqual(['*-*-* *:00/15:00']);
    expect(cronSchedule('30 2 * * 1-5').onCalendar).toEqual(['Mon..Fri *-*-* 02:30:00']);
    expect(cronSchedule('0 */6 1,15 * sun').onCalendar).toEqual(['*-*-01,15 00/6:00:00', 'Sun *-*-* 00/6:00:00']);
    expect(cronSchedule('5 4 * jan-mar MON-FRI').onCalendar).toEqual(['Mon..Fri *-01..03-* 04:05:00']);
    expect(cronSchedule('0 12 * * 6,7').onCalendar).toEqual(['Sat,Sun *-*-* 12:00:00']);
    expect(cronSchedule('0 0 */2 * *').onCalendar).toEqual(['*-*-01/2 00:00:00']);
  });

  it.skipIf(!analyze)('gives the same times as the cron expression, by systemd-analyze calendar', () => {
    for (const [expression, matches] of CASES) {
      const schedule = cronSchedule(expression);
      // Three 29ths of February take twelve years; the others, twelve runs.
      const count = expression.includes(' 29 2 ') ? 3 : 12;
      expect(systemdElapses(schedule.onCalendar, count), `${expression} -> ${schedule.onCalendar.join(' | ')}`).toEqual(cronElapses(matches, count));
    }
    expect(systemdElapses(scheduleOf('daily', '03:30').onCalendar, 3)).toEqual(cronElapses((d) => d.getUTCHours() === 3 && d.getUTCMinutes() === 30, 3));
    expect(systemdElapses(scheduleOf('hourly', '45').onCalendar, 3)).toEqual(cronElapses((d) => d.getUTCMinutes() === 45, 3));
  });

  it('refuses bad input with a message naming the option and the field', () => {
    const refusal = (every: string, at?: string) => {
      try {
        scheduleOf(every, at);
      } catch (err) {
        expect(err).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
        return (err as Error).message;
      }
      throw new Error(`accepted --every ${every}`);
    };
    expect(refusal('daily', '24:00')).toMatch(/^--at must be a time of day HH:MM/);
    expect(refusal('daily', '3')).toMatch(/^--at must be a time of day/);
    expect(refusal('hourly', '60')).toMatch(/^--at must be the minute of each hour/);
    expect(refusal('30 2 * * *', '02:30')).toMatch(/^--at goes with --every hourly or daily/);
    expect(refusal('weekly')).toMatch(/got 1 fields/);
    expect(refusal('* * * * * *')).toMatch(/got 6 fields/);
    expect(refusal('61 * * * *')).toBe('--every "61 * * * *" has a bad minute field "61": 61 is out of range: it must be from 0 to 59');
    expect(refusal('0 24 * * *')).toMatch(/bad hour field "24"/);
    expect(refusal('0 0 0 * *')).toMatch(/bad day-of-month field "0": 0 is out of range: it must be from 1 to 31/);
    expect(refusal('0 0 * 13 *')).toMatch(/bad month field "13".*jan\.\.dec/);
    expect(refusal('0 0 * * 8')).toMatch(/bad day-of-week field "8".*\(0 and 7 are Sunday\)/);
    expect(refusal('0 0 * * fry')).toMatch(/bad day-of-week field "fry": "fry" is not a number/);
    expect(refusal('*/0 * * * *')).toMatch(/bad minute field "\*\/0": the step after \/ must be a whole number of 1 or more/);
    expect(refusal('5-1 * * * *')).toMatch(/the range 5-1 runs backwards/);
    expect(refusal('1,,2 * * * *')).toMatch(/an empty item/);
    expect(refusal('0 0 30 2 *')).toMatch(/never runs: no month it names \(2\) has a day it names \(30\)/);
  });

  it('reads random delays as systemd writes them', () => {
    expect(parseDelay('--random-delay', '30min')).toBe(1800);
    expect(parseDelay('--random-delay', '1h30m')).toBe(5400);
    expect(formatDelay(5445)).toBe('1h30min45s');
    for (const bad of ['', '30', '0s', '1.5h', '8d', '30 min', '9000h']) expect(() => parseDelay('--random-delay', bad)).toThrow(/^--random-delay must be a delay/);
  });
});
