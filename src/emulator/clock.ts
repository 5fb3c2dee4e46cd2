import { ErrorCodes, SnaplineError } from '../errors.js';
import { checkTierDelays, DEFAULT_TIER_DELAYS, TIERS, type TierDelays } from './tiers.js';

/** How the endpoint's time differs from AWS's and from the wall clock. All optional. */
export interface ClockOptions {
  /** Every AWS duration the endpoint imitates runs this many times faster (1 to 1,000,000; default 1). */
  timeScale?: number;
  /** Milliseconds EC2 DescribeSnapshots lags behind the EBS direct APIs (default 0). */
  ec2LagMs?: number;
  /** Seconds the endpoint's clock is off the wall clock, ahead when positive (default 0). */
  clockSkewS?: number;
}

export const CLOCK_FIELDS = ['timeScale', 'ec2LagMs', 'clockSkewS'] as const;
type ClockField = (typeof CLOCK_FIELDS)[number];

const MAX_TIME_SCALE = 1_000_000;
/** Ten years either way: enough for any test, small enough to stay exact in epoch milliseconds. */
const MAX_SKEW_S = 10 * 365 * 24 * 3600;

/**
 * Checks the clock options and fills in the defaults. `nameOf` names a field
 * in the message (a flag of `snapline serve`, or the option name). Throws
 * SnaplineError INVALID_ARGUMENT.
 */
export function checkClockOptions(input: ClockOptions, nameOf: (field: ClockField) => string = (field) => field): Required<ClockOptions> {
  const value = (field: ClockField, fallback: number, ok: (n: number) => boolean, rule: string): number => {
    const given = input[field];
    if (given === undefined) return fallback;
    if (typeof given !== 'number' || !Number.isFinite(given) || !ok(given)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${nameOf(field)} must be ${rule}, got ${JSON.stringify(given)}`);
    }
    return given;
  };
  return {
    timeScale: value('timeScale', 1, (n) => n >= 1 && n <= MAX_TIME_SCALE, `a number from 1 to ${MAX_TIME_SCALE}`),
    ec2LagMs: value('ec2LagMs', 0, (n) => n >= 0, '0 or more milliseconds'),
    clockSkewS: value('clockSkewS', 0, (n) => Math.abs(n) <= MAX_SKEW_S, `a number of seconds from -${MAX_SKEW_S} to ${MAX_SKEW_S}`),
  };
}

/** The endpoint's clock: `base` off by `skewS` seconds. */
export function skewedClock(base: () => number, skewS: number): () => number {
  if (skewS === 0) return base;
  const offset = skewS * 1000;
  return () => base() + offset;
}

/**
 * The tier delays given (checked, as checkTierDelays does, named `name`),
 * and for the tiers not given the defaults divided by the time scale.
 */
export function scaledTierDelays(given: Partial<TierDelays> | undefined, timeScale: number, name: string): TierDelays {
  const checked = checkTierDelays(given, name);
  const delays = { ...checked };
  for (const tier of TIERS) if (given?.[tier] === undefined) delays[tier] = DEFAULT_TIER_DELAYS[tier] / timeScale;
  return delays;
}
