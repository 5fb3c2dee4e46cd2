import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { linearAggregateOf } from '../core/checksum.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AwsClients, type ConnectionSettings } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { awsEc2Endpoint, type Ec2Calls } from './ec2-requests.js';
import { fromAwsError } from './errors.js';
import type { ClientConfig } from './signed-requests.js';
import { rejection } from '../../test/support/rejection.js';

/**
 * The EC2 snapshot bookkeeping as direct query requests: against the local
 * endpoint over HTTP with signatures checked (--auth), and against a
 * loopback server that answers what a test scripts (throttling, server
 * errors, refusals), for what the endpoint does not make happen.
 */

const KEY = { accessKeyId: 'ec2-test-key', secretAccessKey: 'ec2-test-secret' };
const MINUTE = 60_000;

let dir: string;
let endpoint: RunningEmulator;
let clients: AwsClients;
let store: EbsSnapshotStore;
/** Every call the catalog made: action and parameters. */
let asked: Array<{ action: string; params: Record<string, string> }>;
let catalog: Ec2SnapshotCatalog;

function clientsFor(settings: Partial<ConnectionSettings> & { endpointUrl: string }, options: ConstructorParameters<typeof AwsClients>[1] = {}): AwsClients {
  return new AwsClients({ name: 'ec2-test', region: 'us-east-1', credentials: KEY, ...settings }, { concurrency: 4, ...options });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-ec2-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), auth: [KEY], log: () => {} });
  clients = clientsFor({ endpointUrl: endpoint.url });
  store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests() });
  const recording: Ec2Calls = {
    call: (action, params, options) => {
      asked.push({ action, params });
      return clients.ec2Requests().call(action, params, options);
    },
  };
  catalog = new Ec2SnapshotCatalog(recording);
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  asked = [];
  endpoint.setFaults({});
});

/** A completed snapshot without blocks. */
async function completedSnapshot(input: { description?: string; tags?: Record<string, string> } = {}): Promise<string> {
  const { snapshotId } = await store.startSnapshot({ volumeSizeGiB: 2, ...input });
  await store.completeSnapshot(snapshotId, 0, linearAggregateOf([]));
  return snapshotId;
}

const describedIds = () => asked.filter((call) => call.action === 'DescribeSnapshots').map((call) => Object.values(call.params));

describe('Ec2SnapshotCatalog.describeSnapshots against the endpoint', () => {
  it('maps state, progress, size, time, description, encryption and tags', async () => {
    const before = Date.now();
    const id = await completedSnapshot({ description: 'nightly <db> & more', tags: { volume: 'db', empty: '' } });
    const [described] = await catalog.describeSnapshots([id]);
    expect(described).toMatchObject({
      snapshotId: id,
      state: 'completed',
      progress: '100%',
      volumeSizeGiB: 2,
      description: 'nightly <db> & more',
      encrypted: false,
      tags: { volume: 'db', empty: '' },
    });
    expect(described!.startTime!.getTime()).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
    expect(described).not.toHaveProperty('stateMessage');
  });

  it('a snapshot in state error carries its state message', async () => {
    endpoint.setFaults({ completionErrorRate: 1 });
    const id = await completedSnapshot();
    const [described] = await catalog.describeSnapshots([id]);
    expect(described!.state).toBe('error');
    expect(described!.stateMessage).toBeTruthy();
  });

  it('makes no call for no ids and sends each id once', async () => {
    expect(await catalog.describeSnapshots([])).toEqual([]);
    expect(asked).toHaveLength(0);
    const id = await completedSnapshot();
    expect((await catalog.describeSnapshots([id, id])).map((s) => s.snapshotId)).toEqual([id]);
    expect(describedIds()).toEqual([[id]]);
  });

  it('drops the ids EC2 names as unknown and asks again for the rest', async () => {
    const [a, b] = [await completedSnapshot(), await completedSnapshot()];
    const found = await catalog.describeSnapshots([a, 'snap-0bad', b]);
    expect(found.map((s) => s.snapshotId).sort()).toEqual([a, b].sort());
    expect(describedIds()).toEqual([
      [a, 'snap-0bad', b],
      [a, b],
    ]);
  });

  it('answers nothing when every id is unknown', async () => {
    expect(await catalog.describeSnapshots(['snap-0a', 'snap-0b'])).toEqual([]);
    expect(describedIds()).toEqual([['snap-0a', 'snap-0b']]);
  });

  it('describes one by one when the message names none of the ids (a malformed one)', async () => {
    const id = await completedSnapshot();
    const found = await catalog.describeSnapshots([id, 'garbage']);
    expect(found.map((s) => s.snapshotId)).toEqual([id]);
    expect(describedIds()).toEqual([[id, 'garbage'], [id], ['garbage']]);
  });

  it('asks in batches of 200 ids', async () => {
    await catalog.describeSnapshots(Array.from({ length: 450 }, (_, i) => `snap-${i.toString(16).padStart(8, '0')}`));
    expect(describedIds().map((ids) => ids.length)).toEqual([200, 200, 50]);
  });
});

