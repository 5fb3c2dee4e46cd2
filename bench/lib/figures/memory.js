// Peak RSS of a backup and of a restore of a huge sparse source, each in a
// process of its own (bench/lib/peak-rss.js).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONCURRENCY, check, report, sizeText } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { writeSparseImage } from '../images.js';
import { BLOCK, MIB } from '../measure.js';
import { SPARSE_RUN_BYTES } from './sparse.js';

const PEAK_RSS_CHILD = fileURLToPath(new URL('../peak-rss.js', import.meta.url));

/**
 * @typedef {object} PeakRss
 * @property {'backup' | 'restore'} op
 * @property {number} seconds
 * @property {number} peakRssBytes
 * @property {number} maxRssBytes
 * @property {Record<string, unknown>} result
 */

/**
 * Runs bench/lib/peak-rss.js with `job` and returns its JSON line.
 * @param {object} job
 * @returns {Promise<PeakRss>}
 */
function peakRssChild(job) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [PEAK_RSS_CHILD, JSON.stringify(job)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => (out += chunk));
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`bench/lib/peak-rss.js exited with ${code}`));
      else resolve(JSON.parse(out.trim().split('\n').at(-1) ?? '{}'));
    });
  });
}

/** @param {import('../context.js').Context} ctx */
export async function memoryFigures(ctx) {
  const { sizeBytes, dataBytes } = ctx.plan.rss;
  // tmpfs holds a 16 TiB sparse file (ext4 stops 4 KiB short of it) and finds its holes too.
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : ctx.dir, 'snapline-bench-rss-'));
  const endpoint = await startEndpoint();
  try {
    const source = join(dir, 'huge-sparse.img');
    await writeSparseImage(source, sizeBytes, dataBytes, SPARSE_RUN_BYTES);
    const indexPath = join(dir, 'index.db');
    const backed = await peakRssChild({ op: 'backup', endpointUrl: endpoint.url, indexPath, source, concurrency: CONCURRENCY });
    const target = join(dir, 'restored.img');
    const restored = await peakRssChild({ op: 'restore', endpointUrl: endpoint.url, indexPath, snapshotId: backed.result.snapshotId, target, concurrency: CONCURRENCY });
    for (const run of [backed, restored]) {
      report(
        ctx,
        {
          id: `rss-${run.op}`,
          title: `peak RSS of a ${run.op} of a ${sizeText(sizeBytes)} sparse source holding ${sizeText(dataBytes)}`,
          value: run.peakRssBytes / MIB,
          unit: 'MiB',
          target: { op: '<=', value: 300, text: '<= 300 MiB' },
          details: { seconds: run.seconds, maxRssMiB: run.maxRssBytes / MIB },
        },
        [`VmHWM ${(run.peakRssBytes / MIB).toFixed(0)} MiB (maxRSS ${(run.maxRssBytes / MIB).toFixed(0)} MiB), ${run.seconds.toFixed(1)} s`],
      );
    }
    check(ctx, backed.result.blocksUploaded === dataBytes / BLOCK, `the ${sizeText(sizeBytes)} backup uploaded its ${dataBytes / BLOCK} data blocks`);
    check(ctx, restored.result.blocksFetched === dataBytes / BLOCK && restored.result.sizeBytes === sizeBytes, `the restore fetched them and sized the target to ${sizeText(sizeBytes)}`);
  } finally {
    await endpoint.close();
    await rm(dir, { recursive: true, force: true });
  }
}
