// Scan of an unchanged cached image (a dry run: read, hash and diff against
// the index, nothing uploaded) against the SHA-256 ceiling, with a second
// backup that has nothing to upload; then incremental backups at 1 % changed
// against the scan of the same changed image.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { load } from '../dist.js';
import { CONCURRENCY, check, randomImage, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { changeBlocks } from '../images.js';
import { BLOCK, interleaved, mibPerSecond, rateText } from '../measure.js';
import { shaCeiling } from './hashing.js';

const { backup } = /** @type {typeof import('../../../src/engine/backup.js')} */ (await load('engine/backup.js'));

/** @param {import('../context.js').Context} ctx */
export async function scanFigures(ctx) {
  const ceiling = await shaCeiling(ctx);
  const imageBytes = ctx.plan.imageBytes;
  // A copy of its own: the incremental rounds change it.
  const image = join(ctx.dir, 'incremental.img');
  await writeFile(image, await readFile(await randomImage(ctx, imageBytes)));
  const totalBlocks = imageBytes / BLOCK;
  const endpoint = await startEndpoint();
  try {
    await withSession(endpoint.url, join(ctx.dir, 'index-scan.db'), CONCURRENCY, async (session) => {
      await backup(session, { source: image, volume: 'bench' });
      const scan = async () => {
        const start = performance.now();
        const result = await backup(session, { source: image, volume: 'bench', dryRun: true });
        return { ms: performance.now() - start, result };
      };
      const best = await interleaved(
        [
          { name: 'scan', run: async () => (await scan()).ms },
          {
            name: 'second',
            run: async () => {
              const start = performance.now();
              const result = await backup(session, { source: image, volume: 'bench' });
              const ms = performance.now() - start;
              check(ctx, result.blocksUploaded === 0, 'a second backup of an unchanged image uploads nothing');
              return ms;
            },
          },
        ],
        ctx.plan.rounds,
      );
      const scanMs = /** @type {number} */ (best.get('scan'));
      const secondMs = /** @type {number} */ (best.get('second'));
      report(
        ctx,
        {
          id: 'scan',
          title: `scan of an unchanged cached ${sizeText(imageBytes)} image (dry run: read, hash, diff; nothing uploaded) vs the SHA-256 ceiling`,
          value: mibPerSecond(imageBytes, scanMs),
          unit: 'MiB/s',
          reference: { title: 'SHA-256, bare threads (hashing figure)', value: ceiling, unit: 'MiB/s' },
          ratio: mibPerSecond(imageBytes, scanMs) / ceiling,
          ratioUnit: '%',
          target: { op: '>=', value: 0.8, text: '>= 80 % of the two-core SHA-256 rate' },
          details: { secondBackupMiBps: mibPerSecond(imageBytes, secondMs) },
        },
        [
          `scan (dry run)                    ${rateText(imageBytes, scanMs)}`,
          `second backup, nothing to upload  ${rateText(imageBytes, secondMs)} (StartSnapshot, scan, CompleteSnapshot, commit)`,
          `SHA-256 ceiling                   ${ceiling.toFixed(0)} MiB/s`,
        ],
      );

      // Each round changes 1 % of the blocks, then times the scan of the changed
      // image and the incremental backup that follows it.
      const changedCount = Math.max(1, Math.round(totalBlocks / 100));
      const accepted = async () => {
        const put = (await endpoint.stats()).operations.PutSnapshotBlock;
        return (put?.requests ?? 0) - (put?.errors ?? 0);
      };
      const incremental = await interleaved(
        [
          {
            name: 'scan',
            run: async () => {
              await changeBlocks(image, changedCount);
              const { ms, result } = await scan();
              check(ctx, result.blocksChanged === changedCount, `the scan found the ${changedCount} changed blocks`);
              return ms;
            },
          },
          {
            name: 'incremental',
            run: async () => {
              const before = await accepted();
              const start = performance.now();
              const result = await backup(session, { source: image, volume: 'bench' });
              const ms = performance.now() - start;
              const uploaded = (await accepted()) - before;
              check(ctx, result.blocksUploaded === changedCount && uploaded === changedCount, `the incremental backup uploaded exactly the ${changedCount} changed blocks (${uploaded} by the endpoint's count)`);
              return ms;
            },
          },
        ],
        ctx.plan.rounds,
      );
      const incScanMs = /** @type {number} */ (incremental.get('scan'));
      const incMs = /** @type {number} */ (incremental.get('incremental'));
      report(
        ctx,
        {
          id: 'incremental',
          title: `incremental backup, 1 % of ${totalBlocks} blocks changed, vs the scan alone`,
          value: incMs / 1000,
          unit: 's',
          reference: { title: 'scan (dry run) of the changed image', value: incScanMs / 1000, unit: 's' },
          ratio: incMs / incScanMs,
          ratioUnit: 'x',
          target: { op: '<=', value: 1.2, text: '<= 1.2x the scan' },
          details: { changedBlocks: changedCount },
        },
        [`incremental backup  ${(incMs / 1000).toFixed(3)} s (${rateText(imageBytes, incMs)})`, `scan alone          ${(incScanMs / 1000).toFixed(3)} s (${rateText(imageBytes, incScanMs)})`],
      );
    });
  } finally {
    await endpoint.close();
  }
}
