import http from 'node:http';
import https from 'node:https';
import type { EBSClient } from '@aws-sdk/client-ebs';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { type AnsweredEndpoints, firstByteTimeoutMs, foreignAnswerError, originOf, silentEndpointError } from './answers.js';
import { fromAwsError } from './errors.js';

/** The sockets, timeouts and answered endpoints the SDK clients use, shared with the direct block requests. */
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
}

interface RequestSigner {
  sign(request: SignableRequest, options: { signingDate: Date }): Promise<SignableRequest>;
}

interface Target {
  protocol: 'http:' | 'https:';
  hostname: string;
  port: number | undefined;
  basePath: string;
  signer: RequestSigner;
}

/** The parts of the EBS client's resolved configuration the direct requests read. */
interface ClientConfig {
  signer: () => Promise<unknown>;
  endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path?: string }>;
  endpointProvider: (params: { Region: string; UseFIPS: boolean; UseDualStack: boolean }) => { url: URL };
  region: () => Promise<string>;
  useFipsEndpoint: () => Promise<boolean>;
  useDualstackEndpoint: () => Promise<boolean>;
  systemClockOffset?: number;
}

const USER_AGENT = 'snapline (direct block requests)';
/** Socket errors the SDK's handler reports as TimeoutError. */
const BROKEN_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT']);
/** The SDK's threshold for a clock-skew correction (4 minutes). */
const CLOCK_SKEW_THRESHOLD_MS = 240_000;
/** Bytes of an error answer kept for its message. */
const ERROR_BODY_LIMIT = 64 * 1024;

/**
 * PutSnapshotBlock and GetSnapshotBlock as single HTTP requests on the SDK
 * clients' keep-alive sockets, without the SDK's per-request middleware
 * (measured at about three times the CPU of the request itself: bench/).
 * Each request is signed by the EBS client's own SigV4 signer, with its
 * credentials, region and clock offset (an error answer corrects that offset
 * from its Date header, as the SDK does); the block body is left out of the
 * signature (UNSIGNED-PAYLOAD), as on the SDK path, its checksum header is
 * in it. Endpoint: the client's custom endpoint, else the one its endpoint
 * rules give. One attempt per call; errors are AWS-shaped and mapped by
 * fromAwsError like the SDK's, so retries and throttling behave the same.
 * Limits and answer checks as on the SDK path (answers.ts): a block read's
 * answer must begin within the short exchange's first-byte limit; a block
 * write has none but the silence one.
 */
export class DirectBlockRequests {
  readonly #config: ClientConfig;
  readonly #transport: BlockTransport;
  #target: Promise<Target> | undefined;

  constructor(client: EBSClient, transport: BlockTransport) {
    this.#config = client.config as unknown as ClientConfig;
    this.#transport = transport;
  }

