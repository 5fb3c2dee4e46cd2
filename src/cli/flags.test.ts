import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
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
