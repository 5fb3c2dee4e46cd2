import { getEventListeners } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rejection } from '../test/support/rejection.js';
import { checksumOf, sha256 } from './core/checksum.js';
import { BLOCK_SIZE } from './core/constants.js';
import { startEmulator, type RunningEmulator } from './emulator/index.js';
import { ErrorCodes, SnaplineError } from './errors.js';
import { openSession, withSession, type Session } from './session.js';

let dir: string;
let endpoint: RunningEmulator;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-session-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined });
});

afterAll(async () => {
  await endpoint.close();
  rmSync(dir, { recursive: true, force: true });
});

const BLOCK = Buffer.alloc(BLOCK_SIZE, 7);

const open = (signal?: AbortSignal): Promise<Session> =>
  openSession({ connection: 'local', endpointUrl: endpoint.url, indexPath: join(dir, `index-${Math.random().toString(36).slice(2)}.db`), concurrency: 4, ...(signal ? { signal } : {}) });

describe("sessions on one long-lived signal (the CLI's)", () => {
  it('leave no listener on it once their requests are done', async () => {
    const controller = new AbortController();
    for (let i = 0; i < 6; i++) {
      const session = await open(controller.signal);
      try {
        const { snapshotId } = await session.writer.startSnapshot({ volumeSizeGiB: 1 });
        await session.writer.putBlock(snapshotId, 0, BLOCK, checksumOf(sha256(BLOCK)));
        expect(await session.catalog.describeSnapshots([snapshotId])).toHaveLength(1);
      } finally {
        await session.close();
      }
    }
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });
});

describe('close()', () => {
  it('runs every closer, last opened first, even when one throws, then throws the first error; a second close does nothing more', async () => {
    const session = await open();
    const calls: string[] = [];
    const destroy = session.clients.destroy.bind(session.clients);
    session.clients.destroy = () => {
      calls.push('clients');
      destroy();
      throw new SnaplineError(ErrorCodes.INTERNAL, 'clients would not close');
    };
    const closeConnection = session.connection.close.bind(session.connection);
    session.connection.close = () => {
      calls.push('connection');
      return closeConnection();
    };
    const closeIndex = session.index.close.bind(session.index);
    session.index.close = () => {
      calls.push('index');
      closeIndex();
    };

    const first = await rejection(session.close());
    expect(first.message).toBe('clients would not close');
    expect(calls).toEqual(['clients', 'connection', 'index']);
    expect(await rejection(session.close())).toBe(first);
    expect(calls).toEqual(['clients', 'connection', 'index']);
  });
});

describe('withSession', () => {
  const failingClients = (session: Session) => {
    const destroy = session.clients.destroy.bind(session.clients);
    session.clients.destroy = () => {
      destroy();
      throw new SnaplineError(ErrorCodes.INTERNAL, 'clients would not close');
    };
  };
  const options = () => ({ connection: 'local', endpointUrl: endpoint.url, indexPath: join(dir, `index-${Math.random().toString(36).slice(2)}.db`), concurrency: 4 });

  it("keeps the run's own error when closing fails too", async () => {
    const error = await rejection(
      withSession(options(), (session) => {
        failingClients(session);
        return Promise.reject(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test'));
      }),
    );
    expect(error.code).toBe(ErrorCodes.INTERRUPTED);
  });

  it('throws the failure to close when the run succeeded', async () => {
    const error = await rejection(withSession(options(), async (session) => failingClients(session)));
    expect(error.message).toBe('clients would not close');
  });
});
