/**
 * The narrow interfaces the engine needs from the outside world. The engine
 * owns them; src/aws implements them over the SDK, tests implement them in
 * memory. All failures are SnaplineError with a code (src/errors.ts).
 */

export interface StartSnapshotInput {
  volumeSizeGiB: number;
  parentSnapshotId?: string;
  description?: string;
  tags?: Record<string, string>;
  encrypted?: boolean;
  kmsKeyArn?: string;
  /** Minutes a pending snapshot may stay idle before it is cancelled (10..4320). */
  timeoutMinutes?: number;
  /** Idempotency token: the same token and arguments return the same snapshot. */
  clientToken?: string;
}

export type SnapshotStatus = 'pending' | 'completed' | 'error';

export interface StartedSnapshot {
  snapshotId: string;
  status: SnapshotStatus;
  volumeSizeGiB: number;
  blockSize: number;
  parentSnapshotId?: string;
  /** Present when the snapshot is encrypted. */
  kmsKeyArn?: string;
}

/** What a backup needs: start a snapshot, write blocks, complete it. */
export interface SnapshotWriter {
  startSnapshot(input: StartSnapshotInput): Promise<StartedSnapshot>;
  /**
   * Writes one block. `data` is exactly BLOCK_SIZE bytes and `checksum` the
   * base64 SHA-256 of it. Idempotent while the snapshot is pending: writing the
   * same bytes to the same index again is harmless. `data` is not retained
   * after the promise settles.
   */
  putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number): Promise<void>;
  /**
   * Seals the snapshot. `changedBlocksCount` and `aggregateChecksum` (LINEAR)
   * cover every block written in it. Returns the status AWS reports; pending
   * means "wait and look again", not success.
   */
  completeSnapshot(snapshotId: string, changedBlocksCount: number, aggregateChecksum: string): Promise<SnapshotStatus>;
}

export interface BlockRef {
  index: number;
  token: string;
}

export interface ChangedBlockRef {
  index: number;
  /** Absent where the first snapshot lacks the block. */
  firstToken?: string;
  /** Absent where the second snapshot lacks the block. */
  secondToken?: string;
}

export interface BlockPage<T> {
  blocks: T[];
  volumeSizeGiB: number;
  /** When the block tokens of this page expire. */
  expiresAt?: Date;
}

export interface ListOptions {
  startingBlockIndex?: number;
  /** Page size hint, 100..10000. */
  pageSize?: number;
}

/** What a restore, verify or diff needs: list and read a completed snapshot. */
export interface SnapshotReader {
  /** Pages in ascending block index; every page is yielded, including empty ones. */
  listBlocks(snapshotId: string, options?: ListOptions): AsyncIterable<BlockPage<BlockRef>>;
  /**
   * Blocks that differ between two snapshots of one lineage, ascending. With
   * no first snapshot, every block of the second.
   */
  listChangedBlocks(
    firstSnapshotId: string,
    secondSnapshotId: string,
    options?: ListOptions,
  ): AsyncIterable<BlockPage<ChangedBlockRef>>;
  /** The block's bytes (BLOCK_SIZE) and the checksum the service sent with them, unverified. */
  getBlock(snapshotId: string, blockIndex: number, blockToken: string): Promise<{ data: Buffer; checksum: string }>;
}

export interface RemoteSnapshot {
  snapshotId: string;
  state: SnapshotStatus | 'recoverable' | 'recovering';
  /** e.g. "100%" */
  progress?: string;
  volumeSizeGiB: number;
  startTime?: Date;
  description?: string;
  encrypted: boolean;
  /** The KMS key of an encrypted snapshot (EC2 KmsKeyId, an ARN). */
  kmsKeyId?: string;
  tags: Record<string, string>;
  stateMessage?: string;
}

/** Snapshot bookkeeping (EC2). */
export interface SnapshotCatalog {
  /** The snapshots among `snapshotIds` that exist; unknown ids are simply absent. */
  describeSnapshots(snapshotIds: readonly string[]): Promise<RemoteSnapshot[]>;
  /**
   * This account's snapshots that carry every one of `tags` (each key with
   * its value, as an EC2 filter value: `*` and `?` are wildcards), in every
   * state and in no particular order; none is an empty list.
   */
  taggedSnapshots(tags: Record<string, string>): Promise<RemoteSnapshot[]>;
  /** Idempotent: deleting a snapshot that is already gone succeeds. */
  deleteSnapshot(snapshotId: string): Promise<void>;
  createTags(snapshotId: string, tags: Record<string, string>): Promise<void>;
  encryptionByDefault(): Promise<boolean>;
}

// ---- copies in another Region or account -----------------------------------

