import { readlink, realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { throwIfAborted } from '../core/abort.js';
import { TaskWindow } from '../core/task-window.js';
import { BLOCK_SIZE, GIB, blockCountFor } from '../core/constants.js';
import type { RemoteSnapshot, SnapshotCatalog, SnapshotReader } from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../errors.js';
import type { HashPool } from '../hashing/index.js';
import type { BlockIndex } from '../index/index.js';
import { isNbdUrl, parseNbdUrl, type SlabPool } from '../source/index.js';
import { openTarget, type RestoreTarget } from '../target/index.js';
import { SOURCE_BYTES_TAG } from './rebuild.js';
import { verify, type VerifyResult } from './verify.js';

/** What a restore needs. The reader verifies checksums and retries (see session). */
export interface RestoreDeps {
  index: BlockIndex;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  slabs: SlabPool;
}

export interface RestoreOptions {
  snapshotId: string;
  /** Image file, block device or NBD URL. */
  target: string;
  /** Overwrite an existing non-empty file. */
  force?: boolean;
  /** Fetch only the blocks that differ from the snapshot the index says the target holds. */
  incremental?: boolean;
  /** Hash the target afterwards and compare it with the snapshot. */
  verify?: boolean;
  /** Blocks fetched or being written at once (memory: this many blocks). */
  window?: number;
  signal?: AbortSignal;
  onProgress?: (progress: RestoreProgress) => void;
}

export interface RestoreProgress {
  phase: 'restore' | 'verify';
  totalBytes: number;
  blocksListed: number;
  blocksFetched: number;
  bytesWritten: number;
}

export interface RestoreResult {
  snapshotId: string;
  target: string;
  /** The snapshot the target held before, for an incremental restore. */
  incrementalFrom: string | null;
  sizeBytes: number;
  blocksListed: number;
  blocksFetched: number;
  blocksZeroed: number;
  bytesWritten: number;
  durationMs: number;
  /** The verification's outcome with --verify, else null. */
  verified: boolean | null;
}

/** Blocks a restore addresses: fetch this one (token) or make it zeros (no token). */
interface RestoreStep {
  index: number;
  token?: string;
}

/**
 * Restores a completed snapshot onto an image file or a block device: lists
 * its blocks (or, incrementally, the blocks changed since the snapshot the
 * target holds), fetches them many at a time with verified checksums, writes
 * each at its offset, and syncs. The index marks the target incomplete while
 * it is written and claims it holds the snapshot only once it is synced.
 */
export async function restore(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  throwIfAborted(options.signal);
  const { index, reader } = deps;
  const snapshot = await completedSnapshot(deps.catalog, options.snapshotId);
  const sizeBytes = index.getSnapshot(options.snapshotId)?.sourceBytes ?? taggedSourceBytes(snapshot) ?? snapshot.volumeSizeGiB * GIB;
  const targetPath = await canonicalTargetPath(options.target);
  // An NBD export is known by its canonical URL and opened by the URL as given (with its TLS settings).
  const openAs = isNbdUrl(options.target) ? options.target : targetPath;
  const lock = index.acquireLock(`target:${targetPath}`);
  try {
    const from = options.incremental ? await heldSnapshot(deps, targetPath, options.snapshotId) : null;
    const target = await openTarget(openAs, { sizeBytes, force: options.force, keepContent: from !== null });
    const counts = { listed: 0, fetched: 0, zeroed: 0, written: 0 };
    try {
      index.setTarget({ path: targetPath, snapshotId: null, state: 'incomplete', sizeBytes });
      const steps =
        from === null
          ? fullRestoreSteps(reader, options.snapshotId, target, blockCountFor(sizeBytes))
          : changedSteps(reader, from, options.snapshotId);
      await writeSteps(deps, options, target, sizeBytes, from, steps, counts);
      await target.finish(sizeBytes);
    } finally {
      await target.close();
    }
    index.setTarget({ path: targetPath, snapshotId: options.snapshotId, state: 'complete', sizeBytes });

    let verified: VerifyResult | undefined;
    if (options.verify) {
      verified = await verify(deps, {
        source: openAs,
        snapshotId: options.snapshotId,
        signal: options.signal,
      });
    }
    return {
      snapshotId: options.snapshotId,
      target: targetPath,
      incrementalFrom: from,
      sizeBytes,
      blocksListed: counts.listed,
      blocksFetched: counts.fetched,
      blocksZeroed: counts.zeroed,
      bytesWritten: counts.written,
      durationMs: Date.now() - started,
      verified: verified ? verified.equal : null,
    };
  } finally {
    lock.release();
  }
}

/**
 * The one name of a target whatever symbolic links lead to it, so that two
 * restores reaching it by different names take the same lock and index
 * record: its real path when it exists, else (a dangling link followed to
 * where it points) the real folder and the name.
 */
async function canonicalTargetPath(path: string, linksFollowed = 0): Promise<string> {
  if (isNbdUrl(path)) return parseNbdUrl(path).url;
  const absolute = resolve(path);
  const real = await realpath(absolute).catch(() => undefined);
  if (real !== undefined) return real;
  const link = linksFollowed < 40 ? await readlink(absolute).catch(() => undefined) : undefined;
  if (link !== undefined) return canonicalTargetPath(resolve(dirname(absolute), link), linksFollowed + 1);
  const folder = await realpath(dirname(absolute)).catch(() => undefined);
  return folder === undefined ? absolute : join(folder, basename(absolute));
}

/** The snapshot, when it exists and is completed; NOT_FOUND or BAD_STATE otherwise. */
export async function completedSnapshot(catalog: SnapshotCatalog, snapshotId: string): Promise<RemoteSnapshot> {
  const [snapshot] = await catalog.describeSnapshots([snapshotId]);
  if (!snapshot) throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} does not exist`);
  if (snapshot.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${snapshotId} is ${snapshot.state}; only a completed snapshot can be read`);
  }
  return snapshot;
}

