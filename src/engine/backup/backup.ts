import { randomUUID } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { basename } from 'node:path';
import { throwIfAborted } from '../../core/abort.js';
import { TaskWindow } from '../../core/task-window.js';
import { ZERO_BLOCK_DIGEST, checksumOf } from '../../core/checksum.js';
import { BLOCKS_PER_GIB, BLOCK_SIZE, MAX_VOLUME_SIZE_GIB, blockCountFor, volumeSizeGiBFor } from '../../core/constants.js';
import type { RemoteSnapshot, SnapshotCatalog, SnapshotReader, SnapshotWriter, StartSnapshotInput } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts, SnapshotRecord } from '../../core/index-ports.js';
import { SlabPool, isNbdUrl, nbdVolumeName, openSource, parseNbdUrl, readChangedBlocksFile, zeroSlab, type BlockSource } from '../../source/index.js';
import { crashConsistentWarning, writableMountsOf } from '../../source/mounts.js';
import { BlockMapCursor, SortedBlockSet } from '../blocks/block-map.js';
import { EC2_SETTLE_MS, completeAndCommit, deleteStartedSnapshot, describeListed, settledBy } from '../blocks/committer.js';
import { JournalWriter, ResumeState } from './journal.js';
import { DEFAULT_SNAPSHOT_TIMEOUT_MINUTES, SOURCE_BYTES_TAG, VOLUME_TAG } from '../blocks/remote-snapshot.js';
import { DEFAULT_HASH_AHEAD, digestAt, scanSource, type HashedSlab } from '../blocks/scan.js';
import { checkTrackingOptions, planTracking, trackingIdentity, verifyUnchanged, type ChangeTrackingResult, type RandomSource, type TrackingPlan } from './tracking.js';
import { blockRangesSize, changedBlockRanges, type BlockRanges, type ChangedRanges } from '../../core/changed-ranges.js';

/** What a backup needs. Writer and reader come wrapped with retries and the upload limiter. */
export interface BackupDeps {
  index: Pick<IndexPorts, 'lineage' | 'locks' | 'maps' | 'runs' | 'trackers'>;
  writer: SnapshotWriter;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  slabs: SlabPool;
  /** Draws the --verify-unchanged sample; default: the operating system's cryptographic generator. */
  random?: RandomSource;
}

export interface BackupOptions {
  /** Image file, block device or NBD URL. */
  source: string;
  /** The lineage's name; default derived from the source's file name (an NBD export's name). */
  volume?: string;
  /** Build on this snapshot instead of the volume's newest completed one. */
  parent?: string;
  /** Start a new lineage: no parent, every non-zero block uploaded. */
  full?: boolean;
  description?: string;
  tags?: Record<string, string>;
  /** Encrypt a new lineage (a child always takes its parent's encryption). */
  encrypted?: boolean;
  /** The KMS key of a new lineage (--kms-key-id); an incremental run must name its lineage's key or none. */
  kmsKeyArn?: string;
  /** StartSnapshot Timeout in minutes (10..4320); default DEFAULT_SNAPSHOT_TIMEOUT_MINUTES. */
  timeoutMinutes?: number;
  /** Plan only: scan and report what would be uploaded; nothing is written anywhere. */
  dryRun?: boolean;
  /** Give up waiting for "completed" after this long; the run stays resumable. */
  waitTimeoutMs?: number;
  /** Abandon an unfinished run of this volume instead of resuming it. */
  discardPending?: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: BackupProgress) => void;
  /** Told of conditions the backup goes on despite, such as a source device mounted read-write, or a tracker it cannot use. */
  onWarning?: (message: string) => void;
  /**
   * Read only the blocks the NBD source's dirty bitmap of this name marks
   * (qemu:dirty-bitmap:NAME); the rest is the parent's. Used only when the
   * parent was recorded at the checkpoint the bitmap counts from (see
   * sinceCheckpoint); otherwise every block is read and onWarning says why.
   */
  dirtyBitmap?: string;
  /** Like dirtyBitmap, with the changed ranges read from a changed-blocks file (see source/changed-blocks.ts); any source. */
  changedBlocksFile?: string;
  /** The checkpoint the tracker counts changes from; it must be the one recorded with the parent. Default: the bitmap's name. */
  sinceCheckpoint?: string;
  /** The checkpoint this snapshot is taken at (a new bitmap, a libvirt checkpoint), recorded for the next run's tracker. */
  checkpoint?: string;
  /** Read this percentage (0..100) of the blocks the tracker calls unchanged and compare them with the parent first: TRACKER_UNTRUSTED on a difference. */
  verifyUnchangedPercent?: number;
}

export interface BackupProgress {
  /** verify: --verify-unchanged reads its sample (blocksSampled) before the scan. */
  phase: 'verify' | 'scan' | 'complete' | 'wait';
  volume: string;
  snapshotId?: string;
  sourceBytes: number;
  bytesScanned: number;
  blocksScanned: number;
  blocksChanged: number;
  blocksUploaded: number;
  bytesUploaded: number;
  /** In the verify phase: how many blocks the tracker calls unchanged are read and compared. */
  blocksSampled?: number;
}

