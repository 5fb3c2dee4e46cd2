/**
 * The choices and defaults of archiving and of bringing archives back, held
 * here (free of dependencies) so that the config parser, the engine and the
 * command line's help and option parsers share one copy.
 */
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { ArchiveTarget, RetrievalTier } from './ports.js';

/** The S3 storage classes a connection (or `--storage-class`) may name for archives. */
export const STORAGE_CLASSES = ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE'] as const;
export type StorageClass = (typeof STORAGE_CLASSES)[number];
export const DEFAULT_STORAGE_CLASS: StorageClass = 'DEEP_ARCHIVE';

/** 2048 blocks: segment objects of at most 1 GiB of block data. */
export const DEFAULT_SEGMENT_BLOCKS = 2048;

/** Keyed by every RetrievalTier, so that a tier missing here fails to compile; cheapest and slowest first. */
const TIERS: Readonly<Record<RetrievalTier, true>> = { Bulk: true, Standard: true, Expedited: true };
export const RETRIEVAL_TIERS = Object.keys(TIERS) as readonly RetrievalTier[];
export const DEFAULT_RETRIEVAL_TIER: RetrievalTier = 'Standard';

/** `value` as a retrieval tier, in any letter case; INVALID_ARGUMENT about the option `tier` otherwise. */
export function retrievalTierOf(value: string): RetrievalTier {
  const tier = RETRIEVAL_TIERS.find((t) => t.toLowerCase() === String(value).toLowerCase());
  if (tier === undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `tier must be Bulk, Standard or Expedited, got "${value}"`, { details: { option: 'tier' } });
  return tier;
}

/** `value` as an archive target; INVALID_ARGUMENT about the option `to` otherwise. */
export function archiveTargetOf(value: string): ArchiveTarget {
  if (value !== 's3' && value !== 'glacier') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `to must be s3 or glacier, got "${value}"`, { details: { option: 'to' } });
  return value;
}

/** Days a restored S3 copy stays readable: the default, and the most a request may ask for. */
export const DEFAULT_RESTORE_DAYS = 7;
export const MAX_RESTORE_DAYS = 36_500;
