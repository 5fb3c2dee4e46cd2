// A full backup of a sparse image (data in 4 MiB runs spread over the size)
// against a full backup of a dense image holding as much data.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CONCURRENCY, check, freshBackup, randomImage, report, sizeText } from '../context.js';
import { writeSparseImage } from '../images.js';
import { BLOCK, MIB, interleaved, rateText } from '../measure.js';
import { nativeHoleSeeker } from 'snapline/internals';


export const SPARSE_RUN_BYTES = 4 * MIB;

/** @param {import('../context.js').Context} ctx */
export async function sparseFigures(ctx) {
  const { sizeBytes, dataBytes } = ctx.plan.sparse;
  const dense = await randomImage(ctx, dataBytes);
  const sparse = join(ctx.dir, 'sparse.img');
  const { runs } = await writeSparseImage(sparse, sizeBytes, dataBytes, SPARSE_RUN_BYTES);
  try {
    const best = await interleaved(
      [
        { name: 'dense', run: async () => (await freshBackup(ctx, dense, CONCURRENCY)).ms },
        {
          name: 'sparse',
          run: async () => {
            const { ms, result } = await freshBackup(ctx, sparse, CONCURRENCY);
            check(ctx, result.blocksUploaded === dataBytes / BLOCK, `the sparse backup uploaded exactly its ${dataBytes / BLOCK} data blocks`);
            return ms;
          },
        },
      ],
      ctx.plan.rounds,
    );
    const denseMs = /** @type {number} */ (best.get('dense'));
    const sparseMs = /** @type {number} */ (best.get('sparse'));
    report(
      ctx,
      {
        id: 'sparse',
        title: `full backup of a ${sizeText(sizeBytes)} sparse image holding ${sizeText(dataBytes)} (${runs} runs of 4 MiB) vs a ${sizeText(dataBytes)} dense image`,
        value: sparseMs / 1000,
        unit: 's',
        reference: { title: `${sizeText(dataBytes)} dense image`, value: denseMs / 1000, unit: 's' },
        ratio: sparseMs / denseMs,
        ratioUnit: 'x',
        target: { op: '<=', value: 2, text: '<= 2x the dense image' },
        details: { holeSeeker: nativeHoleSeeker() !== undefined },
      },
      [`sparse  ${(sparseMs / 1000).toFixed(3)} s (${rateText(sizeBytes, sparseMs)} of volume)`, `dense   ${(denseMs / 1000).toFixed(3)} s (${rateText(dataBytes, denseMs)})`],
    );
  } finally {
    await rm(sparse, { force: true });
  }
}
