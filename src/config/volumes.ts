/**
 * The `volumes:` section of the config file: settings per volume (its
 * retention policy), keyed by volume name.
 *
 *   volumes:
 *     db1:
 *       retention: { keep_last: 3, keep_daily: 7, keep_weekly: 5, keep_within: 2d, keep_tags: [legal=hold] }
 */
import {
  calendarDurationOf,
  keepCountOf,
  tagListOf,
  type KeepCount,
  type RetentionPolicy,
  type TagList,
} from '../engine/lineage/retention.js';
import { isMapping, kindOf, locate, Section, type FileContext, type Problem } from './fields.js';

export interface VolumeSettings {
  retention?: RetentionPolicy;
}

/** One volume of a file: its settings when they are valid, else the errors (the other volumes stay usable). */
export interface VolumeEntry {
  name: string;
  settings: VolumeSettings | undefined;
  errors: string[];
  warnings: string[];
}

/** The names a volume can have (as backup's --volume). */
export const VOLUME_NAME = /^[A-Za-z0-9._-]{1,128}$/;

const COUNTS = [
  ['keep_last', 'keepLast'],
  ['keep_hourly', 'keepHourly'],
  ['keep_daily', 'keepDaily'],
  ['keep_weekly', 'keepWeekly'],
  ['keep_monthly', 'keepMonthly'],
  ['keep_yearly', 'keepYearly'],
] as const;

/** Reads the mapping under `volumes:`, each volume on its own (see VolumeEntry). */
export function readVolumes(file: FileContext, raw: Record<string, unknown>): Map<string, VolumeEntry> {
  const volumes = new Map<string, VolumeEntry>();
  for (const [name, value] of Object.entries(raw)) {
    const problems: Problem[] = [];
    const path = ['volumes', name];
    const texts = (severity: Problem['severity']) => problems.filter((p) => p.severity === severity).sort((a, b) => (a.line ?? 0) - (b.line ?? 0)).map((p) => p.text);
    const fail = (message: string) => problems.push({ severity: 'error', line: file.lineOf(path), text: locate(file, path, undefined, message) });
    let settings: VolumeSettings | undefined;
    if (!VOLUME_NAME.test(name)) fail('is not a valid volume name: 1 to 128 letters, digits, dots, dashes or underscores');
    else if (!isMapping(value)) fail(`must be a mapping of settings, got ${kindOf(value)}`);
    else {
      const section = new Section(file, undefined, path, value, problems);
      const retention = readRetention(section);
      section.finish();
      settings = retention === undefined ? {} : { retention };
    }
    const errors = texts('error');
    volumes.set(name, { name, settings: errors.length > 0 ? undefined : settings, errors, warnings: texts('warning') });
  }
  return volumes;
}

function readRetention(parent: Section): RetentionPolicy | undefined {
  const section = parent.section('retention');
  if (section === undefined) return undefined;
  const policy: RetentionPolicy = {};
  const take = <T>(key: string | (string | number)[], parsed: T | string): T | undefined => {
    if (typeof parsed !== 'string') return parsed;
    section.error(key, parsed);
    return undefined;
  };
  for (const [key, field] of COUNTS) {
    const value = section.raw(key);
    const count = value === undefined ? undefined : take<KeepCount>(key, keepCountOf(value));
    if (count !== undefined) policy[field] = count;
  }
  const within = section.raw('keep_within');
  const duration = within === undefined ? undefined : take('keep_within', calendarDurationOf(within));
  if (duration !== undefined) policy.keepWithin = duration;
  const lists = section.strings('keep_tags')?.map((text, i) => take(['keep_tags', i], tagListOf(text)));
  if (lists !== undefined && lists.every((list) => list !== undefined)) policy.keepTags = lists as TagList[];
  const given = [...COUNTS.map(([key]) => key), 'keep_within', 'keep_tags'].some((key) => section.has(key));
  section.finish();
  if (!given) parent.error('retention', 'keeps nothing: give one or more of keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, keep_tags');
  return policy;
}