export interface BackupResult {
  snapshotId: string | null;
  parentSnapshotId: string | null;
  volume: string;
  volumeSizeGiB: number;
  sourceBytes: number;
  blocksScanned: number;
  /** Blocks read from the source and hashed: holes, and blocks a tracker vouches for, are not read. */
  blocksRead: number;
  blocksChanged: number;
  blocksUploaded: number;
  blocksZeroSkipped: number;
  bytesUploaded: number;
  durationMs: number;
  /** Present when the run was given a tracker or a checkpoint. */
  changeTracking?: ChangeTrackingResult;
  /** True when an unfinished run was continued. */
  resumed: boolean;
  dryRun: boolean;
}

/** The run arguments that define a snapshot; a pending run resumes only with the same ones. */
interface RunIdentity {
  source: string;
  parent: string | null;
  full: boolean;
  encrypted: boolean;
  kmsKeyArn: string | null;
  description: string | null;
  tags: Record<string, string>;
  /** Present only when the run uses change tracking, so that runs without it keep their identity. */
  tracking?: Record<string, string | number>;
}

/**
 * The volume name used when none is given: the source's file name; for an
 * NBD export its export name (none for the server's default export:
 * INVALID_ARGUMENT asks for --volume).
 */
export function defaultVolumeName(sourcePath: string): string {
  if (isNbdUrl(sourcePath)) return nbdVolumeName(parseNbdUrl(sourcePath));
  return basename(sourcePath).replace(/[^A-Za-z0-9._-]/g, '_') || 'volume';
}

/**
 * Backs up one source to a new EBS snapshot, a child of the volume's newest
 * completed one, uploading only the blocks that changed. Resumes the volume's
 * unfinished run when started again with the same arguments. The index claims
 * the snapshot only once AWS says it is completed.
 */
export async function backup(deps: BackupDeps, options: BackupOptions): Promise<BackupResult> {
  const started = Date.now();
  throwIfAborted(options.signal);
  checkTrackingOptions(options);
  checkStartArguments(options);
  const source = await openSource(options.source, { dirtyBitmap: options.dirtyBitmap, signal: options.signal });
  try {
    // A file or device is known by its real path, an NBD export by its canonical URL.
    const sourcePath = source.kind === 'nbd' ? source.path : await realpath(options.source);
    const volume = options.volume ?? defaultVolumeName(sourcePath);
    checkVolumeName(volume);
    if (source.kind === 'device') {
      const mounts = await writableMountsOf(sourcePath);
      if (mounts.length > 0) options.onWarning?.(crashConsistentWarning(sourcePath, mounts));
    }
    const lock = options.dryRun ? undefined : deps.index.locks.acquire(`volume:${volume}`);
    try {
      return await runBackup(deps, options, source, sourcePath, volume, started);
    } finally {
      lock?.release();
    }
  } finally {
    await source.close();
  }
}

function checkVolumeName(volume: string): void {
  if (!/^[A-Za-z0-9._-]{1,128}$/.test(volume)) {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `volume "${volume}" is not a valid name: use 1 to 128 letters, digits, dots, dashes or underscores`,
      { details: { option: 'volume' } },
    );
  }
}

/** Tags StartSnapshot takes at most, snapline's own among them. */
const MAX_SNAPSHOT_TAGS = 50;
const OWN_TAGS = [VOLUME_TAG, SOURCE_BYTES_TAG];

/**
 * The description and tags as StartSnapshot takes them (EBS API Reference,
 * StartSnapshot: Description 1 to 255 characters; Tags at most 50, keys 1 to
 * 127 characters not starting with aws:, values up to 255), checked before
 * anything is read: the snapshot starts with the first block to upload.
 */
function checkStartArguments(options: BackupOptions): void {
  const { description, tags = {} } = options;
  if (description !== undefined && (description.length < 1 || description.length > 255)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `description must be 1 to 255 characters, got ${description.length}`, { details: { option: 'description' } });
  }
  const refuse = (why: string) => new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `tags: ${why}`, { details: { option: 'tags' } });
  for (const [key, value] of Object.entries(tags)) {
    if (key.length < 1 || key.length > 127) throw refuse(`a key is 1 to 127 characters, one has ${key.length}`);
    if (key.toLowerCase().startsWith('aws:')) throw refuse(`key "${key}" starts with aws:, which AWS reserves`);
    if (value.length > 255) throw refuse(`the value of "${key}" has ${value.length} characters, at most 255 are allowed`);
  }
  const count = new Set([...Object.keys(tags), ...OWN_TAGS]).size;
  if (count > MAX_SNAPSHOT_TAGS) {
    throw refuse(`a snapshot takes at most ${MAX_SNAPSHOT_TAGS} tags, ${OWN_TAGS.length} of them snapline's (${OWN_TAGS.join(', ')}): ${count - OWN_TAGS.length} given`);
  }
}

