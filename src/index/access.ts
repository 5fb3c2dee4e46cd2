import type { Database } from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { indexErrorOf } from './sqlite-errors.js';

/**
 * The open database of one index, shared by its sub-stores: the closed flag,
 * the mapping of SQLite's errors to SnaplineErrors naming the file, and the
 * two kinds of write transaction. A call made inside another one's
 * transaction joins it.
 */
export class IndexAccess {
  readonly path: string;
  readonly db: Database;
  #closed = false;

  constructor(path: string, db: Database) {
    this.path = path;
    this.db = db;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes the file. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.db.close();
  }

  assertOpen(): void {
    if (this.#closed) throw new SnaplineError(ErrorCodes.INTERNAL, `the index ${this.path} is closed`);
  }

  /** Runs `fn`, turning SQLite's errors into SnaplineErrors naming the file. */
  run<T>(fn: () => T): T {
    this.assertOpen();
    try {
      return fn();
    } catch (err) {
      throw indexErrorOf(err, this.path);
    }
  }

  /** Runs `fn` in a write transaction (synchronous NORMAL: a power cut may lose it, a process crash does not). */
  write<T>(fn: () => T): T {
    return this.run(() => (this.db.inTransaction ? fn() : this.db.transaction(fn).immediate()));
  }

  /** Runs `fn` in a write transaction that is synced to disk at commit (synchronous FULL). */
  durably<T>(fn: () => T): T {
    return this.run(() => {
      if (this.db.inTransaction) return fn();
      this.db.pragma('synchronous = FULL');
      try {
        return this.db.transaction(fn).immediate();
      } finally {
        this.db.pragma('synchronous = NORMAL');
      }
    });
  }
}
