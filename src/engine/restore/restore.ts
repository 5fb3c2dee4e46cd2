import { readlink, realpath, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { throwIfAborted } from '../../core/abort.js';
import { ZERO_BLOCK_DIGEST } from '../../core/checksum.js';
import { TaskWindow } from '../../core/task-window.js';
import { BLOCK_SIZE, GIB, blockCountFor } from '../../core/constants.js';
import type { BlockPage, BlockRef, SnapshotCatalog, SnapshotReader } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts } from '../../core/index-ports.js';
import { isNbdUrl, openSource, parseNbdUrl, type BlockSource, type SlabPool } from '../../source/index.js';
import { openTarget, type RestoreTarget } from '../../target/index.js';
import { BlockMapCursor } from '../blocks/block-map.js';
import type { SettleWait } from '../blocks/committer.js';
import { completedSnapshot, taggedSourceBytes } from '../blocks/remote-snapshot.js';
import { digestAt, scanSource } from '../blocks/scan.js';
import { cutSource, verify, type VerifyResult } from './verify.js';
import { holdForReading } from '../lineage/snapshot-readers.js';

/** What a restore needs. The reader verifies checksums and retries (see session). */
export interface RestoreDeps {
  index: Pick<IndexPorts, 'lineage' | 'locks' | 'maps' | 'targets'>;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  slabs: SlabPool;
}

export interface RestoreOptions {
  snapshotId: string;
  /** Image file, block device or NBD URL. */
  target: string;
  /** Overwrite an existing non-empty file, or a device that holds a partition table or a file system. */
  force?: boolean;
  /**
   * Restore onto a target the index records a restore of (finished or not:
   * this finishes an interrupted one): the target is hashed and only the
   * blocks that differ from the snapshot are fetched (or zeroed).
   */
  incremental?: boolean;
  /**
   * With `incremental`: take the index's record of which snapshot the target
   * holds as true, and fetch only the blocks ListChangedBlocks gives between
   * that one and `snapshotId`, without hashing the target. A target changed
   * since its last restore is then left wrong where it changed.
   */
  trustIndex?: boolean;
  /** Hash the target afterwards and compare it with the snapshot; a target that differs is then marked incomplete in the index. */
  verify?: boolean;
  /** Blocks fetched or being written at once (memory: this many blocks). */
  window?: number;
  signal?: AbortSignal;
  onProgress?: (progress: RestoreProgress) => void;
  /** Told while EC2 does not show the snapshot completed yet (see completedSnapshot). */
  onSettling?: (wait: SettleWait) => void;
}

export interface RestoreProgress {
  phase: 'restore' | 'verify';
  totalBytes: number;
  /** Blocks of the volume: totalBytes in blocks. */
  totalBlocks: number;
  /**
   * Blocks of the volume dealt with: fetched and written, zeroed, found
   * equal by hashing, or needing nothing (not in the snapshot, not changed).
   * Reaches totalBlocks when the restore is done.
   */
  blocksDone: number;
  blocksListed: number;
  blocksFetched: number;
  /** Blocks of the target hashed (incremental restore). */
  blocksHashed: number;
  /** Blocks of the target found to differ from the snapshot (incremental restore). */
  blocksDiffering: number;
  bytesWritten: number;
}

/** What an incremental restore did to learn which blocks to write. */
export interface IncrementalReport {
  /**
   * 'hashed': the target was read and hashed, and every block that differs
   * from the snapshot was fetched (or zeroed); 'trusted' (trustIndex): the
   * index's record of the snapshot the target holds was taken as true and
   * only the blocks changed since were fetched, without reading the target.
   */
  method: 'hashed' | 'trusted';
  /**
   * Where the snapshot's block digests came from ('hashed'): the index's
   * block map, or 'none' when the index does not map the snapshot (then
   * every block the snapshot lists is fetched, as it cannot be compared, and
   * only blocks it lacks are compared, with zeros). Null for 'trusted'.
   */
  digestsFrom: 'index' | 'none' | null;
  blocksHashed: number;
  /** Blocks found to differ from the snapshot ('hashed'), or listed as changed ('trusted'). */
  blocksDiffering: number;
}

