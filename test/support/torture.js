// Crash torture: `snapline backup` and `snapline restore` as child processes,
// killed with SIGKILL at seeded random moments and started again until they
// succeed. After every kill the index must claim nothing the endpoint does
// not hold; after every success the snapshot must hold the image byte for
// byte (or the target the snapshot), no run may be left pending, and no block
// may have been uploaded again more often than the upload window allows.
// Shared by test/reliability/crash-torture.test.ts and bench/torture.js; the
// endpoint and index modules are passed in (src/ in tests, dist/ in the bench).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EBSClient } from '@aws-sdk/client-ebs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { startCli } from './cli.js';
import { BLOCK_SIZE, between, nonZeroBlocks, overwriteBlocks, seededRandom, writeImage } from './images.js';
import { indexProblems, snapshotDiffers } from './truth.js';

/** Uploads in flight of every run (--concurrency). */
const CONCURRENCY = 4;
/**
 * The most uploads a killed backup can have made that its journal does not
 * know of: the engine's slab pool at this concurrency (src/session.ts: slabs
 * of 8 blocks, ceil(concurrency / 8) + 4 of them); a slab's
 * acknowledgements are journaled before it is reused.
 */
export const UPLOAD_WINDOW = (Math.ceil(CONCURRENCY / 8) + 4) * 8;

/**
 * @typedef {object} TortureOptions
 * @property {number} runs commands carried to success; even runs back up, odd ones restore
 * @property {number} seed decides the images, their changes and every kill
 * @property {string} workDir an empty directory for the endpoint, index, images and targets
 * @property {typeof import('../../src/emulator/index.js').startEmulator} startEmulator
 * @property {typeof import('../../src/index/index.js').BlockIndex} BlockIndex
 * @property {number} [blocks] image size in whole blocks (default 48; a 3000-byte tail follows)
 * @property {number} [maxKills] kills per run, at least 1 (default 2)
 * @property {(line: string) => void} [log]
 */

/**
 * @typedef {object} TortureReport
 * @property {number} runs
 * @property {number} backups
 * @property {number} restores
 * @property {number} kills SIGKILLs that landed on a running command
 * @property {number} spawns
 * @property {number} uploadsRepeated accepted PutSnapshotBlock requests beyond the blocks that changed, summed
 * @property {number} worstRepeatPerKill
 * @property {number} dataLost snapshots or targets that came out different (the harness throws first, so 0)
 */

/** A failure of the torture run, naming the seed and run so that it can be replayed. */
export class TortureFailure extends Error {}

/**
 * @param {TortureOptions} options
 * @returns {Promise<TortureReport>}
 */
