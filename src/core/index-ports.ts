/**
 * The ports the engine needs from its index: small stores, each a part of
 * what the SQLite block index (src/index) keeps, reachable from it as
 * `index.lineage`, `index.runs` and so on. An operation names in its deps
 * only the ones it uses (`Pick<IndexPorts, ...>`). Every one has a contract
 * suite (test/contract/*.contract.ts) that the SQLite index and the
 * in-memory fake (test/fakes/memory-index.ts) both pass. Failures are
 * SnaplineError: NOT_FOUND, BAD_STATE, CONFLICT, INVALID_ARGUMENT, and
 * INDEX_UNUSABLE for a damaged store.
 */
import type { ChangeTrackerKind } from './changed-ranges.js';
import type { RunLog } from './run-log.js';

// ---- records ---------------------------------------------------------------

export type SnapshotState = 'pending' | 'completing' | 'completed' | 'error' | 'deleted';
export type TargetState = 'complete' | 'incomplete';

export interface VolumeRecord {
  name: string;
  sourcePath: string;
  sizeBytes: number;
  createdAt: Date;
}

export interface SnapshotRecord {
  snapshotId: string;
  volume: string;
  /** The AWS lineage parent (ParentSnapshotId). */
  parentSnapshotId: string | null;
  /**
   * The snapshot whose block map this one overlays in the index (usually the
   * parent; differs when a parent taken elsewhere was reconciled against the
   * index head); null = a full map of its own.
   */
  baseSnapshotId: string | null;
  state: SnapshotState;
  volumeSizeGiB: number;
  sourceBytes: number;
  encrypted: boolean;
  description: string | null;
  startedAt: Date;
  completedAt: Date | null;
  /** Blocks written in this snapshot (set by commitRun). */
  changedBlocks: number;
  /** JSON of the run's arguments, for resuming with the same arguments. */
  runOptions: string | null;
  /** Why an abandoned run failed (state error), else null. */
  errorReason: string | null;
}

/** A backup run recorded before its StartSnapshot (see RunJournal.recordRunStart). */
export interface RunStartRecord {
  volume: string;
  /** The run's own StartSnapshot ClientToken. */
  clientToken: string;
  /** JSON of the exact StartSnapshot arguments, sent again by a resume. */
  startInput: string;
  /** JSON of the run's arguments, as SnapshotRecord.runOptions. */
  runOptions: string | null;
  createdAt: Date;
}

export interface TargetRecord {
  path: string;
  snapshotId: string | null;
  state: TargetState;
  sizeBytes: number;
  updatedAt: Date;
}

export interface BlockEntry {
  index: number;
  digest: Buffer;
}

export interface BlockInput {
  index: number;
  digest: Uint8Array;
}

export interface BeginRunInput {
  volume: string;
  snapshotId: string;
  parentSnapshotId: string | null;
  baseSnapshotId: string | null;
  volumeSizeGiB: number;
  sourceBytes: number;
  encrypted: boolean;
  description: string | null;
  runOptions: string | null;
}

export interface ImportSnapshotInput {
  snapshotId: string;
  volume: string;
  parentSnapshotId: string | null;
  volumeSizeGiB: number;
  sourceBytes: number;
  encrypted: boolean;
  description: string | null;
  startedAt?: Date;
}

export interface BlockRange {
  fromBlock?: number;
  toBlock?: number;
}

export type ArchiveTargetName = 's3' | 'glacier';
export type ArchiveState = 'uploading' | 'archived' | 'deleted';

export interface ArchiveRecord {
  archiveId: string;
  target: ArchiveTargetName;
  /** Bucket or vault. */
  location: string;
  /** S3 key prefix of its objects, or the Glacier description stem. */
  prefix: string;
  snapshotId: string;
  volume: string;
  /** The archive an incremental one builds on; null for a full archive. */
  parentArchiveId: string | null;
  storageClass: string | null;
  segmentBlocks: number;
  state: ArchiveState;
  /** The manifest's S3 key or Glacier archive id, once written. */
  manifestRef: string | null;
  /** Tree hash (hex) of the manifest, once written. */
  treeHash: string | null;
  /** Bytes of all its objects. */
  sizeBytes: number;
  /** Blocks stored in its segments. */
  blockCount: number;
  createdAt: Date;
  completedAt: Date | null;
  deletedAt: Date | null;
}

