import { getEventListeners, once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rejection } from '../../test/support/rejection.js';
import { treeHash } from '../core/checksum.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AwsClients } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { GlacierArchiveStore } from './glacier-archive.js';
import { AdaptiveLimiter, resilientWriter } from './retry.js';
import { S3ArchiveStore } from './s3-archive.js';

/**
 * A run's abort ends the transfers, reads and listings in flight, not the
 * calls that create, seal or delete remote state. The endpoint here is a
 * loopback server that holds every request until the test answers it (or
 * never): only an abort can settle a call never answered, and the server sees
 * the client close the connection. Requests made after the abort go out
 * (clean-up).
 */

interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

interface Held {
  method: string;
  url: string;
  /** Resolves when the client closes the connection of this request. */
  closed: Promise<void>;
  /** Answers the request. */
  answer(answer: Answer): void;
  /** Closes its connection without an answer. */
  drop(): void;
}

class HoldingEndpoint {
  readonly held: Held[] = [];
  /** Answers requests instead of holding them (body, content type). */
  answer: { body: string; type: string } | undefined;
  readonly #server = http.createServer((req, res) => {
    if (this.answer !== undefined) {
      req.resume();
      res.writeHead(200, { 'content-type': this.answer.type }).end(this.answer.body);
      return;
    }
    // Reading the body lets the server see the client's end of the connection.
    req.resume();
    const closed = once(req.socket, 'close').then(() => undefined);
    const answer = ({ status, headers = {}, body = '' }: Answer) => res.writeHead(status, headers).end(body);
    this.held.push({ method: req.method ?? '', url: req.url ?? '', closed, answer, drop: () => req.socket.destroy() });
    this.#server.emit('held');
  });

  async start(): Promise<string> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Resolves once `count` requests are held. */
  async holding(count: number): Promise<Held[]> {
    while (this.held.length < count) await once(this.#server, 'held');
    return this.held.slice(0, count);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, 'close');
  }
}

let endpoint: HoldingEndpoint;
let clients: AwsClients;
let controller: AbortController;

beforeEach(async () => {
  endpoint = new HoldingEndpoint();
  const url = await endpoint.start();
  clients = new AwsClients({ name: 'in-flight-test', region: 'us-east-1', endpointUrl: url, credentials: { accessKeyId: 'key', secretAccessKey: 'secret' } });
  controller = new AbortController();
});

afterEach(async () => {
  clients.destroy();
  await endpoint.close();
});

const interruption = () => new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test');

/** Aborts once the endpoint holds the call's request; the call must then fail INTERRUPTED and its connection close. */
async function interruptedInFlight(call: Promise<unknown>): Promise<SnaplineError> {
  const [request] = await endpoint.holding(1);
  controller.abort(interruption());
  const err = await rejection(call);
  await request!.closed;
  return err;
}

describe('an abort ends the requests in flight', () => {
  it('direct PutSnapshotBlock', async () => {
    const store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), signal: controller.signal });
    const put = await interruptedInFlight(store.putBlock('snap-1', 0, Buffer.alloc(BLOCK_SIZE), 'checksum'));
    expect(put).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'ebs:PutSnapshotBlock was interrupted' });
  });

  it('direct GetSnapshotBlock', async () => {
    const store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), signal: controller.signal });
    const get = await interruptedInFlight(store.getBlock('snap-1', 0, 'token'));
    expect(get).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'ebs:GetSnapshotBlock was interrupted' });
  });

  it('EBS calls through the SDK', async () => {
    const store = new EbsSnapshotStore(clients.ebs(), { signal: controller.signal });
    const err = await interruptedInFlight(store.listBlocks('snap-1')[Symbol.asyncIterator]().next());
    expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'ebs:ListSnapshotBlocks was interrupted' });
  });

  it('EC2 calls, with the SDK retrying; a clean-up call after the abort goes out', async () => {
    const catalog = new Ec2SnapshotCatalog(clients.ec2Requests(), { signal: controller.signal });
    const err = await interruptedInFlight(catalog.describeSnapshots(['snap-1']));
    expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'ec2:DescribeSnapshots was interrupted' });
    // The SDK retried nothing: one request only.
    expect(endpoint.held).toHaveLength(1);

    endpoint.answer = { type: 'text/xml', body: '<DeleteSnapshotResponse><return>true</return></DeleteSnapshotResponse>' };
    await catalog.deleteSnapshot('snap-1');
  });

  it('S3 and Glacier calls', async () => {
    const s3 = new S3ArchiveStore(clients.s3(), 'bucket', { signal: controller.signal });
    const read = s3.getRange('object', 0, 10);
    const [first] = await endpoint.holding(1);
    const glacier = new GlacierArchiveStore(clients.glacier(), 'vault', { signal: controller.signal });
    const part = Buffer.alloc(1024 * 1024);
    const upload = glacier.putPart('name', 'upload-1', 1, 0, part, treeHash(part).toString('hex'));
    const [, second] = await endpoint.holding(2);
    controller.abort(interruption());
    expect(await rejection(read)).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 's3:GetObject was interrupted' });
    expect(await rejection(upload)).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'glacier:UploadMultipartPart was interrupted' });
    await Promise.all([first!.closed, second!.closed]);
  });

  it('the retrying writer does not retry a call the abort ended', async () => {
    const store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), signal: controller.signal });
    const retried: string[] = [];
    const writer = resilientWriter(store, {
      limiter: new AdaptiveLimiter(4),
      signal: controller.signal,
      policy: { baseDelayMs: 0, maxDelayMs: 0 },
      onRetry: (_error, _attempt, operation) => retried.push(operation),
    });
    const err = await interruptedInFlight(writer.putBlock('snap-1', 0, Buffer.alloc(BLOCK_SIZE), 'checksum'));
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    expect(retried).toEqual([]);
    expect(endpoint.held).toHaveLength(1);
  });
});

