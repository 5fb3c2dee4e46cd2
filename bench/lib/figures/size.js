// Throughput against image size, for the chart: a scan (dry run of a new
// volume: read and hash) and a full backup at each size of the plan, with the
// SHA-256 ceiling as a reference line.
import { join } from 'node:path';
import { CONCURRENCY, freshBackup, randomImage, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { MIB, interleaved, mibPerSecond, rateText } from '../measure.js';
import { shaCeiling } from './hashing.js';
import { sessionBackup as backup } from 'snapline/internals';


/** @param {import('../context.js').Context} ctx */
export async function sizeFigures(ctx) {
  const ceiling = await shaCeiling(ctx);
  /** @type {Array<[number, number]>} */
  const scanPoints = [];
  /** @type {Array<[number, number]>} */
  const backupPoints = [];
  console.log('\n== throughput against image size');
  // The scans (dry runs) only ask the endpoint for the account's encryption default.
  const scanEndpoint = await startEndpoint();
  try {
    for (const bytes of ctx.plan.sizes) await measureSize(ctx, bytes, scanEndpoint.url, scanPoints, backupPoints);
  } finally {
    await scanEndpoint.close();
  }
  ctx.series.size.push(
    { name: 'scan (dry run, new volume)', points: scanPoints },
    { name: `full backup, concurrency ${CONCURRENCY}`, points: backupPoints },
    { name: 'SHA-256, bare threads', points: scanPoints.map(([x]) => [x, ceiling]), dashed: true },
  );
}

/**
 * Scan and full backup of a random image of `bytes`; adds one point to each series.
 * @param {import('../context.js').Context} ctx
 * @param {number} bytes
 * @param {string} scanEndpointUrl
 * @param {Array<[number, number]>} scanPoints
 * @param {Array<[number, number]>} backupPoints
 */
async function measureSize(ctx, bytes, scanEndpointUrl, scanPoints, backupPoints) {
  const image = await randomImage(ctx, bytes);
  const best = await interleaved(
    [
      {
        name: 'scan',
        run: () =>
          withSession(scanEndpointUrl, join(ctx.dir, `index-size-${bytes}.db`), CONCURRENCY, async (session) => {
            const start = performance.now();
            await backup(session, { source: image, volume: 'bench', dryRun: true });
            return performance.now() - start;
          }),
      },
      { name: 'backup', run: async () => (await freshBackup(ctx, image, CONCURRENCY)).ms },
    ],
    ctx.plan.sweepRounds,
  );
  const scanMs = /** @type {number} */ (best.get('scan'));
  const backupMs = /** @type {number} */ (best.get('backup'));
  scanPoints.push([bytes / MIB, mibPerSecond(bytes, scanMs)]);
  backupPoints.push([bytes / MIB, mibPerSecond(bytes, backupMs)]);
  console.log(`   ${sizeText(bytes).padStart(8)}: scan ${rateText(bytes, scanMs)}; full backup ${rateText(bytes, backupMs)}`);
}
