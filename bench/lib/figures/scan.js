// Scan of an unchanged cached image (a dry run: read, hash and diff against
// the index, nothing uploaded) against the SHA-256 ceiling, with a second
// backup that has nothing to upload; then incremental backups at 1 % changed
// against the scan of the same changed image. The ceiling (bare threads, as
// in the hashing figure) hashes as many bytes as the image holds in the same
// interleaved rounds as the scan: a neighbour that slows one slows both, and
// each is the best of as many runs of the same length. The scan's every run
// is kept too: its spread says whether the best was a lucky one. Bare threads
// that read the image's blocks with pread and hash them, in the same rounds,
// tell how much of the scan's distance to the ceiling the machine's reads
// take and how much is the engine's own.
import { randomFillSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONCURRENCY, check, randomImage, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { changeBlocks } from '../images.js';
import { BLOCK, bestOf, interleaved, interleavedRuns, mibPerSecond, rateSpread, rateText } from '../measure.js';
import { BareReadAndHash, ShaCeiling } from '../sha-ceiling.js';
import { sessionBackup as backup } from 'snapline/internals';


/** @param {import('../context.js').Context} ctx */
export async function scanFigures(ctx) {
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
      const slabCount = imageBytes / (CEILING_BLOCKS_PER_SLAB * BLOCK);
      const ceiling = bareSha256(session.hashPool.threads, CEILING_SLABS);
      // The same bare threads over as much memory as the image: what SHA-256
      // does on bytes that must come from RAM, as a scan's do. Told, not judged.
      const spread = bareSha256(session.hashPool.threads, slabCount);
      const bareRead = new BareReadAndHash({ threads: session.hashPool.threads, path: image, blockSize: BLOCK });
      /** @type {Map<string, number[]>} */
      let runs;
      try {
        // One untimed run warms the threads.
        await ceiling.hash(slabCount);
        await spread.hash(slabCount);
        await bareRead.readAndHash(totalBlocks);
        runs = await interleavedRuns(
          [
            { name: 'ceiling', run: () => ceiling.hash(slabCount) },
            { name: 'spread', run: () => spread.hash(slabCount) },
            { name: 'read', run: () => bareRead.readAndHash(totalBlocks) },
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
      } finally {
        await ceiling.close();
        await spread.close();
        await bareRead.close();
      }
      const best = bestOf(runs);
      const spreadRate = mibPerSecond(imageBytes, /** @type {number} */ (best.get('spread')));
      const ceilingRate = mibPerSecond(imageBytes, /** @type {number} */ (best.get('ceiling')));
      const bareReadRate = mibPerSecond(imageBytes, /** @type {number} */ (best.get('read')));
      const scanMs = /** @type {number} */ (best.get('scan'));
      const secondMs = /** @type {number} */ (best.get('second'));
      report(
        ctx,
        {
          id: 'scan',
          title: `scan of an unchanged cached ${sizeText(imageBytes)} image (dry run: read, hash, diff; nothing uploaded) vs the SHA-256 ceiling`,
          value: mibPerSecond(imageBytes, scanMs),
          unit: 'MiB/s',
          reference: { title: `SHA-256, ${session.hashPool.threads} bare threads, ${sizeText(imageBytes)} in the same rounds`, value: ceilingRate, unit: 'MiB/s' },
          ratio: mibPerSecond(imageBytes, scanMs) / ceilingRate,
          ratioUnit: '%',
          target: { op: '>=', value: 0.9, text: '>= 90 % of the two-core SHA-256 rate' },
          spread: rateSpread(imageBytes, /** @type {number[]} */ (runs.get('scan')), ceilingRate),
          details: {
            secondBackupMiBps: mibPerSecond(imageBytes, secondMs),
            sha256FromRamMiBps: spreadRate,
            bareReadAndHashMiBps: bareReadRate,
            bareReadAndHashOfCeiling: bareReadRate / ceilingRate,
            scanOfBareReadAndHash: mibPerSecond(imageBytes, scanMs) / bareReadRate,
            ceilingRunsMiBps: rateSpread(imageBytes, /** @type {number[]} */ (runs.get('ceiling'))).values,
          },
        },
        [
          `scan (dry run)                    ${rateText(imageBytes, scanMs)}`,
          `second backup, nothing to upload  ${rateText(imageBytes, secondMs)} (StartSnapshot, scan, CompleteSnapshot, commit)`,
          `SHA-256 ceiling, same rounds      ${ceilingRate.toFixed(0)} MiB/s (${CEILING_SLABS} slabs hashed in turn: they stay in the CPU's cache)`,
          `${`SHA-256 of ${sizeText(imageBytes)} spread in RAM`.padEnd(34)}${spreadRate.toFixed(0)} MiB/s (no read; the scan reaches ${((100 * mibPerSecond(imageBytes, scanMs)) / spreadRate).toFixed(0)} % of it)`,
          `${'bare pread + SHA-256, same rounds'.padEnd(34)}${bareReadRate.toFixed(0)} MiB/s, ${((100 * bareReadRate) / ceilingRate).toFixed(0)} % of the ceiling: the most a reading scan reaches here (the scan reaches ${((100 * mibPerSecond(imageBytes, scanMs)) / bareReadRate).toFixed(0)} % of it)`,
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

/** Slabs of the ceiling, as in the hashing figure: 6 random slabs of 8 blocks, hashed in turn. */
export const CEILING_BLOCKS_PER_SLAB = 8;
export const CEILING_SLABS = 6;

/**
 * Bare SHA-256 threads over `slabCount` random slabs of the ceiling's size.
 * @param {number} threads
 * @param {number} slabCount
 */
export function bareSha256(threads, slabCount) {
  const slabs = Array.from({ length: slabCount }, () => {
    const buffer = new SharedArrayBuffer(CEILING_BLOCKS_PER_SLAB * BLOCK);
    randomFillSync(new Uint8Array(buffer));
    return buffer;
  });
  return new ShaCeiling({ threads, slabs, blocksPerSlab: CEILING_BLOCKS_PER_SLAB, blockSize: BLOCK });
}
