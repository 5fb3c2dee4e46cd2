import http from 'node:http';
import https from 'node:https';
import type { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs';
import type { EBSClient } from '@aws-sdk/client-ebs';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { ECSClient } from '@aws-sdk/client-ecs';
import type { GlacierClient } from '@aws-sdk/client-glacier';
import type { S3Client } from '@aws-sdk/client-s3';
import type { STSClient } from '@aws-sdk/client-sts';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import type { DeserializeMiddleware, MetadataBearer, MiddlewareStack } from '@smithy/types';
import { RETRY_MODES, type RetryMode } from '../core/retry-mode.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AnsweredEndpoints, firstByteTimeoutMs, foreignAnswerError, originOf, silentEndpointError } from './answers.js';
import { assumedRoleCredentials, type AssumeRoleSettings, type TemporaryCredentialsProvider } from './assume-role.js';
import { type BlockTransport, DirectBlockRequests } from './block-requests.js';
import { DirectEc2Requests } from './ec2-requests.js';
import { glacierBodyChecksums } from './glacier-archive.js';
import { DEFAULT_RETRY_POLICY, type RetryClock } from './retry.js';
import { withThrottleBudget, type ThrottleBudget } from './sdk-retry.js';
import { ebsSdk, ec2Sdk, ecsSdk, glacierSdk, httpHandlerSdk, logsSdk, s3Sdk, stsSdk } from './sdk.js';
import { DEFAULT_CONCURRENCY } from '../core/constants.js';

export type { AssumeRoleSettings } from './assume-role.js';

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
  /** A role assumed through STS AssumeRole with the credentials above (or the default chain); every other call uses the role. */
  assumeRole?: AssumeRoleSettings;
  /**
   * Retries of the SDK clients (EC2, STS, S3, ...): mode and attempts, the
   * first included. EBS clients always make one attempt: their retries live
   * in retry.ts (the caller passes maxAttempts on to it).
   */
  retries?: { mode?: RetryMode; maxAttempts?: number };
  /** Sockets per host; defaults to the concurrency. */
  maxSockets?: number;
  /** Time to establish a connection (default 10 s). */
  connectTimeoutMs?: number;
  /**
   * Time a socket may stay idle while a request is in flight (default 60 s);
   * also caps the wait for the first byte of a short exchange (see answers.ts).
   */
  readTimeoutMs?: number;
  /** Idle time before the first TCP keep-alive probe on a socket (default 1 s). */
  tcpKeepAliveMs?: number;
  /** S3 path-style addressing (Ceph, MinIO). */
  forcePathStyle?: boolean;
  /** Certificate checks: off with rejectUnauthorized false; `ca` replaces the trusted roots. */
  tls?: { rejectUnauthorized?: boolean; ca?: string | string[] };
}

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_READ_TIMEOUT_MS = 60_000;
const DEFAULT_TCP_KEEPALIVE_MS = 1000;

type ServiceName = keyof ServiceEndpoints;

export interface AwsClientsOptions {
  /** Sockets per host when the settings name none; default DEFAULT_CONCURRENCY. */
  concurrency?: number;
  /** How long one call of the SDK clients (not EBS) may go on being throttled; default 10 minutes. */
  throttleBudgetMs?: number;
  /** Where that budget is measured and its backoff waited; default the system's. For tests. */
  retryClock?: RetryClock;
}

/**
 * One SDK client per service, built on first use and kept for the life of
 * this object, all sharing one keep-alive http and https agent whose socket
 * count follows `concurrency`. EBS clients make one attempt per call: retries
 * and the response to throttling live in retry.ts. EC2, STS, S3, Glacier, ECS and Logs keep the
 * SDK's retry (standard unless the settings say otherwise), with throttling
 * retried past its attempts for a budget in time (see sdk-retry.ts). With assumeRole,
 * one more STS client holds the base credentials and every other client signs
 * with the role's. destroy() closes the sockets; the clients cannot be used
 * afterwards. Every request runs with the connect, first-byte and silence
 * limits of answers.ts; an answer that is not from an AWS API, or a timeout
 * from an endpoint that never answered, fails at once (ForeignEndpoint,
 * SilentEndpoint).
 */
