import type { Command } from 'commander';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { DEFAULT_LOCAL_PORT } from '../../config/local-endpoint.js';
import { localEndpointDir } from '../../config/paths.js';
import { checkClockOptions, type ClockOptions } from '../../emulator/clock.js';
import { checkFaultSettings, type FaultSettings } from '../../emulator/faults.js';
import type { AccessKey } from '../../emulator/index.js';
import { parseTierDelayFlags, TIERS } from '../../emulator/tiers.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import type { Output } from '../output.js';

/** The flags of `snapline serve`, as commander hands them over (strings). */
interface ServeFlags {
  host: string;
  port: string;
  dataDir?: string;
  allowRemote: boolean;
  tls: boolean;
  auth: string[];
  authFile?: string;
  seed?: string;
  throttleRate?: string;
  throttleForS?: string;
  rateLimit?: string;
  errorRate?: string;
  resetRate?: string;
  latencyMs?: string;
  spikeRate?: string;
  spikeMs?: string;
  notFoundAfterStart?: string;
  corruptRate?: string;
  completionDelayMs?: string;
  completionErrorRate?: string;
  completionLostResponses?: string;
  snapshotsInUse?: string;
  ecsCapacityFailures?: string;
  ecsLostResponses?: string;
  ecsStartFailures?: string;
  ecsExitFailures?: string;
  ecsExitCode?: string;
  ecsHostStops?: string;
  jobFailureRate?: string;
  restoreDelayMs: string[];
  jobDelayMs: string[];
  timeScale?: string;
  ec2LagMs?: string;
  clockSkewS?: string;
  encryptionByDefault: boolean;
  instances: string[];
}

/** Each fault flag and the FaultSettings field it sets. */
const FAULT_FLAGS: [flag: string, field: keyof FaultSettings & keyof ServeFlags, help: string][] = [
  ['--seed', 'seed', 'seed of every random fault decision (same seed, same sequence)'],
  ['--throttle-rate', 'throttleRate', 'share 0..1 of EBS requests answered RequestThrottledException'],
  ['--throttle-for-s', 'throttleForS', 'every EBS request is answered RequestThrottledException for this many seconds (of the --time-scale clock) from the first one'],
  ['--rate-limit', 'rateLimit', 'requests/s per snapshot for Put/GetSnapshotBlock each (1000 imitates AWS)'],
  ['--error-rate', 'errorRate', 'share 0..1 of EBS requests answered InternalServerException (500)'],
  ['--reset-rate', 'resetRate', 'share 0..1 of EBS requests whose connection is dropped without an answer'],
  ['--latency-ms', 'latencyMs', 'milliseconds added to every EBS request'],
  ['--spike-rate', 'spikeRate', 'share 0..1 of EBS requests delayed by --spike-ms more (latency spikes)'],
  ['--spike-ms', 'spikeMs', 'milliseconds a latency spike adds'],
  ['--not-found-after-start', 'notFoundAfterStart', 'seconds after StartSnapshot during which PutSnapshotBlock answers ResourceNotFoundException'],
  ['--corrupt-rate', 'corruptRate', 'share 0..1 of GetSnapshotBlock answers with a wrong x-amz-Checksum'],
  ['--completion-delay-ms', 'completionDelayMs', 'CompleteSnapshot answers pending; the snapshot completes after this delay'],
  ['--completion-error-rate', 'completionErrorRate', 'share 0..1 of completions that end in state error'],
  ['--completion-lost-responses', 'completionLostResponses', 'the next N CompleteSnapshot calls are carried out, then their connection is dropped without an answer'],
  ['--snapshots-in-use', 'snapshotsInUse', 'the next N EC2 DeleteSnapshot calls are refused with InvalidSnapshot.InUse'],
  ['--ecs-capacity-failures', 'ecsCapacityFailures', 'ECS: the next N task placements fail for capacity (RunTask failures[], RESOURCE:MEMORY)'],
  ['--ecs-lost-responses', 'ecsLostResponses', 'ECS: the next N RunTask calls start their tasks but drop the connection without an answer'],
  ['--ecs-start-failures', 'ecsStartFailures', 'ECS: the next N tasks stop before starting (stopCode TaskFailedToStart)'],
  ['--ecs-exit-failures', 'ecsExitFailures', 'ECS: the next N tasks\' snapline containers exit with --ecs-exit-code instead of running'],
  ['--ecs-exit-code', 'ecsExitCode', 'ECS: exit code of --ecs-exit-failures, 1..255 (default 1)'],
  ['--ecs-host-stops', 'ecsHostStops', 'ECS: the next N tasks lose their host once running (stopCode SpotInterruption, no exit code)'],
  ['--job-failure-rate', 'jobFailureRate', 'share 0..1 of Glacier jobs that end Failed'],
];

