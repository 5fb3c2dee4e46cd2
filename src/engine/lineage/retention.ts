/**
 * Retention policies: which snapshots of one volume a policy keeps, with the
 * rules that keep each one. Pure: no clock, no index, no AWS; the caller
 * gives the time, the time zone and what must be protected.
 *
 * The rules mean what restic's `forget` options mean:
 * - keepLast N: the N newest snapshots.
 * - keepHourly/Daily/Weekly/Monthly/Yearly N: walking from the newest, the
 *   newest snapshot of each hour (day, ISO week from Monday 00:00, month,
 *   year) that has one, for the N newest such periods; periods are calendar
 *   periods in `timeZone`. While a rule still has periods left when the
 *   oldest snapshot is reached, the oldest is kept too ("oldest daily").
 * - keepWithin: every snapshot started after the newest one (not in the
 *   future) minus the duration; years, months and days count on the
 *   calendar in `timeZone`, hours as 3600 s.
 * - keepTags: every snapshot carrying all tags of any one list.
 * - keepNewerThanDays (prune's --older-than-days): every snapshot started
 *   less than that many days before `now`.
 * A snapshot kept by any rule is kept. The newest snapshot and every
 * protected one are kept whatever the policy says.
 */
import { ErrorCodes, SnaplineError } from '../../errors.js';

/** A count of periods; Infinity is "unlimited" (every period). */
export type KeepCount = number;

/** Years, months, days and hours, as in restic's `1y5m7d2h`. */
export interface CalendarDuration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

/** A `key` (any value) or `key=value` tag; a list matches a snapshot that has every tag in it. */
export type TagList = string[];

export interface RetentionPolicy {
  keepLast?: KeepCount;
  keepHourly?: KeepCount;
  keepDaily?: KeepCount;
  keepWeekly?: KeepCount;
  keepMonthly?: KeepCount;
  keepYearly?: KeepCount;
  keepWithin?: CalendarDuration;
  keepTags?: TagList[];
  /** Keeps what started less than this many days before `now` (`prune --older-than-days`). */
  keepNewerThanDays?: number;
}

export interface RetentionSnapshot {
  snapshotId: string;
  startedAt: Date;
  /** Its EC2 tags; needed only by keepTags. */
  tags?: Readonly<Record<string, string>>;
}

export interface RetentionContext {
  now: Date;
  /** IANA name ("Europe/Berlin") or "UTC": where hours, days, weeks, months and years begin. */
  timeZone: string;
  /** Snapshot id -> why it must stay (an archive, a pending run, ...), whatever the policy says. */
  protect?: ReadonlyMap<string, readonly string[]>;
}

export interface RetentionDecision {
  snapshotId: string;
  startedAt: Date;
  /** Every rule or protection that keeps it, in a fixed order; empty when it goes. */
  keptBy: string[];
  keep: boolean;
}

const PERIOD_RULES = [
  ['keepHourly', 'hourly'],
  ['keepDaily', 'daily'],
  ['keepWeekly', 'weekly'],
  ['keepMonthly', 'monthly'],
  ['keepYearly', 'yearly'],
] as const;

type Period = (typeof PERIOD_RULES)[number][1];

/** True when the policy has no rule at all (keeps only what is protected). */
export function isEmptyPolicy(policy: RetentionPolicy): boolean {
  return (
    policy.keepLast === undefined &&
    PERIOD_RULES.every(([key]) => policy[key] === undefined) &&
    policy.keepWithin === undefined &&
    (policy.keepTags === undefined || policy.keepTags.length === 0) &&
    policy.keepNewerThanDays === undefined
  );
}

/**
 * Decides every snapshot of one volume, newest first (by startedAt; of two
 * started at the same moment, the one later in `snapshots` counts as newer).
 * Deterministic: the same input gives the same answer.
 */
