// snapline's benchmark suite: every target of DESIGN.md, each figure against a
// reference measured in the same run on the same machine.
//
//   npm run bench                 the full suite (a few minutes on 2 cores)
//   npm run bench -- --quick      smaller sizes, under a minute
//   npm run bench -- --only transfer,scan [--rounds 3]
//
// Groups: hashing, transfer (full backup and restore against the bare SDK
// loops, across concurrencies), scan (and incremental), command (the whole
// `snapline backup`, `verify` and `backup --dry-run` of an unchanged cached
// image as child processes, wall time against the SHA-256 ceiling), sparse,
// index, memory (peak RSS), throttle, size (throughput against image size),
// tracking (incrementals with an NBD dirty bitmap; needs qemu-utils).
//
// Builds dist/ first when the sources are newer. Prints each figure (MiB/s,
// blocks/s) with its reference and ratio, then a summary table with each
// target and pass/short; writes bench/results/latest.json and
// bench/results/latest.svg (throughput against concurrency and against size).
//
// The local endpoint runs as its own process (`snapline serve`), started fresh
// for every run that writes blocks, so no run profits from blocks stored by
// another. It shares the cores with the code under test, as it does with each
// reference loop. Figures and references run in interleaved rounds and the
// best of each is kept, so a noisy neighbour hurts both alike.
import { parseArgs } from 'node:util';
import { ensureBuilt } from './lib/build.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    rounds: { type: 'string' },
  },
});
ensureBuilt();
const { GROUPS, runSuite } = await import('./lib/suite.js');
const known = /** @type {Array<keyof typeof GROUPS>} */ (Object.keys(GROUPS));
const only = values.only?.split(',').map((name) => name.trim());
const unknown = only?.filter((name) => !(name in GROUPS)) ?? [];
const rounds = values.rounds === undefined ? undefined : Number(values.rounds);
if (unknown.length > 0 || (rounds !== undefined && !(Number.isInteger(rounds) && rounds >= 1))) {
  console.error(unknown.length > 0 ? `unknown group ${unknown.join(', ')}; known: ${known.join(', ')}` : '--rounds must be a whole number of at least 1');
  process.exitCode = 2;
} else {
  const failed = await runSuite({ quick: values.quick ?? false, groups: only === undefined ? known : /** @type {Array<keyof typeof GROUPS>} */ (only), rounds });
  process.exitCode = failed ? 1 : 0;
}
