/**
 * When a scheduled backup runs: `--every hourly|daily [--at TIME]` or a cron
 * expression of five fields, as systemd OnCalendar= expressions and as the
 * crontab line that stands for the same times. Pure; every refusal is
 * INVALID_ARGUMENT naming the option and the field.
 */
import { ErrorCodes, SnaplineError } from '../../errors.js';

export interface Schedule {
  /** One or more OnCalendar= expressions (cron's "day of month or day of week" needs two). */
  onCalendar: string[];
  /** The same times as a crontab's five fields. */
  cron: string;
  /** In words, for output. */
  description: string;
}

interface CronField {
  name: string;
  min: number;
  max: number;
  names?: readonly string[];
}

const FIELDS: readonly CronField[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day-of-month', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12, names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day-of-week', min: 0, max: 7, names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];

const WEEKDAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
/** Days each month can have (February in a leap year). */
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function refuse(option: string, message: string): SnaplineError {
  return new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${option} ${message}`, { details: { option: option === '--at' ? 'at' : 'every' } });
}

/** The schedule of `--every` (hourly, daily or a cron expression) with `--at` (MM for hourly, HH:MM for daily). */
export function scheduleOf(every: string, at?: string): Schedule {
  const two = (n: number) => String(n).padStart(2, '0');
  if (every === 'hourly') {
    const match = at === undefined ? ['', '00'] : /^:?([0-5]?\d)$/.exec(at);
    if (match === null) throw refuse('--at', `must be the minute of each hour (0 to 59, as 15 or :15) with --every hourly, got ${JSON.stringify(at)}`);
    const minute = Number(match[1]);
    return { onCalendar: [`*-*-* *:${two(minute)}:00`], cron: `${minute} * * * *`, description: `hourly at :${two(minute)}` };
  }
  if (every === 'daily') {
    const match = at === undefined ? ['', '0', '00'] : /^([01]?\d|2[0-3]):([0-5]\d)$/.exec(at);
    if (match === null) throw refuse('--at', `must be a time of day HH:MM (00:00 to 23:59) with --every daily, got ${JSON.stringify(at)}`);
    const [hour, minute] = [Number(match[1]), Number(match[2])];
    return { onCalendar: [`*-*-* ${two(hour)}:${two(minute)}:00`], cron: `${minute} ${hour} * * *`, description: `daily at ${two(hour)}:${two(minute)}` };
  }
  if (at !== undefined) throw refuse('--at', 'goes with --every hourly or daily; a cron expression carries its own time');
  return cronSchedule(every);
}

/** A cron expression of five fields (minute hour day-of-month month day-of-week) as OnCalendar= expressions. */
export function cronSchedule(expression: string): Schedule {
  const option = `--every ${JSON.stringify(expression)}`;
  const words = expression.trim().split(/\s+/);
  if (words.length !== 5 || words[0] === '') {
    throw refuse(option, `must be hourly, daily or a cron expression of 5 fields (minute hour day-of-month month day-of-week, as "30 2 * * 1-5"), got ${words[0] === '' ? 0 : words.length} fields`);
  }
  const sets = FIELDS.map((field, i) => parseField(option, field, words[i]!));
  const [minutes, hours, days, months, weekdays] = sets as [Set<number>, Set<number>, Set<number>, Set<number>, Set<number>];
  // 7 is Sunday as well as 0.
  if (weekdays.delete(7)) weekdays.add(0);
  // As cron does: the two day fields are either-or only when neither begins with "*"; otherwise both must match.
  const eitherDay = !words[2]!.startsWith('*') && !words[4]!.startsWith('*');
  if (!eitherDay && ![...months].some((month) => [...days].some((day) => day <= MONTH_DAYS[month - 1]!))) {
    throw refuse(option, `never runs: no month it names (${words[3]}) has a day it names (${words[2]})`);
  }
  const time = `${list(hours, FIELDS[1]!)}:${list(minutes, FIELDS[0]!)}:00`;
  const month = list(months, FIELDS[3]!);
  const day = list(days, FIELDS[2]!);
  const weekday = weekdays.size === 7 ? '' : `${weekdayList(weekdays)} `;
  // OnCalendar= requires every field to match: "either day" takes one expression for each.
  const onCalendar = eitherDay ? [`*-${month}-${day} ${time}`, `${weekday}*-${month}-* ${time}`] : [`${weekday}*-${month}-${day} ${time}`];
  return { onCalendar, cron: words.join(' '), description: `cron ${words.join(' ')}` };
}

function parseField(option: string, field: CronField, text: string): Set<number> {
  const bad = (why: string) => refuse(option, `has a bad ${field.name} field ${JSON.stringify(text)}: ${why}`);
  const range = `from ${field.min} to ${field.max}${field.names ? ` or ${field.names[0]}..${field.names.at(-1)}` : ''}${field.name === 'day-of-week' ? ' (0 and 7 are Sunday)' : ''}`;
  const value = (word: string): number => {
    const named = field.names?.indexOf(word.toLowerCase()) ?? -1;
    if (named >= 0) return named + (field.name === 'month' ? 1 : 0);
    if (!/^\d+$/.test(word)) throw bad(`${JSON.stringify(word)} is not a number ${range}`);
    const n = Number(word);
    if (n < field.min || n > field.max) throw bad(`${n} is out of range: it must be ${range}`);
    return n;
  };
  const values = new Set<number>();
  for (const item of text.split(',')) {
    const match = /^([^/]+)(?:\/(.*))?$/.exec(item);
    if (match === null) throw bad('an empty item (two commas, or a comma at an end)');
    const [, base, stepText] = match as unknown as [string, string, string | undefined];
    let step = 1;
    if (stepText !== undefined) {
      if (!/^\d+$/.test(stepText) || Number(stepText) < 1) throw bad(`the step after / must be a whole number of 1 or more, got ${JSON.stringify(stepText)}`);
      step = Number(stepText);
    }
    let first: number;
    let last: number;
    if (base === '*') {
      [first, last] = [field.min, field.max];
    } else if (base.includes('-')) {
      const [a, b, ...rest] = base.split('-');
      if (rest.length > 0 || a === '' || b === '') throw bad(`${JSON.stringify(base)} is not a range a-b`);
      [first, last] = [value(a!), value(b!)];
      if (first > last) throw bad(`the range ${base} runs backwards`);
    } else {
      first = value(base);
      last = stepText === undefined ? first : field.max;
    }
    for (let n = first; n <= last; n += step) values.add(n);
  }
  return values;
}

/** A set of numbers in OnCalendar= syntax: `*`, `start/step`, or a list of values and `a..b` ranges. */
function list(values: Set<number>, field: CronField): string {
  const sorted = [...values].sort((a, b) => a - b);
  const two = (n: number) => String(n).padStart(2, '0');
  if (sorted.length === field.max - field.min + 1) return '*';
  const step = sorted.length >= 3 ? sorted[1]! - sorted[0]! : 0;
  if (step > 1 && sorted.every((n, i) => n === sorted[0]! + i * step) && sorted.at(-1)! + step > field.max) return `${two(sorted[0]!)}/${step}`;
  return runs(sorted).map(([a, b]) => (a === b ? two(a) : b === a + 1 ? `${two(a)},${two(b)}` : `${two(a)}..${two(b)}`)).join(',');
}

/** Weekdays as names, Monday first: `Mon..Fri`, `Sat,Sun`. */
function weekdayList(values: Set<number>): string {
  const mondayFirst = [...values].map((d) => (d + 6) % 7).sort((a, b) => a - b);
  const name = (n: number) => WEEKDAYS[(n + 1) % 7]!;
  return runs(mondayFirst).map(([a, b]) => (a === b ? name(a) : b === a + 1 ? `${name(a)},${name(b)}` : `${name(a)}..${name(b)}`)).join(',');
}

/** Runs of consecutive numbers in a sorted list, as [first, last] pairs. */
function runs(sorted: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const n of sorted) {
    const last = out.at(-1);
    if (last !== undefined && n === last[1] + 1) last[1] = n;
    else out.push([n, n]);
  }
  return out;
}

/** A delay as systemd writes it: `30min`, `2h`, `45s`, `1h30min`; refused unless whole seconds, minutes and hours. Returns seconds. */
export function parseDelay(option: string, text: string): number {
  const units: Record<string, number> = { s: 1, sec: 1, m: 60, min: 60, h: 3600 };
  const parts = /^(?:\d+(?:s|sec|m|min|h))+$/.test(text) ? [...text.matchAll(/(\d+)(sec|min|s|m|h)/g)] : [];
  const seconds = parts.reduce((sum, [, n, unit]) => sum + Number(n) * units[unit!]!, 0);
  if (parts.length === 0 || seconds === 0 || seconds > 7 * 86_400) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${option} must be a delay above zero and at most a week, as 30min, 2h, 45s or 1h30min, got ${JSON.stringify(text)}`, {
      details: { option: 'randomDelay' },
    });
  }
  return seconds;
}

/** Seconds as systemd reads them: `1h30min`, `45s`. */
export function formatDelay(seconds: number): string {
  const parts: string[] = [];
  if (seconds >= 3600) parts.push(`${Math.floor(seconds / 3600)}h`);
  if (seconds % 3600 >= 60) parts.push(`${Math.floor((seconds % 3600) / 60)}min`);
  if (seconds % 60 > 0) parts.push(`${seconds % 60}s`);
  return parts.join('');
}
