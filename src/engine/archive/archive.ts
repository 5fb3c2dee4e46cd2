import { randomBytes } from 'node:crypto';
import { throwIfAborted } from '../../core/abort.js';
import { DEFAULT_SEGMENT_BLOCKS, DEFAULT_STORAGE_CLASS } from '../../core/archive-options.js';
import { ZERO_BLOCK_DIGEST, digestOf } from '../../core/checksum.js';
import { BLOCK_SIZE, GIB } from '../../core/constants.js';
import type { ArchiveStore, ArchiveTarget, SnapshotCatalog, SnapshotReader } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { ArchiveRecord, IndexPorts } from '../../core/index-ports.js';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  ENTRY_BYTES,
  MANIFEST_NAME,
  TRAILER_BYTES,
  addToRuns,
  encodeManifest,
  encodeTableAndTrailer,
  s3Prefix,
  segmentName,
  type ArchiveManifest,
  type ArchivedSnapshot,
  type ManifestSegment,
  type TableEntry,
} from './format.js';
import { ARCHIVE_STORAGE_CLASSES, archiveLockName, checkTarget, remoteName, storeOf, type ArchivePlaces } from './places.js';
import { ObjectUpload } from './upload.js';
import type { SettleWait } from '../blocks/committer.js';
import { completedSnapshot, taggedSourceBytes, VOLUME_TAG, type SettleOptions } from '../blocks/remote-snapshot.js';

export interface ArchiveDeps {
  index: Pick<IndexPorts, 'archives' | 'lineage' | 'locks'>;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  archives: ArchivePlaces;
}

export interface ArchiveCreateOptions {
  snapshotId: string;
  /** s3 or glacier; default from the connection (a bucket before a vault). */
  to?: ArchiveTarget;
  /** S3 storage class; default the connection's, else DEEP_ARCHIVE. */
  storageClass?: string;
  /** Store only the blocks changed since the volume's newest archive at the same place. */
  incremental?: boolean;
  /** Make the S3 bucket when it does not exist (else a missing bucket or vault is refused before anything is read). */
  createBucket?: boolean;
  /** Blocks per segment (default 2048, 1 GiB). */
  segmentBlocks?: number;
  /** Blocks read at once (default 64). */
  window?: number;
  /** Parts uploading at once per object (default 4). */
  partsInFlight?: number;
  signal?: AbortSignal;
  onProgress?: (progress: ArchiveProgress) => void;
  /** Told while EC2 does not show the snapshot completed yet (see completedSnapshot). */
  onSettling?: (wait: SettleWait) => void;
}

export interface ArchiveProgress {
  archiveId: string;
  blocksListed: number;
  blocksArchived: number;
  segmentsDone: number;
  bytesUploaded: number;
}

export interface ArchiveCreateResult {
  archiveId: string;
  target: ArchiveTarget;
  /** Bucket or vault. */
  location: string;
  /** True when this run made the bucket (createBucket). */
  locationCreated: boolean;
  snapshotId: string;
  volume: string;
  incremental: boolean;
  parentArchiveId: string | null;
  storageClass: string | null;
  manifestRef: string;
  /** Tree hash (hex) of the manifest. */
  treeHash: string;
  segments: number;
  /** Blocks stored (all-zero ones take no bytes). */
  blocks: number;
  zeroBlocks: number;
  /** Blocks of the parent's snapshot this one lacks (incremental). */
  removedBlocks: number;
  /** Bytes of all the archive's objects. */
  sizeBytes: number;
  /** Bytes sent in this run (less than sizeBytes when resumed). */
  bytesUploaded: number;
  resumed: boolean;
  durationMs: number;
}

/** One block of the listing that goes into a segment. */
interface Listed {
  index: number;
  token: string;
}

/**
 * Archives a completed snapshot: reads its blocks (or, incrementally, only
 * those changed since the volume's newest archive at the same place) many at
 * a time with verified checksums, writes them into segments with their block
 * tables, then the manifest, and records the archive in the index once the
 * manifest is stored. Resumes the snapshot's unfinished archive at that place
 * (same options): stored segments are skipped, a segment's multipart upload
 * continues with the parts the service lacks. The bucket or vault is checked
 * first: a missing one is NOT_FOUND before anything is read, or, with
 * createBucket, a missing bucket is made.
 */
