import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, SnaplineError } from '../../errors.js';

/** The files of an endpoint data directory. */
export interface DataDirLayout {
  root: string;
  catalog: string;
  packs: string;
  secret: string;
  /** The store id: random, made with the data, so clients can tell one endpoint's data from another's. */
  storeId: string;
  lock: string;
}

export function layoutOf(root: string): DataDirLayout {
  return {
    root,
    catalog: join(root, 'catalog.sqlite'),
    packs: join(root, 'packs'),
    secret: join(root, 'token-secret'),
    storeId: join(root, 'store-id'),
    lock: join(root, 'LOCK'),
  };
}

/**
 * Creates the directory tree when missing, and the catalog file readable by
 * the owner only (SQLite gives its -wal and -shm files the same mode; an
 * existing catalog is narrowed to it). Idempotent.
 */
export function ensureLayout(layout: DataDirLayout): void {
  mkdirSync(layout.packs, { recursive: true, mode: 0o700 });
  closeSync(openSync(layout.catalog, 'a', 0o600));
  chmodSync(layout.catalog, 0o600);
}

/**
 * Takes the data directory for this process: two endpoints appending to the
 * same packs would corrupt them. A lock left by a process that no longer runs
 * is taken over. Returns the release function (idempotent).
 */
export function lockDataDir(layout: DataDirLayout): () => void {
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      writeFileSync(layout.lock, String(process.pid), { flag: 'wx', mode: 0o600 });
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(layout.lock, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(layout.lock, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && processIsAlive(holder)) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `the endpoint data directory ${layout.root} is in use by process ${holder}`, {
          hint: 'stop that endpoint, or give this one another --data-dir',
        });
      }
      rmSync(layout.lock, { force: true });
    }
  }
  throw new SnaplineError(ErrorCodes.CONFLICT, `could not lock the endpoint data directory ${layout.root}`);
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The token-signing secret, created on first use and kept with the data. */
export function loadSecret(layout: DataDirLayout): Buffer {
  try {
    const secret = readFileSync(layout.secret);
    if (secret.length >= 32) return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(32);
  writeFileSync(layout.secret, secret, { mode: 0o600 });
  return secret;
}

/**
 * The store id of the data directory (16 hex digits), made on first use and
 * kept with the data: the same across restarts, different for other data.
 */
export function loadStoreId(layout: DataDirLayout): string {
  try {
    const id = readFileSync(layout.storeId, 'utf8').trim();
    if (/^[0-9a-f]{16}$/.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const id = randomBytes(8).toString('hex');
  writeFileSync(layout.storeId, `${id}\n`, { mode: 0o600 });
  return id;
}
