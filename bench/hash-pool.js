// Throughput of the hash pool and the slab reader, against baselines measured
// in the same run on the same bytes: SHA-256 on one thread, SHA-256 on N bare
// threads (the machine's ceiling: no pool, no messages), a bare read loop of a
// cached file. The figures are measured in interleaved rounds and the best of
// each is kept, so a noisy neighbour hurts all of them alike.
//
//   npm run build && node bench/hash-pool.js [--threads 2] [--mib 1024] [--rounds 5]
//                                            [--blocks-per-slab 8] [--slabs 6]
//
// Prints MiB/s and blocks/s for each figure and the pool's share of the
// N-thread ceiling (DESIGN.md: >= 80 %).
import { createHash, randomFillSync } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BLOCK_SIZE, HashPool, SlabPool, openSource, readSlabs } from 'snapline/internals';
import { ShaCeiling } from './lib/sha-ceiling.js';


const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '2' },
    mib: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '5' },
    'blocks-per-slab': { type: 'string', default: '8' },
    slabs: { type: 'string', default: '6' },
  },
});
const THREADS = Number(values.threads);
const ROUNDS = Number(values.rounds);
const BLOCKS_PER_SLAB = Number(values['blocks-per-slab']);
const SLABS = Number(values.slabs);
const MIB = 1024 * 1024;
const SLAB_BYTES = BLOCKS_PER_SLAB * BLOCK_SIZE;
const SLABS_PER_RUN = Math.max(1, Math.round((Number(values.mib) * MIB) / SLAB_BYTES));
const BYTES_PER_RUN = SLABS_PER_RUN * SLAB_BYTES;

/** SharedArrayBuffer slabs of random bytes, the working set of every hashing figure. */
const randomSlabs = Array.from({ length: SLABS }, () => {
  const buffer = new SharedArrayBuffer(SLAB_BYTES);
  randomFillSync(new Uint8Array(buffer));
  return buffer;
});
const zeroSlabs = Array.from({ length: SLABS }, () => new SharedArrayBuffer(SLAB_BYTES));

const bareThreads = new ShaCeiling({ threads: THREADS, slabs: randomSlabs, blocksPerSlab: BLOCKS_PER_SLAB, blockSize: BLOCK_SIZE });
const pool = new HashPool({ threads: THREADS });
const dir = await mkdtemp(join(tmpdir(), 'snapline-bench-'));
const imagePath = join(dir, 'image.raw');

/** @param {SharedArrayBuffer[]} slabs SLABS hashBlocks calls in flight over `slabs`, SLABS_PER_RUN in all. */
async function hashThroughPool(slabs) {
  let next = 0;
  const lane = async () => {
    while (next < SLABS_PER_RUN) {
      const slab = /** @type {SharedArrayBuffer} */ (slabs[next % slabs.length]);
      next += 1;
      await pool.hashBlocks(slab, 0, BLOCKS_PER_SLAB);
    }
  };
  await Promise.all(Array.from({ length: SLABS }, lane));
}

try {
  const image = await open(imagePath, 'w');
  for (let s = 0; s < SLABS_PER_RUN; s += 1) await image.write(new Uint8Array(/** @type {SharedArrayBuffer} */ (randomSlabs[s % SLABS])), 0, SLAB_BYTES, s * SLAB_BYTES);
  await image.close();
  const bareHandle = await open(imagePath, 'r');
  const readTarget = new Uint8Array(new SharedArrayBuffer(SLAB_BYTES));
  const source = await openSource(imagePath);
  const slabPool = new SlabPool({ slabCount: SLABS, blocksPerSlab: BLOCKS_PER_SLAB });

  /** @type {Array<{ name: string, bytes: number, run: () => Promise<unknown> | void }>} */
  const figures = [
    {
      name: 'sha256, 1 thread (main)',
      bytes: BYTES_PER_RUN / 4,
      run: () => {
        for (let s = 0; s < SLABS_PER_RUN / 4; s += 1) {
          const slab = /** @type {SharedArrayBuffer} */ (randomSlabs[s % SLABS]);
          for (let b = 0; b < BLOCKS_PER_SLAB; b += 1) createHash('sha256').update(new Uint8Array(slab, b * BLOCK_SIZE, BLOCK_SIZE)).digest();
        }
      },
    },
    {
      name: `sha256, ${THREADS} bare threads (ceiling)`,
      bytes: BYTES_PER_RUN,
      run: () => bareThreads.hash(SLABS_PER_RUN),
    },
    { name: 'HashPool, random data', bytes: BYTES_PER_RUN, run: () => hashThroughPool(randomSlabs) },
    { name: 'HashPool, all-zero data', bytes: BYTES_PER_RUN, run: () => hashThroughPool(zeroSlabs) },
    {
      name: 'read, cached file, bare FileHandle loop',
      bytes: BYTES_PER_RUN,
      run: async () => {
        for (let at = 0; at < BYTES_PER_RUN; at += SLAB_BYTES) await bareHandle.read(readTarget, 0, SLAB_BYTES, at);
      },
    },
    {
      name: 'read, cached file, readSlabs',
      bytes: BYTES_PER_RUN,
      run: async () => {
        for await (const run of readSlabs(source, slabPool)) if (!run.hole) run.slab.release();
      },
    },
    {
      name: 'read + HashPool, cached file',
      bytes: BYTES_PER_RUN,
      run: async () => {
        /** @type {Promise<void>[]} */
        const pending = [];
        for await (const run of readSlabs(source, slabPool)) {
          if (run.hole) continue;
          pending.push(pool.hashBlocks(run.slab.buffer, 0, run.blockCount).then(() => run.slab.release()));
        }
        await Promise.all(pending);
      },
    },
  ];

  console.log(
    `${THREADS} threads, ${BYTES_PER_RUN / MIB} MiB a figure, ${BLOCKS_PER_SLAB}-block slabs (${SLAB_BYTES / MIB} MiB), ${SLABS} slabs, best of ${ROUNDS} interleaved rounds`,
  );
  /** @type {Map<string, number>} best milliseconds by figure */
  const best = new Map();
  for (let round = 0; round <= ROUNDS; round += 1) {
    for (const figure of figures) {
      const start = performance.now();
      await figure.run();
      const ms = performance.now() - start;
      // Round 0 warms threads, caches and the page cache; it is not counted.
      if (round > 0) best.set(figure.name, Math.min(best.get(figure.name) ?? Infinity, ms));
    }
  }
  /** @type {Map<string, number>} MiB/s by figure */
  const rate = new Map();
  for (const figure of figures) {
    const seconds = /** @type {number} */ (best.get(figure.name)) / 1000;
    const mibs = figure.bytes / MIB / seconds;
    rate.set(figure.name, mibs);
    const blocks = figure.bytes / BLOCK_SIZE / seconds;
    console.log(`${figure.name.padEnd(42)} ${mibs.toFixed(0).padStart(7)} MiB/s ${blocks.toFixed(0).padStart(8)} blocks/s`);
  }
  const ceiling = /** @type {number} */ (rate.get(`sha256, ${THREADS} bare threads (ceiling)`));
  const share = (/** @type {string} */ name) => `${((100 * /** @type {number} */ (rate.get(name))) / ceiling).toFixed(0)} %`;
  console.log('');
  console.log(`HashPool, random data / ceiling:          ${share('HashPool, random data')} (target >= 80 %)`);
  console.log(`read + HashPool, cached file / ceiling:   ${share('read + HashPool, cached file')}`);

  await source.close();
  await bareHandle.close();
} finally {
  await bareThreads.close();
  await pool.destroy();
  await rm(dir, { recursive: true, force: true });
}
