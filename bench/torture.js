// Crash torture, longer than the test suite's 20 runs: `snapline backup` and
// `snapline restore` (the built CLI) against the local endpoint, each killed
// with SIGKILL at seeded random moments (up to --max-kills a run) and started
// again until it succeeds. After every kill the index must claim nothing the
// endpoint does not hold; after every success the snapshot (or the restored
// target) must equal the image byte for byte, no run may be left pending, and
// no block may be uploaded again more often than the upload window allows.
// See test/support/torture.js.
//
//   node bench/torture.js [--runs 200] [--seed N] [--max-kills 3] [--blocks 48] [--keep]
//
// Prints one line a run and the totals; exits 1 on the first failure, naming
// the seed and run to replay. Builds dist/ first when the sources are newer.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBuilt } from './lib/build.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '200' },
    seed: { type: 'string' },
    'max-kills': { type: 'string', default: '3' },
    blocks: { type: 'string', default: '48' },
    keep: { type: 'boolean', default: false },
  },
});
const runs = Number(values.runs);
const seed = values.seed === undefined ? Math.floor(Math.random() * 1e6) : Number(values.seed);
const maxKills = Number(values['max-kills']);
const blocks = Number(values.blocks);
for (const [flag, value, min] of /** @type {const} */ ([['--runs', runs, 1], ['--seed', seed, 0], ['--max-kills', maxKills, 1], ['--blocks', blocks, 4]])) {
  if (!Number.isSafeInteger(value) || value < min) {
    console.error(`${flag} must be a whole number of at least ${min}`);
    process.exit(2);
  }
}

ensureBuilt();
// Loaded once the build is current.
const { startEmulator } = await import('snapline');
const { BlockIndex } = await import('snapline/internals');
const { runTorture, TortureFailure } = await import('../test/support/torture.js');

const workDir = await mkdtemp(join(tmpdir(), 'snapline-torture-'));
const started = Date.now();
console.log(`crash torture: ${runs} runs, seed ${seed}, up to ${maxKills} kills a run, ${blocks}-block image, in ${workDir}`);
let failed = false;
try {
  const report = await runTorture({ runs, seed, workDir, startEmulator, BlockIndex, blocks, maxKills, log: (line) => console.log(line) });
  console.log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s: ${JSON.stringify(report)}`);
} catch (err) {
  failed = true;
  console.error(err instanceof TortureFailure ? `FAILED: ${err.message}` : err);
} finally {
  if (values.keep || failed) console.log(`files kept in ${workDir}`);
  else await rm(workDir, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
