// The local endpoint for benchmarks, as its own process (bench/lib/endpoint-child.js:
// startEmulator on a free loopback port, with a fresh data directory each
// time): it shares the machine's cores with the code under test either way,
// but in its own process it does not share the client's event loop, as AWS
// would not. Each start has an empty store, so no run profits from blocks
// another run stored.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('./endpoint-child.js', import.meta.url));

/**
 * @typedef {object} Endpoint
 * @property {string} url
 * @property {number} pid the endpoint's process
 * @property {() => Promise<import('../../src/emulator/stats.js').EmulatorStats>} stats
 * @property {() => Promise<void>} close stops the process and deletes its data
 */

/**
 * Starts the endpoint with a new data directory and the given faults.
 * @param {import('../../src/emulator/index.js').FaultSettings} [faults]
 * @returns {Promise<Endpoint>}
 */
export async function startEndpoint(faults = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'snapline-bench-endpoint-'));
  const child = spawn(process.execPath, [CHILD, JSON.stringify({ ...faults, dataDir: join(dataDir, 'data') })], {
    // The IPC channel closes when this process dies, and the child ends with it.
    stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
  });
  // The channel does not keep this process alive.
  child.channel?.unref();
  const stdout = /** @type {import('node:stream').Readable} */ (child.stdout);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  /** @type {string} */
  const url = await new Promise((resolve, reject) => {
    let out = '';
    stdout.setEncoding('utf8');
    const onData = (/** @type {string} */ chunk) => {
      out += chunk;
      const match = /"url":\s*"([^"]+)"/.exec(out);
      if (match) {
        stdout.off('data', onData);
        stdout.resume();
        resolve(/** @type {string} */ (match[1]));
      }
    };
    stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`the endpoint exited with ${code} before listening: ${out}`)));
  });
  return {
    url,
    pid: /** @type {number} */ (child.pid),
    async stats() {
      const response = await fetch(`${url}/_snapline/stats`);
      return /** @type {import('../../src/emulator/stats.js').EmulatorStats} */ (await response.json());
    },
    async close() {
      child.kill('SIGTERM');
      await exited;
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