export interface CopySnapshotInput {
  /** The Region of the snapshot to copy. */
  sourceRegion: string;
  sourceSnapshotId: string;
  description?: string;
  /** Encrypt the copy of an unencrypted snapshot (a copy of an encrypted one is encrypted anyway). */
  encrypted?: boolean;
  /** The destination's KMS key for the copy; only with `encrypted`. */
  kmsKeyId?: string;
  tags?: Record<string, string>;
}

/** EC2 CopySnapshot, asked of the destination: the Region (or account) the copy goes to. */
export interface SnapshotCopier {
  /**
   * Starts a copy and returns its snapshot id (pending). Not idempotent: each
   * call starts another copy, and a call retried after a lost answer may have
   * started one more; tag the copy (`tags`) to find it again (SnapshotCatalog.taggedSnapshots).
   */
  copySnapshot(input: CopySnapshotInput): Promise<string>;
}

/** Where copies go: the destination's Region, its EC2, and the connection when it is not the source's. */
export interface CopyDestination {
  region: string;
  connection?: string;
  copier: SnapshotCopier;
  /** EC2 of the destination: describes and deletes the copies. */
  catalog: SnapshotCatalog;
}

/** The destinations copies were made in, opened on demand (prune deletes copies with their source). */
export interface CopyDestinations {
  /** The Region of the snapshots copied: the source's (a copy's snapline:copy-source-region tag). */
  readonly sourceRegion: string;
  /** EC2 of a destination: `region`, through `connection` (null: the source's connection in that Region). */
  catalogOf(region: string, connection: string | null): Promise<SnapshotCatalog>;
}

// ---- EBS volumes (disaster recovery) -------------------------------------------

export type VolumeState = 'creating' | 'available' | 'in-use' | 'deleting' | 'deleted' | 'error';
export type AttachmentState = 'attaching' | 'attached' | 'detaching' | 'detached' | 'busy';
export type FastRestoreState = 'enabling' | 'optimizing' | 'enabled' | 'disabling' | 'disabled';

/** A volume to make from a snapshot (EC2 CreateVolume). Absent fields take EC2's defaults. */
export interface NewVolume {
  snapshotId: string;
  availabilityZone: string;
  /** EC2's default: gp3. */
  volumeType?: string;
  /** GiB, at least the snapshot's size (volumes only grow); EC2's default: the snapshot's. */
  sizeGiB?: number;
  iops?: number;
  throughput?: number;
  /** A volume from an encrypted snapshot is encrypted anyway. */
  encrypted?: boolean;
  kmsKeyId?: string;
  tags?: Record<string, string>;
  /** Idempotency token (up to 64 ASCII characters): CreateVolume sent again with it and the same arguments answers the volume made first. */
  clientToken?: string;
}

export interface RemoteVolume {
  volumeId: string;
  state: VolumeState;
  sizeGiB: number;
  snapshotId?: string;
  availabilityZone: string;
  volumeType: string;
  iops?: number;
  throughput?: number;
  encrypted: boolean;
  kmsKeyId?: string;
  /** Made from a snapshot with fast snapshot restore enabled in its zone: fully initialized at once. */
  fastRestored: boolean;
  attachment?: { instanceId: string; device: string; state: AttachmentState };
}

export interface RemoteInstance {
  instanceId: string;
  availabilityZone: string;
  /** pending, running, stopping, stopped, ... */
  state: string;
}

/**
 * EBS volumes made from snapshots, the instances they attach to, and fast
 * snapshot restore (EC2). Lookups answer undefined for what does not exist.
 */
export interface VolumeManager {
  /** Not idempotent: every call makes a new volume. */
  createVolume(input: NewVolume): Promise<RemoteVolume>;
  describeVolume(volumeId: string): Promise<RemoteVolume | undefined>;
  attachVolume(volumeId: string, instanceId: string, device: string): Promise<void>;
  /** Idempotent: a volume already gone counts as deleted. Not cut by an abort (clean-up). */
  deleteVolume(volumeId: string): Promise<void>;
  /** The volumes carrying every one of these tags (the value `*` matches any), every page. */
  taggedVolumes(tags: Record<string, string>): Promise<RemoteVolume[]>;
  describeInstance(instanceId: string): Promise<RemoteInstance | undefined>;
  /** Fails with the code EC2 gives for the snapshot and zone (QUOTA_EXCEEDED past the Region's limit). */
  enableFastRestore(snapshotId: string, availabilityZone: string): Promise<void>;
  /** Idempotent: not enabled counts as disabled. Not cut by an abort (clean-up). */
  disableFastRestore(snapshotId: string, availabilityZone: string): Promise<void>;
  /** undefined when fast snapshot restore was never enabled there. */
  fastRestoreState(snapshotId: string, availabilityZone: string): Promise<FastRestoreState | undefined>;
}

// ---- the archive tier ------------------------------------------------------