  /**
   * PutSnapshotBlock. `data` (BLOCK_SIZE bytes, a view over shared memory works) is sent as is. Idempotent while pending.
   * `signal` ends the request when it aborts (the call fails with the AbortError, INTERRUPTED).
   */
  async putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number, options: RequestOptions = {}): Promise<void> {
    const action = 'ebs:PutSnapshotBlock';
    const headers: Record<string, string> = {
      'content-type': 'application/octet-stream',
      'content-length': String(data.byteLength),
      'x-amz-data-length': String(data.byteLength),
      'x-amz-checksum': checksum,
      'x-amz-checksum-algorithm': 'SHA256',
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    };
    if (progress !== undefined) headers['x-amz-progress'] = String(Math.max(0, Math.min(100, Math.floor(progress))));
    const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const path = `/snapshots/${encodeURIComponent(snapshotId)}/blocks/${blockIndex}`;
    await this.#send(action, 'PutSnapshotBlockCommand', 'PUT', path, {}, headers, body, options, async (response) => {
      if (response.statusCode !== 201) throw await awsErrorOf(response, action);
      response.resume();
    });
  }

  /** GetSnapshotBlock: the block's bytes (one buffer of BLOCK_SIZE) and the checksum the service sent. `signal` as for putBlock, the body's reading included. */
  async getBlock(snapshotId: string, blockIndex: number, blockToken: string, options: RequestOptions = {}): Promise<{ data: Buffer; checksum: string }> {
    const action = 'ebs:GetSnapshotBlock';
    const path = `/snapshots/${encodeURIComponent(snapshotId)}/blocks/${blockIndex}`;
    return this.#send(action, 'GetSnapshotBlockCommand', 'GET', path, { blockToken }, {}, undefined, options, async (response) => {
      if (response.statusCode !== 200) throw await awsErrorOf(response, action);
      const checksum = header(response, 'x-amz-checksum');
      const dataLength = header(response, 'x-amz-data-length');
      if (checksum === undefined || (dataLength !== undefined && Number(dataLength) !== BLOCK_SIZE)) {
        // Free the connection: an unread body would hold its socket.
        response.destroy();
        if (checksum === undefined) throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${action}: the response lacks x-amz-Checksum`);
        throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${action}: block ${blockIndex} has DataLength ${dataLength}, expected ${BLOCK_SIZE}`);
      }
      return { data: await readBlock(response, action, blockIndex), checksum };
    });
  }

  /** Signs and sends one request (`command` names its limits), hands the answer to `handle`; every failure comes out as a SnaplineError. */
  async #send<T>(
    action: string,
    command: string,
    method: string,
    path: string,
    query: Record<string, string>,
    headers: Record<string, string>,
    body: Buffer | undefined,
    options: RequestOptions,
    handle: (response: http.IncomingMessage) => Promise<T>,
  ): Promise<T> {
    try {
      const target = await this.#resolveTarget();
      const host = target.port === undefined ? target.hostname : `${target.hostname}:${target.port}`;
      const offset = this.#config.systemClockOffset ?? 0;
      const signed = await target.signer.sign(
        { method, protocol: target.protocol, hostname: target.hostname, port: target.port, path: target.basePath + path, query, headers: { ...headers, host, 'user-agent': USER_AGENT } },
        { signingDate: new Date(Date.now() + offset) },
      );
      const search = new URLSearchParams(query).toString().replace(/\+/g, '%20');
      const firstByteMs = firstByteTimeoutMs(command, this.#transport.readTimeoutMs);
      const response = await this.#request(target, method, signed.path + (search === '' ? '' : `?${search}`), signed.headers, body, options.signal, firstByteMs);
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

  /** The endpoint and the signer, resolved once from the client's configuration. */
  #resolveTarget(): Promise<Target> {
    this.#target ??= (async () => {
      const config = this.#config;
      const signer = (await config.signer()) as RequestSigner;
      const custom = await config.endpoint?.();
      if (custom !== undefined) {
        return {
          protocol: custom.protocol === 'http:' ? 'http:' : 'https:',
          hostname: custom.hostname,
          port: custom.port,
          basePath: (custom.path ?? '').replace(/\/+$/, ''),
          signer,
        };
      }
      const { url } = config.endpointProvider({
        Region: await config.region(),
        UseFIPS: await config.useFipsEndpoint(),
        UseDualStack: await config.useDualstackEndpoint(),
      });
      return {
        protocol: url.protocol === 'http:' ? 'http:' : 'https:',
        hostname: url.hostname,
        port: url.port === '' ? undefined : Number(url.port),
        basePath: url.pathname.replace(/\/+$/, ''),
        signer,
      };
    })();
    // A failed resolution (no region, no credentials) is tried again on the next call.
    this.#target.catch(() => (this.#target = undefined));
    return this.#target;
  }
}

function header(response: http.IncomingMessage, name: string): string | undefined {
  const value = response.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { name: 'TimeoutError' });
}

/** Copies a block body into one buffer allocated up front. A body of another length is UNAVAILABLE (retryable). */
async function readBlock(response: http.IncomingMessage, action: string, blockIndex: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(BLOCK_SIZE);
  let filled = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    if (filled + chunk.byteLength > BLOCK_SIZE) {
      throw new SnaplineError(ErrorCodes.UNAVAILABLE, `${action}: block ${blockIndex} body is longer than ${BLOCK_SIZE} bytes`, { retryable: true });
    }
    chunk.copy(data, filled);
    filled += chunk.byteLength;
  }
  if (filled !== BLOCK_SIZE) {
    throw new SnaplineError(ErrorCodes.UNAVAILABLE, `${action}: block ${blockIndex} body ended after ${filled} of ${BLOCK_SIZE} bytes`, { retryable: true });
  }
  return data;
}

/**
 * An error answer as the SDK shapes it for fromAwsError: the name from
 * x-amzn-ErrorType (or the body's __type / code), Message and Reason from the
 * JSON body, the status, the request id and the fault side.
 */
async function awsErrorOf(response: http.IncomingMessage, action: string): Promise<Error> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    if (length < ERROR_BODY_LIMIT) chunks.push(chunk);
    length += chunk.byteLength;
  }
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (parsed !== null && typeof parsed === 'object') body = parsed as Record<string, unknown>;
  } catch {
    // Not JSON (a proxy's page, an empty body): the status speaks.
  }
  const status = response.statusCode ?? 0;
  const typed = header(response, 'x-amzn-errortype') ?? stringField(body, '__type') ?? stringField(body, 'code');
  const name = typed === undefined ? 'UnknownError' : (typed.split(':')[0]!.split('#').at(-1) ?? typed);
  const message = stringField(body, 'message') ?? stringField(body, 'Message') ?? `${action} answered HTTP ${status}`;
  return Object.assign(new Error(message), {
    name,
    Reason: stringField(body, 'Reason'),
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: header(response, 'x-amzn-requestid'), attempts: 1 },
  });
}

function stringField(body: Record<string, unknown>, key: string): string | undefined {
  const value = body[key];
  return typeof value === 'string' && value !== '' ? value : undefined;
}
