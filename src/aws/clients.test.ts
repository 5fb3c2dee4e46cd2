import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { EXCHANGE_FIRST_BYTE_MS, firstByteTimeoutMs } from './answers.js';
import { AwsClients, type ConnectionSettings } from './clients.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { EbsSnapshotStore } from './ebs.js';
import { rejection } from '../../test/support/rejection.js';

const CREDENTIALS = { accessKeyId: 'static-key', secretAccessKey: 'static-secret' };
const EC2_ENCRYPTION_XML =
  '<?xml version="1.0" encoding="UTF-8"?><GetEbsEncryptionByDefaultResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">' +
  '<requestId>r</requestId><ebsEncryptionByDefault>true</ebsEncryptionByDefault></GetEbsEncryptionByDefaultResponse>';

interface Loopback {
  url: string;
  requests: http.IncomingMessage[];
  /** The body of each request, in the order of `requests`. */
  bodies: string[];
  connections: number;
  /** How the next requests are answered; the default completes a snapshot. */
  respond: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  close(): Promise<void>;
}

function completed(_req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(202, { 'content-type': 'application/json' });
  res.end('{"Status":"completed"}');
}

async function loopback(create: (handler: http.RequestListener) => http.Server = (h) => http.createServer(h), scheme = 'http'): Promise<Loopback> {
  const state: Loopback = {
    url: '',
    requests: [],
    bodies: [],
    connections: 0,
    respond: completed,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
  const server = create((req, res) => {
    state.requests.push(req);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      state.bodies.push(Buffer.concat(chunks).toString('utf8'));
      state.respond(req, res);
    });
  });
  server.on(scheme === 'https' ? 'secureConnection' : 'connection', () => (state.connections += 1));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `${scheme}://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = state.close;
  state.close = async () => {
    server.closeAllConnections?.();
    await close();
  };
  return state;
}


describe('AwsClients', () => {
  const opened: AwsClients[] = [];
  const servers: Loopback[] = [];
  const clientsFor = (settings: Partial<ConnectionSettings>, concurrency?: number) => {
    const clients = new AwsClients({ name: 'test', region: 'us-east-1', credentials: CREDENTIALS, ...settings }, concurrency === undefined ? {} : { concurrency });
    opened.push(clients);
    return clients;
  };
  const serve = async () => {
    const server = await loopback();
    servers.push(server);
    return server;
  };
  afterEach(async () => {
    for (const clients of opened.splice(0)) clients.destroy();
    for (const server of servers.splice(0)) await server.close();
  });

  it('builds each client once and turns the SDK Node-version notice off, whatever the variable held', () => {
    // The SDK honours only 'true'.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = '1';
    const clients = clientsFor({ endpointUrl: 'http://127.0.0.1:1' });
    expect(clients.ebs()).toBe(clients.ebs());
    expect(clients.ec2()).toBe(clients.ec2());
    expect(clients.sts()).toBe(clients.sts());
    expect(clients.s3()).toBe(clients.s3());
    expect(process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED).toBe('true');
  });

  it('opens no more sockets per host than the concurrency, and reuses them', async () => {
    const server = await serve();
    const held: Array<() => void> = [];
    server.respond = (req, res) => held.push(() => completed(req, res));
    const store = new EbsSnapshotStore(clientsFor({ endpointUrl: server.url }, 2).ebs());
    const calls = Array.from({ length: 6 }, () => store.completeSnapshot('snap-0abc', 0, 'x'));
    // Answer requests as they arrive until all six are done.
    const release = setInterval(() => held.splice(0).forEach((answer) => answer()), 5);
    try {
      await Promise.all(calls);
    } finally {
      clearInterval(release);
    }
    expect(server.requests).toHaveLength(6);
    expect(server.connections).toBe(2);
  });

  it('maxSockets overrides the concurrency', async () => {
    const server = await serve();
    const held: Array<() => void> = [];
    server.respond = (req, res) => held.push(() => completed(req, res));
    const store = new EbsSnapshotStore(clientsFor({ endpointUrl: server.url, maxSockets: 1 }, 8).ebs());
    const calls = Array.from({ length: 3 }, () => store.completeSnapshot('snap-0abc', 0, 'x'));
    const release = setInterval(() => held.splice(0).forEach((answer) => answer()), 5);
    try {
      await Promise.all(calls);
    } finally {
      clearInterval(release);
    }
    expect(server.connections).toBe(1);
  });

  it('a per-service endpoint wins over the connection endpoint', async () => {
    const shared = await serve();
    const ebsOnly = await serve();
    const clients = clientsFor({ endpointUrl: shared.url, endpoints: { ebs: ebsOnly.url } });
    expect(clients.endpointFor('ebs')).toBe(ebsOnly.url);
    expect(clients.endpointFor('ec2')).toBe(shared.url);
    await new EbsSnapshotStore(clients.ebs()).completeSnapshot('snap-0abc', 0, 'x');
    shared.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(EC2_ENCRYPTION_XML);
    };
    expect(await new Ec2SnapshotCatalog(clients.ec2Requests()).encryptionByDefault()).toBe(true);
    expect(ebsOnly.requests.map((r) => r.url)).toEqual(['/snapshots/completion/snap-0abc']);
    expect(shared.requests.map((r) => r.method)).toEqual(['POST']);
  });

  it('signs with the static credentials for the connection Region', async () => {
    const server = await serve();
    await new EbsSnapshotStore(clientsFor({ endpointUrl: server.url, region: 'eu-west-1' }).ebs()).completeSnapshot('snap-0abc', 0, 'x');
    expect(server.requests[0]?.headers.authorization).toMatch(/Credential=static-key\/\d{8}\/eu-west-1\/ebs\/aws4_request/);
  });

  it('reads a named profile from the shared credentials file', async () => {
    const server = await serve();
    const dir = mkdtempSync(join(tmpdir(), 'snapline-profile-'));
    const saved = { creds: process.env.AWS_SHARED_CREDENTIALS_FILE, config: process.env.AWS_CONFIG_FILE };
    try {
      writeFileSync(join(dir, 'credentials'), '[backup-writer]\naws_access_key_id = profile-key\naws_secret_access_key = profile-secret\n');
      writeFileSync(join(dir, 'config'), '');
      process.env.AWS_SHARED_CREDENTIALS_FILE = join(dir, 'credentials');
      process.env.AWS_CONFIG_FILE = join(dir, 'config');
      const clients = clientsFor({ endpointUrl: server.url, credentials: { profile: 'backup-writer' } });
      await new EbsSnapshotStore(clients.ebs()).completeSnapshot('snap-0abc', 0, 'x');
      expect(server.requests[0]?.headers.authorization).toMatch(/Credential=profile-key\//);
    } finally {
      for (const [name, value] of [
        ['AWS_SHARED_CREDENTIALS_FILE', saved.creds],
        ['AWS_CONFIG_FILE', saved.config],
      ] as const) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('EC2 keeps the SDK standard retry (EBS does not, see ebs.test.ts)', async () => {
    const server = await serve();
    let answered = 0;
    server.respond = (_req, res) => {
      answered += 1;
      if (answered < 3) {
        res.writeHead(503, { 'content-type': 'text/xml' });
        res.end('<Response><Errors><Error><Code>Unavailable</Code><Message>busy</Message></Error></Errors><RequestID>r</RequestID></Response>');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(EC2_ENCRYPTION_XML);
    };
    expect(await new Ec2SnapshotCatalog(clientsFor({ endpointUrl: server.url }).ec2Requests()).encryptionByDefault()).toBe(true);
    expect(server.requests).toHaveLength(3);
  });

  it('an unreachable EC2 endpoint is final once the SDK has retried', async () => {
    const server = await serve();
    const url = server.url;
    await server.close();
    servers.splice(servers.indexOf(server), 1);
    const error = await rejection(new Ec2SnapshotCatalog(clientsFor({ endpointUrl: url }).ec2Requests()).encryptionByDefault());
    expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
  });

  it('S3 path-style addressing follows forcePathStyle', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(404, { 'content-type': 'application/xml' });
      res.end('<Error><Code>NoSuchKey</Code><Message>none</Message></Error>');
    };
    const { HeadObjectCommand } = await import('@aws-sdk/client-s3');
    const clients = clientsFor({ endpointUrl: server.url, forcePathStyle: true });
    await clients.s3().send(new HeadObjectCommand({ Bucket: 'archive', Key: 'a/b' })).catch(() => undefined);
    expect(server.requests[0]?.url).toBe('/archive/a/b');
  });

  it('STS uses the shared agent too', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>' +
          '<Arn>arn:aws:iam::000000000000:user/t</Arn><UserId>U</UserId><Account>000000000000</Account>' +
          '</GetCallerIdentityResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetCallerIdentityResponse>',
      );
    };
    const out = await clientsFor({ endpointUrl: server.url }).sts().send(new GetCallerIdentityCommand({}));
    expect(out.Account).toBe('000000000000');
  });

  it('assumes the role once through STS with the base credentials, then signs every call with the role', async () => {
    const server = await serve();
    const expiration = new Date(Date.now() + 3600_000).toISOString();
    server.respond = (req, res) => {
      if (req.url?.startsWith('/snapshots/')) return completed(req, res);
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(
        '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials>' +
          `<AccessKeyId>ASIAROLEKEY</AccessKeyId><SecretAccessKey>role-secret</SecretAccessKey><SessionToken>role-token</SessionToken><Expiration>${expiration}</Expiration>` +
          '</Credentials><AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/backup/snapline</Arn><AssumedRoleId>AROA:snapline</AssumedRoleId></AssumedRoleUser>' +
          '</AssumeRoleResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></AssumeRoleResponse>',
      );
    };
    const clients = clientsFor({
      endpointUrl: server.url,
      assumeRole: { roleArn: 'arn:aws:iam::111122223333:role/backup', externalId: 'ext-42', sessionName: 'nightly' },
    });
    const store = new EbsSnapshotStore(clients.ebs());
    await Promise.all([store.completeSnapshot('snap-0abc', 0, 'x'), store.completeSnapshot('snap-0abd', 0, 'x')]);
    await store.completeSnapshot('snap-0abe', 0, 'x');

    const stsCalls = server.requests.filter((r) => r.url === '/');
    expect(stsCalls).toHaveLength(1);
    expect(stsCalls[0]?.headers.authorization).toMatch(/Credential=static-key\/\d{8}\/us-east-1\/sts\//);
    const form = new URLSearchParams(server.bodies[server.requests.indexOf(stsCalls[0]!)]);
    expect(Object.fromEntries(form)).toMatchObject({
      Action: 'AssumeRole',
      RoleArn: 'arn:aws:iam::111122223333:role/backup',
      ExternalId: 'ext-42',
      RoleSessionName: 'nightly',
    });
    const ebsCalls = server.requests.filter((r) => r.url?.startsWith('/snapshots/'));
    expect(ebsCalls).toHaveLength(3);
    for (const call of ebsCalls) {
      expect(call.headers.authorization).toMatch(/Credential=ASIAROLEKEY\//);
      expect(call.headers['x-amz-security-token']).toBe('role-token');
    }
  });

  it('a role against the endpoint (--auth) whose clock runs 20 minutes ahead: assumed once the clock is corrected, and its expiry judged on this host clock', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'snapline-role-'));
    const { startEmulator } = await import('../emulator/index.js');
    const endpoint = await startEmulator({ dataDir: dir, auth: [CREDENTIALS], now: () => Date.now() + 20 * 60_000, log: () => undefined });
    try {
      const clients = clientsFor({ endpointUrl: endpoint.url, assumeRole: { roleArn: 'arn:aws:iam::111122223333:role/backup', durationSeconds: 3600 } });
      const { snapshotId } = await new EbsSnapshotStore(clients.ebs()).startSnapshot({ volumeSizeGiB: 1 }).catch(async (err: unknown) => {
        // The EBS client's own first call is refused for its signing time too; the retry wrapper (not here) tries it again.
        expect(err).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: true });
        return new EbsSnapshotStore(clients.ebs()).startSnapshot({ volumeSizeGiB: 1 });
      });
      expect(snapshotId).toMatch(/^snap-/);
      const identity = (await (clients.ebs().config as unknown as { credentials: () => Promise<{ accessKeyId: string; expiration: Date }> }).credentials());
      expect(identity.accessKeyId).toMatch(/^ASIA/);
      // STS said an hour from its own time; on this host's clock that is an hour from now, not an hour and twenty minutes.
      expect(Math.abs(identity.expiration.getTime() - (Date.now() + 3600_000))).toBeLessThan(60_000);
    } finally {
      await endpoint.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a refused AssumeRole fails the call with ACCESS_DENIED naming the role, and is tried again on the next call', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(403, { 'content-type': 'text/xml' });
      res.end(
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>AccessDenied</Code>' +
          '<Message>not allowed to assume</Message></Error><RequestId>r</RequestId></ErrorResponse>',
      );
    };
    const clients = clientsFor({ endpointUrl: server.url, assumeRole: { roleArn: 'arn:aws:iam::111122223333:role/backup' } });
    const store = new EbsSnapshotStore(clients.ebs());
    const error = await rejection(store.completeSnapshot('snap-0abc', 0, 'x'));
    expect(error.code).toBe(ErrorCodes.ACCESS_DENIED);
    expect(error.message).toContain('cannot assume role arn:aws:iam::111122223333:role/backup');
    expect(error.message).not.toContain('static-secret');
    await rejection(store.completeSnapshot('snap-0abc', 0, 'x'));
    expect(server.requests.filter((r) => r.url === '/')).toHaveLength(2);
    expect(server.requests.filter((r) => r.url?.startsWith('/snapshots/'))).toHaveLength(0);
  });

  it('retries.maxAttempts bounds the SDK retries of EC2', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/xml' });
      res.end('<Response><Errors><Error><Code>Unavailable</Code><Message>busy</Message></Error></Errors><RequestID>r</RequestID></Response>');
    };
    const clients = clientsFor({ endpointUrl: server.url, retries: { mode: 'standard', maxAttempts: 2 } });
    await rejection(new Ec2SnapshotCatalog(clients.ec2Requests()).encryptionByDefault());
    expect(server.requests).toHaveLength(2);
  });

  describe('throttling of the SDK clients: a budget in time past max_attempts', () => {
    /** Moves only by what the retries sleep on it. */
    const scaledClock = () => {
      const clock = { ms: 0, now: () => clock.ms, sleep: (ms: number) => ((clock.ms += ms), Promise.resolve()) };
      return clock;
    };
    const LISTING = '<ListAllMyBucketsResult><Buckets></Buckets><Owner><ID>o</ID></Owner></ListAllMyBucketsResult>';
    /** Answers S3 SlowDown (503) to the first `times` requests, or `error` instead, then an empty bucket listing. */
    const slowDown = (server: Loopback, times: number, error = { status: 503, code: 'SlowDown' }) => {
      server.respond = (_req, res) => {
        const refused = server.requests.length <= times;
        res.writeHead(refused ? error.status : 200, { 'content-type': 'application/xml' });
        res.end(refused ? `<Error><Code>${error.code}</Code><Message>Please reduce your request rate.</Message></Error>` : LISTING);
      };
    };
    const clientsWith = (server: Loopback, clock: ReturnType<typeof scaledClock>, throttleBudgetMs?: number) => {
      const clients = new AwsClients(
        { name: 'test', region: 'us-east-1', credentials: CREDENTIALS, endpointUrl: server.url, forcePathStyle: true, retries: { maxAttempts: 1 } },
        { retryClock: clock, ...(throttleBudgetMs === undefined ? {} : { throttleBudgetMs }) },
      );
      opened.push(clients);
      return clients;
    };

    it('a throttled call is retried far past max_attempts, with backoff on the clock, and lands', async () => {
      const server = await serve();
      slowDown(server, 12);
      const clock = scaledClock();
      const { ListBucketsCommand } = await import('@aws-sdk/client-s3');
      await clientsWith(server, clock).s3().send(new ListBucketsCommand({}));
      expect(server.requests).toHaveLength(13);
      expect(clock.ms).toBeGreaterThan(10_000);
    });

    it('throttled for its whole budget (10 minutes by default), the call fails with the service error', async () => {
      const server = await serve();
      slowDown(server, Number.MAX_SAFE_INTEGER);
      const clock = scaledClock();
      const { ListBucketsCommand } = await import('@aws-sdk/client-s3');
      const error = await clientsWith(server, clock).s3().send(new ListBucketsCommand({})).catch((err: unknown) => err as Error);
      expect((error as Error).name).toBe('SlowDown');
      expect(clock.ms).toBeGreaterThanOrEqual(10 * 60_000);
      expect(clock.ms).toBeLessThan(11 * 60_000);
      const shorter = scaledClock();
      await clientsWith(server, shorter, 60_000).s3().send(new ListBucketsCommand({})).catch(() => undefined);
      expect(shorter.ms).toBeGreaterThanOrEqual(60_000);
      expect(shorter.ms).toBeLessThan(2 * 60_000);
    });

    it('other errors keep the attempts the connection sets', async () => {
      const server = await serve();
      slowDown(server, 5, { status: 500, code: 'InternalError' });
      const { ListBucketsCommand } = await import('@aws-sdk/client-s3');
      const error = await clientsWith(server, scaledClock()).s3().send(new ListBucketsCommand({})).catch((err: unknown) => err as Error);
      expect((error as Error).name).toBe('InternalError');
      expect(server.requests).toHaveLength(1);
    });
  });

  it('tcpKeepAliveMs sets the keep-alive probe delay of the sockets', async () => {
    const server = await serve();
    const clients = clientsFor({ endpointUrl: server.url, tcpKeepAliveMs: 30_000 });
    const agentOf = (c: AwsClients) => (c.ebs().config.requestHandler as unknown as { config?: { httpAgent?: http.Agent } }).config?.httpAgent;
    await new EbsSnapshotStore(clients.ebs()).completeSnapshot('snap-0abc', 0, 'x');
    const agent = agentOf(clients) as (http.Agent & { keepAliveMsecs?: number }) | undefined;
    expect(agent?.keepAliveMsecs).toBe(30_000);
  });

  it('validates the settings and names the bad one', () => {
    const bad = (settings: Partial<ConnectionSettings>, pattern: RegExp) => {
      let caught: unknown;
      try {
        new AwsClients({ name: 'broken', region: 'us-east-1', ...settings });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(SnaplineError);
      expect((caught as SnaplineError).code).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect((caught as SnaplineError).message).toMatch(pattern);
    };
    bad({ region: '' }, /connection broken: region/);
    bad({ endpointUrl: 'not a url' }, /endpointUrl/);
    bad({ endpoints: { ebs: 'ftp://host' } }, /endpoints\.ebs/);
    bad({ connectTimeoutMs: -1 }, /connectTimeoutMs/);
    bad({ maxSockets: 0 }, /maxSockets/);
    bad({ tcpKeepAliveMs: 0 }, /tcpKeepAliveMs/);
    bad({ retries: { maxAttempts: 0 } }, /retries\.maxAttempts/);
    bad({ retries: { mode: 'legacy' as never } }, /retries\.mode/);
    bad({ assumeRole: { roleArn: '' } }, /assumeRole\.roleArn/);
  });

  it('destroy() is idempotent and the clients cannot be built afterwards', () => {
    const clients = new AwsClients({ name: 'gone', region: 'us-east-1' });
    clients.ebs();
    clients.destroy();
    clients.destroy();
    expect(() => clients.ec2()).toThrow(/after destroy/);
  });
});

describe('an endpoint that is not the service', () => {
  const opened: AwsClients[] = [];
  const closers: Array<() => Promise<void>> = [];
  const clientsFor = (url: string, settings: Partial<ConnectionSettings> = {}) => {
    const clients = new AwsClients({ name: 'test', region: 'us-east-1', credentials: CREDENTIALS, endpointUrl: url, ...settings });
    opened.push(clients);
    return clients;
  };
  const serve = async () => {
    const server = await loopback();
    closers.push(() => server.close());
    return server;
  };
  /** A TCP server that accepts connections and never sends a byte. */
  const silent = async () => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    closers.push(async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    });
    return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, connections: () => sockets.size };
  };
  afterEach(async () => {
    for (const clients of opened.splice(0)) clients.destroy();
    for (const close of closers.splice(0)) await close();
  });

  it('a web server that answers 200 with HTML is the wrong endpoint at once: ENDPOINT_UNREACHABLE naming the service and URL', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<html><body>hello</body></html>');
    };
    const error = await rejection(new Ec2SnapshotCatalog(clientsFor(server.url).ec2Requests()).encryptionByDefault());
    expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    expect(error.message).toBe(`ec2:GetEbsEncryptionByDefault: ${server.url} answered HTTP 200 with text/html and no AWS request id: it is not the EC2 endpoint`);
    expect(error.hint).toMatch(/EC2 endpoint URL \(--endpoint-url, AWS_ENDPOINT_URL_EC2, or endpoint_url \/ endpoint_urls\.ec2/);
    // Not retried by the SDK: the answer will not change.
    expect(server.requests).toHaveLength(1);
  });

  it('a 404 in plain text is the wrong endpoint too, for EBS', async () => {
    const server = await serve();
    server.respond = (_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('404 page not found');
    };
    const error = await rejection(new EbsSnapshotStore(clientsFor(server.url).ebs()).completeSnapshot('snap-0abc', 0, 'x'));
    expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    expect(error.message).toMatch(/^ebs:CompleteSnapshot: http:\/\/127\.0\.0\.1:\d+ answered HTTP 404 with text\/plain .*it is not the EBS direct API endpoint$/);
  });

  it('a port that accepts and never answers fails once, after the first-byte limit: ENDPOINT_UNREACHABLE', async () => {
    const port = await silent();
    const error = await rejection(new Ec2SnapshotCatalog(clientsFor(port.url, { readTimeoutMs: 300 }).ec2Requests()).describeSnapshots(['snap-0abc']));
    expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    expect(error.message).toBe(`ec2:DescribeSnapshots: ${port.url} accepted the connection but sent no answer within 0.3 s: it is not a working EC2 endpoint`);
    // The SDK's own retries do not wait on it again.
    expect(port.connections()).toBe(1);
  });

  it('once the endpoint has answered, a call it leaves unanswered is a transient failure, retried', async () => {
    const server = await serve();
    let answered = 0;
    server.respond = (_req, res) => {
      if (answered++ > 0) return;
      res.writeHead(200, { 'content-type': 'text/xml' });
      res.end(EC2_ENCRYPTION_XML);
    };
    const catalog = new Ec2SnapshotCatalog(clientsFor(server.url, { readTimeoutMs: 300 }).ec2Requests());
    expect(await catalog.encryptionByDefault()).toBe(true);
    const error = await rejection(catalog.encryptionByDefault());
    expect(error).toMatchObject({ code: ErrorCodes.UNAVAILABLE, details: { awsError: 'TimeoutError' } });
    // The SDK's standard retry: three attempts.
    expect(server.requests).toHaveLength(4);
  });

  it('calls that send data or seal it wait for their answer as long as bytes move; the others have a first-byte limit', () => {
    for (const command of ['PutObjectCommand', 'UploadPartCommand', 'UploadArchiveCommand', 'UploadMultipartPartCommand', 'PutSnapshotBlockCommand', 'CompleteSnapshotCommand', 'CompleteMultipartUploadCommand']) {
      expect(firstByteTimeoutMs(command, 60_000), command).toBe(0);
    }
    expect(firstByteTimeoutMs('DescribeSnapshotsCommand', 60_000)).toBe(EXCHANGE_FIRST_BYTE_MS);
    expect(firstByteTimeoutMs('GetSnapshotBlockCommand', 5000)).toBe(5000);
    expect(firstByteTimeoutMs(undefined, 60_000)).toBe(EXCHANGE_FIRST_BYTE_MS);
  });
});

describe('AwsClients over TLS with a private CA', () => {
  let dir: string;
  let server: Loopback | undefined;
  let cert = '';
  const haveOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  beforeAll(async () => {
    if (!haveOpenssl) return;
    dir = mkdtempSync(join(tmpdir(), 'snapline-tls-'));
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')],
      { stdio: 'ignore' },
    );
    cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    server = await loopback((handler) => https.createServer({ key, cert }, handler), 'https');
  });
  afterAll(async () => {
    await server?.close();
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!haveOpenssl)('trusts the endpoint with tls.ca and refuses it without', async () => {
    const trusted = new AwsClients({ name: 'ceph', region: 'us-east-1', endpointUrl: server!.url, credentials: CREDENTIALS, tls: { ca: cert } });
    const untrusted = new AwsClients({ name: 'ceph', region: 'us-east-1', endpointUrl: server!.url, credentials: CREDENTIALS });
    try {
      expect(await new EbsSnapshotStore(trusted.ebs()).completeSnapshot('snap-0abc', 0, 'x')).toBe('completed');
      const error = await rejection(new EbsSnapshotStore(untrusted.ebs()).completeSnapshot('snap-0abc', 0, 'x'));
      expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    } finally {
      trusted.destroy();
      untrusted.destroy();
    }
  });
});