export interface ArchiveObjectRecord {
  /** segment-000000..., manifest.json */
  name: string;
  /** S3 key or Glacier archive id. */
  ref: string;
  sizeBytes: number;
  treeHash: string;
  /** The manifest's JSON entry for a segment; null for the manifest. */
  entry: string | null;
  /** Glacier retrieval job (or "s3" for an S3 restore) last asked for. */
  restoreJob: string | null;
  restoreTier: string | null;
  restoreRequestedAt: Date | null;
}

export interface UploadPartRecord {
  partNumber: number;
  sizeBytes: number;
  /** S3 ETag or Glacier tree hash (hex). */
  checksum: string;
}

export interface ObjectUploadRecord {
  uploadId: string;
  partSize: number;
  startedAt: Date;
  /** Ascending by part number. */
  parts: UploadPartRecord[];
}

/** What an archive starts with: its record's fields that are known before its first upload. */
export type BeginArchiveInput = Pick<
  ArchiveRecord,
  'archiveId' | 'target' | 'location' | 'prefix' | 'snapshotId' | 'volume' | 'parentArchiveId' | 'storageClass' | 'segmentBlocks'
>;

export type EcsJobState = 'running' | 'failed' | 'completed' | 'abandoned';
export type EcsShardState = 'waiting' | 'running' | 'succeeded' | 'failed';
export type EcsSourceKind = 'snapshot' | 'archive';