const JSON_TYPE = { 'content-type': 'application/json' };
const XML_TYPE = { 'content-type': 'text/xml' };
const MIB = 1024 * 1024;
const ARCHIVE = Buffer.from('archive bytes');
const ARCHIVE_HASH = treeHash(ARCHIVE).toString('hex');

/** Aborts once the endpoint holds the call's request, then answers it: a call not cut ends with the answer. */
async function answeredAfterAbort<T>(call: Promise<T>, answer: Answer): Promise<T> {
  const [request] = await endpoint.holding(1);
  controller.abort(interruption());
  request!.answer(answer);
  return call;
}

describe('an abort does not cut the calls that create, seal or delete remote state', () => {
  const ebs = () => new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), signal: controller.signal });
  const ec2 = () => new Ec2SnapshotCatalog(clients.ec2Requests(), { signal: controller.signal });
  const s3 = () => new S3ArchiveStore(clients.s3(), 'bucket', { signal: controller.signal });
  const glacier = () => new GlacierArchiveStore(clients.glacier(), 'vault', { signal: controller.signal });
  const cases: Array<{ action: string; call: () => Promise<unknown>; answer: Answer; expected?: unknown }> = [
    {
      action: 'ebs:StartSnapshot',
      call: () => ebs().startSnapshot({ volumeSizeGiB: 1 }),
      answer: { status: 201, headers: JSON_TYPE, body: JSON.stringify({ SnapshotId: 'snap-1', Status: 'pending', VolumeSize: 1, BlockSize: BLOCK_SIZE }) },
      expected: { snapshotId: 'snap-1' },
    },
    {
      action: 'ebs:CompleteSnapshot',
      call: () => ebs().completeSnapshot('snap-1', 0, 'aggregate'),
      answer: { status: 202, headers: JSON_TYPE, body: JSON.stringify({ Status: 'completed' }) },
      expected: 'completed',
    },
    {
      action: 'ec2:DeleteSnapshot',
      call: () => ec2().deleteSnapshot('snap-1'),
      answer: { status: 200, headers: XML_TYPE, body: '<DeleteSnapshotResponse><return>true</return></DeleteSnapshotResponse>' },
    },
    {
      action: 'ec2:CreateTags',
      call: () => ec2().createTags('snap-1', { name: 'value' }),
      answer: { status: 200, headers: XML_TYPE, body: '<CreateTagsResponse><return>true</return></CreateTagsResponse>' },
    },
    { action: 's3:PutObject', call: () => s3().putObject('key', ARCHIVE, ARCHIVE_HASH), answer: { status: 200 }, expected: { ref: 'key' } },
    {
      action: 's3:CreateMultipartUpload',
      call: () => s3().startUpload('key', MIB),
      answer: { status: 200, headers: XML_TYPE, body: '<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>key</Key><UploadId>upload-1</UploadId></InitiateMultipartUploadResult>' },
      expected: 'upload-1',
    },
    {
      action: 's3:CompleteMultipartUpload',
      call: () => s3().completeUpload('key', 'upload-1', [{ partNumber: 1, sizeBytes: ARCHIVE.byteLength, checksum: '"etag"' }], ARCHIVE.byteLength, ARCHIVE_HASH),
      answer: { status: 200, headers: XML_TYPE, body: '<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>key</Key><ETag>"etag"</ETag></CompleteMultipartUploadResult>' },
      expected: { ref: 'key' },
    },
    { action: 's3:AbortMultipartUpload', call: () => s3().abortUpload('key', 'upload-1'), answer: { status: 204 } },
    { action: 's3:RestoreObject', call: () => s3().requestRestore('key', { tier: 'Bulk', days: 1 }), answer: { status: 202 }, expected: { state: 'in-progress' } },
    { action: 's3:DeleteObject', call: () => s3().deleteObject('key'), answer: { status: 204 } },
    {
      action: 'glacier:UploadArchive',
      call: () => glacier().putObject('name', ARCHIVE, ARCHIVE_HASH),
      answer: { status: 201, headers: { 'x-amz-archive-id': 'archive-1', 'x-amz-sha256-tree-hash': ARCHIVE_HASH, location: '/-/vaults/vault/archives/archive-1' } },
      expected: { ref: 'archive-1' },
    },
    { action: 'glacier:InitiateMultipartUpload', call: () => glacier().startUpload('name', MIB), answer: { status: 201, headers: { 'x-amz-multipart-upload-id': 'upload-1' } }, expected: 'upload-1' },
    {
      action: 'glacier:CompleteMultipartUpload',
      call: () => glacier().completeUpload('name', 'upload-1', [], ARCHIVE.byteLength, ARCHIVE_HASH),
      answer: { status: 201, headers: { 'x-amz-archive-id': 'archive-1' } },
      expected: { ref: 'archive-1' },
    },
    { action: 'glacier:AbortMultipartUpload', call: () => glacier().abortUpload('name', 'upload-1'), answer: { status: 204 } },
    { action: 'glacier:InitiateJob', call: () => glacier().requestRestore('archive-1', { tier: 'Bulk', days: 1 }), answer: { status: 202, headers: { 'x-amz-job-id': 'job-1' } }, expected: { job: 'job-1' } },
    { action: 'glacier:DeleteArchive', call: () => glacier().deleteObject('archive-1'), answer: { status: 204 } },
  ];

  for (const { action, call, answer, expected } of cases) {
    it(action, async () => {
      const value = await answeredAfterAbort(call(), answer);
      if (typeof expected === 'object') expect(value).toMatchObject(expected as object);
      else expect(value).toBe(expected);
      expect(endpoint.held).toHaveLength(1);
    });
  }
});

