/** The records the block index keeps, and how they map from its rows. */

import type { BlockEntry, BlockInput, RunStartRecord, SnapshotRecord, SnapshotState, TargetRecord, TargetState, VolumeRecord } from '../core/index-ports.js';
export type { BlockEntry, BlockInput, RunStartRecord, SnapshotRecord, SnapshotState, TargetRecord, TargetState, VolumeRecord };

/** A snapshots row joined with its volume name and base snapshot id. */
export interface SnapshotRow {
  snapshot_key: number;
  snapshot_id: string;
  volume_key: number;
  volume: string;
  parent_snapshot_id: string | null;
  base_key: number | null;
  base_snapshot_id: string | null;
  state: SnapshotState;
  volume_size_gib: number;
  source_bytes: number;
  encrypted: number;
  description: string | null;
  started_at: number;
  completed_at: number | null;
  changed_blocks: number;
  run_options: string | null;
  error_reason: string | null;
  map_key: number | null;
}

/** The select list that produces a SnapshotRow from `snapshots s`. */
export const SNAPSHOT_ROW_SQL = `
  SELECT s.snapshot_key, s.snapshot_id, s.volume_key, v.name AS volume, s.parent_snapshot_id,
         s.base_key, b.snapshot_id AS base_snapshot_id, s.state, s.volume_size_gib, s.source_bytes,
         s.encrypted, s.description, s.started_at, s.completed_at, s.changed_blocks, s.run_options,
         s.error_reason, s.map_key
  FROM snapshots s
  JOIN volumes v ON v.volume_key = s.volume_key
  LEFT JOIN snapshots b ON b.snapshot_key = s.base_key`;

export function snapshotRecordOf(row: SnapshotRow): SnapshotRecord {
  return {
    snapshotId: row.snapshot_id,
    volume: row.volume,
    parentSnapshotId: row.parent_snapshot_id,
    baseSnapshotId: row.base_snapshot_id,
    state: row.state,
    volumeSizeGiB: row.volume_size_gib,
    sourceBytes: row.source_bytes,
    encrypted: row.encrypted === 1,
    description: row.description,
    startedAt: new Date(row.started_at),
    completedAt: row.completed_at === null ? null : new Date(row.completed_at),
    changedBlocks: row.changed_blocks,
    runOptions: row.run_options,
    errorReason: row.error_reason,
  };
}

export interface VolumeRow {
  volume_key: number;
  name: string;
  source_path: string;
  size_bytes: number;
  created_at: number;
}

export function volumeRecordOf(row: VolumeRow): VolumeRecord {
  return { name: row.name, sourcePath: row.source_path, sizeBytes: row.size_bytes, createdAt: new Date(row.created_at) };
}

export interface TargetRow {
  path: string;
  snapshot_id: string | null;
  state: TargetState;
  size_bytes: number;
  updated_at: number;
}

export function targetRecordOf(row: TargetRow): TargetRecord {
  return {
    path: row.path,
    snapshotId: row.snapshot_id,
    state: row.state,
    sizeBytes: row.size_bytes,
    updatedAt: new Date(row.updated_at),
  };
}

/** States of a run that is still open (the journal is live). */
export const OPEN_STATES: ReadonlySet<SnapshotState> = new Set(['pending', 'completing']);
