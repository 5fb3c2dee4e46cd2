// Hashing: the hash pool against bare SHA-256 threads on the same in-memory
// slabs. The bare rate is also the ceiling of the scan figures.
import { randomFillSync } from 'node:crypto';
import { report, sizeText } from '../context.js';
import { BLOCK, interleaved, mibPerSecond, rateText } from '../measure.js';
import { ShaCeiling } from '../sha-ceiling.js';
import { HashPool } from 'snapline/internals';


/** @param {import('../context.js').Context} ctx */
export async function hashingFigures(ctx) {
  const blocksPerSlab = 8;
  const slabBytes = blocksPerSlab * BLOCK;
  const slabCount = ctx.plan.hashBytes / slabBytes;
  const slabs = Array.from({ length: 6 }, () => {
    const buffer = new SharedArrayBuffer(slabBytes);
    randomFillSync(new Uint8Array(buffer));
    return buffer;
  });
  const pool = new HashPool();
  const ceiling = new ShaCeiling({ threads: pool.threads, slabs, blocksPerSlab, blockSize: BLOCK });
  try {
    const throughPool = async () => {
      let next = 0;
      const lane = async () => {
        while (next < slabCount) await pool.hashBlocks(/** @type {SharedArrayBuffer} */ (slabs[next++ % slabs.length]), 0, blocksPerSlab);
      };
      await Promise.all(slabs.map(lane));
    };
    // One untimed run of each warms the threads and the JIT.
    await throughPool();
    await ceiling.hash(slabCount);
    const best = await interleaved(
      [
        { name: 'ceiling', run: () => ceiling.hash(slabCount) },
        { name: 'pool', run: throughPool },
      ],
      ctx.plan.hashRounds,
    );
    const ceilingMs = /** @type {number} */ (best.get('ceiling'));
    const poolMs = /** @type {number} */ (best.get('pool'));
    ctx.shaCeiling = mibPerSecond(ctx.plan.hashBytes, ceilingMs);
    const poolRate = mibPerSecond(ctx.plan.hashBytes, poolMs);
    report(
      ctx,
      {
        id: 'hashing',
        title: `hashing: HashPool (${pool.threads} threads) vs bare SHA-256 on ${pool.threads} threads, ${sizeText(ctx.plan.hashBytes)} of random slabs`,
        value: poolRate,
        unit: 'MiB/s',
        reference: { title: `SHA-256, ${pool.threads} bare threads`, value: ctx.shaCeiling, unit: 'MiB/s' },
        ratio: poolRate / ctx.shaCeiling,
        ratioUnit: '%',
        target: { op: '>=', value: 0.9, text: '>= 90 % (as the scan)' },
      },
      [`HashPool              ${rateText(ctx.plan.hashBytes, poolMs)}`, `bare SHA-256 threads  ${rateText(ctx.plan.hashBytes, ceilingMs)}`],
    );
  } finally {
    await ceiling.close();
    await pool.destroy();
  }
}

/**
 * The SHA-256 ceiling in MiB/s, measuring it when the hashing figures did not run.
 * @param {import('../context.js').Context} ctx
 */
export async function shaCeiling(ctx) {
  if (ctx.shaCeiling === undefined) await hashingFigures(ctx);
  return /** @type {number} */ (ctx.shaCeiling);
}