export interface EcsJobRecord {
  jobId: string;
  sourceKind: EcsSourceKind;
  /** The snapshot id or archive id restored. */
  source: string;
  /** The volume the new snapshot is filed under. */
  volume: string;
  /** The pending snapshot the tasks write into, once started. */
  snapshotId: string | null;
  cluster: string;
  taskDefinition: string;
  startedBy: string;
  state: EcsJobState;
  /** Why it failed or was abandoned. */
  message: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface EcsShardRecord {
  shard: number;
  fromBlock: number;
  /** Exclusive. */
  toBlock: number;
  state: EcsShardState;
  /** The current attempt, 1-based; 0 before the first. */
  attempt: number;
  /** RunTask calls of this attempt that placed no task. */
  launch: number;
  message: string | null;
}

export interface EcsTaskRecord {
  taskArn: string;
  jobId: string;
  shard: number;
  attempt: number;
  lastStatus: string;
  stopCode: string | null;
  stoppedReason: string | null;
  /** The worker container's exit code, when it has one. */
  exitCode: number | null;
  createdAt: Date;
  stoppedAt: Date | null;
}

export interface NewEcsJob {
  jobId: string;
  sourceKind: EcsSourceKind;
  source: string;
  volume: string;
  cluster: string;
  taskDefinition: string;
  startedBy: string;
}

export interface HeldLock {
  /** Idempotent. */
  release(): void;
}

// ---- ports -----------------------------------------------------------------

/**
 * Volumes and their snapshots: the lineage the index knows, every state. A
 * bound index (see BlockIndex.bindStore) refuses with STORE_MISMATCH a volume
 * of another store, named or reached through one of its snapshots, and leaves
 * such volumes out of the lists.
 */
export interface VolumeLineage {
  /** Creates the volume or updates its sizeBytes and sourcePath (and records the bound store for it). Idempotent. */
  ensureVolume(v: { name: string; sourcePath: string; sizeBytes: number }): VolumeRecord;
  getVolume(name: string): VolumeRecord | undefined;
  /** By name. */
  listVolumes(): VolumeRecord[];
  getSnapshot(snapshotId: string): SnapshotRecord | undefined;
  /** Newest completed snapshot of the volume, by completion order (RunJournal.commitRun or importSnapshot). */
  headSnapshot(volume: string): SnapshotRecord | undefined;
  /** Oldest first (by startedAt), every state. */
  listSnapshots(volume?: string): SnapshotRecord[];
  /** The snapshot itself, then its base, its base's base... (following baseSnapshotId). NOT_FOUND for an unknown one. */
  baseChain(snapshotId: string): SnapshotRecord[];
  /**
   * EC2 DeleteSnapshot is done: state deleted; an open run's journal is
   * dropped. Every remaining snapshot's block map stays what it was.
   * Idempotent. Durable.
   */
  markDeleted(snapshotId: string): void;
  /**
   * Learns a completed snapshot's full block map (index rebuild), replacing
   * any map known for it: state completed, base null, changedBlocks = the
   * blocks given, newest in completion order. The volume must exist.
   * INVALID_ARGUMENT (nothing stored) on a bad or repeated block. Durable.
   */
  importSnapshot(r: ImportSnapshotInput, blocks: Iterable<BlockInput>): SnapshotRecord;
}

/**
 * The journal of backup runs: a run is a pending snapshot whose blocks are
 * recorded as the service acknowledges them, and become the snapshot's block
 * map only when AWS says it is completed (commitRun).
 */
export interface RunJournal {
  /**
   * Records, before its StartSnapshot, the ClientToken and StartSnapshot
   * arguments of the volume's next run, replacing any earlier record of the
   * volume. The volume must exist; CONFLICT when it has an unfinished run.
   * Durable.
   */
  recordRunStart(r: { volume: string; clientToken: string; startInput: string; runOptions: string | null }): RunStartRecord;
  /** The volume's run recorded by recordRunStart and not yet begun (beginRun) or dropped, if any. */
  runStart(volume: string): RunStartRecord | undefined;
  /** Forgets the volume's recorded run start. Idempotent. Durable. */
  dropRunStart(volume: string): void;
  /** The volume's unfinished run (pending or completing), if any. */
  pendingRun(volume: string): SnapshotRecord | undefined;
  /**
   * Starts a run: a pending snapshot. The volume must exist; the base, when
   * given, must be a completed snapshot of the same volume (INVALID_ARGUMENT,
   * BAD_STATE). CONFLICT when the volume already has an unfinished run or the
   * snapshot id is known. Drops the volume's recorded run start. Durable.
   */
  beginRun(r: BeginRunInput): SnapshotRecord;
  /**
   * Records blocks about to be uploaded for a pending run; an intent stays
   * until recordBlocks records that block. Idempotent (the new digest wins).
   * BAD_STATE unless pending.
   */
  recordIntents(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void;
  /**
   * Records blocks the service acknowledged for a pending run and clears
   * their intents. Idempotent (the new digest wins). BAD_STATE unless pending.
   */
  recordBlocks(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void;
  /**
   * recordIntents of `intents`, then recordBlocks of `blocks`, as one write:
   * all of it is recorded or none (a block in both lists ends recorded, its
   * intent cleared). BAD_STATE unless pending.
   */
  recordJournal(snapshotId: string, batch: { intents: ReadonlyArray<BlockInput>; blocks: ReadonlyArray<BlockInput> }): void;
  /** Intents not yet acknowledged by recordBlocks for an open run, ascending (as writtenBlocks). BAD_STATE for a run that is not open. */
  unacknowledgedBlocks(snapshotId: string): IterableIterator<BlockEntry>;
  /**
   * Blocks recorded for an open run (pending or completing), ascending.
   * Blocks recorded during the iteration may or may not be seen; once the run
   * is committed or abandoned the iteration ends, or throws CONFLICT.
   */
  writtenBlocks(snapshotId: string): IterableIterator<BlockEntry>;
  /** Number of blocks recorded for an open run. */
  writtenBlockCount(snapshotId: string): number;
  /** CompleteSnapshot was sent: pending -> completing. Idempotent. Durable. */
  markCompleting(snapshotId: string): void;
  /**
   * AWS said completed: the run's blocks become the snapshot's map, state
   * completed, changedBlocks (the blocks recorded) and completedAt set.
   * Idempotent: a completed snapshot is returned as is. Durable.
   */
  commitRun(snapshotId: string, completedAt?: Date): SnapshotRecord;
  /**
   * The run failed for good: state error, its recorded blocks dropped.
   * Idempotent for a snapshot already in error; BAD_STATE for a completed or
   * deleted one. Durable.
   */
  abandonRun(snapshotId: string, reason: string): void;
}

/** The block maps of snapshots: which digest each block of a snapshot has. */
export interface BlockMaps {
  /**
   * The effective map of a completed snapshot (of a pending or completing
   * one: its base's) over [fromBlock, toBlock), ascending; blocks never
   * written are absent. The digests may be views of a reused buffer: copy one
   * to keep it. BAD_STATE for a snapshot in error or deleted; CONFLICT if a
   * map is rewritten during the scan.
   */
  blockMap(snapshotId: string, range?: BlockRange): IterableIterator<BlockEntry>;
  /** Throws INDEX_UNUSABLE, naming the snapshot, when the map blockMap reads is not the one committed. */
  verifyMap(snapshotId: string): void;
  /** Block indexes whose digest differs between the maps of `a` and `b` (present in one only counts), ascending. */
  diffMaps(a: string, b: string): IterableIterator<number>;
}

/** What the index vouches each restore target (a file or device path) holds. */
export interface RestoreTargets {
  /** Replaces what is known of the target. Durable (an 'incomplete' mark must survive a crash). */
  set(t: { path: string; snapshotId: string | null; state: TargetState; sizeBytes: number }): void;
  get(path: string): TargetRecord | undefined;
  /** The files the index itself is kept in (none for one in memory): no restore may write onto one of them. */
  ownFiles(): string[];
}

/** The archives made of snapshots, their remote objects, and the journal of multipart uploads. */
export interface ArchiveCatalog {
  get(archiveId: string): ArchiveRecord | undefined;
  /** Every archive, deleted ones included, oldest first. */
  list(): ArchiveRecord[];
  /** The archive of a snapshot at a place (bucket or vault) that is not deleted, if any. */
  live(target: ArchiveTargetName, location: string, snapshotId: string): ArchiveRecord | undefined;
  /** The volume's newest archived archive at a place: what an incremental archive builds on. */
  latest(volume: string, target: ArchiveTargetName, location: string): ArchiveRecord | undefined;
  /** Archives (not deleted) that build on this one. */
  children(archiveId: string): ArchiveRecord[];
  /**
   * Records a new archive, state uploading. The parent, when given, must be
   * archived. CONFLICT when the snapshot already has a live archive at that
   * place or the id is taken. Durable.
   */
  begin(input: BeginArchiveInput): ArchiveRecord;
  /** The manifest is written: uploading -> archived, size summed over its objects. Idempotent. Durable. */
  complete(archiveId: string, manifest: { ref: string; treeHash: string; blockCount: number }): ArchiveRecord;
  /** Its objects are deleted remotely: state deleted, objects and upload journal dropped. CONFLICT while a live archive builds on it. Idempotent. Durable. */
  markDeleted(archiveId: string): void;
  /** The objects stored for an archive, by name. */
  objects(archiveId: string): ArchiveObjectRecord[];
  /** An object is stored: recorded (replacing one of the same name), and its upload journal dropped. Durable. */
  recordObject(archiveId: string, object: { name: string; ref: string; sizeBytes: number; treeHash: string; entry: string | null }): void;
  /** The restore (S3) or retrieval job (Glacier) last asked for an object. Durable. */
  recordRestore(archiveId: string, name: string, restore: { job: string | null; tier: string; requestedAt: Date }): void;
  /** The multipart upload of an object in progress, with its acknowledged parts, if any. */
  upload(archiveId: string, name: string): ObjectUploadRecord | undefined;
  /** A multipart upload of an object began (replacing any earlier journal of it). Durable. */
  beginUpload(archiveId: string, name: string, uploadId: string, partSize: number): void;
  /** The service acknowledged a part (not synced: a part lost to a power cut is uploaded again). Idempotent. */
  recordPart(archiveId: string, name: string, part: UploadPartRecord): void;
  /** Forgets an object's upload in progress (aborted, or gone from the service). Durable. */
  dropUpload(archiveId: string, name: string): void;
}

/** Restores run as ECS tasks: jobs, their shards, and every task they started. */
export interface EcsJobStore {
  /** A new job (running) with its shards (waiting). CONFLICT when the source has an open job. Durable. */
  create(input: NewEcsJob, shards: ReadonlyArray<{ fromBlock: number; toBlock: number }>): EcsJobRecord;
  get(jobId: string): EcsJobRecord | undefined;
  /** The source's job that is running or failed, if any. */
  openFor(source: string): EcsJobRecord | undefined;
  /** Every job, oldest first. */
  list(): EcsJobRecord[];
  /** Sets the job's snapshot, state or message. NOT_FOUND for an unknown job. Durable. */
  update(jobId: string, fields: { snapshotId?: string; state?: EcsJobState; message?: string | null }): EcsJobRecord;
  /** The job's shards, by number. */
  shards(jobId: string): EcsShardRecord[];
  /** Sets a shard's state, attempt, launch counter or message. Durable: a RunTask clientToken depends on them. */
  updateShard(jobId: string, shard: number, fields: { state?: EcsShardState; attempt?: number; launch?: number; message?: string | null }): void;
  /** Records a task of a job, or what ECS now says of it. Durable. */
  recordTask(task: EcsTaskRecord): void;
  /** The job's tasks, by shard and attempt. */
  tasks(jobId: string): EcsTaskRecord[];
}

/** Advisory locks between processes sharing an index. */
export interface AdvisoryLocks {
  /**
   * Takes the lock `name` ("volume:NAME", "target:/path"). CONFLICT naming
   * the holder while a live process holds it; a dead process's lock on this
   * host is taken over. Released by release() or when the index closes.
   */
  acquire(name: string): HeldLock;
  /**
   * The live holders of the locks whose names start with `prefix`, oldest
   * first (a dead process's lock on this host is none): whether any run
   * holds one of a family of locks, such as the readers of a snapshot.
   */
  holders(prefix: string): LockHolder[];
}

/** Who holds a lock. */
export interface LockHolder {
  name: string;
  pid: number;
  host: string;
  since: Date;
}

// ---- change trackers, copies, drills, run history --------------------------

/** How a run read its source: only what its tracker called changed, or everything. */
export type TrackedScan = 'tracked' | 'full';

export interface TrackerRecord {
  snapshotId: string;
  /** The tracker the run was given; null when none. */
  kind: ChangeTrackerKind | null;
  /** The bitmap's name or the file's path; null when none. */
  name: string | null;
  /** The checkpoint the tracker counted changes from (--since-checkpoint); null when none. */
  sinceCheckpoint: string | null;
  /** The checkpoint this snapshot was taken at (--checkpoint); null when none was given. */
  checkpoint: string | null;
  scan: TrackedScan;
  /** Why a run given a tracker read everything instead. */
  reason: string | null;
  recordedAt: Date;
}

/** The tracker each committed snapshot was taken against (changed-block tracking). */
export interface TrackerLog {
  get(snapshotId: string): TrackerRecord | undefined;
  /** Durable: written before the snapshot's completion, as only a completed snapshot is ever a parent. */
  record(record: Omit<TrackerRecord, 'recordedAt'>): void;
}

/** `deleting`: its source was deleted by a prune that deletes copies too, and it is to go with it (the next prune finishes it). */
export type CopyState = 'pending' | 'completed' | 'error' | 'deleting' | 'deleted';

export interface CopyRecord {
  /** The copy's snapshot id, in the destination. */
  copySnapshotId: string;
  sourceSnapshotId: string;
  volume: string;
  /** The destination Region. */
  region: string;
  /** The connection the copy was made through; null when it was the source's connection with the Region changed. */
  connection: string | null;
  state: CopyState;
  encrypted: boolean;
  kmsKeyId: string | null;
  /** The earlier copy of the lineage in the destination that made this one incremental, when there was one. */
  incrementalOf: string | null;
  /** What the service said of a failed copy. */
  message: string | null;
  createdAt: Date;
  completedAt: Date | null;
}

export type NewCopy = Pick<CopyRecord, 'copySnapshotId' | 'sourceSnapshotId' | 'volume' | 'region' | 'connection' | 'encrypted' | 'kmsKeyId' | 'incrementalOf'> & {
  /**
   * Default pending: CopySnapshot just answered. A copy found in the
   * destination that the index did not record is recorded as EC2 shows it
   * (pending or completed), or deleting when a prune found it to delete with
   * its source.
   */
  state?: 'pending' | 'completed' | 'deleting';
};

/** The copies of the index's snapshots in other Regions or accounts. */
export interface CopyCatalog {
  /**
   * Records a copy, created `at` (and completed `at` when recorded completed).
   * CONFLICT when its id is already recorded. Durable: the copy exists in AWS.
   */
  record(copy: NewCopy, at?: Date): CopyRecord;
  get(copySnapshotId: string): CopyRecord | undefined;
  /** The snapshot's copies not deleted, oldest first. */
  ofSnapshot(sourceSnapshotId: string): CopyRecord[];
  /** The copies not deleted, of the volume or of all, oldest first. */
  list(volume?: string): CopyRecord[];
  /** Sets state and message; `completed` sets completedAt to `at`, other states keep it. NOT_FOUND for an unknown copy. Durable. */
  setState(copySnapshotId: string, state: CopyState, message?: string | null, at?: Date): CopyRecord;
}

/** What a drill restored to: nothing (read every block), a file, or an EBS volume. */
export type DrillKind = 'read' | 'file' | 'volume';

export interface NewDrill {
  volume: string;
  snapshotId: string;
  kind: DrillKind;
  startedAt: Date;
  finishedAt: Date;
  passed: boolean;
  /** How long the recovery itself took (read, restore, or volume made and available), without the clean-up. */
  recoveryMs: number;
  blocksRead: number;
  /** Blocks that did not match their checksum, the index's digest, or the restored file. */
  mismatchedBlocks: number;
  /** Why it failed; null when it passed. */
  message: string | null;
}

export interface DrillRecord extends NewDrill {
  id: number;
}

/** The recovery drills: what was proven recoverable, and how long it took. */
export interface DrillRecords {
  /** Durable. */
  record(drill: NewDrill): DrillRecord;
  /** The newest drill of each volume, by volume name. */
  lastPerVolume(): DrillRecord[];
  /** Oldest first. */
  ofVolume(volume: string): DrillRecord[];
}

/** Every port of the index; an operation's deps take `Pick<IndexPorts, ...>`. */
export interface IndexPorts {
  readonly lineage: VolumeLineage;
  readonly runs: RunJournal;
  readonly maps: BlockMaps;
  readonly targets: RestoreTargets;
  readonly archives: ArchiveCatalog;
  readonly ecsJobs: EcsJobStore;
  readonly locks: AdvisoryLocks;
  readonly trackers: TrackerLog;
  readonly copies: CopyCatalog;
  readonly drills: DrillRecords;
  /** The run history (backups, restores, prunes, archives, failed ones too): status, metrics, the report. */
  readonly history: RunLog;
}