/** Each clock flag and the ClockOptions field it sets. */
const CLOCK_FLAGS: [flag: string, field: keyof ClockOptions & keyof ServeFlags, help: string][] = [
  ['--time-scale', 'timeScale', 'every AWS duration the endpoint imitates runs N times faster: snapshot Timeout, NextToken and block-token lifetimes, S3 restore and Glacier job delays not given (1 to 1000000)'],
  ['--ec2-lag-ms', 'ec2LagMs', 'EC2 lags this many milliseconds: a new snapshot is missing (from DescribeSnapshots, CreateTags and DeleteSnapshot) and its state changes show late; a new volume is missing too'],
  ['--clock-skew-s', 'clockSkewS', "the endpoint's clock is this many seconds off (ahead when positive): SigV4 signature times are judged by it"],
];

export function registerServe(program: Command, wrap: Wrap): void {
  const command = program
    .command('serve')
    .description('run the local AWS-compatible endpoint (EBS direct APIs, EC2 snapshot subset, STS, S3, Glacier, ECS tasks run locally, CloudWatch Logs) until interrupted')
    .option('--host <address>', 'address to listen on (anything but loopback needs --allow-remote)', '127.0.0.1')
    .option('--port <number>', 'port to listen on (0: a free one)', String(DEFAULT_LOCAL_PORT))
    .option('--data-dir <path>', 'where the endpoint keeps its data (default: <data directory>/endpoint)')
    .option('--allow-remote', 'allow listening on an address other than loopback', false)
    .option('--tls', 'speak HTTPS with a certificate from a CA kept in the data directory (clients trust <data-dir>/ca.pem)', false)
    .option('--auth <keyid:secret>', 'check SigV4 signatures against this access key (repeatable; the command line is visible to other users: prefer --auth-file)', collect, [])
    .option('--auth-file <path>', 'check SigV4 signatures against the access keys in this file, one KEYID:SECRET a line')
    .option('--restore-delay-ms <tier=ms>', `how long an S3 restore of a tier takes (repeatable; tiers ${TIERS.join(', ')})`, collect, [])
    .option('--job-delay-ms <tier=ms>', 'how long a Glacier job of a tier stays InProgress (repeatable)', collect, [])
    .option('--instances <zone=count>', 'make sure COUNT EC2 instances run in the Availability Zone ZONE (those of an earlier start count), for volumes to attach to (repeatable; zones are REGION + a, b or c)', collect, [])
    .option('--encryption-by-default', 'EBS encryption by default starts enabled (new snapshots are encrypted; unencrypted ones cannot be made)', false);
  for (const [flag, , help] of CLOCK_FLAGS) command.option(`${flag} <number>`, help);
  for (const [flag, , help] of FAULT_FLAGS) command.option(`${flag} <number>`, help);
  command.action(wrap((ctx: CommandContext, flags: ServeFlags) => serve(ctx, flags)));
}

