import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import {
  AccessDeniedException,
  CompleteSnapshotCommand,
  ConcurrentLimitExceededException,
  ConflictException,
  EBSClient,
  EBSServiceException,
  GetSnapshotBlockCommand,
  InternalServerException,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  RequestThrottledException,
  ResourceNotFoundException,
  ServiceQuotaExceededException,
  StartSnapshotCommand,
  ValidationException,
} from '@aws-sdk/client-ebs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../core/constants.js';
import { checksumOf, sha256 } from '../core/checksum.js';
import { ErrorCodes, type ErrorCode } from '../errors.js';
import { AwsClients } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { rejection } from '../../test/support/rejection.js';

const CREDENTIALS = { accessKeyId: 'test-key', secretAccessKey: 'test-secret' };


async function collect<T>(pages: AsyncIterable<{ blocks: T[] }>): Promise<T[][]> {
  const all: T[][] = [];
  for await (const page of pages) all.push(page.blocks);
  return all;
}

describe('EbsSnapshotStore: the SDK calls it makes', () => {
  const client = new EBSClient({ region: 'us-east-1', credentials: CREDENTIALS });
  const ebs = mockClient(client);
  const store = new EbsSnapshotStore(client);
  beforeEach(() => ebs.reset());
  afterAll(() => client.destroy());

  it('StartSnapshot: every argument, tags as a list; maps the answer', async () => {
    ebs.on(StartSnapshotCommand).resolves({
      SnapshotId: 'snap-0abc',
      Status: 'pending',
      VolumeSize: 8,
      BlockSize: BLOCK_SIZE,
      ParentSnapshotId: 'snap-0parent',
      KmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/k',
    });
    const started = await store.startSnapshot({
      volumeSizeGiB: 8,
      parentSnapshotId: 'snap-0parent',
      description: 'nightly',
      tags: { volume: 'db', run: '7' },
      encrypted: true,
      kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/k',
      timeoutMinutes: 120,
      clientToken: 'token-1',
    });
    expect(ebs.commandCalls(StartSnapshotCommand)[0]!.args[0].input).toEqual({
      VolumeSize: 8,
      ParentSnapshotId: 'snap-0parent',
      Description: 'nightly',
      Tags: [
        { Key: 'volume', Value: 'db' },
        { Key: 'run', Value: '7' },
      ],
      Encrypted: true,
      KmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/k',
      Timeout: 120,
      ClientToken: 'token-1',
    });
    expect(started).toEqual({
      snapshotId: 'snap-0abc',
      status: 'pending',
      volumeSizeGiB: 8,
      blockSize: BLOCK_SIZE,
      parentSnapshotId: 'snap-0parent',
      kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/k',
    });
  });

  it('PutSnapshotBlock: the caller’s bytes themselves, DataLength 524288, SHA256 checksum, Progress', async () => {
    ebs.on(PutSnapshotBlockCommand).resolves({});
    const data = new Uint8Array(new SharedArrayBuffer(BLOCK_SIZE * 2), BLOCK_SIZE, BLOCK_SIZE).fill(7);
    const checksum = checksumOf(sha256(data));
    await store.putBlock('snap-0abc', 42, data, checksum, 37.6);
    const input = ebs.commandCalls(PutSnapshotBlockCommand)[0]!.args[0].input;
    expect(input.BlockData).toBe(data);
    expect({ ...input, BlockData: undefined }).toEqual({
      SnapshotId: 'snap-0abc',
      BlockIndex: 42,
      BlockData: undefined,
      DataLength: 524_288,
      Checksum: checksum,
      ChecksumAlgorithm: 'SHA256',
      Progress: 37,
    });
  });

  it('PutSnapshotBlock: a buffer of another size is refused before any call', async () => {
    const error = await rejection(store.putBlock('snap-0abc', 0, new Uint8Array(1000), 'x'));
    expect(error.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect(ebs.commandCalls(PutSnapshotBlockCommand)).toHaveLength(0);
  });

  it('CompleteSnapshot: ChangedBlocksCount, the aggregate, SHA256 and LINEAR; answers the status', async () => {
    ebs.on(CompleteSnapshotCommand).resolves({ Status: 'pending' });
    expect(await store.completeSnapshot('snap-0abc', 2, 'fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=')).toBe('pending');
    expect(ebs.commandCalls(CompleteSnapshotCommand)[0]!.args[0].input).toEqual({
      SnapshotId: 'snap-0abc',
      ChangedBlocksCount: 2,
      Checksum: 'fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=',
      ChecksumAlgorithm: 'SHA256',
      ChecksumAggregationMethod: 'LINEAR',
    });
  });

  it('ListSnapshotBlocks: follows NextToken through empty pages; StartingBlockIndex only on the first call', async () => {
    const expiry = new Date('2030-01-01T00:00:00Z');
    ebs
      .on(ListSnapshotBlocksCommand)
      .resolvesOnce({ Blocks: [{ BlockIndex: 10, BlockToken: 'a' }], VolumeSize: 4, ExpiryTime: expiry, NextToken: 'p2' })
      .resolvesOnce({ Blocks: [], VolumeSize: 4, NextToken: 'p3' })
      .resolvesOnce({ Blocks: [{ BlockIndex: 11, BlockToken: 'b' }], VolumeSize: 4 });
    const pages = [];
    for await (const page of store.listBlocks('snap-0abc', { startingBlockIndex: 10, pageSize: 500 })) pages.push(page);
    expect(pages).toEqual([
      { blocks: [{ index: 10, token: 'a' }], volumeSizeGiB: 4, expiresAt: expiry },
      { blocks: [], volumeSizeGiB: 4 },
      { blocks: [{ index: 11, token: 'b' }], volumeSizeGiB: 4 },
    ]);
    expect(ebs.commandCalls(ListSnapshotBlocksCommand).map((c) => c.args[0].input)).toEqual([
      { SnapshotId: 'snap-0abc', MaxResults: 500, StartingBlockIndex: 10 },
      { SnapshotId: 'snap-0abc', MaxResults: 500, NextToken: 'p2' },
      { SnapshotId: 'snap-0abc', MaxResults: 500, NextToken: 'p3' },
    ]);
  });

  it('ListChangedBlocks: maps First and Second tokens, keeps absent ones absent, pages on', async () => {
    ebs
      .on(ListChangedBlocksCommand)
      .resolvesOnce({
        ChangedBlocks: [
          { BlockIndex: 1, FirstBlockToken: 'f1', SecondBlockToken: 's1' },
          { BlockIndex: 3, SecondBlockToken: 's3' },
        ],
        VolumeSize: 2,
        NextToken: 'n',
      })
      .resolvesOnce({ ChangedBlocks: [{ BlockIndex: 4, FirstBlockToken: 'f4' }], VolumeSize: 2 });
    expect(await collect(store.listChangedBlocks('snap-0first', 'snap-0second'))).toEqual([
      [
        { index: 1, firstToken: 'f1', secondToken: 's1' },
        { index: 3, secondToken: 's3' },
      ],
      [{ index: 4, firstToken: 'f4' }],
    ]);
    const inputs = ebs.commandCalls(ListChangedBlocksCommand).map((c) => c.args[0].input);
    expect(inputs).toEqual([
      { FirstSnapshotId: 'snap-0first', SecondSnapshotId: 'snap-0second' },
      { FirstSnapshotId: 'snap-0first', SecondSnapshotId: 'snap-0second', NextToken: 'n' },
    ]);
  });

  it('ListChangedBlocks without a first snapshot sends no FirstSnapshotId', async () => {
    ebs.on(ListChangedBlocksCommand).resolves({ ChangedBlocks: [], VolumeSize: 1 });
    await collect(store.listChangedBlocks('', 'snap-0second'));
    expect(ebs.commandCalls(ListChangedBlocksCommand)[0]!.args[0].input).toEqual({ SecondSnapshotId: 'snap-0second' });
  });

  it('GetSnapshotBlock: joins the body chunks into one block and passes the checksum on', async () => {
    const block = Buffer.alloc(BLOCK_SIZE, 9);
    const chunks = [block.subarray(0, 1000), block.subarray(1000, 300_000), block.subarray(300_000)];
    ebs.on(GetSnapshotBlockCommand).resolves({ BlockData: Readable.from(chunks) as never, Checksum: 'sum', DataLength: BLOCK_SIZE, ChecksumAlgorithm: 'SHA256' });
    const read = await store.getBlock('snap-0abc', 5, 'tok');
    expect(read.checksum).toBe('sum');
    expect(read.data.equals(block)).toBe(true);
    expect(ebs.commandCalls(GetSnapshotBlockCommand)[0]!.args[0].input).toEqual({ SnapshotId: 'snap-0abc', BlockIndex: 5, BlockToken: 'tok' });
  });

  it('GetSnapshotBlock: an answer without a checksum is refused and its body released', async () => {
    const body = Readable.from([Buffer.alloc(BLOCK_SIZE)]);
    ebs.on(GetSnapshotBlockCommand).resolves({ BlockData: body as never, DataLength: BLOCK_SIZE });
    expect((await rejection(store.getBlock('snap-0abc', 5, 'tok'))).code).toBe(ErrorCodes.REMOTE_REJECTED);
    expect(body.destroyed).toBe(true);
  });

  it('GetSnapshotBlock: a body cut short is UNAVAILABLE and retryable', async () => {
    ebs.on(GetSnapshotBlockCommand).resolves({ BlockData: Readable.from([Buffer.alloc(1000)]) as never, Checksum: 'sum' });
    const error = await rejection(store.getBlock('snap-0abc', 5, 'tok'));
    expect(error).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: true });
  });

  describe('maps every row of the AWS-FACTS errors table', () => {
    const meta = (httpStatusCode: number) => ({ $metadata: { httpStatusCode, requestId: 'req-1' } });
    const generic = (name: string, httpStatusCode: number, message: string) =>
      new EBSServiceException({ name, $fault: httpStatusCode >= 500 ? 'server' : 'client', message, ...meta(httpStatusCode) });

    const rows: Array<{ row: string; error: () => Error; code: ErrorCode; retryable: boolean; reason?: string }> = [
      { row: 'ThrottlingException', error: () => generic('ThrottlingException', 400, 'Rate exceeded'), code: ErrorCodes.THROTTLED, retryable: true },
      ...['ACCOUNT_THROTTLED', 'DEPENDENCY_REQUEST_THROTTLED', 'RESOURCE_LEVEL_THROTTLE'].map((reason) => ({
        row: `RequestThrottledException ${reason}`,
        error: () => new RequestThrottledException({ message: 'slow down', Reason: reason as never, ...meta(400) }),
        code: ErrorCodes.THROTTLED,
        retryable: true,
        reason,
      })),
      { row: 'InternalServerException', error: () => new InternalServerException({ message: 'oops', ...meta(500) }), code: ErrorCodes.UNAVAILABLE, retryable: true },
      {
        row: 'ValidationException "Failed to read block data"',
        error: () => new ValidationException({ message: 'Failed to read block data', Reason: 'INVALID_PARAMETER_VALUE', ...meta(400) }),
        code: ErrorCodes.UNAVAILABLE,
        retryable: true,
        reason: 'INVALID_PARAMETER_VALUE',
      },
      ...['INVALID_BLOCK_TOKEN', 'UNRELATED_SNAPSHOTS', 'CONFLICTING_BLOCK_UPDATE', 'WRITE_REQUEST_TIMEOUT'].map((reason) => ({
        row: `ValidationException ${reason}`,
        error: () => new ValidationException({ message: 'refused', Reason: reason as never, ...meta(400) }),
        code: ErrorCodes.REMOTE_REJECTED,
        retryable: false,
        reason,
      })),
      {
        row: 'ValidationException about the checksum',
        error: () => new ValidationException({ message: 'The checksum does not match the data', Reason: 'INVALID_PARAMETER_VALUE', ...meta(400) }),
        code: ErrorCodes.CHECKSUM_MISMATCH,
        retryable: false,
      },
      {
        row: 'ValidationException about a malformed checksum header',
        error: () => new ValidationException({ message: 'x-amz-Checksum-Algorithm must be SHA256.', Reason: 'INVALID_PARAMETER_VALUE', ...meta(400) }),
        code: ErrorCodes.REMOTE_REJECTED,
        retryable: false,
      },
      {
        row: 'ResourceNotFoundException',
        error: () => new ResourceNotFoundException({ message: 'no such snapshot', Reason: 'SNAPSHOT_NOT_FOUND', ...meta(404) }),
        code: ErrorCodes.NOT_FOUND,
        retryable: false,
        reason: 'SNAPSHOT_NOT_FOUND',
      },
      {
        row: 'AccessDeniedException',
        error: () => new AccessDeniedException({ message: 'not allowed', Reason: 'UNAUTHORIZED_ACCOUNT', ...meta(403) }),
        code: ErrorCodes.ACCESS_DENIED,
        retryable: false,
        reason: 'UNAUTHORIZED_ACCOUNT',
      },
      { row: 'InvalidSignatureException', error: () => generic('InvalidSignatureException', 403, 'bad signature'), code: ErrorCodes.ACCESS_DENIED, retryable: false },
      { row: 'ConflictException', error: () => new ConflictException({ message: 'token reused', ...meta(409) }), code: ErrorCodes.CONFLICT, retryable: false },
      {
        row: 'ServiceQuotaExceededException',
        error: () => new ServiceQuotaExceededException({ message: 'quota', Reason: 'DEPENDENCY_SERVICE_QUOTA_EXCEEDED', ...meta(402) }),
        code: ErrorCodes.QUOTA_EXCEEDED,
        retryable: false,
      },
      {
        row: 'ConcurrentLimitExceededException',
        error: () => new ConcurrentLimitExceededException({ message: 'too many pending', ...meta(400) }),
        code: ErrorCodes.QUOTA_EXCEEDED,
        retryable: false,
      },
      { row: 'an unmodelled 503', error: () => generic('ServiceUnavailable', 503, 'busy'), code: ErrorCodes.UNAVAILABLE, retryable: true },
      { row: 'an unmodelled 400', error: () => generic('SomethingNew', 400, 'new'), code: ErrorCodes.REMOTE_REJECTED, retryable: false },
    ];

    it.each(rows)('$row -> $code (retryable $retryable)', async ({ error, code, retryable, reason }) => {
      ebs.on(PutSnapshotBlockCommand).rejects(error());
      const mapped = await rejection(store.putBlock('snap-0abc', 0, Buffer.alloc(BLOCK_SIZE), 'x'));
      expect({ code: mapped.code, retryable: mapped.retryable }).toEqual({ code, retryable });
      expect(mapped.details).toMatchObject({ action: 'ebs:PutSnapshotBlock', awsError: error().name, requestId: 'req-1' });
      if (reason !== undefined) expect(mapped.details?.reason).toBe(reason);
    });

    it('AccessDenied names the action that needs the permission', async () => {
      ebs.on(GetSnapshotBlockCommand).rejects(new AccessDeniedException({ message: 'not allowed', Reason: 'UNAUTHORIZED_ACCOUNT', ...meta(403) }));
      const mapped = await rejection(store.getBlock('snap-0abc', 0, 'tok'));
      expect(mapped.message).toContain('ebs:GetSnapshotBlock');
      expect(mapped.hint).toContain('ebs:GetSnapshotBlock');
    });

    it('errors of listings are mapped too', async () => {
      ebs.on(ListSnapshotBlocksCommand).rejects(new ResourceNotFoundException({ message: 'gone', Reason: 'SNAPSHOT_NOT_FOUND', ...meta(404) }));
      const mapped = await rejection(collect(store.listBlocks('snap-0abc')));
      expect(mapped).toMatchObject({ code: ErrorCodes.NOT_FOUND, details: { action: 'ebs:ListSnapshotBlocks' } });
    });
  });
});

