import { SnaplineError } from '../errors.js';

/**
 * The command-line flag of every option the library's errors name (see
 * SnaplineErrorOptions.details): the one place where option names become
 * flags.
 */
export const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  attach: '--attach',
  availabilityZone: '--availability-zone',
  changedBlocks: '--changed-blocks',
  concurrency: '--concurrency',
  createBucket: '--create-bucket',
  days: '--days',
  dirtyBitmap: '--dirty-bitmap',
  encrypted: '--encrypted',
  full: '--full',
  incremental: '--incremental',
  keepLast: '--keep-last',
  kmsKeyArn: '--kms-key-id',
  olderThanDays: '--older-than-days',
  parent: '--parent',
  randomDelay: '--random-delay',
  remote: '--remote',
  retries: '--retries',
  shards: '--shards',
  sizeGiB: '--size',
  snapshotId: '--snapshot',
  storageClass: '--storage-class',
  tier: '--tier',
  to: '--to',
  toFile: '--to-file',
  toSnapshot: '--to-snapshot',
  trustIndex: '--trust-index',
  verifyUnchangedPercent: '--verify-unchanged',
  volume: '--volume',
  wait: '--wait',
};

/**
 * `error` as the command line tells it: in its message, the first mention
 * of each option it names (details.option, then details.otherOptions) is
 * that option's flag; details gain `flag`. An error naming no option, or
 * one without a flag, is returned as it is.
 */
export function inFlagTerms(error: SnaplineError): SnaplineError {
  const { option, otherOptions } = error.details ?? {};
  if (typeof option !== 'string' || FLAG_OF_OPTION[option] === undefined) return error;
  const named = [option, ...(Array.isArray(otherOptions) ? otherOptions.filter((name): name is string => typeof name === 'string') : [])];
  let message = error.message;
  for (const name of named) {
    const flag = FLAG_OF_OPTION[name];
    // A whole word, not part of another (snapline:volume, unencrypted).
    if (flag !== undefined) message = message.replace(new RegExp(`(?<![\\w:.-])${name}(?![\\w-])`), flag);
  }
  const shown = new SnaplineError(error.code, message, {
    retryable: error.retryable,
    ...(error.hint === undefined ? {} : { hint: error.hint }),
    ...(error.cause === undefined ? {} : { cause: error.cause }),
    details: { ...error.details, flag: FLAG_OF_OPTION[option] },
  });
  shown.stack = error.stack;
  return shown;
}
