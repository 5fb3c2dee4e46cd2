import { ErrorCodes, SnaplineError } from '../errors.js';

/** Commander argument parsers that name the bad option in their message. */

export function integerOption(flag: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${flag} must be a whole number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

export function numberOption(flag: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${flag} must be a number from ${min} to ${max}, got "${value}"`);
    }
    return n;
  };
}

/** Collects repeated `--tag key=value` into a record. */
export function tagOption(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--tag must look like key=value, got "${value}"`);
  }
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** Seconds given on the command line, as milliseconds. */
export function secondsOption(flag: string) {
  const parse = numberOption(flag, 0, 365 * 24 * 3600);
  return (value: string): number => parse(value) * 1000;
}
