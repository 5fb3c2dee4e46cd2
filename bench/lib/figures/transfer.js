// Full backup against a bare PutSnapshotBlock loop, and restore against a bare
// GetSnapshotBlock loop, both over the SDK, at each concurrency of the plan
// (the chart); the headline figures are at the CLI's default concurrency,
// where the same bare loops over the direct block requests (the engine's
// request path) show what that path saves.
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CONCURRENCY, check, freshBackup, preparedBlocks, randomImage, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { bareGetLoop, barePutLoop } from '../loops.js';
import { interleaved, mibPerSecond, rateText } from '../measure.js';
import { sessionBackup as backup, sessionRestore as restore } from 'snapline/internals';


/** @param {import('../context.js').Context} ctx */
export async function transferFigures(ctx) {
  const imageBytes = ctx.plan.imageBytes;
  const image = await randomImage(ctx, imageBytes);
  const blocks = await preparedBlocks(image);
  const restoreTarget = join(ctx.dir, 'restored.img');
  // One completed snapshot of the image to read back, on an endpoint kept for the reads.
  const readEndpoint = await startEndpoint();
  const readIndex = join(ctx.dir, 'index-read.db');
  try {
    const source = await withSession(readEndpoint.url, readIndex, CONCURRENCY, (session) => backup(session, { source: image, volume: 'bench' }));
    const snapshotId = /** @type {string} */ (source.snapshotId);
    /** @type {Record<string, Array<[number, number]>>} */
    const points = { backup: [], put: [], restore: [], get: [] };
    /** @type {Map<string, number>} */
    const bestMs = new Map();
    let readBlocks = 0;
    for (const concurrency of ctx.plan.concurrencies) {
      const rounds = concurrency === CONCURRENCY ? Math.max(ctx.plan.rounds, ctx.plan.sweepRounds) : ctx.plan.sweepRounds;
      /** @type {import('../measure.js').Trial[]} */
      const direct =
        concurrency === CONCURRENCY
          ? [
              {
                name: 'put-direct',
                run: async () => {
                  const endpoint = await startEndpoint();
                  try {
                    return await barePutLoop(endpoint.url, concurrency, blocks, { direct: true });
                  } finally {
                    await endpoint.close();
                  }
                },
              },
              { name: 'get-direct', run: async () => (await bareGetLoop(readEndpoint.url, concurrency, snapshotId, { direct: true })).ms },
            ]
          : [];
      const best = await interleaved(
        [
          ...direct,
          {
            name: 'put',
            run: async () => {
              const endpoint = await startEndpoint();
              try {
                return await barePutLoop(endpoint.url, concurrency, blocks);
              } finally {
                await endpoint.close();
              }
            },
          },
          {
            name: 'backup',
            run: async () => {
              const { ms, result } = await freshBackup(ctx, image, concurrency);
              check(ctx, result.blocksUploaded === blocks.bodies.length, `backup at concurrency ${concurrency} uploaded all ${blocks.bodies.length} blocks`);
              return ms;
            },
          },
          {
            name: 'get',
            run: async () => {
              const { ms, blocks: fetched } = await bareGetLoop(readEndpoint.url, concurrency, snapshotId);
              readBlocks = fetched;
              return ms;
            },
          },
          {
            name: 'restore',
            run: async () => {
              await rm(restoreTarget, { force: true });
              return withSession(readEndpoint.url, readIndex, concurrency, async (session) => {
                const start = performance.now();
                const result = await restore(session, { snapshotId, target: restoreTarget, force: true });
                const ms = performance.now() - start;
                check(ctx, result.blocksFetched === blocks.bodies.length, `restore at concurrency ${concurrency} fetched all ${blocks.bodies.length} blocks`);
                return ms;
              });
            },
          },
        ],
        rounds,
      );
      const line = [`concurrency ${String(concurrency).padStart(3)}:`];
      for (const [name, ms] of best) {
        points[name]?.push([concurrency, mibPerSecond(imageBytes, ms)]);
        bestMs.set(`${name}@${concurrency}`, ms);
        line.push(`${name} ${mibPerSecond(imageBytes, ms).toFixed(0)} MiB/s`);
      }
      console.log(`   ${line.join('  ')}`);
    }
    check(ctx, (await readFile(restoreTarget)).equals(await readFile(image)), 'the restored image equals the source');
    check(ctx, readBlocks === blocks.bodies.length, `the bare GetSnapshotBlock loop read all ${blocks.bodies.length} blocks`);

    const line = (/** @type {string} */ name) => /** @type {Array<[number, number]>} */ (points[name]);
    ctx.series.concurrency.push(
      { name: 'full backup', points: line('backup') },
      { name: 'bare PutSnapshotBlock loop', points: line('put'), dashed: true },
      { name: 'restore', points: line('restore') },
      { name: 'bare GetSnapshotBlock loop', points: line('get'), dashed: true },
    );
    if (!ctx.plan.concurrencies.includes(CONCURRENCY)) return;
    const at = (/** @type {string} */ name) => /** @type {number} */ (bestMs.get(`${name}@${CONCURRENCY}`));
    ctx.fullBackupMs.set(imageBytes, Math.min(at('backup'), ctx.fullBackupMs.get(imageBytes) ?? Infinity));
    report(
      ctx,
      {
        id: 'backup-full',
        title: `full backup of a random ${sizeText(imageBytes)} image vs a bare PutSnapshotBlock loop, concurrency ${CONCURRENCY}`,
        value: mibPerSecond(imageBytes, at('backup')),
        unit: 'MiB/s',
        reference: { title: 'bare PutSnapshotBlock loop', value: mibPerSecond(imageBytes, at('put')), unit: 'MiB/s' },
        ratio: at('put') / at('backup'),
        ratioUnit: '%',
        target: { op: '>=', value: 0.7, text: '>= 70 % of the bare loop' },
        details: { directLoopMiBps: mibPerSecond(imageBytes, at('put-direct')) },
      },
      [
        `backup (read, hash, plan, upload, complete, commit)  ${rateText(imageBytes, at('backup'))}`,
        `bare PutSnapshotBlock loop (SDK)                    ${rateText(imageBytes, at('put'))}`,
        `bare PutSnapshotBlock loop (direct requests)        ${rateText(imageBytes, at('put-direct'))}`,
      ],
    );
    report(
      ctx,
      {
        id: 'restore',
        title: `restore of a ${sizeText(imageBytes)} snapshot vs a bare GetSnapshotBlock loop, concurrency ${CONCURRENCY}`,
        value: mibPerSecond(imageBytes, at('restore')),
        unit: 'MiB/s',
        reference: { title: 'bare GetSnapshotBlock loop', value: mibPerSecond(imageBytes, at('get')), unit: 'MiB/s' },
        ratio: at('get') / at('restore'),
        ratioUnit: '%',
        target: { op: '>=', value: 0.7, text: '>= 70 % of the bare loop' },
        details: { directLoopMiBps: mibPerSecond(imageBytes, at('get-direct')) },
      },
      [
        `restore (list, fetch, verify, write, sync)          ${rateText(imageBytes, at('restore'))}`,
        `bare GetSnapshotBlock loop (SDK)                    ${rateText(imageBytes, at('get'))}`,
        `bare GetSnapshotBlock loop (direct requests)        ${rateText(imageBytes, at('get-direct'))}`,
      ],
    );
  } finally {
    await readEndpoint.close();
  }
}
