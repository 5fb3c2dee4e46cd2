/** What the archive commands share: where archives go, and how an archive named on the command line is found. */
import { STORAGE_CLASSES, archiveTargetOf } from '../../core/archive-options.js';
import type { ArchiveStore, ArchiveTarget } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { ArchiveRecord, IndexPorts } from '../../core/index-ports.js';
import { glacierDescription } from './format.js';

/** The S3 storage classes an archive may use (those a connection may name). */
export const ARCHIVE_STORAGE_CLASSES: readonly string[] = STORAGE_CLASSES;
/** Storage classes whose objects must be restored before they can be read. */
export const RESTORE_CLASSES: ReadonlySet<string> = new Set(['DEEP_ARCHIVE', 'GLACIER']);

/** The archive settings of the connection, and the stores they open. */
export interface ArchivePlaces {
  /**
   * The store of `target` at `location` (default: the connection's bucket or
   * vault). CONFIG_INVALID when no location is given or configured.
   */
  store(target: ArchiveTarget, location?: string): ArchiveStore;
  /** s3 when the connection names a bucket, else glacier when it names a vault; undefined when neither. */
  defaultTarget?: ArchiveTarget;
  /** Key prefix of every archive (the connection's archive.path). */
  path?: string;
  /** The connection's default storage class. */
  storageClass?: string;
  /** The connection's default for `archive prune`. */
  deleteOlderThanDays?: number;
}

export function checkTarget(value: string | undefined, places: ArchivePlaces): ArchiveTarget {
  const target = value ?? places.defaultTarget;
  if (target === undefined) {
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, 'no archive bucket or vault is given or configured', {
      hint: 'name one with --bucket NAME (add --create-bucket to make it) or --vault NAME, or set archive.bucket or archive.vault in a connection of the config file (see `snapline connections show`)',
    });
  }
  return archiveTargetOf(target);
}

/** The lock a run holds while it writes or deletes the archive of a snapshot at a place. */
export function archiveLockName(target: ArchiveTarget, location: string, snapshotId: string): string {
  return `archive:${target}:${location}:${snapshotId}`;
}

/** The store an archive lives in. */
export function storeOf(places: ArchivePlaces, record: ArchiveRecord): ArchiveStore {
  return places.store(record.target, record.location);
}

/** The name of one of an archive's objects in its store: the S3 key, or the Glacier archive description. */
export function remoteName(record: ArchiveRecord, name: string): string {
  return record.target === 's3' ? `${record.prefix}${name}` : glacierDescription(record.archiveId, name, record.snapshotId, record.volume);
}

/**
 * The archive `ref` names: an archive id, or a snapshot id with exactly one
 * live archive. NOT_FOUND or INVALID_ARGUMENT (ambiguous) otherwise.
 */
export function findArchive(index: Pick<IndexPorts, 'archives'>, ref: string): ArchiveRecord {
  const byId = index.archives.get(ref);
  if (byId !== undefined) return byId;
  const bySnapshot = index.archives.list().filter((a) => a.snapshotId === ref && a.state !== 'deleted');
  if (bySnapshot.length === 1) return bySnapshot[0]!;
  if (bySnapshot.length > 1) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${ref} has ${bySnapshot.length} archives: name one (${bySnapshot.map((a) => a.archiveId).join(', ')})`);
  }
  throw new SnaplineError(ErrorCodes.NOT_FOUND, `no archive ${ref} in the index`, {
    details: { archive: ref },
    hint: 'list the archives with `snapline archive status`, or what the store holds with `snapline archive inventory`',
  });
}

/** The archive and its ancestors, oldest (the full archive) first. */
export function chainOf(index: Pick<IndexPorts, 'archives'>, record: ArchiveRecord): ArchiveRecord[] {
  const chain = [record];
  let current = record;
  while (current.parentArchiveId !== null) {
    const parent = index.archives.get(current.parentArchiveId);
    if (parent === undefined) throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index lost archive ${current.parentArchiveId}, the parent of ${current.archiveId}`);
    chain.unshift(parent);
    current = parent;
  }
  return chain;
}

/** Throws BAD_STATE unless every archive of the chain is archived (fully written, not deleted). */
export function requireArchived(chain: readonly ArchiveRecord[]): void {
  for (const member of chain) {
    if (member.state !== 'archived') {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${member.archiveId} is ${member.state}, not archived`, {
        details: { archiveId: member.archiveId },
        hint: member.state === 'uploading' ? `finish it by running \`snapline archive create ${member.snapshotId}\` again` : undefined,
      });
    }
  }
}
