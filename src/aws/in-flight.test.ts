import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { rejection } from '../../test/support/rejection.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AwsClients } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { GlacierArchiveStore } from './glacier-archive.js';
import { AdaptiveLimiter, resilientWriter } from './retry.js';
import { S3ArchiveStore } from './s3-archive.js';

/**
 * A run's abort ends the requests in flight. The endpoint here is a loopback
 * server that holds every request it is told to hold and never answers it:
 * only an abort can settle such a call, and the server sees the client close
 * the connection. Requests made after the abort go out (clean-up).
 */

interface Held {
  method: string;
  url: string;
  /** Resolves when the client closes the connection of this request. */
  closed: Promise<void>;
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
    this.held.push({ method: req.method ?? '', url: req.url ?? '', closed });
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
    const err = await interruptedInFlight(store.startSnapshot({ volumeSizeGiB: 1 }));
    expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'ebs:StartSnapshot was interrupted' });
  });

  it('EC2 calls, with the SDK retrying; a clean-up call after the abort goes out', async () => {
    const catalog = new Ec2SnapshotCatalog(clients.ec2(), { signal: controller.signal });
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
    const upload = glacier.startUpload('name', 1024 * 1024);
    const [, second] = await endpoint.holding(2);
    controller.abort(interruption());
    expect(await rejection(read)).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 's3:GetObject was interrupted' });
    expect(await rejection(upload)).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'glacier:InitiateMultipartUpload was interrupted' });
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