export function applyRetention(snapshots: readonly RetentionSnapshot[], policy: RetentionPolicy, context: RetentionContext): RetentionDecision[] {
  const calendar = calendarIn(context.timeZone);
  const ordered = snapshots
    .map((snapshot, at) => ({ snapshot, at }))
    .sort((a, b) => b.snapshot.startedAt.getTime() - a.snapshot.startedAt.getTime() || b.at - a.at)
    .map(({ snapshot }) => snapshot);
  const now = context.now.getTime();
  const newestPast = ordered.find((s) => s.startedAt.getTime() < now);
  const withinAfter =
    policy.keepWithin === undefined ? undefined : newestPast === undefined ? -Infinity : subtractDuration(newestPast.startedAt.getTime(), policy.keepWithin, calendar);
  const newerAfter = policy.keepNewerThanDays === undefined ? undefined : now - policy.keepNewerThanDays * 86_400_000;

  let lastLeft = policy.keepLast ?? 0;
  const periods = PERIOD_RULES.map(([key, name]) => ({ name, left: policy[key] ?? 0, previous: undefined as number | undefined }));
  return ordered.map((snapshot, at) => {
    const time = snapshot.startedAt.getTime();
    const keptBy: string[] = [];
    if (at === 0) keptBy.push('newest');
    for (const reason of context.protect?.get(snapshot.snapshotId) ?? []) keptBy.push(reason);
    if (lastLeft > 0) {
      keptBy.push('last');
      lastLeft -= 1;
    }
    const oldest = at === ordered.length - 1;
    for (const period of periods) {
      if (period.left <= 0) continue;
      const bucket = periodKey(calendar.fields(time), period.name);
      if (bucket === period.previous && !oldest) continue;
      keptBy.push(bucket === period.previous ? `oldest ${period.name}` : period.name);
      period.previous = bucket;
      period.left -= 1;
    }
    if (withinAfter !== undefined && time > withinAfter) keptBy.push(`within ${formatDuration(policy.keepWithin!)}`);
    for (const list of policy.keepTags ?? []) {
      if (list.length > 0 && list.every((tag) => hasTag(snapshot.tags ?? {}, tag))) keptBy.push(`tag ${list.join(',')}`);
    }
    if (newerAfter !== undefined && time > newerAfter) keptBy.push(`newer than ${policy.keepNewerThanDays} days`);
    return { snapshotId: snapshot.snapshotId, startedAt: snapshot.startedAt, keptBy, keep: keptBy.length > 0 };
  });
}

function hasTag(tags: Readonly<Record<string, string>>, tag: string): boolean {
  const eq = tag.indexOf('=');
  if (eq < 0) return Object.hasOwn(tags, tag);
  const key = tag.slice(0, eq);
  return Object.hasOwn(tags, key) && tags[key] === tag.slice(eq + 1);
}

// ---- parsing (shared by the command line and the config file) ----------------

/** A count: a whole number from 1 to 1,000,000, or "unlimited". Throws INVALID_ARGUMENT naming `what`. */
export function parseKeepCount(what: string, value: unknown): KeepCount {
  const count = keepCountOf(value);
  if (typeof count === 'string') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${what} ${count}`);
  return count;
}

/** The count `value` stands for, or what is wrong with it ("must be ..."). */
export function keepCountOf(value: unknown): KeepCount | string {
  if (value === 'unlimited') return Infinity;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > 1_000_000) return `must be a whole number from 1 to 1000000 or "unlimited", got ${JSON.stringify(value)}`;
  return n;
}

const DURATION_UNITS = { y: 'years', m: 'months', d: 'days', h: 'hours' } as const;

/** restic's duration: numbers with units y (years), m (months), d (days), h (hours), each unit once, as `1y6m` or `36h`. Throws INVALID_ARGUMENT naming `what`. */
export function parseCalendarDuration(what: string, text: string): CalendarDuration {
  const duration = calendarDurationOf(text);
  if (typeof duration === 'string') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${what} ${duration}`);
  return duration;
}

/** The duration `text` stands for, or what is wrong with it ("must be ..."). */
export function calendarDurationOf(text: unknown): CalendarDuration | string {
  const duration: CalendarDuration = { years: 0, months: 0, days: 0, hours: 0 };
  const problem = (why: string) => `must be a duration such as 7d, 36h or 1y6m (units y, m for months, d, h), got ${JSON.stringify(text)}: ${why}`;
  if (typeof text !== 'string' || !/^(\d+[ymdh])+$/.test(text)) return problem('numbers each followed by a unit');
  const seen = new Set<string>();
  for (const [, digits, unit] of text.matchAll(/(\d+)([ymdh])/g)) {
    if (seen.has(unit!)) return problem(`the unit ${unit} is given twice`);
    seen.add(unit!);
    const n = Number(digits);
    if (!Number.isSafeInteger(n) || n > 1_000_000) return problem(`${digits} is too large`);
    duration[DURATION_UNITS[unit as keyof typeof DURATION_UNITS]] = n;
  }
  if (duration.years + duration.months + duration.days + duration.hours === 0) return problem('it is zero');
  return duration;
}

/** `1y6m`, `7d`: the form parseCalendarDuration reads. */
export function formatDuration(d: CalendarDuration): string {
  const parts = [
    [d.years, 'y'],
    [d.months, 'm'],
    [d.days, 'd'],
    [d.hours, 'h'],
  ] as const;
  return parts
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join('');
}