async function runBackup(
  deps: BackupDeps,
  options: BackupOptions,
  source: BlockSource,
  sourcePath: string,
  volume: string,
  started: number,
): Promise<BackupResult> {
  const { index } = deps;
  const known = index.lineage.getVolume(volume);
  // A volume filed by `index rebuild` without --source has no source yet: this one takes it.
  if (known && known.sourcePath !== '' && known.sourcePath !== sourcePath && !options.full) {
    throw new SnaplineError(
      ErrorCodes.CONFLICT,
      `volume "${volume}" is the lineage of ${known.sourcePath}, not of ${sourcePath}`,
      { hint: 'name this source with --volume, or pass --full to start a new lineage under this name' },
    );
  }
  const identity: RunIdentity = {
    source: sourcePath,
    parent: options.parent ?? null,
    full: Boolean(options.full),
    encrypted: Boolean(options.encrypted || options.kmsKeyArn),
    kmsKeyArn: options.kmsKeyArn ?? null,
    description: options.description ?? null,
    tags: options.tags ?? {},
  };
  const tracking = trackingIdentity(options);
  if (tracking !== undefined) identity.tracking = tracking;
  // Read (and validated against the source) before anything is started.
  const tracker: ChangedRanges | undefined =
    options.changedBlocksFile !== undefined ? await readChangedBlocksFile(options.changedBlocksFile, source.sizeBytes) : source.changedRanges;
  // The tracker is read (a dirty bitmap walked with block status requests) while the run is planned
  // (EC2 calls, the index), not after; planTracking takes the ranges once it knows it may use them.
  const trackerRanges = tracker === undefined ? undefined : changedBlockRanges(tracker.ranges(), source.sizeBytes);
  trackerRanges?.catch(() => undefined);

  // The hash threads start here (a session starts them on first use), so that their start-up
  // overlaps the planning's EC2 calls and the loading of the SDK instead of delaying the first read.
  void deps.hashPool;
  const run = options.dryRun ? undefined : await pendingRunToResume(deps, volume, identity, options, source);
  const resumed = run !== undefined;
  if (run?.state === 'completing') {
    // A crash came after the run was marked completing: seal it again and watch it to the end.
    const committed = await sealRun(deps, run.snapshotId, options, volume, source);
    return resultOf(committed, volume, source, started, { scanned: 0, read: 0, changed: 0, uploaded: 0, zeroSkipped: 0 }, true, false);
  }

  const plan = run ? await planFromRun(deps, run) : await planNewRun(deps, options, volume, source, sourcePath, identity);
  // A damaged map would pass for the parent's content (a lost row reads as a block never written): check it first.
  if (plan.base !== null) index.maps.verifyMap(plan.base);
  const encrypted = run ? run.encrypted : plan.encrypted;
  const resume = run ? ResumeState.load(index, run.snapshotId) : ResumeState.empty();
  const tracked = await planTracking(deps, volume, options, tracker, source, plan, resume.rewrites(), trackerRanges);
  if (tracked?.result.reason !== undefined) options.onWarning?.(`${tracked.result.tracker} is not used: ${tracked.result.reason}`);
  if (tracked?.ranges !== undefined && options.verifyUnchangedPercent !== undefined && options.verifyUnchangedPercent > 0) {
    tracked.result.blocksVerified = await verifyUnchanged(deps, source, plan.base!, tracked.ranges, options.verifyUnchangedPercent, tracker!.description, {
      signal: options.signal,
      onSampled: (blocks) => options.onProgress?.(verifyProgress(volume, source, blocks)),
    });
  }
  const snapshot = options.dryRun
    ? undefined
    : new RunSnapshot(run?.snapshotId, () => startRun(deps, options, volume, source, sourcePath, plan, identity));

  const counts = await scanAndUpload(deps, options, source, volume, plan, encrypted, snapshot, resume, tracked?.ranges);
  if (!snapshot) {
    return resultOf(null, volume, source, started, counts, false, true, plan, tracked);
  }
  // Nothing to upload: the snapshot starts now, as a child that holds its parent's blocks.
  const snapshotId = await snapshot.start();
  // Recorded before the completion: only a completed snapshot is ever a parent, and a crash from here on resumes at the completion.
  if (tracked !== undefined) recordTracking(index, snapshotId, tracker, tracked);
  const committed = await sealRun(deps, snapshotId, options, volume, source);
  return resultOf(committed, volume, source, started, counts, resumed, false, undefined, tracked);
}

/** The progress report of the --verify-unchanged phase: `blocks` sampled, nothing scanned yet. */
function verifyProgress(volume: string, source: BlockSource, blocks: number): BackupProgress {
  return {
    phase: 'verify',
    volume,
    sourceBytes: source.sizeBytes,
    bytesScanned: 0,
    blocksScanned: 0,
    blocksChanged: 0,
    blocksUploaded: 0,
    bytesUploaded: 0,
    blocksSampled: blocks,
  };
}

/** Files the tracker and checkpoints of the run's snapshot in the index (see index/trackers.ts). */
function recordTracking(index: Pick<IndexPorts, 'trackers'>, snapshotId: string, tracker: ChangedRanges | undefined, tracked: TrackingPlan): void {
  index.trackers.record({
    snapshotId,
    kind: tracker?.kind ?? null,
    name: tracker?.name ?? null,
    sinceCheckpoint: tracked.result.sinceCheckpoint,
    checkpoint: tracked.result.checkpoint,
    scan: tracked.result.scan,
    reason: tracked.result.reason ?? null,
  });
}

