/**
 * The archive records of the index (schema migration 2): archives, their
 * remote objects with the last restore asked for each, and the journal of a
 * multipart upload in progress. Each method maps
 * SQLite's errors and runs in its own transaction (IndexAccess); the
 * statements are prepared once.
 */
import type { Database } from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { isUniqueViolation } from './sqlite-errors.js';
import { optionalText, requireInteger, requireText } from './validate.js';

import type { ArchiveCatalog, ArchiveObjectRecord, ArchiveRecord, ArchiveState, ArchiveTargetName, BeginArchiveInput, ObjectUploadRecord, UploadPartRecord } from '../core/index-ports.js';
export type { ArchiveObjectRecord, ArchiveRecord, ArchiveState, ArchiveTargetName, BeginArchiveInput, ObjectUploadRecord, UploadPartRecord };

interface ArchiveRow {
  archive_key: number;
  archive_id: string;
  target: ArchiveTargetName;
  location: string;
  prefix: string;
  snapshot_id: string;
  volume: string;
  parent_archive_id: string | null;
  storage_class: string | null;
  segment_blocks: number;
  state: ArchiveState;
  manifest_ref: string | null;
  tree_hash: string | null;
  size_bytes: number;
  block_count: number;
  created_at: number;
  completed_at: number | null;
  deleted_at: number | null;
}

interface ObjectRow {
  name: string;
  ref: string;
  size_bytes: number;
  tree_hash: string;
  entry: string | null;
  restore_job: string | null;
  restore_tier: string | null;
  restore_requested_at: number | null;
}

const ARCHIVE_ROW_SQL = `
  SELECT a.*, p.archive_id AS parent_archive_id
  FROM archives a LEFT JOIN archives p ON p.archive_key = a.parent_archive_key`;

function archiveRecordOf(row: ArchiveRow): ArchiveRecord {
  return {
    archiveId: row.archive_id,
    target: row.target,
    location: row.location,
    prefix: row.prefix,
    snapshotId: row.snapshot_id,
    volume: row.volume,
    parentArchiveId: row.parent_archive_id,
    storageClass: row.storage_class,
    segmentBlocks: row.segment_blocks,
    state: row.state,
    manifestRef: row.manifest_ref,
    treeHash: row.tree_hash,
    sizeBytes: row.size_bytes,
    blockCount: row.block_count,
    createdAt: new Date(row.created_at),
    completedAt: row.completed_at === null ? null : new Date(row.completed_at),
    deletedAt: row.deleted_at === null ? null : new Date(row.deleted_at),
  };
}

function objectRecordOf(row: ObjectRow): ArchiveObjectRecord {
  return {
    name: row.name,
    ref: row.ref,
    sizeBytes: row.size_bytes,
    treeHash: row.tree_hash,
    entry: row.entry,
    restoreJob: row.restore_job,
    restoreTier: row.restore_tier,
    restoreRequestedAt: row.restore_requested_at === null ? null : new Date(row.restore_requested_at),
  };
}

function notFound(archiveId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `archive ${archiveId} is not in the index`, {
    details: { archiveId },
    hint: 'list the archives with `snapline archive status`, or what the store holds with `snapline archive inventory`',
  });
}

