import { SnaplineError } from '../errors.js';

/**
 * The command-line flag of every option the library's errors name (see
 * SnaplineErrorOptions.details): the one place where option names become
 * flags.
 */
export const FLAG_OF_OPTION: Readonly<Record<string, string>> = {
  at: '--at',
  attach: '--attach',
  availabilityZone: '--availability-zone',
  changedBlocksFile: '--changed-blocks',
  checkpoint: '--checkpoint',
  concurrency: '--concurrency',
  copyToRegion: '--copy-to-region',
  createBucket: '--create-bucket',
  days: '--days',
  description: '--description',
  device: '--device',
  dirtyBitmap: '--dirty-bitmap',
  encrypted: '--encrypted',
  every: '--every',
  full: '--full',
  incremental: '--incremental',
  iops: '--iops',
  keepDaily: '--keep-daily',
  keepHourly: '--keep-hourly',
  keepLast: '--keep-last',
  keepMonthly: '--keep-monthly',
  keepTags: '--keep-tag',
  keepWeekly: '--keep-weekly',
  keepWithin: '--keep-within',
  keepYearly: '--keep-yearly',
  kmsKeyArn: '--kms-key-id',
  olderThanDays: '--older-than-days',
  parent: '--parent',
  randomDelay: '--random-delay',
  remote: '--remote',
  retries: '--retries',
  shards: '--shards',
  sinceCheckpoint: '--since-checkpoint',
  sizeGiB: '--size',
  snapshotId: '--snapshot',
  source: '--source',
  storageClass: '--storage-class',
  tags: '--tag',
  throughput: '--throughput',
  tier: '--tier',
  to: '--to',
  toFile: '--to-file',
  toRegion: '--to-region',
  toSnapshot: '--to-snapshot',
  trustIndex: '--trust-index',
  verifyUnchangedPercent: '--verify-unchanged',
  volume: '--volume',
  volumeType: '--volume-type',
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