/** The exact source size snapline tagged the snapshot with, if it is there and sane. */
export function taggedSourceBytes(snapshot: RemoteSnapshot): number | undefined {
  const bytes = Number(snapshot.tags[SOURCE_BYTES_TAG]);
  return Number.isSafeInteger(bytes) && bytes > 0 && bytes <= snapshot.volumeSizeGiB * GIB ? bytes : undefined;
}

/** The snapshot the index vouches the target holds, for an incremental restore; it must still be readable. */
async function heldSnapshot(deps: RestoreDeps, targetPath: string, wanted: string): Promise<string> {
  const held = deps.index.getTarget(targetPath);
  const refuse = (why: string) =>
    new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `cannot restore incrementally onto ${targetPath}: ${why}`, {
      hint: 'restore in full (with --force to overwrite)',
    });
  if (!held || held.state !== 'complete' || held.snapshotId === null) {
    throw refuse(held?.state === 'incomplete' ? 'its last restore did not finish' : 'the index has no record of restoring it');
  }
  if (held.snapshotId === wanted) return wanted;
  const [remote] = await deps.catalog.describeSnapshots([held.snapshotId]);
  if (remote?.state !== 'completed') {
    throw refuse(`the snapshot it holds, ${held.snapshotId}, ${remote ? `is ${remote.state}` : 'no longer exists'}`);
  }
  return held.snapshotId;
}

/** Every block of the snapshot; on a device, the blocks it lacks become zeros. */
async function* fullRestoreSteps(
  reader: SnapshotReader,
  snapshotId: string,
  target: RestoreTarget,
  totalBlocks: number,
): AsyncGenerator<RestoreStep> {
  let next = 0;
  for await (const page of reader.listBlocks(snapshotId)) {
    for (const block of page.blocks) {
      if (target.kind === 'device') for (; next < block.index; next += 1) yield { index: next };
      yield { index: block.index, token: block.token };
      next = block.index + 1;
    }
  }
  if (target.kind === 'device') for (; next < totalBlocks; next += 1) yield { index: next };
}

