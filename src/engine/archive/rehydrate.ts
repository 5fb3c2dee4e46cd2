/**
 * Rehydration: an archive chain back into a new EBS snapshot, or straight
 * onto an image file or device. The pieces are reusable: openArchiveChain
 * (or loadArchiveChain without an index), chainAggregate, and
 * applyArchiveRange, which writes one block range of a chain into a pending
 * snapshot someone else started and will complete (sharded restores).
 */
import { resolve } from 'node:path';
import { throwIfAborted } from '../../core/abort.js';
import { LinearAggregate, ZERO_BLOCK_DIGEST, checksumOf } from '../../core/checksum.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { SnapshotCatalog, SnapshotStatus, SnapshotWriter } from '../../core/ports.js';
import { TaskWindow } from '../../core/task-window.js';
import { ErrorCodes, SnaplineError, toSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { HeldLock, IndexPorts } from '../../core/index-ports.js';
import { SlabPool, isNbdUrl, parseNbdUrl, type Slab } from '../../source/index.js';
import { openTarget, type RestoreTarget } from '../../target/index.js';
import { hex } from './format.js';
import {
  openArchiveChain,
  readObjectRange,
  planBlocks,
  wholeSpan,
  type ArchiveChain,
  type BlockSpan,
  type PlanEntry,
} from './chain.js';
import { archiveLockName, chainOf, findArchive, type ArchivePlaces } from './places.js';
import { EC2_SETTLE_MS, UNCERTAIN_COMPLETION_WAIT_MS, completionMayHaveHappened, deleteStartedSnapshot, waitForSnapshot } from '../blocks/committer.js';
import { DEFAULT_SNAPSHOT_TIMEOUT_MINUTES, SOURCE_BYTES_TAG, VOLUME_TAG } from '../blocks/remote-snapshot.js';

const MIB = 1024 * 1024;
/** Blocks are fetched by 8 MiB windows of a segment (16 blocks; a power of two, so a window is one tree-hash-aligned range). */
const RANGE_BYTES = 8 * MIB;
/** The tag a rehydrated snapshot carries: the archive it came from. */
export const ARCHIVE_TAG = 'snapline:archive';
const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);

/** A block to write: from the plan, or a gap of a device that becomes zeros. */
export type PlannedBlock = PlanEntry | { index: number; zero: true };

/** Where rehydrated blocks go. */
export interface BlockSink {
  /** Writes a block whose bytes matched `digest`. `data` is only valid until the promise settles. */
  write(index: number, data: Uint8Array, digest: Buffer): Promise<void>;
  /** An all-zero block of the snapshot. */
  zero(index: number): Promise<void>;
}

export interface ApplyOptions {
  /** Ranged downloads at once (default 8; memory: this many times 8 MiB). */
  downloads?: number;
  /** The blocks the plan covers: those it has no entry for count as passed (progress only). */
  span?: BlockSpan;
  signal?: AbortSignal;
  onProgress?: (progress: ApplyProgress) => void;
}

export interface ApplyProgress {
  blocksPlanned: number;
  blocksWritten: number;
  bytesDownloaded: number;
  /** Blocks of the span (ApplyOptions.span) the plan has walked past with no entry: nothing to write there. */
  blocksPassed: number;
}

export interface ApplyResult extends ApplyProgress {
  zeroBlocks: number;
  /** Ranged downloads made (each one checked). */
  ranges: number;
}

/** Whether a rehydrated snapshot gets a block written: not an all-zero one of an unencrypted snapshot (it reads as zeros unwritten). */
export function writesBlock(entry: { zero: boolean }, encrypted: boolean): boolean {
  return !entry.zero || encrypted;
}

/**
 * The ChangedBlocksCount and LINEAR aggregate that CompleteSnapshot needs for
 * a snapshot rehydrated from the whole chain (blocks as writesBlock says),
 * from the manifests' block tables alone: no block data is read.
 */