describe("the listener on the run's signal", () => {
  const listeners = () => getEventListeners(controller.signal, 'abort').length;
  const emptyListing = { status: 200, headers: JSON_TYPE, body: JSON.stringify({ Blocks: [], VolumeSize: 1 }) };

  it('is there only while requests that an abort cuts are in flight: one per store, none once they settle', async () => {
    const stores = Array.from({ length: 3 }, () => new EbsSnapshotStore(clients.ebs(), { signal: controller.signal }));
    expect(listeners()).toBe(0);
    const listings = stores.flatMap((store) => [store.listBlocks('snap-1'), store.listBlocks('snap-2')].map((listing) => listing[Symbol.asyncIterator]().next()));
    const held = await endpoint.holding(6);
    expect(listeners()).toBe(3);
    for (const request of held) request.answer(emptyListing);
    await Promise.all(listings);
    expect(listeners()).toBe(0);

    // A request the abort does not cut adds none.
    const started = stores[0]!.startSnapshot({ volumeSizeGiB: 1 });
    const [, , , , , , start] = await endpoint.holding(7);
    expect(listeners()).toBe(0);
    start!.answer({ status: 201, headers: JSON_TYPE, body: JSON.stringify({ SnapshotId: 'snap-1', Status: 'pending', VolumeSize: 1 }) });
    await started;
  });
});

describe('the endpoint contact', () => {
  it('is marked by an answer to any store that shares it', async () => {
    const contact = { reached: false };
    endpoint.answer = { type: 'text/xml', body: '<DescribeSnapshotsResponse><snapshotSet/></DescribeSnapshotsResponse>' };
    await new Ec2SnapshotCatalog(clients.ec2Requests(), { contact }).describeSnapshots(['snap-1']);
    expect(contact.reached).toBe(true);
  });

  it('is marked by a connection that broke and by a block body of the wrong length', async () => {
    const broken = { reached: false };
    const put = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), contact: broken }).putBlock('snap-1', 0, Buffer.alloc(BLOCK_SIZE), 'checksum');
    const [first] = await endpoint.holding(1);
    first!.drop();
    expect(await rejection(put)).toMatchObject({ code: ErrorCodes.UNAVAILABLE });
    expect(broken.reached).toBe(true);

    const short = { reached: false };
    const get = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), contact: short }).getBlock('snap-1', 0, 'token');
    const [, second] = await endpoint.holding(2);
    second!.answer({ status: 200, headers: { 'x-amz-checksum': 'checksum', 'x-amz-data-length': String(BLOCK_SIZE) }, body: 'short' });
    expect(await rejection(get)).toMatchObject({ code: ErrorCodes.UNAVAILABLE });
    expect(short.reached).toBe(true);
  });

  it('is not marked by a connection refused', async () => {
    const closed = new HoldingEndpoint();
    const url = await closed.start();
    await closed.close();
    const nowhere = new AwsClients({ name: 'in-flight-test', region: 'us-east-1', endpointUrl: url, credentials: { accessKeyId: 'key', secretAccessKey: 'secret' } });
    try {
      const contact = { reached: false };
      const store = new EbsSnapshotStore(nowhere.ebs(), { direct: nowhere.ebsBlockRequests(), contact });
      expect(await rejection(store.putBlock('snap-1', 0, Buffer.alloc(BLOCK_SIZE), 'checksum'))).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE });
      expect(await rejection(new S3ArchiveStore(nowhere.s3(), 'bucket', { contact }).deleteObject('key'))).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE });
      expect(contact.reached).toBe(false);
    } finally {
      nowhere.destroy();
    }
  });
});
