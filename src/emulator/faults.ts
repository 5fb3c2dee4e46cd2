import { randomInt } from 'node:crypto';
import { ErrorCodes, SnaplineError } from '../errors.js';

/** Faults the endpoint injects; see the README's `serve` section. All optional, all off by default. */
export interface FaultSettings {
  /** Seed of every random fault decision: the same seed gives the same sequence. */
  seed?: number;
  /** Share 0..1 of EBS direct requests answered RequestThrottledException (400). */
  throttleRate?: number;
  /**
   * Seconds of AWS time, from the first EBS direct request after the setting
   * takes effect, during which every EBS direct request is answered
   * RequestThrottledException (400): an account throttled for a while. Runs
   * on the endpoint's clock, divided by the time scale.
   */
  throttleForS?: number;
  /** Requests/s per snapshot for PutSnapshotBlock and GetSnapshotBlock each (1000 imitates AWS); excess gets RequestThrottledException. */
  rateLimit?: number;
  /** Share 0..1 of EBS direct requests answered InternalServerException (500). */
  errorRate?: number;
  /** Share 0..1 of EBS direct requests whose connection is destroyed without an answer. */
  resetRate?: number;
  /** Milliseconds added before answering each EBS direct request. */
  latencyMs?: number;
  /** Share 0..1 of EBS direct requests delayed by spikeMs more (latency spikes). */
  spikeRate?: number;
  /** Milliseconds a latency spike adds. */
  spikeMs?: number;
  /** Seconds after StartSnapshot during which PutSnapshotBlock answers ResourceNotFoundException. */
  notFoundAfterStart?: number;
  /** Share 0..1 of GetSnapshotBlock answers carrying a wrong x-amz-Checksum. */
  corruptRate?: number;
  /** CompleteSnapshot answers pending and the snapshot leaves pending after this delay (0: at once). */
  completionDelayMs?: number;
  /** Share 0..1 of accepted completions that end in state error. */
  completionErrorRate?: number;
  /** The next N CompleteSnapshot calls are carried out, then their connection is dropped without an answer (a lost answer). */
  completionLostResponses?: number;
  /** EC2: the next N DeleteSnapshot calls are refused with InvalidSnapshot.InUse (400), as for a snapshot a registered AMI uses. */
  snapshotsInUse?: number;
  /** Share 0..1 of Glacier jobs that end Failed instead of Succeeded. */
  jobFailureRate?: number;
  /** ECS: the next N task placements of RunTask fail for capacity (failures[] with reason RESOURCE:MEMORY). */
  ecsCapacityFailures?: number;
  /** ECS: the next N RunTask calls start their tasks, then drop the connection without an answer. */
  ecsLostResponses?: number;
  /** ECS: the next N tasks stop before their containers start (stopCode TaskFailedToStart, no exit codes). */
  ecsStartFailures?: number;
  /** ECS: the next N tasks' snapline containers exit with ecsExitCode instead of running their command. */
  ecsExitFailures?: number;
  /** ECS: the exit code of ecsExitFailures, 1..255 (default 1). */
  ecsExitCode?: number;
  /** ECS: the next N tasks lose their host once their snapline container has written a line (stopCode SpotInterruption, or TerminationNotice on EC2; no exit code). */
  ecsHostStops?: number;
}

/** The faults that fire a given number of times (the next N occasions), then switch off. */
export const COUNTED_FAULTS = ['completionLostResponses', 'snapshotsInUse', 'ecsCapacityFailures', 'ecsLostResponses', 'ecsStartFailures', 'ecsExitFailures', 'ecsHostStops'] as const;
export type CountedFault = (typeof COUNTED_FAULTS)[number];

type FaultField = keyof FaultSettings;

const SHARES: FaultField[] = ['throttleRate', 'errorRate', 'resetRate', 'corruptRate', 'completionErrorRate', 'spikeRate', 'jobFailureRate'];
const NON_NEGATIVE: FaultField[] = ['throttleForS', 'rateLimit', 'latencyMs', 'spikeMs', 'notFoundAfterStart', 'completionDelayMs'];
const WHOLE_NUMBERS: FaultField[] = [...COUNTED_FAULTS, 'ecsExitCode'];
export const FAULT_FIELDS: readonly FaultField[] = ['seed', ...SHARES, ...NON_NEGATIVE, ...WHOLE_NUMBERS];

/**
 * Checks fault settings and returns a clean copy. `nameOf` names a field in
 * the message (a flag such as --throttle-rate for the CLI, the JSON field
 * for the admin route). Throws SnaplineError INVALID_ARGUMENT.
 */
export function checkFaultSettings(input: unknown, nameOf: (field: FaultField) => string = (f) => f): FaultSettings {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'fault settings must be an object');
  }
  const result: FaultSettings = {};
  for (const [key, value] of Object.entries(input)) {
    if (!(FAULT_FIELDS as readonly string[]).includes(key)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown fault setting ${key}`, { hint: `known: ${FAULT_FIELDS.join(', ')}` });
    }
    if (value === undefined) continue;
    const field = key as FaultField;
    const bad = (rule: string) => new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${nameOf(field)} must be ${rule}, got ${JSON.stringify(value)}`);
    if (typeof value !== 'number' || !Number.isFinite(value)) throw bad('a number');
    if (field === 'seed') {
      if (!Number.isSafeInteger(value) || value < 0) throw bad('a non-negative integer');
    } else if (field === 'ecsExitCode') {
      if (!Number.isInteger(value) || value < 1 || value > 255) throw bad('a whole number from 1 to 255');
    } else if (WHOLE_NUMBERS.includes(field)) {
      if (!Number.isSafeInteger(value) || value < 0) throw bad('a whole number, 0 or more');
    } else if (SHARES.includes(field)) {
      if (value < 0 || value > 1) throw bad('between 0 and 1');
    } else if (value < 0) {
      throw bad('0 or more');
    }
    result[field] = value;
  }
  return result;
}

