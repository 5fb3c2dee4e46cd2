import { X509Certificate } from 'node:crypto';
import { homedir } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import { STORAGE_CLASSES, type StorageClass } from '../core/archive-options.js';
import { parseDuration } from '../core/duration.js';
import { RETRY_MODES, type RetryMode } from '../core/retry-mode.js';
import { NOTIFY_ON, type NotifyOn } from '../core/run-log.js';
import { kindOf, type Section } from './fields.js';

/** The services a connection can give their own endpoint. */
export const SERVICES = ['ebs', 'ec2', 's3', 'sts', 'glacier', 'ecs', 'logs'] as const;
export type Service = (typeof SERVICES)[number];

export const S3_URI_STYLES = ['host', 'path'] as const;
export const LAUNCH_TYPES = ['FARGATE', 'EC2', 'EXTERNAL'] as const;

export type StaticKeys = { accessKeyId: string; secretAccessKey: string; sessionToken?: string };

/** Settings for the archive tier (S3 storage classes or Glacier vaults). */
export interface ArchiveConfig {
  bucket?: string;
  /** Key prefix inside the bucket. */
  path?: string;
  s3UriStyle?: (typeof S3_URI_STYLES)[number];
  storageClass?: StorageClass;
  vault?: string;
  deleteOlderThanDays?: number;
  /** Extra request headers for archive uploads and downloads (SSE-C keys among them: secret). */
  attributes?: Record<string, string>;
}

/** Settings for restore tasks on ECS. */
export interface EcsConfig {
  cluster?: string;
  taskDefinition?: string;
  subnets?: string[];
  securityGroups?: string[];
  assignPublicIp?: boolean;
  launchType?: (typeof LAUNCH_TYPES)[number];
  capacityProviderStrategy?: { capacityProvider: string; weight?: number; base?: number }[];
  logGroup?: string;
  logStreamPrefix?: string;
}

/** Settings for runs nobody watches: where events go, and how often a good snapshot is expected. */
export interface UnattendedConfig {
  /** Where events are POSTed (secret: a webhook's URL is its key). */
  notifyUrl?: string;
  notifyOn?: NotifyOn;
  /** `snapline status` calls a volume late when its newest good snapshot is older than this (ms). */
  expectEveryMs?: number;
}

