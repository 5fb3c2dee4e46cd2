/**
 * The copies of the index's snapshots in other Regions or accounts (EC2
 * CopySnapshot), one row per copy, from the moment CopySnapshot answered
 * until the copy is deleted. A copy belongs to its source snapshot's volume;
 * `destination` names where it lives: the Region, and the connection when
 * the copy was made through another one. The statements are prepared once;
 * every method runs through `run` (BlockIndex's error mapping); BlockIndex
 * makes each write durable.
 */
import type { Database, Statement } from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { isUniqueViolation } from './sqlite-errors.js';
import { requireText } from './validate.js';
import type { CopyCatalog, CopyRecord, CopyState, NewCopy } from '../core/index-ports.js';

export type { CopyRecord, CopyState, NewCopy } from '../core/index-ports.js';

/** Migration step: the table of copies. */
export function createCopiesTable(db: Database): void {
  db.exec(`
    -- Copies of snapshots in another Region or account (EC2 CopySnapshot).
    -- state: pending (CopySnapshot answered), completed, error, deleted.
    ${copiesTable('snapshot_copies', ['pending', 'completed', 'error', 'deleted'])}
    CREATE INDEX snapshot_copies_by_source ON snapshot_copies (source_snapshot_id);
    CREATE INDEX snapshot_copies_by_volume ON snapshot_copies (volume, region);
  `);
}

/**
 * Migration step: a copy may be `deleting` (its source deleted, the copy to
 * go with it). SQLite changes a CHECK only by building the table anew: the
 * rows are moved into the new table, which takes the old one's name.
 */
export function allowDeletingCopies(db: Database): void {
  db.exec(`
    ${copiesTable('snapshot_copies_new', ['pending', 'completed', 'error', 'deleting', 'deleted'])}
    INSERT INTO snapshot_copies_new SELECT * FROM snapshot_copies;
    DROP TABLE snapshot_copies;
    ALTER TABLE snapshot_copies_new RENAME TO snapshot_copies;
    CREATE INDEX snapshot_copies_by_source ON snapshot_copies (source_snapshot_id);
    CREATE INDEX snapshot_copies_by_volume ON snapshot_copies (volume, region);
  `);
}

/** The copies table's definition, named `name`, its state one of `states`. */
function copiesTable(name: string, states: readonly string[]): string {
  return `
    CREATE TABLE ${name} (
      copy_snapshot_id   TEXT PRIMARY KEY,
      source_snapshot_id TEXT NOT NULL,
      volume             TEXT NOT NULL,
      region             TEXT NOT NULL,
      connection         TEXT,
      state              TEXT NOT NULL CHECK (state IN (${states.map((state) => `'${state}'`).join(', ')})),
      encrypted          INTEGER NOT NULL,
      kms_key_id         TEXT,
      incremental_of     TEXT,
      message            TEXT,
      created_at         INTEGER NOT NULL,
      completed_at       INTEGER
    ) WITHOUT ROWID;`;
}

interface CopyRow {
  copy_snapshot_id: string;
  source_snapshot_id: string;
  volume: string;
  region: string;
  connection: string | null;
  state: CopyState;
  encrypted: number;
  kms_key_id: string | null;
  incremental_of: string | null;
  message: string | null;
  created_at: number;
  completed_at: number | null;
}

export class SnapshotCopies implements CopyCatalog {
  readonly #run: <T>(fn: () => T) => T;
  readonly #insert: Statement;
  readonly #get: Statement;
  readonly #bySource: Statement;
  readonly #byVolume: Statement;
  readonly #all: Statement;
  readonly #setState: Statement;

  constructor(db: Database, run: <T>(fn: () => T) => T) {
    this.#run = run;
    this.#insert = db.prepare(
      `INSERT INTO snapshot_copies (copy_snapshot_id, source_snapshot_id, volume, region, connection, state, encrypted, kms_key_id, incremental_of, created_at, completed_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#get = db.prepare('SELECT * FROM snapshot_copies WHERE copy_snapshot_id = ?');
    this.#bySource = db.prepare("SELECT * FROM snapshot_copies WHERE source_snapshot_id = ? AND state != 'deleted' ORDER BY created_at, copy_snapshot_id");
    this.#byVolume = db.prepare("SELECT * FROM snapshot_copies WHERE volume = ? AND state != 'deleted' ORDER BY created_at, copy_snapshot_id");
    this.#all = db.prepare("SELECT * FROM snapshot_copies WHERE state != 'deleted' ORDER BY created_at, copy_snapshot_id");
    this.#setState = db.prepare('UPDATE snapshot_copies SET state = ?, message = ?, completed_at = coalesce(?, completed_at) WHERE copy_snapshot_id = ?');
  }

  /** Records a copy, by default pending (CopySnapshot just started). CONFLICT when the copy id is already recorded. */
  record(copy: NewCopy, at: Date = new Date()): CopyRecord {
    const state = copy.state ?? 'pending';
    return this.#run(() => {
      try {
        this.#insert.run(
          requireText('copySnapshotId', copy.copySnapshotId),
          requireText('sourceSnapshotId', copy.sourceSnapshotId),
          requireText('volume', copy.volume),
          requireText('region', copy.region),
          copy.connection,
          state,
          copy.encrypted ? 1 : 0,
          copy.kmsKeyId,
          copy.incrementalOf,
          at.getTime(),
          state === 'completed' ? at.getTime() : null,
        );
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new SnaplineError(ErrorCodes.CONFLICT, `the index already records a copy ${copy.copySnapshotId}`, { details: { snapshotId: copy.copySnapshotId } });
      }
      return this.#require(copy.copySnapshotId);
    });
  }

  get(copySnapshotId: string): CopyRecord | undefined {
    return this.#run(() => {
      const row = this.#get.get(copySnapshotId) as CopyRow | undefined;
      return row === undefined ? undefined : recordOf(row);
    });
  }

  /** The copies of a snapshot not deleted, oldest first. */
  ofSnapshot(sourceSnapshotId: string): CopyRecord[] {
    return this.#run(() => (this.#bySource.all(sourceSnapshotId) as CopyRow[]).map(recordOf));
  }

  /** The copies not deleted, of one volume or of all, oldest first. */
  list(volume?: string): CopyRecord[] {
    return this.#run(() => ((volume === undefined ? this.#all.all() : this.#byVolume.all(volume)) as CopyRow[]).map(recordOf));
  }

  /** Sets a copy's state; `completed` stamps its completion time. NOT_FOUND for a copy the index does not know. */
  setState(copySnapshotId: string, state: CopyState, message: string | null = null, at: Date = new Date()): CopyRecord {
    return this.#run(() => {
      const changed = this.#setState.run(state, message, state === 'completed' ? at.getTime() : null, copySnapshotId).changes;
      if (changed === 0) throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index records no copy ${copySnapshotId}`);
      return this.#require(copySnapshotId);
    });
  }

  #require(copySnapshotId: string): CopyRecord {
    const row = this.#get.get(copySnapshotId) as CopyRow | undefined;
    if (row === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index records no copy ${copySnapshotId}`);
    return recordOf(row);
  }
}

function recordOf(row: CopyRow): CopyRecord {
  return {
    copySnapshotId: row.copy_snapshot_id,
    sourceSnapshotId: row.source_snapshot_id,
    volume: row.volume,
    region: row.region,
    connection: row.connection,
    state: row.state,
    encrypted: row.encrypted === 1,
    kmsKeyId: row.kms_key_id,
    incrementalOf: row.incremental_of,
    message: row.message,
    createdAt: new Date(row.created_at),
    completedAt: row.completed_at === null ? null : new Date(row.completed_at),
  };
}
