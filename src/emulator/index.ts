import { ErrorCodes, SnaplineError } from '../errors.js';
import type { AccessKey } from './protocol/access-keys.js';
import { checkClockOptions, scaledTierDelays, skewedClock, type ClockOptions } from './clock.js';
import type { TaskOptions } from './ecs/container-services.js';
import { checkFaultSettings, FAULT_FIELDS, type FaultSettings } from './faults.js';
import { EndpointServer } from './server.js';
import { DEFAULT_LIMITS, type EndpointLimits } from './snapshots.js';
import type { EmulatorStats } from './stats.js';
import type { TierDelays } from './tiers.js';

export type { AccessKey } from './protocol/access-keys.js';
export { parseAccessKey, parseAccessKeyFile } from './protocol/access-keys.js';
export type { FaultSettings } from './faults.js';
export type { TaskOptions } from './ecs/container-services.js';
export type { EmulatorStats, FaultStats, OperationStats } from './stats.js';
export type { EndpointLimits } from './snapshots.js';
export { checkFaultSettings, FAULT_FIELDS } from './faults.js';
export type { ClockOptions } from './clock.js';
export { checkClockOptions, CLOCK_FIELDS } from './clock.js';
export { ACCOUNT_ID, DEFAULT_LIMITS } from './snapshots.js';
export { regionOfZone } from './ec2/volumes.js';
export type { Tier, TierDelays } from './tiers.js';
export { DEFAULT_TIER_DELAYS, parseTierDelayFlags, TIERS } from './tiers.js';

export interface EmulatorOptions extends FaultSettings, ClockOptions {
  /** Where the endpoint keeps its catalog (SQLite), block packs and token secret. Created when missing. */
  dataDir: string;
  /** Default 127.0.0.1. Callers decide whether a non-loopback address is allowed. */
  host?: string;
  /** Default 0: a free port. */
  port?: number;
  /** Quotas; AWS's defaults when absent. */
  limits?: Partial<EndpointLimits>;
  /** The clock (epoch ms) for state decisions: token expiry, idle timeout, completion delay, rate limits. For tests. clockSkewS shifts it. */
  now?: () => number;
  /** EBS encryption by default starts enabled in every Region (EC2 Enable/DisableEbsEncryptionByDefault change it while running). */
  encryptionByDefault?: boolean;
  /** Where internal failures are reported. Default: stderr. */
  log?: (line: string) => void;
  /**
   * Access keys whose SigV4 signatures the endpoint checks on every request
   * (and on admin changes); unsigned or wrongly signed requests get AWS's
   * credential errors. Absent: no checks, any credentials work.
   */
  auth?: readonly AccessKey[];
  /** Speak HTTPS with this key and certificate (PEM) instead of plain HTTP. */
  tls?: { key: string; cert: string };
  /** Milliseconds an S3 RestoreObject of each tier takes; DEFAULT_TIER_DELAYS (divided by timeScale) for those not given. */
  restoreDelayMs?: Partial<TierDelays>;
  /** Milliseconds a Glacier job of each tier stays InProgress; DEFAULT_TIER_DELAYS (divided by timeScale) for those not given. */
  jobDelayMs?: Partial<TierDelays>;
  /** How ECS tasks run: entrypoint, extra environment (see TaskOptions). */
  tasks?: TaskOptions;
  /** Running EC2 instances to make at start, by Availability Zone (e.g. {"us-east-1a": 2}): volumes attach to them. */
  instances?: Record<string, number>;
}

export interface RunningEmulator {
  /** http://HOST:PORT, or https:// with tls */
  url: string;
  port: number;
  /** Replaces every fault setting (absent ones switch off). Throws SnaplineError INVALID_ARGUMENT. */
  setFaults(faults: FaultSettings): void;
  /** Requests and bytes by operation, and how often each fault fired. */
  stats(): EmulatorStats;
  resetStats(): void;
  /** Makes `count` running EC2 instances in `zone` (RunInstances is not served) and returns their ids. Throws AwsError for an unknown zone. */
  createInstances(zone: string, count: number): string[];
  /** Makes as many running EC2 instances in `zone` as it lacks of `count`; the ids of all of the zone's. */
  ensureInstances(zone: string, count: number): string[];
  /** Stops listening, finishes or drops requests under way, closes the store; data stays on disk. Idempotent. */
  close(): Promise<void>;
}

/**
 * Starts the local AWS-compatible endpoint (EBS direct, EC2 snapshot subset,
 * STS GetCallerIdentity and AssumeRole, S3 and Glacier archive subsets, ECS tasks run as local processes and
 * CloudWatch Logs fed by them) on `host:port` with its data in
 * `dataDir`. Throws SnaplineError INVALID_ARGUMENT for bad options and
 * CONFLICT when the port or the data directory is taken.
 */
export async function startEmulator(options: EmulatorOptions): Promise<RunningEmulator> {
  if (typeof options.dataDir !== 'string' || options.dataDir === '') {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'dataDir must be a directory path');
  }
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `port must be an integer from 0 to 65535, got ${port}`);
  }
  const faults: Record<string, unknown> = {};
  for (const field of FAULT_FIELDS) if (options[field] !== undefined) faults[field] = options[field];
  const { timeScale, ec2LagMs, clockSkewS } = checkClockOptions(options);
  if (options.encryptionByDefault !== undefined && typeof options.encryptionByDefault !== 'boolean') {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `encryptionByDefault must be true or false, got ${JSON.stringify(options.encryptionByDefault)}`);
  }
  const endpoint = await EndpointServer.start({
    dataDir: options.dataDir,
    host: options.host ?? '127.0.0.1',
    port,
    faults: checkFaultSettings(faults),
    now: skewedClock(options.now ?? Date.now, clockSkewS),
    clock: { timeScale, ec2LagMs },
    encryptionByDefault: options.encryptionByDefault ?? false,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    log: options.log ?? ((line) => process.stderr.write(`${line}\n`)),
    ...(options.auth === undefined ? {} : { auth: options.auth }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    restoreDelays: scaledTierDelays(options.restoreDelayMs, timeScale, 'restoreDelayMs'),
    jobDelays: scaledTierDelays(options.jobDelayMs, timeScale, 'jobDelayMs'),
    ...(options.tasks === undefined ? {} : { tasks: options.tasks }),
    ...(options.instances === undefined ? {} : { instances: options.instances }),
  });
  return {
    url: endpoint.url,
    port: endpoint.port,
    setFaults: (settings) => endpoint.setFaults(settings),
    stats: () => endpoint.stats(),
    resetStats: () => endpoint.resetStats(),
    createInstances: (zone, count) => endpoint.createInstances(zone, count),
    ensureInstances: (zone, count) => endpoint.ensureInstances(zone, count),
    close: () => endpoint.close(),
  };
}
