import { LinearAggregate } from '../../core/checksum.js';
import { sleep, throwIfAborted } from '../../core/abort.js';
import type { RemoteSnapshot, SnapshotCatalog, SnapshotStatus, SnapshotWriter } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { IndexPorts, SnapshotRecord } from '../../core/index-ports.js';

/**
 * How long after a snapshot starts (or completes) EC2 DescribeSnapshots may
 * still not show it (or still show it pending): EC2 is eventually
 * consistent. Within this window a snapshot missing from EC2 is "not listed
 * yet", never "gone".
 */
export const EC2_SETTLE_MS = 5 * 60_000;

/**
 * How long a run waits for EC2 to show the outcome of a completion that
 * CompleteSnapshot refused or answered with a failure (it may have been
 * accepted by an earlier attempt whose answer was lost). Past it the run
 * stops with that error; it stays completing, and the next run looks at EC2
 * again.
 */
export const UNCERTAIN_COMPLETION_WAIT_MS = 5 * 60_000;

const DEFAULT_POLL = { first: 200, max: 15_000 };

export interface CommitOptions {
  /** Give up waiting for "completed" after this long (the journal is kept). Default: no limit. */
  waitTimeoutMs?: number;
  /** First and largest pause between two DescribeSnapshots polls. */
  pollMs?: { first: number; max: number };
  signal?: AbortSignal;
  onWait?: (status: SnapshotStatus, progress: string | undefined) => void;
}

export interface WaitOptions extends CommitOptions {
  /** Epoch ms until which a snapshot EC2 does not list counts as not listed yet (default: EC2_SETTLE_MS from now). */
  listedBy?: number;
}

/**
 * Seals a pending run: CompleteSnapshot with the LINEAR aggregate of every
 * block the journal says was written, then waits until EC2 says completed,
 * and only then commits the run to the index. A snapshot that ends in error is
 * abandoned in the index and reported (BAD_STATE).
 *
 * A run already marked completing (a crash, or a lost answer, after
 * CompleteSnapshot was sent) first asks EC2 how the snapshot is: completed or
 * error is taken as it is; pending gets CompleteSnapshot again, since the
 * first may never have reached the service. AWS documents no answer for a
 * second CompleteSnapshot (the local endpoint refuses it): when
 * CompleteSnapshot fails in a way that does not rule out an earlier
 * acceptance, the outcome is read from EC2 for up to
 * UNCERTAIN_COMPLETION_WAIT_MS before that failure is reported.
 */