export async function chainAggregate(
  deps: { hashPool: HashPool },
  chain: ArchiveChain,
  options: { encrypted?: boolean; signal?: AbortSignal } = {},
): Promise<{ changedBlocksCount: number; aggregateChecksum: string }> {
  const encrypted = options.encrypted ?? chain.snapshot.encrypted;
  const aggregate = new LinearAggregate();
  for await (const entry of planBlocks(chain, deps.hashPool, wholeSpan(chain), options.signal)) {
    if (writesBlock(entry, encrypted)) aggregate.add(entry.index, entry.digest);
  }
  return { changedBlocksCount: aggregate.count, aggregateChecksum: aggregate.digest() };
}

/**
 * Writes the blocks of `span` of the chain's snapshot into the pending
 * snapshot `snapshotId` (started by the caller with the chain's volume size
 * and encryption; the caller completes it, see chainAggregate). Every ranged
 * download is checked against the store's tree hash and every block against
 * its SHA-256 before it is written. Idempotent: running a span again writes
 * the same bytes. Spans of one chain may run at once, in any processes.
 */
export async function applyArchiveRange(
  deps: { hashPool: HashPool; writer: SnapshotWriter },
  chain: ArchiveChain,
  snapshotId: string,
  span: BlockSpan,
  options: ApplyOptions & { encrypted?: boolean } = {},
): Promise<ApplyResult> {
  return applyPlan(deps.hashPool, planBlocks(chain, deps.hashPool, span, options.signal), snapshotSink(deps.writer, snapshotId, options.encrypted ?? chain.snapshot.encrypted), options);
}

/** The sink of a pending snapshot: zero blocks are written only when it is encrypted (see writesBlock). */
export function snapshotSink(writer: SnapshotWriter, snapshotId: string, encrypted: boolean): BlockSink {
  const zeroChecksum = checksumOf(ZERO_BLOCK_DIGEST);
  return {
    write: (index, data, digest) => writer.putBlock(snapshotId, index, data, checksumOf(digest)),
    zero: async (index) => {
      if (encrypted) await writer.putBlock(snapshotId, index, ZERO_BLOCK, zeroChecksum);
    },
  };
}

/**
 * Fetches the bytes of a plan in megabyte-aligned ranges (consecutive blocks
 * of one segment share a range), several ranges at once, checks each range's
 * tree hash when the store sends one and each block's SHA-256 (both in the
 * worker pool), and hands the blocks to the sink. The first failure stops it
 * (after the ranges in flight settle).
 */
