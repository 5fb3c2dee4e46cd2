import { LinearAggregate } from '../core/checksum.js';
import { sleep, throwIfAborted } from '../core/abort.js';
import type { SnapshotCatalog, SnapshotStatus, SnapshotWriter } from '../core/ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { BlockIndex, SnapshotRecord } from '../index/index.js';

export interface CommitOptions {
  /** Give up waiting for "completed" after this long (the journal is kept). Default: no limit. */
  waitTimeoutMs?: number;
  /** First and largest pause between two DescribeSnapshots polls. */
  pollMs?: { first: number; max: number };
  signal?: AbortSignal;
  onWait?: (status: SnapshotStatus, progress: string | undefined) => void;
}

/**
 * Seals a pending run: CompleteSnapshot with the LINEAR aggregate of every
 * block the journal says was written, then waits until EC2 says completed,
 * and only then commits the run to the index. A snapshot that ends in error is
 * abandoned in the index and reported (BAD_STATE). A run already marked
 * completing gets CompleteSnapshot again, since a crash may have come before
 * the first one reached the service; a repeated CompleteSnapshot changes
 * nothing and answers the current status.
 */
export async function completeAndCommit(
  index: BlockIndex,
  writer: SnapshotWriter,
  catalog: SnapshotCatalog,
  snapshotId: string,
  options: CommitOptions = {},
): Promise<SnapshotRecord> {
  const record = index.getSnapshot(snapshotId);
  if (!record) throw new SnaplineError(ErrorCodes.INTERNAL, `the index has no run for ${snapshotId}`);
  let status: SnapshotStatus = 'pending';
  if (record.state === 'pending' || record.state === 'completing') {
    const aggregate = new LinearAggregate();
    for (const block of index.writtenBlocks(snapshotId)) aggregate.add(block.index, block.digest);
    index.markCompleting(snapshotId);
    status = await writer.completeSnapshot(snapshotId, aggregate.count, aggregate.digest());
  }
  if (status !== 'completed') status = await waitForSnapshot(catalog, snapshotId, options);
  if (status === 'error') {
    index.abandonRun(snapshotId, 'the snapshot ended in state error');
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${snapshotId} ended in state error; the index is unchanged`, {
      hint: 'run the backup again to take a new snapshot',
      details: { snapshotId },
    });
  }
  return index.commitRun(snapshotId);
}

/**
 * Polls DescribeSnapshots with growing pauses until the snapshot is completed
 * or in error. No fixed cap unless `waitTimeoutMs` is given (then TIMEOUT).
 */
export async function waitForSnapshot(
  catalog: SnapshotCatalog,
  snapshotId: string,
  options: CommitOptions = {},
): Promise<SnapshotStatus> {
  const { first, max } = options.pollMs ?? { first: 200, max: 15_000 };
  const deadline = options.waitTimeoutMs === undefined ? Infinity : Date.now() + options.waitTimeoutMs;
  let pause = first;
  while (true) {
    throwIfAborted(options.signal);
    const [snapshot] = await catalog.describeSnapshots([snapshotId]);
    if (!snapshot) {
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} disappeared while waiting for it to complete`);
    }
    if (snapshot.state === 'completed' || snapshot.state === 'error') return snapshot.state;
    options.onWait?.('pending', snapshot.progress);
    if (Date.now() + pause > deadline) {
      throw new SnaplineError(ErrorCodes.TIMEOUT, `snapshot ${snapshotId} is still pending after the wait timeout`, {
        hint: 'run the same command again later: it goes on waiting for this snapshot',
        details: { snapshotId },
      });
    }
    await sleep(pause, options.signal);
    pause = Math.min(max, pause * 2);
  }
}
