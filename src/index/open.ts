import { accessSync, closeSync, chmodSync, constants, existsSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { APPLICATION_ID, SCHEMA_VERSION, migrations } from './schema.js';
import { indexErrorOf } from './sqlite-errors.js';

const SQLITE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
const HEADER_BYTES = 100;
/** How long a statement waits for another process's write lock before CONFLICT. */
const BUSY_TIMEOUT_MS = 10_000;
/** The WAL is cut back to this size after a checkpoint (a full run's commit grows it past 100 MB). */
const WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

function unusable(path: string, why: string, hint?: string): SnaplineError {
  return new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `${path} is not a usable snapline index: ${why}`, {
    details: { indexPath: path },
    ...(hint === undefined ? {} : { hint }),
  });
}

/** Creates the file (0600) and its missing parent directories (0700) when absent. */
function ensureFile(path: string): number {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw unusable(path, 'it is not a regular file');
    size = stat.size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw indexFsError(err, path);
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      closeSync(openSync(path, 'wx', 0o600));
      chmodSync(path, 0o600);
    } catch (createErr) {
      if ((createErr as NodeJS.ErrnoException).code !== 'EEXIST') throw indexFsError(createErr, path);
    }
    size = statSync(path).size;
  }
  return size;
}

function indexFsError(err: unknown, path: string): SnaplineError {
  if (err instanceof SnaplineError) return err;
  if (PERMISSION_CODES.has((err as NodeJS.ErrnoException).code ?? '')) {
    const refused = noPermission(path, err);
    if (refused !== undefined) return refused;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new SnaplineError(ErrorCodes.IO_FAILED, `cannot use the index ${path}: ${message}`, {
    cause: err,
    details: { indexPath: path },
  });
}

/** File system and SQLite codes that mean this user may not create or write the index (or the folder it needs). */
const PERMISSION_CODES = new Set(['EACCES', 'EPERM', 'EROFS']);
const SQLITE_PERMISSION = /^SQLITE_(READONLY|CANTOPEN|PERM)/;

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * What this user may not write of the index: the file, or its folder
 * (SQLite writes its -wal and -shm files beside it; when the folder is still
 * to be made, the nearest one that exists). Undefined when both are writable.
 */
function unwritablePart(path: string): { path: string; what: string } | undefined {
  if (existsSync(path) && !writable(path)) return { path, what: `the index ${path} is read-only for this user` };
  let folder = dirname(path);
  while (!existsSync(folder) && dirname(folder) !== folder) folder = dirname(folder);
  return writable(folder) ? undefined : { path: folder, what: `this user may not write in ${folder}, where the index ${path} is kept` };
}

/** IO_FAILED naming what this user may not write and what to do, or undefined when nothing is unwritable. */
function noPermission(path: string, cause: unknown): SnaplineError | undefined {
  const part = unwritablePart(path);
  if (part === undefined) return undefined;
  return new SnaplineError(ErrorCodes.IO_FAILED, `cannot use the index: ${part.what}`, {
    cause,
    details: { indexPath: path },
    hint: `give this user write access to ${part.path}, or choose another index file with --index PATH (or SNAPLINE_INDEX; the default is under SNAPLINE_DATA_DIR)`,
  });
}

/**
 * Refuses a file whose first 100 bytes are not a sound SQLite header, before
 * SQLite sees it: a truncated file, another format, or a damaged header.
 * An empty file is a new index.
 */
function checkHeader(path: string, size: number): void {
  if (size === 0) return;
  if (size < HEADER_BYTES) throw unusable(path, `it has ${size} bytes, too few for an SQLite database`);
  const header = Buffer.alloc(HEADER_BYTES);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, header, 0, HEADER_BYTES, 0);
  } finally {
    closeSync(fd);
  }
  if (!header.subarray(0, SQLITE_MAGIC.length).equals(SQLITE_MAGIC)) throw unusable(path, 'it is not an SQLite database');
  const rawPageSize = header.readUInt16BE(16);
  const pageSize = rawPageSize === 1 ? 65_536 : rawPageSize;
  const pageSizeSound = pageSize >= 512 && pageSize <= 65_536 && (pageSize & (pageSize - 1)) === 0;
  const versionsSound = [1, 2].includes(header[18]!) && [1, 2].includes(header[19]!);
  const payloadFractionsSound = header[21] === 64 && header[22] === 32 && header[23] === 32;
  if (!pageSizeSound || !versionsSound || !payloadFractionsSound || size % pageSize !== 0) {
    throw unusable(path, 'its SQLite header is damaged', 'restore the file from a copy, or move it away and rebuild with `snapline index rebuild`');
  }
  const applicationId = header.readInt32BE(68);
  if (applicationId !== 0 && applicationId !== APPLICATION_ID) {
    throw unusable(path, 'it is an SQLite database of another application');
  }
}

