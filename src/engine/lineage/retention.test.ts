import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../errors.js';
import {
  applyRetention,
  calendarIn,
  isoWeek,
  parseCalendarDuration,
  parseKeepCount,
  parseTagList,
  subtractDuration,
  type RetentionPolicy,
  type RetentionSnapshot,
} from './retention.js';

const NOW = new Date('2026-12-06T12:00:00Z');
const snap = (snapshotId: string, iso: string, tags?: Record<string, string>): RetentionSnapshot => ({ snapshotId, startedAt: new Date(iso), ...(tags ? { tags } : {}) });
const kept = (decisions: ReturnType<typeof applyRetention>) => decisions.filter((d) => d.keep).map((d) => d.snapshotId);
const reasons = (decisions: ReturnType<typeof applyRetention>) => Object.fromEntries(decisions.map((d) => [d.snapshotId, d.keptBy]));

describe('applyRetention, the documented cases', () => {
  it('keeps the newest of each of the last N days that have a snapshot: twelve Sundays, keep-daily 4', () => {
    const sundays = Array.from({ length: 12 }, (_, i) => snap(`s${i + 1}`, new Date(Date.UTC(2019, 8, 1 + 7 * i, 11)).toISOString()));
    const decisions = applyRetention(sundays, { keepDaily: 4 }, { now: NOW, timeZone: 'UTC' });
    expect(kept(decisions)).toEqual(['s12', 's11', 's10', 's9']);
    expect(reasons(decisions).s9).toEqual(['daily']);
    expect(reasons(decisions).s12).toEqual(['newest', 'daily']);
  });

  it('one snapshot a day for three years: daily 7, weekly 5, monthly 12, yearly 3 keep the last of each period', () => {
    const days: RetentionSnapshot[] = [];
    for (let t = Date.UTC(2024, 0, 1, 3); t < Date.UTC(2027, 0, 1); t += 86_400_000) days.push(snap(new Date(t).toISOString().slice(0, 10), new Date(t).toISOString()));
    const decisions = applyRetention(days, { keepDaily: 7, keepWeekly: 5, keepMonthly: 12, keepYearly: 3 }, { now: new Date('2027-01-01T00:00:00Z'), timeZone: 'UTC' });
    const byRule = (rule: string) => decisions.filter((d) => d.keptBy.includes(rule)).map((d) => d.snapshotId);
    expect(byRule('daily')).toEqual(['2026-12-31', '2026-12-30', '2026-12-29', '2026-12-28', '2026-12-27', '2026-12-26', '2026-12-25']);
    // 2026-12-31 is a Thursday: its ISO week runs Monday 28 December to Sunday 3 January.
    expect(byRule('weekly')).toEqual(['2026-12-31', '2026-12-27', '2026-12-20', '2026-12-13', '2026-12-06']);
    expect(byRule('monthly')).toEqual(['2026-12-31', '2026-11-30', '2026-10-31', '2026-09-30', '2026-08-31', '2026-07-31', '2026-06-30', '2026-05-31', '2026-04-30', '2026-03-31', '2026-02-28', '2026-01-31']);
    expect(byRule('yearly')).toEqual(['2026-12-31', '2025-12-31', '2024-12-31']);
    expect(kept(decisions)).toHaveLength(7 + 3 + 11 + 2);
  });

  it('keeps the oldest snapshot as well while a rule has periods left ("oldest daily")', () => {
    const history = [snap('a', '2026-12-01T08:00:00Z'), snap('b', '2026-12-01T09:00:00Z'), snap('c', '2026-12-02T09:00:00Z')];
    const decisions = applyRetention(history, { keepDaily: 5 }, { now: NOW, timeZone: 'UTC' });
    expect(reasons(decisions)).toEqual({ c: ['newest', 'daily'], b: ['daily'], a: ['oldest daily'] });
    // With no periods left, the oldest goes.
    expect(kept(applyRetention(history, { keepDaily: 2 }, { now: NOW, timeZone: 'UTC' }))).toEqual(['c', 'b']);
  });

  it('counts days and weeks in the time zone given', () => {
    // 23:30 UTC on Sunday 6 December is 00:30 on Monday 7 December in Berlin: another day and another ISO week.
    const history = [snap('sun-early', '2026-12-06T10:00:00Z'), snap('sun-late', '2026-12-06T23:30:00Z')];
    expect(kept(applyRetention(history, { keepDaily: 1 }, { now: new Date('2026-12-08T00:00:00Z'), timeZone: 'UTC' }))).toEqual(['sun-late']);
    const berlin = applyRetention(history, { keepWeekly: 2 }, { now: new Date('2026-12-08T00:00:00Z'), timeZone: 'Europe/Berlin' });
    expect(reasons(berlin)).toEqual({ 'sun-late': ['newest', 'weekly'], 'sun-early': ['weekly'] });
    expect(kept(applyRetention(history, { keepWeekly: 2 }, { now: new Date('2026-12-08T00:00:00Z'), timeZone: 'UTC' }))).toEqual(['sun-late', 'sun-early']);
    expect(reasons(applyRetention(history, { keepWeekly: 2 }, { now: new Date('2026-12-08T00:00:00Z'), timeZone: 'UTC' }))['sun-early']).toEqual(['oldest weekly']);
  });

  it('keep-within counts back from the newest snapshot, months on the calendar, and keeps those in the future', () => {
    const history = [
      snap('old', '2026-09-30T12:00:00Z'),
      snap('edge', '2026-10-30T12:00:00Z'),
      snap('in', '2026-10-30T12:00:01Z'),
      snap('newest', '2026-11-30T12:00:00Z'),
      snap('future', '2027-03-01T00:00:00Z'),
    ];
    // One month before the newest (30 November 12:00; the future one does not count) is 30 October 12:00, itself left out.
    const decisions = applyRetention(history, { keepWithin: parseCalendarDuration('--keep-within', '1m') }, { now: NOW, timeZone: 'UTC' });
    expect(kept(decisions)).toEqual(['future', 'newest', 'in']);
    expect(reasons(decisions).future).toEqual(['newest', 'within 1m']);
    // 31 March minus one month is "31 February", carried into 3 March (as Go's AddDate does).
    const march = calendarIn('UTC');
    expect(new Date(subtractDuration(Date.parse('2026-03-31T00:00:00Z'), { years: 0, months: 1, days: 0, hours: 0 }, march)).toISOString()).toBe('2026-03-03T00:00:00.000Z');
    const exact = applyRetention([snap('a', '2026-12-01T00:00:00Z'), snap('b', '2026-12-02T00:00:00Z')], { keepWithin: parseCalendarDuration('x', '1d') }, { now: NOW, timeZone: 'UTC' });
    expect(kept(exact)).toEqual(['b']);
  });

  it('days of keep-within are calendar days across a daylight-saving change', () => {
    const berlin = calendarIn('Europe/Berlin');
    // 29 March 2026 has 23 hours in Berlin: 2 days back from 30 March 12:00 local is 28 March 12:00 local, 47 hours earlier.
    const from = Date.parse('2026-03-30T10:00:00Z');
    expect(from - subtractDuration(from, { years: 0, months: 0, days: 2, hours: 0 }, berlin)).toBe(47 * 3_600_000);
    expect(from - subtractDuration(from, { years: 0, months: 0, days: 0, hours: 48 }, berlin)).toBe(48 * 3_600_000);
  });

  it('keeps snapshots carrying every tag of a list, and what started within --older-than-days of now', () => {
    const history = [
      snap('a', '2026-01-01T00:00:00Z', { team: 'db', keep: 'yes' }),
      snap('b', '2026-02-01T00:00:00Z', { team: 'db' }),
      snap('c', '2026-12-01T00:00:00Z', { team: 'web' }),
      snap('d', '2026-12-05T00:00:00Z'),
    ];
    const policy: RetentionPolicy = { keepTags: [parseTagList('--keep-tag', 'team=db,keep')], keepNewerThanDays: 2 };
    expect(reasons(applyRetention(history, policy, { now: NOW, timeZone: 'UTC' }))).toEqual({
      d: ['newest', 'newer than 2 days'],
      c: [],
      b: [],
      a: ['tag team=db,keep'],
    });
  });

  it('keeps what is protected, with the reason given', () => {
    const history = [snap('a', '2026-01-01T00:00:00Z'), snap('b', '2026-02-01T00:00:00Z'), snap('c', '2026-03-01T00:00:00Z')];
    const decisions = applyRetention(history, { keepLast: 1 }, { now: NOW, timeZone: 'UTC', protect: new Map([['a', ['archive ar-1']]]) });
    expect(reasons(decisions)).toEqual({ c: ['newest', 'last'], b: [], a: ['archive ar-1'] });
  });
});