/**
 * The run's snapshot: a resumed run's, or one started on first need (the
 * first block to upload, or the end of a scan that found none). Concurrent
 * callers of start() share one start.
 */
class RunSnapshot {
  #id: string | undefined;
  #starting: Promise<string> | undefined;

  constructor(
    id: string | undefined,
    private readonly begin: () => Promise<SnapshotRecord>,
  ) {
    this.#id = id;
  }

  /** The snapshot id once started. */
  get id(): string | undefined {
    return this.#id;
  }

  start(): Promise<string> {
    if (this.#id !== undefined) return Promise.resolve(this.#id);
    this.#starting ??= this.begin().then((run) => (this.#id = run.snapshotId));
    return this.#starting;
  }
}

/**
 * StartSnapshot for a new run, then its record in the index. The run's
 * ClientToken is random and recorded in the index, with the exact
 * arguments, before StartSnapshot: only this run's resume (after a crash
 * between StartSnapshot and beginRun) sends it again, and gets the same
 * snapshot; another run, another index, or the same run after its snapshot
 * ended, never reuses a token.
 */
async function startRun(
  deps: BackupDeps,
  options: BackupOptions,
  volume: string,
  source: BlockSource,
  sourcePath: string,
  plan: Plan,
  identity: RunIdentity,
): Promise<SnapshotRecord> {
  const { index } = deps;
  index.lineage.ensureVolume({ name: volume, sourcePath, sizeBytes: source.sizeBytes });
  const input: StartSnapshotInput = {
    volumeSizeGiB: plan.volumeSizeGiB,
    ...(plan.parent === null ? {} : { parentSnapshotId: plan.parent }),
    ...(options.description === undefined ? {} : { description: options.description }),
    tags: { ...options.tags, [VOLUME_TAG]: volume, [SOURCE_BYTES_TAG]: String(source.sizeBytes) },
    // AWS refuses Encrypted or KmsKeyArn with a parent: a child takes its parent's encryption and key.
    ...(plan.parent === null && identity.encrypted ? { encrypted: true } : {}),
    ...(plan.parent === null && identity.kmsKeyArn !== null ? { kmsKeyArn: identity.kmsKeyArn } : {}),
    timeoutMinutes: options.timeoutMinutes ?? DEFAULT_SNAPSHOT_TIMEOUT_MINUTES,
  };
  const startInput = JSON.stringify(input);
  const runOptions = JSON.stringify(identity);
  const recorded = index.runs.runStart(volume);
  const resumedStart = recorded !== undefined && recorded.startInput === startInput && recorded.runOptions === runOptions;
  let clientToken = resumedStart ? recorded.clientToken : index.runs.recordRunStart({ volume, clientToken: newClientToken(), startInput, runOptions }).clientToken;
  const startedAt = Date.now();
  let started = await deps.writer.startSnapshot({ ...input, clientToken });
  if (started.status !== 'pending' && resumedStart) {
    // The crashed run's snapshot ended (cancelled by its Timeout) before this resume: start another.
    clientToken = index.runs.recordRunStart({ volume, clientToken: newClientToken(), startInput, runOptions }).clientToken;
    started = await deps.writer.startSnapshot({ ...input, clientToken });
  }
  if (started.status !== 'pending') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${started.snapshotId} is ${started.status} right after StartSnapshot`, {
      hint: 'run the backup again',
      details: { snapshotId: started.snapshotId },
    });
  }
  if (started.kmsKeyArn !== undefined && !plan.encrypted) {
    // Blocks were left out as implicit zeros, which an encrypted snapshot would read as random data.
    index.runs.dropRunStart(volume);
    await deleteStartedSnapshot(deps.catalog, started.snapshotId, startedAt);
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${started.snapshotId} came out encrypted, though the run planned an unencrypted one`, {
      hint: 'EBS encryption by default was probably enabled meanwhile: run the backup again',
      details: { snapshotId: started.snapshotId },
    });
  }
  return index.runs.beginRun({
    volume,
    snapshotId: started.snapshotId,
    parentSnapshotId: plan.parent,
    baseSnapshotId: plan.base,
    volumeSizeGiB: plan.volumeSizeGiB,
    sourceBytes: source.sizeBytes,
    encrypted: plan.encrypted,
    description: options.description ?? null,
    runOptions,
  });
}

/** A StartSnapshot ClientToken of its own for every run (AWS takes up to 64 ASCII characters). */
function newClientToken(): string {
  return `snapline-${randomUUID()}`;
}

/** CompleteSnapshot, wait, commit; an interruption names the snapshot left to resume. */
async function sealRun(deps: BackupDeps, snapshotId: string, options: BackupOptions, volume: string, source: BlockSource): Promise<SnapshotRecord> {
  try {
    return await completeAndCommit(deps.index, deps.writer, deps.catalog, snapshotId, commitOptions(options, volume, source));
  } catch (err) {
    throw resumable(err, snapshotId);
  }
}