export async function completeAndCommit(
  index: Pick<IndexPorts, 'lineage' | 'runs'>,
  writer: SnapshotWriter,
  catalog: SnapshotCatalog,
  snapshotId: string,
  options: CommitOptions = {},
): Promise<SnapshotRecord> {
  const record = index.lineage.getSnapshot(snapshotId);
  if (!record) throw new SnaplineError(ErrorCodes.INTERNAL, `the index has no run for ${snapshotId}`);
  const listedBy = record.startedAt.getTime() + EC2_SETTLE_MS;
  let status: SnapshotStatus = record.state === 'completed' ? 'completed' : 'pending';
  if (record.state === 'completing') {
    const remote = await describeListed(catalog, snapshotId, listedBy, options);
    if (remote?.state === 'completed' || remote?.state === 'error') status = remote.state;
  }
  let uncertain: SnaplineError | undefined;
  if (status === 'pending' && (record.state === 'pending' || record.state === 'completing')) {
    const aggregate = new LinearAggregate();
    for (const block of index.runs.writtenBlocks(snapshotId)) aggregate.add(block.index, block.digest);
    index.runs.markCompleting(snapshotId);
    try {
      status = await writer.completeSnapshot(snapshotId, aggregate.count, aggregate.digest());
    } catch (err) {
      if (!completionMayHaveHappened(err)) throw err;
      uncertain = err;
    }
  }
  if (status !== 'completed') {
    const waitTimeoutMs = uncertain === undefined ? options.waitTimeoutMs : Math.min(options.waitTimeoutMs ?? Infinity, UNCERTAIN_COMPLETION_WAIT_MS);
    try {
      status = await waitForSnapshot(catalog, snapshotId, { ...options, waitTimeoutMs, listedBy });
    } catch (err) {
      if (uncertain !== undefined && isSnaplineError(err, ErrorCodes.TIMEOUT)) throw stillUncertain(uncertain, snapshotId);
      throw err;
    }
  }
  if (status === 'error') {
    index.runs.abandonRun(snapshotId, 'the snapshot ended in state error');
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${snapshotId} ended in state error; the index is unchanged`, {
      hint: 'run the backup again to take a new snapshot',
      details: { snapshotId },
    });
  }
  return index.runs.commitRun(snapshotId);
}

/**
 * True when a failed CompleteSnapshot leaves open whether the completion was
 * accepted: a refusal (a repeated call after a lost answer), a lost or failed
 * answer, throttling or "not found" after retries. Interruptions, access and
 * argument errors are taken as they are.
 */
export function completionMayHaveHappened(err: unknown): err is SnaplineError {
  return isSnaplineError(err) && UNCERTAIN_COMPLETION_CODES.has(err.code);
}

const UNCERTAIN_COMPLETION_CODES = new Set<string>([
  ErrorCodes.REMOTE_REJECTED,
  ErrorCodes.UNAVAILABLE,
  ErrorCodes.THROTTLED,
  ErrorCodes.NOT_FOUND,
  ErrorCodes.ENDPOINT_UNREACHABLE,
]);

function stillUncertain(cause: SnaplineError, snapshotId: string): SnaplineError {
  return new SnaplineError(cause.code, `${cause.message}; snapshot ${snapshotId} is still pending in EC2, so whether its completion was accepted is not known yet`, {
    cause,
    hint: 'run the same command again later: it looks at the snapshot in EC2 again',
    details: { ...cause.details, snapshotId },
  });
}

/**
 * Polls DescribeSnapshots with growing pauses until the snapshot is completed
 * or in error. No fixed cap unless `waitTimeoutMs` is given (then TIMEOUT).
 * A snapshot EC2 does not list is waited for until `listedBy`, then NOT_FOUND.
 */
export async function waitForSnapshot(catalog: SnapshotCatalog, snapshotId: string, options: WaitOptions = {}): Promise<SnapshotStatus> {
  const { first, max } = options.pollMs ?? DEFAULT_POLL;
  const deadline = options.waitTimeoutMs === undefined ? Infinity : Date.now() + options.waitTimeoutMs;
  const listedBy = options.listedBy ?? Date.now() + EC2_SETTLE_MS;
  let pause = first;
  while (true) {
    throwIfAborted(options.signal);
    const [snapshot] = await catalog.describeSnapshots([snapshotId]);
    if (snapshot?.state === 'completed' || snapshot?.state === 'error') return snapshot.state;
    if (!snapshot && Date.now() >= listedBy) {
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} disappeared while waiting for it to complete`, { details: { snapshotId } });
    }
    options.onWait?.('pending', snapshot?.progress);
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

/**
 * Epoch ms until which EC2 may still not list a snapshot the index records
 * as completed, or list it pending: EC2_SETTLE_MS after its completion. 0
 * (nothing to wait for) when the index does not record it completed.
 */
export function settledBy(record: SnapshotRecord | undefined): number {
  return record?.state === 'completed' ? (record.completedAt ?? record.startedAt).getTime() + EC2_SETTLE_MS : 0;
}

/** A look at EC2 that found the snapshot not settled yet: not listed, or listed pending; looked at again until `settledBy` (epoch ms). */
export interface SettleWait {
  snapshotId: string;
  seen: 'unlisted' | 'pending';
  settledBy: number;
}

