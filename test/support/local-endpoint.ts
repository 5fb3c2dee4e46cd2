/**
 * The library on the local endpoint as the engine and e2e tests set it up:
 * an endpoint with its data in a temp folder, and sessions through the real
 * adapters (openSession, connection 'local') on index files in that folder.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';
import { openSession, withSession, type Session, type SessionOptions } from '../../src/session.js';
import { blockOf, clientsFor, complete, put, start } from '../emulator/helpers.js';

/** A session's options on `endpoint` with its index at `indexPath`: connection local, 8 requests in flight, then `more`. */
export function localSessionOptions(endpoint: RunningEmulator, indexPath: string, more: Partial<SessionOptions> = {}): SessionOptions {
  return { connection: 'local', endpointUrl: endpoint.url, indexPath, concurrency: 8, ...more };
}

export function openLocalSession(endpoint: RunningEmulator, indexPath: string, more?: Partial<SessionOptions>): Promise<Session> {
  return openSession(localSessionOptions(endpoint, indexPath, more));
}

/** Runs `fn` with a session of its own on `endpoint` and closes it whatever happens. */
export function withLocalSession<T>(endpoint: RunningEmulator, indexPath: string, fn: (session: Session) => Promise<T>, more?: Partial<SessionOptions>): Promise<T> {
  return withSession(localSessionOptions(endpoint, indexPath, more), fn);
}

/** A fresh path in `dir` for each call: `name` with a number that makes it unique. */
export function pathsIn(dir: string): (name: string) => string {
  let serial = 0;
  return (name) => join(dir, `${name}-${++serial}`);
}

export interface LocalEndpoint {
  /** The temp folder: the endpoint's data in endpoint/, the session's index in index.db. */
  work: string;
  emulator: RunningEmulator;
  session: Session;
  /** A fresh path in `work` (pathsIn). */
  pathFor: (name: string) => string;
  /** Closes the session and the endpoint, then removes `work`. */
  close(): Promise<void>;
}

/**
 * A temp folder named from `prefix`, an endpoint on it and a session on its
 * index, for a test file's beforeAll (close() in its afterAll). Leaves
 * nothing behind when a step fails.
 */
export async function startLocalEndpoint(
  prefix: string,
  options: { emulator?: Omit<EmulatorOptions, 'dataDir'>; session?: Partial<SessionOptions> } = {},
): Promise<LocalEndpoint> {
  const work = await mkdtemp(join(tmpdir(), prefix));
  let emulator: RunningEmulator | undefined;
  try {
    emulator = await startEmulator({ dataDir: join(work, 'endpoint'), ...options.emulator });
    const session = await openLocalSession(emulator, join(work, 'index.db'), options.session);
    const running = emulator;
    return {
      work,
      emulator,
      session,
      pathFor: pathsIn(work),
      async close() {
        try {
          await session.close();
        } finally {
          await running.close().finally(() => rm(work, { recursive: true, force: true }));
        }
      },
    };
  } catch (err) {
    await emulator?.close();
    await rm(work, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Two snapshots of one block on `endpoint` that cannot be read: one left
 * pending (its completion an hour away) and one completed to error. Uses
 * the endpoint's faults and switches them all off afterwards.
 */
export async function unreadableSnapshots(endpoint: RunningEmulator): Promise<{ pending: string; errored: string }> {
  const { ebs, ec2, sts, s3 } = clientsFor(endpoint.url);
  try {
    const made = async (byte: number, expected: string) => {
      const snapshotId = await start(ebs);
      await put(ebs, snapshotId, 0, blockOf(byte));
      const status = await complete(ebs, snapshotId, new Map([[0, blockOf(byte)]]));
      if (status !== expected) throw new Error(`${snapshotId} came out ${status}, not ${expected}`);
      return snapshotId;
    };
    endpoint.setFaults({ completionDelayMs: 3_600_000 });
    const pending = await made(1, 'pending');
    endpoint.setFaults({ completionErrorRate: 1 });
    const errored = await made(2, 'error');
    return { pending, errored };
  } finally {
    endpoint.setFaults({});
    for (const client of [ebs, ec2, sts, s3]) client.destroy();
  }
}