/** An INTERRUPTED error reworded to say which snapshot stays pending and how to resume it; others unchanged. */
function resumable(err: unknown, snapshotId: string): unknown {
  if (!isSnaplineError(err, ErrorCodes.INTERRUPTED)) return err;
  return new SnaplineError(ErrorCodes.INTERRUPTED, `${err.message}; snapshot ${snapshotId} stays pending`, {
    hint: 'run the same command again to resume it',
    details: { snapshotId },
  });
}

interface Plan {
  /** AWS parent of the new snapshot. */
  parent: string | null;
  /** The snapshot whose index map the scan is compared with. */
  base: string | null;
  /** Blocks the index cannot vouch for: uploaded whatever their digest. */
  suspects: number[];
  volumeSizeGiB: number;
  /** Whether the new snapshot will be encrypted: its parent's encryption, or for a new lineage the options and the account's default. */
  encrypted: boolean;
}

/**
 * The unfinished run of this volume to continue, after checking it is the
 * same run, still alive in AWS, and (while blocks are still to be written)
 * of a source of the size it was started with: its snapshot is tagged and
 * recorded with that size, which a restore gives back.
 */
async function pendingRunToResume(
  deps: BackupDeps,
  volume: string,
  identity: RunIdentity,
  options: BackupOptions,
  source: BlockSource,
): Promise<SnapshotRecord | undefined> {
  const run = deps.index.runs.pendingRun(volume);
  if (!run) return undefined;
  if (options.discardPending) {
    deps.index.runs.abandonRun(run.snapshotId, 'discarded with --discard-pending');
    return undefined;
  }
  if (run.runOptions !== JSON.stringify(identity)) {
    throw new SnaplineError(
      ErrorCodes.CONFLICT,
      `volume "${volume}" has an unfinished backup (${run.snapshotId}) started with other arguments`,
      {
        hint: 'run the backup again with the same arguments to resume it, or add --discard-pending to abandon it',
        details: { snapshotId: run.snapshotId },
      },
    );
  }
  // EC2 may not list a snapshot started moments ago: missing then means "not yet", not gone.
  const remote = await describeListed(deps.catalog, run.snapshotId, run.startedAt.getTime() + EC2_SETTLE_MS, { signal: options.signal });
  if (run.state === 'completing' && (remote?.state === 'completed' || remote?.state === 'pending')) return run;
  if (!remote || remote.state !== 'pending') {
    // Gone, errored or completed without our commit: it cannot be continued.
    deps.index.runs.abandonRun(run.snapshotId, `found in state ${remote?.state ?? 'deleted'} when resuming`);
    return undefined;
  }
  if (run.state === 'pending' && run.sourceBytes !== source.sizeBytes) {
    // Completed, it would restore to the old size: a grown source's new bytes cut off, a shrunk one's old blocks kept past its end.
    const reason = `the source holds ${source.sizeBytes} bytes, not the ${run.sourceBytes} it held when the run started`;
    deps.index.runs.abandonRun(run.snapshotId, reason);
    options.onWarning?.(`the unfinished backup ${run.snapshotId} of "${volume}" is not resumed: ${reason}; a new snapshot is taken (AWS cancels the pending one after its Timeout)`);
    return undefined;
  }
  return run;
}

async function planFromRun(deps: BackupDeps, run: SnapshotRecord): Promise<Plan> {
  const { parentSnapshotId: parent, baseSnapshotId: base } = run;
  const reconciled = parent !== null && base !== null && parent !== base;
  return {
    parent,
    base,
    suspects: reconciled ? await changedBlocks(deps.reader, base, parent) : [],
    volumeSizeGiB: run.volumeSizeGiB,
    encrypted: run.encrypted,
  };
}

async function changedBlocks(reader: SnapshotReader, first: string, second: string): Promise<number[]> {
  const indexes: number[] = [];
  for await (const page of reader.listChangedBlocks(first, second)) {
    for (const block of page.blocks) indexes.push(block.index);
  }
  return indexes;
}

