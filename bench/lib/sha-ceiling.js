// The machine's SHA-256 ceiling: N bare worker threads hash 512 KiB blocks of
// SharedArrayBuffer slabs with nothing else in the way (no pool, no messages
// per block). Each thread claims the next piece (one piece a thread a slab)
// from a shared counter, so one thread slowed by a neighbour does not hold
// the others back. The reference of the hashing and scan figures. Beside it,
// bare threads like these that read a file's blocks before they hash them:
// what any reading scan can reach here (BareReadAndHash).
import { Worker } from 'node:worker_threads';

const BARE_THREAD = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { createHash } = require('node:crypto');
  const { slabs, counter, piecesPerSlab, blocksPerSlab, blockSize } = workerData;
  const next = new Int32Array(counter);
  parentPort.on('message', (pieces) => {
    for (let piece = Atomics.add(next, 0, 1); piece < pieces; piece = Atomics.add(next, 0, 1)) {
      const slab = slabs[Math.floor(piece / piecesPerSlab) % slabs.length];
      const part = piece % piecesPerSlab;
      const first = Math.floor((part * blocksPerSlab) / piecesPerSlab);
      const end = Math.floor(((part + 1) * blocksPerSlab) / piecesPerSlab);
      for (let b = first; b < end; b += 1) createHash('sha256').update(new Uint8Array(slab, b * blockSize, blockSize)).digest();
    }
    parentPort.postMessage('done');
  });
`;

export class ShaCeiling {
  /**
   * @param {{ threads: number, slabs: SharedArrayBuffer[], blocksPerSlab: number, blockSize: number }} options
   *   the slabs are hashed in turn, `blocksPerSlab` blocks of `blockSize` bytes each
   */
  constructor({ threads, slabs, blocksPerSlab, blockSize }) {
    this.threads = threads;
    this.counter = new SharedArrayBuffer(4);
    this.workers = Array.from(
      { length: threads },
      () =>
        new Worker(BARE_THREAD, {
          eval: true,
          workerData: { slabs, counter: this.counter, piecesPerSlab: threads, blocksPerSlab, blockSize },
        }),
    );
  }

  /**
   * Hashes `slabCount` slabs once, every block of each, on all threads.
   * @param {number} slabCount
   */
  async hash(slabCount) {
    new Int32Array(this.counter)[0] = 0;
    const pieces = slabCount * this.threads;
    await Promise.all(this.workers.map((worker) => new Promise((resolve) => (worker.once('message', resolve), worker.postMessage(pieces)))));
  }

  async close() {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}

const READ_THREAD = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { createHash } = require('node:crypto');
  const { openSync, readSync } = require('node:fs');
  const { path, counter, blockSize } = workerData;
  const fd = openSync(path, 'r');
  const next = new Int32Array(counter);
  const block = Buffer.alloc(blockSize);
  parentPort.on('message', (blocks) => {
    for (let b = Atomics.add(next, 0, 1); b < blocks; b = Atomics.add(next, 0, 1)) {
      readSync(fd, block, 0, blockSize, b * blockSize);
      createHash('sha256').update(block).digest();
    }
    parentPort.postMessage('done');
  });
`;

/**
 * The fastest a reading scan gets on this machine: N bare worker threads
 * claim a file's blocks from a shared counter, read each with pread into
 * their own block buffer (which stays in the core's cache) and hash it. No
 * slabs, no messages per block, no comparisons: what is left is the copy out
 * of the page cache and the hash. The reference that tells the machine's
 * share of a scan's gap to the SHA-256 ceiling from the engine's.
 */
export class BareReadAndHash {
  /** @param {{ threads: number, path: string, blockSize: number }} options */
  constructor({ threads, path, blockSize }) {
    this.counter = new SharedArrayBuffer(4);
    this.workers = Array.from({ length: threads }, () => new Worker(READ_THREAD, { eval: true, workerData: { path, counter: this.counter, blockSize } }));
    /** Rejects with the first error of any thread (one that cannot open the file): every call from then on fails with it. */
    this.failed = new Promise((_, reject) => {
      for (const worker of this.workers) worker.once('error', reject);
    });
    this.failed.catch(() => undefined);
  }

  /**
   * Reads and hashes the file's first `blocks` blocks once, on all threads.
   * @param {number} blocks
   */
  async readAndHash(blocks) {
    new Int32Array(this.counter)[0] = 0;
    const done = Promise.all(this.workers.map((worker) => new Promise((resolve) => (worker.once('message', resolve), worker.postMessage(blocks)))));
    await Promise.race([this.failed, done]);
  }

  async close() {
    await Promise.all(this.workers.map((worker) => worker.terminate()));
  }
}
