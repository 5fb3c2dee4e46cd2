/**
 * Crash torture in the test suite: 20 runs of `snapline backup` and
 * `snapline restore` (the built CLI), each killed with SIGKILL at one or two
 * seeded random moments and started again until it succeeds; see
 * test/support/torture.js for what is checked after every kill and every
 * success. `node bench/torture.js --runs N` runs longer.
 *
 * Replay: SNAPLINE_TORTURE_SEED=<seed> npx vitest run test/reliability/crash-torture.test.ts
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { startEmulator } from '../../src/emulator/index.js';
import { BlockIndex } from '../../src/index/index.js';
import { killStrays } from '../support/cli.js';
import { runTorture } from '../support/torture.js';

const SEED = Number(process.env.SNAPLINE_TORTURE_SEED ?? 4242);
const RUNS = 20;

afterAll(killStrays);

it(`${RUNS} backup and restore runs survive SIGKILL at random moments (seed ${SEED})`, async () => {
  const workDir = mkdtempSync(join(tmpdir(), 'snapline-torture-'));
  try {
    // One kill a run keeps the suite's part short; bench/torture.js kills up to three times.
    const report = await runTorture({ runs: RUNS, seed: SEED, workDir, startEmulator, BlockIndex, maxKills: 1 });
    console.log(`crash torture: ${JSON.stringify(report)}`);
    expect(report).toMatchObject({ runs: RUNS, backups: RUNS / 2, restores: RUNS / 2, dataLost: 0 });
    // A kill after a number of requests always lands; one after a random time misses a command that already finished.
    expect(report.kills).toBeGreaterThanOrEqual(RUNS * 0.6);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}, 180_000);