export async function createArchive(deps: ArchiveDeps, options: ArchiveCreateOptions): Promise<ArchiveCreateResult> {
  const started = Date.now();
  throwIfAborted(options.signal);
  const target = checkTarget(options.to, deps.archives);
  const storageClass = storageClassFor(target, options.storageClass, deps.archives.storageClass);
  const segmentBlocks = options.segmentBlocks ?? DEFAULT_SEGMENT_BLOCKS;
  if (!Number.isSafeInteger(segmentBlocks) || segmentBlocks < 1 || segmentBlocks > 1 << 20) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `segmentBlocks must be a whole number from 1 to ${1 << 20}, got ${segmentBlocks}`);
  }
  const store = deps.archives.store(target);
  const locationCreated = await ensureLocation(store, options.createBucket ?? false);
  const snapshot = await archivedSnapshotOf(deps, options.snapshotId, options);
  const lock = deps.index.locks.acquire(archiveLockName(target, store.location, snapshot.snapshotId));
  try {
    const { record, resumed } = beginOrResume(deps, options, target, store.location, storageClass, segmentBlocks, snapshot);
    return { ...(await writeArchive(deps, options, record, snapshot, resumed, started)), locationCreated };
  } finally {
    lock.release();
  }
}

/** NOT_FOUND when the bucket or vault does not exist, unless `createBucket` may make it (S3): then true. */
async function ensureLocation(store: ArchiveStore, createBucket: boolean): Promise<boolean> {
  if (createBucket && store.createLocation === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'createBucket applies to S3; a Glacier vault is made with the AWS tools', { details: { option: 'createBucket' } });
  }
  if (await store.locationExists()) return false;
  if (!createBucket || store.createLocation === undefined) {
    const s3 = store.target === 's3';
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `${s3 ? 'bucket' : 'vault'} ${store.location} does not exist`, {
      details: { target: store.target, location: store.location },
      hint: s3 ? 'add --create-bucket to make it, or name an existing bucket with --bucket' : 'name an existing vault with --vault',
    });
  }
  await store.createLocation();
  return true;
}

function storageClassFor(target: ArchiveTarget, flag: string | undefined, configured: string | undefined): string | null {
  if (target === 'glacier') {
    if (flag !== undefined) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'storageClass applies to S3 only; a Glacier vault has no storage classes', { details: { option: 'storageClass' } });
    }
    return null;
  }
  const storageClass = flag ?? configured ?? DEFAULT_STORAGE_CLASS;
  if (!ARCHIVE_STORAGE_CLASSES.includes(storageClass)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `storageClass must be one of ${ARCHIVE_STORAGE_CLASSES.join(', ')}, got "${storageClass}"`, {
      details: { option: 'storageClass' },
    });
  }
  return storageClass;
}

/** The snapshot's metadata: from the index when it knows it, else from EC2 and snapline's tags. */
async function archivedSnapshotOf(deps: ArchiveDeps, snapshotId: string, settle: SettleOptions): Promise<ArchivedSnapshot> {
  const remote = await completedSnapshot(deps, snapshotId, settle);
  const known = deps.index.lineage.getSnapshot(snapshotId);
  return {
    snapshotId,
    volume: known?.volume ?? remote.tags[VOLUME_TAG] ?? snapshotId,
    volumeSizeGiB: remote.volumeSizeGiB,
    sourceBytes: known?.sourceBytes ?? taggedSourceBytes(remote) ?? remote.volumeSizeGiB * GIB,
    encrypted: remote.encrypted,
    description: remote.description ?? known?.description ?? null,
    startTime: (remote.startTime ?? known?.startedAt)?.toISOString() ?? null,
  };
}

function beginOrResume(
  deps: ArchiveDeps,
  options: ArchiveCreateOptions,
  target: ArchiveTarget,
  location: string,
  storageClass: string | null,
  segmentBlocks: number,
  snapshot: ArchivedSnapshot,
): { record: ArchiveRecord; resumed: boolean } {
  const { index } = deps;
  const existing = index.archives.live(target, location, snapshot.snapshotId);
  if (existing?.state === 'archived') {
    throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshot.snapshotId} is already archived in ${target} ${location} as ${existing.archiveId}`, {
      details: { archiveId: existing.archiveId },
      hint: `delete it with \`snapline archive delete ${existing.archiveId}\` to archive the snapshot again there`,
    });
  }
  if (existing !== undefined) {
    const sameOptions =
      existing.storageClass === storageClass &&
      existing.segmentBlocks === segmentBlocks &&
      (existing.parentArchiveId !== null) === Boolean(options.incremental);
    if (!sameOptions) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `archive ${existing.archiveId} of ${snapshot.snapshotId} is unfinished and was started with other options`, {
        details: { archiveId: existing.archiveId, storageClass: existing.storageClass, incremental: existing.parentArchiveId !== null },
        hint: `run it again with the options it began with (${existing.parentArchiveId !== null ? '--incremental, ' : ''}storage class ${existing.storageClass ?? 'none'})`,
      });
    }
    return { record: existing, resumed: true };
  }
  let parentArchiveId: string | null = null;
  if (options.incremental) {
    const parent = index.archives.latest(snapshot.volume, target, location);
    if (parent === undefined || parent.snapshotId === snapshot.snapshotId) {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `volume ${snapshot.volume} has no earlier archive in ${target} ${location} to build on`, {
        hint: 'archive it in full first (without --incremental)',
      });
    }
    parentArchiveId = parent.archiveId;
  }
  const archiveId = `ar-${randomBytes(8).toString('hex')}`;
  const prefix = target === 's3' ? s3Prefix(deps.archives.path, snapshot.volume, snapshot.snapshotId) : `${ARCHIVE_FORMAT}/${ARCHIVE_FORMAT_VERSION} ${archiveId}`;
  const record = index.archives.begin({
    archiveId,
    target,
    location,
    prefix,
    snapshotId: snapshot.snapshotId,
    volume: snapshot.volume,
    parentArchiveId,
    storageClass,
    segmentBlocks,
  });
  return { record, resumed: false };
}

