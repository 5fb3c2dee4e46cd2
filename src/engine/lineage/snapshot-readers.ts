/**
 * A restore reads its snapshot for hours; prune must not delete it under
 * the restore. Each restore holds a lock of its own in the snapshot's
 * readers ("reads:SNAPSHOT:..."), so that any number read one snapshot at
 * once, and prune holds "deletes:SNAPSHOT" while it deletes. Each side takes
 * its own lock before it looks for the other's, so whichever comes second
 * sees the first: a restore never starts on a snapshot being deleted, and
 * prune keeps a snapshot a restore reads.
 */
import { randomUUID } from 'node:crypto';
import type { AdvisoryLocks, HeldLock, LockHolder } from '../../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';

const READERS = 'reads:';
const readersOf = (snapshotId: string) => `${READERS}${snapshotId}:`;
const deletionOf = (snapshotId: string) => `deletes:${snapshotId}`;

/** Holds `snapshotId` for reading until released; CONFLICT while prune deletes it. */
export function holdForReading(locks: AdvisoryLocks, snapshotId: string): HeldLock {
  const held = locks.acquire(`${readersOf(snapshotId)}${randomUUID()}`);
  const [deleting] = locks.holders(deletionOf(snapshotId));
  if (deleting !== undefined) {
    held.release();
    throw new SnaplineError(ErrorCodes.CONFLICT, `${snapshotId} is being deleted by a prune (pid ${deleting.pid} on ${deleting.host})`, {
      hint: 'restore another snapshot, or change the retention policy so that it keeps this one',
      details: { snapshotId, lock: deleting.name, pid: deleting.pid, host: deleting.host },
    });
  }
  return held;
}

/** Why `snapshotId` must stay now: one reason for each run reading it. */
function readerReasons(locks: AdvisoryLocks, snapshotId: string): string[] {
  return locks.holders(readersOf(snapshotId)).map(readerReason);
}

/** Every snapshot being read now, with why it must stay (one reason per run reading it), in one look at the locks. */
export function snapshotsBeingRead(locks: AdvisoryLocks): Map<string, string[]> {
  const read = new Map<string, string[]>();
  for (const reader of locks.holders(READERS)) {
    const snapshotId = reader.name.slice(READERS.length, reader.name.lastIndexOf(':'));
    read.set(snapshotId, [...(read.get(snapshotId) ?? []), readerReason(reader)]);
  }
  return read;
}

function readerReason(reader: LockHolder): string {
  return `read by a restore (pid ${reader.pid} on ${reader.host}, since ${reader.since.toISOString()})`;
}

/**
 * Holds `snapshotId` for deleting: the held lock, or the reasons it must
 * stay (the runs reading it) and nothing held.
 */
export function holdForDeletion(locks: AdvisoryLocks, snapshotId: string): { held: HeldLock; readers: [] } | { held: undefined; readers: string[] } {
  const held = locks.acquire(deletionOf(snapshotId));
  const readers = readerReasons(locks, snapshotId);
  if (readers.length === 0) return { held, readers: [] };
  held.release();
  return { held: undefined, readers };
}
