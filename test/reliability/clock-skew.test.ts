import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { restore } from '../../src/engine/restore/restore.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { withLocalSession } from '../support/local-endpoint.js';
import { expectSameBytes } from '../support/same-bytes.js';

/**
 * A host whose clock is 20 minutes off the service's, against an endpoint
 * that checks signatures and signing times (--auth) as AWS does: the first
 * refusal carries the service's time in its Date header, the SDK clients
 * and snapline's direct requests take their clock offset from it, and
 * the backup and the restore go through byte-identical.
 */

const MINUTE = 60_000;
const BLOCK = 524_288;
/** The credentials of the built-in `local` connection. */
const LOCAL_KEY = { accessKeyId: 'snapline-local', secretAccessKey: 'snapline-local-secret' };

let work: string;
let endpoint: RunningEmulator | undefined;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-skew-'));
});

afterEach(async () => {
  await endpoint?.close();
  endpoint = undefined;
  await rm(work, { recursive: true, force: true });
});

describe.each([
  ['20 minutes behind the endpoint', 20 * MINUTE],
  ['20 minutes ahead of the endpoint', -20 * MINUTE],
])('a host clock %s', (_name, endpointAheadMs) => {
  it('backs up and restores byte-identical', async () => {
    endpoint = await startEmulator({ dataDir: join(work, 'endpoint'), auth: [LOCAL_KEY], now: () => Date.now() + endpointAheadMs, log: () => undefined });
    const image = join(work, 'disk.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 5, 8, 13, 21, 34, 40, 41, 42, 43]), 48 * BLOCK + 777);
    const restored = join(work, 'restored.img');
    const retried: string[] = [];
    const onRetry = (_error: unknown, _attempt: number, operation: string) => retried.push(operation);

    const result = await withLocalSession(endpoint, join(work, 'index.db'), (session) => backup(session, { source: image, volume: 'skewed' }), { onRetry });
    expect(result.snapshotId).toMatch(/^snap-/);
    expect(result.blocksUploaded).toBe(12);
    // Only the first request was refused for its signing time: its answer corrected the connection's clock, which
    // every request after it (EC2's direct ones and EBS's alike) was signed with, StartSnapshot's first attempt included.
    expect(endpoint.stats().operations.AuthRefused?.requests).toBe(1);
    expect(retried).toEqual([]);

    // A new session (new clients, no offset yet) restores it.
    await withLocalSession(endpoint, join(work, 'index.db'), (session) => restore(session, { snapshotId: result.snapshotId!, target: restored }));
    await expectSameBytes(restored, image);
  });
});
