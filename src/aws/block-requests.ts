import type http from 'node:http';
import type { EBSClient } from '@aws-sdk/client-ebs';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { answerText, type BlockTransport, type ClientConfig, clientEndpoint, header, type RequestOptions, SignedRequests } from './signed-requests.js';

export type { BlockTransport, RequestOptions } from './signed-requests.js';

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
  readonly #requests: SignedRequests;

  constructor(client: EBSClient, transport: BlockTransport) {
    const config = client.config as unknown as ClientConfig;
    this.#requests = new SignedRequests(config, transport, () => clientEndpoint(config));
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
    await this.#requests.send(action, 'PutSnapshotBlockCommand', { method: 'PUT', path, headers, body }, options, async (response) => {
      if (response.statusCode !== 201) throw await awsErrorOf(response, action);
      response.resume();
    });
  }

  /** GetSnapshotBlock: the block's bytes (one buffer of BLOCK_SIZE) and the checksum the service sent. `signal` as for putBlock, the body's reading included. */
  async getBlock(snapshotId: string, blockIndex: number, blockToken: string, options: RequestOptions = {}): Promise<{ data: Buffer; checksum: string }> {
    const action = 'ebs:GetSnapshotBlock';
    const path = `/snapshots/${encodeURIComponent(snapshotId)}/blocks/${blockIndex}`;
    return this.#requests.send(action, 'GetSnapshotBlockCommand', { method: 'GET', path, query: { blockToken }, headers: {} }, options, async (response) => {
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
  const text = await answerText(response, ERROR_BODY_LIMIT);
  let body: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
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
