import http from 'node:http';
import https from 'node:https';
import { Socket, createServer, type AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checksumOf, linearAggregateOf, sha256 } from '../core/checksum.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { startEmulator, type FaultSettings, type RunningEmulator } from '../emulator/index.js';
import { SnaplineError } from '../errors.js';
import { AnsweredEndpoints } from './answers.js';
import { AwsClients } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { rejection } from '../../test/support/rejection.js';

/**
 * The direct block requests against the local endpoint over HTTP, with the
 * endpoint checking SigV4 signatures: every outcome (success, each refusal,
 * each injected fault, a network failure) must be the one the SDK path gives
 * for the same request, code, retryable flag and reason alike.
 */

const KEY = { accessKeyId: 'direct-test-key', secretAccessKey: 'direct-test-secret' };

let dir: string;
let endpoint: RunningEmulator;
let clients: AwsClients;
let sdk: EbsSnapshotStore;
let direct: EbsSnapshotStore;

function clientsFor(endpointUrl: string, credentials = KEY): AwsClients {
  return new AwsClients({ name: 'direct-test', region: 'us-east-1', endpointUrl, credentials }, { concurrency: 4 });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-direct-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), auth: [KEY], log: () => {} });
  clients = clientsFor(endpoint.url);
  sdk = new EbsSnapshotStore(clients.ebs());
  direct = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests() });
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  endpoint.setFaults({});
});

function block(): { data: Buffer; checksum: string } {
  const data = randomBytes(BLOCK_SIZE);
  return { data, checksum: checksumOf(sha256(data)) };
}

/** The outcome of a call, comparable across the two paths. */
async function outcome(call: Promise<unknown>): Promise<{ ok: true } | { code: string; retryable: boolean; reason: unknown; awsError: unknown }> {
  try {
    await call;
    return { ok: true };
  } catch (err) {
    if (!(err instanceof SnaplineError)) throw err;
    return { code: err.code, retryable: err.retryable, reason: err.details?.reason, awsError: err.details?.awsError };
  }
}

async function pendingSnapshot(): Promise<string> {
  return (await sdk.startSnapshot({ volumeSizeGiB: 1 })).snapshotId;
}

async function completedSnapshotWith(blocks: Array<{ data: Buffer; checksum: string }>): Promise<{ snapshotId: string; tokens: string[] }> {
  const snapshotId = await pendingSnapshot();
  for (const [i, b] of blocks.entries()) await direct.putBlock(snapshotId, i, b.data, b.checksum);
  await sdk.completeSnapshot(snapshotId, blocks.length, linearAggregateOf(blocks.map((b, index) => ({ index, digest: sha256(b.data) }))));
  const tokens: string[] = [];
  for await (const page of sdk.listBlocks(snapshotId)) tokens.push(...page.blocks.map((b) => b.token));
  return { snapshotId, tokens };
}

describe('a host clock 20 minutes behind the endpoint (signatures and signing times checked)', () => {
  it('the first refusal corrects the client clock from the Date header, as on the SDK path, and the next request goes through', async () => {
    const ahead = await startEmulator({ dataDir: join(dir, 'ahead'), auth: [KEY], log: () => {}, now: () => Date.now() + 20 * 60_000 });
    const skewed = clientsFor(ahead.url);
    const fresh = clientsFor(ahead.url);
    try {
      const directSkewed = new EbsSnapshotStore(skewed.ebs(), { direct: skewed.ebsBlockRequests() });
      const good = block();
      const refused = await outcome(directSkewed.putBlock('snap-0123456789abcdef0', 0, good.data, good.checksum));
      expect(refused).toEqual({ code: 'ACCESS_DENIED', retryable: true, reason: undefined, awsError: 'InvalidSignatureException' });
      // The same first refusal through the SDK's own path.
      expect(await outcome(new EbsSnapshotStore(fresh.ebs()).startSnapshot({ volumeSizeGiB: 1 }))).toEqual(refused);
      const offset = (skewed.ebs().config as { systemClockOffset?: number }).systemClockOffset ?? 0;
      expect(Math.abs(offset - 20 * 60_000)).toBeLessThan(60_000);
      const { snapshotId } = await directSkewed.startSnapshot({ volumeSizeGiB: 1 });
      await directSkewed.putBlock(snapshotId, 0, good.data, good.checksum);
    } finally {
      skewed.destroy();
      fresh.destroy();
      await ahead.close();
    }
  });
});