export type ArchiveTarget = 's3' | 'glacier';
/** Retrieval speed of a restore (S3 RestoreObject) or retrieval job (Glacier). */
export type RetrievalTier = 'Bulk' | 'Standard' | 'Expedited';

/** An object the store holds: an S3 object, or a Glacier archive. */
export interface StoredObject {
  /** The S3 key, or the Glacier archive id. */
  ref: string;
  sizeBytes: number;
  /** Tree hash (lowercase hex) of the whole object. */
  treeHash: string;
}

/** How a new object is stored. */
export interface ObjectOptions {
  /** S3 storage class (DEEP_ARCHIVE, GLACIER, GLACIER_IR, STANDARD, ...); a vault has none. */
  storageClass?: string;
}

/** A part the service acknowledged in a multipart upload. */
export interface UploadedPart {
  /** 1-based. */
  partNumber: number;
  sizeBytes: number;
  /** S3: the part's ETag; Glacier: its tree hash (hex), which the service checked. */
  checksum: string;
}

/**
 * Whether an object can be read now. `archived`: a restore must be asked for;
 * `in-progress`: asked, not done; `available`: readable (until `expiresAt`
 * when it was restored); `failed`: the retrieval job failed (ask again).
 */
export type RestoreState = 'archived' | 'in-progress' | 'available' | 'failed';

export interface RestoreStatus {
  state: RestoreState;
  /** The Glacier retrieval job that gives (or will give) the bytes. */
  job?: string;
  /** When a restored S3 copy or a Glacier job's output goes away. */
  expiresAt?: Date;
  /** What the service said of a failure. */
  message?: string;
}

export interface ListedObject {
  ref: string;
  /** The S3 key, or the Glacier archive description. */
  name: string;
  sizeBytes: number;
  createdAt?: Date;
  storageClass?: string;
}

/** A store's listing: S3 answers at once; Glacier's inventory is a job that takes hours. */
export type Inventory =
  | { state: 'ready'; objects: ListedObject[]; takenAt?: Date }
  | { state: 'in-progress'; job: string; startedAt?: Date }
  | { state: 'failed'; job: string; message?: string };

/**
 * Where archives go: an S3 bucket (storage classes) or a Glacier vault. The
 * engine drives multipart uploads itself (part by part, journaled, so an
 * interrupted upload resumes), hashes the bytes itself (tree hashes on the
 * worker pool) and checks what it reads back. Failures are SnaplineError.
 */
export interface ArchiveStore {
  readonly target: ArchiveTarget;
  /** Bucket or vault name. */
  readonly location: string;
  /**
   * The part size for an object of at most `maxBytes`: objects up to this size
   * go in one request (putObject), larger ones in parts of exactly this size
   * but the last. Pure.
   */
  partSizeFor(maxBytes: number): number;
  /**
   * Stores `data` as one object named `name` (S3 key, Glacier description).
   * S3: idempotent; Glacier: each call makes a new archive.
   */
  putObject(name: string, data: Uint8Array, treeHash: string, options?: ObjectOptions): Promise<StoredObject>;
  /** Starts a multipart upload; returns its upload id. */
  startUpload(name: string, partSize: number, options?: ObjectOptions): Promise<string>;
  /** Uploads part `partNumber` (1-based) at byte `offset`. Idempotent for the same bytes. */
  putPart(name: string, uploadId: string, partNumber: number, offset: number, data: Uint8Array, treeHash: string): Promise<UploadedPart>;
  /** The parts the service holds for an upload; NOT_FOUND when the upload is gone (aborted, completed, or expired). */
  listParts(name: string, uploadId: string): Promise<UploadedPart[]>;
  /** Seals an upload from its parts, ascending; `treeHash` covers the whole object. */
  completeUpload(name: string, uploadId: string, parts: readonly UploadedPart[], sizeBytes: number, treeHash: string): Promise<StoredObject>;
  /** Idempotent: an upload already gone is fine. */
  abortUpload(name: string, uploadId: string): Promise<void>;
  /**
   * Bytes [start, end) of an object; with `end` undefined, from `start` to
   * its end. BAD_STATE while it is not readable (not restored, job not
   * done). `treeHash` is the service's tree hash (hex) of the range when it
   * sends one (Glacier, for megabyte-aligned ranges); the caller checks it.
   */
  getRange(ref: string, start: number, end: number | undefined, job?: string): Promise<{ data: Buffer; treeHash?: string }>;
  /** Asks for an object to be made readable (S3 RestoreObject, Glacier archive-retrieval job). */
  requestRestore(ref: string, options: { tier: RetrievalTier; days: number; description?: string }): Promise<RestoreStatus>;
  /** Whether an object is readable now; `job` is the retrieval job known for it (Glacier). */
  restoreStatus(ref: string, job?: string): Promise<RestoreStatus>;
  /** The objects under an S3 key prefix; for Glacier the vault's inventory (started when `start` and none is at hand). */
  inventory(options: { prefix?: string; start: boolean }): Promise<Inventory>;
  /** Idempotent: deleting an object that is gone succeeds. */
  deleteObject(ref: string): Promise<void>;
  /** Whether the bucket or vault exists (and this identity may use it: ACCESS_DENIED otherwise). Reads nothing else. */
  locationExists(): Promise<boolean>;
  /**
   * S3 only: makes the bucket in the Region of the connection (its location
   * constraint; none in us-east-1). A bucket this account owns already is fine;
   * CONFLICT when another account owns the name.
   */
  createLocation?(): Promise<void>;
}