describe('EbsSnapshotStore over real HTTP (loopback)', () => {
  interface Seen {
    method: string;
    url: string;
    headers: http.IncomingHttpHeaders;
    body: Buffer;
  }
  const seen: Seen[] = [];
  let respond: (seen: Seen, res: http.ServerResponse) => void = (_s, res) => res.end();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks) };
      seen.push(request);
      respond(request, res);
    });
  });
  let clients: AwsClients;
  let store: EbsSnapshotStore;

  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    clients = new AwsClients({ name: 'loopback', region: 'us-east-1', endpointUrl: `http://127.0.0.1:${port}`, credentials: CREDENTIALS }, { concurrency: 2 });
    store = new EbsSnapshotStore(clients.ebs());
  });
  afterAll(async () => {
    clients.destroy();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen.length = 0;
  });

  it('sends a block from a SharedArrayBuffer view intact, with the body left out of the signature', async () => {
    respond = (_s, res) => {
      res.writeHead(201, { 'x-amz-Checksum': 'c', 'x-amz-Checksum-Algorithm': 'SHA256' });
      res.end();
    };
    const shared = new SharedArrayBuffer(BLOCK_SIZE * 3);
    const data = new Uint8Array(shared, BLOCK_SIZE, BLOCK_SIZE);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const checksum = checksumOf(sha256(data));
    await store.putBlock('snap-0abc', 3, data, checksum, 50);
    const [request] = seen;
    expect(request?.method).toBe('PUT');
    expect(request?.url).toBe('/snapshots/snap-0abc/blocks/3');
    expect(request?.body.equals(Buffer.from(data))).toBe(true);
    expect(request?.headers).toMatchObject({
      'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
      'x-amz-data-length': '524288',
      'x-amz-checksum': checksum,
      'x-amz-checksum-algorithm': 'SHA256',
      'x-amz-progress': '50',
    });
    expect(request?.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 Credential=test-key\/\d{8}\/us-east-1\/ebs\/aws4_request/);
  });

  it('other calls keep a signed payload', async () => {
    respond = (_s, res) => {
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ Status: 'completed' }));
    };
    expect(await store.completeSnapshot('snap-0abc', 0, 'x')).toBe('completed');
    expect(seen[0]?.headers['x-amz-content-sha256']).not.toBe('UNSIGNED-PAYLOAD');
    expect(seen[0]?.headers).toMatchObject({ 'x-amz-changedblockscount': '0', 'x-amz-checksum-aggregation-method': 'LINEAR' });
  });

  it('reads a block body that arrives in many chunks', async () => {
    const block = Buffer.alloc(BLOCK_SIZE);
    for (let i = 0; i < block.length; i++) block[i] = (i * 7) & 0xff;
    respond = (_s, res) => {
      res.writeHead(200, { 'x-amz-Checksum': 'sum', 'x-amz-Checksum-Algorithm': 'SHA256', 'x-amz-Data-Length': String(BLOCK_SIZE) });
      for (let offset = 0; offset < BLOCK_SIZE; offset += 65_536) res.write(block.subarray(offset, offset + 65_536));
      res.end();
    };
    const read = await store.getBlock('snap-0abc', 1, 'tok');
    expect(read.data.equals(block)).toBe(true);
    expect(seen[0]?.url).toBe('/snapshots/snap-0abc/blocks/1?blockToken=tok');
  });

  it('turns an AWS JSON error answer into the code and keeps its Reason', async () => {
    respond = (_s, res) => {
      res.writeHead(400, { 'content-type': 'application/json', 'x-amzn-ErrorType': 'ValidationException', 'x-amzn-RequestId': 'rid-9' });
      res.end(JSON.stringify({ Message: 'The block token is not valid', Reason: 'INVALID_BLOCK_TOKEN' }));
    };
    const error = await rejection(store.getBlock('snap-0abc', 1, 'bad'));
    expect(error).toMatchObject({ code: ErrorCodes.REMOTE_REJECTED, retryable: false, details: { awsError: 'ValidationException', reason: 'INVALID_BLOCK_TOKEN', httpStatus: 400 } });
  });

  it('a 503 without a modelled body is UNAVAILABLE and retryable', async () => {
    respond = (_s, res) => {
      res.writeHead(503, { 'content-type': 'text/html' });
      res.end('<html>busy</html>');
    };
    const error = await rejection(store.completeSnapshot('snap-0abc', 0, 'x'));
    expect(error).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: true, details: { httpStatus: 503 } });
  });

  it('one attempt per call: the SDK does not retry EBS calls itself', async () => {
    respond = (_s, res) => {
      res.writeHead(500, { 'content-type': 'application/json', 'x-amzn-ErrorType': 'InternalServerException' });
      res.end(JSON.stringify({ Message: 'oops' }));
    };
    await rejection(store.completeSnapshot('snap-0abc', 0, 'x'));
    expect(seen).toHaveLength(1);
  });

  it('a closed port is ENDPOINT_UNREACHABLE, retryable since the SDK made one attempt', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const unreachable = new AwsClients({ name: 'closed', region: 'us-east-1', endpointUrl: `http://127.0.0.1:${port}`, credentials: CREDENTIALS });
    try {
      const error = await rejection(new EbsSnapshotStore(unreachable.ebs()).completeSnapshot('snap-0abc', 0, 'x'));
      expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: true, details: { networkCode: 'ECONNREFUSED' } });
    } finally {
      unreachable.destroy();
    }
  });
});