/** One line on a SettleWait, for progress output. */
export function settleWaitText(wait: SettleWait): string {
  const left = Math.max(0, Math.ceil((wait.settledBy - Date.now()) / 1000));
  const seen = wait.seen === 'unlisted' ? 'does not list it yet' : 'still shows it pending';
  return `waiting for EC2 to show snapshot ${wait.snapshotId} completed: it ${seen} (EC2 is eventually consistent; at most ${left}s more)`;
}

/**
 * Deletes a snapshot started (StartSnapshot, CopySnapshot) at `startedAt`
 * (epoch ms). EC2 is eventually consistent: a DeleteSnapshot soon after the
 * start may answer InvalidSnapshot.NotFound, which deleteSnapshot takes for
 * "already gone", and the snapshot would be left. So, as AWS advises for a
 * change right after a creation, the snapshot is first described until EC2
 * lists it (describeListed, until EC2_SETTLE_MS after the start), then
 * deleted; one EC2 does not list by then is gone. A clean-up runs to its
 * end: a description the run's abort cut is asked again (a call made after
 * the abort goes out).
 */
export async function deleteStartedSnapshot(
  catalog: Pick<SnapshotCatalog, 'describeSnapshots' | 'deleteSnapshot'>,
  snapshotId: string,
  startedAt: number,
): Promise<void> {
  const listed = () => describeListed(catalog, snapshotId, startedAt + EC2_SETTLE_MS);
  const snapshot = await listed().catch((err: unknown) => {
    if (isSnaplineError(err, ErrorCodes.INTERRUPTED)) return listed();
    throw err;
  });
  if (snapshot !== undefined) await catalog.deleteSnapshot(snapshotId);
}

/**
 * The snapshot as EC2 lists it, or undefined when it is gone. Until
 * `listedBy` (epoch ms) a snapshot missing from the listing is looked up
 * again with growing pauses (EC2 may not list a new snapshot yet); with
 * `completed`, one still shown pending is too (EC2 may show a state change
 * late), and the last state seen is returned at `listedBy`. `onUnsettled` is
 * told before each pause.
 */
export async function describeListed(
  catalog: Pick<SnapshotCatalog, 'describeSnapshots'>,
  snapshotId: string,
  listedBy: number,
  options: { pollMs?: { first: number; max: number }; signal?: AbortSignal; completed?: boolean; onUnsettled?: (wait: SettleWait) => void } = {},
): Promise<RemoteSnapshot | undefined> {
  return lookUpUntilListed(
    async () => (await catalog.describeSnapshots([snapshotId]))[0],
    (snapshot) => !(options.completed === true && snapshot.state === 'pending'),
    listedBy,
    {
      ...options,
      onUnsettled: (snapshot) => options.onUnsettled?.({ snapshotId, seen: snapshot === undefined ? 'unlisted' : 'pending', settledBy: listedBy }),
    },
  );
}

/**
 * What `lookUp` finds, or undefined when it finds nothing. Until `listedBy`
 * (epoch ms) a resource not found, or found but not yet `settled`, is looked
 * up again with growing pauses (EC2 may not list a new resource yet, or show
 * a state change late); at `listedBy` the last answer is returned.
 * `onUnsettled` is told before each pause.
 */
export async function lookUpUntilListed<T>(
  lookUp: () => Promise<T | undefined>,
  settled: (found: T) => boolean,
  listedBy: number,
  options: { pollMs?: { first: number; max: number }; signal?: AbortSignal; onUnsettled?: (found: T | undefined) => void } = {},
): Promise<T | undefined> {
  const { first, max } = options.pollMs ?? DEFAULT_POLL;
  let pause = first;
  while (true) {
    throwIfAborted(options.signal);
    const found = await lookUp();
    if ((found !== undefined && settled(found)) || Date.now() >= listedBy) return found;
    options.onUnsettled?.(found);
    await sleep(Math.min(pause, Math.max(0, listedBy - Date.now())), options.signal);
    pause = Math.min(max, pause * 2);
  }
}
