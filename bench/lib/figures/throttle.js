// Backups against an endpoint limited to N PutSnapshotBlock/s per snapshot
// (the rateLimit fault: a token bucket holding one second's worth, as AWS
// limits per snapshot). The figure: at 1000/s, the rate the uploader sustains
// once the limit holds it back (from the first RequestThrottledException on,
// when the bucket is empty), as a share of the limit; if the limit never
// holds it back within the run, its own rate over the run. A second run at a
// limit low enough to hold any uploader back shows the limiter under
// sustained throttling. Neither run may fail.
import { join } from 'node:path';
import { CONCURRENCY, check, freshBackup, randomImage, report, sizeText, withSession } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { BLOCK, GIB, blocksPerSecond } from '../measure.js';
import { sessionBackup as backup } from 'snapline/internals';


/** The endpoint's limit of the figure, as AWS applies it per snapshot. */
const RATE_LIMIT = 1000;
/** A limit any uploader here exceeds, for the run under sustained throttling. */
const LOW_LIMIT = 300;
/** How often the endpoint's counters are read. */
const SAMPLE_MS = 100;

/**
 * @typedef {object} ThrottledRun
 * @property {number} rate blocks/s over the window
 * @property {boolean} heldBack whether any request was throttled
 * @property {number} throttledAnswers
 * @property {unknown} failure the backup's error, if it failed
 * @property {number} uploaded
 */

/**
 * One full backup of `image` (`total` blocks) against a fresh endpoint limited to `limit` requests/s.
 * @param {import('../context.js').Context} ctx
 * @param {string} image
 * @param {number} total
 * @param {number} limit
 * @returns {Promise<ThrottledRun>}
 */
async function throttledRun(ctx, image, total, limit) {
  const endpoint = await startEndpoint({ rateLimit: limit });
  try {
    /** @type {Array<{ at: number, accepted: number, throttled: number }>} */
    const samples = [];
    const sample = async () => {
      const stats = await endpoint.stats();
      const put = stats.operations.PutSnapshotBlock;
      samples.push({ at: performance.now(), accepted: (put?.requests ?? 0) - (put?.errors ?? 0), throttled: stats.faults.rateLimited });
    };
    let running = true;
    const sampler = (async () => {
      while (running) {
        await sample();
        await new Promise((resolve) => setTimeout(resolve, SAMPLE_MS));
      }
    })();
    /** @type {unknown} */
    let failure;
    let uploaded = -1;
    try {
      const indexPath = join(ctx.dir, `index-throttle-${limit}.db`);
      const result = await withSession(endpoint.url, indexPath, CONCURRENCY, (session) => backup(session, { source: image, volume: 'bench' }));
      uploaded = result.blocksUploaded;
    } catch (err) {
      failure = err;
    } finally {
      running = false;
      await sampler;
    }
    await sample();
    const throttledAnswers = /** @type {{ throttled: number }} */ (samples.at(-1)).throttled;
    // From the first throttled answer (the bucket is empty from then on), or else from the
    // first accepted block, to the last sample before the last block.
    const from = samples.find((s) => s.throttled > 0) ?? samples.find((s) => s.accepted > 0);
    const to = samples.findLast((s) => s.accepted < total);
    const rate = from !== undefined && to !== undefined && to.at > from.at ? ((to.accepted - from.accepted) / (to.at - from.at)) * 1000 : NaN;
    return { rate, heldBack: throttledAnswers > 0, throttledAnswers, failure, uploaded };
  } finally {
    await endpoint.close();
  }
}

/**
 * @param {ThrottledRun} run
 * @param {number} limit
 */
function describeRun(run, limit) {
  return run.heldBack
    ? `limit ${limit}/s: sustained ${run.rate.toFixed(0)} blocks/s (${((100 * run.rate) / limit).toFixed(0)} %) once held back; ${run.throttledAnswers} answers RequestThrottledException, retried`
    : `limit ${limit}/s: never held back within the run (the bucket's one-second burst lasted); the uploader ran at ${run.rate.toFixed(0)} blocks/s`;
}

/** @param {import('../context.js').Context} ctx */
export async function throttleFigures(ctx) {
  const imageBytes = /** @type {number} */ (ctx.plan.sizes.at(-1));
  const total = imageBytes / BLOCK;
  const image = await randomImage(ctx, imageBytes);
  // The same backup unthrottled: from the size chart when it ran, else measured here.
  const unthrottledMs = ctx.fullBackupMs.get(imageBytes) ?? (await freshBackup(ctx, image, CONCURRENCY)).ms;
  const atLimit = await throttledRun(ctx, image, total, RATE_LIMIT);
  const lowImageBytes = Math.min(imageBytes, GIB);
  const low = await throttledRun(ctx, await randomImage(ctx, lowImageBytes), lowImageBytes / BLOCK, LOW_LIMIT);
  const free = blocksPerSecond(imageBytes, unthrottledMs);
  report(
    ctx,
    {
      id: 'throttled',
      title: `backup of ${sizeText(imageBytes)} against an endpoint limited to ${RATE_LIMIT} PutSnapshotBlock/s per snapshot`,
      value: atLimit.rate,
      unit: 'blocks/s',
      reference: { title: 'the endpoint limit', value: RATE_LIMIT, unit: 'requests/s' },
      ratio: atLimit.rate / RATE_LIMIT,
      ratioUnit: '%',
      target: { op: '>=', value: 0.9, text: '>= 90 % of the limit, no failed run' },
      details: {
        heldBack: atLimit.heldBack,
        throttledAnswers: atLimit.throttledAnswers,
        unthrottledBlocksPerSecond: free,
        lowLimit: { limit: LOW_LIMIT, rate: low.rate, share: low.rate / LOW_LIMIT, heldBack: low.heldBack, throttledAnswers: low.throttledAnswers },
      },
    },
    [describeRun(atLimit, RATE_LIMIT), describeRun(low, LOW_LIMIT), `the same backup unthrottled: ${free.toFixed(0)} blocks/s, start and completion included`],
  );
  for (const [run, limit, blocks] of /** @type {Array<[ThrottledRun, number, number]>} */ ([
    [atLimit, RATE_LIMIT, total],
    [low, LOW_LIMIT, lowImageBytes / BLOCK],
  ])) {
    check(ctx, run.failure === undefined && run.uploaded === blocks, `the backup limited to ${limit}/s finished and uploaded all ${blocks} blocks${run.failure ? ` (${String(run.failure)})` : ''}`);
  }
  check(ctx, low.heldBack, `the limit of ${LOW_LIMIT}/s held the uploader back`);
}
