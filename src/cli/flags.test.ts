import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { checkTrackingOptions } from '../engine/backup/tracking.js';
import { checkDestination } from '../engine/dr/copy.js';
import { checkVolumeOptions } from '../engine/dr/restore-volume.js';
import { parseKeepCount } from '../engine/lineage/retention.js';
import { parseDelay, scheduleOf } from '../engine/schedule/calendar.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { validateConcurrency } from '../session.js';
import { FLAG_OF_OPTION, inFlagTerms } from './flags.js';

const SRC = fileURLToPath(new URL('..', import.meta.url));

/** The option names the library's errors give in details (option: 'x', otherOptions: ['y'], checkWhole('z', ...)), read from the sources. */
function namedOptions(): Set<string> {
  const names = new Set<string>();
  const files = readdirSync(SRC, { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.startsWith('cli/'));
  for (const file of files) {
    const text = readFileSync(join(SRC, file), 'utf8');
    for (const match of text.matchAll(/\boption: '(\w+)'|checkWhole\('(\w+)'/g)) names.add(match[1] ?? match[2]!);
    for (const match of text.matchAll(/otherOptions: \[([^\]]*)\]/g)) for (const name of match[1]!.matchAll(/'(\w+)'/g)) names.add(name[1]!);
  }
  return names;
}

describe('options as flags', () => {
  it('every option an error of the library names has a flag', () => {
    const names = namedOptions();
    expect(names.size).toBeGreaterThan(10);
    expect([...names].filter((name) => FLAG_OF_OPTION[name] === undefined)).toEqual([]);
  });

  it('the library error names the option; the command line tells the flag, in the message and the details', () => {
    const error = (() => {
      try {
        validateConcurrency(0);
      } catch (err) {
        return err as SnaplineError;
      }
      throw new Error('not refused');
    })();
    expect(error.message).toBe('concurrency must be a whole number from 1 to 1024, got 0');
    const shown = inFlagTerms(error);
    expect(shown).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: '--concurrency must be a whole number from 1 to 1024, got 0', details: { option: 'concurrency', flag: '--concurrency' } });
    expect(shown.exitCode).toBe(error.exitCode);
  });

  it('the errors of change tracking, volume restores, copies, retention and schedules read on the command line with their flags', () => {
    const shown = (refused: () => unknown) => {
      try {
        refused();
      } catch (err) {
        return inFlagTerms(err as SnaplineError).message;
      }
      throw new Error('not refused');
    };
    expect(shown(() => checkTrackingOptions({ dirtyBitmap: 'b', changedBlocksFile: '/f' }))).toBe('--dirty-bitmap and --changed-blocks exclude each other: give one tracker');
    expect(shown(() => checkTrackingOptions({ changedBlocksFile: '/f', sinceCheckpoint: 'a', full: true }))).toBe('--full reads every block: --changed-blocks would not be used');
    expect(shown(() => checkTrackingOptions({ changedBlocksFile: '/f' }))).toBe(
      '--changed-blocks needs --since-checkpoint: where its changes count from, as recorded with the parent by --checkpoint',
    );
    expect(shown(() => checkTrackingOptions({ verifyUnchangedPercent: 5 }))).toBe('--verify-unchanged checks a tracker: give --dirty-bitmap or --changed-blocks with it');
    expect(shown(() => checkVolumeOptions({ availabilityZone: 'us-east-1a', volumeType: 'fast' }))).toMatch(/^--volume-type must be one of gp3/);
    expect(shown(() => checkVolumeOptions({ availabilityZone: 'us-east-1a', iops: 0 }))).toBe('--iops must be a whole number above 0, got 0');
    expect(shown(() => checkVolumeOptions({ availabilityZone: 'us-east-1a', attach: { instanceId: 'i-1', device: 'sdf' } }))).toBe("--device must be a device name such as /dev/sdf, got 'sdf'");
    expect(shown(() => checkDestination('us-east-1', 'us-east-1', undefined))).toBe("--to-region us-east-1 is the snapshot's own Region: a copy for disaster recovery goes to another one");
    expect(shown(() => checkDestination('us-east-1', 'Mars', undefined, 'copyToRegion'))).toBe('--copy-to-region must be a Region name such as eu-west-1, got "Mars"');
    expect(shown(() => parseKeepCount('keepWeekly', 'lots'))).toBe('--keep-weekly must be a whole number from 1 to 1000000 or "unlimited", got "lots"');
    expect(shown(() => scheduleOf('daily', '7pm'))).toBe('--at must be a time of day HH:MM (00:00 to 23:59) with --every daily, got "7pm"');
    expect(shown(() => scheduleOf('0 3 * * *', '03:00'))).toBe('--at goes with --every hourly or daily; a cron expression carries its own time');
    expect(shown(() => scheduleOf('0 3 * *'))).toMatch(/^--every "0 3 \* \*" must be hourly, daily or a cron expression of 5 fields/);
    expect(shown(() => parseDelay('10'))).toMatch(/^--random-delay must be a delay/);
  });

  it('each named option once, as a whole word: not inside another word or a tag', () => {
    const error = new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'the unencrypted snapline:volume; full and parent exclude each other, full stop', {
      hint: 'keep it',
      details: { option: 'parent', otherOptions: ['full', 'volume'] },
    });
    expect(inFlagTerms(error)).toMatchObject({ message: 'the unencrypted snapline:volume; --full and --parent exclude each other, full stop', hint: 'keep it' });
  });

  it('an error naming no option, or one without a flag, as it is', () => {
    const plain = new SnaplineError(ErrorCodes.NOT_FOUND, 'snapshot snap-1 does not exist');
    expect(inFlagTerms(plain)).toBe(plain);
    const unknown = new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'sideways is wrong', { details: { option: 'sideways' } });
    expect(inFlagTerms(unknown)).toBe(unknown);
  });
});
