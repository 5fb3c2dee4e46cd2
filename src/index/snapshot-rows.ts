/**
 * What the lineage, the run journal and the block maps of an index share:
 * the statements over volumes, snapshots and their block rows, finding rows,
 * base chains, and settling the maps of deleted snapshots. Inside the index
 * only; the callers map errors and open transactions (IndexAccess).
 */
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { type ChunkGuard, KeyedRows, type KeyedTable, keyChecksum } from './maps.js';
import { OPEN_STATES, SNAPSHOT_ROW_SQL, type SnapshotRecord, type SnapshotRow, type VolumeRow } from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import { requireText } from './validate.js';
import type { Database, Statement } from 'better-sqlite3';

interface DependentRow {
  snapshot_key: number;
  state: SnapshotRecord['state'];
  map_key: number | null;
}

export function notFound(snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} is not in the index`, {
    details: { snapshotId },
  });
}

export function badState(message: string, snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.BAD_STATE, message, { details: { snapshotId } });
}

/** count and delete over one map's or run's key range. */
interface KeyRange {
  count: Statement;
  delete: Statement;
}

/** The prepared statements, made once per index. */
type StatementName =
  | 'upsertVolume'
  | 'volumeByName'
  | 'listVolumes'
  | 'snapshotById'
  | 'snapshotByKey'
  | 'stateByKey'
  | 'headSnapshot'
  | 'openRun'
  | 'listSnapshots'
  | 'listVolumeSnapshots'
  | 'dependents'
  | 'insertRun'
  | 'setState'
  | 'upsertRunStart'
  | 'runStart'
  | 'dropRunStart'
  | 'commitRun'
  | 'failRun'
  | 'setMap'
  | 'upsertImported'
  | 'nextMapKey'
  | 'mapsGeneration'
  | 'mapChecksum'
  | 'bumpMapsGeneration'
  | 'recordBlock'
  | 'recordIntent'
  | 'clearIntent'
  | 'insertBlock'
  | 'foldUnder'
  | 'foldOver'
  | 'copyRunToMap'
  | 'blockRows';
type Statements = Record<StatementName, Statement> & Record<'blocks' | 'runBlocks' | 'runIntents', KeyRange>;

function prepareStatements(db: Database): Statements {
  const rangeOf = (table: KeyedTable): KeyRange => ({
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

    blockRows: db
      .prepare('SELECT (SELECT count(*) FROM blocks) + (SELECT count(*) FROM run_blocks) + (SELECT count(*) FROM run_intents)')
      .pluck(),
  };
}



export class SnapshotRows {
  readonly sql: Statements;
  /** The committed maps, the journal of acknowledged blocks, the journal of intents. */
  readonly maps: KeyedRows;
  readonly journal: KeyedRows;
  readonly intents: KeyedRows;
  readonly #access: IndexAccess;

  constructor(access: IndexAccess) {
    this.#access = access;
    this.sql = prepareStatements(access.db);
    this.maps = new KeyedRows(access.db, 'blocks', access.path);
    this.journal = new KeyedRows(access.db, 'run_blocks', access.path);
    this.intents = new KeyedRows(access.db, 'run_intents', access.path);
  }

  snapshotRow(snapshotId: string): SnapshotRow {
    const row = this.sql.snapshotById.get(requireText('snapshotId', snapshotId)) as SnapshotRow | undefined;
    if (row === undefined) throw notFound(snapshotId);
    return row;
  }

  keyRow(snapshotKey: number): SnapshotRow {
    const row = this.sql.snapshotByKey.get(snapshotKey) as SnapshotRow | undefined;
    if (row === undefined) {
      throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.#access.path} refers to a missing snapshot`, {
        hint: 'run `snapline index check`',
      });
    }
    return row;
  }

  volumeRow(name: string): VolumeRow {
    const row = this.sql.volumeByName.get(name) as VolumeRow | undefined;
    if (row === undefined) {
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `volume ${name} is not in the index`, { details: { volume: name } });
    }
    return row;
  }

  openRunRow(snapshotId: string): SnapshotRow {
    const row = this.snapshotRow(snapshotId);
    if (!OPEN_STATES.has(row.state)) {
      throw badState(`snapshot ${snapshotId} is ${row.state}, not an open run`, snapshotId);
    }
    return row;
  }

  /** `row`, its base, its base's base...; INDEX_UNUSABLE on a cycle. */
  chainRows(row: SnapshotRow): SnapshotRow[] {
    const chain = [row];
    const seen = new Set([row.snapshot_key]);
    let current = row;
    while (current.base_key !== null) {
      if (seen.has(current.base_key)) {
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.#access.path} has a base chain that loops at ${current.snapshot_id}`, {
          hint: 'run `snapline index check`',
        });
      }
      seen.add(current.base_key);
      current = this.keyRow(current.base_key);
      chain.push(current);
    }
    return chain;
  }

  /** The map keys, newest first, whose overlay is the effective map `row` stands for. */
  mapKeysOf(row: SnapshotRow): number[] {
    let chainStart: SnapshotRow | undefined;
    if (row.state === 'completed') chainStart = row;
    else if (OPEN_STATES.has(row.state)) chainStart = row.base_key === null ? undefined : this.keyRow(row.base_key);
    else throw badState(`snapshot ${row.snapshot_id} is ${row.state}: it has no block map`, row.snapshot_id);
    if (chainStart === undefined) return [];
    return this.chainRows(chainStart).map((member) => {
      if (member.map_key === null) {
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.#access.path} lost the map of ${member.snapshot_id}`, {
          hint: 'run `snapline index check`',
        });
      }
      return member.map_key;
    });
  }

  /** Throws CONFLICT before a chunk if a map was rewritten since the scan began. */
  mapsGuard(): ChunkGuard {
    const generation = this.sql.mapsGeneration.get() as number;
    return () => {
      this.#access.assertOpen();
      if (this.sql.mapsGeneration.get() !== generation) {
        throw new SnaplineError(ErrorCodes.CONFLICT, 'the index maps changed during the scan (a snapshot was deleted or imported)', {
          retryable: true,
        });
      }
    };
  }

  dropJournal(snapshotKey: number): void {
    this.sql.runBlocks.delete.run({ base: snapshotKey * BLOCK_KEY_SPAN });
    this.sql.runIntents.delete.run({ base: snapshotKey * BLOCK_KEY_SPAN });
  }

  /** Drops what is stored for `row` (its journal or its map) before import replaces it. */
  dropRows(row: SnapshotRow): void {
    this.dropJournal(row.snapshot_key);
    if (row.map_key !== null) {
      this.sql.blocks.delete.run({ base: row.map_key * BLOCK_KEY_SPAN });
      this.sql.bumpMapsGeneration.run();
    }
  }

  /**
   * Settles the rows of a deleted snapshot, then of its base, and so on:
   * dropped when no snapshot overlays it; folded into its only dependent when
   * that one has a map (completed, or deleted and kept); kept otherwise (an
   * open run or several snapshots build on it). Inside a transaction.
   */
  settleDeleted(snapshotKey: number): void {
    let key: number | null = snapshotKey;
    while (key !== null) {
      const row = this.keyRow(key);
      if (row.state !== 'deleted') return;
      const dependents = this.sql.dependents.all(key) as DependentRow[];
      const only = dependents.length === 1 ? dependents[0]! : undefined;
      if (dependents.length === 0) {
        if (row.map_key !== null) this.sql.blocks.delete.run({ base: row.map_key * BLOCK_KEY_SPAN });
      } else if (only !== undefined && only.map_key !== null && row.map_key !== null) {
        this.fold(row, only.snapshot_key, only.map_key);
      } else {
        return;
      }
      this.sql.setMap.run({ key, map_key: null, map_checksum: null, base_key: null });
      this.sql.bumpMapsGeneration.run();
      key = row.base_key;
    }
  }

  /**
   * Makes the dependent's map its overlay on `deleted`'s, so that it builds on
   * `deleted`'s base instead. The smaller map's rows move into the larger
   * one's key range (the dependent's digests winning), so folding the usual
   * small child into a large parent writes about the child's rows only.
   */
  fold(deleted: SnapshotRow, dependentKey: number, dependentMapKey: number): void {
    const deletedBase = deleted.map_key! * BLOCK_KEY_SPAN;
    const dependentBase = dependentMapKey * BLOCK_KEY_SPAN;
    const deletedRows = this.sql.blocks.count.get({ base: deletedBase }) as number;
    const dependentRows = this.sql.blocks.count.get({ base: dependentBase }) as number;
    let mapKey: number;
    if (dependentRows >= deletedRows) {
      this.sql.foldUnder.run({ from_base: deletedBase, to_base: dependentBase });
      this.sql.blocks.delete.run({ base: deletedBase });
      mapKey = dependentMapKey;
    } else {
      this.sql.foldOver.run({ from_base: dependentBase, to_base: deletedBase });
      this.sql.blocks.delete.run({ base: dependentBase });
      mapKey = deleted.map_key!;
      // map_key is unique: the deleted snapshot gives its key up first.
      this.sql.setMap.run({ key: deleted.snapshot_key, map_key: null, map_checksum: null, base_key: null });
    }
    this.sql.setMap.run({
      key: dependentKey,
      map_key: mapKey,
      map_checksum: keyChecksum(this.maps, mapKey),
      base_key: deleted.base_key,
    });
  }
}
