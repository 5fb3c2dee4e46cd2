// Timing, rates, target checks and the machine's description for the
// benchmark report.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;
export const BLOCK = 512 * 1024;

/**
 * @typedef {object} Trial
 * @property {string} name
 * @property {() => Promise<number | void>} run one measured run; may return its own duration in ms
 *   (when it must leave setup out), else the whole call is timed
 */

/**
 * Runs the trials in interleaved rounds (each round runs every trial once, in
 * order) so that a noisy neighbour hurts all of them alike, and keeps the
 * fastest run of each.
 * @param {Trial[]} trials
 * @param {number} rounds
 * @returns {Promise<Map<string, number>>} best milliseconds by trial name
 */
export async function interleaved(trials, rounds) {
  return bestOf(await interleavedRuns(trials, rounds));
}

/**
 * The fastest run of each trial.
 * @param {Map<string, number[]>} runs milliseconds by trial name
 * @returns {Map<string, number>}
 */
export const bestOf = (runs) => new Map([...runs].map(([name, ms]) => [name, Math.min(...ms)]));

/**
 * As interleaved, keeping every run: for the spread of a figure over its rounds.
 * @param {Trial[]} trials
 * @param {number} rounds
 * @returns {Promise<Map<string, number[]>>} milliseconds of each round, in order, by trial name
 */
export async function interleavedRuns(trials, rounds) {
  /** @type {Map<string, number[]>} */
  const runs = new Map(trials.map((trial) => [trial.name, []]));
  for (let round = 0; round < rounds; round += 1) {
    for (const trial of trials) {
      const start = performance.now();
      const reported = await trial.run();
      const ms = typeof reported === 'number' ? reported : performance.now() - start;
      runs.get(trial.name)?.push(ms);
    }
  }
  return runs;
}

/**
 * The spread of the rates of runs that each moved `bytes`: every run's MiB/s
 * in round order, and with a reference rate (the best of its own runs) each
 * run's share of it.
 * @param {number} bytes
 * @param {number[]} runsMs
 * @param {number} [referenceMiBps]
 * @returns {Spread}
 */
export function rateSpread(bytes, runsMs, referenceMiBps) {
  const values = runsMs.map((ms) => mibPerSecond(bytes, ms));
  const spread = { values, min: Math.min(...values), max: Math.max(...values) };
  if (referenceMiBps === undefined) return spread;
  return { ...spread, ratioMin: spread.min / referenceMiBps, ratioMax: spread.max / referenceMiBps };
}

/**
 * @typedef {object} Spread a figure's runs over its rounds
 * @property {number[]} values each round's value, in the figure's unit, in round order
 * @property {number} min
 * @property {number} max
 * @property {number} [ratioMin] the lowest value against the figure's reference (the best of its rounds)
 * @property {number} [ratioMax]
 */

/**
 * @param {number} bytes
 * @param {number} ms
 */
export const mibPerSecond = (bytes, ms) => bytes / MIB / (ms / 1000);

/**
 * @param {number} bytes
 * @param {number} ms
 */
export const blocksPerSecond = (bytes, ms) => bytes / BLOCK / (ms / 1000);

/**
 * "1234 MiB/s, 2468 blocks/s" for `bytes` moved in `ms`.
 * @param {number} bytes
 * @param {number} ms
 */
export function rateText(bytes, ms) {
  return `${mibPerSecond(bytes, ms).toFixed(0)} MiB/s, ${blocksPerSecond(bytes, ms).toFixed(0)} blocks/s`;
}

/**
 * @typedef {object} Target
 * @property {'>=' | '<='} op
 * @property {number} value
 * @property {string} text e.g. ">= 80 % of the ceiling"
 */

/**
 * Whether `value` meets the target, and by how much it falls short (in the target's unit, 0 when it passes).
 * @param {number} value
 * @param {Target} target
 */
export function judge(value, target) {
  const pass = target.op === '>=' ? value >= target.value : value <= target.value;
  const shortBy = pass ? 0 : Math.abs(value - target.value);
  return { pass, shortBy };
}

/** The machine the figures were taken on. */
export function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  const flags = /^flags\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.split(' ') ?? [];
  let nproc = availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // nproc missing: keep Node's count.
  }
  return {
    nproc,
    cpu: model,
    shaNi: flags.includes('sha_ni'),
    memoryGiB: Math.round(totalmem() / GIB),
    node: process.version,
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    loadAverage: readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
  };
}