export async function applyPlan(hashPool: HashPool, plan: AsyncIterable<PlannedBlock>, sink: BlockSink, options: ApplyOptions = {}): Promise<ApplyResult> {
  const downloads = options.downloads ?? 8;
  const slabs = new SlabPool({ slabCount: downloads, blocksPerSlab: RANGE_BYTES / BLOCK_SIZE });
  const tasks = new TaskWindow(downloads);
  const result: ApplyResult = { blocksPlanned: 0, blocksWritten: 0, bytesDownloaded: 0, blocksPassed: 0, zeroBlocks: 0, ranges: 0 };
  const report = () =>
    options.onProgress?.({ blocksPlanned: result.blocksPlanned, blocksWritten: result.blocksWritten, bytesDownloaded: result.bytesDownloaded, blocksPassed: result.blocksPassed });
  // The plan is ascending: the span's blocks below `walked` that it had no entry for are passed.
  let walked = options.span?.fromBlock ?? 0;
  const passTo = (index: number) => {
    const end = Math.min(index, options.span?.toBlock ?? 0);
    if (end > walked) {
      result.blocksPassed += end - walked;
      walked = end;
    }
  };
  const ticker = setInterval(report, 500);

  const fetchGroup = async (group: PlanEntry[], slab: Slab): Promise<void> => {
    try {
      const first = group[0]!;
      const last = group.at(-1)!;
      const { segment, member } = first;
      const start = Math.floor(first.offset / MIB) * MIB;
      const end = Math.min(Math.ceil((last.offset + BLOCK_SIZE) / MIB) * MIB, segment.sizeBytes);
      const data = await readObjectRange(hashPool, member, segment, start, end);
      result.ranges += 1;
      result.bytesDownloaded += data.byteLength;
      slab.bytes.set(data);
      const blocks = (last.offset - start) / BLOCK_SIZE + 1;
      const { digests } = await hashPool.hashBlocks(slab.buffer, 0, blocks, options.signal);
      for (const entry of group) {
        const at = (entry.offset - start) / BLOCK_SIZE;
        if (!Buffer.from(digests.buffer, digests.byteOffset + 32 * at, 32).equals(entry.digest)) {
          throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `block ${entry.index} read from ${segment.ref} does not match its SHA-256 in the block table`, {
            details: { object: segment.ref, blockIndex: entry.index, expected: hex(entry.digest), actual: hex(digests.subarray(32 * at, 32 * at + 32)) },
          });
        }
      }
      // Every write settles before the slab is let go (and before a failure is told), so none runs on behind the caller.
      const writes = await Promise.allSettled(
        group.map(async (entry) => {
          const at = entry.offset - start;
          await sink.write(entry.index, slab.bytes.subarray(at, at + BLOCK_SIZE), entry.digest);
          result.blocksWritten += 1;
        }),
      );
      const failed = writes.find((write) => write.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    } finally {
      slab.release();
    }
  };

  let group: PlanEntry[] = [];
  const flush = async () => {
    if (group.length === 0) return;
    const taken = group;
    group = [];
    const slab = await slabs.acquire(options.signal);
    await tasks.add(() => fetchGroup(taken, slab)).catch((err: unknown) => {
      slab.release();
      throw err;
    });
  };
  try {
    await tasks.run(async () => {
      for await (const entry of plan) {
        throwIfAborted(options.signal);
        result.blocksPlanned += 1;
        passTo(entry.index);
        walked = Math.max(walked, entry.index + 1);
        if (!('segment' in entry) || entry.zero) {
          await tasks.add(async () => {
            await sink.zero(entry.index);
            result.zeroBlocks += 1;
            result.blocksWritten += 1;
          });
          continue;
        }
        const head = group[0];
        const joins =
          head !== undefined &&
          head.segment === entry.segment &&
          entry.offset > group.at(-1)!.offset &&
          Math.floor(entry.offset / RANGE_BYTES) === Math.floor(head.offset / RANGE_BYTES);
        if (!joins) await flush();
        group.push(entry);
      }
      await flush();
      if (options.span !== undefined) passTo(options.span.toBlock);
    });
  } finally {
    clearInterval(ticker);
    report();
  }
  return result;
}

// ---- the rehydrate command ---------------------------------------------------

export interface RehydrateDeps {
  index: Pick<IndexPorts, 'archives' | 'locks' | 'targets'>;
  writer: SnapshotWriter;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  archives: ArchivePlaces;
}

export interface RehydrateOptions {
  /** Archive id, or a snapshot id with one archive. */
  archive: string;
  /** Write a new EBS snapshot. */
  toSnapshot?: boolean;
  /** Write straight onto this image file or block device. */
  toFile?: string;
  /** Overwrite an existing non-empty file. */
  force?: boolean;
  downloads?: number;
  /** Give up waiting for the snapshot to complete after this long. */
  waitTimeoutMs?: number;
  signal?: AbortSignal;
  /** `totalBlocks`: the volume's blocks; blocksWritten + blocksPassed reaches it at the end. */
  onProgress?: (progress: ApplyProgress & { totalBlocks: number }) => void;
}

export interface RehydrateResult {
  archiveId: string;
  /** The archives applied, oldest (full) first. */
  chain: string[];
  /** The snapshot archived. */
  sourceSnapshotId: string;
  volume: string;
  sizeBytes: number;
  /** The new snapshot (--to-snapshot). */
  snapshotId: string | null;
  /** The image or device written (--to-file). */
  target: string | null;
  blocksWritten: number;
  zeroBlocks: number;
  bytesDownloaded: number;
  ranges: number;
  durationMs: number;
}

/**
 * Brings an archive back: its chain applied in order into a new snapshot
 * (completed with the aggregate the block tables give, then watched until
 * EC2 shows it completed, so it can be read as soon as this returns), or onto a file or device (marked incomplete in the index while
 * it is written). BAD_STATE when an object is not readable yet. The chain's
 * archives are locked meanwhile (see holdChain).
 */
