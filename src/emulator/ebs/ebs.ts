import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { BLOCK_SIZE, BLOCKS_PER_GIB, MAX_VOLUME_SIZE_GIB } from '../../core/constants.js';
import { AwsError, EbsErrors } from '../protocol/aws-error.js';
import type { FaultInjector } from '../faults.js';
import { ClientGone, dropConnection, readBody, restQuery, safeDecode, send, sendJson, type Exchange } from '../protocol/http.js';
import { ACCOUNT_ID, type SnapshotService, type StartSnapshotInput } from '../snapshots.js';
import type { StatsRecorder } from '../stats.js';
import type { SnapshotRecord, Tag } from '../store/catalog.js';

/** The six EBS direct operations, by the request line that selects them. */
export type EbsRoute =
  | { operation: 'StartSnapshot' }
  | { operation: 'CompleteSnapshot'; snapshotId: string }
  | { operation: 'PutSnapshotBlock' | 'GetSnapshotBlock'; snapshotId: string; blockIndex: string }
  | { operation: 'ListSnapshotBlocks' | 'ListChangedBlocks'; snapshotId: string };

/**
 * Matches the EBS direct REST paths:
 *   POST /snapshots                             StartSnapshot
 *   POST /snapshots/completion/{id}             CompleteSnapshot
 *   PUT  /snapshots/{id}/blocks/{index}         PutSnapshotBlock
 *   GET  /snapshots/{id}/blocks/{index}         GetSnapshotBlock
 *   GET  /snapshots/{id}/blocks                 ListSnapshotBlocks
 *   GET  /snapshots/{id}/changedblocks          ListChangedBlocks
 */
export function matchEbsRoute(method: string, path: string): EbsRoute | undefined {
  const parts = path.split('/');
  if (parts[1] !== 'snapshots' || parts[0] !== '') return undefined;
  const [, , a, b, c] = parts.map(safeDecode);
  if (parts.length === 2) return method === 'POST' ? { operation: 'StartSnapshot' } : undefined;
  if (parts.length === 4 && a === 'completion' && method === 'POST') return { operation: 'CompleteSnapshot', snapshotId: b! };
  if (parts.length === 5 && b === 'blocks') {
    if (method === 'PUT') return { operation: 'PutSnapshotBlock', snapshotId: a!, blockIndex: c! };
    if (method === 'GET') return { operation: 'GetSnapshotBlock', snapshotId: a!, blockIndex: c! };
  }
  if (parts.length === 4 && method === 'GET') {
    if (b === 'blocks') return { operation: 'ListSnapshotBlocks', snapshotId: a! };
    if (b === 'changedblocks') return { operation: 'ListChangedBlocks', snapshotId: a! };
  }
  return undefined;
}

/** snap- and hex digits, at most 64 characters (the API model's SnapshotId). */
const SNAPSHOT_ID = /^snap-[0-9a-f]{1,59}$/;
const BASE64 = /^[A-Za-z0-9+/=]+$/;
const MAX_BLOCK_INDEX = MAX_VOLUME_SIZE_GIB * BLOCKS_PER_GIB;

/**
 * The EBS direct APIs over REST-JSON. Errors are answered with the status of
 * the API model, an `x-amzn-ErrorType` header naming the exception (which the
 * SDKs and the AWS CLI read) and a JSON body `{"Message": ..., "Reason": ...}`.
 */
export class EbsApi {
  constructor(
    private readonly snapshots: SnapshotService,
    private readonly faults: FaultInjector,
    private readonly stats: StatsRecorder,
    private readonly now: () => number,
  ) {}

