import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../test/support/cli.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';

/** The CLI's interrupt signal is waited on by every retry's backoff sleep and every wait for a slab at once: far more than Node's default of 10. */
describe('the interrupt signal', () => {
  let dir: string;
  let endpoint: RunningEmulator;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-main-'));
    endpoint = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined, errorRate: 0.5, seed: 7 });
  });

  afterAll(async () => {
    await endpoint.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('takes many listeners without a warning: a backup with half its requests failing prints none', async () => {
    const image = join(dir, 'image.img');
    writeFileSync(image, randomBytes(128 * BLOCK_SIZE));
    const run = await runCli(['--endpoint-url', endpoint.url, '--connection', 'local', '--index', join(dir, 'index.db'), '--no-progress', 'backup', image], {
      dataDir: join(dir, 'data'),
    });
    expect(run.code, run.stderr).toBe(0);
    expect(endpoint.stats().faults.internalErrors).toBeGreaterThan(10);
    expect(run.stderr).not.toMatch(/MaxListenersExceededWarning/);
  });
});
