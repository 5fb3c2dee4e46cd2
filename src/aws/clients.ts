import http from 'node:http';
import https from 'node:https';
import { EBSClient } from '@aws-sdk/client-ebs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { ErrorCodes, SnaplineError } from '../errors.js';

export interface ServiceEndpoints {
  ebs?: string;
  ec2?: string;
  s3?: string;
  sts?: string;
  glacier?: string;
  ecs?: string;
  logs?: string;
}

export type ConnectionCredentials =
  | { accessKeyId: string; secretAccessKey: string; sessionToken?: string }
  | { profile: string };

export interface ConnectionSettings {
  /** Names the connection in messages. */
  name: string;
  region: string;
  /** Endpoint for every service. */
  endpointUrl?: string;
  /** Endpoint per service; wins over endpointUrl. */
  endpoints?: ServiceEndpoints;
  /** Static keys or a profile name; absent means the SDK's default chain. */
  credentials?: ConnectionCredentials;
  /** Sockets per host; defaults to the concurrency. */
  maxSockets?: number;
  /** Time to establish a connection (default 10 s). */
  connectTimeoutMs?: number;
  /** Time a socket may stay idle while a request is in flight (default 60 s). */
  readTimeoutMs?: number;
  /** S3 path-style addressing (Ceph, MinIO). */
  forcePathStyle?: boolean;
  tls?: { rejectUnauthorized?: boolean; ca?: string | string[] };
}

/** Requests in flight when the caller does not say (the backup default). */
export const DEFAULT_CONCURRENCY = 64;
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_READ_TIMEOUT_MS = 60_000;

type ServiceName = keyof ServiceEndpoints;

/**
 * One SDK client per service, built on first use and kept for the life of
 * this object, all sharing one keep-alive http and https agent whose socket
 * count follows `concurrency`. EBS clients make one attempt per call: retries
 * and the response to throttling live in retry.ts. EC2, STS and S3 keep the
 * SDK's standard retry. destroy() closes the sockets; the clients cannot be
 * used afterwards.
 */
export class AwsClients {
  readonly settings: ConnectionSettings;
  readonly #handler: NodeHttpHandler;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  #ebs: EBSClient | undefined;
  #ec2: EC2Client | undefined;
  #sts: STSClient | undefined;
  #s3: S3Client | undefined;
  #destroyed = false;

  constructor(settings: ConnectionSettings, options: { concurrency?: number } = {}) {
    validateSettings(settings);
    // The SDK prints a Node-version notice to stderr on client construction; users of the CLI must not see it.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.settings = settings;
    const maxSockets = settings.maxSockets ?? options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(maxSockets) || maxSockets < 1) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `connection ${settings.name}: maxSockets must be a positive integer, got ${maxSockets}`);
    }
    this.#httpAgent = new http.Agent({ keepAlive: true, maxSockets });
    this.#httpsAgent = new https.Agent({
      keepAlive: true,
      maxSockets,
      rejectUnauthorized: settings.tls?.rejectUnauthorized ?? true,
      ...(settings.tls?.ca === undefined ? {} : { ca: settings.tls.ca }),
    });
    this.#handler = new NodeHttpHandler({
      httpAgent: this.#httpAgent,
      httpsAgent: this.#httpsAgent,
      connectionTimeout: settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      socketTimeout: settings.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS,
    });
  }

  ebs(): EBSClient {
    return (this.#ebs ??= new EBSClient({ ...this.#common('ebs'), maxAttempts: 1 }));
  }

  ec2(): EC2Client {
    return (this.#ec2 ??= new EC2Client(this.#common('ec2')));
  }

  sts(): STSClient {
    return (this.#sts ??= new STSClient(this.#common('sts')));
  }

  s3(): S3Client {
    return (this.#s3 ??= new S3Client({ ...this.#common('s3'), forcePathStyle: this.settings.forcePathStyle ?? false }));
  }

  /** Closes every socket of every client. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const client of [this.#ebs, this.#ec2, this.#sts, this.#s3]) client?.destroy();
    this.#handler.destroy();
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  /** Endpoint of `service`: its own, else the connection's, else AWS's. */
  endpointFor(service: ServiceName): string | undefined {
    return this.settings.endpoints?.[service] ?? this.settings.endpointUrl;
  }

  #common(service: ServiceName) {
    if (this.#destroyed) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `connection ${this.settings.name}: clients used after destroy()`);
    }
    const endpoint = this.endpointFor(service);
    const credentials = this.settings.credentials;
    return {
      region: this.settings.region,
      requestHandler: this.#handler,
      ...(endpoint === undefined ? {} : { endpoint }),
      ...(credentials === undefined ? {} : 'profile' in credentials ? { profile: credentials.profile } : { credentials }),
    };
  }
}

function validateSettings(settings: ConnectionSettings): void {
  const bad = (what: string): never => {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `connection ${settings.name}: ${what}`);
  };
  if (typeof settings.region !== 'string' || settings.region === '') bad('region is required');
  const urls: [string, string | undefined][] = [
    ['endpointUrl', settings.endpointUrl],
    ...Object.entries(settings.endpoints ?? {}).map(([service, url]): [string, string | undefined] => [`endpoints.${service}`, url]),
  ];
  for (const [option, url] of urls) {
    if (url === undefined) continue;
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return bad(`${option} is not a URL: ${url}`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') bad(`${option} must be an http or https URL: ${url}`);
  }
  for (const option of ['connectTimeoutMs', 'readTimeoutMs'] as const) {
    const value = settings[option];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) bad(`${option} must be a positive number of milliseconds, got ${value}`);
  }
}