/** A small, fast, seedable generator (mulberry32) giving numbers in [0, 1). */
function seededStream(seed: number, stream: number): () => number {
  // Mix the stream number in so that each fault draws from its own sequence.
  let state = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(stream + 1, 0x85ebca6b) ^ Math.floor(seed / 2 ** 32)) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the endpoint should do with an EBS direct request before handling it. */
export type RequestFault = 'reset' | 'throttle' | 'error' | undefined;

/**
 * Decides faults. Each kind of fault draws from its own seeded sequence, and
 * only when that fault is switched on, so the nth eligible request always
 * gets the same decision for a given seed. Rate limiting is a token bucket
 * per snapshot and operation (capacity: one second's worth).
 */
export class FaultInjector {
  #settings: FaultSettings = {};
  /** Endpoint time (ms) until which every EBS direct request is throttled (throttleForS); undefined until its first request. */
  #throttledUntil: number | undefined;
  #reset!: () => number;
  #throttle!: () => number;
  #error!: () => number;
  #corrupt!: () => number;
  #completion!: () => number;
  #spike!: () => number;
  #jobFailure!: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #remaining = new Map<CountedFault, number>();

  /** `clock`: the endpoint's time and time scale, which throttleForS runs on. */
  constructor(
    settings: FaultSettings,
    private readonly clock: { now: () => number; timeScale: number } = { now: Date.now, timeScale: 1 },
  ) {
    this.replace(settings);
  }

  /** The settings, with counted faults at what is left of them. */
  get settings(): FaultSettings {
    const settings = { ...this.#settings };
    for (const [field, left] of this.#remaining) settings[field] = left;
    return settings;
  }

  /** Replaces every setting (absent ones switch off) and restarts the sequences from the seed. */
  replace(settings: FaultSettings): void {
    this.#settings = { ...settings };
    const seed = settings.seed ?? randomInt(2 ** 47);
    [this.#reset, this.#throttle, this.#error, this.#corrupt, this.#completion, this.#spike, this.#jobFailure] = [0, 1, 2, 3, 4, 5, 6].map((n) =>
      seededStream(seed, n),
    ) as [() => number, () => number, () => number, () => number, () => number, () => number, () => number];
    this.#throttledUntil = undefined;
    this.#buckets.clear();
    this.#remaining.clear();
    for (const field of COUNTED_FAULTS) if (settings[field] !== undefined) this.#remaining.set(field, settings[field]);
  }

  /** True (and one fewer left) when the counted fault still has occasions left. */
  take(fault: CountedFault): boolean {
    const left = this.#remaining.get(fault) ?? 0;
    if (left <= 0) return false;
    this.#remaining.set(fault, left - 1);
    return true;
  }

  get ecsExitCode(): number {
    return this.#settings.ecsExitCode ?? 1;
  }

  get latencyMs(): number {
    return this.#settings.latencyMs ?? 0;
  }

  /** True when the next EBS direct request gets a latency spike (spikeMs more). */
  spikeNext(): boolean {
    const { spikeRate, spikeMs } = this.#settings;
    return Boolean(spikeRate && spikeMs) && this.#spike() < spikeRate!;
  }

  get spikeMs(): number {
    return this.#settings.spikeMs ?? 0;
  }

  /** The fault for one EBS direct request, drawn in a fixed order: reset, throttle, error (throttleForS throttles without a draw). */
  requestFault(): RequestFault {
    const { resetRate, throttleRate, errorRate } = this.#settings;
    if (resetRate && this.#reset() < resetRate) return 'reset';
    if (this.#throttledForAWhile()) return 'throttle';
    if (throttleRate && this.#throttle() < throttleRate) return 'throttle';
    if (errorRate && this.#error() < errorRate) return 'error';
    return undefined;
  }

  #throttledForAWhile(): boolean {
    const seconds = this.#settings.throttleForS;
    if (!seconds) return false;
    const now = this.clock.now();
    this.#throttledUntil ??= now + (seconds * 1000) / this.clock.timeScale;
    return now < this.#throttledUntil;
  }

  /** Takes one request from the snapshot's bucket; false when it is over the rate limit. */
  admit(operation: string, snapshotId: string, nowMs: number): boolean {
    const rate = this.#settings.rateLimit;
    if (!rate) return true;
    const key = `${operation} ${snapshotId}`;
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      bucket = { tokens: Math.max(1, rate), at: nowMs };
      this.#buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(Math.max(1, rate), bucket.tokens + ((nowMs - bucket.at) / 1000) * rate);
      bucket.at = nowMs;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets rate buckets idle for more than a few seconds (bounded memory). */
  pruneBuckets(nowMs: number): void {
    for (const [key, bucket] of this.#buckets) if (nowMs - bucket.at > 5000) this.#buckets.delete(key);
  }

  notFoundWindowMs(): number {
    return (this.#settings.notFoundAfterStart ?? 0) * 1000;
  }

  corruptNext(): boolean {
    const rate = this.#settings.corruptRate;
    return Boolean(rate) && this.#corrupt() < rate!;
  }

  completionDelayMs(): number {
    return this.#settings.completionDelayMs ?? 0;
  }

  completionFails(): boolean {
    const rate = this.#settings.completionErrorRate;
    return Boolean(rate) && this.#completion() < rate!;
  }

  /** Whether the next Glacier job ends Failed. */
  jobFails(): boolean {
    const rate = this.#settings.jobFailureRate;
    return Boolean(rate) && this.#jobFailure() < rate!;
  }
}