describe('Ec2SnapshotCatalog bookkeeping against the endpoint', () => {
  it('createTags adds tags, as a list; no tags, no call', async () => {
    const id = await completedSnapshot({ tags: { volume: 'db' } });
    await catalog.createTags(id, { run: '3', 'a b': 'x=y&z' });
    await catalog.createTags(id, {});
    expect(asked.filter((call) => call.action === 'CreateTags').map((call) => call.params)).toEqual([
      { 'ResourceId.1': id, 'Tag.1.Key': 'run', 'Tag.1.Value': '3', 'Tag.2.Key': 'a b', 'Tag.2.Value': 'x=y&z' },
    ]);
    expect((await catalog.describeSnapshots([id]))[0]!.tags).toEqual({ volume: 'db', run: '3', 'a b': 'x=y&z' });
  });

  it('createTags on an unknown snapshot is NOT_FOUND', async () => {
    expect(await rejection(catalog.createTags('snap-0123', { a: 'b' }))).toMatchObject({ code: ErrorCodes.NOT_FOUND });
  });

  it('deleteSnapshot deletes, and is idempotent: NotFound counts as deleted', async () => {
    const id = await completedSnapshot();
    await catalog.deleteSnapshot(id);
    expect(await catalog.describeSnapshots([id])).toEqual([]);
    await catalog.deleteSnapshot(id);
  });

  it('encryptionByDefault reads GetEbsEncryptionByDefault', async () => {
    expect(await catalog.encryptionByDefault()).toBe(false);
    await clients.ec2Requests().call('EnableEbsEncryptionByDefault', {});
    try {
      expect(await catalog.encryptionByDefault()).toBe(true);
    } finally {
      await clients.ec2Requests().call('DisableEbsEncryptionByDefault', {});
    }
  });

  it('taggedSnapshots: this account\'s snapshots with every tag, page after page (NextToken); none tagged so, none', async () => {
    const pages: Array<Record<string, string>> = [];
    const paging: Ec2Calls = {
      call: (action, params, options) => {
        pages.push(params);
        return clients.ec2Requests().call(action, params, options);
      },
    };
    const paged = new Ec2SnapshotCatalog(paging, { pageSize: 5 });
    const copies = await Promise.all(Array.from({ length: 12 }, () => completedSnapshot({ tags: { 'copy-of': 'snap-0aa', from: 'us-east-1' } })));
    await completedSnapshot({ tags: { 'copy-of': 'snap-0aa', from: 'us-west-2' } });
    await completedSnapshot({ tags: { 'copy-of': 'snap-0bb', from: 'us-east-1' } });
    const found = await paged.taggedSnapshots({ 'copy-of': 'snap-0aa', from: 'us-east-1' });
    expect(found.map((s) => s.snapshotId).sort()).toEqual([...copies].sort());
    expect(pages.map((params) => [params.MaxResults, params.NextToken !== undefined])).toEqual([
      ['5', false],
      ['5', true],
      ['5', true],
    ]);
    expect(found[0]).toMatchObject({ state: 'completed', tags: { 'copy-of': 'snap-0aa', from: 'us-east-1' } });
    expect(await catalog.taggedSnapshots({ 'copy-of': 'snap-0cc', from: 'us-east-1' })).toEqual([]);
    expect(asked.at(-1)).toEqual({
      action: 'DescribeSnapshots',
      params: { 'Owner.1': 'self', MaxResults: '1000', 'Filter.1.Name': 'tag:copy-of', 'Filter.1.Value.1': 'snap-0cc', 'Filter.2.Name': 'tag:from', 'Filter.2.Value.1': 'us-east-1' },
    });
  });

  it('makes nothing until a request is made', async () => {
    let made = 0;
    const lazy = new Ec2SnapshotCatalog(() => {
      made += 1;
      return clients.ec2Requests();
    });
    expect(made).toBe(0);
    expect(await lazy.encryptionByDefault()).toBe(false);
    expect(made).toBeGreaterThan(0);
  });
});