function prepare(db: Database) {
  return {
    byId: db.prepare(`${ARCHIVE_ROW_SQL} WHERE a.archive_id = ?`),
    all: db.prepare(`${ARCHIVE_ROW_SQL} ORDER BY a.created_at, a.archive_key`),
    live: db.prepare(`${ARCHIVE_ROW_SQL} WHERE a.target = ? AND a.location = ? AND a.snapshot_id = ? AND a.state <> 'deleted'`),
    latest: db.prepare(
      `${ARCHIVE_ROW_SQL} WHERE a.volume = ? AND a.target = ? AND a.location = ? AND a.state = 'archived'
       ORDER BY a.completed_at DESC, a.archive_key DESC LIMIT 1`,
    ),
    children: db.prepare(`${ARCHIVE_ROW_SQL} WHERE a.parent_archive_key = ? AND a.state <> 'deleted'`),
    keyOf: db.prepare('SELECT archive_key FROM archives WHERE archive_id = ?').pluck(),
    insert: db.prepare(
      `INSERT INTO archives (archive_id, target, location, prefix, snapshot_id, volume, parent_archive_key, storage_class,
         segment_blocks, state, created_at)
       VALUES (@archive_id, @target, @location, @prefix, @snapshot_id, @volume, @parent_archive_key, @storage_class,
         @segment_blocks, 'uploading', @created_at)`,
    ),
    complete: db.prepare(
      `UPDATE archives SET state = 'archived', manifest_ref = @manifest_ref, tree_hash = @tree_hash, completed_at = @completed_at,
         size_bytes = (SELECT coalesce(sum(size_bytes), 0) FROM archive_objects WHERE archive_key = @key),
         block_count = @block_count
       WHERE archive_key = @key`,
    ),
    markDeleted: db.prepare(`UPDATE archives SET state = 'deleted', deleted_at = ? WHERE archive_key = ?`),

    objects: db.prepare('SELECT * FROM archive_objects WHERE archive_key = ? ORDER BY name'),
    putObject: db.prepare(
      `INSERT INTO archive_objects (archive_key, name, ref, size_bytes, tree_hash, entry)
       VALUES (@key, @name, @ref, @size_bytes, @tree_hash, @entry)
       ON CONFLICT (archive_key, name) DO UPDATE SET ref = excluded.ref, size_bytes = excluded.size_bytes,
         tree_hash = excluded.tree_hash, entry = excluded.entry, restore_job = NULL, restore_tier = NULL, restore_requested_at = NULL`,
    ),
    setRestore: db.prepare(
      `UPDATE archive_objects SET restore_job = @job, restore_tier = @tier, restore_requested_at = @at
       WHERE archive_key = @key AND name = @name`,
    ),
    dropObjects: db.prepare('DELETE FROM archive_objects WHERE archive_key = ?'),

    upload: db.prepare('SELECT upload_id, part_size, started_at FROM archive_uploads WHERE archive_key = ? AND name = ?'),
    parts: db.prepare(
      'SELECT part_number, size_bytes, checksum FROM archive_upload_parts WHERE archive_key = ? AND name = ? ORDER BY part_number',
    ),
    beginUpload: db.prepare(
      `INSERT INTO archive_uploads (archive_key, name, upload_id, part_size, started_at) VALUES (@key, @name, @upload_id, @part_size, @started_at)`,
    ),
    putPart: db.prepare(
      `INSERT OR REPLACE INTO archive_upload_parts (archive_key, name, part_number, size_bytes, checksum)
       VALUES (@key, @name, @part_number, @size_bytes, @checksum)`,
    ),
    dropParts: db.prepare('DELETE FROM archive_upload_parts WHERE archive_key = ? AND name = ?'),
    dropUpload: db.prepare('DELETE FROM archive_uploads WHERE archive_key = ? AND name = ?'),
    dropAllParts: db.prepare('DELETE FROM archive_upload_parts WHERE archive_key = ?'),
    dropAllUploads: db.prepare('DELETE FROM archive_uploads WHERE archive_key = ?'),
  };
}

/** The archive tables (ArchiveCatalog). */
export class ArchiveCatalogStore implements ArchiveCatalog {
  readonly #access: IndexAccess;
  readonly #sql: ReturnType<typeof prepare>;

  constructor(access: IndexAccess) {
    this.#access = access;
    this.#sql = prepare(access.db);
  }

