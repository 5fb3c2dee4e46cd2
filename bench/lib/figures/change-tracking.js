// Changed-block tracking over NBD: a large sparse qcow2 image served by
// qemu-nbd, 1 % of its data rewritten under a persistent dirty bitmap. The
// bitmap-driven incremental (--dirty-bitmap) against an incremental
// snapshot's bare requests for the same blocks, and against a full-scan
// incremental of the same image; and the full backup over NBD against a full
// backup of the raw file. Needs qemu-img, qemu-io and qemu-nbd (qemu-utils).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { CONCURRENCY, check, freshBackup, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { writeSparseImage } from '../images.js';
import { bareIncrementalLoop } from '../loops.js';
import { BLOCK, MIB, interleaved, rateText } from '../measure.js';
import { LinearAggregate, SlabPool, checksumOf, openSource, sessionBackup as backup } from 'snapline/internals';


const RUN_BYTES = 4 * MIB;
const PATCH_BYTES = 4096;
/**
 * Blocks a tracked backup reads and hashes ahead of its uploads: its scan's
 * DEFAULT_HASH_AHEAD (4) runs of one-block slabs for each block of a session
 * slab (8), see scanSlabs in src/engine/backup/backup.ts.
 */
const TRACKED_READ_AHEAD = 4 * 8;

