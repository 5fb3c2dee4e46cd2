import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RetryClock } from '../../src/aws/retry.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { restore } from '../../src/engine/restore/restore.js';
import { ErrorCodes } from '../../src/errors.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { withLocalSession } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

/**
 * An account throttled for a long while: every EBS request answered
 * ThrottlingException by the endpoint, for minutes of backoff measured on a
 * clock of the test's own (the retries sleep on it; it moves by what they
 * sleep, so no real minutes pass). The run slows down and goes on, far past
 * the attempt count other errors get, and fails only once one call has been
 * throttled for the whole budget.
 */

const MINUTE = 60_000;
const BLOCK = 524_288;

/** Moves by what the code under test sleeps, yielding to the event loop each time. */
class ScaledClock implements RetryClock {
  ms = 0;
  readonly now = (): number => this.ms;
  readonly sleep = (ms: number, signal?: AbortSignal): Promise<void> => {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    this.ms += ms;
    return new Promise((resolve) => setImmediate(resolve));
  };
}

let work: string;
let endpoint: RunningEmulator;
let image: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-throttle-'));
  endpoint = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
  image = join(work, 'disk.img');
  writeBlocks(image, randomBlocks([0, 1, 2, 3, 7, 9, 10, 15]), 16 * BLOCK);
});

afterEach(async () => {
  await endpoint.close();
  await rm(work, { recursive: true, force: true });
});

describe('an account throttled for minutes', () => {
  it('slows the backup down and does not end it; the session tells how long it has been throttled', async () => {
    const clock = new ScaledClock();
    endpoint.setFaults({ throttleRate: 1, seed: 7 });
    let longest = 0;
    let watched: number | undefined;
    const result = await withLocalSession(
      endpoint,
      join(work, 'index.db'),
      (session) =>
        backup(session, { source: image, volume: 'throttled' }).finally(() => {
          watched = session.throttling.throttledForMs();
        }),
      {
        retryClock: clock,
        onThrottled: (throttledForMs) => {
          longest = Math.max(longest, throttledForMs);
          // The account recovers after three minutes of throttling.
          if (throttledForMs >= 3 * MINUTE) endpoint.setFaults({});
        },
      },
    );
    expect(result.blocksUploaded).toBe(8);
    expect(longest).toBeGreaterThanOrEqual(3 * MINUTE);
    // Far more throttled answers than the 10 attempts a call gets for other errors.
    expect(endpoint.stats().faults.throttled).toBeGreaterThan(10);
    // Nothing is throttled once the run is over.
    expect(watched).toBeUndefined();

    const restored = join(work, 'restored.img');
    await withLocalSession(endpoint, join(work, 'index.db'), (session) => restore(session, { snapshotId: result.snapshotId!, target: restored }));
    await expectSameBytes(restored, image);
  });

  it('fails THROTTLED, no longer retryable, once a call has been throttled for the whole budget (10 minutes by default)', async () => {
    endpoint.setFaults({ throttleRate: 1, seed: 7 });
    const clock = new ScaledClock();
    const error = await rejection(withLocalSession(endpoint, join(work, 'index.db'), (session) => backup(session, { source: image, volume: 'throttled' }), { retryClock: clock }));
    expect(error).toMatchObject({ code: ErrorCodes.THROTTLED, retryable: false });
    expect(error.message).toMatch(/throttled for 10 min\)$/);
    expect(clock.ms).toBeGreaterThanOrEqual(10 * MINUTE);
  });

  it('the budget is a session option', async () => {
    endpoint.setFaults({ throttleRate: 1, seed: 7 });
    const error = await rejection(
      withLocalSession(endpoint, join(work, 'index.db'), (session) => backup(session, { source: image, volume: 'throttled' }), {
        retryClock: new ScaledClock(),
        throttleBudgetMs: 2 * MINUTE,
      }),
    );
    expect(error.message).toMatch(/throttled for 2 min\)$/);
  });
});
