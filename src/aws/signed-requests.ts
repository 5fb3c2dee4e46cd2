import http from 'node:http';
import https from 'node:https';
import { type AnsweredEndpoints, firstByteTimeoutMs, foreignAnswerError, originOf, silentEndpointError } from './answers.js';
import { fromAwsError } from './errors.js';

/** The sockets, timeouts and answered endpoints the SDK clients use, shared with the direct requests. */
export interface BlockTransport {
  httpAgent: http.Agent;
  httpsAgent: https.Agent;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  answered: AnsweredEndpoints;
}

export interface RequestOptions {
  /** Ends the request when it aborts. */
  signal?: AbortSignal | undefined;
}

/** A request as the SDK's SigV4 signer takes and returns it. */
interface SignableRequest {
  method: string;
  protocol: string;
  hostname: string;
  port?: number;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: Buffer;
}

interface RequestSigner {
  sign(request: SignableRequest, options: { signingDate: Date; signingService?: string }): Promise<SignableRequest>;
}

/** Where requests go. */
export interface Endpoint {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number | undefined;
  /** The URL's path, without a trailing slash: requests' paths follow it. */
  basePath: string;
}

interface Target extends Endpoint {
  signer: RequestSigner;
}

/** The parts of an SDK client's resolved configuration the direct requests read. */
export interface ClientConfig {
  signer: () => Promise<unknown>;
  endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path?: string }>;
  endpointProvider: (params: { Region: string; UseFIPS: boolean; UseDualStack: boolean }) => { url: URL };
  region: () => Promise<string>;
  useFipsEndpoint: () => Promise<boolean>;
  useDualstackEndpoint: () => Promise<boolean>;
  systemClockOffset?: number;
}

const USER_AGENT = 'snapline (direct requests)';
/** Socket errors the SDK's handler reports as TimeoutError. */
const BROKEN_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
/** The SDK's threshold for a clock-skew correction (4 minutes). */
const CLOCK_SKEW_THRESHOLD_MS = 240_000;

/** The endpoint a client's configuration gives: its custom one, else the one its endpoint rules give for its Region. */
export async function clientEndpoint(config: ClientConfig): Promise<Endpoint> {
  const custom = await config.endpoint?.();
  if (custom !== undefined) {
    return { protocol: custom.protocol === 'http:' ? 'http:' : 'https:', hostname: custom.hostname, port: custom.port, basePath: (custom.path ?? '').replace(/\/+$/, '') };
  }
  const { url } = config.endpointProvider({
    Region: await config.region(),
    UseFIPS: await config.useFipsEndpoint(),
    UseDualStack: await config.useDualstackEndpoint(),
  });
  return endpointOfUrl(url);
}

export function endpointOfUrl(url: URL): Endpoint {
  return {
    protocol: url.protocol === 'http:' ? 'http:' : 'https:',
    hostname: url.hostname,
    port: url.port === '' ? undefined : Number(url.port),
    basePath: url.pathname.replace(/\/+$/, ''),
  };
}

/**
 * Single HTTP requests on the SDK clients' keep-alive sockets, without the
 * SDK's per-request middleware, signed by an SDK client's own SigV4 signer,
 * with its credentials, Region and clock offset (an error answer corrects
 * that offset from its Date header, as the SDK does), for `signingService`
 * (default the client's own). One attempt per call; every failure comes out
 * as a SnaplineError from fromAwsError, as on the SDK path. Limits and answer
 * checks as on the SDK path (answers.ts).
 */
export class SignedRequests {
  readonly #config: ClientConfig;
  readonly #transport: BlockTransport;
  readonly #endpoint: () => Promise<Endpoint>;
  readonly #signingService: string | undefined;
  #target: Promise<Target> | undefined;

  constructor(config: ClientConfig, transport: BlockTransport, endpoint: () => Promise<Endpoint>, signingService?: string) {
    this.#config = config;
    this.#transport = transport;
    this.#endpoint = endpoint;
    this.#signingService = signingService;
  }