describe('parsing', () => {
  it('reads counts, durations and tag lists, and names the option in a refusal', () => {
    expect(parseKeepCount('--keep-daily', '7')).toBe(7);
    expect(parseKeepCount('--keep-daily', 'unlimited')).toBe(Infinity);
    for (const bad of ['0', '-1', '1.5', 'many', '']) {
      expect(() => parseKeepCount('--keep-daily', bad)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('--keep-daily') }));
    }
    expect(parseCalendarDuration('--keep-within', '1y6m')).toEqual({ years: 1, months: 6, days: 0, hours: 0 });
    expect(parseCalendarDuration('--keep-within', '2d12h')).toEqual({ years: 0, months: 0, days: 2, hours: 12 });
    for (const bad of ['', '7', '7w', '1d1d', '0d', 'd7', '1.5d', '7 d']) {
      expect(() => parseCalendarDuration('--keep-within', bad)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('--keep-within') }));
    }
    expect(parseTagList('--keep-tag', 'a=1,b')).toEqual(['a=1', 'b']);
    expect(() => parseTagList('--keep-tag', 'a,,b')).toThrow(/--keep-tag/);
    expect(() => calendarIn('Mars/Olympus')).toThrow(/unknown time zone/);
  });

  it('numbers ISO weeks from the week holding the first Thursday', () => {
    expect(isoWeek(2026, 12, 31)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 3)).toEqual({ year: 2026, week: 53 });
    expect(isoWeek(2027, 1, 4)).toEqual({ year: 2027, week: 1 });
    expect(isoWeek(2024, 12, 30)).toEqual({ year: 2025, week: 1 });
  });
});

