import { ErrorCodes, SnaplineError } from '../errors.js';

/** Retrieval tiers of S3 restores and Glacier jobs. */
export const TIERS = ['Expedited', 'Standard', 'Bulk'] as const;
export type Tier = (typeof TIERS)[number];

/** Milliseconds a restore or job of each tier takes on the endpoint (AWS: minutes to hours). */
export type TierDelays = Record<Tier, number>;

/** Small enough for tests, ordered like AWS's tiers. */
export const DEFAULT_TIER_DELAYS: Readonly<TierDelays> = { Expedited: 0, Standard: 200, Bulk: 400 };

export function isTier(value: unknown): value is Tier {
  return typeof value === 'string' && (TIERS as readonly string[]).includes(value);
}

/**
 * Checks partial tier delays and fills in the defaults. `name` names the
 * option in the message. Throws SnaplineError INVALID_ARGUMENT.
 */
export function checkTierDelays(input: unknown, name: string): TierDelays {
  const delays: TierDelays = { ...DEFAULT_TIER_DELAYS };
  if (input === undefined) return delays;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} must be an object with Expedited, Standard and Bulk milliseconds`);
  }
  for (const [tier, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if (!isTier(tier)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} has an unknown tier ${tier}`, { hint: `tiers: ${TIERS.join(', ')}` });
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name}.${tier} must be 0 or more milliseconds, got ${JSON.stringify(value)}`);
    }
    delays[tier] = value;
  }
  return delays;
}

/**
 * Parses repeated `TIER=MS` flag values (tier names in any case).
 * Throws SnaplineError INVALID_ARGUMENT naming `flag`.
 */
export function parseTierDelayFlags(values: readonly string[], flag: string): Partial<TierDelays> {
  const delays: Partial<TierDelays> = {};
  for (const text of values) {
    const eq = text.indexOf('=');
    const tier = TIERS.find((t) => t.toLowerCase() === text.slice(0, Math.max(eq, 0)).trim().toLowerCase());
    const ms = eq < 0 || text.slice(eq + 1).trim() === '' ? Number.NaN : Number(text.slice(eq + 1));
    if (tier === undefined || !Number.isFinite(ms) || ms < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${flag} must look like TIER=MS with TIER one of ${TIERS.join(', ')} and MS 0 or more, got '${text}'`);
    }
    delays[tier] = ms;
  }
  return delays;
}
