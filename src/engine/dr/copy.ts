import type { CopyDestination, CopyDestinations, RemoteSnapshot, SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { CopyRecord, IndexPorts, SnapshotRecord } from '../../core/index-ports.js';
import { deleteStartedSnapshot, waitForSnapshot } from '../blocks/committer.js';
import { completedSnapshot } from '../blocks/remote-snapshot.js';

/** Tags a copy carries besides the source's own snapline tags. */
export const COPY_OF_TAG = 'snapline:copy-of';
export const COPY_SOURCE_REGION_TAG = 'snapline:copy-source-region';
const OWN_TAG_PREFIX = 'snapline:';
const REGION_NAME = /^[a-z]{2}(-[a-z]+)+-\d+$/;

export interface CopyOptions {
  /** A completed snapshot the index records. */
  snapshotId: string;
  /** Encrypt the copy of an unencrypted snapshot (a copy of an encrypted one is encrypted anyway). */
  encrypted?: boolean;
  /** The destination's KMS key for the copy (implies `encrypted`). */
  kmsKeyId?: string;
  /** Tags for the copy, over the source's snapline tags. */
  tags?: Record<string, string>;
  description?: string;
  /** Stop waiting for the copy after this long (TIMEOUT); it stays recorded as pending and the next copy of the snapshot goes on waiting for it. */
  waitTimeoutMs?: number;
  /** First and largest pause between two looks at the copy. */
  pollMs?: { first: number; max: number };
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
}

export interface CopyProgress {
  snapshotId: string;
  copySnapshotId: string;
  region: string;
  /** What EC2 in the destination says, e.g. "40%". */
  progress: string | undefined;
}

export interface CopyResult {
  volume: string;
  sourceSnapshotId: string;
  sourceRegion: string;
  copySnapshotId: string;
  region: string;
  /** The destination's connection when it is not the source's. */
  connection: string | null;
  state: 'completed';
  encrypted: boolean;
  /**
   * The earlier copy of the lineage in the destination (recorded in the
   * index, still there, under the same encryption) that makes this copy
   * incremental in EBS; null for a full copy.
   */
  incrementalOf: string | null;
  /** The index had a completed copy of the snapshot there already: nothing was copied. */
  alreadyCopied: boolean;
  /**
   * The copy was found in the destination without a record (tagged as a copy
   * of the snapshot from its Region: a run that died before recording it, or
   * a CopySnapshot the SDK retried) and is taken as this copy: no
   * CopySnapshot was sent.
   */
  adopted: boolean;
  durationMs: number;
}

export interface CopyDeps {
  index: Pick<IndexPorts, 'lineage' | 'copies'>;
  /** EC2 of the source Region. */
  catalog: SnapshotCatalog;
  sourceRegion: string;
  destination: CopyDestination;
}

/**
 * Copies a completed snapshot of the index into the destination (EC2
 * CopySnapshot there), records the copy in the index as soon as it is
 * started, and waits until it is completed. The copy carries the source's
 * snapline tags (its volume among them), COPY_OF_TAG and
 * COPY_SOURCE_REGION_TAG, and the tags given. Idempotent per destination: a
 * completed copy as asked (encrypted when asked so, under the key when one is
 * asked) that the index records and the destination still has is returned as
 * it is (alreadyCopied); a pending one is waited for. Before starting a copy,
 * the copies of the snapshot that the destination has and the index does not
 * record (found by those two tags, pending or completed: a run that died
 * before recording its copy, a CopySnapshot the SDK retried) are recorded as
 * EC2 shows them, so that prune deletes them with their source, and one as
 * asked is adopted, a completed one before a pending one: waited for and
 * returned (adopted), no CopySnapshot sent. A copy that ends in error is
 * recorded so and reported (BAD_STATE).
 */
export async function copySnapshot(deps: CopyDeps, options: CopyOptions): Promise<CopyResult> {
  const started = Date.now();
  const { destination } = deps;
  checkDestination(deps.sourceRegion, destination.region, destination.connection);
  const record = deps.index.lineage.getSnapshot(options.snapshotId);
  if (record === undefined) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index records no snapshot ${options.snapshotId}`, {
      hint: 'copy a snapshot that `snapline snapshots` lists',
      details: { argument: 'snapshotId' },
    });
  }
  if (record.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.BAD_STATE, `snapshot ${record.snapshotId} is ${record.state} in the index; only a completed snapshot can be copied`, {
      details: { argument: 'snapshotId' },
    });
  }
  const connection = destination.connection ?? null;
  const encrypted = Boolean(options.encrypted) || options.kmsKeyId !== undefined;
  const result = (copy: CopyRecord, how: 'copied' | 'alreadyCopied' | 'adopted'): CopyResult => ({
    volume: record.volume,
    sourceSnapshotId: record.snapshotId,
    sourceRegion: deps.sourceRegion,
    copySnapshotId: copy.copySnapshotId,
    region: destination.region,
    connection,
    state: 'completed',
    encrypted: copy.encrypted,
    incrementalOf: copy.incrementalOf,
    alreadyCopied: how === 'alreadyCopied',
    adopted: how === 'adopted',
    durationMs: Date.now() - started,
  });

  // As asked: encrypted when asked so (a copy of an encrypted snapshot is encrypted anyway), under the key when one is asked.
  const fits = (copy: CopyRecord) => (copy.encrypted || !encrypted) && (options.kmsKeyId === undefined || sameKey(options.kmsKeyId, copy.kmsKeyId));
  const earlierHere = deps.index.copies.ofSnapshot(record.snapshotId).filter((copy) => copy.region === destination.region && copy.connection === connection);
  // A pending copy not as asked is waited for by no run of this copy: its end is recorded when it has come.
  for (const copy of earlierHere) if (copy.state === 'pending' && !fits(copy)) await recordIfEnded(destination.catalog, copy, deps.index);
  for (const earlier of earlierHere.filter(fits)) {
    if (earlier.state === 'completed') {
      if ((await stillThere(destination.catalog, earlier, deps.index)) !== undefined) return result(earlier, 'alreadyCopied');
    } else if (earlier.state === 'pending') {
      try {
        return result(await waitForCopy(deps, earlier, options), 'copied');
      } catch (err) {
        // Gone from the destination while pending (recorded deleted): copied anew below.
        if (!isGone(err, earlier)) throw err;
      }
    }
  }

  // Settle-aware: a snapshot completed moments ago (backup --copy-to-region) may not be listed completed by EC2 yet.
  const source = await completedSnapshot(deps, record.snapshotId, options.signal === undefined ? {} : { signal: options.signal });
  const copyEncrypted = source.encrypted || encrypted;
  const found = await recordUnrecordedCopies(deps.index, destination.catalog, record, { sourceRegion: deps.sourceRegion, region: destination.region, connection });
  const [adopted] = found.filter(fits).sort((a, b) => Number(b.state === 'completed') - Number(a.state === 'completed'));
  if (adopted !== undefined) return result(adopted.state === 'completed' ? adopted : await waitForCopy(deps, adopted, options), 'adopted');
  const previous = await previousCopy(deps, record.snapshotId, copyEncrypted, options.kmsKeyId ?? null);
  const ownTags = Object.fromEntries(Object.entries(source.tags).filter(([key]) => key.startsWith(OWN_TAG_PREFIX)));
  const copySnapshotId = await destination.copier.copySnapshot({
    sourceRegion: deps.sourceRegion,
    sourceSnapshotId: record.snapshotId,
    description: options.description ?? `snapline copy of ${record.snapshotId} (volume ${record.volume}) from ${deps.sourceRegion}`,
    ...(encrypted ? { encrypted: true } : {}),
    ...(options.kmsKeyId === undefined ? {} : { kmsKeyId: options.kmsKeyId }),
    tags: { ...ownTags, ...options.tags, [COPY_OF_TAG]: record.snapshotId, [COPY_SOURCE_REGION_TAG]: deps.sourceRegion },
  });
  const copy = deps.index.copies.record({
    copySnapshotId,
    sourceSnapshotId: record.snapshotId,
    volume: record.volume,
    region: destination.region,
    connection,
    encrypted: copyEncrypted,
    kmsKeyId: options.kmsKeyId ?? null,
    incrementalOf: previous?.copySnapshotId ?? null,
  });
  return result(await waitForCopy(deps, copy, options), 'copied');
}

/**
 * Checks where a copy is to go: a Region name, and not the source's own
 * Region unless through another connection (account). `option` names the
 * option in the error (INVALID_ARGUMENT).
 */
export function checkDestination(sourceRegion: string, region: string, connection: string | undefined, option = 'toRegion'): void {
  if (!REGION_NAME.test(region)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${option} must be a Region name such as eu-west-1, got ${JSON.stringify(region)}`, { details: { option } });
  }
  if (region === sourceRegion && connection === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${option} ${region} is the snapshot's own Region: a copy for disaster recovery goes to another one`, {
      hint: 'name another Region, or another account with --to-connection',
      details: { option },
    });
  }
}

