/** The SQLite block index (see block-index.ts). */
export { BlockIndex } from './block-index.js';
export type { BeginRunInput, BlockRange, ImportSnapshotInput, StorageStats } from './block-index.js';
export type { HeldLock } from './locks.js';
export type { StoreRef } from './stores.js';
export type { TrackedScan, TrackerHistory, TrackerRecord } from './trackers.js';
export type {
  ArchiveObjectRecord,
  ArchiveRecord,
  ArchiveState,
  ArchiveTargetName,
  BeginArchiveInput,
  ObjectUploadRecord,
  UploadPartRecord,
} from './archives.js';
export type { CopyRecord, CopyState, NewCopy, SnapshotCopies } from './copies.js';
export type { DrillKind, DrillRecord, NewDrill } from './drills.js';
export type { EcsJobRecord, EcsJobState, EcsShardRecord, EcsShardState, EcsSourceKind, EcsTaskRecord, NewEcsJob } from './ecs-jobs.js';
export type {
  BlockEntry,
  BlockInput,
  RunStartRecord,
  SnapshotRecord,
  SnapshotState,
  TargetRecord,
  TargetState,
  VolumeRecord,
} from './records.js';
export { APPLICATION_ID, SCHEMA_VERSION } from './schema.js';