/** "key" or "key=value" lists: `a=1,b` is one list of two tags. Throws INVALID_ARGUMENT naming `what`. */
export function parseTagList(what: string, text: string): TagList {
  const list = tagListOf(text);
  if (typeof list === 'string') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${what} ${list}`);
  return list;
}

/** The tag list `text` stands for, or what is wrong with it ("must be ..."). */
export function tagListOf(text: unknown): TagList | string {
  const tags = typeof text === 'string' ? text.split(',') : [];
  if (tags.length === 0 || tags.some((tag) => tag === '' || tag.startsWith('='))) return `must be a tag key or key=value (several joined by commas), got ${JSON.stringify(text)}`;
  return tags;
}

/** The policy in words, for output: "last 3, daily 7, within 2d". */
export function describePolicy(policy: RetentionPolicy): string {
  const count = (n: KeepCount) => (n === Infinity ? 'unlimited' : String(n));
  const parts: string[] = [];
  if (policy.keepLast !== undefined) parts.push(`last ${count(policy.keepLast)}`);
  for (const [key, name] of PERIOD_RULES) if (policy[key] !== undefined) parts.push(`${name} ${count(policy[key])}`);
  if (policy.keepWithin !== undefined) parts.push(`within ${formatDuration(policy.keepWithin)}`);
  for (const list of policy.keepTags ?? []) parts.push(`tag ${list.join(',')}`);
  if (policy.keepNewerThanDays !== undefined) parts.push(`newer than ${policy.keepNewerThanDays} days`);
  return parts.join(', ');
}

// ---- the calendar of a time zone ------------------------------------------------

export interface CalendarFields {
  year: number;
  /** 1 to 12. */
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  millisecond: number;
}

export interface Calendar {
  /** The wall-clock fields of an instant (milliseconds since the epoch). */
  fields(time: number): CalendarFields;
  /** The instant of a wall-clock time (fields may overflow: 13th month, 0th day); in a gap or an overlap, the zone's offset just before it. */
  instant(fields: CalendarFields): number;
}

const calendars = new Map<string, Calendar>();

/** The calendar of an IANA time zone; INVALID_ARGUMENT for an unknown zone. */
export function calendarIn(timeZone: string): Calendar {
  let calendar = calendars.get(timeZone);
  if (calendar === undefined) {
    calendar = makeCalendar(timeZone);
    calendars.set(timeZone, calendar);
  }
  return calendar;
}

function makeCalendar(timeZone: string): Calendar {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown time zone ${JSON.stringify(timeZone)}`, { hint: 'set TZ to a zone name such as Europe/Berlin, or pass --utc' });
  }
  const fields = (time: number): CalendarFields => {
    const parts: Record<string, string> = {};
    for (const part of format.formatToParts(time)) parts[part.type] = part.value;
    const year = Number(parts.year);
    return {
      year: parts.era === 'BC' ? 1 - year : year,
      month: Number(parts.month),
      day: Number(parts.day),
      hour: Number(parts.hour),
      minute: Number(parts.minute),
      second: Number(parts.second),
      millisecond: ((time % 1000) + 1000) % 1000,
    };
  };
  const offset = (time: number): number => utcOf(fields(time)) - time;
  return {
    fields,
    instant(wall) {
      const local = utcOf(wall);
      // The offsets in force half a day before and after: the first that gives back the wall time
      // (in an overlap, the one before the change); in a gap none does, and the one before moves it forward.
      const candidates = [local - offset(local - 43_200_000), local - offset(local + 43_200_000)];
      return candidates.find((time) => utcOf(fields(time)) === local) ?? candidates[0]!;
    },
  };
}

/** The fields read as UTC, with overflow carried (month 13 is January of the next year). */
function utcOf(f: CalendarFields): number {
  const date = new Date(0);
  date.setUTCFullYear(f.year, f.month - 1, f.day);
  date.setUTCHours(f.hour, f.minute, f.second, f.millisecond);
  return date.getTime();
}

/** `time` minus years, months and days on the calendar (day overflow carried, as Go's AddDate), then minus the hours. */
export function subtractDuration(time: number, duration: CalendarDuration, calendar: Calendar): number {
  const f = calendar.fields(time);
  const shifted = calendar.instant({ ...f, year: f.year - duration.years, month: f.month - duration.months, day: f.day - duration.days });
  return shifted - duration.hours * 3_600_000;
}

/** A number naming the period `f` falls in, equal for two instants of the same period. */
function periodKey(f: CalendarFields, period: Period): number {
  switch (period) {
    case 'hourly':
      return ((f.year * 100 + f.month) * 100 + f.day) * 100 + f.hour;
    case 'daily':
      return (f.year * 100 + f.month) * 100 + f.day;
    case 'weekly': {
      const { year, week } = isoWeek(f.year, f.month, f.day);
      return year * 100 + week;
    }
    case 'monthly':
      return f.year * 100 + f.month;
    case 'yearly':
      return f.year;
  }
}

/** The ISO 8601 week (weeks begin on Monday; week 1 holds the year's first Thursday) of a civil date. */
export function isoWeek(year: number, month: number, day: number): { year: number; week: number } {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const weekday = (date.getUTCDay() + 6) % 7; // Monday 0 .. Sunday 6
  const thursday = new Date(date.getTime() + (3 - weekday) * 86_400_000);
  const start = new Date(0);
  start.setUTCFullYear(thursday.getUTCFullYear(), 0, 1);
  return { year: thursday.getUTCFullYear(), week: Math.floor((thursday.getTime() - start.getTime()) / (7 * 86_400_000)) + 1 };
}