async function writeArchive(
  deps: ArchiveDeps,
  options: ArchiveCreateOptions,
  record: ArchiveRecord,
  snapshot: ArchivedSnapshot,
  resumed: boolean,
  started: number,
): Promise<Omit<ArchiveCreateResult, 'locationCreated'>> {
  const { index } = deps;
  const store = storeOf(deps.archives, record);
  const parent = record.parentArchiveId === null ? undefined : index.archives.get(record.parentArchiveId);
  const stored = new Map(index.archives.objects(record.archiveId).map((o) => [o.name, o]));
  const progress: ArchiveProgress = { archiveId: record.archiveId, blocksListed: 0, blocksArchived: 0, segmentsDone: 0, bytesUploaded: 0 };
  const report = () => options.onProgress?.({ ...progress });
  const ticker = setInterval(report, 500);
  const removed: Array<[number, number]> = [];
  const segments: ManifestSegment[] = [];
  let zeroBlocks = 0;
  const window = options.window ?? 64;
  const partSize = store.partSizeFor(segmentBytesAtMost(record.segmentBlocks));
  const uploadOptions = {
    index,
    store,
    hashPool: deps.hashPool,
    archiveId: record.archiveId,
    partSize,
    objectOptions: record.storageClass === null ? {} : { storageClass: record.storageClass },
    partsInFlight: options.partsInFlight ?? 4,
    signal: options.signal,
    onUploaded: (bytes: number) => {
      progress.bytesUploaded += bytes;
    },
  };

  const writeSegment = async (ordinal: number, blocks: Listed[]): Promise<void> => {
    const name = segmentName(ordinal);
    const done = stored.get(name);
    if (done?.entry) {
      const entry = JSON.parse(done.entry) as ManifestSegment;
      segments.push(entry);
      zeroBlocks += entry.blockCount - entry.dataBytes / BLOCK_SIZE;
      progress.segmentsDone += 1;
      return;
    }
    const upload = new ObjectUpload({ ...uploadOptions, name, remoteName: remoteName(record, name) });
    try {
      const entries: TableEntry[] = [];
      let dataBytes = 0;
      for await (const block of readInOrder(deps.reader, snapshot.snapshotId, blocks, window)) {
        throwIfAborted(options.signal);
        const digest = digestOf(block.checksum);
        const zero = digest.equals(ZERO_BLOCK_DIGEST);
        entries.push({ index: block.index, zero, offset: zero ? 0 : dataBytes, digest });
        if (zero) {
          zeroBlocks += 1;
        } else {
          await upload.write(block.data);
          dataBytes += BLOCK_SIZE;
        }
        progress.blocksArchived += 1;
      }
      const { bytes, tableSha256 } = encodeTableAndTrailer(entries, dataBytes);
      await upload.write(bytes);
      const object = await upload.finish();
      const entry: ManifestSegment = {
        name,
        ref: object.ref,
        sizeBytes: object.sizeBytes,
        treeHash: object.treeHash,
        firstBlock: blocks[0]!.index,
        lastBlock: blocks.at(-1)!.index,
        blockCount: entries.length,
        dataBytes,
        tableOffset: dataBytes,
        tableBytes: entries.length * ENTRY_BYTES,
        tableSha256,
      };
      index.archives.recordObject(record.archiveId, { name, ref: object.ref, sizeBytes: object.sizeBytes, treeHash: object.treeHash, entry: JSON.stringify(entry) });
      segments.push(entry);
      progress.segmentsDone += 1;
    } catch (err) {
      await upload.discard();
      throw err;
    }
  };

  try {
    let batch: Listed[] = [];
    for await (const item of listing(deps.reader, snapshot.snapshotId, parent?.snapshotId)) {
      throwIfAborted(options.signal);
      progress.blocksListed += 1;
      if (item.token === undefined) {
        addToRuns(removed, item.index);
        continue;
      }
      batch.push({ index: item.index, token: item.token });
      if (batch.length === record.segmentBlocks) {
        await writeSegment(segments.length, batch);
        batch = [];
      }
    }
    if (batch.length > 0) await writeSegment(segments.length, batch);

    const manifest: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      version: ARCHIVE_FORMAT_VERSION,
      archiveId: record.archiveId,
      createdAt: record.createdAt.toISOString(),
      target: record.target,
      location: record.location,
      snapshot,
      blockSize: BLOCK_SIZE,
      parent: parent === undefined ? null : { archiveId: parent.archiveId, snapshotId: parent.snapshotId, manifestRef: parent.manifestRef! },
      removed,
      blockCount: segments.reduce((sum, s) => sum + s.blockCount, 0),
      segmentBlocks: record.segmentBlocks,
      segments,
    };
    // A manifest stored before a crash is kept: a second one would be a second Glacier archive.
    let manifestObject = stored.get(MANIFEST_NAME);
    if (manifestObject === undefined) {
      const bytes = encodeManifest(manifest);
      const upload = new ObjectUpload({ ...uploadOptions, partSize: store.partSizeFor(bytes.byteLength), name: MANIFEST_NAME, remoteName: remoteName(record, MANIFEST_NAME) });
      try {
        await upload.write(bytes);
        const object = await upload.finish();
        index.archives.recordObject(record.archiveId, { name: MANIFEST_NAME, ref: object.ref, sizeBytes: object.sizeBytes, treeHash: object.treeHash, entry: null });
        manifestObject = { ...object, name: MANIFEST_NAME, entry: null, restoreJob: null, restoreTier: null, restoreRequestedAt: null };
      } catch (err) {
        await upload.discard();
        throw err;
      }
    }
    const done = index.archives.complete(record.archiveId, { ref: manifestObject.ref, treeHash: manifestObject.treeHash, blockCount: manifest.blockCount });
    return {
      archiveId: done.archiveId,
      target: done.target,
      location: done.location,
      snapshotId: done.snapshotId,
      volume: done.volume,
      incremental: done.parentArchiveId !== null,
      parentArchiveId: done.parentArchiveId,
      storageClass: done.storageClass,
      manifestRef: manifestObject.ref,
      treeHash: manifestObject.treeHash,
      segments: segments.length,
      blocks: manifest.blockCount,
      zeroBlocks,
      removedBlocks: removed.reduce((sum, run) => sum + run[1], 0),
      sizeBytes: done.sizeBytes,
      bytesUploaded: progress.bytesUploaded,
      resumed,
      durationMs: Date.now() - started,
    };
  } finally {
    clearInterval(ticker);
    report();
  }
}

