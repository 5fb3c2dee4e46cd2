// A backup against an endpoint limited to 1000 requests/s per snapshot (the
// rateLimit fault, as AWS limits PutSnapshotBlock): the accepted rate once the
// limit's one-second burst is spent, as a share of the limit, next to the
// same backup unthrottled (what this machine can push at all); and no failed run.
import { join } from 'node:path';
import { load } from '../dist.js';
import { CONCURRENCY, check, freshBackup, randomImage, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { BLOCK, blocksPerSecond } from '../measure.js';

const { backup } = /** @type {typeof import('../../../src/engine/backup.js')} */ (await load('engine/backup.js'));

/** The endpoint's limit, as AWS applies it per snapshot. */
const RATE_LIMIT = 1000;
/** How often the endpoint's counters are read. */
const SAMPLE_MS = 100;

/** @param {import('../context.js').Context} ctx */
export async function throttleFigures(ctx) {
  const imageBytes = /** @type {number} */ (ctx.plan.sizes.at(-1));
  const total = imageBytes / BLOCK;
  const image = await randomImage(ctx, imageBytes);
  // The same backup unthrottled: from the size chart when it ran, else measured here.
  const unthrottledMs = ctx.fullBackupMs.get(imageBytes) ?? (await freshBackup(ctx, image, CONCURRENCY)).ms;
  const endpoint = await startEndpoint({ rateLimit: RATE_LIMIT });
  try {
    const accepted = async () => {
      const put = (await endpoint.stats()).operations.PutSnapshotBlock;
      return (put?.requests ?? 0) - (put?.errors ?? 0);
    };
    /** @type {Array<[number, number]>} (ms, blocks accepted) */
    const samples = [];
    let running = true;
    const sampler = (async () => {
      while (running) {
        samples.push([performance.now(), await accepted()]);
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
      }
    })();
    /** @type {unknown} */
    let failure;
    let uploaded = -1;
    try {
      const result = await withSession(endpoint.url, join(ctx.dir, 'index-throttle.db'), CONCURRENCY, (session) => backup(session, { source: image, volume: 'bench' }));
      uploaded = result.blocksUploaded;
    } catch (err) {
      failure = err;
    } finally {
      running = false;
      await sampler;
    }
    const stats = await endpoint.stats();
    // The window: from one second after the first accepted block (the burst is spent) to the last sample before the end.
    const first = samples.find(([, n]) => n > 0);
    const from = first === undefined ? undefined : samples.find(([t]) => t >= first[0] + 1000);
    const last = samples.findLast(([, n]) => n < total);
    const rate = from !== undefined && last !== undefined && last[0] > from[0] ? ((last[1] - from[1]) / (last[0] - from[0])) * 1000 : NaN;
    const free = blocksPerSecond(imageBytes, unthrottledMs);
    report(
      ctx,
      {
        id: 'throttled',
        title: `backup of ${sizeText(imageBytes)} against an endpoint limited to ${RATE_LIMIT} PutSnapshotBlock/s per snapshot`,
        value: rate,
        unit: 'blocks/s',
        reference: { title: 'the endpoint limit', value: RATE_LIMIT, unit: 'requests/s' },
        ratio: rate / RATE_LIMIT,
        ratioUnit: '%',
        target: { op: '>=', value: 0.9, text: '>= 90 % of the limit, no failed run' },
        details: { throttledAnswers: stats.faults.rateLimited, unthrottledBlocksPerSecond: free, shareOfUnthrottled: rate / Math.min(free, RATE_LIMIT) },
      },
      [
        `accepted ${Number.isFinite(rate) ? rate.toFixed(0) : '?'} blocks/s once the burst was spent; ${stats.faults.rateLimited} answers RequestThrottledException, retried`,
        `the same backup unthrottled: ${free.toFixed(0)} blocks/s (the share of min(limit, unthrottled) is ${((100 * rate) / Math.min(free, RATE_LIMIT)).toFixed(0)} %)`,
      ],
    );
    check(ctx, failure === undefined && uploaded === total, `the throttled backup finished and uploaded all ${total} blocks${failure ? ` (${String(failure)})` : ''}`);
  } finally {
    await endpoint.close();
  }
}