describe('direct EC2 requests: signatures and clocks, as the endpoint checks them', () => {
  /** The outcome of a call through the SDK's EC2 client, mapped as the SDK path mapped it. */
  async function sdkOutcome(settings: Partial<ConnectionSettings>): Promise<SnaplineError> {
    const sdk = clientsFor({ endpointUrl: endpoint.url, retries: { maxAttempts: 1 }, ...settings });
    try {
      await sdk.ec2().send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0abc'] }));
      throw new Error('the SDK call succeeded');
    } catch (err) {
      return fromAwsError(err, 'ec2:DescribeSnapshots');
    } finally {
      sdk.destroy();
    }
  }

  it.each([
    ['a wrong secret', { credentials: { accessKeyId: KEY.accessKeyId, secretAccessKey: 'wrong' } }],
    ['an unknown key', { credentials: { accessKeyId: 'nobody', secretAccessKey: 'wrong' } }],
  ])('%s is refused as on the SDK path: ACCESS_DENIED, not retried', async (_name, settings) => {
    const direct = clientsFor({ endpointUrl: endpoint.url, ...settings });
    try {
      const error = await rejection(new Ec2SnapshotCatalog(direct.ec2Requests()).describeSnapshots(['snap-0abc']));
      const expected = await sdkOutcome(settings);
      expect(error).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: false, message: expected.message });
      expect(error.details?.awsError).toBe(expected.details?.awsError);
    } finally {
      direct.destroy();
    }
  });

  it.each([
    ['20 minutes behind the endpoint', 20 * MINUTE],
    ['20 minutes ahead of the endpoint', -20 * MINUTE],
  ])('a host clock %s: the first refusal (RequestExpired) corrects the clock and the call goes through', async (_name, aheadMs) => {
    const skewed = await startEmulator({ dataDir: join(dir, `skewed-${aheadMs}`), auth: [KEY], now: () => Date.now() + aheadMs, log: () => {} });
    const direct = clientsFor({ endpointUrl: skewed.url });
    try {
      expect(await new Ec2SnapshotCatalog(direct.ec2Requests()).encryptionByDefault()).toBe(false);
      const stats = skewed.stats().operations;
      expect(stats.AuthRefused?.requests).toBe(1);
      expect(stats.GetEbsEncryptionByDefault?.requests).toBe(1);
    } finally {
      direct.destroy();
      await skewed.close();
    }
  });
});

// ---- a scripted loopback server ----------------------------------------------

interface Scripted {
  url: string;
  /** The form of each request it got. */
  forms: URLSearchParams[];
  close(): Promise<void>;
}