  /** Answers one EBS direct request, applying the configured faults first. Rethrows only unexpected failures, after answering 500. */
  async handle(route: EbsRoute, exchange: Exchange): Promise<void> {
    try {
      if (!(await this.#passFaults(route, exchange))) return;
      switch (route.operation) {
        case 'PutSnapshotBlock':
          return await this.#putBlock(route.snapshotId, route.blockIndex, exchange);
        case 'GetSnapshotBlock':
          return await this.#getBlock(route.snapshotId, route.blockIndex, exchange);
        case 'StartSnapshot':
          return await this.#start(exchange);
        case 'CompleteSnapshot':
          return await this.#complete(route.snapshotId, exchange);
        case 'ListSnapshotBlocks':
          return this.#listBlocks(route.snapshotId, exchange);
        case 'ListChangedBlocks':
          return this.#listChanged(route.snapshotId, exchange);
      }
    } catch (err) {
      if (err instanceof ClientGone) return;
      sendEbsError(exchange, err instanceof AwsError ? err : EbsErrors.internal());
      if (!(err instanceof AwsError)) throw err;
    }
  }

  /** False when a fault answered (or dropped) the request. */
  async #passFaults(route: EbsRoute, exchange: Exchange): Promise<boolean> {
    let latency = this.faults.latencyMs;
    if (this.faults.spikeNext()) {
      this.stats.fault('latencySpikes');
      latency += this.faults.spikeMs;
    }
    if (latency > 0) await new Promise((resolve) => setTimeout(resolve, latency));
    const fault = this.faults.requestFault();
    if (fault === 'reset') {
      this.stats.fault('resets');
      dropConnection(exchange);
      return false;
    }
    if (fault === 'throttle') {
      this.stats.fault('throttled');
      throw EbsErrors.throttled('ACCOUNT_THROTTLED', 'The request was throttled (injected fault).');
    }
    if ((route.operation === 'PutSnapshotBlock' || route.operation === 'GetSnapshotBlock') && !this.faults.admit(route.operation, route.snapshotId, this.now())) {
      this.stats.fault('rateLimited');
      throw EbsErrors.throttled('RESOURCE_LEVEL_THROTTLE', `The request rate for ${route.operation} on snapshot ${route.snapshotId} is too high.`);
    }
    if (fault === 'error') {
      this.stats.fault('internalErrors');
      throw EbsErrors.internal('An internal error has occurred (injected fault).');
    }
    return true;
  }

  // ---- PutSnapshotBlock / GetSnapshotBlock: the hot path -----------------

  async #putBlock(snapshotId: string, blockIndex: string, exchange: Exchange): Promise<void> {
    const { req } = exchange;
    const headers = req.headers;
    checkSnapshotId(snapshotId);
    const index = parseBlockIndex(blockIndex);
    const dataLength = headers['x-amz-data-length'];
    if (dataLength === undefined) throw invalid('x-amz-Data-Length is required.');
    if (Number(dataLength) !== BLOCK_SIZE) throw invalid(`x-amz-Data-Length must be ${BLOCK_SIZE}, got ${dataLength}.`);
    const checksum = headers['x-amz-checksum'];
    if (typeof checksum !== 'string' || checksum.length > 64 || !BASE64.test(checksum)) throw invalid('x-amz-Checksum must be a base64 SHA-256 checksum.');
    const expected = Buffer.from(checksum, 'base64');
    if (expected.length !== 32) throw invalid('x-amz-Checksum must be a base64 SHA-256 checksum (32 bytes).');
    if (headers['x-amz-checksum-algorithm'] !== 'SHA256') throw invalid('x-amz-Checksum-Algorithm must be SHA256.');
    const progress = optionalInteger(headers['x-amz-progress'], 'x-amz-Progress', 0, 100);

    const live = this.snapshots.beginWrite(snapshotId, index, exchange.region);
    try {
      const body = await readBlockBody(req, exchange);
      if (body.length < BLOCK_SIZE) throw invalid('Failed to read block data');
      if (body.length > BLOCK_SIZE) throw invalid(`The block data is longer than x-amz-Data-Length (${BLOCK_SIZE} bytes).`);
      if (!body.digest.equals(expected)) throw invalid('The checksum of the block data does not match x-amz-Checksum.');
      await this.snapshots.commitWrite(live, index, body.digest, body.chunks, progress);
    } finally {
      this.snapshots.releaseWrite(live, index);
    }
    send(exchange, 201, { 'x-amz-checksum': checksum, 'x-amz-checksum-algorithm': 'SHA256', 'x-amzn-requestid': exchange.requestId });
  }