export interface RestoreResult {
  snapshotId: string;
  target: string;
  /** The snapshot the index recorded the target held before, for an incremental restore (null also when its last restore did not finish). */
  incrementalFrom: string | null;
  /** What the incremental restore did; null for a full one. */
  incremental: IncrementalReport | null;
  sizeBytes: number;
  blocksListed: number;
  blocksFetched: number;
  blocksZeroed: number;
  bytesWritten: number;
  durationMs: number;
  /** The verification's outcome with --verify, else null. */
  verified: boolean | null;
  /**
   * What --verify compared the target's digests with (null without it):
   * 'index', the index's digests of the snapshot, which the snapshot is not
   * read to confirm (a hashed incremental restore chose its blocks from the
   * same digests; `verify --remote` reads the snapshot itself), or
   * 'snapshot', the blocks read from it (the index does not map it).
   */
  verifiedAgainst: 'index' | 'snapshot' | null;
}

/** Blocks a restore addresses: fetch this one (token) or make it zeros (no token). */
interface RestoreStep {
  index: number;
  token?: string;
}

/** Every block below `walkedTo` that no step named needs nothing: it only moves the progress on. */
interface WalkedTo {
  walkedTo: number;
}

type RestoreWalk = AsyncIterable<RestoreStep | WalkedTo>;

interface RestoreCounts {
  listed: number;
  fetched: number;
  zeroed: number;
  written: number;
  hashed: number;
  differing: number;
  /** Blocks of the volume dealt with (see RestoreProgress.blocksDone). */
  done: number;
}

/**
 * Restores a completed snapshot onto an image file or a block device: lists
 * its blocks, fetches them many at a time with verified checksums, writes
 * each at its offset, and syncs. Incrementally, onto a target the index
 * records a restore of (an interrupted one included), it hashes the target and writes only the
 * blocks that differ from the snapshot (or, with trustIndex, the blocks
 * changed since the snapshot the index says the target holds). The index
 * marks the target incomplete while it is written and claims it holds the
 * snapshot only once it is synced.
 */
export async function restore(deps: RestoreDeps, options: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  if (options.trustIndex && !options.incremental) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'trustIndex goes with incremental: a full restore writes every block anyway', {
      details: { option: 'trustIndex', otherOptions: ['incremental'] },
    });
  }
  throwIfAborted(options.signal);
  // Held from before the snapshot is checked until the restore ends: prune deletes no snapshot a restore reads.
  const reading = holdForReading(deps.index.locks, options.snapshotId);
  try {
    return await restoreHeld(deps, options, started);
  } finally {
    reading.release();
  }
}

async function restoreHeld(deps: RestoreDeps, options: RestoreOptions, started: number): Promise<RestoreResult> {
  const { index, reader } = deps;
  const snapshot = await completedSnapshot(deps, options.snapshotId, options);
  const sizeBytes = index.lineage.getSnapshot(options.snapshotId)?.sourceBytes ?? taggedSourceBytes(snapshot) ?? snapshot.volumeSizeGiB * GIB;
  const targetPath = await canonicalTargetPath(options.target);
  // An NBD export is known by its canonical URL and opened by the URL as given (with its TLS settings).
  const openAs = isNbdUrl(options.target) ? options.target : targetPath;
  const lock = index.locks.acquire(`target:${targetPath}`);
  try {
    // Incrementally: the snapshot the target holds, or null when its last restore did not finish or failed its verify (then hashed).
    const held = options.incremental ? await heldSnapshot(deps, targetPath, options.snapshotId, Boolean(options.trustIndex)) : undefined;
    const from = held ?? null;
    const method = held === undefined ? null : options.trustIndex ? 'trusted' : 'hashed';
    const mapped = method === 'hashed' && mapsSnapshot(index, options.snapshotId);
    const incomplete = () => index.targets.set({ path: targetPath, snapshotId: null, state: 'incomplete', sizeBytes });
    // A full restore truncates a file as it opens it: a crash from then on must find the index claiming nothing.
    const target = await openTarget(openAs, {
      sizeBytes,
      force: options.force,
      keepContent: method !== null,
      reserved: index.targets.ownFiles(),
      beforeTruncate: incomplete,
      signal: options.signal,
    });
    const counts: RestoreCounts = { listed: 0, fetched: 0, zeroed: 0, written: 0, hashed: 0, differing: 0, done: 0 };
    try {
      incomplete();
      const walk: RestoreWalk =
        method === null
          ? fullRestoreSteps(reader, options.snapshotId, target, blockCountFor(sizeBytes))
          : method === 'trusted'
            ? changedSteps(reader, from!, options.snapshotId, counts)
            : hashedSteps(deps, options, target, sizeBytes, mapped, counts);
      await writeSteps(deps, options, target, sizeBytes, method === 'trusted' ? from : null, walk, counts);
      await target.finish(sizeBytes);
    } finally {
      await target.close();
    }
    index.targets.set({ path: targetPath, snapshotId: options.snapshotId, state: 'complete', sizeBytes });

    let verified: VerifyResult | undefined;
    if (options.verify) {
      verified = await verify(deps, {
        source: openAs,
        // A device may be larger than the snapshot: only the restored bytes are the snapshot's.
        upToBytes: sizeBytes,
        snapshotId: options.snapshotId,
        signal: options.signal,
        onSettling: options.onSettling,
      });
      // A target that does not match the snapshot must not be trusted to hold it: --incremental hashes it again.
      if (!verified.equal) index.targets.set({ path: targetPath, snapshotId: null, state: 'incomplete', sizeBytes });
    }
    return {
      snapshotId: options.snapshotId,
      target: targetPath,
      incrementalFrom: from,
      incremental:
        method === null
          ? null
          : { method, digestsFrom: method === 'trusted' ? null : mapped ? 'index' : 'none', blocksHashed: counts.hashed, blocksDiffering: counts.differing },
      sizeBytes,
      blocksListed: counts.listed,
      blocksFetched: counts.fetched,
      blocksZeroed: counts.zeroed,
      bytesWritten: counts.written,
      durationMs: Date.now() - started,
      verified: verified ? verified.equal : null,
      verifiedAgainst: verified ? verified.expectedFrom : null,
    };
  } finally {
    lock.release();
  }
}