// ---- properties over random histories ----------------------------------------------------

const ZONES = ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Australia/Lord_Howe', 'Pacific/Chatham'];
const START = Date.UTC(2023, 0, 1);
const END = Date.UTC(2027, 0, 1);

const historyArb = fc
  .array(
    fc.record({
      // Clustered times: many snapshots share an hour, a day or a week.
      time: fc.oneof(fc.integer({ min: START, max: END }), fc.integer({ min: END - 10 * 86_400_000, max: END })),
      tags: fc.dictionary(fc.constantFrom('team', 'keep', 'tier'), fc.constantFrom('a', 'b'), { maxKeys: 2 }),
    }),
    { minLength: 1, maxLength: 40 },
  )
  .map((items) => items.map((item, i) => ({ snapshotId: `snap-${i.toString(16).padStart(4, '0')}`, startedAt: new Date(item.time), tags: item.tags })));

const countArb = fc.option(fc.oneof(fc.integer({ min: 1, max: 12 }), fc.constant(Infinity)), { nil: undefined });
const policyArb: fc.Arbitrary<RetentionPolicy> = fc
  .record({
    keepLast: countArb,
    keepHourly: countArb,
    keepDaily: countArb,
    keepWeekly: countArb,
    keepMonthly: countArb,
    keepYearly: countArb,
    keepWithin: fc.option(
      fc.record({ years: fc.integer({ min: 0, max: 2 }), months: fc.integer({ min: 0, max: 13 }), days: fc.integer({ min: 0, max: 40 }), hours: fc.integer({ min: 0, max: 50 }) }).filter((d) => d.years + d.months + d.days + d.hours > 0),
      { nil: undefined },
    ),
    keepTags: fc.option(fc.array(fc.array(fc.constantFrom('team', 'team=a', 'keep=b', 'tier'), { minLength: 1, maxLength: 2 }), { maxLength: 2 }), { nil: undefined }),
    keepNewerThanDays: fc.option(fc.integer({ min: 0, max: 400 }), { nil: undefined }),
  })
  .map((p) => Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined)) as RetentionPolicy);