// ---- ECS restore tasks -----------------------------------------------------

/** Where a task runs and how it reaches the network (from the connection's ECS settings). */
export interface TaskPlacement {
  cluster: string;
  taskDefinition: string;
  launchType?: 'FARGATE' | 'EC2' | 'EXTERNAL';
  capacityProviderStrategy?: Array<{ capacityProvider: string; weight?: number; base?: number }>;
  /** awsvpc networking; absent for bridge or host networking. */
  network?: { subnets: string[]; securityGroups?: string[]; assignPublicIp?: boolean };
}

/** One task to start: the placement, the command of one container, and how to find the task again. */
export interface TaskLaunch extends TaskPlacement {
  /** The container whose command is overridden. */
  container: string;
  command: string[];
  environment?: Record<string, string>;
  tags: Record<string, string>;
  /** Task definition tags are copied onto the task too. */
  propagateTags?: boolean;
  /** The group the task belongs to; ListTasks finds tasks by it. */
  startedBy: string;
  /** Idempotency: starting again with the same token returns the same task and starts none. */
  clientToken: string;
}

export interface ContainerState {
  name: string;
  lastStatus?: string;
  /** Absent while it runs, and when it never ran or its host went away. */
  exitCode?: number;
  reason?: string;
}

export interface TaskState {
  taskArn: string;
  /** PROVISIONING, PENDING, RUNNING, DEPROVISIONING, STOPPED... */
  lastStatus: string;
  desiredStatus: string;
  /** TaskFailedToStart, EssentialContainerExited, UserInitiated, SpotInterruption, TerminationNotice... */
  stopCode?: string;
  stoppedReason?: string;
  startedBy?: string;
  tags: Record<string, string>;
  containers: ContainerState[];
  createdAt?: Date;
  stoppedAt?: Date;
}

/** RunTask's answer: the task, or why none could be placed (RESOURCE:MEMORY, capacity unavailable, ...). */
export interface LaunchOutcome {
  task?: TaskState;
  failures: Array<{ reason: string; detail?: string }>;
}

/** A task definition's containers, and where each one's awslogs output goes. */
export interface TaskDefinitionInfo {
  arn: string;
  /** none, bridge, awsvpc or host; absent means bridge. ECS runs awsvpc with a network configuration only, the others only without. */
  networkMode?: string;
  containers: Array<{ name: string; essential: boolean; logGroup?: string; logStreamPrefix?: string }>;
}

/** What the ECS restore driver needs from a container service. Failures are SnaplineError. */
export interface ContainerTasks {
  describeTaskDefinition(taskDefinition: string): Promise<TaskDefinitionInfo>;
  /** RunTask for one task. Idempotent by clientToken. */
  launch(launch: TaskLaunch): Promise<LaunchOutcome>;
  /** The tasks that exist among `taskArns` (tags included); unknown ones are absent. */
  describe(cluster: string, taskArns: readonly string[]): Promise<TaskState[]>;
  /**
   * ARNs of the cluster's tasks with this desired status, of one task
   * definition family when given, every page. ECS lists a stopped task for
   * about an hour after it stopped. (No startedBy filter: ECS takes it only
   * alone, and then lists running tasks only.)
   */
  list(cluster: string, filter: { desiredStatus: 'RUNNING' | 'STOPPED'; family?: string }): Promise<string[]>;
  /** Idempotent: stopping a stopped task succeeds. */
  stop(cluster: string, taskArn: string, reason: string): Promise<void>;
}

export interface LogLine {
  timestamp: Date;
  message: string;
}

/** Reads a log stream forward. Failures are SnaplineError. */
export interface LogReader {
  /**
   * The lines after `token` (from the start when absent) and the token to go
   * on from; the same token back when nothing is new, a new one when there
   * may be more (a page can be empty and still not be the end). A stream
   * that does not exist yet reads as empty with the token unchanged. A token
   * the service refuses (they expire after 24 hours) is dropped and the
   * stream read from its start again: `restarted` says so.
   */
  readForward(group: string, stream: string, token: string | undefined): Promise<{ lines: LogLine[]; token: string | undefined; restarted?: boolean }>;
}
