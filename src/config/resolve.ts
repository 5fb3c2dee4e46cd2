import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { ConnectionSettings } from '../aws/clients.js';
import { RETRY_MODES, type RetryMode } from '../core/retry-mode.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { certificateProblem, pemCertificates, SERVICES, type ArchiveConfig, type ConnectionConfig, type EcsConfig, type Service, type UnattendedConfig } from './schema.js';

/** What the command line asks for; each field wins over everything else. */
export interface ConnectionFlags {
  connection?: string;
  endpointUrl?: string;
  region?: string;
}

/** A connection with every setting decided, and where each came from. */
export interface ResolvedConnection {
  /** The connection's name; "default" when none was chosen. */
  name: string;
  /** "built-in", "default" (the SDK chain and environment) or the config file's path. */
  source: string;
  settings: ConnectionSettings;
  archive: ArchiveConfig;
  ecs: EcsConfig;
  /** Notifications and the expected backup interval (absent: none configured). */
  unattended?: UnattendedConfig;
  /** TLS as decided: verify on, off, or a CA bundle path; and the subjects of the extra certificates (tls_ca_chain). */
  tls: { verify: boolean | string; extraCertificates: string[] };
  /** Setting name -> "--flag", "ENV_VAR", "connection" or "default". */
  origins: Record<string, string>;
  /** For every run: TLS verification off, the environment overriding the connection. Never secrets. */
  warnings: string[];
}

/** The SDK's variable names for per-service endpoints. */
const ENDPOINT_ENV: Record<Service, string> = {
  ebs: 'AWS_ENDPOINT_URL_EBS',
  ec2: 'AWS_ENDPOINT_URL_EC2',
  s3: 'AWS_ENDPOINT_URL_S3',
  sts: 'AWS_ENDPOINT_URL_STS',
  glacier: 'AWS_ENDPOINT_URL_GLACIER',
  ecs: 'AWS_ENDPOINT_URL_ECS',
  logs: 'AWS_ENDPOINT_URL_CLOUDWATCH_LOGS',
};

type Candidate<T> = [origin: string, value: T | undefined];

/** The first candidate with a value: candidates are given from strongest to weakest. */
function pick<T>(...candidates: Candidate<T>[]): [origin: string, value: T] | undefined {
  for (const [origin, value] of candidates) if (value !== undefined && value !== '') return [origin, value];
  return undefined;
}

/**
 * Decides each setting of a connection: command-line flag, then
 * environment, then the connection's own value, then the default. `where`
 * formats a problem found now (a CA bundle that cannot be read) with the
 * file, connection and field. Throws SnaplineError CONFIG_INVALID or
 * INVALID_ARGUMENT; messages never hold secrets.
 */