export async function rehydrate(deps: RehydrateDeps, options: RehydrateOptions): Promise<RehydrateResult> {
  const started = Date.now();
  if (Boolean(options.toSnapshot) === (options.toFile !== undefined)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'give exactly one of toSnapshot and toFile IMAGE', { details: { option: 'toSnapshot', otherOptions: ['toFile'] } });
  }
  throwIfAborted(options.signal);
  const locks = holdChain(deps.index, options.archive);
  try {
    return await rehydrateHeld(deps, options, started);
  } finally {
    for (const lock of locks) lock.release();
  }
}

/**
 * Takes the lock of every archive of the chain (the one archive create and
 * delete take, and prune looks for), so that none of them is deleted while
 * it is read. CONFLICT when another run holds one.
 */
function holdChain(index: RehydrateDeps['index'], archive: string): HeldLock[] {
  const locks: HeldLock[] = [];
  try {
    for (const record of chainOf(index, findArchive(index, archive))) locks.push(index.locks.acquire(archiveLockName(record.target, record.location, record.snapshotId)));
  } catch (err) {
    for (const lock of locks) lock.release();
    throw err;
  }
  return locks;
}

async function rehydrateHeld(deps: RehydrateDeps, options: RehydrateOptions, started: number): Promise<RehydrateResult> {
  const chain = await openArchiveChain(deps, options.archive);
  const newest = chain.members.at(-1)!.manifest;
  // Progress counts the volume's blocks: written (zeros too) or passed with nothing to write.
  const span = wholeSpan(chain);
  const totalBlocks = span.toBlock - span.fromBlock;
  const applyOptions: ApplyOptions = {
    downloads: options.downloads,
    span,
    signal: options.signal,
    onProgress: (p) => options.onProgress?.({ ...p, totalBlocks }),
  };
  const base = {
    archiveId: newest.archiveId,
    chain: chain.members.map((m) => m.manifest.archiveId),
    sourceSnapshotId: chain.snapshot.snapshotId,
    volume: chain.snapshot.volume,
    sizeBytes: chain.snapshot.sourceBytes,
  };
  if (options.toSnapshot) {
    const { snapshotId, applied } = await rehydrateToSnapshot(deps, chain, options, applyOptions);
    return { ...base, snapshotId, target: null, ...counts(applied), durationMs: Date.now() - started };
  }
  const { target, applied } = await rehydrateToFile(deps, chain, options.toFile!, Boolean(options.force), applyOptions);
  return { ...base, snapshotId: null, target, ...counts(applied), durationMs: Date.now() - started };
}

function counts(applied: ApplyResult) {
  return { blocksWritten: applied.blocksWritten, zeroBlocks: applied.zeroBlocks, bytesDownloaded: applied.bytesDownloaded, ranges: applied.ranges };
}

