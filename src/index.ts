/**
 * snapline as a library: the same operations as the CLI, typed. Each call
 * opens what it needs (connection, index, worker pool) and closes it again.
 *
 *   import { backup } from 'snapline';
 *   const result = await backup({ source: '/dev/sdb', volume: 'db1', connection: 'local' });
 */
import { backup as backupWith, type BackupOptions, type BackupResult } from './engine/backup/backup.js';
import { diff as diffWith, type DiffResult } from './engine/lineage/diff.js';
import { restore as restoreWith, type RestoreOptions, type RestoreResult } from './engine/restore/restore.js';
import { verify as verifyWith, type VerifyOptions, type VerifyResult } from './engine/restore/verify.js';
import { withSession, type SessionOptions } from './session.js';

export type { BackupOptions, BackupProgress, BackupResult } from './engine/backup/backup.js';
export type { ChangeTrackingResult } from './engine/backup/tracking.js';
export type { RestoreOptions, RestoreProgress, RestoreResult } from './engine/restore/restore.js';
export type { VerifyOptions, VerifyResult, BlockRange } from './engine/restore/verify.js';
export type { DiffResult } from './engine/lineage/diff.js';
export type { SessionOptions } from './session.js';
export { SnaplineError, ErrorCodes, type ErrorCode } from './errors.js';
export { startEmulator, type EmulatorOptions, type RunningEmulator } from './emulator/index.js';

/** Backs up one source to a new snapshot (see `snapline backup`). */
export function backup(options: BackupOptions & SessionOptions): Promise<BackupResult> {
  return withSession(options, (session) => backupWith(session, options));
}

/** Restores a snapshot onto a file or device (see `snapline restore`). */
export function restore(options: RestoreOptions & SessionOptions): Promise<RestoreResult> {
  return withSession(options, (session) => restoreWith(session, options));
}

/** Compares a source with a snapshot (see `snapline verify`). */
export function verify(options: VerifyOptions & SessionOptions): Promise<VerifyResult> {
  return withSession(options, (session) => verifyWith(session, options));
}

/** The blocks that differ between two snapshots (see `snapline diff`). */
export function diff(options: { first: string; second: string } & SessionOptions): Promise<DiffResult> {
  return withSession(options, (session) => diffWith(session, options.first, options.second));
}