  get(archiveId: string): ArchiveRecord | undefined {
    return this.#access.run(() => {
      const row = this.#sql.byId.get(archiveId) as ArchiveRow | undefined;
      return row === undefined ? undefined : archiveRecordOf(row);
    });
  }

  list(): ArchiveRecord[] {
    return this.#access.run(() => (this.#sql.all.all() as ArchiveRow[]).map(archiveRecordOf));
  }

  live(target: ArchiveTargetName, location: string, snapshotId: string): ArchiveRecord | undefined {
    return this.#access.run(() => {
      const row = this.#sql.live.get(target, location, snapshotId) as ArchiveRow | undefined;
      return row === undefined ? undefined : archiveRecordOf(row);
    });
  }

  latest(volume: string, target: ArchiveTargetName, location: string): ArchiveRecord | undefined {
    return this.#access.run(() => {
      const row = this.#sql.latest.get(volume, target, location) as ArchiveRow | undefined;
      return row === undefined ? undefined : archiveRecordOf(row);
    });
  }

  children(archiveId: string): ArchiveRecord[] {
    return this.#access.run(() => (this.#sql.children.all(this.#key(archiveId)) as ArchiveRow[]).map(archiveRecordOf));
  }

  begin(input: BeginArchiveInput): ArchiveRecord {
    return this.#access.durably(() => {
      const archiveId = requireText('archiveId', input?.archiveId);
      if (input.target !== 's3' && input.target !== 'glacier') {
        throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `target must be s3 or glacier, got ${String(input.target)}`);
      }
      const parentId = optionalText('parentArchiveId', input.parentArchiveId);
      let parentKey: number | null = null;
      if (parentId !== null) {
        const parent = this.get(parentId);
        if (parent === undefined) throw notFound(parentId);
        if (parent.state !== 'archived') {
          throw new SnaplineError(ErrorCodes.BAD_STATE, `parent archive ${parentId} is ${parent.state}, not archived`, { details: { archiveId: parentId } });
        }
        parentKey = this.#key(parentId);
      }
      try {
        this.#sql.insert.run({
          archive_id: archiveId,
          target: input.target,
          location: requireText('location', input.location),
          prefix: requireText('prefix', input.prefix),
          snapshot_id: requireText('snapshotId', input.snapshotId),
          volume: requireText('volume', input.volume),
          parent_archive_key: parentKey,
          storage_class: optionalText('storageClass', input.storageClass),
          segment_blocks: requireInteger('segmentBlocks', input.segmentBlocks, 1, 1 << 24),
          created_at: Date.now(),
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${input.snapshotId} already has an archive in ${input.target} ${input.location}, or ${archiveId} is taken`, {
          details: { snapshotId: input.snapshotId, archiveId },
        });
      }
      return this.get(archiveId)!;
    });
  }

  complete(archiveId: string, manifest: { ref: string; treeHash: string; blockCount: number }): ArchiveRecord {
    return this.#access.durably(() => {
      const current = this.#require(archiveId);
      if (current.state === 'archived') return current;
      if (current.state !== 'uploading') {
        throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${archiveId} is ${current.state}, not uploading`, { details: { archiveId } });
      }
      this.#sql.complete.run({
        key: this.#key(archiveId),
        manifest_ref: requireText('manifest ref', manifest.ref),
        tree_hash: requireText('tree hash', manifest.treeHash),
        block_count: requireInteger('blockCount', manifest.blockCount, 0, Number.MAX_SAFE_INTEGER),
        completed_at: Date.now(),
      });
      return this.get(archiveId)!;
    });
  }

  markDeleted(archiveId: string): void {
    return this.#access.durably(() => {
      const current = this.#require(archiveId);
      if (current.state === 'deleted') return;
      const live = this.children(archiveId);
      if (live.length > 0) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `archive ${archiveId} is the parent of ${live.map((a) => a.archiveId).join(', ')}`, {
          details: { archiveId },
          hint: 'delete the archives that build on it first',
        });
      }
      const key = this.#key(archiveId);
      this.#sql.dropAllParts.run(key);
      this.#sql.dropAllUploads.run(key);
      this.#sql.dropObjects.run(key);
      this.#sql.markDeleted.run(Date.now(), key);
    });
  }

  objects(archiveId: string): ArchiveObjectRecord[] {
    return this.#access.run(() => (this.#sql.objects.all(this.#key(archiveId)) as ObjectRow[]).map(objectRecordOf));
  }

  recordObject(archiveId: string, object: { name: string; ref: string; sizeBytes: number; treeHash: string; entry: string | null }): void {
    return this.#access.durably(() => {
      const key = this.#key(archiveId);
      const name = requireText('object name', object?.name);
      this.#sql.putObject.run({
        key,
        name,
        ref: requireText('object ref', object.ref),
        size_bytes: requireInteger('sizeBytes', object.sizeBytes, 0, Number.MAX_SAFE_INTEGER),
        tree_hash: requireText('treeHash', object.treeHash),
        entry: optionalText('entry', object.entry),
      });
      this.#sql.dropParts.run(key, name);
      this.#sql.dropUpload.run(key, name);
    });
  }

  recordRestore(archiveId: string, name: string, restore: { job: string | null; tier: string; requestedAt: Date }): void {
    return this.#access.durably(() => {
      const changed = this.#sql.setRestore.run({
        key: this.#key(archiveId),
        name,
        job: restore.job,
        tier: requireText('tier', restore.tier),
        at: restore.requestedAt.getTime(),
      }).changes;
      if (changed === 0) throw new SnaplineError(ErrorCodes.NOT_FOUND, `archive ${archiveId} has no object ${name}`);
    });
  }

  upload(archiveId: string, name: string): ObjectUploadRecord | undefined {
    return this.#access.run(() => {
      const key = this.#key(archiveId);
      const row = this.#sql.upload.get(key, name) as { upload_id: string; part_size: number; started_at: number } | undefined;
      if (row === undefined) return undefined;
      const parts = this.#sql.parts.all(key, name) as Array<{ part_number: number; size_bytes: number; checksum: string }>;
      return {
        uploadId: row.upload_id,
        partSize: row.part_size,
        startedAt: new Date(row.started_at),
        parts: parts.map((p) => ({ partNumber: p.part_number, sizeBytes: p.size_bytes, checksum: p.checksum })),
      };
    });
  }

  beginUpload(archiveId: string, name: string, uploadId: string, partSize: number): void {
    return this.#access.durably(() => {
      const key = this.#key(archiveId);
      this.#sql.dropParts.run(key, name);
      this.#sql.dropUpload.run(key, name);
      this.#sql.beginUpload.run({
        key,
        name: requireText('object name', name),
        upload_id: requireText('uploadId', uploadId),
        part_size: requireInteger('partSize', partSize, 1, Number.MAX_SAFE_INTEGER),
        started_at: Date.now(),
      });
    });
  }

  recordPart(archiveId: string, name: string, part: UploadPartRecord): void {
    return this.#access.write(() => {
      const key = this.#key(archiveId);
      if (this.#sql.upload.get(key, name) === undefined) {
        throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${archiveId} has no upload of ${name} in progress`);
      }
      this.#sql.putPart.run({
        key,
        name,
        part_number: requireInteger('partNumber', part?.partNumber, 1, 10_000),
        size_bytes: requireInteger('sizeBytes', part.sizeBytes, 1, Number.MAX_SAFE_INTEGER),
        checksum: requireText('checksum', part.checksum),
      });
    });
  }

  dropUpload(archiveId: string, name: string): void {
    return this.#access.durably(() => {
      const key = this.#key(archiveId);
      this.#sql.dropParts.run(key, name);
      this.#sql.dropUpload.run(key, name);
    });
  }

  #require(archiveId: string): ArchiveRecord {
    const record = this.get(requireText('archiveId', archiveId));
    if (record === undefined) throw notFound(archiveId);
    return record;
  }

  #key(archiveId: string): number {
    const key = this.#sql.keyOf.get(requireText('archiveId', archiveId)) as number | undefined;
    if (key === undefined) throw notFound(archiveId);
    return key;
  }
}