  async #getBlock(snapshotId: string, blockIndex: string, exchange: Exchange): Promise<void> {
    checkSnapshotId(snapshotId);
    const index = parseBlockIndex(blockIndex);
    const blockToken = restQuery(exchange.query).get('blockToken');
    const { data, digest } = await this.snapshots.readBlock(snapshotId, exchange.region, index, blockToken);
    let checksum = digest.toString('base64');
    if (this.faults.corruptNext()) {
      this.stats.fault('corrupted');
      const wrong = Buffer.from(digest);
      wrong[0] = wrong[0]! ^ 0xff;
      checksum = wrong.toString('base64');
    }
    send(
      exchange,
      200,
      {
        'content-type': 'application/octet-stream',
        'x-amz-data-length': BLOCK_SIZE,
        'x-amz-checksum': checksum,
        'x-amz-checksum-algorithm': 'SHA256',
        'x-amzn-requestid': exchange.requestId,
      },
      data,
    );
  }

  // ---- the other four ------------------------------------------------------

  async #start(exchange: Exchange): Promise<void> {
    const raw = await readBody(exchange.req, exchange.stats);
    let body: unknown;
    try {
      body = raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'));
    } catch {
      throw invalid('The request body is not valid JSON.');
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw invalid('The request body must be a JSON object.');
    const record = this.snapshots.start(parseStartInput(body as Record<string, unknown>), exchange.region);
    sendJson(exchange, 201, startResponse(record));
  }

  async #complete(snapshotId: string, exchange: Exchange): Promise<void> {
    checkSnapshotId(snapshotId);
    const headers = exchange.req.headers;
    const count = optionalInteger(headers['x-amz-changedblockscount'], 'x-amz-ChangedBlocksCount', 0, MAX_BLOCK_INDEX);
    if (count === undefined) throw invalid('x-amz-ChangedBlocksCount is required.');
    const checksum = headers['x-amz-checksum'];
    const algorithm = headers['x-amz-checksum-algorithm'];
    const method = headers['x-amz-checksum-aggregation-method'];
    if (algorithm !== undefined && algorithm !== 'SHA256') throw invalid('x-amz-Checksum-Algorithm must be SHA256.');
    if (method !== undefined && method !== 'LINEAR') throw invalid('x-amz-Checksum-Aggregation-Method must be LINEAR.');
    if (checksum !== undefined) {
      if (typeof checksum !== 'string' || checksum.length > 64 || !BASE64.test(checksum)) throw invalid('x-amz-Checksum must be a base64 SHA-256 checksum.');
      if (algorithm === undefined || method === undefined) {
        throw invalid('x-amz-Checksum needs x-amz-Checksum-Algorithm SHA256 and x-amz-Checksum-Aggregation-Method LINEAR.');
      }
    }
    // Drain the (empty) body so the connection can be reused.
    await readBody(exchange.req, exchange.stats);
    const status = await this.snapshots.complete(snapshotId, count, checksum as string | undefined, exchange.region);
    if (this.faults.take('completionLostResponses')) {
      this.stats.fault('lostCompletions');
      return dropConnection(exchange);
    }
    sendJson(exchange, 202, { Status: status });
  }

  #listBlocks(snapshotId: string, exchange: Exchange): void {
    checkSnapshotId(snapshotId);
    const query = restQuery(exchange.query);
    const page = this.snapshots.listBlocks(snapshotId, exchange.region, startingIndex(query), maxResults(query), pageToken(query));
    sendJson(exchange, 200, {
      Blocks: page.entries.map((e) => ({ BlockIndex: e.index, BlockToken: e.token })),
      ExpiryTime: page.expiresAt / 1000,
      VolumeSize: page.volumeSize,
      BlockSize: BLOCK_SIZE,
      ...(page.nextToken === undefined ? {} : { NextToken: page.nextToken }),
    });
  }

  #listChanged(secondSnapshotId: string, exchange: Exchange): void {
    checkSnapshotId(secondSnapshotId);
    const query = restQuery(exchange.query);
    const first = query.get('firstSnapshotId');
    if (first !== undefined) checkSnapshotId(first);
    const page = this.snapshots.changedBlocks(first, secondSnapshotId, exchange.region, startingIndex(query), maxResults(query), pageToken(query));
    sendJson(exchange, 200, {
      ChangedBlocks: page.entries.map((e) => ({
        BlockIndex: e.index,
        ...(e.firstToken === undefined ? {} : { FirstBlockToken: e.firstToken }),
        ...(e.secondToken === undefined ? {} : { SecondBlockToken: e.secondToken }),
      })),
      ExpiryTime: page.expiresAt / 1000,
      VolumeSize: page.volumeSize,
      BlockSize: BLOCK_SIZE,
      ...(page.nextToken === undefined ? {} : { NextToken: page.nextToken }),
    });
  }
}