/** An http(s) URL with no user:password@ (events never carry credentials). */
export const NOTIFY_URL = { pattern: /^https?:\/\/[^\s/@?#]+(?:[/?#]\S*)?$/i, expected: 'an http:// or https:// URL without user:password@' };

/** One connection as the file gives it, checked; absent fields fall back to the environment and defaults. */
export interface ConnectionConfig {
  region?: string;
  endpointUrl?: string;
  endpointUrls?: Partial<Record<Service, string>>;
  profile?: string;
  keys?: StaticKeys;
  role?: { roleArn: string; externalId?: string; sessionName?: string; durationSeconds?: number };
  /** true (the default), false, or the path of a CA bundle that replaces the default roots. */
  verify?: boolean | string;
  /** PEM certificates trusted in addition to the roots. */
  tlsCaChain?: string[];
  retries?: { mode?: RetryMode; maxAttempts?: number };
  connectTimeoutSeconds?: number;
  readTimeoutSeconds?: number;
  /** Seconds of idle before TCP keep-alive probes; true is the default. */
  tcpKeepAlive?: true | number;
  maxSockets?: number;
  archive?: ArchiveConfig;
  ecs?: EcsConfig;
  unattended?: UnattendedConfig;
}

/** Header names whose values are treated as secrets (SSE-C keys, tokens...). */
const SECRET_HEADER = /key|secret|token|password|auth|credential|signature/i;

export function isSecretAttribute(name: string): boolean {
  return SECRET_HEADER.test(name);
}

const NO_SPACE = { pattern: /^\S+$/, expected: 'a string without spaces' };
const NAME_RULES = {
  roleArn: { pattern: /^arn:[a-z-]+:iam::\d{12}:role\/[\w+=,.@/-]+$/, expected: 'an IAM role ARN (arn:aws:iam::123456789012:role/NAME)' },
  externalId: { pattern: /^[\w+=,.@:/-]{2,1224}$/, expected: '2 to 1224 characters of letters, digits and +=,.@:/-_' },
  sessionName: { pattern: /^[\w+=,.@-]{2,64}$/, expected: '2 to 64 characters of letters, digits and +=,.@-_' },
  region: { pattern: /^[A-Za-z0-9_-]{1,64}$/, expected: 'a Region name such as eu-west-1' },
  bucket: { pattern: /^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$/, expected: 'a bucket name (letters, digits, dots, dashes)' },
  vault: { pattern: /^[A-Za-z0-9._-]{1,255}$/, expected: 'a vault name (letters, digits, dots, dashes, underscores)' },
} as const;

/**
 * Reads the fields of one connection. Problems go to the section's list
 * (the caller tells by them whether the result can be used). `configPath`
 * anchors a relative CA bundle path (`~/` means the home directory).
 */
export function readConnection(section: Section, configPath: string): ConnectionConfig {
  const config: ConnectionConfig = {};
  config.region = section.string('region', NAME_RULES.region);
  config.endpointUrl = endpointUrl(section, 'endpoint_url', section.string('endpoint_url'));
  const urls = section.section('endpoint_urls');
  if (urls !== undefined) {
    const endpointUrls: Partial<Record<Service, string>> = {};
    for (const service of SERVICES) {
      const url = endpointUrl(urls, service, urls.string(service));
      if (url !== undefined) endpointUrls[service] = url;
    }
    urls.finish();
    config.endpointUrls = endpointUrls;
  }
  readCredentials(section, config);
  readTls(section, config, configPath);
  const retries = section.section('retries');
  if (retries !== undefined) {
    config.retries = withoutUndefined({ mode: retries.oneOf('mode', RETRY_MODES), maxAttempts: retries.integer('max_attempts', 1, 100) });
    retries.finish();
  }
  config.connectTimeoutSeconds = section.seconds('connect_timeout', 3600);
  config.readTimeoutSeconds = section.seconds('read_timeout', 3600);
  config.tcpKeepAlive = readKeepAlive(section);
  config.maxSockets = section.integer('max_sockets', 1, 4096);
  config.archive = readArchive(section);
  config.ecs = readEcs(section);
  config.unattended = readUnattended(section);
  section.finish();
  return withoutUndefined(config);
}

function readCredentials(section: Section, config: ConnectionConfig): void {
  config.profile = section.string('profile', NO_SPACE);
  const accessKeyId = section.string('access_key_id', { ...NO_SPACE, secret: true });
  const secretAccessKey = section.string('secret_access_key', { ...NO_SPACE, secret: true });
  const sessionToken = section.string('session_token', { ...NO_SPACE, secret: true });
  if (config.profile !== undefined && (section.has('access_key_id') || section.has('secret_access_key'))) {
    section.error('profile', 'give either profile or access_key_id and secret_access_key, not both');
  }
  if (section.has('access_key_id') !== section.has('secret_access_key')) {
    section.error(section.has('access_key_id') ? 'access_key_id' : 'secret_access_key', 'access_key_id and secret_access_key go together');
  }
  if (section.has('session_token') && !section.has('access_key_id')) {
    section.error('session_token', 'needs access_key_id and secret_access_key');
  }
  if (accessKeyId !== undefined && secretAccessKey !== undefined) {
    config.keys = { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) };
  }
  const roleArn = section.string('role_arn', NAME_RULES.roleArn);
  const externalId = section.string('external_id', NAME_RULES.externalId);
  const sessionName = section.string('role_session_name', NAME_RULES.sessionName);
  const durationSeconds = section.integer('duration_seconds', 900, 43_200);
  if (!section.has('role_arn')) {
    for (const key of ['external_id', 'role_session_name', 'duration_seconds']) if (section.has(key)) section.error(key, 'needs role_arn');
  }
  if (roleArn !== undefined) config.role = withoutUndefined({ roleArn, externalId, sessionName, durationSeconds });
}

function readTls(section: Section, config: ConnectionConfig, configPath: string): void {
  const verify = section.raw('verify');
  if (typeof verify === 'boolean') config.verify = verify;
  else if (typeof verify === 'string' && verify !== '') config.verify = resolvePath(verify, configPath);
  else if (verify !== undefined) section.error('verify', `must be true, false or the path of a CA bundle, got ${kindOf(verify)}`);
  const chain = section.strings('tls_ca_chain', {});
  if (chain !== undefined) {
    chain.forEach((pem, i) => {
      const problem = certificateProblem(pem);
      if (problem !== undefined) section.error(['tls_ca_chain', i], problem);
    });
    config.tlsCaChain = chain;
    if (config.verify === false) section.warn('tls_ca_chain', 'is ignored because verify is false');
  }
}

function readKeepAlive(section: Section): true | number | undefined {
  const value = section.raw('tcp_keepalive');
  if (value === undefined || value === true) return value;
  if (typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= 7200) return value;
  if (value === false) {
    section.error('tcp_keepalive', 'cannot be false: snapline keeps its sockets alive; give the seconds of idle before the first probe, or leave it out');
  } else {
    section.error('tcp_keepalive', `must be true or a number of seconds above 0 and at most 7200, got ${typeof value === 'number' ? value : kindOf(value)}`);
  }
  return undefined;
}

function readArchive(parent: Section): ArchiveConfig | undefined {
  const section = parent.section('archive');
  if (section === undefined) return undefined;
  const archive: ArchiveConfig = {
    bucket: section.string('bucket', NAME_RULES.bucket),
    path: section.string('path'),
    s3UriStyle: section.oneOf('s3_uri_style', S3_URI_STYLES),
    storageClass: section.oneOf('storage_class', STORAGE_CLASSES),
    vault: section.string('vault', NAME_RULES.vault),
    deleteOlderThanDays: section.integer('delete_older_than_days', 1, 36_500),
    attributes: section.stringMap('attributes', /^[A-Za-z0-9-]+$/, 'a header name (letters, digits, dashes)', isSecretAttribute),
  };
  section.finish();
  return withoutUndefined(archive);
}

function readUnattended(section: Section): UnattendedConfig | undefined {
  const unattended: UnattendedConfig = {};
  const notify = section.section('notify');
  if (notify !== undefined) {
    unattended.notifyUrl = notify.string('url', { ...NOTIFY_URL, secret: true });
    unattended.notifyOn = notify.oneOf('on', NOTIFY_ON);
    notify.finish();
  }
  const expectEvery = section.string('expect_every', { pattern: /^(?:\d+[smhdw])+$/i, expected: 'a duration such as 26h, 1d or 1d12h' });
  if (expectEvery !== undefined) {
    unattended.expectEveryMs = parseDuration(expectEvery);
    if (unattended.expectEveryMs === undefined) section.error('expect_every', 'must be a duration above zero');
  }
  const checked = withoutUndefined(unattended);
  return Object.keys(checked).length === 0 ? undefined : checked;
}

function readEcs(parent: Section): EcsConfig | undefined {
  const section = parent.section('ecs');
  if (section === undefined) return undefined;
  const ecs: EcsConfig = {
    cluster: section.string('cluster'),
    taskDefinition: section.string('task_definition'),
    subnets: section.strings('subnets', NO_SPACE),
    securityGroups: section.strings('security_groups', NO_SPACE),
    assignPublicIp: section.boolean('assign_public_ip'),
    launchType: section.oneOf('launch_type', LAUNCH_TYPES),
    capacityProviderStrategy: section.sections('capacity_provider_strategy', (item) => {
      const capacityProvider = item.string('capacity_provider');
      const weight = item.integer('weight', 0, 1000);
      const base = item.integer('base', 0, 100_000);
      if (capacityProvider === undefined) {
        if (!item.has('capacity_provider')) item.error('capacity_provider', 'is required');
        return undefined;
      }
      return withoutUndefined({ capacityProvider, weight, base });
    }),
    logGroup: section.string('log_group'),
    logStreamPrefix: section.string('log_stream_prefix'),
  };
  if (section.has('launch_type') && section.has('capacity_provider_strategy')) {
    section.error('capacity_provider_strategy', 'give either launch_type or capacity_provider_strategy, not both (ECS refuses both)');
  }
  section.finish();
  return withoutUndefined(ecs);
}

function endpointUrl(section: Section, key: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    section.error(key, `must be an http:// or https:// URL, got ${JSON.stringify(value)}`);
    return undefined;
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    section.error(key, `must be an http:// or https:// URL, got ${JSON.stringify(value)}`);
    return undefined;
  }
  if (url.username !== '' || url.password !== '') {
    section.error(key, 'must not hold a user name or password');
    return undefined;
  }
  return value;
}

/** Why `pem` is not one or more PEM certificates; never quotes it. */
export function certificateProblem(pem: string): string | undefined {
  if (/PRIVATE KEY/.test(pem)) return 'holds a private key: only certificates belong here (remove the key from the file)';
  const blocks = pemCertificates(pem);
  if (blocks.length === 0) return 'is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)';
  for (const block of blocks) {
    try {
      new X509Certificate(block);
    } catch {
      return 'holds a PEM block that is not a valid certificate';
    }
  }
  return undefined;
}

/** The certificate blocks of a PEM text. */
export function pemCertificates(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** `~/x` is under the home directory; a relative path is relative to the config file's folder. */
export function resolvePath(path: string, configPath: string): string {
  if (path === '~' || path.startsWith('~/')) return resolve(homedir(), path.slice(2));
  return isAbsolute(path) ? path : resolve(dirname(configPath), path);
}

function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