async function rehydrateToSnapshot(
  deps: RehydrateDeps,
  chain: ArchiveChain,
  options: RehydrateOptions,
  applyOptions: ApplyOptions,
): Promise<{ snapshotId: string; applied: ApplyResult }> {
  const { snapshot } = chain;
  const archiveId = chain.members.at(-1)!.manifest.archiveId;
  // Until EC2_SETTLE_MS after its start, a snapshot EC2 does not list is not listed yet, not gone.
  const startedAt = Date.now();
  const listedBy = startedAt + EC2_SETTLE_MS;
  const started = await deps.writer.startSnapshot({
    volumeSizeGiB: snapshot.volumeSizeGiB,
    encrypted: snapshot.encrypted || undefined,
    description: `rehydrated by snapline from archive ${archiveId} of ${snapshot.snapshotId}`,
    tags: { [VOLUME_TAG]: snapshot.volume, [SOURCE_BYTES_TAG]: String(snapshot.sourceBytes), [ARCHIVE_TAG]: archiveId },
    // As a backup's: reads of the archive that stall (a slow or throttled store) must not get the snapshot cancelled (60 minutes by default).
    timeoutMinutes: DEFAULT_SNAPSHOT_TIMEOUT_MINUTES,
  });
  const snapshotId = started.snapshotId;
  // The aggregate is built from the plan's digests in block order while the blocks are written.
  const aggregate = new LinearAggregate();
  const plan = async function* () {
    for await (const entry of planBlocks(chain, deps.hashPool, wholeSpan(chain), options.signal)) {
      if (writesBlock(entry, snapshot.encrypted)) aggregate.add(entry.index, entry.digest);
      yield entry;
    }
  };
  let applied: ApplyResult;
  try {
    applied = await applyPlan(deps.hashPool, plan(), snapshotSink(deps.writer, snapshotId, snapshot.encrypted), applyOptions);
  } catch (err) {
    throw await withUnfinishedSnapshotDeleted(deps.catalog, snapshotId, startedAt, err, false);
  }
  let status: SnapshotStatus = 'pending';
  let uncertain: SnaplineError | undefined;
  try {
    status = await deps.writer.completeSnapshot(snapshotId, aggregate.count, aggregate.digest());
  } catch (err) {
    // A failure that leaves open whether the completion was taken (a lost answer, then a refused retry): the snapshot may complete,
    // so its outcome is read from EC2 as a backup's committer reads it, and it is never deleted while it may complete.
    if (!completionMayHaveHappened(err)) throw await withUnfinishedSnapshotDeleted(deps.catalog, snapshotId, startedAt, err, false);
    uncertain = err;
  }
  // Handed back only once EC2 shows it completed: the index does not record this snapshot, so a restore of it straight afterwards
  // finds it through EC2 alone (as would any other tool or index).
  try {
    if (status !== 'error') {
      const waitTimeoutMs = uncertain === undefined ? options.waitTimeoutMs : Math.min(options.waitTimeoutMs ?? Infinity, UNCERTAIN_COMPLETION_WAIT_MS);
      status = await waitForSnapshot(deps.catalog, snapshotId, { signal: options.signal, waitTimeoutMs, listedBy });
    }
  } catch (err) {
    throw notCompletedYet(snapshotId, err, uncertain);
  }
  if (status === 'error') {
    throw await withUnfinishedSnapshotDeleted(deps.catalog, snapshotId, startedAt, new SnaplineError(ErrorCodes.BAD_STATE, `the rehydrated snapshot ${snapshotId} ended in state error`), true);
  }
  return { snapshotId, applied };
}

/**
 * The error of a rehydrated snapshot EC2 does not show completed by the end
 * of the wait (`err`): it is left as it is, since it may still complete.
 * With `uncertain` (the CompleteSnapshot failure that left open whether it
 * was taken), a snapshot still pending at the end of the wait is reported
 * with that failure.
 */
function notCompletedYet(snapshotId: string, err: unknown, uncertain: SnaplineError | undefined): SnaplineError {
  const error = toSnaplineError(err);
  if (error.code === ErrorCodes.NOT_FOUND) return new SnaplineError(error.code, error.message, { cause: err, details: { ...error.details, snapshotId } });
  const stillPending = uncertain !== undefined && error.code === ErrorCodes.TIMEOUT;
  const reported = stillPending ? uncertain : error;
  const state =
    uncertain !== undefined
      ? `may still complete (whether its CompleteSnapshot was taken is not known yet): see it with aws ec2 describe-snapshots --snapshot-ids ${snapshotId}, and delete it with aws ec2 delete-snapshot --snapshot-id ${snapshotId} if it stays pending`
      : `is sealed and still completing: see it with aws ec2 describe-snapshots --snapshot-ids ${snapshotId}`;
  return new SnaplineError(reported.code, stillPending ? `${reported.message}; snapshot ${snapshotId} is still pending in EC2` : reported.message, {
    retryable: reported.retryable,
    hint: `the rehydrated snapshot ${snapshotId} ${state} (running the command again starts another one)`,
    cause: reported,
    details: { ...reported.details, snapshotId, unfinishedSnapshot: 'left' },
  });
}

/**
 * A rehydration to a snapshot cannot be resumed: when it fails (or is
 * interrupted) before its snapshot completes, the snapshot is deleted once
 * EC2 lists it (deleteStartedSnapshot; a call made after an abort still goes
 * out) and `err` comes back saying whether that worked. `inError`: the
 * snapshot was sealed and ended in state error.
 * A snapshot whose completion may have been taken is never passed here (see
 * notCompletedYet). Never throws itself.
 */