export function resolveConnection(
  name: string,
  source: string,
  config: ConnectionConfig,
  flags: ConnectionFlags,
  env: NodeJS.ProcessEnv,
  where: (field: string, message: string) => string,
): ResolvedConnection {
  const origins: Record<string, string> = {};
  const warnings: string[] = [];
  const shadowed = (field: string, origin: string, shown: string) => {
    if (origin.startsWith('AWS_')) warnings.push(`${origin}${shown} overrides ${field} of connection ${name} (the environment wins over the config file)`);
  };

  const region = pick(['--region', flags.region], ['AWS_REGION', env.AWS_REGION], ['AWS_DEFAULT_REGION', env.AWS_DEFAULT_REGION], ['connection', config.region]);
  if (region === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, name === 'default' ? 'no AWS Region: pass --region or set AWS_REGION' : `connection ${name} has no region`, {
      hint: name === 'default' ? 'or use --connection local to work against the built-in local endpoint' : `add region to it in ${source}, pass --region or set AWS_REGION`,
    });
  }
  origins.region = region[0];
  if (config.region !== undefined && region[1] !== config.region) shadowed('region', region[0], ` (${region[1]})`);

  const endpointUrl = pick(['--endpoint-url', flags.endpointUrl], ['AWS_ENDPOINT_URL', env.AWS_ENDPOINT_URL], ['connection', config.endpointUrl]);
  if (endpointUrl !== undefined) origins.endpoint_url = endpointUrl[0];
  if (config.endpointUrl !== undefined && endpointUrl !== undefined && endpointUrl[1] !== config.endpointUrl) shadowed('endpoint_url', endpointUrl[0], ` (${endpointUrl[1]})`);
  // Per service: the flag, then its own variable, then AWS_ENDPOINT_URL, then endpoint_urls.SERVICE, then endpoint_url.
  const endpoints: Partial<Record<Service, string>> = {};
  for (const service of SERVICES) {
    const own = config.endpointUrls?.[service];
    const configured = own ?? config.endpointUrl;
    const specific = flags.endpointUrl
      ? undefined
      : (pick([ENDPOINT_ENV[service], env[ENDPOINT_ENV[service]]]) ?? (env.AWS_ENDPOINT_URL ? undefined : pick(['connection', own])));
    const chosen = specific ?? endpointUrl;
    const overridden = chosen !== undefined && configured !== undefined && chosen[1] !== configured;
    if (overridden && (own !== undefined || chosen[0] === ENDPOINT_ENV[service])) shadowed(`the ${service} endpoint`, chosen[0], ` (${chosen[1]})`);
    if (specific !== undefined) {
      endpoints[service] = specific[1];
      origins[`endpoint_urls.${service}`] = specific[0];
    }
  }

  const settings: ConnectionSettings = {
    name,
    region: region[1],
    ...(endpointUrl === undefined ? {} : { endpointUrl: endpointUrl[1] }),
    ...(Object.keys(endpoints).length === 0 ? {} : { endpoints }),
  };
  resolveCredentials(settings, config, env, origins, shadowed);
  if (config.role !== undefined) {
    settings.assumeRole = config.role;
    origins.role_arn = 'connection';
  }
  const tls = resolveTls(settings, config, env, origins, warnings, where);
  if (config.verify !== undefined && tls.verify !== config.verify) shadowed('verify', origins.verify!, ` (${String(tls.verify)})`);
  resolveRetries(settings, config, env, origins, shadowed);
  if (config.connectTimeoutSeconds !== undefined) settings.connectTimeoutMs = config.connectTimeoutSeconds * 1000;
  if (config.readTimeoutSeconds !== undefined) settings.readTimeoutMs = config.readTimeoutSeconds * 1000;
  if (typeof config.tcpKeepAlive === 'number') settings.tcpKeepAliveMs = config.tcpKeepAlive * 1000;
  if (config.maxSockets !== undefined) settings.maxSockets = config.maxSockets;
  if (config.archive?.s3UriStyle !== undefined) settings.forcePathStyle = config.archive.s3UriStyle === 'path';
  return { name, source, settings, archive: config.archive ?? {}, ecs: config.ecs ?? {}, unattended: config.unattended ?? {}, tls, origins, warnings };
}

/**
 * Credentials are chosen whole, never mixed: AWS_PROFILE, then the keys in
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN), then
 * the connection's profile or keys. A connection without credentials leaves
 * them to the SDK's default chain, which reads the environment itself.
 */
function resolveCredentials(
  settings: ConnectionSettings,
  config: ConnectionConfig,
  env: NodeJS.ProcessEnv,
  origins: Record<string, string>,
  shadowed: (field: string, origin: string, shown: string) => void,
): void {
  const own = config.profile !== undefined ? { profile: config.profile } : config.keys;
  if (own === undefined) {
    origins.credentials = 'default chain';
    return;
  }
  if (env.AWS_PROFILE) {
    settings.credentials = { profile: env.AWS_PROFILE };
    origins.credentials = 'AWS_PROFILE';
    shadowed('the credentials', 'AWS_PROFILE', ` (${env.AWS_PROFILE})`);
  } else if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    settings.credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    };
    origins.credentials = 'AWS_ACCESS_KEY_ID';
    shadowed('the credentials', 'AWS_ACCESS_KEY_ID', '');
  } else {
    settings.credentials = own;
    origins.credentials = 'connection';
  }
}

/**
 * verify: AWS_CA_BUNDLE, then the connection's, then true. A CA bundle
 * replaces the default roots; tls_ca_chain adds to the bundle or the roots.
 */
