import type { ConnectionCredentials } from '../aws/clients.js';
import type { ConnectionEntry } from './file.js';
import type { ResolvedConnection } from './resolve.js';
import { isSecretAttribute, type ArchiveConfig, type ConnectionConfig, type EcsConfig } from './schema.js';

/** What stands in for a secret in anything snapline prints. */
export const REDACTED = '<redacted>';

/**
 * A resolved connection as `connections show` prints it (as YAML or JSON):
 * the values a command would use, with secrets redacted, and where each
 * came from. Safe to print: it holds no secret.
 */
export function describeConnection(resolved: ResolvedConnection): Record<string, unknown> {
  const s = resolved.settings;
  return prune({
    name: resolved.name,
    source: resolved.source,
    region: s.region,
    endpoint_url: s.endpointUrl ?? (resolved.name === 'local' ? 'the local endpoint (found or started when a command runs)' : 'the AWS endpoints'),
    endpoint_urls: s.endpoints,
    credentials: describeCredentials(s.credentials),
    role: s.assumeRole && {
      role_arn: s.assumeRole.roleArn,
      external_id: s.assumeRole.externalId,
      role_session_name: s.assumeRole.sessionName ?? 'snapline',
      duration_seconds: s.assumeRole.durationSeconds ?? 3600,
    },
    tls: {
      verify: resolved.tls.verify,
      tls_ca_chain: resolved.tls.extraCertificates.length === 0 ? undefined : resolved.tls.extraCertificates,
    },
    retries: { mode: s.retries?.mode ?? 'standard', max_attempts: s.retries?.maxAttempts ?? 'default (SDK calls 3, EBS calls 10)' },
    connect_timeout: (s.connectTimeoutMs ?? 10_000) / 1000,
    read_timeout: (s.readTimeoutMs ?? 60_000) / 1000,
    tcp_keepalive: (s.tcpKeepAliveMs ?? 1000) / 1000,
    max_sockets: s.maxSockets ?? 'the concurrency',
    archive: describeArchive(resolved.archive),
    ecs: describeEcs(resolved.ecs),
    sources: resolved.origins,
  });
}

/** One line of `connections list`. */
export interface ConnectionSummary {
  name: string;
  /** "built-in" or the config file. */
  source: string;
  valid: boolean;
  region?: string;
  endpoint_url?: string;
  /** What kind: "profile NAME", "access keys", "default chain", "built in". */
  credentials: string;
  role_arn?: string;
  problems?: string[];
}

/** A file's connection as `connections list` shows it: its own values (no environment applied), secrets left out. */
export function summarizeEntry(entry: ConnectionEntry, source: string): ConnectionSummary {
  const config: ConnectionConfig = entry.config ?? {};
  return prune({
    name: entry.name,
    source,
    valid: entry.config !== undefined,
    region: config.region,
    endpoint_url: config.endpointUrl,
    credentials: config.profile !== undefined ? `profile ${config.profile}` : config.keys !== undefined ? 'access keys' : 'default chain',
    role_arn: config.role?.roleArn,
    problems: entry.errors.length === 0 ? undefined : entry.errors,
  }) as unknown as ConnectionSummary;
}

function describeCredentials(credentials: ConnectionCredentials | undefined): Record<string, unknown> {
  if (credentials === undefined) return { source: 'the SDK default chain (environment, profile, instance or task role)' };
  if ('profile' in credentials) return { profile: credentials.profile };
  return {
    access_key_id: maskKeyId(credentials.accessKeyId),
    secret_access_key: REDACTED,
    session_token: credentials.sessionToken === undefined ? undefined : REDACTED,
  };
}

/** The last four characters of an access key id, as the AWS CLI shows it; all hidden when it is short. */
function maskKeyId(id: string): string {
  return id.length < 12 ? REDACTED : `${'*'.repeat(id.length - 4)}${id.slice(-4)}`;
}

function describeArchive(archive: ArchiveConfig): Record<string, unknown> | undefined {
  if (Object.keys(archive).length === 0) return undefined;
  const attributes = archive.attributes && Object.fromEntries(Object.entries(archive.attributes).map(([name, value]) => [name, isSecretAttribute(name) ? REDACTED : value]));
  return {
    bucket: archive.bucket,
    path: archive.path,
    s3_uri_style: archive.s3UriStyle,
    storage_class: archive.storageClass,
    vault: archive.vault,
    delete_older_than_days: archive.deleteOlderThanDays,
    attributes,
  };
}

function describeEcs(ecs: EcsConfig): Record<string, unknown> | undefined {
  if (Object.keys(ecs).length === 0) return undefined;
  return {
    cluster: ecs.cluster,
    task_definition: ecs.taskDefinition,
    subnets: ecs.subnets,
    security_groups: ecs.securityGroups,
    assign_public_ip: ecs.assignPublicIp,
    launch_type: ecs.launchType,
    capacity_provider_strategy: ecs.capacityProviderStrategy?.map((s) => ({ capacity_provider: s.capacityProvider, weight: s.weight, base: s.base })),
    log_group: ecs.logGroup,
    log_stream_prefix: ecs.logStreamPrefix,
  };
}

/** Drops undefined values and empty mappings, recursively, so the printout shows only what is set. */
function prune(value: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value)) {
    if (item === undefined) continue;
    if (item !== null && typeof item === 'object' && !Array.isArray(item)) {
      const inner = prune(item as Record<string, unknown>);
      if (Object.keys(inner).length > 0) out[key] = inner;
    } else if (Array.isArray(item)) {
      out[key] = item.map((element: unknown) => (element !== null && typeof element === 'object' ? prune(element as Record<string, unknown>) : element));
    } else {
      out[key] = item;
    }
  }
  return out;
}
