// Block index figures on a volume of N blocks (default 2 M = 1 TiB); see
// bench/lib/index-figures.js for what each line measures. bench/run.js runs
// the same figures as part of the suite.
//
//   npm run build && node bench/index.js [--blocks 2000000] [--changed 0.01] [--window 64] [--rounds 3]
//
// Timings are the best of --rounds where a figure is repeatable (scans, diffs).
import { parseArgs } from 'node:util';
import { runIndexBench } from './lib/index-figures.js';

const { values } = parseArgs({
  options: {
    blocks: { type: 'string', default: '2000000' },
    changed: { type: 'string', default: '0.01' },
    window: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '3' },
  },
});
runIndexBench({
  blocks: Number(values.blocks),
  changed: Number(values.changed),
  window: Number(values.window),
  rounds: Number(values.rounds),
  journal: true,
  extras: true,
  log: (line) => console.log(line),
});