export class AwsClients {
  readonly settings: ConnectionSettings;
  readonly #handler: NodeHttpHandler;
  readonly #httpAgent: http.Agent;
  readonly #httpsAgent: https.Agent;
  #ebs: EBSClient | undefined;
  #ebsBlocks: DirectBlockRequests | undefined;
  #ec2: EC2Client | undefined;
  #ec2Requests: DirectEc2Requests | undefined;
  #sts: STSClient | undefined;
  #s3: S3Client | undefined;
  #ecs: ECSClient | undefined;
  #glacier: GlacierClient | undefined;
  #logs: CloudWatchLogsClient | undefined;
  #baseSts: STSClient | undefined;
  readonly #roleCredentials: TemporaryCredentialsProvider | undefined;
  readonly #throttleBudget: ThrottleBudget;
  readonly #maxSockets: number;
  /** The first-byte limit of each request in flight, by SDK command (see withFirstByteLimits). */
  readonly #firstByteLimits = new WeakMap<object, number>();
  readonly #answered = new AnsweredEndpoints();
  #destroyed = false;

  constructor(settings: ConnectionSettings, options: AwsClientsOptions = {}) {
    validateSettings(settings);
    // The SDK prints a Node-version notice to stderr on client construction; users of the CLI must not see it.
    // It honours only 'true': a user's own '1' would still let it through.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
    this.settings = settings;
    const maxSockets = settings.maxSockets ?? options.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(maxSockets) || maxSockets < 1) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `connection ${settings.name}: maxSockets must be a positive integer, got ${maxSockets}`);
    }
    this.#maxSockets = maxSockets;
    const keepAliveMsecs = settings.tcpKeepAliveMs ?? DEFAULT_TCP_KEEPALIVE_MS;
    this.#httpAgent = new http.Agent({ keepAlive: true, keepAliveMsecs, maxSockets });
    this.#httpsAgent = new https.Agent({
      keepAlive: true,
      keepAliveMsecs,
      maxSockets,
      rejectUnauthorized: settings.tls?.rejectUnauthorized ?? true,
      ...(settings.tls?.ca === undefined ? {} : { ca: settings.tls.ca }),
    });
    this.#handler = answerCheckingHandler(
      { httpAgent: this.#httpAgent, httpsAgent: this.#httpsAgent, connectTimeoutMs: this.#connectTimeoutMs, readTimeoutMs: this.#readTimeoutMs },
      this.#firstByteLimits,
      this.#answered,
    );
    this.#throttleBudget = {
      budgetMs: options.throttleBudgetMs ?? DEFAULT_RETRY_POLICY.throttleBudgetMs,
      ...(options.retryClock === undefined ? {} : { clock: options.retryClock }),
    };
    if (settings.assumeRole !== undefined) {
      this.#baseSts = withThrottleBudget(this.#limited(new (stsSdk().STSClient)({ ...this.#config('sts', this.#baseCredentials()), ...this.#retries() })), this.#throttleBudget);
      this.#roleCredentials = assumedRoleCredentials(this.#baseSts, settings.assumeRole);
    }
  }

  ebs(): EBSClient {
    return (this.#ebs ??= this.#limited(new (ebsSdk().EBSClient)({ ...this.#common('ebs'), maxAttempts: 1 })));
  }

  /** PutSnapshotBlock and GetSnapshotBlock without the SDK's middleware, signed by the EBS client's signer, on the same sockets. */
  ebsBlockRequests(): DirectBlockRequests {
    return (this.#ebsBlocks ??= new DirectBlockRequests(this.ebs(), this.#transport()));
  }

  /**
   * EC2 query calls without the EC2 SDK (see DirectEc2Requests): signed by the EBS client's signer, on the same
   * sockets, with the SDK client's attempts and the throttle budget.
   */
  ec2Requests(): DirectEc2Requests {
    return (this.#ec2Requests ??= new DirectEc2Requests(this.ebs(), this.#transport(), this.endpointFor('ec2'), {
      maxAttempts: this.settings.retries?.maxAttempts,
      throttleBudgetMs: this.#throttleBudget.budgetMs,
      clock: this.#throttleBudget.clock,
      concurrency: this.#maxSockets,
    }));
  }

  #transport(): BlockTransport {
    return {
      httpAgent: this.#httpAgent,
      httpsAgent: this.#httpsAgent,
      connectTimeoutMs: this.#connectTimeoutMs,
      readTimeoutMs: this.#readTimeoutMs,
      answered: this.#answered,
    };
  }

  ec2(): EC2Client {
    return (this.#ec2 ??= this.#budgeted(this.#limited(new (ec2Sdk().EC2Client)({ ...this.#common('ec2'), ...this.#retries() }))));
  }

  sts(): STSClient {
    return (this.#sts ??= this.#budgeted(this.#limited(new (stsSdk().STSClient)({ ...this.#common('sts'), ...this.#retries() }))));
  }

  s3(): S3Client {
    return (this.#s3 ??= this.#budgeted(this.#limited(new (s3Sdk().S3Client)({ ...this.#common('s3'), ...this.#retries(), forcePathStyle: this.settings.forcePathStyle ?? false }))));
  }

  /** Upload bodies are hashed once: the tree hash comes with the request (see glacierBodyChecksums). */
  glacier(): GlacierClient {
    return (this.#glacier ??= this.#budgeted(this.#limited(new (glacierSdk().GlacierClient)({ ...this.#common('glacier'), ...this.#retries(), bodyChecksumGenerator: glacierBodyChecksums }))));
  }

  ecs(): ECSClient {
    return (this.#ecs ??= this.#budgeted(this.#limited(new (ecsSdk().ECSClient)({ ...this.#common('ecs'), ...this.#retries() }))));
  }

  logs(): CloudWatchLogsClient {
    return (this.#logs ??= this.#budgeted(this.#limited(new (logsSdk().CloudWatchLogsClient)({ ...this.#common('logs'), ...this.#retries() }))));
  }

  get #connectTimeoutMs(): number {
    return this.settings.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  }

  get #readTimeoutMs(): number {
    return this.settings.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  }

  /**
   * `client` with a step that records each request's first-byte limit by its
   * command (answers.ts) for the handler. It runs last before the handler, on
   * the signed request of each attempt: the very object the handler gets.
   */
  #limited<I extends object, O extends MetadataBearer, C extends { middlewareStack: MiddlewareStack<I, O> }>(client: C & { middlewareStack: MiddlewareStack<I, O> }): C {
    const readTimeoutMs = this.#readTimeoutMs;
    const limits = this.#firstByteLimits;
    const record: DeserializeMiddleware<I, O> = (next, context) => (args) => {
      if (typeof args.request === 'object' && args.request !== null) limits.set(args.request, firstByteTimeoutMs(context.commandName, readTimeoutMs));
      return next(args);
    };
    client.middlewareStack.add(record, { step: 'deserialize', priority: 'low', name: 'snaplineFirstByteLimit' });
    return client;
  }

  /** Closes every socket of every client. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const client of [this.#ebs, this.#ec2, this.#sts, this.#s3, this.#glacier, this.#ecs, this.#logs, this.#baseSts]) client?.destroy();
    this.#handler.destroy();
    this.#httpAgent.destroy();
    this.#httpsAgent.destroy();
  }

  /** Endpoint of `service`: its own, else the connection's, else AWS's. */
  endpointFor(service: ServiceName): string | undefined {
    return this.settings.endpoints?.[service] ?? this.settings.endpointUrl;
  }

  /** Region, endpoint, handler and credentials of a client for `service`: the role's when one is assumed. */
  #common(service: ServiceName) {
    if (this.#destroyed) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `connection ${this.settings.name}: clients used after destroy()`);
    }
    return this.#config(service, this.#roleCredentials === undefined ? this.#baseCredentials() : { credentials: this.#roleCredentials });
  }

  #config<C extends object>(service: ServiceName, credentials: C) {
    const endpoint = this.endpointFor(service);
    return {
      region: this.settings.region,
      requestHandler: this.#handler,
      ...(endpoint === undefined ? {} : { endpoint }),
      ...credentials,
    };
  }

  /** The connection's own credentials as SDK client options; none means the default chain. */
  #baseCredentials(): { profile?: string; credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } } {
    const credentials = this.settings.credentials;
    if (credentials === undefined) return {};
    return 'profile' in credentials ? { profile: credentials.profile } : { credentials };
  }

  /** An SDK client whose throttled calls get the time budget (see ThrottleTolerantStrategy). */
  #budgeted<C extends { config: object }>(client: C): C {
    return withThrottleBudget(client, this.#throttleBudget);
  }

  #retries(): { maxAttempts?: number; retryMode?: RetryMode } {
    const retries = this.settings.retries;
    return {
      ...(retries?.maxAttempts === undefined ? {} : { maxAttempts: retries.maxAttempts }),
      ...(retries?.mode === undefined ? {} : { retryMode: retries.mode }),
    };
  }
}

