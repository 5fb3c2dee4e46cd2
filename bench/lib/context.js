// What every figure of the suite shares: the run's context, recording and
// printing a figure against its target, correctness checks, and the setup
// steps several figures use (images, sessions, fresh full backups).
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { startEndpoint } from './endpoint.js';
import { writeRandomImage } from './images.js';
import { BLOCK, GIB, MIB, judge } from './measure.js';
import { openSession, sessionBackup as backup, checksumOf } from 'snapline/internals';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Requests in flight of the headline figures: the CLI's default. */
export const CONCURRENCY = 64;
export const TIB = 1024 * GIB;

/**
 * @typedef {object} Plan sizes and repetitions of a run
 * @property {number} rounds interleaved rounds of the headline figures (best kept)
 * @property {number} imageBytes the random image of the transfer, scan and incremental figures
 * @property {number} hashBytes bytes hashed per hashing run
 * @property {number} hashRounds rounds of the hashing figures: many short ones, so that the best finds a quiet moment
 * @property {number[]} concurrencies the concurrency sweep (the chart); must hold CONCURRENCY for the headline figures
 * @property {number} sweepRounds rounds of the other sweep points and of the size chart
 * @property {number[]} sizes image sizes of the size chart; the largest is also the throttled figure's image
 * @property {{ sizeBytes: number, dataBytes: number }} sparse
 * @property {number} indexBlocks
 * @property {boolean} indexJournal store the index map through the journal (as a backup does) rather than import it
 * @property {{ sizeBytes: number, dataBytes: number }} rss
 * @property {{ sizeBytes: number, dataBytes: number }} changeTracking the sparse qcow2 of the changed-block tracking figures
 * @property {{ imageBytes: number, rounds: number }} command the random image of the whole-command figures, and their interleaved rounds
 */

/**
 * @typedef {object} Reference
 * @property {string} title
 * @property {number} value
 * @property {string} unit
 */

/**
 * @typedef {object} Figure
 * @property {string} id
 * @property {string} title
 * @property {number} value
 * @property {string} unit
 * @property {Reference} [reference]
 * @property {number} [ratio] figure against reference, as the target reads it
 * @property {'%' | 'x'} [ratioUnit]
 * @property {import('./measure.js').Target} [target] applies to the ratio when there is one, else to the value
 * @property {boolean} [pass]
 * @property {number} [shortBy]
 * @property {import('./measure.js').Spread} [spread] the runs behind a best-of-rounds value
 * @property {Record<string, unknown>} [details]
 */

/**
 * @typedef {object} Context
 * @property {Plan} plan
 * @property {string} dir scratch folder, deleted at the end
 * @property {Figure[]} figures
 * @property {{ concurrency: import('./svg.js').Series[], size: import('./svg.js').Series[] }} series
 * @property {string[]} errors failed runs and checks
 * @property {number} checks checks made
 * @property {Map<number, string>} images random images by size
 * @property {number | undefined} shaCeiling MiB/s of the bare SHA-256 threads, once measured
 * @property {Map<number, number>} fullBackupMs the best full backup time (ms) at the headline concurrency, by image size
 */

/** @param {number} bytes */
export const sizeText = (bytes) => (bytes >= TIB ? `${bytes / TIB} TiB` : bytes >= GIB ? `${bytes / GIB} GiB` : `${bytes / MIB} MiB`);

/**
 * Records a figure, judging its ratio (or value) against its target, and prints it.
 * @param {Context} ctx
 * @param {Figure} figure
 * @param {string[]} lines the measurements to print under the title
 */
export function report(ctx, figure, lines) {
  if (figure.target !== undefined) {
    const verdict = judge(figure.ratio ?? figure.value, figure.target);
    figure.pass = verdict.pass;
    figure.shortBy = verdict.shortBy;
  }
  ctx.figures.push(figure);
  console.log(`\n== ${figure.title}`);
  for (const line of lines) console.log(`   ${line}`);
  if (figure.target !== undefined) {
    console.log(`   ${figure.ratio === undefined ? 'figure' : 'ratio'} ${shownValue(figure)}, target ${figure.target.text}: ${figure.pass ? 'pass' : `SHORT by ${shortText(figure)}`}`);
  }
  if (figure.spread !== undefined) console.log(`   best of ${figure.spread.values.length} runs; all runs ${spreadText(figure)}`);
}

/**
 * Decimals a value in `unit` is printed with.
 * @param {string} unit
 */