describe('direct block requests against the endpoint (signatures checked)', () => {
  it('a block written directly reads back the same through both paths, from a view over shared memory', async () => {
    const snapshotId = await pendingSnapshot();
    const shared = new Uint8Array(new SharedArrayBuffer(3 * BLOCK_SIZE));
    shared.set(randomBytes(BLOCK_SIZE), BLOCK_SIZE);
    const view = shared.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE);
    await direct.putBlock(snapshotId, 7, view, checksumOf(sha256(view)), 42);
    await sdk.completeSnapshot(snapshotId, 1, linearAggregateOf([{ index: 7, digest: sha256(view) }]));
    let token = '';
    for await (const listed of sdk.listBlocks(snapshotId)) token = listed.blocks[0]?.token ?? token;
    const viaDirect = await direct.getBlock(snapshotId, 7, token);
    const viaSdk = await sdk.getBlock(snapshotId, 7, token);
    expect(viaDirect.data.equals(Buffer.from(view))).toBe(true);
    expect(viaDirect.checksum).toBe(checksumOf(sha256(view)));
    expect(viaSdk).toEqual(viaDirect);
  });

  it('a block token holding +, / and = survives the query string', async () => {
    const blocks = Array.from({ length: 40 }, block);
    const { snapshotId, tokens } = await completedSnapshotWith(blocks);
    expect(tokens.some((token) => /[+/=]/.test(token))).toBe(true);
    for (const [i, token] of tokens.entries()) expect((await direct.getBlock(snapshotId, i, token)).data.equals(blocks[i]!.data)).toBe(true);
  });

  it('every refusal and injected fault comes out as on the SDK path', async () => {
    const { snapshotId: completed, tokens } = await completedSnapshotWith([block()]);
    const pending = await pendingSnapshot();
    const good = block();
    const cases: Array<{ name: string; faults?: FaultSettings; put?: (store: EbsSnapshotStore) => Promise<unknown>; get?: (store: EbsSnapshotStore) => Promise<unknown> }> = [
      { name: 'wrong checksum', put: (s) => s.putBlock(pending, 1, good.data, block().checksum) },
      { name: 'unknown snapshot', put: (s) => s.putBlock('snap-0123456789abcdef0', 1, good.data, good.checksum) },
      { name: 'malformed snapshot id', put: (s) => s.putBlock('not-a-snapshot', 1, good.data, good.checksum) },
      { name: 'block outside the volume', put: (s) => s.putBlock(pending, 2048, good.data, good.checksum) },
      { name: 'write to a completed snapshot', put: (s) => s.putBlock(completed, 1, good.data, good.checksum) },
      { name: 'bad block token', get: (s) => s.getBlock(completed, 0, 'AAAA') },
      { name: 'token of another block', get: (s) => s.getBlock(completed, 1, tokens[0]!) },
      { name: 'throttled', faults: { throttleRate: 1 }, put: (s) => s.putBlock(pending, 3, good.data, good.checksum), get: (s) => s.getBlock(completed, 0, tokens[0]!) },
      { name: 'internal error', faults: { errorRate: 1 }, put: (s) => s.putBlock(pending, 3, good.data, good.checksum), get: (s) => s.getBlock(completed, 0, tokens[0]!) },
      { name: 'connection reset', faults: { resetRate: 1 }, put: (s) => s.putBlock(pending, 3, good.data, good.checksum), get: (s) => s.getBlock(completed, 0, tokens[0]!) },
      {
        name: 'rate limit',
        faults: { rateLimit: 1 },
        put: async (s) => {
          await s.putBlock(pending, 4, good.data, good.checksum);
          await s.putBlock(pending, 5, good.data, good.checksum);
        },
      },
    ];
    for (const testCase of cases) {
      for (const call of [testCase.put, testCase.get]) {
        if (call === undefined) continue;
        endpoint.setFaults(testCase.faults ?? {});
        const viaSdk = await outcome(call(sdk));
        endpoint.setFaults(testCase.faults ?? {});
        const viaDirect = await outcome(call(direct));
        expect(viaDirect, testCase.name).toEqual(viaSdk);
        expect(viaDirect, `${testCase.name} must fail`).not.toEqual({ ok: true });
      }
    }
  });

  it('a wrong secret is refused like on the SDK path (ACCESS_DENIED, not retried)', async () => {
    const wrong = clientsFor(endpoint.url, { ...KEY, secretAccessKey: 'not-the-secret' });
    try {
      const pending = await pendingSnapshot();
      const good = block();
      const viaSdk = await outcome(new EbsSnapshotStore(wrong.ebs()).putBlock(pending, 0, good.data, good.checksum));
      const viaDirect = await outcome(new EbsSnapshotStore(wrong.ebs(), { direct: wrong.ebsBlockRequests() }).putBlock(pending, 0, good.data, good.checksum));
      expect(viaDirect).toEqual(viaSdk);
      expect(viaDirect).toMatchObject({ code: 'ACCESS_DENIED', retryable: false });
    } finally {
      wrong.destroy();
    }
  });

  it('a closed port is ENDPOINT_UNREACHABLE and retryable on both paths', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const closed = clientsFor(`http://127.0.0.1:${port}`);
    try {
      const good = block();
      const viaSdk = await outcome(new EbsSnapshotStore(closed.ebs()).putBlock('snap-0123456789abcdef0', 0, good.data, good.checksum));
      const viaDirect = await outcome(new EbsSnapshotStore(closed.ebs(), { direct: closed.ebsBlockRequests() }).putBlock('snap-0123456789abcdef0', 0, good.data, good.checksum));
      expect(viaDirect).toEqual(viaSdk);
      expect(viaDirect).toMatchObject({ code: 'ENDPOINT_UNREACHABLE', retryable: true });
    } finally {
      closed.destroy();
    }
  });
});

