import type { Database } from 'better-sqlite3';
import { BLOCKS_PER_GIB, MAX_VOLUME_SIZE_GIB } from '../core/constants.js';
import { TRACKER_TABLES } from './trackers.js';
import { allowDeletingCopies, createCopiesTable } from './copies.js';

/** `PRAGMA application_id` of a snapline index: "SNPL". A file with another id is refused. */
export const APPLICATION_ID = 0x534e504c;

/**
 * Block rows are keyed by one integer: key * BLOCK_KEY_SPAN + block index. The
 * span is the block count of the largest volume EBS accepts (64 TiB), so the
 * rows of one key are contiguous and ascending by block index, and the
 * rowid table stores each block in about 43 bytes.
 */
export const BLOCK_KEY_SPAN = MAX_VOLUME_SIZE_GIB * BLOCKS_PER_GIB;

/**
 * Migrations in order: migrations[i] takes the schema from version i to i + 1
 * (user_version 0 is an empty file). Each runs inside the transaction that
 * also sets user_version. Append only; never edit a released step.
 */
export const migrations: ReadonlyArray<(db: Database) => void> = [
  (db) => {
    db.exec(`
      -- Counters: next_map_key (keys of committed maps, never reused) and
      -- maps_generation (bumped whenever an existing map is rewritten or dropped).
      CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
      ) WITHOUT ROWID;
      INSERT INTO meta (name, value) VALUES ('next_map_key', 1), ('maps_generation', 0);

      CREATE TABLE volumes (
        volume_key  INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        source_path TEXT NOT NULL,
        size_bytes  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL
      );

      -- map_key: where the snapshot's own rows live in blocks (completed, or
      -- deleted but still needed by a dependent); null for open runs, errors and
      -- deleted snapshots whose rows were folded or dropped.
      -- map_checksum: SHA-256 over those rows (see maps.ts), for check().
      CREATE TABLE snapshots (
        snapshot_key       INTEGER PRIMARY KEY,
        snapshot_id        TEXT NOT NULL UNIQUE,
        volume_key         INTEGER NOT NULL REFERENCES volumes (volume_key),
        parent_snapshot_id TEXT,
        base_key           INTEGER REFERENCES snapshots (snapshot_key),
        state              TEXT NOT NULL CHECK (state IN ('pending', 'completing', 'completed', 'error', 'deleted')),
        volume_size_gib    INTEGER NOT NULL,
        source_bytes       INTEGER NOT NULL,
        encrypted          INTEGER NOT NULL CHECK (encrypted IN (0, 1)),
        description        TEXT,
        started_at         INTEGER NOT NULL,
        completed_at       INTEGER,
        completed_seq      INTEGER UNIQUE,
        changed_blocks     INTEGER NOT NULL DEFAULT 0,
        run_options        TEXT,
        error_reason       TEXT,
        map_key            INTEGER UNIQUE,
        map_checksum       BLOB
      );
      CREATE UNIQUE INDEX snapshots_one_open_run ON snapshots (volume_key) WHERE state IN ('pending', 'completing');
      CREATE INDEX snapshots_by_base ON snapshots (base_key) WHERE base_key IS NOT NULL;
      CREATE INDEX snapshots_by_volume ON snapshots (volume_key, started_at);

      -- Committed block maps: id = map_key * BLOCK_KEY_SPAN + block index.
      CREATE TABLE blocks (
        id     INTEGER PRIMARY KEY,
        digest BLOB NOT NULL
      );
      -- The journal of open runs, both keyed id = snapshot_key * BLOCK_KEY_SPAN + block index:
      -- blocks the service acknowledged, and blocks about to be uploaded and not yet acknowledged.
      CREATE TABLE run_blocks (
        id     INTEGER PRIMARY KEY,
        digest BLOB NOT NULL
      );
      CREATE TABLE run_intents (
        id     INTEGER PRIMARY KEY,
        digest BLOB NOT NULL
      );

      CREATE TABLE targets (
        path        TEXT PRIMARY KEY,
        snapshot_id TEXT,
        state       TEXT NOT NULL CHECK (state IN ('complete', 'incomplete')),
        size_bytes  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
      );

      CREATE TABLE locks (
        name               TEXT PRIMARY KEY,
        pid                INTEGER NOT NULL,
        host               TEXT NOT NULL,
        started_at         INTEGER NOT NULL,
        process_started_at INTEGER NOT NULL,
        token              TEXT NOT NULL
      );
    `);
  },
  (db) => {
    db.exec(`
      -- The archive tier: one row per archive of a snapshot (a set of remote
      -- objects: block segments and a manifest) in an S3 bucket or a Glacier vault.
      -- archive_id: snapline's name for it (ar-...); prefix: the S3 key prefix of
      -- its objects, or the Glacier description prefix. parent_archive_key: the
      -- archive an incremental one builds on (null: a full archive).
      -- manifest_ref, tree_hash: the manifest's S3 key or Glacier archive id and
      -- its tree hash (hex), set when it is written; size_bytes: all its objects.
      CREATE TABLE archives (
        archive_key        INTEGER PRIMARY KEY,
        archive_id         TEXT NOT NULL UNIQUE,
        target             TEXT NOT NULL CHECK (target IN ('s3', 'glacier')),
        location           TEXT NOT NULL,
        prefix             TEXT NOT NULL,
        snapshot_id        TEXT NOT NULL,
        volume             TEXT NOT NULL,
        parent_archive_key INTEGER REFERENCES archives (archive_key),
        storage_class      TEXT,
        segment_blocks     INTEGER NOT NULL,
        state              TEXT NOT NULL CHECK (state IN ('uploading', 'archived', 'deleted')),
        manifest_ref       TEXT,
        tree_hash          TEXT,
        size_bytes         INTEGER NOT NULL DEFAULT 0,
        block_count        INTEGER NOT NULL DEFAULT 0,
        created_at         INTEGER NOT NULL,
        completed_at       INTEGER,
        deleted_at         INTEGER
      );
      CREATE UNIQUE INDEX archives_one_live_per_place ON archives (target, location, snapshot_id) WHERE state <> 'deleted';
      CREATE INDEX archives_by_volume ON archives (volume, created_at);
      CREATE INDEX archives_by_parent ON archives (parent_archive_key) WHERE parent_archive_key IS NOT NULL;

      -- The remote objects of an archive, by name (segment-000000..., manifest):
      -- ref is the S3 key or the Glacier archive id; entry the JSON the manifest
      -- holds for a segment. restore_*: the last restore (S3 RestoreObject) or
      -- retrieval job (Glacier) asked for it.
      CREATE TABLE archive_objects (
        archive_key          INTEGER NOT NULL REFERENCES archives (archive_key),
        name                 TEXT NOT NULL,
        ref                  TEXT NOT NULL,
        size_bytes           INTEGER NOT NULL,
        tree_hash            TEXT NOT NULL,
        entry                TEXT,
        restore_job          TEXT,
        restore_tier         TEXT,
        restore_requested_at INTEGER,
        PRIMARY KEY (archive_key, name)
      ) WITHOUT ROWID;

      -- The journal of an object's multipart upload in progress: its upload id
      -- and part size, and the parts the service acknowledged with their S3 ETag
      -- or Glacier tree hash (hex). Dropped when the object is recorded.
      CREATE TABLE archive_uploads (
        archive_key INTEGER NOT NULL REFERENCES archives (archive_key),
        name        TEXT NOT NULL,
        upload_id   TEXT NOT NULL,
        part_size   INTEGER NOT NULL,
        started_at  INTEGER NOT NULL,
        PRIMARY KEY (archive_key, name)
      ) WITHOUT ROWID;
      CREATE TABLE archive_upload_parts (
        archive_key INTEGER NOT NULL,
        name        TEXT NOT NULL,
        part_number INTEGER NOT NULL,
        size_bytes  INTEGER NOT NULL,
        checksum    TEXT NOT NULL,
        PRIMARY KEY (archive_key, name, part_number),
        FOREIGN KEY (archive_key, name) REFERENCES archive_uploads (archive_key, name)
      ) WITHOUT ROWID;
    `);
  },
  (db) => {
    db.exec(`
      -- ECS restore jobs: a pending snapshot (snapshot_id, once started; its run
      -- in snapshots) filled by ECS tasks, one per shard (a block range) of the
      -- source (a snapshot or an archive). started_by groups the job's tasks in
      -- ECS. A job stays open (running or failed) until completed, or abandoned
      -- when its snapshot is gone; one open job per source.
      CREATE TABLE ecs_jobs (
        job_id          TEXT PRIMARY KEY,
        source_kind     TEXT NOT NULL CHECK (source_kind IN ('snapshot', 'archive')),
        source          TEXT NOT NULL,
        volume          TEXT NOT NULL,
        snapshot_id     TEXT,
        cluster         TEXT NOT NULL,
        task_definition TEXT NOT NULL,
        started_by      TEXT NOT NULL UNIQUE,
        state           TEXT NOT NULL CHECK (state IN ('running', 'failed', 'completed', 'abandoned')),
        message         TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX ecs_jobs_one_open_per_source ON ecs_jobs (source) WHERE state IN ('running', 'failed');

      -- attempt: the shard's current attempt (0 before the first); launch: the
      -- RunTask calls of this attempt that placed nothing (capacity), part of
      -- the clientToken so that a retried call after a crash is the same call.
      CREATE TABLE ecs_shards (
        job_id     TEXT NOT NULL REFERENCES ecs_jobs (job_id),
        shard      INTEGER NOT NULL,
        from_block INTEGER NOT NULL,
        to_block   INTEGER NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('waiting', 'running', 'succeeded', 'failed')),
        attempt    INTEGER NOT NULL DEFAULT 0,
        launch     INTEGER NOT NULL DEFAULT 0,
        message    TEXT,
        PRIMARY KEY (job_id, shard)
      ) WITHOUT ROWID;

      -- Every task a job started, with what ECS last said of it; exit_code is
      -- the worker container's.
      CREATE TABLE ecs_tasks (
        task_arn       TEXT PRIMARY KEY,
        job_id         TEXT NOT NULL,
        shard          INTEGER NOT NULL,
        attempt        INTEGER NOT NULL,
        last_status    TEXT NOT NULL,
        stop_code      TEXT,
        stopped_reason TEXT,
        exit_code      INTEGER,
        created_at     INTEGER NOT NULL,
        stopped_at     INTEGER,
        FOREIGN KEY (job_id, shard) REFERENCES ecs_shards (job_id, shard)
      );
      CREATE INDEX ecs_tasks_by_shard ON ecs_tasks (job_id, shard, attempt);
    `);
  },
  (db) => {
    db.exec(`
      -- A backup run about to start its snapshot: recorded before StartSnapshot
      -- with the run's own random ClientToken and the exact StartSnapshot
      -- arguments (JSON), so that only a resume of this run (after a crash
      -- between StartSnapshot and beginRun) sends that token again. beginRun
      -- drops the row of its volume. run_options: the run's identity, as in
      -- snapshots.run_options.
      CREATE TABLE run_starts (
        volume_key   INTEGER PRIMARY KEY REFERENCES volumes (volume_key),
        client_token TEXT NOT NULL UNIQUE,
        start_input  TEXT NOT NULL,
        run_options  TEXT,
        created_at   INTEGER NOT NULL
      );
    `);
  },
  (db) => {
    db.exec(`
      -- The store each volume lives in (see stores.ts): store is "aws:ACCOUNT:REGION"
      -- or "snapline:STOREID" (a local endpoint's data), label the same in words.
      -- Recorded when a command bound to a store first writes the volume; volumes
      -- without a row are from before this step, or never written by such a command.
      CREATE TABLE volume_stores (
        volume TEXT PRIMARY KEY REFERENCES volumes (name),
        store  TEXT NOT NULL,
        label  TEXT NOT NULL
      ) WITHOUT ROWID;
    `);
  },
  (db) => {
    db.exec(TRACKER_TABLES);
  },
  createCopiesTable,
  (db) => {
    db.exec(`
      -- Recovery drills (see drills.ts): what was proven recoverable, how
      -- (kind: read, file or volume), whether it passed and how long the
      -- recovery took. Times in epoch milliseconds.
      CREATE TABLE drills (
        id                INTEGER PRIMARY KEY,
        volume            TEXT NOT NULL,
        snapshot_id       TEXT NOT NULL,
        kind              TEXT NOT NULL CHECK (kind IN ('read', 'file', 'volume')),
        started_at        INTEGER NOT NULL,
        finished_at       INTEGER NOT NULL,
        passed            INTEGER NOT NULL CHECK (passed IN (0, 1)),
        recovery_ms       INTEGER NOT NULL,
        blocks_read       INTEGER NOT NULL,
        mismatched_blocks INTEGER NOT NULL,
        message           TEXT
      );
      CREATE INDEX drills_by_volume ON drills (volume, id);
    `);
  },
  (db) => {
    db.exec(`
      -- The history of runs (see runs.ts): one row per volume a backup, restore,
      -- prune or archive run dealt with, failed runs included (error_code: a
      -- SnaplineError code). volume is free text, not a reference: a first
      -- backup that failed leaves no volumes row. store: the store the run
      -- reached (as volume_stores.store), null when it was not known.
      -- live_snapshots: the volume's completed snapshots after the run.
      CREATE TABLE runs (
        run_key            INTEGER PRIMARY KEY,
        operation          TEXT NOT NULL CHECK (operation IN ('backup', 'restore', 'prune', 'archive')),
        volume             TEXT,
        store              TEXT,
        started_at         INTEGER NOT NULL,
        finished_at        INTEGER NOT NULL,
        result             TEXT NOT NULL CHECK (result IN ('success', 'failure')),
        error_code         TEXT,
        snapshot_id        TEXT,
        changed_blocks     INTEGER NOT NULL,
        changed_bytes      INTEGER NOT NULL,
        transferred_blocks INTEGER NOT NULL,
        transferred_bytes  INTEGER NOT NULL,
        live_snapshots     INTEGER,
        CHECK ((result = 'failure') = (error_code IS NOT NULL))
      );
      CREATE INDEX runs_by_volume ON runs (volume, operation, started_at);
    `);
  },
  allowDeletingCopies,
];

export const SCHEMA_VERSION = migrations.length;