/** Where a copy of a source is: the source's Region, and the destination's Region and connection. */
interface CopyPlace {
  sourceRegion: string;
  region: string;
  connection: string | null;
}

/**
 * The copies of `source` in the destination (`catalog`, at `place`) that the
 * index does not record, found by COPY_OF_TAG and COPY_SOURCE_REGION_TAG,
 * recorded now: in `state`, or without it as EC2 shows them (pending or
 * completed; a copy in another state is left out).
 */
async function recordUnrecordedCopies(
  index: Pick<IndexPorts, 'copies'>,
  catalog: SnapshotCatalog,
  source: Pick<SnapshotRecord, 'snapshotId' | 'volume'>,
  place: CopyPlace,
  state?: 'deleting',
): Promise<CopyRecord[]> {
  const tagged = await catalog.taggedSnapshots({ [COPY_OF_TAG]: source.snapshotId, [COPY_SOURCE_REGION_TAG]: place.sourceRegion });
  const recorded: CopyRecord[] = [];
  for (const remote of tagged) {
    const foundState = state ?? (remote.state === 'pending' || remote.state === 'completed' ? remote.state : undefined);
    if (foundState === undefined || index.copies.get(remote.snapshotId) !== undefined) continue;
    const copy = {
      copySnapshotId: remote.snapshotId,
      sourceSnapshotId: source.snapshotId,
      volume: source.volume,
      region: place.region,
      connection: place.connection,
      encrypted: remote.encrypted,
      kmsKeyId: remote.kmsKeyId ?? null,
      incrementalOf: null,
      state: foundState,
    };
    recorded.push(index.copies.record(copy, remote.startTime));
  }
  return recorded;
}