async function planNewRun(
  deps: BackupDeps,
  options: BackupOptions,
  volume: string,
  source: BlockSource,
  sourcePath: string,
  identity: RunIdentity,
): Promise<Plan> {
  const { index } = deps;
  const sourceGiB = volumeSizeGiBFor(source.sizeBytes);
  if (sourceGiB > MAX_VOLUME_SIZE_GIB) {
    throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `${sourcePath} is larger than the 64 TiB an EBS snapshot can hold`);
  }
  // A new lineage is encrypted when asked, or when the account encrypts by default.
  const newLineage = async (): Promise<Plan> => ({
    parent: null,
    base: null,
    suspects: [],
    volumeSizeGiB: sourceGiB,
    encrypted: identity.encrypted || (await deps.catalog.encryptionByDefault()),
  });
  if (options.full) {
    if (options.parent) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'full and parent exclude each other', { details: { option: 'parent', otherOptions: ['full'] } });
    return newLineage();
  }
  const head = index.lineage.headSnapshot(volume);
  const parentId = options.parent ?? head?.snapshotId ?? null;
  if (parentId === null) return newLineage();

  // A parent this index committed moments ago may be missing from EC2, or shown pending, for a while.
  const parentRecord = index.lineage.getSnapshot(parentId);
  // Asked alongside DescribeSnapshots instead of after it: childEncryption needs the answer for
  // an unencrypted parent, the usual case. A failure counts only where the answer is used.
  const encryptionByDefault = deps.catalog.encryptionByDefault();
  encryptionByDefault.catch(() => undefined);
  const remote = await describeListed(deps.catalog, parentId, settledBy(parentRecord), { signal: options.signal, completed: true });
  if (!remote) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `parent snapshot ${parentId} does not exist in AWS`, {
      hint: 'pass --full to start a new lineage, or --parent with a snapshot that exists',
    });
  }
  if (remote.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `parent snapshot ${parentId} is ${remote.state}, not completed`);
  }
  if (sourceGiB > remote.volumeSizeGiB) {
    throw new SnaplineError(
      ErrorCodes.SOURCE_UNUSABLE,
      `${sourcePath} has grown to ${sourceGiB} GiB, past the ${remote.volumeSizeGiB} GiB of its lineage (parent ${parentId})`,
      { hint: 'pass --full to start a new lineage at the new size' },
    );
  }
  const volumeSizeGiB = remote.volumeSizeGiB;
  const encrypted = await childEncryption(remote, identity, encryptionByDefault);

  if (parentRecord?.state === 'completed') {
    if (parentRecord.volume !== volume) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `parent ${parentId} belongs to volume "${parentRecord.volume}", not "${volume}"`,
        { details: { option: 'parent' } },
      );
    }
    return { parent: parentId, base: parentId, suspects: [], volumeSizeGiB, encrypted };
  }
  if (!head) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index knows nothing of snapshot ${parentId} for volume "${volume}"`, {
      hint: `pass --full to start a new lineage, or run \`snapline index rebuild ${parentId}\` to learn it`,
    });
  }
  // A parent taken elsewhere (e.g. in AWS after a restore there): compare with
  // the index's head and upload every block the two disagree on.
  let suspects: number[];
  try {
    suspects = await changedBlocks(deps.reader, head.snapshotId, parentId);
  } catch (err) {
    if (isSnaplineError(err, ErrorCodes.REMOTE_REJECTED)) {
      throw new SnaplineError(
        ErrorCodes.REMOTE_REJECTED,
        `snapshot ${parentId} is not of the lineage of ${head.snapshotId}, the newest snapshot of "${volume}"`,
        { hint: 'pass --full to start a new lineage', cause: err },
      );
    }
    throw err;
  }
  return { parent: parentId, base: head.snapshotId, suspects, volumeSizeGiB, encrypted };
}

/**
 * The encryption of a child of `parent`, which AWS gives it: the parent's,
 * with the parent's key. Options that ask for another outcome are refused
 * (a new lineage can have it), and so is an unencrypted parent in an account
 * that encrypts by default, which AWS refuses.
 */
async function childEncryption(parent: RemoteSnapshot, identity: RunIdentity, encryptionByDefault: Promise<boolean>): Promise<boolean> {
  const newLineage = { hint: 'pass --full to start a new lineage with this encryption' };
  if (identity.encrypted && !parent.encrypted) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `encrypted cannot apply to an incremental backup of the unencrypted snapshot ${parent.snapshotId}: a child keeps its parent's encryption`, {
      ...newLineage,
      details: { option: 'encrypted' },
    });
  }
  if (identity.kmsKeyArn !== null && parent.kmsKeyId !== undefined && parent.kmsKeyId !== identity.kmsKeyArn) {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `kmsKeyArn ${identity.kmsKeyArn} is not the key of the parent snapshot ${parent.snapshotId} (${parent.kmsKeyId}): a child is encrypted with its parent's key`,
      { ...newLineage, details: { option: 'kmsKeyArn' } },
    );
  }
  if (!parent.encrypted && (await encryptionByDefault)) {
    throw new SnaplineError(
      ErrorCodes.REMOTE_REJECTED,
      `the account encrypts EBS by default, and AWS takes no unencrypted parent then: snapshot ${parent.snapshotId} cannot have an incremental child`,
      { hint: 'pass --full to start a new, encrypted lineage', details: { snapshotId: parent.snapshotId } },
    );
  }
  return parent.encrypted;
}

interface ScanCounts {
  scanned: number;
  /** Blocks read and hashed (not holes). */
  read: number;
  changed: number;
  uploaded: number;
  zeroSkipped: number;
}

/**
 * The slabs a scan of `ranges` reads into. Ranges shorter than a slab on
 * average (a tracked run's scattered blocks) get one-block slabs of the same
 * total bytes, each allocated on first need (a few changed blocks cost a
 * few), as many blocks read ahead as the session's slabs ahead hold:
 * a one-block range would otherwise hold a whole slab until its upload
 * settles, and the slabs, not the upload concurrency, would bound the
 * uploads in flight.
 */