interface FileIdentity {
  applicationId: number;
  userVersion: number;
  schemaObjects: number;
}

function identityOf(db: Database.Database): FileIdentity {
  return {
    applicationId: db.pragma('application_id', { simple: true }) as number,
    userVersion: db.pragma('user_version', { simple: true }) as number,
    schemaObjects: db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get() as number,
  };
}

/** Throws unless the file is empty, or a snapline index at a version this code knows. */
function checkIdentity(path: string, identity: FileIdentity): void {
  const empty = identity.applicationId === 0 && identity.userVersion === 0 && identity.schemaObjects === 0;
  if (empty) return;
  if (identity.applicationId !== APPLICATION_ID) throw unusable(path, 'it is an SQLite database of another application');
  if (identity.userVersion > SCHEMA_VERSION) {
    throw unusable(
      path,
      `it was written by a newer snapline (schema version ${identity.userVersion}; this snapline knows up to ${SCHEMA_VERSION})`,
      'upgrade snapline to use this index',
    );
  }
}

/** Applies the missing migrations in one write transaction (re-reading the version under the lock). */
function migrate(db: Database.Database, path: string): void {
  db.transaction(() => {
    const identity = identityOf(db);
    checkIdentity(path, identity);
    if (identity.userVersion === SCHEMA_VERSION) return;
    if (identity.applicationId === 0) db.pragma(`application_id = ${APPLICATION_ID}`);
    for (let version = identity.userVersion; version < SCHEMA_VERSION; version += 1) migrations[version]!(db);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

/**
 * Opens or creates the index database at `path`: WAL (cut back to 64 MiB
 * after checkpoints), synchronous NORMAL, foreign keys, auto_vacuum FULL for
 * a new file (pages freed when a run's journal is committed go back to the
 * file system at once, so the file holds little but live maps). Refuses with INDEX_UNUSABLE, naming the
 * file, a file that is not a snapline index, is damaged, or has a newer
 * schema; a foreign or newer file is not modified.
 */
export function openIndexDatabase(path: string): Database.Database {
  const size = ensureFile(path);
  checkHeader(path, size);
  let db: Database.Database | undefined;
  try {
    db = new Database(path, { fileMustExist: true, timeout: BUSY_TIMEOUT_MS });
    const identity = identityOf(db);
    checkIdentity(path, identity);
    if (identity.schemaObjects === 0) db.pragma('auto_vacuum = FULL');
    db.pragma('journal_mode = WAL');
    db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT_BYTES}`);
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma('trusted_schema = OFF');
    if (identity.userVersion < SCHEMA_VERSION) migrate(db, path);
    return db;
  } catch (err) {
    db?.close();
    const sqliteCode = (err as { code?: unknown }).code;
    throw (typeof sqliteCode === 'string' && SQLITE_PERMISSION.test(sqliteCode) ? noPermission(path, err) : undefined) ?? indexErrorOf(err, path);
  }
}