/** Answers the requests in order with `answers` (status and XML), the last one for every request after. */
async function scripted(answers: Array<[number, string]>): Promise<Scripted> {
  const forms: URLSearchParams[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      forms.push(new URLSearchParams(Buffer.concat(chunks).toString('utf8')));
      const [status, body] = answers[Math.min(forms.length - 1, answers.length - 1)]!;
      res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': 'req-1', server: 'AmazonEC2' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    forms,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function errorAnswer(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>r-1</RequestID></Response>`;
}

const ENCRYPTION_ANSWER =
  '<?xml version="1.0" encoding="UTF-8"?>\n<GetEbsEncryptionByDefaultResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r-2</requestId><ebsEncryptionByDefault>true</ebsEncryptionByDefault></GetEbsEncryptionByDefaultResponse>';

/** A retry clock on which backoff takes no time and time moves only by what is waited. */
function instantClock() {
  let now = 0;
  return { now: () => now, sleep: async (ms: number) => void (now += ms) };
}

describe('direct EC2 requests: retries and error mapping (scripted answers)', () => {
  let server: Scripted | undefined;
  let scriptedClients: AwsClients | undefined;
  afterEach(async () => {
    scriptedClients?.destroy();
    await server?.close();
    scriptedClients = undefined;
    server = undefined;
  });

  async function catalogFor(answers: Array<[number, string]>, settings: Partial<ConnectionSettings> = {}, throttleBudgetMs = 60_000): Promise<Ec2SnapshotCatalog> {
    server = await scripted(answers);
    scriptedClients = clientsFor({ endpointUrl: server.url, ...settings }, { throttleBudgetMs, retryClock: instantClock() });
    return new Ec2SnapshotCatalog(scriptedClients.ec2Requests());
  }

  it('throttling (RequestLimitExceeded) is retried past the attempts, within the throttle budget', async () => {
    const throttled: [number, string] = [503, errorAnswer('RequestLimitExceeded', 'Request limit exceeded.')];
    const catalog = await catalogFor([throttled, throttled, throttled, throttled, [200, ENCRYPTION_ANSWER]]);
    expect(await catalog.encryptionByDefault()).toBe(true);
    expect(server!.forms.map((form) => form.get('Action'))).toEqual(Array(5).fill('GetEbsEncryptionByDefault'));
    expect(server!.forms[0]!.get('Version')).toBe('2016-11-15');
  });

  it('throttling for longer than the budget fails THROTTLED, no longer retryable', async () => {
    const catalog = await catalogFor([[503, errorAnswer('RequestLimitExceeded', 'Request limit exceeded.')]], {}, 5_000);
    const error = await rejection(catalog.encryptionByDefault());
    expect(error).toMatchObject({ code: ErrorCodes.THROTTLED, retryable: false });
    expect(error.message).toContain('ec2:GetEbsEncryptionByDefault');
  });

  it('a server error is retried up to the attempts (the SDK default 3, or the connection max_attempts): UNAVAILABLE', async () => {
    const catalog = await catalogFor([[500, errorAnswer('InternalError', 'An internal error has occurred.')]]);
    expect(await rejection(catalog.encryptionByDefault())).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: false });
    expect(server!.forms).toHaveLength(3);
    await server!.close();
    scriptedClients!.destroy();
    const five = await catalogFor([[500, errorAnswer('InternalError', 'An internal error has occurred.')]], { retries: { maxAttempts: 5 } });
    await rejection(five.encryptionByDefault());
    expect(server!.forms).toHaveLength(5);
  });

  it.each([
    ['UnauthorizedOperation', 403],
    ['AccessDenied', 403],
  ])('%s is ACCESS_DENIED, named by action, not retried', async (code, status) => {
    const catalog = await catalogFor([[status, errorAnswer(code, 'You are not authorized to perform this operation.')]]);
    const error = await rejection(catalog.describeSnapshots(['snap-01']));
    expect(error).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: false });
    expect(error.message).toContain('ec2:DescribeSnapshots');
    expect(server!.forms).toHaveLength(1);
  });

  it('deleteSnapshot of a snapshot in use is CONFLICT', async () => {
    const catalog = await catalogFor([[400, errorAnswer('InvalidSnapshot.InUse', 'The snapshot snap-01 is currently in use by ami-1')]]);
    expect(await rejection(catalog.deleteSnapshot('snap-01'))).toMatchObject({ code: ErrorCodes.CONFLICT });
  });

  it('an answer that is not XML is REMOTE_REJECTED', async () => {
    const catalog = await catalogFor([[200, 'not xml <']]);
    expect(await rejection(catalog.encryptionByDefault())).toMatchObject({ code: ErrorCodes.REMOTE_REJECTED });
  });
});

describe('the AWS EC2 endpoint of a Region', () => {
  it.each([
    ['eu-west-1', false, false],
    ['us-east-1', true, false],
    ['us-east-1', false, true],
    ['us-east-1', true, true],
    ['cn-north-1', false, false],
    ['us-gov-west-1', false, false],
    ['us-gov-west-1', true, false],
    ['us-gov-west-1', true, true],
  ])('%s (FIPS %s, dual-stack %s): the host the endpoint rules of the EC2 SDK client give', async (region, fips, dualStack) => {
    const aws = new AwsClients({ name: 'aws', region, credentials: KEY });
    try {
      const config: ClientConfig = { ...(aws.ebs().config as unknown as ClientConfig), useFipsEndpoint: async () => fips, useDualstackEndpoint: async () => dualStack };
      const derived = await awsEc2Endpoint(config);
      const sdk = (aws.ec2().config as unknown as ClientConfig).endpointProvider({ Region: region, UseFIPS: fips, UseDualStack: dualStack }).url;
      expect(`https://${derived.hostname}${derived.basePath}`).toBe(`${sdk.protocol}//${sdk.hostname}${sdk.pathname.replace(/\/+$/, '')}`);
    } finally {
      aws.destroy();
    }
  });
});