/** Serializes an error the way EBS direct does. */
export function sendEbsError(exchange: Exchange, error: AwsError): void {
  const body: Record<string, string> = { Message: error.message };
  if (error.reason !== undefined) body.Reason = error.reason;
  sendJson(exchange, error.status, body, { 'x-amzn-errortype': error.code });
}

interface BlockBody {
  chunks: Buffer[];
  length: number;
  digest: Buffer;
}

/**
 * Reads a block body as it arrives, hashing each chunk once and keeping the
 * chunks as they are (no copy). Stops keeping data past BLOCK_SIZE bytes but
 * reads to the end, so that the answer can still be sent.
 */
function readBlockBody(req: IncomingMessage, exchange: Exchange): Promise<BlockBody> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= BLOCK_SIZE) {
        chunks.push(chunk);
        hash.update(chunk);
      }
    });
    req.on('end', () => {
      exchange.stats.bytesIn += length;
      resolve({ chunks, length, digest: hash.digest() });
    });
    req.on('close', () => {
      if (!req.complete) reject(new ClientGone());
    });
  });
}

function invalid(message: string): AwsError {
  return EbsErrors.validation('INVALID_PARAMETER_VALUE', message);
}

function checkSnapshotId(snapshotId: string): void {
  if (!SNAPSHOT_ID.test(snapshotId)) throw EbsErrors.validation('INVALID_SNAPSHOT_ID', `The snapshot ID '${snapshotId}' is malformed.`);
}

function parseBlockIndex(text: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > MAX_BLOCK_INDEX) throw EbsErrors.validation('INVALID_BLOCK', `Block index '${text}' is not valid.`);
  return Number(text);
}

/** An optional integer header or query value within [min, max]. */
function optionalInteger(value: string | string[] | undefined, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^-?\d{1,15}$/.test(value)) throw invalid(`${name} must be an integer, got '${String(value)}'.`);
  const number = Number(value);
  if (number < min || number > max) throw invalid(`${name} must be between ${min} and ${max}, got ${number}.`);
  return number;
}

function maxResults(query: Map<string, string>): number {
  return optionalInteger(query.get('maxResults'), 'MaxResults', 100, 10_000) ?? 10_000;
}

function startingIndex(query: Map<string, string>): number | undefined {
  return optionalInteger(query.get('startingBlockIndex'), 'StartingBlockIndex', 0, Number.MAX_SAFE_INTEGER);
}

function pageToken(query: Map<string, string>): string | undefined {
  const token = query.get('pageToken');
  if (token !== undefined && (token.length > 256 || !BASE64.test(token))) {
    throw EbsErrors.validation('INVALID_PAGE_TOKEN', 'The pagination token is malformed.');
  }
  return token;
}

