/**
 * The recovery drills of the index (see engine/dr/drill.ts): one row per
 * drill, with its outcome and the measured recovery time. BlockIndex reaches
 * it through `drills()`, which maps errors and makes each write durable.
 * The statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';
import { requireText } from './validate.js';
import type { DrillKind, DrillRecord, NewDrill } from '../core/index-ports.js';

export type { DrillKind, DrillRecord, NewDrill } from '../core/index-ports.js';


interface DrillRow {
  id: number;
  volume: string;
  snapshot_id: string;
  kind: DrillKind;
  started_at: number;
  finished_at: number;
  passed: number;
  recovery_ms: number;
  blocks_read: number;
  mismatched_blocks: number;
  message: string | null;
}

const COLUMNS = 'id, volume, snapshot_id, kind, started_at, finished_at, passed, recovery_ms, blocks_read, mismatched_blocks, message';

export class DrillRows {
  readonly #insert: Statement;
  readonly #lastPerVolume: Statement<[], DrillRow>;
  readonly #ofVolume: Statement<[string], DrillRow>;

  constructor(db: Database) {
    this.#insert = db.prepare(
      `INSERT INTO drills (volume, snapshot_id, kind, started_at, finished_at, passed, recovery_ms, blocks_read, mismatched_blocks, message)
       VALUES (@volume, @snapshotId, @kind, @startedAt, @finishedAt, @passed, @recoveryMs, @blocksRead, @mismatchedBlocks, @message)`,
    );
    this.#lastPerVolume = db.prepare(`SELECT ${COLUMNS} FROM drills WHERE id IN (SELECT max(id) FROM drills GROUP BY volume) ORDER BY volume`);
    this.#ofVolume = db.prepare(`SELECT ${COLUMNS} FROM drills WHERE volume = ? ORDER BY id`);
  }

  record(drill: NewDrill): DrillRecord {
    const id = Number(
      this.#insert.run({
        ...drill,
        volume: requireText('volume', drill.volume),
        snapshotId: requireText('snapshot id', drill.snapshotId),
        startedAt: drill.startedAt.getTime(),
        finishedAt: drill.finishedAt.getTime(),
        passed: drill.passed ? 1 : 0,
      }).lastInsertRowid,
    );
    return { ...drill, id };
  }

  /** The newest drill of each volume, by volume name. */
  lastPerVolume(): DrillRecord[] {
    return this.#lastPerVolume.all().map(recordOf);
  }

  /** Every drill of a volume, oldest first. */
  ofVolume(volume: string): DrillRecord[] {
    return this.#ofVolume.all(volume).map(recordOf);
  }
}

function recordOf(row: DrillRow): DrillRecord {
  return {
    id: row.id,
    volume: row.volume,
    snapshotId: row.snapshot_id,
    kind: row.kind,
    startedAt: new Date(row.started_at),
    finishedAt: new Date(row.finished_at),
    passed: row.passed === 1,
    recoveryMs: row.recovery_ms,
    blocksRead: row.blocks_read,
    mismatchedBlocks: row.mismatched_blocks,
    message: row.message,
  };
}
