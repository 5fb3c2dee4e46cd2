import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients, type ConnectionSettings } from '../aws/clients.js';
import { ACCOUNT_ID, startEmulator, type RunningEmulator } from '../emulator/index.js';
import type { OpenConnection } from './connection.js';
import { identifyStore, type StoreUsed } from './store.js';

let dir: string;
let emulator: RunningEmulator;
/** Answers 404 to everything, as an EBS endpoint that is not snapline's would to GET /_snapline/store; records the paths asked. */
let foreign: Server;
let foreignUrl: string;
const asked: string[] = [];
let closedUrl: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-store-'));
  emulator = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined });
  foreign = createServer((req, res) => {
    asked.push(`${req.method} ${req.url}`);
    res.writeHead(404, { 'content-type': 'text/plain' }).end('no such thing');
  });
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
  foreignUrl = `http://127.0.0.1:${(foreign.address() as AddressInfo).port}`;
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  closedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
  await new Promise((resolve) => closed.close(resolve));
});

afterAll(async () => {
  await new Promise((resolve) => foreign.close(resolve));
  await emulator.close();
  rmSync(dir, { recursive: true, force: true });
});

/** identifyStore on a connection with `settings` (keys, Region eu-west-1), and the warnings it gave. */
async function identify(settings: Partial<ConnectionSettings>): Promise<{ store: StoreUsed | undefined; warnings: string[] }> {
  const connection: OpenConnection = {
    name: 't',
    source: 'test',
    settings: { name: 't', region: 'eu-west-1', credentials: { accessKeyId: 'AKIAEXAMPLE123456789', secretAccessKey: 's' }, retries: { maxAttempts: 1 }, ...settings },
    archive: {},
    ecs: {},
    tls: { verify: true, extraCertificates: [] },
    origins: {},
    warnings: [],
    close: async () => undefined,
  };
  const clients = new AwsClients(connection.settings, { concurrency: 2 });
  const warnings: string[] = [];
  try {
    return { store: await identifyStore(connection, clients, { warn: (message) => warnings.push(message) }), warnings };
  } finally {
    clients.destroy();
  }
}

describe('identifyStore', () => {
  it('an endpoint that answers the store route: the local endpoint store, named by the endpoint URL', async () => {
    const storeId = ((await (await fetch(`${emulator.url}/_snapline/store`)).json()) as { storeId: string }).storeId;
    const { store, warnings } = await identify({ endpointUrl: emulator.url });
    expect(store).toEqual({
      id: `snapline:${storeId}`,
      label: `the local endpoint store ${storeId} (data ${join(dir, 'endpoint')})`,
      kind: 'local-endpoint',
      endpoint: emulator.url,
      via: 'endpoint-url',
      dataDir: join(dir, 'endpoint'),
      storeId,
      region: 'eu-west-1',
    });
    expect(warnings).toEqual([]);
  });

  it('any other EBS endpoint: the AWS account (STS GetCallerIdentity) and Region', async () => {
    asked.length = 0;
    const { store, warnings } = await identify({ endpoints: { ebs: foreignUrl, sts: emulator.url } });
    expect(store).toEqual({
      id: `aws:${ACCOUNT_ID}:eu-west-1`,
      label: `AWS account ${ACCOUNT_ID}, Region eu-west-1`,
      kind: 'aws',
      endpoint: foreignUrl,
      account: ACCOUNT_ID,
      region: 'eu-west-1',
    });
    expect(asked).toEqual(['GET /_snapline/store']);
    expect(warnings).toEqual([]);
  });

  it('a role to assume: its account, without a call', async () => {
    const { store, warnings } = await identify({ endpoints: { ebs: foreignUrl, sts: closedUrl }, assumeRole: { roleArn: 'arn:aws:iam::210987654321:role/backup' } });
    expect(store).toMatchObject({ id: 'aws:210987654321:eu-west-1', account: '210987654321' });
    expect(warnings).toEqual([]);
  });

  it('GetCallerIdentity failing: unknown, with a warning that the index cannot check', async () => {
    const { store, warnings } = await identify({ endpoints: { ebs: foreignUrl, sts: closedUrl } });
    expect(store).toBeUndefined();
    expect(warnings).toEqual([expect.stringMatching(/^cannot tell which AWS account connection t reaches \(.+\): the index does not check that its volumes live there$/)]);
  });

  it('nothing answering at the EBS endpoint: unknown and quiet (the command itself reports the endpoint down)', async () => {
    const { store, warnings } = await identify({ endpointUrl: closedUrl });
    expect(store).toBeUndefined();
    expect(warnings).toEqual([]);
  });
});
