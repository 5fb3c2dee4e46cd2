import { GIB } from '../../core/constants.js';
import type { RemoteSnapshot, SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';

/** Tags snapline puts on every snapshot it takes, so a lost index can be rebuilt. */
export const VOLUME_TAG = 'snapline:volume';
export const SOURCE_BYTES_TAG = 'snapline:source-bytes';

/** The snapshot, when it exists and is completed; NOT_FOUND or BAD_STATE otherwise. */
export async function completedSnapshot(catalog: SnapshotCatalog, snapshotId: string): Promise<RemoteSnapshot> {
  const [snapshot] = await catalog.describeSnapshots([snapshotId]);
  if (!snapshot) throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} does not exist`);
  if (snapshot.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${snapshotId} is ${snapshot.state}; only a completed snapshot can be read`);
  }
  return snapshot;
}

/** The exact source size snapline tagged the snapshot with, if it is there and sane. */
export function taggedSourceBytes(snapshot: RemoteSnapshot): number | undefined {
  const bytes = Number(snapshot.tags[SOURCE_BYTES_TAG]);
  return Number.isSafeInteger(bytes) && bytes > 0 && bytes <= snapshot.volumeSizeGiB * GIB ? bytes : undefined;
}
