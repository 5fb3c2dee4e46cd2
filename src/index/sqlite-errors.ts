import { ErrorCodes, SnaplineError } from '../errors.js';

function sqliteCodeOf(err: unknown): string | undefined {
  if (err instanceof Error && err.name === 'SqliteError') {
    const code = (err as Error & { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/**
 * Turns what better-sqlite3 throws into a SnaplineError naming the index file.
 * A SnaplineError passes through unchanged.
 */
export function indexErrorOf(err: unknown, path: string): SnaplineError {
  if (err instanceof SnaplineError) return err;
  const code = sqliteCodeOf(err);
  const detail = err instanceof Error ? err.message : String(err);
  const options = { cause: err, details: { indexPath: path, sqliteCode: code } };
  if (code === undefined) return new SnaplineError(ErrorCodes.INTERNAL, `index ${path}: ${detail}`, options);
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${path} is damaged (${detail})`, {
      ...options,
      hint: 'run `snapline index check`; move the file away and rebuild with `snapline index rebuild` if it stays damaged',
    });
  }
  if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) {
    return new SnaplineError(ErrorCodes.CONFLICT, `the index ${path} is busy: another snapline process is writing it`, {
      ...options,
      retryable: true,
    });
  }
  if (code === 'SQLITE_FULL') {
    return new SnaplineError(ErrorCodes.IO_FAILED, `cannot write the index ${path}: the disk is full`, options);
  }
  if (
    code.startsWith('SQLITE_IOERR') ||
    code.startsWith('SQLITE_CANTOPEN') ||
    code.startsWith('SQLITE_READONLY') ||
    code === 'SQLITE_PERM'
  ) {
    return new SnaplineError(ErrorCodes.IO_FAILED, `cannot use the index ${path}: ${detail}`, options);
  }
  return new SnaplineError(ErrorCodes.INTERNAL, `index ${path}: ${detail}`, options);
}

/** True for a UNIQUE or PRIMARY KEY violation. */
export function isUniqueViolation(err: unknown): boolean {
  const code = sqliteCodeOf(err);
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