const contextArb = (history: RetentionSnapshot[]) =>
  fc.record({
    now: fc.integer({ min: END - 30 * 86_400_000, max: END + 30 * 86_400_000 }).map((t) => new Date(t)),
    timeZone: fc.constantFrom(...ZONES),
    protect: fc.subarray(history.map((s) => s.snapshotId)).map((ids) => new Map(ids.map((id) => [id, ['protected']]))),
  });

const caseArb = historyArb.chain((history) => fc.tuple(fc.constant(history), policyArb, contextArb(history)));

const newestFirst = (history: readonly RetentionSnapshot[]) =>
  history
    .map((s, at) => ({ s, at }))
    .sort((a, b) => b.s.startedAt.getTime() - a.s.startedAt.getTime() || b.at - a.at)
    .map(({ s }) => s.snapshotId);

/** The single-rule policies a policy is made of. */
function rulesOf(policy: RetentionPolicy): RetentionPolicy[] {
  const rules: RetentionPolicy[] = Object.entries(policy)
    .filter(([key]) => key !== 'keepTags')
    .map(([key, value]) => ({ [key]: value }) as RetentionPolicy);
  for (const list of policy.keepTags ?? []) rules.push({ keepTags: [list] });
  return rules;
}

describe('applyRetention, properties', () => {
  it('decides every snapshot once, keeps the newest and the protected, and keeps exactly those some rule keeps', () => {
    fc.assert(
      fc.property(caseArb, ([history, policy, context]) => {
        const decisions = applyRetention(history, policy, context);
        expect(decisions.map((d) => d.snapshotId)).toEqual(newestFirst(history));
        expect(decisions[0]!.keep).toBe(true);
        for (const d of decisions) {
          expect(d.keep).toBe(d.keptBy.length > 0);
          if (context.protect.has(d.snapshotId)) expect(d.keep).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keep-last N keeps exactly the N newest', () => {
    fc.assert(
      fc.property(historyArb, fc.integer({ min: 1, max: 50 }), fc.constantFrom(...ZONES), (history, n, timeZone) => {
        const decisions = applyRetention(history, { keepLast: n }, { now: NOW, timeZone });
        expect(kept(decisions)).toEqual(newestFirst(history).slice(0, n));
      }),
      { numRuns: 200 },
    );
  });

  it('a snapshot kept by any one rule alone is kept by the whole policy', () => {
    fc.assert(
      fc.property(caseArb, ([history, policy, context]) => {
        const whole = new Set(kept(applyRetention(history, policy, { ...context, protect: new Map() })));
        for (const rule of rulesOf(policy)) {
          for (const id of kept(applyRetention(history, rule, { ...context, protect: new Map() }))) expect(whole.has(id), `${id} kept by ${JSON.stringify(rule)}`).toBe(true);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('is idempotent: the policy applied to what it kept removes nothing more', () => {
    fc.assert(
      fc.property(caseArb, ([history, policy, context]) => {
        const first = new Set(kept(applyRetention(history, policy, context)));
        const rest = history.filter((s) => first.has(s.snapshotId));
        const second = applyRetention(rest, policy, context);
        expect(second.every((d) => d.keep)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('keep-daily N in UTC keeps the newest snapshot of each of the N newest days that have one, and the oldest while days are left', () => {
    fc.assert(
      fc.property(historyArb, fc.integer({ min: 1, max: 15 }), (history, n) => {
        const order = newestFirst(history);
        const byId = new Map(history.map((s) => [s.snapshotId, s]));
        const expected: string[] = [];
        const days: string[] = [];
        for (const id of order) {
          const day = byId.get(id)!.startedAt.toISOString().slice(0, 10);
          if (!days.includes(day) && days.length < n) {
            days.push(day);
            expected.push(id);
          }
        }
        if (days.length < n && !expected.includes(order.at(-1)!)) expected.push(order.at(-1)!);
        expect(kept(applyRetention(history, { keepDaily: n }, { now: NOW, timeZone: 'UTC' }))).toEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});
