import { ErrorCodes, SnaplineError } from '../errors.js';

const MIB = 1024 * 1024;
/** Both S3 and Glacier allow at most this many parts in one multipart upload. */
export const MAX_PARTS = 10_000;
/** Glacier's part sizes: 1 MiB x 2^n, from 1 MiB to 4 GiB. */
export const GLACIER_MIN_PART = MIB;
export const GLACIER_MAX_PART = 4096 * MIB;

/**
 * The smallest power-of-two number of MiB, at least `floor` (itself 1 MiB x
 * 2^n) and at most `max`, whose parts hold `objectBytes` in at most 10,000
 * parts. Power-of-two MiB parts are whole subtrees of the Glacier tree hash,
 * so an object's tree hash is the combination of its parts'. INVALID_ARGUMENT
 * when the object is too large even for parts of `max`. Pure.
 */
export function partSizeFor(objectBytes: number, floor: number = GLACIER_MIN_PART, max: number = GLACIER_MAX_PART): number {
  if (!Number.isSafeInteger(objectBytes) || objectBytes < 0) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `object size must be a whole number of bytes, got ${objectBytes}`);
  }
  if (!isPowerOfTwoMiB(floor) || !isPowerOfTwoMiB(max) || floor > max) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `part sizes must be 1 MiB x 2^n with floor <= max, got ${floor} and ${max}`);
  }
  let size = floor;
  while (Math.ceil(objectBytes / size) > MAX_PARTS) {
    if (size >= max) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `an object of ${objectBytes} bytes does not fit in ${MAX_PARTS} parts of at most ${max / MIB} MiB`,
      );
    }
    size *= 2;
  }
  return size;
}

function isPowerOfTwoMiB(bytes: number): boolean {
  if (!Number.isSafeInteger(bytes) || bytes < MIB || bytes % MIB !== 0) return false;
  const mib = bytes / MIB;
  return (mib & (mib - 1)) === 0;
}
