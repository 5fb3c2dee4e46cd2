/**
 * The history of runs (schema migration 5), the index's RunLog: one row per
 * volume a backup, restore, prune or archive run dealt with, failed runs
 * included. A row is filed under the store the index is bound to; lists show
 * the rows of that store and those filed under none. BlockIndex wraps each
 * method in its error mapping and transactions; the statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';
import { RUN_OPERATIONS, type RunEntry, type RunOperation } from '../core/run-log.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { StoreRef } from './stores.js';
import { optionalText, requireInteger, requireTime } from './validate.js';

interface RunRow {
  operation: RunOperation;
  volume: string | null;
  started_at: number;
  finished_at: number;
  result: 'success' | 'failure';
  error_code: string | null;
  snapshot_id: string | null;
  changed_blocks: number;
  changed_bytes: number;
  transferred_blocks: number;
  transferred_bytes: number;
  live_snapshots: number | null;
}

const COUNT_MAX = Number.MAX_SAFE_INTEGER;

export class RunRows {
  readonly #insert: Statement;
  readonly #list: Statement;

  constructor(db: Database) {
    this.#insert = db.prepare(`
      INSERT INTO runs (operation, volume, store, started_at, finished_at, result, error_code, snapshot_id,
                        changed_blocks, changed_bytes, transferred_blocks, transferred_bytes, live_snapshots)
      VALUES (@operation, @volume, @store, @started_at, @finished_at, @result, @error_code, @snapshot_id,
              @changed_blocks, @changed_bytes, @transferred_blocks, @transferred_bytes, @live_snapshots)`);
    this.#list = db.prepare(`
      SELECT operation, volume, started_at, finished_at, result, error_code, snapshot_id,
             changed_blocks, changed_bytes, transferred_blocks, transferred_bytes, live_snapshots
      FROM runs
      WHERE (store IS NULL OR @store IS NULL OR store = @store)
        AND (@volume IS NULL OR volume = @volume)
        AND (@operation IS NULL OR operation = @operation)
      ORDER BY run_key`);
  }

  record(entry: RunEntry, store: StoreRef | undefined): void {
    const checked = checkedRunEntry(entry);
    this.#insert.run({
      operation: checked.operation,
      volume: checked.volume,
      store: store?.id ?? null,
      started_at: checked.startedAt.getTime(),
      finished_at: checked.finishedAt.getTime(),
      result: checked.result,
      error_code: checked.errorCode,
      snapshot_id: checked.snapshotId,
      changed_blocks: checked.changedBlocks,
      changed_bytes: checked.changedBytes,
      transferred_blocks: checked.transferredBlocks,
      transferred_bytes: checked.transferredBytes,
      live_snapshots: checked.liveSnapshots,
    });
  }

  list(filter: { volume?: string; operation?: RunOperation }, store: StoreRef | undefined): RunEntry[] {
    const rows = this.#list.all({ store: store?.id ?? null, volume: filter.volume ?? null, operation: filter.operation ?? null }) as RunRow[];
    return rows.map((row) => ({
      operation: row.operation,
      volume: row.volume,
      startedAt: new Date(row.started_at),
      finishedAt: new Date(row.finished_at),
      result: row.result,
      errorCode: row.error_code,
      snapshotId: row.snapshot_id,
      changedBlocks: row.changed_blocks,
      changedBytes: row.changed_bytes,
      transferredBlocks: row.transferred_blocks,
      transferredBytes: row.transferred_bytes,
      liveSnapshots: row.live_snapshots,
    }));
  }
}

/**
 * The entry as a run log keeps it (its own Dates, absent texts null), when it
 * holds together; INVALID_ARGUMENT naming the field otherwise.
 */
export function checkedRunEntry(entry: RunEntry): RunEntry {
  if (!RUN_OPERATIONS.includes(entry?.operation)) throw invalid('operation', entry?.operation);
  if (entry.result !== 'success' && entry.result !== 'failure') throw invalid('result', entry.result);
  const errorCode = optionalText('errorCode', entry.errorCode);
  if ((entry.result === 'failure') !== (errorCode !== null)) throw invalid('errorCode', errorCode);
  const startedAt = requireTime('startedAt', entry.startedAt);
  const finishedAt = requireTime('finishedAt', entry.finishedAt);
  if (finishedAt < startedAt) throw invalid('finishedAt', entry.finishedAt.toISOString());
  return {
    operation: entry.operation,
    volume: optionalText('volume', entry.volume),
    startedAt: new Date(startedAt),
    finishedAt: new Date(finishedAt),
    result: entry.result,
    errorCode,
    snapshotId: optionalText('snapshotId', entry.snapshotId),
    changedBlocks: requireInteger('changedBlocks', entry.changedBlocks, 0, COUNT_MAX),
    changedBytes: requireInteger('changedBytes', entry.changedBytes, 0, COUNT_MAX),
    transferredBlocks: requireInteger('transferredBlocks', entry.transferredBlocks, 0, COUNT_MAX),
    transferredBytes: requireInteger('transferredBytes', entry.transferredBytes, 0, COUNT_MAX),
    liveSnapshots: entry.liveSnapshots === null ? null : requireInteger('liveSnapshots', entry.liveSnapshots, 0, COUNT_MAX),
  };
}

function invalid(name: string, value: unknown): SnaplineError {
  return new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `run ${name} is not valid: ${JSON.stringify(value)}`, { details: { argument: name } });
}
