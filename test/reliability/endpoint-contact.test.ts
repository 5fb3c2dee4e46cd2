import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checksumOf, sha256 } from '../../src/core/checksum.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { withRemote } from '../../src/session.js';

/**
 * A run whose first answer came from EC2 (a resumed backup describes its
 * snapshot first) outlives an endpoint that goes away and comes back on the
 * same port: the session's stores share one record of contact, so the
 * writer's refused connections get the full retry budget instead of the
 * early failure meant for a wrong endpoint URL.
 */

let dir: string;
let endpoint: RunningEmulator;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-contact-'));
  endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined });
});

afterEach(async () => {
  await endpoint.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('an endpoint restart after the run had only an EC2 answer', () => {
  it('the upload waits for the endpoint to come back', async () => {
    const request = { connection: 'local', endpointUrl: endpoint.url, concurrency: 4 };
    // A run that started the snapshot and was stopped.
    const { snapshotId } = await withRemote(request, (remote) => remote.writer.startSnapshot({ volumeSizeGiB: 1 }));

    const port = endpoint.port;
    let refused = 0;
    let restarted: Promise<void> | undefined;
    const block = randomBytes(BLOCK_SIZE);
    const onRetry = (_error: unknown, attempt: number) => {
      refused = Math.max(refused, attempt);
      // The endpoint comes back once the writer has been refused as often as an endpoint never reached may be.
      if (attempt === 3) {
        restarted = startEmulator({ dataDir: join(dir, 'endpoint'), port, log: () => undefined }).then((running) => {
          endpoint = running;
        });
      }
    };
    await withRemote({ ...request, newSnapshotIds: [snapshotId], onRetry }, async (remote) => {
      const [described] = await remote.catalog.describeSnapshots([snapshotId]);
      expect(described).toMatchObject({ snapshotId, state: 'pending' });
      await endpoint.close();
      await remote.writer.putBlock(snapshotId, 0, block, checksumOf(sha256(block)));
    });
    await restarted;
    expect(refused).toBeGreaterThanOrEqual(3);
  });
});
