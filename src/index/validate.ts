/** Argument checks at the index's edge; each names the bad argument (INVALID_ARGUMENT). */
import { GIB, MAX_VOLUME_SIZE_GIB } from '../core/constants.js';
import type { BeginRunInput, ImportSnapshotInput, TargetState } from '../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';

function invalid(name: string, expected: string, value: unknown): SnaplineError {
  const shown = typeof value === 'string' ? JSON.stringify(value) : String(value);
  return new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} must be ${expected}, got ${shown}`, {
    details: { argument: name },
  });
}

export function requireText(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw invalid(name, 'a non-empty string', value);
  return value;
}

/** Any string, empty included (an unknown source path). */
export function requireString(name: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(name, 'a string', value);
  return value;
}

export function optionalText(name: string, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') throw invalid(name, 'a string or null', value);
  return value;
}

export function requireInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

export function requireBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw invalid(name, 'a boolean', value);
  return value;
}

/** Milliseconds since the epoch of a valid Date. */
export function requireTime(name: string, value: unknown): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalid(name, 'a valid Date', value);
  return value.getTime();
}

/** The digest as a Buffer over the same memory (no copy). */
export function requireDigest(name: string, value: unknown, bytes: number): Buffer {
  if (!(value instanceof Uint8Array) || value.byteLength !== bytes) {
    const got = value instanceof Uint8Array ? `${value.byteLength} bytes` : typeof value;
    throw invalid(name, `a ${bytes}-byte digest`, got);
  }
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** beginRun's arguments checked (the SQLite index and its in-memory fake check them alike). */
export function checkedBeginRun(r: BeginRunInput) {
  const volume = requireText('volume', r?.volume);
  const snapshotId = requireText('snapshotId', r.snapshotId);
  const parentSnapshotId = optionalText('parentSnapshotId', r.parentSnapshotId);
  const baseSnapshotId = optionalText('baseSnapshotId', r.baseSnapshotId);
  const volumeSizeGiB = requireInteger('volumeSizeGiB', r.volumeSizeGiB, 1, MAX_VOLUME_SIZE_GIB);
  const sourceBytes = requireInteger('sourceBytes', r.sourceBytes, 0, volumeSizeGiB * GIB);
  const encrypted = requireBoolean('encrypted', r.encrypted);
  const description = optionalText('description', r.description);
  const runOptions = optionalText('runOptions', r.runOptions);
  return { volume, snapshotId, parentSnapshotId, baseSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, runOptions };
}

/** importSnapshot's arguments checked; startedAt defaults to now (epoch ms). */
export function checkedImport(r: ImportSnapshotInput) {
  const snapshotId = requireText('snapshotId', r?.snapshotId);
  const volume = requireText('volume', r.volume);
  const parentSnapshotId = optionalText('parentSnapshotId', r.parentSnapshotId);
  const volumeSizeGiB = requireInteger('volumeSizeGiB', r.volumeSizeGiB, 1, MAX_VOLUME_SIZE_GIB);
  const sourceBytes = requireInteger('sourceBytes', r.sourceBytes, 0, volumeSizeGiB * GIB);
  const encrypted = requireBoolean('encrypted', r.encrypted);
  const description = optionalText('description', r.description);
  const startedAt = r.startedAt === undefined ? Date.now() : requireTime('startedAt', r.startedAt);
  return { snapshotId, volume, parentSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, startedAt };
}

/** targets.set's record checked (the SQLite index and its in-memory fake check it alike). */
export function checkedTarget(t: { path: string; snapshotId: string | null; state: TargetState; sizeBytes: number }) {
  const path = requireText('target path', t?.path);
  const snapshotId = optionalText('snapshotId', t.snapshotId);
  if (t.state !== 'complete' && t.state !== 'incomplete') {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `target state must be complete or incomplete, got ${String(t.state)}`);
  }
  const sizeBytes = requireInteger('sizeBytes', t.sizeBytes, 0, Number.MAX_SAFE_INTEGER);
  return { path, snapshotId, state: t.state, sizeBytes };
}