describe('direct block requests on the wire', () => {
  it('a body cut short is UNAVAILABLE and retryable; an answer without a checksum is refused', async () => {
    let answer: (res: http.ServerResponse) => void = (res) => res.end();
    const server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => answer(res));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const loopback = clientsFor(`http://127.0.0.1:${port}`);
    const store = new EbsSnapshotStore(loopback.ebs(), { direct: loopback.ebsBlockRequests() });
    try {
      answer = (res) => {
        res.writeHead(200, { 'x-amz-Checksum': 'abc', 'x-amz-Data-Length': String(BLOCK_SIZE), 'content-length': String(BLOCK_SIZE) });
        res.write(Buffer.alloc(1000), () => res.socket?.destroy());
      };
      expect(await outcome(store.getBlock('snap-0123456789abcdef0', 0, 'token'))).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
      answer = (res) => {
        res.writeHead(200, { 'x-amz-Data-Length': String(BLOCK_SIZE) });
        res.end(Buffer.alloc(BLOCK_SIZE));
      };
      expect(await outcome(store.getBlock('snap-0123456789abcdef0', 0, 'token'))).toMatchObject({ code: 'REMOTE_REJECTED', retryable: false });
      answer = (res) => {
        res.writeHead(503, { 'content-type': 'text/html' });
        res.end('<html>busy</html>');
      };
      expect(await outcome(store.putBlock('snap-0123456789abcdef0', 0, Buffer.alloc(BLOCK_SIZE), 'c'))).toMatchObject({ code: 'UNAVAILABLE', retryable: true });
    } finally {
      loopback.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a web server is the wrong endpoint on the direct path too: ENDPOINT_UNREACHABLE, not retried', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>hello</html>');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const web = clientsFor(`http://127.0.0.1:${port}`);
    try {
      const store = new EbsSnapshotStore(web.ebs(), { direct: web.ebsBlockRequests() });
      const read = await rejection(store.getBlock('snap-0123456789abcdef0', 0, 'token'));
      expect(read).toMatchObject({ code: 'ENDPOINT_UNREACHABLE', retryable: false });
      expect(read.message).toMatch(/^ebs:GetSnapshotBlock: http:\/\/127\.0\.0\.1:\d+ answered HTTP 200 with text\/html .*it is not the EBS direct API endpoint$/);
      expect(await outcome(store.putBlock('snap-0123456789abcdef0', 0, Buffer.alloc(BLOCK_SIZE), 'c'))).toMatchObject({ code: 'ENDPOINT_UNREACHABLE', retryable: false });
    } finally {
      web.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a port that never answers fails a block write once, after the read timeout: ENDPOINT_UNREACHABLE', async () => {
    const sockets = new Set<Socket>();
    const server = createServer((socket) => sockets.add(socket.resume()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const silent = new AwsClients({ name: 'silent', region: 'us-east-1', endpointUrl: `http://127.0.0.1:${port}`, credentials: KEY, readTimeoutMs: 200 }, { concurrency: 1 });
    try {
      const store = new EbsSnapshotStore(silent.ebs(), { direct: silent.ebsBlockRequests() });
      const error = await rejection(store.putBlock('snap-0123456789abcdef0', 0, Buffer.alloc(BLOCK_SIZE), 'c'));
      expect(error).toMatchObject({ code: 'ENDPOINT_UNREACHABLE', retryable: false });
      expect(error.message).toMatch(/accepted the connection but sent no answer within 0\.2 s: it is not a working EBS direct API endpoint$/);
    } finally {
      silent.destroy();
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('a server that goes quiet after it has answered is dropped after the read timeout: UNAVAILABLE, retryable', async () => {
    let answered = 0;
    const server = http.createServer((_req, res) => {
      // Answers the first request as EBS would, then never again.
      if (answered++ > 0) return;
      res.writeHead(404, { 'content-type': 'application/json', 'x-amzn-requestid': 'r', 'x-amzn-errortype': 'ResourceNotFoundException' });
      res.end('{"message":"no such snapshot"}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const quiet = new AwsClients({ name: 'quiet', region: 'us-east-1', endpointUrl: `http://127.0.0.1:${port}`, credentials: KEY, readTimeoutMs: 200 }, { concurrency: 1 });
    try {
      const store = new EbsSnapshotStore(quiet.ebs(), { direct: quiet.ebsBlockRequests() });
      expect(await outcome(store.getBlock('snap-0123456789abcdef0', 0, 'token'))).toMatchObject({ code: 'NOT_FOUND' });
      expect(await outcome(store.getBlock('snap-0123456789abcdef0', 0, 'token'))).toMatchObject({ code: 'UNAVAILABLE', retryable: true, awsError: 'TimeoutError' });
    } finally {
      quiet.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('without a custom endpoint it goes where the endpoint rules of the SDK say (https, regional host)', async () => {
    const aws = new AwsClients({ name: 'aws', region: 'eu-west-1', credentials: KEY }, { concurrency: 1 });
    const { DirectBlockRequests } = await import('./block-requests.js');
    const asked: Array<{ host: unknown; port: unknown }> = [];
    const agent = new https.Agent();
    // Record where the request goes and fail it before any network use.
    agent.createConnection = (options) => {
      asked.push({ host: options.host, port: options.port });
      const socket = new Socket();
      process.nextTick(() => socket.destroy(Object.assign(new Error('no network in tests'), { code: 'ECONNREFUSED' })));
      return socket;
    };
    try {
      const requests = new DirectBlockRequests(aws.ebs(), { httpAgent: new http.Agent(), httpsAgent: agent, connectTimeoutMs: 1000, readTimeoutMs: 1000, answered: new AnsweredEndpoints() });
      expect(await outcome(requests.getBlock('snap-0123456789abcdef0', 0, 'token'))).toMatchObject({ code: 'ENDPOINT_UNREACHABLE' });
      expect(asked).toEqual([{ host: 'ebs.eu-west-1.amazonaws.com', port: 443 }]);
    } finally {
      agent.destroy();
      aws.destroy();
    }
  });

  it('a Region that does not exist: the endpoint rules make its host, DNS does not know it, the message names the Region', async () => {
    const aws = new AwsClients({ name: 'aws', region: 'mars-north-7', credentials: KEY }, { concurrency: 1 });
    const { DirectBlockRequests } = await import('./block-requests.js');
    const agent = new https.Agent();
    // What getaddrinfo answers for a name that does not exist, without asking a DNS server.
    agent.createConnection = (options) => {
      const socket = new Socket();
      const host = String(options.host);
      process.nextTick(() => socket.destroy(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: host })));
      return socket;
    };
    try {
      const requests = new DirectBlockRequests(aws.ebs(), { httpAgent: new http.Agent(), httpsAgent: agent, connectTimeoutMs: 1000, readTimeoutMs: 1000, answered: new AnsweredEndpoints() });
      const error = await rejection(requests.getBlock('snap-0123456789abcdef0', 0, 'token'));
      expect(error).toMatchObject({ code: 'ENDPOINT_UNREACHABLE', message: 'ebs:GetSnapshotBlock: mars-north-7 is not an AWS Region (ebs.mars-north-7.amazonaws.com does not exist)' });
    } finally {
      agent.destroy();
      aws.destroy();
    }
  });
});
