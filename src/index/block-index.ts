import { resolve } from 'node:path';
import type { Database } from 'better-sqlite3';
import { BLOCKS_PER_GIB, GIB, MAX_VOLUME_SIZE_GIB } from '../core/constants.js';
import type { RunLog } from '../core/run-log.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import {
  type ArchiveObjectRecord,
  ArchiveRows,
  type ArchiveRecord,
  type ArchiveTargetName,
  type BeginArchiveInput,
  type ObjectUploadRecord,
  type UploadPartRecord,
} from './archives.js';
import { findProblems } from './check.js';
import { SnapshotCopies } from './copies.js';
import { DrillRows, type DrillRecord, type NewDrill } from './drills.js';
import { type EcsJobRecord, EcsJobRows, type EcsJobState, type EcsShardRecord, type EcsShardState, type EcsTaskRecord, type NewEcsJob } from './ecs-jobs.js';
import { type HeldLock, IndexLocks } from './locks.js';
import { type ChunkGuard, DIGEST_BYTES, KeyedRows, type KeyedTable, chainDifference, chainEntries, keyChecksum } from './maps.js';
import { openIndexDatabase } from './open.js';
import { RunRows } from './runs.js';
import {
  type BlockEntry,
  type BlockInput,
  OPEN_STATES,
  type RunStartRecord,
  SNAPSHOT_ROW_SQL,
  type SnapshotRecord,
  type SnapshotRow,
  type TargetRecord,
  type TargetRow,
  type TargetState,
  type VolumeRecord,
  type VolumeRow,
  snapshotRecordOf,
  targetRecordOf,
  volumeRecordOf,
} from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import { indexErrorOf, isUniqueViolation } from './sqlite-errors.js';
import { type StoreRef, VolumeStores } from './stores.js';
import { TrackerHistory } from './trackers.js';
import {
  optionalText,
  requireBoolean,
  requireDigest,
  requireInteger,
  requireString,
  requireText,
  requireTime,
} from './validate.js';

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

export interface StorageStats {
  /** Size of the database (page count x page size, WAL included, as after a checkpoint). */
  fileBytes: number;
  /** Rows in the committed maps and the run journal. */
  blockRows: number;
}

interface DependentRow {
  snapshot_key: number;
  state: SnapshotRecord['state'];
  map_key: number | null;
}