/** @param {import('../context.js').Context} ctx */
export async function changeTrackingFigures(ctx) {
  const missing = ['qemu-img', 'qemu-io', 'qemu-nbd'].find((tool) => spawnSync(tool, ['--version']).status !== 0);
  if (missing !== undefined) {
    console.log(`\n== change tracking: skipped, ${missing} is not installed (apt-get install qemu-utils)`);
    return;
  }
  const { sizeBytes, dataBytes } = ctx.plan.changeTracking;
  const raw = join(ctx.dir, 'tracked.raw');
  const image = join(ctx.dir, 'tracked.qcow2');
  const socket = join(ctx.dir, 'tracked.sock');
  // On disk at most: the raw file and the qcow2 (dataBytes each, both sparse) and one endpoint's
  // store of the full backup (dataBytes); the raw file's backup goes to its own endpoint, deleted
  // before the qcow2 is written.
  const endpoint = await startEndpoint();
  /** @type {Array<{ stop: () => Promise<void> }>} */
  const servers = [];
  try {
    const { spacing } = await phase('write the raw image', () => writeSparseImage(raw, sizeBytes, dataBytes, RUN_BYTES));
    const dataBlocks = dataBytes / BLOCK;
    const rawFull = await phase('full backup of the raw file', () => freshBackup(ctx, raw, CONCURRENCY));
    check(ctx, rawFull.result.blocksUploaded === dataBlocks, `the full backup of the raw file uploaded exactly its ${dataBlocks} data blocks`);
    await phase('convert it to qcow2', () => {
      execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image]);
      execFileSync('qemu-img', ['bitmap', '--add', image, 'gen1']);
    });
    await withSession(endpoint.url, join(ctx.dir, 'index-tracking.db'), CONCURRENCY, async (session) => {
      let server = await serveImage(image, socket);
      servers.push(server);
      const url = `nbd+unix:///vm?socket=${socket}`;
      const fullStart = performance.now();
      const full = await phase('full backup over NBD', () => backup(session, { source: url, volume: 'tracked', checkpoint: 'gen1' }));
      const nbdFullMs = performance.now() - fullStart;
      await server.stop();
      check(ctx, full.blocksUploaded === dataBlocks, `the full backup over NBD uploaded exactly its ${dataBlocks} data blocks`);
      report(
        ctx,
        {
          id: 'nbd-full',
          title: `full backup of a ${sizeText(sizeBytes)} qcow2 holding ${sizeText(dataBytes)} over NBD (qemu-nbd) vs the same image as a raw file`,
          value: nbdFullMs / 1000,
          unit: 's',
          reference: { title: 'raw file', value: rawFull.ms / 1000, unit: 's' },
          ratio: rawFull.ms / nbdFullMs,
          ratioUnit: 'x',
          target: { op: '>=', value: 0.8, text: '>= 0.8x the raw file' },
        },
        [`over NBD  ${(nbdFullMs / 1000).toFixed(3)} s (${rateText(dataBytes, nbdFullMs)} of data)`, `raw file  ${(rawFull.ms / 1000).toFixed(3)} s (${rateText(dataBytes, rawFull.ms)} of data)`],
      );

      // Rewrite 1 % of the data blocks (4 KiB at the start of each) in both images; gen1 counts them, gen2 starts after.
      const changed = chooseBlocks(dataBlocks, Math.max(1, Math.round(dataBlocks / 100))).map((k) => Math.floor(k / (RUN_BYTES / BLOCK)) * (spacing / BLOCK) + (k % (RUN_BYTES / BLOCK)));
      const blocks = await phase('rewrite 1 % of the data', () => rewrite(raw, image, changed));
      execFileSync('qemu-img', ['bitmap', '--add', image, 'gen2']);
      const aggregate = new LinearAggregate();
      for (const block of blocks) aggregate.add(block.index, block.digest);
      const incremental = { parentSnapshotId: /** @type {string} */ (full.snapshotId), volumeSizeGiB: full.volumeSizeGiB, blocks, aggregate: aggregate.digest() };

      server = await serveImage(image, socket, 'gen1');
      servers.push(server);
      const best = await phase(`${ctx.plan.rounds} interleaved rounds of the bitmap incremental and the bare requests`, () =>
        interleaved(
          [
            {
              name: 'bitmap',
              run: async () => {
                const start = performance.now();
                const result = await backup(session, { source: url, volume: 'tracked', parent: full.snapshotId ?? undefined, dirtyBitmap: 'gen1' });
                const ms = performance.now() - start;
                check(ctx, result.blocksRead === changed.length && result.blocksUploaded === changed.length, `the bitmap incremental read and uploaded exactly the ${changed.length} rewritten blocks`);
                return ms;
              },
            },
            { name: 'bare', run: () => bareIncrementalLoop(endpoint.url, CONCURRENCY, incremental) },
            {
              name: 'read',
              run: async () => {
                const { ms, matching } = await readAndHash(url, session.hashPool, blocks);
                check(ctx, matching === blocks.length, `reading the ${blocks.length} rewritten blocks over NBD gave their new bytes`);
                return ms;
              },
            },
          ],
          ctx.plan.rounds,
        ),
      );
      // One run: it reads all the data, so noise moves it little against the >= 20x it must keep.
      const scanMs = await phase('full-scan incremental (one run)', async () => {
        const start = performance.now();
        const result = await backup(session, { source: url, volume: 'tracked', parent: full.snapshotId ?? undefined });
        const ms = performance.now() - start;
        check(ctx, result.blocksUploaded === changed.length, `the full-scan incremental uploaded exactly the ${changed.length} rewritten blocks`);
        return ms;
      });
      const bitmapMs = /** @type {number} */ (best.get('bitmap'));
      const bareMs = /** @type {number} */ (best.get('bare'));
      const readMs = /** @type {number} */ (best.get('read'));
      // What the bitmap run does beyond the bare requests and the reads and hashes: its fixed and pipeline cost.
      const sumMs = bareMs + readMs;
      const restMs = bitmapMs - sumMs;
      const gapMs = bitmapMs - bareMs;
      const shareText = (/** @type {number} */ ms) => (gapMs > 0 ? `${((100 * ms) / gapMs).toFixed(0)} % of the gap` : 'no gap');
      const title = `incremental of a ${sizeText(sizeBytes)} qcow2 holding ${sizeText(dataBytes)}, ${changed.length} blocks (1 %) rewritten, with --dirty-bitmap`;
      const lines = [
        `dirty bitmap         ${(bitmapMs / 1000).toFixed(3)} s (${rateText(changed.length * BLOCK, bitmapMs)} of changed blocks)`,
        `bare requests        ${(bareMs / 1000).toFixed(3)} s (StartSnapshot, ${changed.length} PutSnapshotBlock, CompleteSnapshot)`,
        `NBD read + SHA-256   ${(readMs / 1000).toFixed(3)} s (the ${changed.length} blocks over qemu-nbd, ${TRACKED_READ_AHEAD} in flight, hashed on the hash pool; no upload; ${shareText(readMs)})`,
        `bare + read-and-hash ${(sumMs / 1000).toFixed(3)} s (the dirty bitmap run takes ${(bitmapMs / sumMs).toFixed(2)}x this)`,
        `remainder            ${restMs.toFixed(0)} ms (the bitmap run's fixed and pipeline cost; ${shareText(restMs)})`,
        `full-scan increment  ${(scanMs / 1000).toFixed(3)} s (${rateText(dataBytes, scanMs)} of data read; one run, the others best of ${ctx.plan.rounds})`,
      ];
      report(
        ctx,
        {
          id: 'bitmap-vs-upload',
          title: `${title} vs uploading those blocks alone`,
          value: bitmapMs / 1000,
          unit: 's',
          reference: { title: 'the bare requests of an incremental snapshot of the same blocks', value: bareMs / 1000, unit: 's' },
          ratio: bitmapMs / bareMs,
          ratioUnit: 'x',
          target: { op: '<=', value: 1.3, text: '<= 1.3x uploading the changed blocks alone' },
          details: {
            readAndHashSeconds: readMs / 1000,
            bareAndReadSeconds: sumMs / 1000,
            remainderMs: restMs,
            gapMs,
            readShareOfGap: gapMs > 0 ? readMs / gapMs : null,
            remainderShareOfGap: gapMs > 0 ? restMs / gapMs : null,
            readAhead: TRACKED_READ_AHEAD,
          },
        },
        lines,
      );
      report(
        ctx,
        {
          id: 'bitmap-vs-scan',
          title: `${title} vs a full-scan incremental`,
          value: bitmapMs / 1000,
          unit: 's',
          reference: { title: 'full-scan incremental of the same image', value: scanMs / 1000, unit: 's' },
          ratio: scanMs / bitmapMs,
          ratioUnit: 'x',
          target: { op: '>=', value: 20, text: '>= 20x faster than a full-scan incremental' },
        },
        [],
      );
    });
  } finally {
    await Promise.all(servers.map((running) => running.stop()));
    await endpoint.close();
    await rm(raw, { force: true });
    await rm(image, { force: true });
  }
}

