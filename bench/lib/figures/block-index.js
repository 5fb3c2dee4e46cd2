// The block index: bytes per stored block and the diff of two N-block maps
// (bench/index.js's figures), against a bare per-row scan of one map.
import { report } from '../context.js';
import { runIndexBench } from '../index-figures.js';

/** @param {import('../context.js').Context} ctx */
export async function indexFigures(ctx) {
  /** @type {string[]} */
  const lines = [];
  const blocks = ctx.plan.indexBlocks;
  const figures = runIndexBench({
    blocks,
    changed: 0.01,
    window: 64,
    rounds: ctx.plan.rounds,
    journal: ctx.plan.indexJournal,
    extras: false,
    log: (line) => lines.push(line),
  });
  report(
    ctx,
    {
      id: 'index-bytes',
      title: `index: bytes per stored block (${blocks.toLocaleString('en-US')}-block map)`,
      value: figures.bytesPerBlock,
      unit: 'bytes',
      target: { op: '<=', value: 48, text: '<= 48 bytes' },
      details: { storeSeconds: figures.storeSeconds, storedBy: ctx.plan.indexJournal ? 'journal' : 'import' },
    },
    lines,
  );
  // The target is for 2 M blocks; a smaller run is held to the same time per block.
  const diffTarget = 2 * (blocks / 2_000_000);
  report(
    ctx,
    {
      id: 'index-diff',
      title: `index: diff of two ${blocks.toLocaleString('en-US')}-block maps`,
      value: figures.diffFullSeconds,
      unit: 's',
      reference: { title: 'bare per-row iterate() of one map', value: figures.bareScanSeconds, unit: 's' },
      target: { op: '<=', value: diffTarget, text: `<= ${diffTarget} s${blocks === 2_000_000 ? '' : ' (2 s for 2 M blocks, scaled)'}` },
      details: { diffChildSeconds: figures.diffChildSeconds },
    },
    [`diffMaps ${figures.diffFullSeconds.toFixed(3)} s; a bare iterate() of one map ${figures.bareScanSeconds.toFixed(3)} s`],
  );
}