function notFound(snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} is not in the index`, {
    details: { snapshotId },
  });
}

function badState(message: string, snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.BAD_STATE, message, { details: { snapshotId } });
}

function prepareStatements(db: Database) {
  const rangeOf = (table: KeyedTable) => ({
    count: db.prepare(`SELECT count(*) FROM ${table} WHERE id >= @base AND id < @base + ${BLOCK_KEY_SPAN}`).pluck(),
    delete: db.prepare(`DELETE FROM ${table} WHERE id >= @base AND id < @base + ${BLOCK_KEY_SPAN}`),
  });
  return {
    upsertVolume: db.prepare(
      `INSERT INTO volumes (name, source_path, size_bytes, created_at) VALUES (@name, @source_path, @size_bytes, @created_at)
       ON CONFLICT (name) DO UPDATE SET source_path = excluded.source_path, size_bytes = excluded.size_bytes
       RETURNING *`,
    ),
    volumeByName: db.prepare('SELECT * FROM volumes WHERE name = ?'),
    listVolumes: db.prepare('SELECT * FROM volumes ORDER BY name'),

    snapshotById: db.prepare(`${SNAPSHOT_ROW_SQL} WHERE s.snapshot_id = ?`),
    snapshotByKey: db.prepare(`${SNAPSHOT_ROW_SQL} WHERE s.snapshot_key = ?`),
    stateByKey: db.prepare('SELECT state FROM snapshots WHERE snapshot_key = ?').pluck(),
    headSnapshot: db.prepare(
      `${SNAPSHOT_ROW_SQL} WHERE v.name = ? AND s.state = 'completed' ORDER BY s.completed_seq DESC LIMIT 1`,
    ),
    openRun: db.prepare(`${SNAPSHOT_ROW_SQL} WHERE v.name = ? AND s.state IN ('pending', 'completing')`),
    listSnapshots: db.prepare(`${SNAPSHOT_ROW_SQL} ORDER BY s.started_at, s.snapshot_key`),
    listVolumeSnapshots: db.prepare(`${SNAPSHOT_ROW_SQL} WHERE v.name = ? ORDER BY s.started_at, s.snapshot_key`),
    dependents: db.prepare(`SELECT snapshot_key, state, map_key FROM snapshots WHERE base_key = ? AND state <> 'error'`),

    insertRun: db.prepare(
      `INSERT INTO snapshots (snapshot_id, volume_key, parent_snapshot_id, base_key, state, volume_size_gib,
         source_bytes, encrypted, description, started_at, run_options)
       VALUES (@snapshot_id, @volume_key, @parent_snapshot_id, @base_key, 'pending', @volume_size_gib,
         @source_bytes, @encrypted, @description, @started_at, @run_options)`,
    ),
    setState: db.prepare('UPDATE snapshots SET state = ? WHERE snapshot_key = ?'),
    upsertRunStart: db.prepare(
      `INSERT INTO run_starts (volume_key, client_token, start_input, run_options, created_at)
       VALUES (@volume_key, @client_token, @start_input, @run_options, @created_at)
       ON CONFLICT (volume_key) DO UPDATE SET client_token = excluded.client_token, start_input = excluded.start_input,
         run_options = excluded.run_options, created_at = excluded.created_at`,
    ),
    runStart: db.prepare(
      `SELECT v.name AS volume, r.client_token, r.start_input, r.run_options, r.created_at
       FROM run_starts r JOIN volumes v ON v.volume_key = r.volume_key WHERE v.name = ?`,
    ),
    dropRunStart: db.prepare('DELETE FROM run_starts WHERE volume_key = ?'),
    commitRun: db.prepare(
      `UPDATE snapshots SET state = 'completed', completed_at = @completed_at,
         completed_seq = (SELECT coalesce(max(completed_seq), 0) + 1 FROM snapshots),
         changed_blocks = @changed_blocks, map_key = @map_key, map_checksum = @map_checksum
       WHERE snapshot_key = @key`,
    ),
    failRun: db.prepare(`UPDATE snapshots SET state = 'error', error_reason = ? WHERE snapshot_key = ?`),
    setMap: db.prepare(
      'UPDATE snapshots SET map_key = @map_key, map_checksum = @map_checksum, base_key = @base_key WHERE snapshot_key = @key',
    ),
    upsertImported: db.prepare(
      `INSERT INTO snapshots (snapshot_id, volume_key, parent_snapshot_id, base_key, state, volume_size_gib, source_bytes,
         encrypted, description, started_at, completed_at, completed_seq, changed_blocks, map_key, map_checksum)
       VALUES (@snapshot_id, @volume_key, @parent_snapshot_id, NULL, 'completed', @volume_size_gib, @source_bytes,
         @encrypted, @description, @started_at, @completed_at,
         (SELECT coalesce(max(completed_seq), 0) + 1 FROM snapshots), @changed_blocks, @map_key, @map_checksum)
       ON CONFLICT (snapshot_id) DO UPDATE SET volume_key = excluded.volume_key,
         parent_snapshot_id = excluded.parent_snapshot_id, base_key = NULL, state = 'completed',
         volume_size_gib = excluded.volume_size_gib, source_bytes = excluded.source_bytes,
         encrypted = excluded.encrypted, description = excluded.description, started_at = excluded.started_at,
         completed_at = excluded.completed_at, completed_seq = excluded.completed_seq,
         changed_blocks = excluded.changed_blocks, run_options = NULL, error_reason = NULL,
         map_key = excluded.map_key, map_checksum = excluded.map_checksum`,
    ),

    nextMapKey: db.prepare(`UPDATE meta SET value = value + 1 WHERE name = 'next_map_key' RETURNING value - 1`).pluck(),
    mapsGeneration: db.prepare(`SELECT value FROM meta WHERE name = 'maps_generation'`).pluck(),
    mapChecksum: db.prepare('SELECT snapshot_id, map_checksum FROM snapshots WHERE map_key = ?'),
    bumpMapsGeneration: db.prepare(`UPDATE meta SET value = value + 1 WHERE name = 'maps_generation'`),

    recordBlock: db.prepare('INSERT OR REPLACE INTO run_blocks (id, digest) VALUES (?, ?)'),
    recordIntent: db.prepare('INSERT OR REPLACE INTO run_intents (id, digest) VALUES (?, ?)'),
    clearIntent: db.prepare('DELETE FROM run_intents WHERE id = ?'),
    insertBlock: db.prepare('INSERT INTO blocks (id, digest) VALUES (?, ?)'),
    // Folding: one map's rows moved into another's key range, the dependent's digests winning.
    foldUnder: db.prepare(
      `INSERT OR IGNORE INTO blocks (id, digest)
       SELECT id - @from_base + @to_base, digest FROM blocks
       WHERE id >= @from_base AND id < @from_base + ${BLOCK_KEY_SPAN} ORDER BY id`,
    ),
    foldOver: db.prepare(
      `INSERT OR REPLACE INTO blocks (id, digest)
       SELECT id - @from_base + @to_base, digest FROM blocks
       WHERE id >= @from_base AND id < @from_base + ${BLOCK_KEY_SPAN} ORDER BY id`,
    ),
    copyRunToMap: db.prepare(
      `INSERT INTO blocks (id, digest)
       SELECT id - @run_base + @map_base, digest FROM run_blocks
       WHERE id >= @run_base AND id < @run_base + ${BLOCK_KEY_SPAN} ORDER BY id`,
    ),
    blocks: rangeOf('blocks'),
    runBlocks: rangeOf('run_blocks'),
    runIntents: rangeOf('run_intents'),

    upsertTarget: db.prepare(
      `INSERT INTO targets (path, snapshot_id, state, size_bytes, updated_at)
       VALUES (@path, @snapshot_id, @state, @size_bytes, @updated_at)
       ON CONFLICT (path) DO UPDATE SET snapshot_id = excluded.snapshot_id, state = excluded.state,
         size_bytes = excluded.size_bytes, updated_at = excluded.updated_at`,
    ),
    targetByPath: db.prepare('SELECT * FROM targets WHERE path = ?'),

    blockRows: db
      .prepare('SELECT (SELECT count(*) FROM blocks) + (SELECT count(*) FROM run_blocks) + (SELECT count(*) FROM run_intents)')
      .pluck(),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/**
 * The SQLite block index: volumes, snapshots with their lineage and state,
 * per-snapshot block digests, the journal of runs, restore targets and
 * advisory locks, in one file.
 *
 * Storage: a committed snapshot stores only the blocks written in it; its
 * effective map is derived along its base chain (snapshot -> base -> ...),
 * newest digest winning. An open run's blocks live in a separate journal and
 * are copied into the maps, in ascending order, when the run commits: nothing
 * claims a snapshot before AWS says it is completed, and committed maps stay
 * densely packed whatever order blocks were acknowledged in.
 *
 * Durability: WAL with synchronous NORMAL for recordBlocks (a batch lost to a
 * power cut is uploaded again on resume; a process crash loses nothing); every
 * state change (beginRun, markCompleting, commitRun, abandonRun, markDeleted,
 * importSnapshot, setTarget) runs with synchronous FULL, which syncs the WAL
 * and with it every earlier batch.
 *
 * One object per process and thread; several processes may share the file
 * (writers wait up to 10 s for each other, then CONFLICT).
 */
export class BlockIndex {
  readonly path: string;
  readonly #db: Database;
  readonly #sql: Statements;
  readonly #maps: KeyedRows;
  readonly #journal: KeyedRows;
  readonly #intents: KeyedRows;
  readonly #locks: IndexLocks;
  readonly #archives: ArchiveRows;
  readonly #ecsJobs: EcsJobRows;
  readonly #stores: VolumeStores;
  readonly #trackers: TrackerHistory;
  /** The copies of the index's snapshots in other Regions or accounts (see copies.ts). */
  readonly copies: SnapshotCopies;
  readonly #drills: DrillRows;
  readonly #runs: RunRows;
  #closed = false;

  private constructor(path: string, db: Database) {
    this.path = path;
    this.#db = db;
    this.#sql = prepareStatements(db);
    this.#maps = new KeyedRows(db, 'blocks', path);
    this.#journal = new KeyedRows(db, 'run_blocks', path);
    this.#intents = new KeyedRows(db, 'run_intents', path);
    this.#locks = new IndexLocks(db);
    this.#archives = new ArchiveRows(db);
    this.#ecsJobs = new EcsJobRows(db);
    this.#stores = new VolumeStores(db);
    this.#trackers = new TrackerHistory(db, path);
    this.copies = new SnapshotCopies(db, (fn) => this.#run(fn));
    this.#drills = new DrillRows(db);
    this.#runs = new RunRows(db);
  }

  /** The change tracker each snapshot was taken against (trackers.ts). */
  get trackers(): TrackerHistory {
    this.#assertOpen();
    return this.#trackers;
  }

  /** The recovery drills (see DrillRows): each call maps errors, and record() is durable. */
  drills(): { record(drill: NewDrill): DrillRecord; lastPerVolume(): DrillRecord[]; ofVolume(volume: string): DrillRecord[] } {
    return {
      record: (drill) => this.#durably(() => this.#drills.record(drill)),
      lastPerVolume: () => this.#run(() => this.#drills.lastPerVolume()),
      ofVolume: (volume) => this.#run(() => this.#drills.ofVolume(volume)),
    };
  }

  /**
   * Opens or creates the index at `path` (file 0600, missing parent
   * directories 0700). Refuses with INDEX_UNUSABLE, naming the file, one that
   * is not a snapline index, is damaged, or has a newer schema version;
   * migrates an older one.
   */
  static open(path: string): BlockIndex {
    const absolute = resolve(requireText('index path', path));
    const db = openIndexDatabase(absolute);
    try {
      return new BlockIndex(absolute, db);
    } catch (err) {
      db.close();
      throw indexErrorOf(err, absolute);
    }
  }

  /** Releases this object's locks and closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    try {
      this.#locks.releaseAll();
    } finally {
      this.#closed = true;
      this.#db.close();
    }
  }

  // ---- the store -----------------------------------------------------------

  /**
   * Binds the index to the store the command reaches (an AWS account and
   * Region, or a local endpoint's data; once per object). From then on a
   * volume is recorded in this store when first written (ensureVolume);
   * naming a volume recorded in another store (by name, or by one of its
   * snapshots) throws STORE_MISMATCH before anything is read or written;
   * listVolumes() and listSnapshots() leave such volumes out, and throw
   * STORE_MISMATCH when every volume of the index lives elsewhere. Unbound,
   * the index works on every volume.
   */
  bindStore(store: StoreRef): void {
    this.#run(() => this.#stores.bind(store));
  }

  /** The store recorded for `volume`; undefined when none is (unknown volume, or never written by a bound index). */
  volumeStore(volume: string): StoreRef | undefined {
    return this.#run(() => this.#stores.storeOf(volume));
  }

  // ---- the history of runs ------------------------------------------------

  /** The run history (see runs.ts), filed under the bound store. */
  get runs(): RunLog {
    return {
      recordRun: (entry) => this.#durably(() => this.#runs.record(entry, this.#stores.bound)),
      listRuns: (filter = {}) => this.#run(() => this.#runs.list(filter, this.#stores.bound)),
    };
  }

  // ---- volumes -------------------------------------------------------------

  /** Creates the volume or updates its sizeBytes and sourcePath, and records the bound store for it. Idempotent. */
  ensureVolume(v: { name: string; sourcePath: string; sizeBytes: number }): VolumeRecord {
    const name = requireText('volume name', v?.name);
    const sourcePath = requireString('sourcePath', v.sourcePath);
    const sizeBytes = requireInteger('sizeBytes', v.sizeBytes, 0, MAX_VOLUME_SIZE_GIB * GIB);
    return this.#run(() =>
      this.#db
        .transaction(() => {
          const row = this.#sql.upsertVolume.get({
            name,
            source_path: sourcePath,
            size_bytes: sizeBytes,
            created_at: Date.now(),
          }) as VolumeRow;
          // A volume of another store: refused, and the upsert rolled back.
          this.#stores.claim(name);
          return volumeRecordOf(row);
        })
        .immediate(),
    );
  }

  getVolume(name: string): VolumeRecord | undefined {
    return this.#run(() => {
      this.#stores.check(name);
      const row = this.#sql.volumeByName.get(name) as VolumeRow | undefined;
      return row === undefined ? undefined : volumeRecordOf(row);
    });
  }

  /** By name. */
  listVolumes(): VolumeRecord[] {
    return this.#run(() => {
      const shown = this.#stores.shown();
      return (this.#sql.listVolumes.all() as VolumeRow[]).filter((row) => shown.has(row.name)).map(volumeRecordOf);
    });
  }

  // ---- snapshots -----------------------------------------------------------

  getSnapshot(snapshotId: string): SnapshotRecord | undefined {
    return this.#run(() => {
      const row = this.#sql.snapshotById.get(snapshotId) as SnapshotRow | undefined;
      if (row !== undefined) this.#stores.check(row.volume);
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /** Newest completed snapshot of the volume, by completion order (commitRun or importSnapshot). */
  headSnapshot(volume: string): SnapshotRecord | undefined {
    return this.#run(() => {
      this.#stores.check(volume);
      const row = this.#sql.headSnapshot.get(volume) as SnapshotRow | undefined;
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /** Oldest first (by startedAt), every state. */
  listSnapshots(volume?: string): SnapshotRecord[] {
    return this.#run(() => {
      if (volume !== undefined) {
        this.#stores.check(volume);
        return (this.#sql.listVolumeSnapshots.all(volume) as SnapshotRow[]).map(snapshotRecordOf);
      }
      const shown = this.#stores.shown();
      return (this.#sql.listSnapshots.all() as SnapshotRow[]).filter((row) => shown.has(row.volume)).map(snapshotRecordOf);
    });
  }

  /** The snapshot itself, then its base, its base's base... (following baseSnapshotId). */
  baseChain(snapshotId: string): SnapshotRecord[] {
    return this.#run(() => this.#chainRows(this.#snapshotRow(snapshotId)).map(snapshotRecordOf));
  }

  // ---- the journal of runs -------------------------------------------------

  /**
   * Starts a run: a pending snapshot. The volume must exist; the base, when
   * given, must be a completed snapshot of the same volume. CONFLICT when the
   * volume already has an unfinished run or the snapshot id is known. Drops
   * the volume's recorded run start (recordRunStart) in the same transaction.
   * Durable.
   */
  beginRun(r: BeginRunInput): SnapshotRecord {
    const volume = requireText('volume', r?.volume);
    const snapshotId = requireText('snapshotId', r.snapshotId);
    const parentSnapshotId = optionalText('parentSnapshotId', r.parentSnapshotId);
    const baseSnapshotId = optionalText('baseSnapshotId', r.baseSnapshotId);
    const volumeSizeGiB = requireInteger('volumeSizeGiB', r.volumeSizeGiB, 1, MAX_VOLUME_SIZE_GIB);
    const sourceBytes = requireInteger('sourceBytes', r.sourceBytes, 0, volumeSizeGiB * GIB);
    const encrypted = requireBoolean('encrypted', r.encrypted);
    const description = optionalText('description', r.description);
    const runOptions = optionalText('runOptions', r.runOptions);
    return this.#durably(() => {
      this.#stores.check(volume);
      const volumeRow = this.#volumeRow(volume);
      let baseKey: number | null = null;
      if (baseSnapshotId !== null) {
        const base = this.#snapshotRow(baseSnapshotId);
        if (base.volume_key !== volumeRow.volume_key) {
          throw new SnaplineError(
            ErrorCodes.INVALID_ARGUMENT,
            `base snapshot ${baseSnapshotId} belongs to volume ${base.volume}, not ${volume}`,
            { details: { argument: 'baseSnapshotId' } },
          );
        }
        if (base.state !== 'completed') {
          throw badState(`base snapshot ${baseSnapshotId} is ${base.state}, not completed`, baseSnapshotId);
        }
        baseKey = base.snapshot_key;
      }
      const open = this.#sql.openRun.get(volume) as SnapshotRow | undefined;
      if (open !== undefined) {
        throw new SnaplineError(
          ErrorCodes.CONFLICT,
          `volume ${volume} has an unfinished run (snapshot ${open.snapshot_id}, ${open.state})`,
          {
            hint: 'resume it by running the same backup again, or abandon it',
            details: { volume, snapshotId: open.snapshot_id },
          },
        );
      }
      try {
        this.#sql.insertRun.run({
          snapshot_id: snapshotId,
          volume_key: volumeRow.volume_key,
          parent_snapshot_id: parentSnapshotId,
          base_key: baseKey,
          volume_size_gib: volumeSizeGiB,
          source_bytes: sourceBytes,
          encrypted: encrypted ? 1 : 0,
          description,
          started_at: Date.now(),
          run_options: runOptions,
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshotId} is already in the index`, {
          details: { snapshotId },
        });
      }
      this.#sql.dropRunStart.run(volumeRow.volume_key);
      return snapshotRecordOf(this.#snapshotRow(snapshotId));
    });
  }

  /**
   * Records, before its StartSnapshot, the ClientToken and StartSnapshot
   * arguments of the volume's next run, replacing any earlier record of the
   * volume: a run that crashes before beginRun is resumed by sending the same
   * token and arguments, which AWS answers with the same snapshot. The volume
   * must exist; CONFLICT when it has an unfinished run. Durable.
   */
  recordRunStart(r: { volume: string; clientToken: string; startInput: string; runOptions: string | null }): RunStartRecord {
    const volume = requireText('volume', r?.volume);
    const clientToken = requireText('clientToken', r.clientToken);
    const startInput = requireText('startInput', r.startInput);
    const runOptions = optionalText('runOptions', r.runOptions);
    return this.#durably(() => {
      const volumeRow = this.#volumeRow(volume);
      const open = this.#sql.openRun.get(volume) as SnapshotRow | undefined;
      if (open !== undefined) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `volume ${volume} has an unfinished run (snapshot ${open.snapshot_id}, ${open.state})`, {
          details: { volume, snapshotId: open.snapshot_id },
        });
      }
      const createdAt = Date.now();
      this.#sql.upsertRunStart.run({ volume_key: volumeRow.volume_key, client_token: clientToken, start_input: startInput, run_options: runOptions, created_at: createdAt });
      return { volume, clientToken, startInput, runOptions, createdAt: new Date(createdAt) };
    });
  }

  /** The volume's run recorded by recordRunStart and not yet begun (beginRun) or dropped, if any. */
  runStart(volume: string): RunStartRecord | undefined {
    return this.#run(() => {
      const row = this.#sql.runStart.get(volume) as
        | { volume: string; client_token: string; start_input: string; run_options: string | null; created_at: number }
        | undefined;
      if (row === undefined) return undefined;
      return { volume: row.volume, clientToken: row.client_token, startInput: row.start_input, runOptions: row.run_options, createdAt: new Date(row.created_at) };
    });
  }

  /** Forgets the volume's recorded run start. Idempotent. Durable. */
  dropRunStart(volume: string): void {
    this.#durably(() => {
      const row = this.#sql.volumeByName.get(volume) as VolumeRow | undefined;
      if (row !== undefined) this.#sql.dropRunStart.run(row.volume_key);
    });
  }

  /** The volume's unfinished run (pending or completing), if any. */
  pendingRun(volume: string): SnapshotRecord | undefined {
    return this.#run(() => {
      this.#stores.check(volume);
      const row = this.#sql.openRun.get(volume) as SnapshotRow | undefined;
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /**
   * Records blocks about to be uploaded for a pending run (call before the
   * uploads start), in one transaction (synchronous NORMAL). An intent stays
   * until recordBlocks records that block: after a crash,
   * unacknowledgedBlocks lists the blocks the snapshot may or may not hold.
   * Idempotent: an intent recorded again gets the new digest.
   */
  recordIntents(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.#recordJournal(snapshotId, blocks, (id, digest) => this.#sql.recordIntent.run(id, digest));
  }

  /**
   * Records blocks the service acknowledged for a pending run, in one
   * transaction (synchronous NORMAL), and clears their intents. Idempotent:
   * a block recorded again gets the new digest. BAD_STATE once markCompleting
   * was called.
   */
  recordBlocks(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.#recordJournal(snapshotId, blocks, (id, digest) => {
      this.#sql.recordBlock.run(id, digest);
      this.#sql.clearIntent.run(id);
    });
  }

  /** Intents not yet acknowledged by recordBlocks for an open run, ascending (same scan rules as writtenBlocks). */
  unacknowledgedBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    return this.#journalEntries(snapshotId, this.#intents);
  }

  /** Blocks recorded (acknowledged) for an open run (pending or completing), ascending. */
  writtenBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    return this.#journalEntries(snapshotId, this.#journal);
  }

  /** Number of blocks recorded for an open run. */
  writtenBlockCount(snapshotId: string): number {
    return this.#run(() => {
      const row = this.#openRunRow(snapshotId);
      return this.#sql.runBlocks.count.get({ base: row.snapshot_key * BLOCK_KEY_SPAN }) as number;
    });
  }

  /** CompleteSnapshot was sent: pending -> completing. Idempotent. Durable. */
  markCompleting(snapshotId: string): void {
    this.#durably(() => {
      const row = this.#snapshotRow(snapshotId);
      if (row.state === 'completing') return;
      if (row.state !== 'pending') throw badState(`snapshot ${snapshotId} is ${row.state}, not pending`, snapshotId);
      this.#sql.setState.run('completing', row.snapshot_key);
    });
  }

  /**
   * AWS said completed: in one durable transaction the run's blocks become
   * the snapshot's map, state completed, changedBlocks (the blocks recorded)
   * and completedAt set. Idempotent: a completed snapshot is returned as is.
   */
  commitRun(snapshotId: string, completedAt: Date = new Date()): SnapshotRecord {
    const completedAtMs = requireTime('completedAt', completedAt);
    return this.#durably(() => {
      const row = this.#snapshotRow(snapshotId);
      if (row.state === 'completed') return snapshotRecordOf(row);
      if (!OPEN_STATES.has(row.state)) {
        throw badState(`snapshot ${snapshotId} is ${row.state}: only an open run can be committed`, snapshotId);
      }
      const mapKey = this.#sql.nextMapKey.get() as number;
      const runBase = row.snapshot_key * BLOCK_KEY_SPAN;
      const copied = this.#sql.copyRunToMap.run({ run_base: runBase, map_base: mapKey * BLOCK_KEY_SPAN }).changes;
      this.#dropJournal(row.snapshot_key);
      this.#sql.commitRun.run({
        key: row.snapshot_key,
        completed_at: completedAtMs,
        changed_blocks: copied,
        map_key: mapKey,
        map_checksum: keyChecksum(this.#maps, mapKey),
      });
      if (row.base_key !== null) this.#settleDeleted(row.base_key);
      return snapshotRecordOf(this.#snapshotRow(snapshotId));
    });
  }

  /**
   * The run failed for good: state error, its recorded blocks dropped; it
   * never counts as a base or head. Idempotent for a snapshot already in
   * error; BAD_STATE for a completed or deleted one. Durable.
   */
  abandonRun(snapshotId: string, reason: string): void {
    const why = requireText('reason', reason);
    this.#durably(() => {
      const row = this.#snapshotRow(snapshotId);
      if (row.state === 'error') return;
      if (!OPEN_STATES.has(row.state)) {
        throw badState(`snapshot ${snapshotId} is ${row.state}: only an open run can be abandoned`, snapshotId);
      }
      this.#dropJournal(row.snapshot_key);
      this.#sql.failRun.run(why, row.snapshot_key);
      if (row.base_key !== null) this.#settleDeleted(row.base_key);
    });
  }

  /**
   * EC2 DeleteSnapshot is done: state deleted. Its map stays while another
   * snapshot overlays it; once exactly one committed snapshot does, the map is
   * folded into that one (whose base then skips it); once none does, it is
   * dropped. Every remaining snapshot's map stays derivable. An open run's
   * journal is dropped. Idempotent. Durable.
   */
  markDeleted(snapshotId: string): void {
    this.#durably(() => {
      const row = this.#snapshotRow(snapshotId);
      if (row.state === 'deleted') return;
      if (OPEN_STATES.has(row.state)) this.#dropJournal(row.snapshot_key);
      this.#sql.setState.run('deleted', row.snapshot_key);
      this.#settleDeleted(row.snapshot_key);
    });
  }

  /**
   * Learns a completed snapshot's full block map (index rebuild), replacing
   * any map known for it: state completed, base null, changedBlocks = the
   * blocks given, newest in completion order. The volume must exist. One
   * durable transaction; INVALID_ARGUMENT (nothing stored) on a bad block.
   */
  importSnapshot(r: ImportSnapshotInput, blocks: Iterable<BlockInput>): SnapshotRecord {
    const snapshotId = requireText('snapshotId', r?.snapshotId);
    const volume = requireText('volume', r.volume);
    const parentSnapshotId = optionalText('parentSnapshotId', r.parentSnapshotId);
    const volumeSizeGiB = requireInteger('volumeSizeGiB', r.volumeSizeGiB, 1, MAX_VOLUME_SIZE_GIB);
    const sourceBytes = requireInteger('sourceBytes', r.sourceBytes, 0, volumeSizeGiB * GIB);
    const encrypted = requireBoolean('encrypted', r.encrypted);
    const description = optionalText('description', r.description);
    const startedAt = r.startedAt === undefined ? Date.now() : requireTime('startedAt', r.startedAt);
    return this.#durably(() => {
      this.#stores.check(volume);
      const volumeRow = this.#volumeRow(volume);
      const existing = this.#sql.snapshotById.get(snapshotId) as SnapshotRow | undefined;
      if (existing !== undefined) this.#dropRows(existing);
      const mapKey = this.#sql.nextMapKey.get() as number;
      const mapBase = mapKey * BLOCK_KEY_SPAN;
      const blockCount = volumeSizeGiB * BLOCKS_PER_GIB;
      let count = 0;
      for (const block of blocks) {
        const index = requireInteger(`block ${count} index`, block?.index, 0, blockCount - 1);
        const digest = requireDigest(`block ${index} digest`, block.digest, DIGEST_BYTES);
        try {
          this.#sql.insertBlock.run(mapBase + index, digest);
        } catch (err) {
          if (!isUniqueViolation(err)) throw err;
          throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block ${index} is given twice for ${snapshotId}`);
        }
        count += 1;
      }
      const now = Date.now();
      this.#sql.upsertImported.run({
        snapshot_id: snapshotId,
        volume_key: volumeRow.volume_key,
        parent_snapshot_id: parentSnapshotId,
        volume_size_gib: volumeSizeGiB,
        source_bytes: sourceBytes,
        encrypted: encrypted ? 1 : 0,
        description,
        started_at: startedAt,
        completed_at: now,
        changed_blocks: count,
        map_key: mapKey,
        map_checksum: keyChecksum(this.#maps, mapKey),
      });
      if (existing?.base_key != null) this.#settleDeleted(existing.base_key);
      return snapshotRecordOf(this.#snapshotRow(snapshotId));
    });
  }

  // ---- block maps ----------------------------------------------------------

  /**
   * The effective map of a completed snapshot (of a pending or completing
   * one: its base's) over [fromBlock, toBlock): the newest digest of each
   * block along the base chain, ascending; blocks never written are absent.
   * Streams chunk by chunk (memory independent of the volume size); the
   * digests are views of a chunk buffer, copy one to keep it. CONFLICT if a
   * map is rewritten (fold, import) during the scan.
   */
  blockMap(snapshotId: string, range: BlockRange = {}): IterableIterator<BlockEntry> {
    const from = requireInteger('fromBlock', range.fromBlock ?? 0, 0, BLOCK_KEY_SPAN);
    const to = requireInteger('toBlock', range.toBlock ?? BLOCK_KEY_SPAN, from, BLOCK_KEY_SPAN);
    return this.#run(() => {
      const keys = this.#mapKeysOf(this.#snapshotRow(snapshotId));
      return chainEntries(this.#maps, keys, from, to, this.#mapsGuard());
    });
  }

  /**
   * Checks that the map blockMap(snapshotId) reads is the one committed:
   * every map along the base chain matches the checksum stored with it.
   * Throws INDEX_UNUSABLE naming the snapshot whose rows were altered or
   * lost. Reads every row of those maps; a backup checks its base this way
   * before trusting it (a lost row would read as a block never written).
   */
  verifyMap(snapshotId: string): void {
    this.#run(() => {
      for (const key of this.#mapKeysOf(this.#snapshotRow(snapshotId))) {
        const stored = this.#sql.mapChecksum.get(key) as { snapshot_id: string; map_checksum: Buffer | null } | undefined;
        if (stored?.map_checksum && keyChecksum(this.#maps, key).equals(stored.map_checksum)) continue;
        const owner = stored?.snapshot_id ?? `map ${key}`;
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.path} is damaged: the block map of ${owner} does not match its checksum`, {
          hint: 'run `snapline index check`; move the file away and learn the snapshot again with `snapline index rebuild`',
          details: { indexPath: this.path, snapshotId: owner },
        });
      }
    });
  }

  /** Block indexes whose digest differs between the maps of `a` and `b` (present in one only counts), ascending. */
  diffMaps(a: string, b: string): IterableIterator<number> {
    return this.#run(() => {
      const keysA = this.#mapKeysOf(this.#snapshotRow(a));
      const keysB = this.#mapKeysOf(this.#snapshotRow(b));
      return chainDifference(this.#maps, keysA, keysB, this.#mapsGuard());
    });
  }

  // ---- restore targets -----------------------------------------------------

  /** What the index vouches a target holds. Durable (an 'incomplete' mark must survive a crash). */
  setTarget(t: { path: string; snapshotId: string | null; state: TargetState; sizeBytes: number }): void {
    const path = requireText('target path', t?.path);
    const snapshotId = optionalText('snapshotId', t.snapshotId);
    if (t.state !== 'complete' && t.state !== 'incomplete') {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `target state must be complete or incomplete, got ${String(t.state)}`);
    }
    const sizeBytes = requireInteger('sizeBytes', t.sizeBytes, 0, Number.MAX_SAFE_INTEGER);
    this.#durably(() => {
      this.#sql.upsertTarget.run({ path, snapshot_id: snapshotId, state: t.state, size_bytes: sizeBytes, updated_at: Date.now() });
    });
  }

  getTarget(path: string): TargetRecord | undefined {
    return this.#run(() => {
      const row = this.#sql.targetByPath.get(path) as TargetRow | undefined;
      return row === undefined ? undefined : targetRecordOf(row);
    });
  }

  // ---- archives ------------------------------------------------------------

  getArchive(archiveId: string): ArchiveRecord | undefined {
    return this.#run(() => this.#archives.get(archiveId));
  }

  /** Every archive, deleted ones included, oldest first. */
  listArchives(): ArchiveRecord[] {
    return this.#run(() => this.#archives.list());
  }

  /** The archive of a snapshot at a place (bucket or vault) that is not deleted, if any. */
  liveArchive(target: ArchiveTargetName, location: string, snapshotId: string): ArchiveRecord | undefined {
    return this.#run(() => this.#archives.live(target, location, snapshotId));
  }

  /** The volume's newest archived archive at a place: what an incremental archive builds on. */
  latestArchive(volume: string, target: ArchiveTargetName, location: string): ArchiveRecord | undefined {
    return this.#run(() => this.#archives.latest(volume, target, location));
  }

  /** Archives (not deleted) that build on this one. */
  archiveChildren(archiveId: string): ArchiveRecord[] {
    return this.#run(() => this.#archives.children(archiveId));
  }

  /**
   * Records a new archive, state uploading. The parent, when given, must be
   * archived. CONFLICT when the snapshot already has a live archive at that
   * place or the id is taken. Durable.
   */
  beginArchive(input: BeginArchiveInput): ArchiveRecord {
    return this.#durably(() => this.#archives.begin(input));
  }

  /** The manifest is written: uploading -> archived, size summed over its objects. Idempotent. Durable. */
  completeArchive(archiveId: string, manifest: { ref: string; treeHash: string; blockCount: number }): ArchiveRecord {
    return this.#durably(() => this.#archives.complete(archiveId, manifest));
  }

  /** Its objects are deleted remotely: state deleted, objects and upload journal dropped. CONFLICT while a live archive builds on it. Idempotent. Durable. */
  markArchiveDeleted(archiveId: string): void {
    this.#durably(() => this.#archives.markDeleted(archiveId));
  }

  /** The objects stored for an archive, by name. */
  archiveObjects(archiveId: string): ArchiveObjectRecord[] {
    return this.#run(() => this.#archives.objects(archiveId));
  }

  /** An object is stored: recorded (replacing one of the same name), and its upload journal dropped. Durable. */
  recordArchiveObject(archiveId: string, object: { name: string; ref: string; sizeBytes: number; treeHash: string; entry: string | null }): void {
    this.#durably(() => this.#archives.recordObject(archiveId, object));
  }

  /** The restore (S3) or retrieval job (Glacier) last asked for an object. Durable. */
  recordArchiveRestore(archiveId: string, name: string, restore: { job: string | null; tier: string; requestedAt: Date }): void {
    this.#durably(() => this.#archives.recordRestore(archiveId, name, restore));
  }

  /** The multipart upload of an object in progress, with its acknowledged parts, if any. */
  archiveUpload(archiveId: string, name: string): ObjectUploadRecord | undefined {
    return this.#run(() => this.#archives.upload(archiveId, name));
  }

  /** A multipart upload of an object began (replacing any earlier journal of it). Durable. */
  beginArchiveUpload(archiveId: string, name: string, uploadId: string, partSize: number): void {
    this.#durably(() => this.#archives.beginUpload(archiveId, name, uploadId, partSize));
  }

  /** The service acknowledged a part (synchronous NORMAL: a part lost to a power cut is uploaded again). Idempotent. */
  recordArchivePart(archiveId: string, name: string, part: UploadPartRecord): void {
    this.#run(() => this.#db.transaction(() => this.#archives.recordPart(archiveId, name, part)).immediate());
  }

  /** Forgets an object's upload in progress (aborted, or gone from the service). Durable. */
  dropArchiveUpload(archiveId: string, name: string): void {
    this.#durably(() => this.#archives.dropUpload(archiveId, name));
  }

  // ---- locks ---------------------------------------------------------------

  /**
   * Advisory lock per name ("volume:NAME", "target:/path"). CONFLICT naming
   * the holder (pid, host, since) while a live process holds it; a dead
   * process's lock on this host is taken over. Released by release() or close().
   */
  acquireLock(name: string): HeldLock {
    return this.#run(() => {
      const held = this.#locks.acquire(name);
      return {
        release: () => {
          if (!this.#closed) this.#run(() => held.release());
        },
      };
    });
  }

  // ---- ECS restore jobs ----------------------------------------------------

  /** A new job (running) with its shards (waiting). CONFLICT when the source has an open job. Durable. */
  createEcsJob(input: NewEcsJob, shards: ReadonlyArray<{ fromBlock: number; toBlock: number }>): EcsJobRecord {
    return this.#durably(() => this.#ecsJobs.create(input, shards));
  }

  getEcsJob(jobId: string): EcsJobRecord | undefined {
    return this.#run(() => this.#ecsJobs.get(jobId));
  }

  /** The source's job that is running or failed, if any. */
  openEcsJob(source: string): EcsJobRecord | undefined {
    return this.#run(() => this.#ecsJobs.openFor(source));
  }

  /** Every job, oldest first. */
  listEcsJobs(): EcsJobRecord[] {
    return this.#run(() => this.#ecsJobs.list());
  }

  /** Sets the job's snapshot, state or message. NOT_FOUND for an unknown job. Durable. */
  updateEcsJob(jobId: string, fields: { snapshotId?: string; state?: EcsJobState; message?: string | null }): EcsJobRecord {
    return this.#durably(() => this.#ecsJobs.update(jobId, fields));
  }

  /** The job's shards, by number. */
  ecsShards(jobId: string): EcsShardRecord[] {
    return this.#run(() => this.#ecsJobs.shards(jobId));
  }

  /** Sets a shard's state, attempt, launch counter or message. Durable: a RunTask clientToken depends on them. */
  updateEcsShard(jobId: string, shard: number, fields: { state?: EcsShardState; attempt?: number; launch?: number; message?: string | null }): void {
    this.#durably(() => this.#ecsJobs.updateShard(jobId, shard, fields));
  }

  /** Records a task of a job, or what ECS now says of it. Durable. */
  recordEcsTask(task: EcsTaskRecord): void {
    this.#durably(() => this.#ecsJobs.recordTask(task));
  }

  /** The job's tasks, by shard and attempt. */
  ecsTasks(jobId: string): EcsTaskRecord[] {
    return this.#run(() => this.#ecsJobs.tasks(jobId));
  }

  // ---- maintenance ---------------------------------------------------------

  /**
   * Full check for `snapline index check`: SQLite's integrity_check and
   * foreign_key_check, then the domain rules (base chains exist and end,
   * states agree with stored rows, rows belong to known snapshots, digests
   * are 32 bytes, block indexes fit the volume, at most one open run per
   * volume, every map matches its checksum). Reads the whole file. Returns
   * the problems found; empty when sound.
   */
  check(): string[] {
    return this.#run(() => findProblems(this.#db, this.#maps));
  }

  /** For the bench: size of the database and number of stored block rows. */
  storageStats(): StorageStats {
    return this.#run(() => {
      const pageCount = this.#db.pragma('page_count', { simple: true }) as number;
      const pageSize = this.#db.pragma('page_size', { simple: true }) as number;
      return { fileBytes: pageCount * pageSize, blockRows: this.#sql.blockRows.get() as number };
    });
  }

  // ---- internals -----------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new SnaplineError(ErrorCodes.INTERNAL, `the index ${this.path} is closed`);
  }

  /** Runs `fn`, turning SQLite's errors into SnaplineErrors naming the file. */
  #run<T>(fn: () => T): T {
    this.#assertOpen();
    try {
      return fn();
    } catch (err) {
      throw indexErrorOf(err, this.path);
    }
  }

  /** Runs `fn` in a write transaction that is synced to disk at commit (synchronous FULL). */
  #durably<T>(fn: () => T): T {
    return this.#run(() => {
      this.#db.pragma('synchronous = FULL');
      try {
        return this.#db.transaction(fn).immediate();
      } finally {
        this.#db.pragma('synchronous = NORMAL');
      }
    });
  }

  #snapshotRow(snapshotId: string): SnapshotRow {
    const row = this.#sql.snapshotById.get(requireText('snapshotId', snapshotId)) as SnapshotRow | undefined;
    if (row === undefined) throw notFound(snapshotId);
    return row;
  }

  #keyRow(snapshotKey: number): SnapshotRow {
    const row = this.#sql.snapshotByKey.get(snapshotKey) as SnapshotRow | undefined;
    if (row === undefined) {
      throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.path} refers to a missing snapshot`, {
        hint: 'run `snapline index check`',
      });
    }
    return row;
  }

  #volumeRow(name: string): VolumeRow {
    const row = this.#sql.volumeByName.get(name) as VolumeRow | undefined;
    if (row === undefined) {
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `volume ${name} is not in the index`, { details: { volume: name } });
    }
    return row;
  }

  #openRunRow(snapshotId: string): SnapshotRow {
    const row = this.#snapshotRow(snapshotId);
    if (!OPEN_STATES.has(row.state)) {
      throw badState(`snapshot ${snapshotId} is ${row.state}, not an open run`, snapshotId);
    }
    return row;
  }

  /** `row`, its base, its base's base...; INDEX_UNUSABLE on a cycle. */
  #chainRows(row: SnapshotRow): SnapshotRow[] {
    const chain = [row];
    const seen = new Set([row.snapshot_key]);
    let current = row;
    while (current.base_key !== null) {
      if (seen.has(current.base_key)) {
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.path} has a base chain that loops at ${current.snapshot_id}`, {
          hint: 'run `snapline index check`',
        });
      }
      seen.add(current.base_key);
      current = this.#keyRow(current.base_key);
      chain.push(current);
    }
    return chain;
  }

  /** The map keys, newest first, whose overlay is the effective map `row` stands for. */
  #mapKeysOf(row: SnapshotRow): number[] {
    let chainStart: SnapshotRow | undefined;
    if (row.state === 'completed') chainStart = row;
    else if (OPEN_STATES.has(row.state)) chainStart = row.base_key === null ? undefined : this.#keyRow(row.base_key);
    else throw badState(`snapshot ${row.snapshot_id} is ${row.state}: it has no block map`, row.snapshot_id);
    if (chainStart === undefined) return [];
    return this.#chainRows(chainStart).map((member) => {
      if (member.map_key === null) {
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.path} lost the map of ${member.snapshot_id}`, {
          hint: 'run `snapline index check`',
        });
      }
      return member.map_key;
    });
  }

  /** Throws CONFLICT before a chunk if a map was rewritten since the scan began. */
  #mapsGuard(): ChunkGuard {
    const generation = this.#sql.mapsGeneration.get() as number;
    return () => {
      this.#assertOpen();
      if (this.#sql.mapsGeneration.get() !== generation) {
        throw new SnaplineError(ErrorCodes.CONFLICT, 'the index maps changed during the scan (a snapshot was deleted or imported)', {
          retryable: true,
        });
      }
    };
  }

  /** Validates a batch and writes it, ascending, into a pending run's journal in one transaction. */
  #recordJournal(snapshotId: string, blocks: ReadonlyArray<BlockInput>, write: (id: number, digest: Buffer) => void): void {
    if (!Array.isArray(blocks)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'blocks must be an array');
    this.#run(() =>
      this.#db
        .transaction(() => {
          const row = this.#snapshotRow(snapshotId);
          if (row.state !== 'pending') {
            throw badState(`snapshot ${snapshotId} is ${row.state}: its journal is written only while it is pending`, snapshotId);
          }
          const blockCount = row.volume_size_gib * BLOCKS_PER_GIB;
          const ids: number[] = [];
          const digests: Buffer[] = [];
          for (let at = 0; at < blocks.length; at += 1) {
            const block = blocks[at]!;
            ids.push(requireInteger(`blocks[${at}].index`, block?.index, 0, blockCount - 1));
            digests.push(requireDigest(`blocks[${at}].digest`, block.digest, DIGEST_BYTES));
          }
          // Ascending inserts keep the journal's pages full.
          const order = ids.map((_, at) => at).sort((a, b) => ids[a]! - ids[b]!);
          const runBase = row.snapshot_key * BLOCK_KEY_SPAN;
          for (const at of order) write(runBase + ids[at]!, digests[at]!);
        })
        .immediate(),
    );
  }

  /**
   * One table of an open run's journal, ascending, chunk by chunk: rows
   * recorded during the scan may or may not be seen; CONFLICT if the run is
   * committed or abandoned meanwhile.
   */
  #journalEntries(snapshotId: string, rows: KeyedRows): IterableIterator<BlockEntry> {
    return this.#run(() => {
      const row = this.#openRunRow(snapshotId);
      const guard: ChunkGuard = () => {
        this.#assertOpen();
        const state = this.#sql.stateByKey.get(row.snapshot_key) as SnapshotRecord['state'] | undefined;
        if (state === undefined || !OPEN_STATES.has(state)) {
          throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshotId} stopped being an open run during the scan`);
        }
      };
      return chainEntries(rows, [row.snapshot_key], 0, BLOCK_KEY_SPAN, guard);
    });
  }

  #dropJournal(snapshotKey: number): void {
    this.#sql.runBlocks.delete.run({ base: snapshotKey * BLOCK_KEY_SPAN });
    this.#sql.runIntents.delete.run({ base: snapshotKey * BLOCK_KEY_SPAN });
  }

  /** Drops what is stored for `row` (its journal or its map) before import replaces it. */
  #dropRows(row: SnapshotRow): void {
    this.#dropJournal(row.snapshot_key);
    if (row.map_key !== null) {
      this.#sql.blocks.delete.run({ base: row.map_key * BLOCK_KEY_SPAN });
      this.#sql.bumpMapsGeneration.run();
    }
  }

  /**
   * Settles the rows of a deleted snapshot, then of its base, and so on:
   * dropped when no snapshot overlays it; folded into its only dependent when
   * that one has a map (completed, or deleted and kept); kept otherwise (an
   * open run or several snapshots build on it). Inside a transaction.
   */
  #settleDeleted(snapshotKey: number): void {
    let key: number | null = snapshotKey;
    while (key !== null) {
      const row = this.#keyRow(key);
      if (row.state !== 'deleted') return;
      const dependents = this.#sql.dependents.all(key) as DependentRow[];
      const only = dependents.length === 1 ? dependents[0]! : undefined;
      if (dependents.length === 0) {
        if (row.map_key !== null) this.#sql.blocks.delete.run({ base: row.map_key * BLOCK_KEY_SPAN });
      } else if (only !== undefined && only.map_key !== null && row.map_key !== null) {
        this.#fold(row, only.snapshot_key, only.map_key);
      } else {
        return;
      }
      this.#sql.setMap.run({ key, map_key: null, map_checksum: null, base_key: null });
      this.#sql.bumpMapsGeneration.run();
      key = row.base_key;
    }
  }

  /**
   * Makes the dependent's map its overlay on `deleted`'s, so that it builds on
   * `deleted`'s base instead. The smaller map's rows move into the larger
   * one's key range (the dependent's digests winning), so folding the usual
   * small child into a large parent writes about the child's rows only.
   */
  #fold(deleted: SnapshotRow, dependentKey: number, dependentMapKey: number): void {
    const deletedBase = deleted.map_key! * BLOCK_KEY_SPAN;
    const dependentBase = dependentMapKey * BLOCK_KEY_SPAN;
    const deletedRows = this.#sql.blocks.count.get({ base: deletedBase }) as number;
    const dependentRows = this.#sql.blocks.count.get({ base: dependentBase }) as number;
    let mapKey: number;
    if (dependentRows >= deletedRows) {
      this.#sql.foldUnder.run({ from_base: deletedBase, to_base: dependentBase });
      this.#sql.blocks.delete.run({ base: deletedBase });
      mapKey = dependentMapKey;
    } else {
      this.#sql.foldOver.run({ from_base: dependentBase, to_base: deletedBase });
      this.#sql.blocks.delete.run({ base: dependentBase });
      mapKey = deleted.map_key!;
      // map_key is unique: the deleted snapshot gives its key up first.
      this.#sql.setMap.run({ key: deleted.snapshot_key, map_key: null, map_checksum: null, base_key: null });
    }
    this.#sql.setMap.run({
      key: dependentKey,
      map_key: mapKey,
      map_checksum: keyChecksum(this.#maps, mapKey),
      base_key: deleted.base_key,
    });
  }
}