/** The most bytes a segment of `segmentBlocks` blocks can take. */
export function segmentBytesAtMost(segmentBlocks: number): number {
  return segmentBlocks * (BLOCK_SIZE + ENTRY_BYTES) + TRAILER_BYTES;
}

/**
 * The blocks to archive, ascending: every block of the snapshot, or the
 * blocks that differ from `since` (no token: the snapshot lacks the block).
 */
async function* listing(reader: SnapshotReader, snapshotId: string, since: string | undefined): AsyncGenerator<{ index: number; token?: string }> {
  if (since === undefined) {
    for await (const page of reader.listBlocks(snapshotId)) for (const block of page.blocks) yield block;
    return;
  }
  try {
    for await (const page of reader.listChangedBlocks(since, snapshotId)) {
      for (const block of page.blocks) yield block.secondToken === undefined ? { index: block.index } : { index: block.index, token: block.secondToken };
    }
  } catch (err) {
    if (isSnaplineError(err, ErrorCodes.NOT_FOUND) || isSnaplineError(err, ErrorCodes.REMOTE_REJECTED)) {
      throw new SnaplineError(err.code, `cannot list the blocks of ${snapshotId} changed since ${since}, the snapshot of the last archive: ${err.message}`, {
        hint: 'archive it in full (without --incremental)',
        cause: err,
        details: err.details,
      });
    }
    throw err;
  }
}

/**
 * Fetches blocks with up to `window` requests in flight and yields them in
 * the given order. On failure or early exit, waits for the requests in flight.
 */
async function* readInOrder(
  reader: SnapshotReader,
  snapshotId: string,
  blocks: readonly Listed[],
  window: number,
): AsyncGenerator<{ index: number; data: Buffer; checksum: string }> {
  const queue: Array<Promise<{ index: number; data: Buffer; checksum: string }>> = [];
  let next = 0;
  const fill = () => {
    while (queue.length < window && next < blocks.length) {
      const block = blocks[next++]!;
      const read = reader.getBlock(snapshotId, block.index, block.token).then((got) => ({ index: block.index, ...got }));
      read.catch(() => undefined);
      queue.push(read);
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const block = await queue.shift()!;
      fill();
      yield block;
    }
  } finally {
    await Promise.allSettled(queue);
  }
}