export async function runTorture(options) {
  const { runs, seed, workDir, startEmulator, BlockIndex, blocks = 48, maxKills = 2, log = () => undefined } = options;
  // A little latency, so that a kill by time lands amid the requests as often as one by request count.
  const emulator = await startEmulator({ dataDir: join(workDir, 'endpoint'), latencyMs: 3, log: () => undefined });
  const clientConfig = {
    endpoint: emulator.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'torture', secretAccessKey: 'torture-secret' },
    maxAttempts: 1,
  };
  const ebs = new EBSClient(clientConfig);
  const ec2 = new EC2Client(clientConfig);
  const indexPath = join(workDir, 'index.db');
  const dataDir = join(workDir, 'data');
  const image = join(workDir, 'disk.img');
  const target = join(workDir, 'restored.img');
  /** @type {Map<string, Map<number, Buffer>>} */
  const cache = new Map();
  /** @type {Map<string, Buffer>} */
  const held = new Map();
  /** @type {TortureReport} */
  const report = { runs: 0, backups: 0, restores: 0, kills: 0, spawns: 0, uploadsRepeated: 0, worstRepeatPerKill: 0, dataLost: 0 };
  const global = ['--connection', 'local', '--endpoint-url', emulator.url, '--index', indexPath, '--json', '--no-progress'];

  let bytes = writeImage(image, { label: `torture/${seed}/0`, blocks, tailBytes: 3000, zeroBlocks: [1, 2, blocks - 1] });
  /** @type {Buffer | null} */
  let parentBytes = null;
  /** @type {string | null} */
  let latest = null;
  let restoredOnce = false;

  try {
    for (let run = 0; run < runs; run += 1) {
      const random = seededRandom(seed * 7919 + run);
      const where = `seed ${seed}, run ${run} (replay: node bench/torture.js --seed ${seed} --runs ${run + 1} --max-kills ${maxKills} --blocks ${blocks})`;
      const fail = (/** @type {string} */ what) => new TortureFailure(`${what} [${where}]`);
      const backingUp = run % 2 === 0;
      const kills = between(random, 1, maxKills);

      /** @type {string[][]} */
      let argsByAttempt;
      let expectedUploads = 0;
      /** Requests the command surely makes before it can succeed: a kill after a number of requests up to this one cannot miss. */
      let surelyMade;
      if (backingUp) {
        if (run > 0) {
          const changed = new Set(Array.from({ length: between(random, 2, 8) }, () => between(random, 0, blocks)));
          const zeroed = between(random, 0, blocks);
          changed.add(zeroed);
          overwriteBlocks(image, bytes, changed, `torture/${seed}/${run}`, (i) => i === zeroed);
        }
        expectedUploads = changedBlockCount(parentBytes, bytes);
        // StartSnapshot, the uploads, CompleteSnapshot.
        surelyMade = expectedUploads + 2;
        argsByAttempt = [[...global, 'backup', image, '--volume', 'disk', '--concurrency', String(CONCURRENCY)]];
      } else {
        if (latest === null) throw fail('no snapshot to restore');
        const full = [...global, 'restore', latest, target, '--force', '--concurrency', String(CONCURRENCY)];
        const incrementalArgs = [...global, 'restore', latest, target, '--incremental', '--concurrency', String(CONCURRENCY)];
        const incremental = restoredOnce && random() < 0.5;
        // A killed restore is finished by an incremental one (the target is hashed), once the index has a record of
        // the target: always after the first restore has succeeded; before that, by a full one.
        argsByAttempt = [incremental ? incrementalArgs : full, restoredOnce ? incrementalArgs : full];
        // DescribeSnapshots, a listing, and (in full) a read of every block the snapshot holds.
        surelyMade = incremental ? 2 : 2 + nonZeroBlocks(bytes).length;
      }

      emulator.resetStats();
      let killed = 0;
      /** @type {import('./cli.js').CliResult | undefined} */
      let finished;
      for (let attempt = 0; finished === undefined; attempt += 1) {
        if (attempt > kills + 2) throw fail(`no success after ${attempt} attempts`);
        const args = argsByAttempt[Math.min(attempt, argsByAttempt.length - 1)];
        const started = startCli(/** @type {string[]} */ (args), { dataDir });
        report.spawns += 1;
        if (attempt < kills) {
          const byRequests = random() < 0.65;
          const threshold = byRequests ? between(random, 1, surelyMade) : between(random, 0, 600);
          const requestsAtStart = emulator.stats().totals.requests;
          const startedAt = Date.now();
          const due = () =>
            byRequests ? emulator.stats().totals.requests - requestsAtStart >= threshold : Date.now() - startedAt >= threshold;
          while (!due() && started.child.exitCode === null && started.child.signalCode === null) await sleep(2);
          if (started.child.exitCode === null && started.child.signalCode === null) started.child.kill('SIGKILL');
          const result = await started.done;
          if (result.signal === 'SIGKILL') {
            killed += 1;
            report.kills += 1;
            const problems = await indexProblems({ BlockIndex, indexPath, ebs, ec2, targets: [target], cache });
            if (problems.length > 0) throw fail(`after a SIGKILL ${byRequests ? `at request ${threshold}` : `after ${threshold} ms`}: ${problems.join('; ')}`);
            continue;
          }
          finished = result;
        } else {
          finished = await started.done;
        }
      }
      if (finished.code !== 0) throw fail(`${backingUp ? 'backup' : 'restore'} exited ${finished.code}: ${finished.stderr.trim()}`);
      const result = JSON.parse(finished.stdout);

      if (backingUp) {
        const snapshotId = /** @type {string} */ (result.backups[0].snapshotId);
        const differs = await snapshotDiffers(ebs, snapshotId, bytes);
        if (differs !== undefined) {
          report.dataLost += 1;
          throw fail(differs);
        }
        const puts = emulator.stats().operations.PutSnapshotBlock;
        const accepted = (puts?.requests ?? 0) - (puts?.errors ?? 0);
        const repeated = accepted - expectedUploads;
        if (repeated > killed * UPLOAD_WINDOW) {
          throw fail(`${accepted} uploads for ${expectedUploads} changed blocks after ${killed} kills: more than ${UPLOAD_WINDOW} repeated per kill`);
        }
        report.uploadsRepeated += Math.max(0, repeated);
        if (killed > 0) report.worstRepeatPerKill = Math.max(report.worstRepeatPerKill, Math.max(0, repeated) / killed);
        held.set(snapshotId, Buffer.from(bytes));
        parentBytes = Buffer.from(bytes);
        latest = snapshotId;
        report.backups += 1;
      } else {
        const expected = /** @type {Buffer} */ (held.get(/** @type {string} */ (latest)));
        if (!readFileSync(target).equals(expected)) {
          report.dataLost += 1;
          throw fail(`the restored target differs from ${latest}`);
        }
        restoredOnce = true;
        report.restores += 1;
      }
      const problems = await indexProblems({ BlockIndex, indexPath, ebs, ec2, settled: true, targets: [target], cache });
      if (problems.length > 0) throw fail(`after success: ${problems.join('; ')}`);
      report.runs += 1;
      log(`run ${run}: ${backingUp ? 'backup' : 'restore'} survived ${killed} kills`);
    }
    return report;
  } finally {
    ebs.destroy();
    ec2.destroy();
    await emulator.close();
  }
}

/**
 * Blocks that differ between the parent's bytes and now (a full backup: the non-zero ones).
 * @param {Buffer | null} before
 * @param {Buffer} after
 */
function changedBlockCount(before, after) {
  const zeros = Buffer.alloc(BLOCK_SIZE);
  let count = 0;
  for (let start = 0; start < after.length; start += BLOCK_SIZE) {
    const now = after.subarray(start, start + BLOCK_SIZE);
    const then = before === null ? zeros.subarray(0, now.length) : before.subarray(start, start + BLOCK_SIZE);
    if (!now.equals(then)) count += 1;
  }
  return count;
}