function scanSlabs(slabs: SlabPool, ranges: BlockRanges | undefined): { slabs: SlabPool; hashAhead?: number } {
  if (ranges === undefined || ranges.length === 0 || slabs.blocksPerSlab === 1) return { slabs };
  if (blockRangesSize(ranges) / ranges.length >= slabs.blocksPerSlab) return { slabs };
  let oneBlock = oneBlockPools.get(slabs);
  if (oneBlock === undefined) {
    oneBlock = new SlabPool({ slabCount: slabs.slabCount * slabs.blocksPerSlab, blocksPerSlab: 1, onDemand: true });
    oneBlockPools.set(slabs, oneBlock);
  }
  return { slabs: oneBlock, hashAhead: DEFAULT_HASH_AHEAD * slabs.blocksPerSlab };
}

/** The one-block pool of each session's pool: its slabs are allocated once, for the session's life, and shared by its tracked runs. */
const oneBlockPools = new WeakMap<SlabPool, SlabPool>();

/**
 * The hot path: reads and hashes the source once, compares each block with the
 * base map and the journal, and uploads what changed from the bytes that were
 * hashed. Uploads go through the writer's limiter; the slab pool bounds how
 * much is held in memory. On abort it waits for uploads in flight, flushes the
 * journal and throws INTERRUPTED.
 */
async function scanAndUpload(
  deps: BackupDeps,
  options: BackupOptions,
  source: BlockSource,
  volume: string,
  plan: Plan,
  encrypted: boolean,
  snapshot: RunSnapshot | undefined,
  resume: ResumeState,
  ranges: BlockRanges | undefined,
): Promise<ScanCounts> {
  const { index } = deps;
  const { slabs, hashAhead } = scanSlabs(deps.slabs, ranges);
  const totalBlocks = blockCountFor(source.sizeBytes);
  const baseMap = new BlockMapCursor(index, plan.base, undefined, ranges);
  const suspects = new SortedBlockSet(plan.suspects);
  // A resumed run's snapshot is known; a new run's starts with its first upload.
  let snapshotId = snapshot?.id;
  let journal = snapshotId ? new JournalWriter(index, snapshotId) : undefined;
  // Unwritten blocks read as zeros only in an unencrypted snapshot.
  const zeroIsImplicit = !encrypted;
  const counts: ScanCounts = { scanned: 0, read: 0, changed: 0, uploaded: 0, zeroSkipped: 0 };
  // How far the walk has come (a tracked run skips the blocks between its ranges).
  let reachedBlock = 0;
  // Uploads are bounded by the slab pool (a slab is held until its uploads settle)
  // and paced by the writer's limiter. Blocks of a hole run hold no slab: the
  // window keeps them to as many as the pool holds too.
  const uploads = new TaskWindow(slabs.slabCount * slabs.blocksPerSlab);
  const progress = (phase: BackupProgress['phase']) =>
    options.onProgress?.({
      phase,
      volume,
      snapshotId,
      sourceBytes: source.sizeBytes,
      bytesScanned: Math.min(source.sizeBytes, reachedBlock * BLOCK_SIZE),
      blocksScanned: counts.scanned,
      blocksChanged: counts.changed,
      blocksUploaded: counts.uploaded,
      bytesUploaded: counts.uploaded * BLOCK_SIZE,
    });

  const upload = async (slab: HashedSlab, i: number, intended: Promise<void>) => {
    const blockIndex = slab.firstBlock + i;
    const digest = digestAt(slab, i);
    const percent = Math.min(100, Math.floor((100 * (blockIndex + 1)) / totalBlocks));
    await intended;
    // An upload not sent when the run is aborted is not sent: its intent makes the resume send it.
    throwIfAborted(options.signal);
    await deps.writer.putBlock(snapshotId!, blockIndex, slab.slab.block(i), checksumOf(digest), percent);
    await journal!.acknowledge(blockIndex, digest);
    counts.uploaded += 1;
  };

  const ticker = setInterval(() => progress('scan'), 500);
  try {
    await uploads.run(async () => {
      for await (const slab of scanRuns()) {
        // Slabs hashed ahead are yielded without reading: the abort is checked here too.
        if (options.signal?.aborted) {
          slab.slab.release();
          throwIfAborted(options.signal);
        }
        const toUpload: number[] = [];
        for (let i = 0; i < slab.blockCount; i += 1) {
          const unneeded = slab.unneededAs![i];
          if (unneeded === undefined || Buffer.compare(unneeded, digestAt(slab, i)) !== 0) toUpload.push(i);
          else if (unneeded === UNWRITTEN_ZERO) counts.zeroSkipped += 1;
        }
        if (slab.firstBlock < totalBlocks) counts.scanned += slab.blockCount;
        if (!slab.hole) counts.read += slab.blockCount;
        reachedBlock = slab.firstBlock + slab.blockCount;
        counts.changed += toUpload.length;
        if (toUpload.length === 0 || !snapshot || uploads.failed) {
          slab.slab.release();
          if (uploads.failed) break;
          continue;
        }
        if (journal === undefined) {
          try {
            snapshotId = await snapshot.start();
            // StartSnapshot runs to its end on abort; the run stops after it, its snapshot left to resume.
            throwIfAborted(options.signal);
          } catch (err) {
            slab.slab.release();
            throw err;
          }
          journal = new JournalWriter(index, snapshotId);
        }
        // Each upload waits for its intent's write (batched with the other records of this turn).
        const intended = journal.intend(toUpload.map((i) => ({ index: slab.firstBlock + i, digest: digestAt(slab, i) })));
        // The slab goes back to the pool once every upload from it has settled,
        // its acknowledgements written to the journal first: a crash then repeats
        // only uploads of slabs still held, never more than the slab pool's blocks.
        let unsettled = toUpload.length;
        const settle = () => {
          unsettled -= 1;
          if (unsettled === 0) slab.slab.release();
        };
        for (const [n, i] of toUpload.entries()) {
          try {
            await uploads.add(() => upload(slab, i, intended).finally(settle));
          } catch (err) {
            for (let k = n; k < toUpload.length; k += 1) settle();
            throw err;
          }
        }
      }
    });
  } catch (err) {
    throw snapshotId ? resumable(err, snapshotId) : err;
  } finally {
    clearInterval(ticker);
    journal?.flush();
  }
  reachedBlock = totalBlocks;
  progress('scan');
  return counts;

  /**
   * The source's blocks as the scan reads and hashes them, then the suspects
   * past its last block (a parent taken elsewhere that differs from the base
   * there), as zeros: what the source holds there. Left out, the snapshot
   * would keep the parent's data where the index's map, built on the base,
   * says otherwise, and a later run of a grown source would trust the map.
   */
  async function* scanRuns(): AsyncGenerator<HashedSlab> {
    yield* scanSource(source, slabs, deps.hashPool, { ranges, hashAhead, keepBytes: uploadUnless, signal: options.signal });
    const volumeBlocks = plan.volumeSizeGiB * BLOCKS_PER_GIB;
    for (const block of plan.suspects) {
      if (block >= totalBlocks && block < volumeBlocks) yield pastSourceEnd(block, uploadUnless(block));
    }
  }

  /**
   * The upload decision for one block, made as the scan reads it: the digest
   * under which it needs no upload, undefined when it is uploaded whatever
   * it holds. Asked once a block, in ascending order.
   */
  function uploadUnless(blockIndex: number): Uint8Array | undefined {
    const baseDigest = baseMap.digestAt(blockIndex);
    const suspect = suspects.has(blockIndex);
    if (resume.mustRewrite(blockIndex)) return undefined;
    const written = resume.written(blockIndex);
    if (written) return written;
    if (!suspect && baseDigest !== undefined) return baseDigest;
    // The lineage never wrote this block: all zeros read back as they are.
    if (!suspect && zeroIsImplicit) return UNWRITTEN_ZERO;
    return undefined;
  }
}