  /**
   * Signs and sends one request of `action` (IAM name; `command` names its
   * limits, see answers.ts), hands the answer to `handle`. An error that
   * `handle` throws for an answer after which the clock was corrected says
   * so ($metadata.clockSkewCorrected), as the SDK's do.
   */
  async send<T>(
    action: string,
    command: string,
    request: { method: string; path: string; query?: Record<string, string>; headers: Record<string, string>; body?: Buffer | undefined },
    options: RequestOptions,
    handle: (response: http.IncomingMessage) => Promise<T>,
  ): Promise<T> {
    try {
      const target = await this.#resolveTarget();
      const query = request.query ?? {};
      const host = target.port === undefined ? target.hostname : `${target.hostname}:${target.port}`;
      const offset = this.#config.systemClockOffset ?? 0;
      const signed = await target.signer.sign(
        {
          method: request.method,
          protocol: target.protocol,
          hostname: target.hostname,
          port: target.port,
          path: target.basePath + request.path,
          query,
          headers: { ...request.headers, host, 'user-agent': USER_AGENT },
          ...(request.body === undefined ? {} : { body: request.body }),
        },
        { signingDate: new Date(Date.now() + offset), ...(this.#signingService === undefined ? {} : { signingService: this.#signingService }) },
      );
      const search = new URLSearchParams(query).toString().replace(/\+/g, '%20');
      const firstByteMs = firstByteTimeoutMs(command, this.#transport.readTimeoutMs);
      const response = await this.#request(target, request.method, signed.path + (search === '' ? '' : `?${search}`), signed.headers, request.body, options.signal, firstByteMs);
      const skewCorrected = (response.statusCode ?? 0) >= 400 && this.#correctClock(response, offset);
      try {
        return await handle(response);
      } catch (err) {
        // As the SDK marks it: the next attempt, signed with the corrected clock, may succeed (see fromAwsError).
        const metadata = (err as { $metadata?: Record<string, unknown> }).$metadata;
        if (skewCorrected && metadata !== undefined) metadata.clockSkewCorrected = true;
        throw err;
      }
    } catch (err) {
      throw fromAwsError(err, action);
    }
  }

  /**
   * The SDK's clock-skew correction for an error answer: the client's clock
   * offset becomes the service's Date header minus this host's clock, for
   * every request of the client after it (SDK calls and direct ones alike).
   * True when the offset moved by the SDK's threshold (four minutes or more
   * off, and not the offset this request was signed with): a signing-time
   * refusal is then worth one more attempt.
   */
  #correctClock(response: http.IncomingMessage, signedWithOffset: number): boolean {
    const serverTime = Date.parse(header(response, 'date') ?? '');
    if (Number.isNaN(serverTime) || header(response, 'age') !== undefined) return false;
    const offset = serverTime - Date.now();
    this.#config.systemClockOffset = offset;
    return Math.abs(offset) >= CLOCK_SKEW_THRESHOLD_MS && offset !== signedWithOffset;
  }

  /**
   * `signal` destroys the request, and with it the response being read, with
   * an AbortError. `firstByteMs` (0: none) bounds the wait for the answer
   * from the start; the answer is checked as answers.ts says.
   */
  #request(
    target: Target,
    method: string,
    path: string,
    headers: Record<string, string>,
    body: Buffer | undefined,
    signal: AbortSignal | undefined,
    firstByteMs: number,
  ): Promise<http.IncomingMessage> {
    const { connectTimeoutMs, readTimeoutMs, answered } = this.#transport;
    const origin = originOf(target);
    const secure = target.protocol === 'https:';
    const options = {
      method,
      hostname: target.hostname,
      port: target.port,
      path,
      headers,
      agent: secure ? this.#transport.httpsAgent : this.#transport.httpAgent,
      ...(signal === undefined ? {} : { signal }),
    };
    return new Promise((resolve, reject) => {
      let firstByte: NodeJS.Timeout | undefined;
      const request = (secure ? https : http).request(options, (response) => {
        clearTimeout(firstByte);
        const foreign = foreignAnswerError(origin, response.statusCode ?? 0, response.headers);
        if (foreign !== undefined) {
          response.destroy();
          reject(foreign);
          return;
        }
        answered.add(origin);
        resolve(response);
      });
      // Named as the SDK's handler names them, so both paths report the same.
      request.once('error', (err: NodeJS.ErrnoException) => {
        const named = BROKEN_CONNECTION.has(err.code ?? '') ? Object.assign(err, { name: 'TimeoutError' }) : err;
        const silent = answered.has(origin) ? undefined : silentEndpointError(named, origin, { connectMs: connectTimeoutMs, answerMs: firstByteMs || readTimeoutMs });
        reject(silent ?? named);
      });
      // A socket that takes too long to connect, or goes quiet mid-request, is dropped (retryable once the endpoint has answered).
      request.setTimeout(readTimeoutMs, () => request.destroy(timeoutError(`no data for ${readTimeoutMs} ms`)));
      if (firstByteMs > 0) firstByte = setTimeout(() => request.destroy(timeoutError(`no answer within ${firstByteMs} ms`)), firstByteMs);
      request.once('close', () => clearTimeout(firstByte));
      request.once('socket', (socket) => {
        if (!socket.connecting) return;
        const timer = setTimeout(() => request.destroy(timeoutError(`no connection within ${connectTimeoutMs} ms`)), connectTimeoutMs);
        socket.once('connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
      });
      request.end(body);
    });
  }

  /** The endpoint and the signer, resolved once. */
  #resolveTarget(): Promise<Target> {
    this.#target ??= (async () => ({ ...(await this.#endpoint()), signer: (await this.#config.signer()) as RequestSigner }))();
    // A failed resolution (no region, no credentials) is tried again on the next call.
    this.#target.catch(() => (this.#target = undefined));
    return this.#target;
  }
}

export function header(response: http.IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

/** The body of an answer, up to `limit` bytes kept (the rest read and dropped). */
export async function answerText(response: http.IncomingMessage, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    if (length < limit) chunks.push(chunk);
    length += chunk.byteLength;
  }
  return Buffer.concat(chunks).toString('utf8');
}
