// The built CLI (bin/snapline.js -> dist/, built by test/e2e/global-setup.ts
// or `npm run build`) as a child process, for the reliability tests and
// bench/torture.js. Plain JavaScript so that bench/ can run it without a
// build step. Every run's output is scanned for the secrets a test declares.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'snapline.js');

/**
 * @typedef {object} CliResult
 * @property {number | null} code
 * @property {NodeJS.Signals | null} signal
 * @property {string} stdout
 * @property {string} stderr
 */

/**
 * @typedef {object} CliRun
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<CliResult>} done
 */

/**
 * @typedef {object} CliOptions
 * @property {string} dataDir SNAPLINE_DATA_DIR of the run
 * @property {NodeJS.ProcessEnv} [env] more environment (after the hermetic one)
 * @property {string} [cwd]
 * @property {number} [uid] run as this user (and the group of the same number)
 */

/**
 * The environment of a run: this one without any AWS_ or SNAPLINE_ setting
 * from outside, the data under `dataDir`, the config file looked for under
 * `dataDir`/config (XDG_CONFIG_HOME) instead of the user's, `--connection
 * local` never looking for a `snapline serve` on the machine's port 4577
 * (SNAPLINE_LOCAL_PORT 0: it starts its own endpoint on `dataDir`), plus `extra`.
 * @param {string} dataDir
 * @param {NodeJS.ProcessEnv} [extra]
 * @returns {NodeJS.ProcessEnv}
 */
export function hermeticEnv(dataDir, extra = {}) {
  /** @type {NodeJS.ProcessEnv} */
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!/^(AWS_|SNAPLINE_)/.test(key)) env[key] = value;
  }
  return {
    ...env,
    SNAPLINE_DATA_DIR: dataDir,
    XDG_CONFIG_HOME: join(dataDir, 'config'),
    SNAPLINE_LOCAL_PORT: '0',
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...extra,
  };
}

/** Secrets no run may print, and what was seen. */
const watched = new Set();
/** @type {string[]} */
const leaks = [];
const transcript = { runs: 0, bytes: 0, runsWithSecretAround: 0 };

/**
 * From now on, every run's stdout and stderr in this process is scanned for `secret`.
 * @param {string} secret
 */
export function watchForSecret(secret) {
  if (secret.length < 8) throw new Error('a watched secret must be at least 8 characters, or it would match by chance');
  watched.add(secret);
}

/** Runs whose output held a watched secret (command line and where it was seen). */
export function secretLeaks() {
  return [...leaks];
}

/** How much output was scanned: runs, bytes, and runs that had a watched secret in their environment or arguments. */
export function transcriptStats() {
  return { ...transcript };
}

/**
 * Counts a finished run and scans its output for the watched secrets. Called
 * for every child here, and by runs made in this process (in-process.ts).
 * @param {string[]} args
 * @param {NodeJS.ProcessEnv} env the environment given on top of the hermetic one
 * @param {string} stdout
 * @param {string} stderr
 */
export function recordRun(args, env, stdout, stderr) {
  const given = JSON.stringify([args, env]);
  transcript.runs += 1;
  transcript.bytes += stdout.length + stderr.length;
  let around = false;
  for (const secret of watched) {
    if (given.includes(secret)) around = true;
    for (const [stream, text] of /** @type {const} */ ([['stdout', stdout], ['stderr', stderr]])) {
      if (text.includes(secret)) leaks.push(`snapline ${args.join(' ')}: a watched secret on ${stream}`);
    }
  }
  if (around) transcript.runsWithSecretAround += 1;
}

/** Children still running, killed by killStrays (a failed test must not leave one behind, stopped say). */
const running = new Set();

export function killStrays() {
  for (const child of running) {
    child.kill('SIGKILL');
    child.kill('SIGCONT');
  }
}

/**
 * Starts `node bin/snapline.js ...args`.
 * @param {string[]} args
 * @param {CliOptions} options
 * @returns {CliRun}
 */
export function startCli(args, options) {
  const env = hermeticEnv(options.dataDir, options.env);
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
  });
  running.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (/** @type {string} */ chunk) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (/** @type {string} */ chunk) => (stderr += chunk));
  /** @type {Promise<CliResult>} */
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      running.delete(child);
      recordRun(args, options.env ?? {}, stdout, stderr);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

/**
 * @param {string[]} args
 * @param {CliOptions} options
 * @returns {Promise<CliResult>}
 */
export function runCli(args, options) {
  return startCli(args, options).done;
}

/**
 * Polls until `condition` holds. Throws when `child` exits first, or after
 * `timeoutMs` (a guard against a hang, not a timed assertion).
 * @param {() => boolean} condition
 * @param {string} what
 * @param {import('node:child_process').ChildProcess} [child]
 * @param {number} [timeoutMs]
 */
export async function until(condition, what, child, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (child && child.exitCode !== null) throw new Error(`the CLI exited (code ${child.exitCode}) before ${what}`);
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await sleep(3);
  }
}
