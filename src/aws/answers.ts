/**
 * How long a call waits for its answer, and what an answer that is not from
 * an AWS service, or no answer at all, means. Shared by the SDK clients'
 * request handler (clients.ts) and the direct block requests
 * (block-requests.ts); fromAwsError (errors.ts) turns the errors made here
 * into ENDPOINT_UNREACHABLE naming the service.
 *
 * The limits, per request, counted by the transport:
 * - connect: the connection's connect_timeout (10 s by default).
 * - silence: the connection's read_timeout (60 s by default) bounds any
 *   stretch without a byte moving either way, for every call. It is what
 *   bounds a transfer: the time to send a 512 KiB block with 64 others in
 *   flight, or a part of 16 MiB and more, depends on the link, not on the
 *   service, so no fixed total would fit both a fast and a slow link; a
 *   stalled link, though, goes silent.
 * - first byte of the answer, for a short exchange (a request without a
 *   data body: describe, list, start, tag, delete, restore request, block
 *   read...): EXCHANGE_FIRST_BYTE_MS, or read_timeout when that is shorter,
 *   from the start of the request (connecting included). AWS answers these
 *   in well under a second; a slow AWS is far below 15 s, and a call that
 *   times out after its endpoint has answered before is retried like any
 *   transient failure.
 * - no first-byte limit beyond the silence one for calls that send data
 *   (PutSnapshotBlock, PutObject, UploadPart, UploadArchive,
 *   UploadMultipartPart: their answer comes after the body, however long
 *   sending it takes) and for calls that seal what was sent
 *   (CompleteSnapshot, S3 and Glacier CompleteMultipartUpload): the service
 *   may work on them for a while before it answers, assembling the parts of
 *   a large object in S3-compatible stores that send nothing meanwhile.
 *
 * A timeout from an endpoint that has not answered any request of this
 * process yet is final (SilentEndpoint): an endpoint URL that points at a
 * port that accepts connections and never answers, or at an address that
 * drops them, fails within seconds instead of after every retry. Once an
 * endpoint has answered, its timeouts are transient failures (retried).
 */

/** First byte of the answer to a short exchange (see above). */
export const EXCHANGE_FIRST_BYTE_MS = 15_000;

/** SDK commands that send a data body, or seal what was sent: no first-byte limit but the silence one. */
const UNBOUNDED_ANSWER = new Set([
  'PutSnapshotBlockCommand',
  'PutObjectCommand',
  'UploadPartCommand',
  'UploadArchiveCommand',
  'UploadMultipartPartCommand',
  'CompleteSnapshotCommand',
  'CompleteMultipartUploadCommand',
]);

/** The first-byte limit of an SDK command (0: none), given the connection's read timeout. */
export function firstByteTimeoutMs(commandName: string | undefined, readTimeoutMs: number): number {
  if (commandName !== undefined && UNBOUNDED_ANSWER.has(commandName)) return 0;
  return Math.min(EXCHANGE_FIRST_BYTE_MS, readTimeoutMs);
}

/**
 * The endpoints (scheme, host and port) that have answered a request, any
 * answer, of one set of clients. Until one has, its timeouts are final.
 */
export class AnsweredEndpoints {
  readonly #origins = new Set<string>();

  has(origin: string): boolean {
    return this.#origins.has(origin);
  }

  add(origin: string): void {
    this.#origins.add(origin);
  }
}

/** scheme://host:port of a request, as the endpoint is named in messages. */
export function originOf(request: { protocol?: string; hostname?: string; port?: number | undefined }): string {
  const protocol = request.protocol === 'http:' ? 'http:' : 'https:';
  return `${protocol}//${request.hostname ?? ''}${request.port === undefined ? '' : `:${request.port}`}`;
}

/** Headers every AWS service (and the S3-compatible stores) puts on every answer. */
const REQUEST_ID_HEADERS = ['x-amzn-requestid', 'x-amz-request-id', 'x-amz-id-2'];
/** Media types no AWS API answers with. */
const FOREIGN_TYPES = new Set(['text/html', 'text/plain']);

/**
 * An answer that does not come from an AWS API (a web server, a proxy's
 * page, another program on the port): no AWS request id and an HTML or
 * plain-text body. The error to throw for it (ForeignEndpoint), else
 * undefined. A 5xx or 429 page is left to the usual mapping: a gateway or
 * proxy in front of a real service says so when the service is busy or
 * away for a moment, and that is retried.
 */
export function foreignAnswerError(origin: string, status: number, headers: Record<string, string | string[] | undefined>): Error | undefined {
  if (status >= 500 || status === 429) return undefined;
  if (REQUEST_ID_HEADERS.some((name) => headers[name] !== undefined)) return undefined;
  const type = String(headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (!FOREIGN_TYPES.has(type)) return undefined;
  return Object.assign(new Error(`${origin} answered HTTP ${status} with ${type} and no AWS request id`), { name: 'ForeignEndpoint', endpoint: origin });
}

/**
 * A timeout of a request to `origin` that has never answered, as the final
 * SilentEndpoint error; undefined for anything else (a reset or a refused
 * connection keep their own errors). `limits` are those the request ran
 * with, for the message.
 */
export function silentEndpointError(err: unknown, origin: string, limits: { connectMs: number; answerMs: number }): Error | undefined {
  if (!(err instanceof Error) || err.name !== 'TimeoutError') return undefined;
  const { code, syscall } = err as Error & { code?: unknown; syscall?: unknown };
  if (code === 'ECONNRESET' || code === 'EPIPE') return undefined;
  const connecting = syscall === 'connect' || /establish a connection|no connection within/.test(err.message);
  const message = connecting
    ? `no connection to ${origin} within ${seconds(limits.connectMs)}`
    : `${origin} accepted the connection but sent no answer within ${seconds(limits.answerMs)}`;
  return Object.assign(new Error(message), { name: 'SilentEndpoint', endpoint: origin });
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}
