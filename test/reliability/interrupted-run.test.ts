import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { prune } from '../../src/engine/lineage/prune.js';
import { restore } from '../../src/engine/restore/restore.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { openSession, type Session } from '../../src/session.js';
import { rejection } from '../support/rejection.js';

/**
 * Ctrl-C in the middle of a backup or a restore whose block requests the
 * endpoint holds without answering: the run ends INTERRUPTED (only the abort
 * can settle it), the held connections are closed by the client, and the run
 * done again afterwards gives the image's bytes. The runs use sessions as the
 * CLI opens them (openSession with the command's signal); between them and
 * the local endpoint sits a proxy that holds the block requests it is told to.
 */

interface Held {
  /** Resolves when the client closes the connection of this request. */
  closed: Promise<void>;
  /** Forwards the request after all, and its answer back if the client still listens. */
  release(): void;
}

class HoldingProxy {
  readonly held: Held[] = [];
  /** Requests held instead of forwarded, matched against their method, path and body ("POST / Action=DeleteSnapshot&..."). */
  hold: RegExp | undefined;
  readonly #server: http.Server;

  constructor(target: string) {
    const upstream = new URL(target);
    this.#server = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
      } catch {
        return; // The client gave up on the request.
      }
      const body = Buffer.concat(chunks);
      const forward = () => {
        const request = http.request({ hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        });
        request.on('error', () => res.destroy());
        request.end(body);
      };
      if (this.hold !== undefined && this.hold.test(`${req.method} ${req.url} ${body.toString('latin1')}`)) {
        this.held.push({ closed: once(req.socket, 'close').then(() => undefined), release: forward });
        this.#server.emit('held');
        return;
      }
      forward();
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
let image: Buffer;
let imagePath: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-interrupted-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => {} });
  image = randomBytes(BLOCKS * BLOCK_SIZE);
  imagePath = join(dir, 'image.img');
  writeFileSync(imagePath, image);
});

afterAll(async () => {
  await endpoint.close();
  rmSync(dir, { recursive: true, force: true });
});

let proxy: HoldingProxy;
let proxyUrl: string;
let indexPath: string;

beforeEach(async () => {
  proxy = new HoldingProxy(endpoint.url);
  proxyUrl = await proxy.start();
  indexPath = join(dir, `index-${Math.random().toString(36).slice(2)}.db`);
});

afterEach(async () => {
  await proxy.close();
});

/** `run` with a session as a command opens it, through the proxy, under `signal` (default: one never aborted). */
async function withRun<T>(run: (session: Session) => Promise<T>, signal = new AbortController().signal): Promise<T> {
  const session = await openSession({ connection: 'local', endpointUrl: proxyUrl, indexPath, concurrency: 4, signal });
  try {
    return await run(session);
  } finally {
    await session.close();
  }
}

function pendingSnapshots(): string[] {
  const index = BlockIndex.open(indexPath);
  try {
    return index.lineage
      .listSnapshots()
      .filter((s) => s.state === 'pending')
      .map((s) => s.snapshotId);
  } finally {
    index.close();
  }
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
    const run = withRun((session) => backup(session, { source: imagePath, volume: 'interrupted', signal: controller.signal }), controller.signal);
    const err = await interrupted(run, controller);
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const [pending] = pendingSnapshots();
    expect(pending).toBeDefined();

    proxy.hold = undefined;
    const resumed = await withRun((session) => backup(session, { source: imagePath, volume: 'interrupted' }));
    expect(resumed).toMatchObject({ snapshotId: pending, resumed: true });

    const target = join(dir, 'restored-after-backup.img');
    await withRun((session) => restore(session, { snapshotId: resumed.snapshotId!, target }));
    expect(readFileSync(target).equals(image)).toBe(true);
  });

  it('restore: ends INTERRUPTED, the held downloads cut; the rerun writes the image', async () => {
    const done = await withRun((session) => backup(session, { source: imagePath, volume: 'restored' }));
    proxy.hold = /^GET \/snapshots\/[^/]+\/blocks\//;
    const controller = new AbortController();
    const target = join(dir, 'restored-after-interrupt.img');
    const run = withRun((session) => restore(session, { snapshotId: done.snapshotId!, target, signal: controller.signal }), controller.signal);
    const err = await interrupted(run, controller);
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);

    proxy.hold = undefined;
    await withRun((session) => restore(session, { snapshotId: done.snapshotId!, target, force: true }));
    expect(readFileSync(target).equals(image)).toBe(true);
  });
});

describe('an interrupted run with a call that changes remote state in flight', () => {
  it('prune: the DeleteSnapshot under way is not cut; its deletion is recorded in the index', async () => {
    const older = await withRun((session) => backup(session, { source: imagePath, volume: 'pruned' }));
    await withRun((session) => backup(session, { source: imagePath, volume: 'pruned' }));
    proxy.hold = /^POST \/ .*Action=DeleteSnapshot/;
    const controller = new AbortController();
    const run = withRun((session) => prune(session, { olderThanDays: 0, volume: 'pruned', now: new Date(Date.now() + 86_400_000) }), controller.signal);
    await proxy.holding();
    controller.abort(interruption());
    proxy.held[0]!.release();
    const result = await run;

    expect(result.deleted.map((d) => d.snapshotId)).toEqual([older.snapshotId]);
    const index = BlockIndex.open(indexPath);
    try {
      expect(index.lineage.getSnapshot(older.snapshotId!)?.state).toBe('deleted');
    } finally {
      index.close();
    }
    proxy.hold = undefined;
    expect(await withRun((session) => session.catalog.describeSnapshots([older.snapshotId!]))).toEqual([]);
  });
});
