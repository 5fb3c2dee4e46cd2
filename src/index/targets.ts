/** What the index vouches each restore target holds (RestoreTargets). */
import type { RestoreTargets } from '../core/index-ports.js';
import type { Statement } from 'better-sqlite3';
import type { IndexAccess } from './access.js';
import { type TargetRecord, type TargetRow, type TargetState, targetRecordOf } from './records.js';
import { checkedTarget } from './validate.js';

export class TargetStore implements RestoreTargets {
  readonly #access: IndexAccess;
  readonly #upsert: Statement;
  readonly #byPath: Statement;

  constructor(access: IndexAccess) {
    this.#access = access;
    this.#upsert = access.db.prepare(
      `INSERT INTO targets (path, snapshot_id, state, size_bytes, updated_at)
       VALUES (@path, @snapshot_id, @state, @size_bytes, @updated_at)
       ON CONFLICT (path) DO UPDATE SET snapshot_id = excluded.snapshot_id, state = excluded.state,
         size_bytes = excluded.size_bytes, updated_at = excluded.updated_at`,
    );
    this.#byPath = access.db.prepare('SELECT * FROM targets WHERE path = ?');
  }

  /** What the index vouches a target holds. Durable (an 'incomplete' mark must survive a crash). */
  set(t: { path: string; snapshotId: string | null; state: TargetState; sizeBytes: number }): void {
    const { path, snapshotId, state, sizeBytes } = checkedTarget(t);
    this.#access.durably(() => {
      this.#upsert.run({ path, snapshot_id: snapshotId, state, size_bytes: sizeBytes, updated_at: Date.now() });
    });
  }

  /** The database file and the files SQLite keeps beside it (write-ahead log, shared memory, rollback journal). */
  ownFiles(): string[] {
    return ['', '-wal', '-shm', '-journal'].map((suffix) => `${this.#access.path}${suffix}`);
  }

  get(path: string): TargetRecord | undefined {
    return this.#access.run(() => {
      const row = this.#byPath.get(path) as TargetRow | undefined;
      return row === undefined ? undefined : targetRecordOf(row);
    });
  }
}