/** The blocks that differ between two snapshots: fetched where the second has one, zeroed where it has none. */
async function* changedSteps(reader: SnapshotReader, from: string, to: string): AsyncGenerator<RestoreStep> {
  if (from === to) return;
  try {
    for await (const page of reader.listChangedBlocks(from, to)) {
      for (const block of page.blocks) yield { index: block.index, token: block.secondToken };
    }
  } catch (err) {
    if (isSnaplineError(err, ErrorCodes.REMOTE_REJECTED)) {
      throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${to} is not of the lineage of ${from}, which the target holds`, {
        hint: 'restore in full (with --force to overwrite)',
        cause: err,
      });
    }
    throw err;
  }
}

async function writeSteps(
  deps: RestoreDeps,
  options: RestoreOptions,
  target: RestoreTarget,
  sizeBytes: number,
  from: string | null,
  steps: AsyncIterable<RestoreStep>,
  counts: { listed: number; fetched: number; zeroed: number; written: number },
): Promise<void> {
  const tasks = new TaskWindow(options.window ?? 128);
  const report = () =>
    options.onProgress?.({
      phase: 'restore',
      totalBytes: sizeBytes,
      blocksListed: counts.listed,
      blocksFetched: counts.fetched,
      bytesWritten: counts.written,
    });
  const ticker = setInterval(report, 500);

  const apply = async (step: RestoreStep) => {
    const position = step.index * BLOCK_SIZE;
    const length = Math.min(BLOCK_SIZE, sizeBytes - position);
    if (length <= 0) return;
    if (step.token === undefined) {
      await target.zero(position, length);
      counts.zeroed += 1;
      return;
    }
    const data = await fetchBlock(deps.reader, options.snapshotId, from, step);
    counts.fetched += 1;
    await target.write(data.subarray(0, length), position);
    counts.written += length;
  };

  try {
    for await (const step of steps) {
      throwIfAborted(options.signal);
      if (step.token !== undefined) counts.listed += 1;
      await tasks.add(() => apply(step));
    }
  } catch (err) {
    tasks.fail(err);
  } finally {
    clearInterval(ticker);
  }
  try {
    await tasks.drain();
  } catch (err) {
    // Whatever stopped it, the target is now part old, part new: say so.
    const error = toSnaplineError(err);
    throw new SnaplineError(error.code, `${error.message}; ${target.path} is incomplete`, {
      retryable: error.retryable,
      hint: error.hint ?? 'run the restore again (with --force) to finish it',
      details: error.details,
      cause: error.cause ?? err,
    });
  } finally {
    report();
  }
}

/**
 * Fetches one block. Block tokens expire: a token the service refuses is
 * replaced by listing again from that block, once.
 */
async function fetchBlock(reader: SnapshotReader, snapshotId: string, from: string | null, step: RestoreStep): Promise<Buffer> {
  try {
    return (await reader.getBlock(snapshotId, step.index, step.token!)).data;
  } catch (err) {
    if (!isSnaplineError(err, ErrorCodes.REMOTE_REJECTED) || err.details?.reason !== 'INVALID_BLOCK_TOKEN') throw err;
    const token = await freshToken(reader, snapshotId, from, step.index);
    return (await reader.getBlock(snapshotId, step.index, token)).data;
  }
}

async function freshToken(reader: SnapshotReader, snapshotId: string, from: string | null, blockIndex: number): Promise<string> {
  const options = { startingBlockIndex: blockIndex, pageSize: 100 };
  if (from === null) {
    for await (const page of reader.listBlocks(snapshotId, options)) {
      const block = page.blocks.find((b) => b.index === blockIndex);
      if (block) return block.token;
      if (page.blocks.some((b) => b.index > blockIndex)) break;
    }
  } else {
    for await (const page of reader.listChangedBlocks(from, snapshotId, options)) {
      const block = page.blocks.find((b) => b.index === blockIndex);
      if (block?.secondToken) return block.secondToken;
      if (page.blocks.some((b) => b.index > blockIndex)) break;
    }
  }
  throw new SnaplineError(ErrorCodes.NOT_FOUND, `block ${blockIndex} is no longer listed in ${snapshotId}`);
}