/** Whether the index holds the block map of a completed snapshot; a damaged map is refused (INDEX_UNUSABLE) before anything is written. */
function mapsSnapshot(index: Pick<IndexPorts, 'lineage' | 'maps'>, snapshotId: string): boolean {
  if (index.lineage.getSnapshot(snapshotId)?.state !== 'completed') return false;
  index.maps.verifyMap(snapshotId);
  return true;
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

/**
 * The snapshot the index records the target holds, for an incremental
 * restore: there must be a record of a restore (snapline wrote the target).
 * One that did not finish (null) is finished by hashing the target, which
 * proves what each block holds; trusted, the record must be of a finished
 * restore, whose snapshot must still be readable.
 */
async function heldSnapshot(deps: RestoreDeps, targetPath: string, wanted: string, trusted: boolean): Promise<string | null> {
  const held = deps.index.targets.get(targetPath);
  if (!held) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `cannot restore incrementally onto ${targetPath}: the index has no record of restoring it`, {
      hint: 'restore in full (with --force to overwrite)',
    });
  }
  if (held.state !== 'complete' || held.snapshotId === null) {
    if (!trusted) return null;
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `cannot restore incrementally onto ${targetPath} trusting the index: its last restore did not finish, or failed its verify`, {
      hint: 'leave out --trust-index: the target is then hashed and only the blocks not yet right are fetched',
    });
  }
  if (!trusted) return held.snapshotId;
  // A file left by a restore is exactly its snapshot's size: another size says it changed since, which trusting would not see.
  const file = isNbdUrl(targetPath) ? undefined : await stat(targetPath).catch(() => undefined);
  if (file?.isFile() && file.size !== held.sizeBytes) {
    throw new SnaplineError(
      ErrorCodes.TARGET_UNUSABLE,
      `cannot restore incrementally onto ${targetPath} trusting the index: it holds ${file.size} bytes, not the ${held.sizeBytes} its last restore left, so it has changed since`,
      { hint: 'leave out --trust-index: the target is then hashed and compared with the snapshot' },
    );
  }
  if (held.snapshotId === wanted) return held.snapshotId;
  const [remote] = await deps.catalog.describeSnapshots([held.snapshotId]);
  if (remote?.state !== 'completed') {
    throw new SnaplineError(
      ErrorCodes.TARGET_UNUSABLE,
      `cannot restore incrementally onto ${targetPath} trusting the index: the snapshot it holds, ${held.snapshotId}, ${remote ? `is ${remote.state}` : 'no longer exists'}`,
      { hint: 'leave out --trust-index: the target is then hashed and compared with the snapshot' },
    );
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
async function* changedSteps(reader: SnapshotReader, from: string, to: string, counts: RestoreCounts): AsyncGenerator<RestoreStep> {
  if (from === to) return;
  try {
    for await (const page of reader.listChangedBlocks(from, to)) {
      for (const block of page.blocks) {
        counts.differing += 1;
        yield { index: block.index, token: block.secondToken };
      }
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

/**
 * The blocks of an incremental restore, learnt by hashing the target in
 * ascending order (the scan of a backup: the slab pool and the hash pool):
 * a block whose digest differs from the snapshot's is fetched, or zeroed
 * where the snapshot lacks it or holds zeros. Without the index's map of the
 * snapshot (`mapped` false) its digests are unknown: every block it lists is
 * fetched and only the blocks it lacks are compared (with zeros). Only blocks
 * the scan has passed are named, so no write lands where the scan has yet
 * to read. Target bytes past the snapshot's size are not compared.
 */
async function* hashedSteps(
  deps: RestoreDeps,
  options: RestoreOptions,
  target: RestoreTarget,
  sizeBytes: number,
  mapped: boolean,
  counts: RestoreCounts,
): AsyncGenerator<RestoreStep | WalkedTo> {
  const totalBlocks = blockCountFor(sizeBytes);
  const expected = mapped ? new BlockMapCursor(deps.index, options.snapshotId) : undefined;
  const tokens = new SnapshotTokens(deps.reader, options.snapshotId);
  /** The step block `index` needs given the target's digest (and zero flag) there; undefined when it is equal. */
  const stepFor = async (index: number, digest: Uint8Array, zero: boolean): Promise<RestoreStep | undefined> => {
    if (expected) {
      const want = expected.digestAt(index);
      if (want === undefined ? zero : want.equals(digest)) return undefined;
      counts.differing += 1;
      if (want === undefined || want.equals(ZERO_BLOCK_DIGEST)) return { index };
      const token = await tokens.tokenOf(index);
      return token === undefined ? { index } : { index, token };
    }
    // Without the snapshot's digests, a block it lists cannot be compared and is fetched; one it lacks must be zeros.
    const token = await tokens.tokenOf(index);
    if (token !== undefined) return { index, token };
    if (zero) return undefined;
    counts.differing += 1;
    return { index };
  };

  const source = await openTargetForReading(target, isNbdUrl(options.target) ? options.target : target.path, sizeBytes);
  try {
    if (source) {
      for await (const slab of scanSource(source, deps.slabs, deps.hashPool, { keepBytes: 'none', signal: options.signal })) {
        try {
          for (let i = 0; i < slab.blockCount; i += 1) {
            counts.hashed += 1;
            const step = await stepFor(slab.firstBlock + i, digestAt(slab, i), slab.zero[i] === 1);
            if (step) yield step;
          }
        } finally {
          slab.slab.release();
        }
        yield { walkedTo: slab.firstBlock + slab.blockCount };
      }
    }
    // Past the target's end it reads as zeros (a file is extended by finish()).
    for (let index = blockCountFor(source?.sizeBytes ?? 0); index < totalBlocks; index += 1) {
      throwIfAborted(options.signal);
      const step = await stepFor(index, ZERO_BLOCK_DIGEST, true);
      if (step) yield step;
    }
  } finally {
    await source?.close();
    await tokens.close();
  }
}

/**
 * The target as a source to hash (through the target's own handle where it
 * has one, else opened as `path`), cut at the snapshot's size (the tail of
 * its last block reads as zeros, as it was backed up); undefined for an
 * empty file. hashedSteps reads each block before it names it to be written.
 */
async function openTargetForReading(target: RestoreTarget, path: string, sizeBytes: number): Promise<BlockSource | undefined> {
  if (target.kind === 'file' && (await stat(target.path)).size === 0) return undefined;
  return cutSource(target.ownSource?.() ?? (await openSource(path)), sizeBytes);
}

/**
 * The block tokens of a snapshot, asked for in ascending block order: a
 * ListSnapshotBlocks listing from the first block asked for, continued while
 * the blocks asked for follow on from what it has answered, started again
 * from the block asked for when they jump ahead.
 */
class SnapshotTokens {
  #pages: AsyncIterator<BlockPage<BlockRef>> | undefined;
  /** The listing has answered for blocks [#from, #to]: a block in there that #tokens lacks is not in the snapshot. */
  #from = 0;
  #to = -1;
  #tokens = new Map<number, string>();

  constructor(
    private readonly reader: SnapshotReader,
    private readonly snapshotId: string,
  ) {}

  /** The token of block `index`, undefined when the snapshot lacks it; lists on when the listing has not answered for it yet. Calls must not go backwards. */
  tokenOf(index: number): string | undefined | Promise<string | undefined> {
    return index >= this.#from && index <= this.#to ? this.#tokens.get(index) : this.#load(index);
  }

  async #load(index: number): Promise<string | undefined> {
    if (index !== this.#to + 1 || this.#pages === undefined) {
      await this.close();
      this.#pages = this.reader.listBlocks(this.snapshotId, { startingBlockIndex: index })[Symbol.asyncIterator]();
      this.#to = index - 1;
    }
    while (this.#to < index) {
      const next = await this.#pages!.next();
      if (next.done) {
        this.#pages = undefined;
        this.#from = this.#to + 1;
        this.#tokens = new Map();
        this.#to = Infinity;
        break;
      }
      const { blocks } = next.value;
      if (blocks.length === 0) continue;
      this.#from = this.#to + 1;
      this.#tokens = new Map(blocks.map((block) => [block.index, block.token]));
      this.#to = blocks.at(-1)!.index;
    }
    return this.#tokens.get(index);
  }

  /** Ends a listing still open. */
  async close(): Promise<void> {
    const pages = this.#pages;
    this.#pages = undefined;
    await pages?.return?.();
  }
}

async function writeSteps(
  deps: RestoreDeps,
  options: RestoreOptions,
  target: RestoreTarget,
  sizeBytes: number,
  changedFrom: string | null,
  walk: RestoreWalk,
  counts: RestoreCounts,
): Promise<void> {
  const tasks = new TaskWindow(options.window ?? 128);
  const totalBlocks = blockCountFor(sizeBytes);
  const report = () =>
    options.onProgress?.({
      phase: 'restore',
      totalBytes: sizeBytes,
      totalBlocks,
      blocksDone: counts.done,
      blocksListed: counts.listed,
      blocksFetched: counts.fetched,
      blocksHashed: counts.hashed,
      blocksDiffering: counts.differing,
      bytesWritten: counts.written,
    });
  const ticker = setInterval(report, 500);
  // Blocks below `passed` were either named by a step (counted when it settles) or need nothing (counted here).
  let passed = 0;
  const passTo = (index: number) => {
    const end = Math.min(index, totalBlocks);
    if (end > passed) counts.done += end - passed;
    passed = Math.max(passed, end);
  };

  const apply = async (step: RestoreStep) => {
    const position = step.index * BLOCK_SIZE;
    const length = Math.min(BLOCK_SIZE, sizeBytes - position);
    if (length <= 0) return;
    if (step.token === undefined) {
      await target.zero(position, length);
      counts.zeroed += 1;
    } else {
      const data = await fetchBlock(deps.reader, options.snapshotId, changedFrom, step);
      counts.fetched += 1;
      await target.write(data.subarray(0, length), position);
      counts.written += length;
    }
    counts.done += 1;
  };

  try {
    await tasks.run(async () => {
      for await (const item of walk) {
        throwIfAborted(options.signal);
        if ('walkedTo' in item) {
          passTo(item.walkedTo);
          continue;
        }
        const step = item;
        passTo(step.index);
        passed = Math.max(passed, step.index + 1);
        if (step.token !== undefined) counts.listed += 1;
        await tasks.add(() => apply(step));
      }
      passTo(totalBlocks);
    });
  } catch (err) {
    // Whatever stopped it, the target is now part old, part new: say so.
    const error = toSnaplineError(err);
    throw new SnaplineError(error.code, `${error.message}; ${target.path} is incomplete`, {
      retryable: error.retryable,
      hint: error.hint ?? 'run the restore again with --incremental to finish it: the target is hashed and only the blocks not yet right are fetched',
      details: error.details,
      cause: error.cause ?? err,
    });
  } finally {
    clearInterval(ticker);
    report();
  }
}

/**
 * Fetches one block. Block tokens expire: a token the service refuses is
 * replaced by listing again from that block, once.
 */
async function fetchBlock(reader: SnapshotReader, snapshotId: string, changedFrom: string | null, step: RestoreStep): Promise<Buffer> {
  try {
    return (await reader.getBlock(snapshotId, step.index, step.token!)).data;
  } catch (err) {
    if (!isSnaplineError(err, ErrorCodes.REMOTE_REJECTED) || err.details?.reason !== 'INVALID_BLOCK_TOKEN') throw err;
    const token = await freshToken(reader, snapshotId, changedFrom, step.index);
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