/** Whether the key asked for is the key recorded, or the key EC2 names (an ARN) by its id. An alias matches only itself: KMS resolves it. */
function sameKey(asked: string, named: string | null): boolean {
  return named !== null && (named === asked || named.endsWith(`:key/${asked}`));
}

/** How long after CopySnapshot answered the destination may still not list the copy (EC2 is eventually consistent). */
const COPY_LISTED_MS = 5 * 60_000;

/** The NOT_FOUND of waitForCopy for a copy the destination no longer has. */
function isGone(err: unknown, copy: CopyRecord): boolean {
  return isSnaplineError(err, ErrorCodes.NOT_FOUND) && err.details?.snapshotId === copy.copySnapshotId;
}

/** Waits for a recorded pending copy; records how it ended: completed, error, or deleted when the destination no longer lists it (NOT_FOUND). */
async function waitForCopy(deps: CopyDeps, copy: CopyRecord, options: CopyOptions): Promise<CopyRecord> {
  const { catalog } = deps.destination;
  let state: Awaited<ReturnType<typeof waitForSnapshot>>;
  try {
    state = await waitForSnapshot(catalog, copy.copySnapshotId, {
      ...(options.waitTimeoutMs === undefined ? {} : { waitTimeoutMs: options.waitTimeoutMs }),
      ...(options.pollMs === undefined ? {} : { pollMs: options.pollMs }),
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      listedBy: copy.createdAt.getTime() + COPY_LISTED_MS,
      onWait: (_status, progress) => options.onProgress?.({ snapshotId: copy.sourceSnapshotId, copySnapshotId: copy.copySnapshotId, region: copy.region, progress }),
    });
  } catch (err) {
    if (isGone(err, copy)) deps.index.copies.setState(copy.copySnapshotId, 'deleted', 'gone from the destination while pending');
    throw err;
  }
  if (state === 'completed') return deps.index.copies.setState(copy.copySnapshotId, 'completed');
  const [failed] = await catalog.describeSnapshots([copy.copySnapshotId]);
  const message = failed?.stateMessage ?? 'no reason given';
  deps.index.copies.setState(copy.copySnapshotId, 'error', message);
  throw new SnaplineError(ErrorCodes.BAD_STATE, `the copy ${copy.copySnapshotId} of ${copy.sourceSnapshotId} in ${copy.region} failed: ${message}`, {
    hint: 'check the KMS key given for the copy (it must be usable in the destination Region), then copy again',
    details: { snapshotId: copy.copySnapshotId },
  });
}

/**
 * Records a pending copy completed or failed when the destination says it is,
 * deleted when the destination no longer lists it (past the time it may take
 * to list a new one); one still pending, or not listed yet, stays as it is.
 */
