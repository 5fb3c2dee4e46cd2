// Memory a resumed backup holds for what its pending run already wrote: a
// pending run with N written blocks is recorded in a fresh index, then the
// resume state walks every block as a resumed backup does. The reference, in
// the same run: the same entries held in a Map (as resuming did before, and
// as any state loaded up front would).
//
//   npm run build && node --expose-gc bench/resume-memory.js [--blocks 2000000]
//
// Prints the JavaScript heap and array buffers held above the start, at their
// peak, for both.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BlockIndex, ResumeState } from 'snapline/internals';

const { values } = parseArgs({ options: { blocks: { type: 'string', default: '2000000' } } });
const BLOCKS = Number(values.blocks);
const MIB = 1024 * 1024;
const VOLUME_GIB = Math.ceil(BLOCKS / 2048);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
const gc = /** @type {() => void} */ (globalThis.gc);

const dir = mkdtempSync(join(tmpdir(), 'snapline-resume-memory-'));
try {
  const index = BlockIndex.open(join(dir, 'index.db'));
  index.lineage.ensureVolume({ name: 'bench', sourcePath: '/bench/image', sizeBytes: VOLUME_GIB * 1024 * MIB });
  index.runs.beginRun({
    volume: 'bench',
    snapshotId: 'snap-pending',
    parentSnapshotId: null,
    baseSnapshotId: null,
    volumeSizeGiB: VOLUME_GIB,
    sourceBytes: VOLUME_GIB * 1024 * MIB,
    encrypted: false,
    description: null,
    runOptions: null,
  });
  for (let first = 0; first < BLOCKS; first += 10_000) {
    const batch = [];
    for (let at = first; at < Math.min(first + 10_000, BLOCKS); at += 1) batch.push({ index: at, digest: Buffer.alloc(32, at % 251) });
    index.runs.recordBlocks('snap-pending', batch);
  }

  /** Peak heap + array buffers above the level before `walk`, in MiB, sampled every 65,536 blocks. */
  const held = (/** @type {(sample: () => void) => number} */ walk) => {
    gc();
    const used = () => process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
    const before = used();
    let peak = 0;
    const found = walk(() => (peak = Math.max(peak, used() - before)));
    return { found, mib: peak / MIB };
  };

  const resume = held((sample) => {
    const state = ResumeState.load(index, 'snap-pending');
    let found = 0;
    for (let at = 0; at < BLOCKS; at += 1) {
      if (state.written(at) !== undefined) found += 1;
      if (at % 65_536 === 0) sample();
    }
    sample();
    return found;
  });
  const map = held((sample) => {
    const written = new Map();
    for (const block of index.runs.writtenBlocks('snap-pending')) written.set(block.index, block.digest);
    gc();
    sample();
    let found = 0;
    for (let at = 0; at < BLOCKS; at += 1) if (written.get(at) !== undefined) found += 1;
    return found;
  });
  index.close();
  if (resume.found !== BLOCKS || map.found !== BLOCKS) throw new Error(`expected ${BLOCKS} written blocks, found ${resume.found} and ${map.found}`);
  console.log(`pending run with ${BLOCKS.toLocaleString('en-US')} written blocks (${(BLOCKS / 2048).toFixed(0)} GiB)`);
  console.log(`resume state, walked block by block  ${resume.mib.toFixed(0)} MiB held at the peak`);
  console.log(`the same entries in a Map (reference) ${map.mib.toFixed(0)} MiB held`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
