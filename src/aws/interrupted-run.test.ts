import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { rejection } from '../../test/support/rejection.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { verifiedReader } from '../core/verified-reader.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { backup, type BackupDeps } from '../engine/backup.js';
import { restore } from '../engine/restore.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { HashPool } from '../hashing/index.js';
import { BlockIndex } from '../index/index.js';
import { SlabPool } from '../source/index.js';
import { AwsClients } from './clients.js';
import { EbsSnapshotStore } from './ebs.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { AdaptiveLimiter, resilientReader, resilientWriter } from './retry.js';

/**
 * Ctrl-C in the middle of a backup or a restore whose block requests the
 * endpoint holds without answering: the run ends INTERRUPTED (only the abort
 * can settle it), the held connections are closed by the client, and the run
 * done again afterwards gives the image's bytes. Between the engine and the
 * local endpoint sits a proxy that holds the block requests it is told to.
 */

interface Held {
  /** Resolves when the client closes the connection of this request. */
  closed: Promise<void>;
}

class HoldingProxy {
  readonly held: Held[] = [];
  /** Requests (method and path) held instead of forwarded. */
  hold: RegExp | undefined;
  readonly #server: http.Server;

  constructor(target: string) {
    const upstream = new URL(target);
    this.#server = http.createServer((req, res) => {
      if (this.hold !== undefined && this.hold.test(`${req.method} ${req.url}`)) {
        req.resume();
        this.held.push({ closed: once(req.socket, 'close').then(() => undefined) });
        this.#server.emit('held');
        return;
      }
      const forward = http.request({ hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      forward.on('error', () => res.destroy());
      req.pipe(forward);
    });
  }

  async start(): Promise<string> {
    this.#server.listen(0, '127.0.0.1');
    await once(this.#server, 'listening');
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  /** Resolves once a request is held. */
  async holding(): Promise<void> {
    while (this.held.length === 0) await once(this.#server, 'held');
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    this.#server.close();
    await once(this.#server, 'close');
  }
}

const BLOCKS = 32;
const interruption = () => new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test');

let dir: string;
let endpoint: RunningEmulator;
let hashPool: HashPool;
let image: Buffer;
let imagePath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-interrupted-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => {} });
  hashPool = new HashPool({ threads: 2 });
  image = randomBytes(BLOCKS * BLOCK_SIZE);
  imagePath = join(dir, 'image.img');
  writeFileSync(imagePath, image);
});

afterAll(async () => {
  await hashPool.destroy();
  await endpoint.close();
  rmSync(dir, { recursive: true, force: true });
});

let proxy: HoldingProxy;
let proxyUrl: string;
let index: BlockIndex;
const opened: AwsClients[] = [];

beforeEach(async () => {
  proxy = new HoldingProxy(endpoint.url);
  proxyUrl = await proxy.start();
  index = BlockIndex.open(join(dir, `index-${Math.random().toString(36).slice(2)}.db`));
});

afterEach(async () => {
  for (const clients of opened.splice(0)) clients.destroy();
  index.close();
  await proxy.close();
});

/** The engine's dependencies as a session builds them, every store and wrapper under `signal`. */
function deps(signal: AbortSignal): BackupDeps {
  const clients = new AwsClients({ name: 'interrupted-test', region: 'us-east-1', endpointUrl: proxyUrl, credentials: { accessKeyId: 'key', secretAccessKey: 'secret' } }, { concurrency: 8 });
  opened.push(clients);
  const store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), signal });
  const wrap = { signal, policy: { baseDelayMs: 1, maxDelayMs: 10 } };
  return {
    index,
    writer: resilientWriter(store, { ...wrap, limiter: new AdaptiveLimiter(4) }),
    reader: resilientReader(verifiedReader(store, (data) => hashPool.sha256Moving(data)), { ...wrap, limiter: new AdaptiveLimiter(4) }),
    catalog: new Ec2SnapshotCatalog(clients.ec2(), { signal }),
    hashPool,
    slabs: new SlabPool({ slabCount: 4, blocksPerSlab: 8 }),
  };
}

/** Aborts `controller` once the proxy holds a request of `run`; the run must end INTERRUPTED and every held connection close. */
async function interrupted(run: Promise<unknown>, controller: AbortController): Promise<SnaplineError> {
  const settled = rejection(run);
  await proxy.holding();
  controller.abort(interruption());
  const err = await settled;
  await Promise.all(proxy.held.map((request) => request.closed));
  return err;
}

describe('an interrupted run with block requests in flight', () => {
  it('backup: ends INTERRUPTED, the held uploads cut; the rerun resumes and the snapshot restores to the image', async () => {
    proxy.hold = /^PUT \/snapshots\/[^/]+\/blocks\//;
    const controller = new AbortController();
    const err = await interrupted(backup(deps(controller.signal), { source: imagePath, volume: 'interrupted', signal: controller.signal }), controller);
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const [pending] = index.listSnapshots().filter((s) => s.state === 'pending');
    expect(pending).toBeDefined();

    proxy.hold = undefined;
    const resumed = await backup(deps(new AbortController().signal), { source: imagePath, volume: 'interrupted' });
    expect(resumed).toMatchObject({ snapshotId: pending!.snapshotId, resumed: true });

    const target = join(dir, 'restored-after-backup.img');
    await restore(deps(new AbortController().signal), { snapshotId: resumed.snapshotId!, target });
    expect(readFileSync(target).equals(image)).toBe(true);
  });

  it('restore: ends INTERRUPTED, the held downloads cut; the rerun writes the image', async () => {
    const done = await backup(deps(new AbortController().signal), { source: imagePath, volume: 'restored' });
    proxy.hold = /^GET \/snapshots\/[^/]+\/blocks\//;
    const controller = new AbortController();
    const target = join(dir, 'restored-after-interrupt.img');
    const err = await interrupted(restore(deps(controller.signal), { snapshotId: done.snapshotId!, target, signal: controller.signal }), controller);
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);

    proxy.hold = undefined;
    await restore(deps(new AbortController().signal), { snapshotId: done.snapshotId!, target, force: true });
    expect(readFileSync(target).equals(image)).toBe(true);
  });
});
