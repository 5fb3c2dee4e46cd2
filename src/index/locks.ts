import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Statement } from 'better-sqlite3';
import type { AdvisoryLocks, HeldLock, LockHolder } from '../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';

export type { HeldLock };

interface LockRow {
  name: string;
  pid: number;
  host: string;
  started_at: number;
  process_started_at: number;
  token: string;
}

/** When this process started (ms since the epoch); tells a reused pid from this process. */
const PROCESS_STARTED_AT = Math.round(Date.now() - process.uptime() * 1000);
/** Two readings of PROCESS_STARTED_AT in one process differ by a few ms at most. */
const SAME_PROCESS_TOLERANCE_MS = 1000;

/**
 * Whether the process that wrote a lock row still runs. A holder on another
 * host cannot be checked and counts as alive. A row with this process's pid
 * but another start time was left by an earlier process that had the same pid
 * (a restarted container), so it is dead.
 */
function holderAlive(row: LockRow): boolean {
  if (row.host !== hostname()) return true;
  if (row.pid === process.pid) return Math.abs(row.process_started_at - PROCESS_STARTED_AT) < SAME_PROCESS_TOLERANCE_MS;
  try {
    process.kill(row.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Advisory named locks kept in the index's locks table (AdvisoryLocks). */
export class IndexLocks implements AdvisoryLocks {
  readonly #access: IndexAccess;
  readonly #select: Statement;
  readonly #selectPrefix: Statement;
  readonly #upsert: Statement;
  readonly #delete: Statement;
  readonly #held = new Map<string, string>();

  constructor(access: IndexAccess) {
    const db = access.db;
    this.#access = access;
    this.#select = db.prepare('SELECT * FROM locks WHERE name = ?');
    this.#selectPrefix = db.prepare('SELECT * FROM locks WHERE substr(name, 1, ?) = ? ORDER BY started_at, name');
    this.#upsert = db.prepare(
      `INSERT INTO locks (name, pid, host, started_at, process_started_at, token)
       VALUES (@name, @pid, @host, @started_at, @process_started_at, @token)
       ON CONFLICT (name) DO UPDATE SET pid = excluded.pid, host = excluded.host, started_at = excluded.started_at,
         process_started_at = excluded.process_started_at, token = excluded.token`,
    );
    this.#delete = db.prepare('DELETE FROM locks WHERE name = ? AND token = ?');
  }

  /**
   * Takes `name`, or throws CONFLICT naming the live holder (pid, host,
   * since). A lock left by a dead process on this host is taken over. Not
   * re-entrant: a second acquire of a held name conflicts, in this process too.
   * Releasing after the index closed does nothing (closing released it).
   */
  acquire(name: string): HeldLock {
    if (typeof name !== 'string' || name.length === 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'lock name must be a non-empty string');
    }
    const token = randomUUID();
    this.#access.write(() => {
      const row = this.#select.get(name) as LockRow | undefined;
      if (row !== undefined && holderAlive(row)) {
        const since = new Date(row.started_at).toISOString();
        throw new SnaplineError(
          ErrorCodes.CONFLICT,
          `${name} is in use by pid ${row.pid} on ${row.host} since ${since}`,
          {
            hint: 'wait until that run ends, or stop it',
            details: { lock: name, pid: row.pid, host: row.host, since },
          },
        );
      }
      this.#upsert.run({
        name,
        pid: process.pid,
        host: hostname(),
        started_at: Date.now(),
        process_started_at: PROCESS_STARTED_AT,
        token,
      });
    });
    this.#held.set(token, name);
    return {
      release: () => {
        if (!this.#access.closed) this.#access.run(() => this.#release(token));
      },
    };
  }

  holders(prefix: string): LockHolder[] {
    if (typeof prefix !== 'string' || prefix.length === 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'lock name prefix must be a non-empty string');
    }
    const rows = this.#access.run(() => this.#selectPrefix.all(prefix.length, prefix) as LockRow[]);
    return rows.filter(holderAlive).map((row) => ({ name: row.name, pid: row.pid, host: row.host, since: new Date(row.started_at) }));
  }

  #release(token: string): void {
    const name = this.#held.get(token);
    if (name === undefined) return;
    this.#delete.run(name, token);
    this.#held.delete(token);
  }

  /** Releases every lock taken through this object. */
  releaseAll(): void {
    for (const token of [...this.#held.keys()]) this.#release(token);
  }
}
