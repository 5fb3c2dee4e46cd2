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

const SNAPSHOT_ID = /^snap-[0-9a-f]+$/;
const ARCHIVE_ID = /^ar-[0-9a-f]{16}$/;

/** `<name>` as a snapshot id (snap- and hex digits, as EC2 gives them), refused as a usage error before anything is asked of AWS. */
export function snapshotIdArgument(name: string) {
  return (value: string): string => {
    if (!SNAPSHOT_ID.test(value)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} "${value}" is not a snapshot id: snap- followed by hex digits (as snap-0123456789abcdef0)`);
    }
    return value;
  };
}

/** `<name>` as an archive id (ar- and 16 hex digits) or the id of an archived snapshot, refused as a usage error otherwise. */
export function archiveRefArgument(name: string) {
  return (value: string): string => {
    if (!ARCHIVE_ID.test(value) && !SNAPSHOT_ID.test(value)) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `${name} "${value}" is neither an archive id (ar- followed by 16 hex digits) nor a snapshot id (snap- followed by hex digits)`,
      );
    }
    return value;
  };
}