/** StartSnapshot's JSON body, checked member by member against the API model. */
function parseStartInput(body: Record<string, unknown>): StartSnapshotInput {
  const { VolumeSize, ParentSnapshotId, Tags, Description, ClientToken, Encrypted, KmsKeyArn, Timeout } = body;
  if (typeof VolumeSize !== 'number' || !Number.isInteger(VolumeSize) || VolumeSize < 1 || VolumeSize > MAX_VOLUME_SIZE_GIB) {
    throw EbsErrors.validation('INVALID_VOLUME_SIZE', `VolumeSize must be a whole number of GiB from 1 to ${MAX_VOLUME_SIZE_GIB}.`);
  }
  const timeout = Timeout === undefined ? 60 : Timeout;
  if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 10 || timeout > 4320) {
    throw invalid('Timeout must be a whole number of minutes from 10 to 4320.');
  }
  const input: StartSnapshotInput = { volumeSize: VolumeSize, timeoutMinutes: timeout, tags: parseTags(Tags) };
  if (ParentSnapshotId !== undefined) {
    if (typeof ParentSnapshotId !== 'string') throw invalid('ParentSnapshotId must be a string.');
    checkSnapshotId(ParentSnapshotId);
    input.parentSnapshotId = ParentSnapshotId;
  }
  if (Description !== undefined) {
    if (typeof Description !== 'string' || Description.length < 1 || Description.length > 255) throw invalid('Description must be a string of 1 to 255 characters.');
    input.description = Description;
  }
  if (ClientToken !== undefined) {
    if (typeof ClientToken !== 'string' || ClientToken.length > 255 || !/^\S+$/.test(ClientToken)) {
      throw invalid('ClientToken must be 1 to 255 characters without white space.');
    }
    input.clientToken = ClientToken;
  }
  if (Encrypted !== undefined) {
    if (typeof Encrypted !== 'boolean') throw invalid('Encrypted must be a boolean.');
    input.encrypted = Encrypted;
  }
  if (KmsKeyArn !== undefined) {
    if (typeof KmsKeyArn !== 'string' || KmsKeyArn.length < 1 || KmsKeyArn.length > 2048) throw invalid('KmsKeyArn must be a string of 1 to 2048 characters.');
    input.kmsKeyArn = KmsKeyArn;
  }
  return input;
}

function parseTags(value: unknown): Tag[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw EbsErrors.validation('INVALID_TAG', 'Tags must be a list.');
  if (value.length > 50) throw EbsErrors.validation('INVALID_TAG', 'At most 50 tags are allowed.');
  const keys = new Set<string>();
  return value.map((tag: unknown) => {
    const { Key, Value } = (tag ?? {}) as Record<string, unknown>;
    if (typeof Key !== 'string' || Key.length < 1 || Key.length > 127) throw EbsErrors.validation('INVALID_TAG', 'Each tag needs a Key of 1 to 127 characters.');
    if (Key.toLowerCase().startsWith('aws:')) throw EbsErrors.validation('INVALID_TAG', `Tag keys starting with 'aws:' are reserved: ${Key}.`);
    if (Value !== undefined && (typeof Value !== 'string' || Value.length > 255)) {
      throw EbsErrors.validation('INVALID_TAG', `The value of tag ${Key} must be a string of at most 255 characters.`);
    }
    if (keys.has(Key)) throw EbsErrors.validation('INVALID_TAG', `Tag key ${Key} appears twice.`);
    keys.add(Key);
    return { Key, Value: Value ?? '' };
  });
}

function startResponse(record: SnapshotRecord): Record<string, unknown> {
  return {
    SnapshotId: record.snapshotId,
    OwnerId: ACCOUNT_ID,
    Status: record.status,
    StartTime: record.startTime / 1000,
    VolumeSize: record.volumeSize,
    BlockSize: BLOCK_SIZE,
    ...(record.tags.length > 0 ? { Tags: record.tags } : {}),
    ...(record.parentSnapshotId === null ? {} : { ParentSnapshotId: record.parentSnapshotId }),
    ...(record.description === null ? {} : { Description: record.description }),
    ...(record.kmsKeyArn === null ? {} : { KmsKeyArn: record.kmsKeyArn }),
    SseType: record.encrypted ? 'sse-kms' : 'none',
  };
}