/**
 * Runs one step of the figure's setup or measurement and prints its elapsed time.
 * @template T
 * @param {string} label
 * @param {() => Promise<T> | T} step
 * @returns {Promise<T>}
 */
async function phase(label, step) {
  const start = performance.now();
  const value = await step();
  console.log(`   [${((performance.now() - start) / 1000).toFixed(1)} s] ${label}`);
  return value;
}

/**
 * Reads `blocks` from the NBD export at `url` into one-block slabs,
 * TRACKED_READ_AHEAD at a time as a tracked backup's scan does, and hashes
 * each on `hashPool`, nothing uploaded. Times the reads and hashes (not the
 * connection), and counts the blocks whose digest is their expected one.
 * @param {string} url
 * @param {import('snapline/internals').HashPool} hashPool
 * @param {Array<{ index: number, digest: Buffer }>} blocks
 */
async function readAndHash(url, hashPool, blocks) {
  const source = await openSource(url);
  const slabs = new SlabPool({ slabCount: TRACKED_READ_AHEAD, blocksPerSlab: 1 });
  let matching = 0;
  // One iterator shared by the readers: each block is taken once.
  const pending = blocks.values();
  const reader = async () => {
    for (const block of pending) {
      const slab = await slabs.acquire();
      try {
        const got = await source.read(slab.bytes, block.index * BLOCK);
        const { digests } = await hashPool.hashBlocks(slab.buffer, 0, 1);
        if (got === BLOCK && Buffer.from(digests.subarray(0, 32)).equals(block.digest)) matching += 1;
      } finally {
        slab.release();
      }
    }
  };
  try {
    const start = performance.now();
    await Promise.all(Array.from({ length: TRACKED_READ_AHEAD }, reader));
    return { ms: performance.now() - start, matching };
  } finally {
    await source.close();
  }
}

/**
 * `count` distinct numbers of [0, total), ascending.
 * @param {number} total
 * @param {number} count
 */
function chooseBlocks(total, count) {
  const chosen = new Set();
  while (chosen.size < Math.min(count, total)) chosen.add(Math.floor(Math.random() * total));
  return [...chosen].sort((a, b) => a - b);
}

/**
 * Writes a new 4 KiB pattern at the start of each block, into the raw file
 * and (with qemu-io, under the image's bitmaps) into the qcow2; returns each
 * block's new bytes with their digest and checksum.
 * @param {string} raw
 * @param {string} image
 * @param {number[]} indexes ascending
 */
async function rewrite(raw, image, indexes) {
  const commands = [];
  const file = await open(raw, 'r+');
  try {
    const blocks = [];
    for (const [n, index] of indexes.entries()) {
      const pattern = 1 + (n % 255);
      await file.write(Buffer.alloc(PATCH_BYTES, pattern), 0, PATCH_BYTES, index * BLOCK);
      commands.push('-c', `write -P ${pattern} ${index * BLOCK} ${PATCH_BYTES}`);
      const body = Buffer.alloc(BLOCK);
      await file.read(body, 0, BLOCK, index * BLOCK);
      const digest = createHash('sha256').update(body).digest();
      blocks.push({ index, body, digest, checksum: checksumOf(digest) });
    }
    // Several hundred commands a call keep the argument list short.
    for (let at = 0; at < commands.length; at += 800) execFileSync('qemu-io', ['-f', 'qcow2', ...commands.slice(at, at + 800), image], { stdio: 'ignore' });
    return blocks;
  } finally {
    await file.close();
  }
}

/**
 * qemu-nbd serving `image` read-only as export "vm" on `socket`, with `bitmap` exported when given.
 * @param {string} image
 * @param {string} socket
 * @param {string} [bitmap]
 */
async function serveImage(image, socket, bitmap) {
  await rm(socket, { force: true });
  const args = ['-f', 'qcow2', '-r', '-t', '-e', '8', '-x', 'vm', '-k', socket, ...(bitmap === undefined ? [] : ['-B', bitmap]), image];
  const child = spawn('qemu-nbd', args, { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  for (let attempt = 0; ; attempt += 1) {
    const listening = await new Promise((resolve) => {
      const probe = connect({ path: socket });
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (listening) break;
    if (child.exitCode !== null || attempt > 500) {
      child.kill('SIGKILL');
      throw new Error(`qemu-nbd did not start serving ${image}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