async function withUnfinishedSnapshotDeleted(catalog: SnapshotCatalog, snapshotId: string, startedAt: number, err: unknown, inError: boolean): Promise<SnaplineError> {
  const error = toSnaplineError(err);
  const which = inError ? `the rehydrated snapshot ${snapshotId} (in state error)` : `the unfinished snapshot ${snapshotId}`;
  let unfinishedSnapshot: 'deleted' | 'left';
  let hint: string;
  try {
    await deleteStartedSnapshot(catalog, snapshotId, startedAt);
    unfinishedSnapshot = 'deleted';
    hint = `${which} was deleted`;
  } catch (deletion) {
    unfinishedSnapshot = 'left';
    hint = `${which} could not be deleted (${toSnaplineError(deletion).message}): delete it with aws ec2 delete-snapshot --snapshot-id ${snapshotId}`;
  }
  return new SnaplineError(error.code, error.message, {
    retryable: error.retryable,
    hint: error.hint === undefined ? hint : `${error.hint}; ${hint}`,
    cause: err,
    details: { ...error.details, snapshotId, unfinishedSnapshot },
  });
}

async function rehydrateToFile(
  deps: RehydrateDeps,
  chain: ArchiveChain,
  path: string,
  force: boolean,
  applyOptions: ApplyOptions,
): Promise<{ target: string; applied: ApplyResult }> {
  // An NBD export is known by its canonical URL and opened by the URL as given.
  const targetPath = isNbdUrl(path) ? parseNbdUrl(path).url : resolve(path);
  const sizeBytes = chain.snapshot.sourceBytes;
  const lock = deps.index.locks.acquire(`target:${targetPath}`);
  try {
    const incomplete = () => deps.index.targets.set({ path: targetPath, snapshotId: null, state: 'incomplete', sizeBytes });
    // As a restore's: the index's own files are refused, and the index stops claiming the file before it is truncated.
    const target = await openTarget(isNbdUrl(path) ? path : targetPath, { sizeBytes, force, reserved: deps.index.targets.ownFiles(), beforeTruncate: incomplete });
    let applied: ApplyResult;
    try {
      incomplete();
      applied = await applyPlan(deps.hashPool, withGaps(planBlocks(chain, deps.hashPool, wholeSpan(chain), applyOptions.signal), target, sizeBytes), fileSink(target, sizeBytes), applyOptions);
      await target.finish(sizeBytes);
    } catch (err) {
      const error = toSnaplineError(err);
      throw new SnaplineError(error.code, `${error.message}; ${targetPath} is incomplete`, {
        retryable: error.retryable,
        hint: error.hint ?? 'run the rehydrate again (with --force) to finish it',
        details: error.details,
        cause: error.cause ?? err,
      });
    } finally {
      await target.close();
    }
    // The image now holds the archived snapshot: a later `restore --incremental` may build on it while that snapshot exists.
    deps.index.targets.set({ path: targetPath, snapshotId: chain.snapshot.snapshotId, state: 'complete', sizeBytes });
    return { target: targetPath, applied };
  } finally {
    lock.release();
  }
}

/** Blocks of a file or device, clipped at its size; zero blocks become zeros where the target is not fresh. */
function fileSink(target: RestoreTarget, sizeBytes: number): BlockSink {
  const lengthAt = (index: number) => Math.min(BLOCK_SIZE, sizeBytes - index * BLOCK_SIZE);
  return {
    write: async (index, data) => {
      const length = lengthAt(index);
      if (length > 0) await target.write(data.subarray(0, length), index * BLOCK_SIZE);
    },
    zero: async (index) => {
      const length = lengthAt(index);
      if (length > 0 && target.kind === 'device') await target.zero(index * BLOCK_SIZE, length);
    },
  };
}

/** On a device, the blocks the snapshot lacks are zeroed too (a new file reads as zeros already). */
async function* withGaps(plan: AsyncIterable<PlanEntry>, target: RestoreTarget, sizeBytes: number): AsyncGenerator<PlannedBlock> {
  if (target.kind !== 'device') {
    yield* plan;
    return;
  }
  const blocks = Math.ceil(sizeBytes / BLOCK_SIZE);
  let next = 0;
  for await (const entry of plan) {
    for (; next < Math.min(entry.index, blocks); next += 1) yield { index: next, zero: true };
    next = entry.index + 1;
    yield entry;
  }
  for (; next < blocks; next += 1) yield { index: next, zero: true };
}
