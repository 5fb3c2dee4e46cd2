/**
 * The change-tracker history of the index (schema migration 6): for each
 * snapshot a backup committed, the tracker it was taken against (an NBD
 * dirty bitmap or a changed-blocks file), the checkpoint the tracker
 * counted changes from, and the checkpoint the snapshot itself was taken at,
 * from which the next run's tracker must count. A run's tracker is trusted
 * only when its starting checkpoint is the one recorded with the parent.
 * Statements are prepared once; every method maps SQLite failures to
 * INDEX_UNUSABLE naming the file.
 */
import type { Database, Statement } from 'better-sqlite3';
import type { ChangeTrackerKind } from '../core/changed-ranges.js';
import type { TrackedScan, TrackerLog, TrackerRecord } from '../core/index-ports.js';
import { indexErrorOf } from './sqlite-errors.js';
import { optionalText, requireText } from './validate.js';

export type { TrackedScan, TrackerRecord } from '../core/index-ports.js';

interface TrackerRow {
  snapshot_id: string;
  tracker_kind: ChangeTrackerKind | null;
  tracker_name: string | null;
  since_checkpoint: string | null;
  checkpoint: string | null;
  scan: TrackedScan;
  reason: string | null;
  recorded_at: number;
}

/** The table, for schema.ts's migration. */
export const TRACKER_TABLES = `
  -- The tracker each snapshot was taken against (see trackers.ts). A row
  -- is written once the snapshot is committed; snapshots without one
  -- (older, imported, or taken before the row was written) have no
  -- checkpoint, and a tracker is never trusted on top of them.
  CREATE TABLE snapshot_trackers (
    snapshot_id      TEXT PRIMARY KEY,
    tracker_kind     TEXT CHECK (tracker_kind IN ('dirty-bitmap', 'changed-blocks')),
    tracker_name     TEXT,
    since_checkpoint TEXT,
    checkpoint       TEXT,
    scan             TEXT NOT NULL CHECK (scan IN ('tracked', 'full')),
    reason           TEXT,
    recorded_at      INTEGER NOT NULL
  ) WITHOUT ROWID;
`;

export class TrackerHistory implements TrackerLog {
  readonly #get: Statement;
  readonly #put: Statement;

  constructor(
    db: Database,
    private readonly path: string,
  ) {
    this.#get = db.prepare('SELECT * FROM snapshot_trackers WHERE snapshot_id = ?');
    this.#put = db.prepare(
      `INSERT OR REPLACE INTO snapshot_trackers (snapshot_id, tracker_kind, tracker_name, since_checkpoint, checkpoint, scan, reason, recorded_at)
       VALUES (@snapshot_id, @tracker_kind, @tracker_name, @since_checkpoint, @checkpoint, @scan, @reason, @recorded_at)`,
    );
  }

  /** The record of a snapshot, undefined when it has none. */
  get(snapshotId: string): TrackerRecord | undefined {
    return this.#mapped(() => {
      const row = this.#get.get(requireText('snapshotId', snapshotId)) as TrackerRow | undefined;
      return row === undefined ? undefined : recordOf(row);
    });
  }

  /** Records (or replaces) the tracker of a committed snapshot. Idempotent. */
  record(record: Omit<TrackerRecord, 'recordedAt'>): void {
    this.#mapped(() =>
      this.#put.run({
        snapshot_id: requireText('snapshotId', record.snapshotId),
        tracker_kind: record.kind,
        tracker_name: optionalText('tracker name', record.name),
        since_checkpoint: optionalText('sinceCheckpoint', record.sinceCheckpoint),
        checkpoint: optionalText('checkpoint', record.checkpoint),
        scan: record.scan,
        reason: optionalText('reason', record.reason),
        recorded_at: Date.now(),
      }),
    );
  }

  #mapped<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw indexErrorOf(err, this.path);
    }
  }
}

function recordOf(row: TrackerRow): TrackerRecord {
  return {
    snapshotId: row.snapshot_id,
    kind: row.tracker_kind,
    name: row.tracker_name,
    sinceCheckpoint: row.since_checkpoint,
    checkpoint: row.checkpoint,
    scan: row.scan,
    reason: row.reason,
    recordedAt: new Date(row.recorded_at),
  };
}
