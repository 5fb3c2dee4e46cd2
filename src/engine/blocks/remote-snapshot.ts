import type { VolumeLineage } from '../../core/index-ports.js';
import { GIB } from '../../core/constants.js';
import type { RemoteSnapshot, SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { EC2_SETTLE_MS, describeListed, settledBy, type SettleWait } from './committer.js';

/** Tags snapline puts on every snapshot it takes, so a lost index can be rebuilt. */
export const VOLUME_TAG = 'snapline:volume';
export const SOURCE_BYTES_TAG = 'snapline:source-bytes';

/**
 * StartSnapshot's Timeout when none is given: the largest AWS accepts. A
 * backup asks for it by default and a rehydration to a snapshot always (its
 * reads of an archive may stall as a backup's scan may).
 *
 * AWS cancels a pending snapshot that gets no block for Timeout minutes after
 * StartSnapshot, or no CompleteSnapshot for Timeout minutes after its last
 * block, and everything uploaded to it is lost. An incremental run writes
 * only changed blocks, and the scan before the first of them or between two
 * of them can last longer than any fixed Timeout: a large volume with few
 * changes, a slow or stalled source, a machine suspended mid-run. So the run
 * (1) starts its snapshot only when the first block to upload is ready (see
 * RunSnapshot): the scan of an unchanged prefix does not count; and (2) asks
 * for this Timeout, because the pause between two changed blocks is bounded
 * only by what is left to scan, whose duration cannot be known before it is
 * read. A long Timeout costs nothing while the run goes on; after a crash it
 * keeps the snapshot resumable for three days, holding one of the account's
 * pending-snapshot slots until then.
 */
export const DEFAULT_SNAPSHOT_TIMEOUT_MINUTES = 4320;

/** How a reader of a snapshot waits for EC2 to settle (see completedSnapshot). */
export interface SettleOptions {
  signal?: AbortSignal;
  /** Told at each look that finds the snapshot not settled yet, before the pause. */
  onSettling?: (wait: SettleWait) => void;
  /** First and largest pause between two looks (default as for a backup's wait). */
  pollMs?: { first: number; max: number };
}

/**
 * The snapshot, when it exists and is completed; NOT_FOUND or BAD_STATE
 * otherwise. One the index records as completed may not be listed by EC2
 * yet, or listed pending, shortly after its completion (EC2 is eventually
 * consistent): it is looked at again until EC2_SETTLE_MS after that
 * completion, as a backup waits for its parent, before it is refused.
 */
export async function completedSnapshot(
  deps: { index: { lineage: Pick<VolumeLineage, 'getSnapshot'> }; catalog: Pick<SnapshotCatalog, 'describeSnapshots'> },
  snapshotId: string,
  options: SettleOptions = {},
): Promise<RemoteSnapshot> {
  const record = deps.index.lineage.getSnapshot(snapshotId);
  const snapshot = await describeListed(deps.catalog, snapshotId, settledBy(record), {
    signal: options.signal,
    completed: true,
    onUnsettled: options.onSettling,
    ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
  });
  const recorded = record?.state === 'completed' ? ` (the index recorded it completed at ${(record.completedAt ?? record.startedAt).toISOString()}; EC2 shows a snapshot within ${EC2_SETTLE_MS / 60_000} minutes)` : '';
  if (!snapshot) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} does not exist${recorded === '' ? '' : ` in EC2${recorded}`}`, { details: { snapshotId } });
  }
  if (snapshot.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${snapshotId} is ${snapshot.state}${snapshot.state === 'pending' ? recorded : ''}; only a completed snapshot can be read`, {
      details: { snapshotId },
    });
  }
  return snapshot;
}

/** The exact source size snapline tagged the snapshot with, if it is there and sane. */
export function taggedSourceBytes(snapshot: RemoteSnapshot): number | undefined {
  const bytes = Number(snapshot.tags[SOURCE_BYTES_TAG]);
  return Number.isSafeInteger(bytes) && bytes > 0 && bytes <= snapshot.volumeSizeGiB * GIB ? bytes : undefined;
}