function resolveTls(
  settings: ConnectionSettings,
  config: ConnectionConfig,
  env: NodeJS.ProcessEnv,
  origins: Record<string, string>,
  warnings: string[],
  where: (field: string, message: string) => string,
): ResolvedConnection['tls'] {
  const verify = pick<boolean | string>(['AWS_CA_BUNDLE', env.AWS_CA_BUNDLE], ['connection', config.verify], ['default', true])!;
  origins.verify = verify[0];
  if (verify[1] === false) {
    settings.tls = { rejectUnauthorized: false };
    warnings.push(`connection ${settings.name}: TLS certificate verification is off (verify: false); anyone on the network path can read and change the traffic`);
    return { verify: false, extraCertificates: [] };
  }
  const chain = (config.tlsCaChain ?? []).flatMap(pemCertificates);
  if (chain.length > 0) origins.tls_ca_chain = 'connection';
  if (typeof verify[1] === 'string') {
    const bundle = readCaBundle(verify[1], (message) => (verify[0] === 'connection' ? where('verify', message) : `${verify[0]}: ${message}`));
    settings.tls = { ca: [...bundle, ...chain] };
  } else if (chain.length > 0) {
    settings.tls = { ca: [...rootCertificates, ...chain] };
  }
  return { verify: verify[1], extraCertificates: chain.map((pem) => new X509Certificate(pem).subject.replace(/\n/g, ', ')) };
}

function readCaBundle(path: string, problem: (message: string) => string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, problem(`cannot read the CA bundle ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`));
  }
  const certificates = pemCertificates(text);
  const bad = certificates.length === 0 ? 'holds no PEM certificate' : certificates.map((pem) => certificateProblem(pem)).find((p) => p !== undefined);
  if (bad !== undefined) throw new SnaplineError(ErrorCodes.CONFIG_INVALID, problem(`the CA bundle ${path} ${bad}`));
  return certificates;
}

/** mode and max_attempts: AWS_RETRY_MODE / AWS_MAX_ATTEMPTS, then the connection's. */
function resolveRetries(
  settings: ConnectionSettings,
  config: ConnectionConfig,
  env: NodeJS.ProcessEnv,
  origins: Record<string, string>,
  shadowed: (field: string, origin: string, shown: string) => void,
): void {
  const envMode = env.AWS_RETRY_MODE;
  if (envMode && !(RETRY_MODES as readonly string[]).includes(envMode)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `AWS_RETRY_MODE must be ${RETRY_MODES.join(' or ')}, got ${JSON.stringify(envMode)}`);
  }
  const envAttempts = env.AWS_MAX_ATTEMPTS ? Number(env.AWS_MAX_ATTEMPTS) : undefined;
  if (envAttempts !== undefined && !(Number.isInteger(envAttempts) && envAttempts >= 1 && envAttempts <= 100)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `AWS_MAX_ATTEMPTS must be a whole number from 1 to 100, got ${JSON.stringify(env.AWS_MAX_ATTEMPTS)}`);
  }
  const mode = pick<RetryMode>(['AWS_RETRY_MODE', envMode as RetryMode | undefined], ['connection', config.retries?.mode]);
  const maxAttempts = pick(['AWS_MAX_ATTEMPTS', envAttempts], ['connection', config.retries?.maxAttempts]);
  if (mode === undefined && maxAttempts === undefined) return;
  settings.retries = {};
  if (mode !== undefined) {
    settings.retries.mode = mode[1];
    origins['retries.mode'] = mode[0];
    if (config.retries?.mode !== undefined && mode[1] !== config.retries.mode) shadowed('retries.mode', mode[0], ` (${mode[1]})`);
  }
  if (maxAttempts !== undefined) {
    settings.retries.maxAttempts = maxAttempts[1];
    origins['retries.max_attempts'] = maxAttempts[0];
    if (config.retries?.maxAttempts !== undefined && maxAttempts[1] !== config.retries.maxAttempts) shadowed('retries.max_attempts', maxAttempts[0], ` (${maxAttempts[1]})`);
  }
}