interface HandlerLimits {
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
  connectTimeoutMs: number;
  readTimeoutMs: number;
}

/**
 * The SDK's node handler on the shared agents, with the limits of answers.ts:
 * each request's first-byte limit (recorded by AwsClients' step; the short
 * exchange's when none is), then checks of the answer: one that is not from
 * an AWS API fails (ForeignEndpoint), and so does a timeout from an endpoint
 * that has never answered (SilentEndpoint); every other answer marks its
 * endpoint as answered.
 */
function answerCheckingHandler(limits: HandlerLimits, firstByteLimits: WeakMap<object, number>, answered: AnsweredEndpoints): NodeHttpHandler {
  const Handler = httpHandlerSdk().NodeHttpHandler;
  type Handle = NodeHttpHandler['handle'];
  class AnswerCheckingHandler extends Handler {
    override async handle(request: Parameters<Handle>[0], options: Parameters<Handle>[1] = {}): ReturnType<Handle> {
      const origin = originOf(request);
      const firstByteMs = firstByteLimits.get(request) ?? firstByteTimeoutMs(undefined, limits.readTimeoutMs);
      try {
        const out = await super.handle(request, { ...options, requestTimeout: firstByteMs });
        const foreign = foreignAnswerError(origin, out.response.statusCode, out.response.headers);
        if (foreign !== undefined) {
          (out.response.body as { destroy?: () => void } | undefined)?.destroy?.();
          throw foreign;
        }
        answered.add(origin);
        return out;
      } catch (err) {
        if (answered.has(origin)) throw err;
        throw silentEndpointError(err, origin, { connectMs: limits.connectTimeoutMs, answerMs: firstByteMs || limits.readTimeoutMs }) ?? err;
      }
    }
  }
  return new AnswerCheckingHandler({
    httpAgent: limits.httpAgent,
    httpsAgent: limits.httpsAgent,
    connectionTimeout: limits.connectTimeoutMs,
    socketTimeout: limits.readTimeoutMs,
    throwOnRequestTimeout: true,
  });
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
  for (const option of ['connectTimeoutMs', 'readTimeoutMs', 'tcpKeepAliveMs'] as const) {
    const value = settings[option];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) bad(`${option} must be a positive number of milliseconds, got ${value}`);
  }
  const retries = settings.retries;
  if (retries?.mode !== undefined && !RETRY_MODES.includes(retries.mode)) bad(`retries.mode must be ${RETRY_MODES.join(' or ')}, got ${retries.mode}`);
  if (retries?.maxAttempts !== undefined && !(Number.isInteger(retries.maxAttempts) && retries.maxAttempts >= 1)) {
    bad(`retries.maxAttempts must be a whole number of at least 1, got ${retries.maxAttempts}`);
  }
  if (settings.assumeRole !== undefined && !(typeof settings.assumeRole.roleArn === 'string' && settings.assumeRole.roleArn !== '')) {
    bad('assumeRole.roleArn is required');
  }
}