export async function recordIfEnded(catalog: SnapshotCatalog, copy: CopyRecord, index: Pick<IndexPorts, 'copies'>): Promise<void> {
  const [remote] = await catalog.describeSnapshots([copy.copySnapshotId]);
  if (remote?.state === 'completed' || remote?.state === 'error') index.copies.setState(copy.copySnapshotId, remote.state, remote.stateMessage ?? null);
  else if (remote === undefined && Date.now() >= copy.createdAt.getTime() + COPY_LISTED_MS) index.copies.setState(copy.copySnapshotId, 'deleted', 'gone from the destination while pending');
}

/** The copy as the destination shows it, when it is still there and completed; a copy that is gone is recorded deleted. */
async function stillThere(catalog: SnapshotCatalog, copy: CopyRecord, index?: Pick<IndexPorts, 'copies'>): Promise<RemoteSnapshot | undefined> {
  const [remote] = await catalog.describeSnapshots([copy.copySnapshotId]);
  if (remote === undefined) index?.copies.setState(copy.copySnapshotId, 'deleted');
  return remote?.state === 'completed' ? remote : undefined;
}

/**
 * The newest completed copy in the destination of the snapshot's nearest
 * ancestor that has one, under the same encryption and key asked for: EBS
 * copies incrementally from it ("Incremental snapshot copying"). Copies the
 * destination no longer has are recorded deleted and skipped.
 */
async function previousCopy(deps: CopyDeps, snapshotId: string, encrypted: boolean, kmsKeyId: string | null): Promise<CopyRecord | undefined> {
  const { destination, index } = deps;
  for (let at = index.lineage.getSnapshot(snapshotId)?.parentSnapshotId ?? null; at !== null; at = index.lineage.getSnapshot(at)?.parentSnapshotId ?? null) {
    const copies = index.copies
      .ofSnapshot(at)
      .filter((c) => c.state === 'completed' && c.region === destination.region && c.connection === (destination.connection ?? null))
      .filter((c) => c.encrypted === encrypted && c.kmsKeyId === kmsKeyId)
      .reverse();
    for (const copy of copies) if ((await stillThere(destination.catalog, copy, index)) !== undefined) return copy;
  }
  return undefined;
}

export interface DeletedCopy {
  snapshotId: string;
  copySnapshotId: string;
  region: string;
  connection: string | null;
}

/** What deleting copies needs: the index's copies, and the destinations they are in. */
export interface CopyDeletionDeps {
  index: Pick<IndexPorts, 'copies'>;
  destinations: CopyDestinations;
}

/**
 * Finds the copies of `source` that the index does not record in each
 * destination where one of `copies` is (see copySnapshot: a run that died
 * before recording its copy, a retried CopySnapshot) and records them
 * `deleting`, to be deleted as the recorded ones are.
 */
export async function recordUnrecordedToDelete(deps: CopyDeletionDeps, source: Pick<SnapshotRecord, 'snapshotId' | 'volume'>, copies: readonly CopyRecord[]): Promise<CopyRecord[]> {
  const places = new Map(copies.map((copy) => [`${copy.connection ?? ''}@${copy.region}`, { region: copy.region, connection: copy.connection }]));
  const recorded: CopyRecord[] = [];
  for (const { region, connection } of places.values()) {
    const catalog = await deps.destinations.catalogOf(region, connection);
    recorded.push(...(await recordUnrecordedCopies(deps.index, catalog, source, { sourceRegion: deps.destinations.sourceRegion, region, connection }, 'deleting')));
  }
  return recorded;
}

/**
 * Deletes these recorded copies (EC2 DeleteSnapshot in each destination; a
 * copy already gone counts as deleted) and records them deleted. A copy made
 * moments ago is deleted once EC2 lists it (deleteStartedSnapshot: until
 * then DeleteSnapshot may not find it). Stops at the first failure, before
 * the rest: the copies not deleted stay recorded.
 */
export async function deleteCopies(deps: CopyDeletionDeps, copies: readonly CopyRecord[]): Promise<DeletedCopy[]> {
  const deleted: DeletedCopy[] = [];
  for (const copy of copies) {
    const catalog = await deps.destinations.catalogOf(copy.region, copy.connection);
    await deleteStartedSnapshot(catalog, copy.copySnapshotId, copy.createdAt.getTime());
    deps.index.copies.setState(copy.copySnapshotId, 'deleted');
    deleted.push(deletedCopy(copy));
  }
  return deleted;
}

/** What a prune reports of a copy it deletes (or would). */
export function deletedCopy(copy: CopyRecord): DeletedCopy {
  return { snapshotId: copy.sourceSnapshotId, copySnapshotId: copy.copySnapshotId, region: copy.region, connection: copy.connection };
}