export const valueDigits = (unit) => (unit === 's' ? 3 : unit === 'MiB/s' || unit === 'blocks/s' ? 0 : 1);

/**
 * The range of a figure's runs: "2410..2529 MiB/s (76..80 %)", the ratio against the best reference.
 * @param {Figure} figure
 */
export function spreadText(figure) {
  const spread = figure.spread;
  if (spread === undefined) return '';
  const digits = valueDigits(figure.unit);
  const values = `${spread.min.toFixed(digits)}..${spread.max.toFixed(digits)} ${figure.unit}`;
  if (spread.ratioMin === undefined || spread.ratioMax === undefined || figure.ratioUnit !== '%') return values;
  return `${values} (${(100 * spread.ratioMin).toFixed(0)}..${(100 * spread.ratioMax).toFixed(0)} %)`;
}

/** @param {Figure} figure the ratio (or value) as the target reads it */
export function shownValue(figure) {
  const shown = figure.ratio ?? figure.value;
  if (figure.ratioUnit === '%') return `${(100 * shown).toFixed(0)} %`;
  if (figure.ratioUnit === 'x') return `${shown.toFixed(2)}x`;
  return `${shown.toFixed(2)} ${figure.unit}`;
}

/** @param {Figure} figure */
export function shortText(figure) {
  const by = figure.shortBy ?? 0;
  // Under one point a whole number would read "short by 0 points".
  if (figure.ratioUnit === '%') return `${(100 * by).toFixed(100 * by < 1 ? 1 : 0)} points`;
  if (figure.ratioUnit === 'x') return `${by.toFixed(2)}x`;
  return `${by.toFixed(2)} ${figure.unit}`;
}

/**
 * Records a correctness check; one that does not hold makes the run fail.
 * @param {Context} ctx
 * @param {boolean} holds
 * @param {string} what
 */
export function check(ctx, holds, what) {
  ctx.checks += 1;
  if (holds) return;
  console.log(`   check FAILED: ${what}`);
  ctx.errors.push(what);
}

/**
 * A random image of `bytes`, written once per run.
 * @param {Context} ctx
 * @param {number} bytes
 */
export async function randomImage(ctx, bytes) {
  let path = ctx.images.get(bytes);
  if (path === undefined) {
    path = join(ctx.dir, `random-${bytes / MIB}MiB.img`);
    await writeRandomImage(path, bytes);
    ctx.images.set(bytes, path);
  }
  return path;
}

/**
 * Opens a session (as the CLI does) on the endpoint with the given index file, runs `fn`, closes it.
 * @template T
 * @param {string} endpointUrl
 * @param {string} indexPath
 * @param {number} concurrency
 * @param {(session: import('../../src/session.js').Session) => Promise<T>} fn
 */
export async function withSession(endpointUrl, indexPath, concurrency, fn) {
  const session = await openSession({ connection: 'local', endpointUrl, indexPath, concurrency });
  try {
    return await fn(session);
  } finally {
    await session.close();
  }
}

let indexes = 0;

/**
 * A full backup of `image` to a fresh endpoint with a fresh index; times the backup call alone.
 * @param {Context} ctx
 * @param {string} image
 * @param {number} concurrency
 */
export async function freshBackup(ctx, image, concurrency) {
  const endpoint = await startEndpoint();
  const indexPath = join(ctx.dir, `index-fresh-${(indexes += 1)}.db`);
  try {
    return await withSession(endpoint.url, indexPath, concurrency, async (session) => {
      const start = performance.now();
      const result = await backup(session, { source: image, volume: 'bench' });
      return { ms: performance.now() - start, result };
    });
  } finally {
    await endpoint.close();
    await rm(indexPath, { force: true });
  }
}

/**
 * The blocks of an image in memory with their checksums, for the bare PutSnapshotBlock loop.
 * @param {string} image
 */
export async function preparedBlocks(image) {
  const data = await readFile(image);
  /** @type {Uint8Array[]} */
  const bodies = [];
  /** @type {string[]} */
  const checksums = [];
  for (let at = 0; at < data.byteLength; at += BLOCK) {
    const body = data.subarray(at, at + BLOCK);
    bodies.push(body);
    checksums.push(checksumOf(createHash('sha256').update(body).digest()));
  }
  return { bodies, checksums, volumeSizeGiB: Math.max(1, Math.ceil(data.byteLength / GIB)) };
}