async function serve(ctx: CommandContext, flags: ServeFlags): Promise<number> {
  const output = ctx.output();
  const host = checkHost(flags.host, flags.allowRemote);
  const port = parseNumber('--port', flags.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--port must be an integer from 0 to 65535, got ${flags.port}`);
  }
  const dataDir = flags.dataDir ?? localEndpointDir();
  if (dataDir === '') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--data-dir must not be empty');
  const faults = parseFaultFlags(flags);
  const clock = parseClockFlags(flags);
  const auth = await accessKeysOf(flags, output);
  const instances = await parseInstanceFlags(flags.instances);

  const tls = flags.tls ? (await import('../../emulator/tls/local-tls.js')).localEndpointTls(dataDir, host) : undefined;

  const { startEmulator } = await import('../../emulator/index.js');
  const emulator = await startEmulator({
    ...faults,
    ...clock,
    ...(flags.encryptionByDefault ? { encryptionByDefault: true } : {}),
    dataDir,
    host,
    port,
    ...(auth.length === 0 ? {} : { auth }),
    restoreDelayMs: parseTierDelayFlags(flags.restoreDelayMs, '--restore-delay-ms'),
    jobDelayMs: parseTierDelayFlags(flags.jobDelayMs, '--job-delay-ms'),
    ...(tls === undefined ? {} : { tls: { key: tls.key, cert: tls.cert }, tasks: { env: { AWS_CA_BUNDLE: tls.caPath } } }),
  });
  const runningInstances = Object.entries(instances).flatMap(([availabilityZone, count]) =>
    emulator.ensureInstances(availabilityZone, count).map((instanceId) => ({ instanceId, availabilityZone })),
  );
  // Key ids only: secrets are never printed.
  const authKeyIds = auth.map((key) => key.accessKeyId);
  output.result({ url: emulator.url, host, port: emulator.port, dataDir, faults, clock, encryptionByDefault: flags.encryptionByDefault, authKeyIds, instances: runningInstances, ...(tls === undefined ? {} : { caPath: tls.caPath }) }, () => [
    `listening on ${emulator.url}`,
    ...(tls === undefined ? [] : [`clients trust the CA certificate ${tls.caPath} (connection setting verify: ${tls.caPath})`]),
    ...(auth.length === 0 ? [] : [`checking SigV4 signatures for access keys ${authKeyIds.join(', ')}`]),
    ...runningInstances.map((i) => `instance ${i.instanceId} running in ${i.availabilityZone}`),
  ]);
  output.verbose(`data directory: ${dataDir}`);

  await new Promise<void>((resolve) => {
    if (ctx.signal.aborted) return resolve();
    ctx.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  output.note('stopping the endpoint');
  await emulator.close();
  return 0;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The access keys of --auth and --auth-file; none means no signature checks. A file others may read is warned about. */
async function accessKeysOf(flags: ServeFlags, output: Output): Promise<AccessKey[]> {
  const { parseAccessKey, parseAccessKeyFile } = await import('../../emulator/index.js');
  const keys = flags.auth.map((text, n) => parseAccessKey(text, flags.auth.length === 1 ? '--auth' : `--auth #${n + 1}`));
  if (flags.authFile === undefined) return keys;
  let text: string;
  try {
    text = readFileSync(flags.authFile, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--auth-file ${flags.authFile} cannot be read (${reason})`, { cause: err });
  }
  const fromFile = parseAccessKeyFile(text, flags.authFile);
  if (fromFile.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--auth-file ${flags.authFile} holds no KEYID:SECRET line`);
  if ((statSync(flags.authFile).mode & 0o077) !== 0) {
    output.warn(`${flags.authFile} holds secrets and is readable by group or others; run: chmod 600 ${flags.authFile}`);
  }
  return [...keys, ...fromFile];
}

/** --instances ZONE=COUNT flags as {zone: count}; a zone the endpoint does not serve, or a count outside 1..100, is named. */
async function parseInstanceFlags(values: string[]): Promise<Record<string, number>> {
  const { regionOfZone } = await import('../../emulator/index.js');
  const instances: Record<string, number> = {};
  for (const value of values) {
    const m = /^([^=]+)=(\d+)$/.exec(value);
    const count = m === null ? Number.NaN : Number(m[2]);
    if (m === null || regionOfZone(m[1]!) === undefined || count < 1 || count > 100) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--instances must be ZONE=COUNT with a zone such as us-east-1a and a count from 1 to 100, got '${value}'`);
    }
    instances[m[1]!] = (instances[m[1]!] ?? 0) + count;
  }
  return instances;
}

/** The fault flags given, checked; a bad one is named in the error. */
export function parseFaultFlags(flags: Partial<Record<keyof FaultSettings, string>>): FaultSettings {
  const faults: Record<string, number> = {};
  for (const [flag, field] of FAULT_FLAGS) {
    const value = flags[field];
    if (value !== undefined) faults[field] = parseNumber(flag, value);
  }
  const flagOf = new Map(FAULT_FLAGS.map(([flag, field]) => [field, flag]));
  return checkFaultSettings(faults, (field) => flagOf.get(field) ?? field);
}

/** The clock flags given, checked; a bad one is named in the error. */
function parseClockFlags(flags: ServeFlags): ClockOptions {
  const clock: ClockOptions = {};
  for (const [flag, field] of CLOCK_FLAGS) {
    const value = flags[field];
    if (value !== undefined) clock[field] = parseNumber(flag, value);
  }
  const flagOf = new Map(CLOCK_FLAGS.map(([flag, field]) => [field, flag]));
  checkClockOptions(clock, (field) => flagOf.get(field) ?? field);
  return clock;
}

function parseNumber(flag: string, text: string): number {
  const value = text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(value)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${flag} must be a number, got '${text}'`);
  return value;
}

/** The listening address; anything but loopback needs --allow-remote. */
function checkHost(host: string, allowRemote: boolean): string {
  if (host === '') throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--host must not be empty');
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
  if (!loopback && !allowRemote) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--host ${host} is not a loopback address`, {
      hint: 'add --allow-remote only if other machines may use it, and --auth so that they need credentials',
    });
  }
  return host;
}
