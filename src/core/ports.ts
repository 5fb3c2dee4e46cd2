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
  tags: Record<string, string>;
  stateMessage?: string;
}

/** Snapshot bookkeeping (EC2). */
export interface SnapshotCatalog {
  /** The snapshots among `snapshotIds` that exist; unknown ids are simply absent. */
  describeSnapshots(snapshotIds: readonly string[]): Promise<RemoteSnapshot[]>;
  /** Idempotent: deleting a snapshot that is already gone succeeds. */
  deleteSnapshot(snapshotId: string): Promise<void>;
  createTags(snapshotId: string, tags: Record<string, string>): Promise<void>;
  encryptionByDefault(): Promise<boolean>;
}