/** Block `block`, past the source's end, as a run of one zero block (nothing read). */
function pastSourceEnd(block: number, unneededAs: Uint8Array | undefined): HashedSlab {
  return { slab: zeroSlab(1), firstBlock: block, blockCount: 1, digests: ZERO_BLOCK_DIGEST, zero: Uint8Array.of(1), hole: true, unneededAs: [unneededAs] };
}

/** uploadUnless' answer for a block the lineage never wrote: a block left out for it is a zero block skipped. */
const UNWRITTEN_ZERO = Uint8Array.from(ZERO_BLOCK_DIGEST);

function commitOptions(options: BackupOptions, volume: string, source: BlockSource) {
  return {
    waitTimeoutMs: options.waitTimeoutMs,
    signal: options.signal,
    onWait: () =>
      options.onProgress?.({
        phase: 'wait' as const,
        volume,
        sourceBytes: source.sizeBytes,
        bytesScanned: source.sizeBytes,
        blocksScanned: 0,
        blocksChanged: 0,
        blocksUploaded: 0,
        bytesUploaded: 0,
      }),
  };
}

function resultOf(
  committed: SnapshotRecord | null,
  volume: string,
  source: BlockSource,
  started: number,
  counts: ScanCounts,
  resumed: boolean,
  dryRun: boolean,
  plan?: Plan,
  tracked?: TrackingPlan,
): BackupResult {
  return {
    snapshotId: committed?.snapshotId ?? null,
    parentSnapshotId: committed?.parentSnapshotId ?? plan?.parent ?? null,
    volume,
    volumeSizeGiB: committed?.volumeSizeGiB ?? plan?.volumeSizeGiB ?? volumeSizeGiBFor(source.sizeBytes),
    // A run sealed on resume holds the bytes it was started with, whatever the source holds now.
    sourceBytes: committed?.sourceBytes ?? source.sizeBytes,
    blocksScanned: counts.scanned,
    blocksRead: counts.read,
    blocksChanged: counts.changed,
    blocksUploaded: counts.uploaded,
    blocksZeroSkipped: counts.zeroSkipped,
    bytesUploaded: counts.uploaded * BLOCK_SIZE,
    durationMs: Date.now() - started,
    resumed,
    dryRun,
    ...(tracked === undefined ? {} : { changeTracking: tracked.result }),
  };
}
