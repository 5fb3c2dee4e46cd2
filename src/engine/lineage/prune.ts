import type { CopyDestinations, SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { CopyRecord, IndexPorts, SnapshotRecord } from '../../core/index-ports.js';
import { applyRetention, calendarIn, checkPolicy, describePolicy, isEmptyPolicy, type RetentionPolicy } from './retention.js';
import { holdForDeletion, snapshotsBeingRead } from './snapshot-readers.js';
import { deleteCopies, deletedCopy, recordIfEnded, recordUnrecordedToDelete, type CopyDeletionDeps, type DeletedCopy } from '../dr/copy.js';

/** What prune reads and changes in the index. */
type PruneIndex = Pick<IndexPorts, 'lineage' | 'runs' | 'locks' | 'archives' | 'ecsJobs' | 'copies'>;

export interface PruneOptions {
  /** Keeps every snapshot started less than this many days ago (a rule of the policy, see RetentionPolicy.keepNewerThanDays). */
  olderThanDays?: number;
  /** Keeps the this many newest completed snapshots per volume (RetentionPolicy.keepLast). */
  keepLast?: number;
  /** The rest of the policy for every volume (the command line's); with olderThanDays and keepLast, it replaces `policies`. */
  policy?: RetentionPolicy;
  /** Per volume, the policy used when the options above give no rule (the config file's); a volume without one is left alone. */
  policies?: ReadonlyMap<string, RetentionPolicy>;
  /** Where hours, days, weeks, months and years begin (IANA name or "UTC"); default the process's time zone. */
  timeZone?: string;
  volume?: string;
  dryRun?: boolean;
  /** Keep the copies of the deleted snapshots in other Regions (by default they are deleted with them). */
  keepCopies?: boolean;
  now?: Date;
}

export interface PrunedSnapshot {
  snapshotId: string;
  startedAt: string;
  /** Every rule or protection that keeps it; empty when it is removed. */
  keptBy: string[];
  removed: boolean;
}

export interface PrunedVolume {
  volume: string;
  /** The policy applied, in words. */
  policy: string;
  /** Newest first: every completed snapshot of the volume and what was decided for it. */
  snapshots: PrunedSnapshot[];
}

export interface PruneResult {
  dryRun: boolean;
  timeZone: string;
  /** Oldest first per volume. */
  deleted: Array<{ volume: string; snapshotId: string; ageDays: number }>;
  volumes: PrunedVolume[];
  /** Volumes skipped because a backup of them was running. */
  busyVolumes: string[];
  /** Volumes no policy applies to (none given, none configured for them): left alone. */
  unmanagedVolumes: string[];
  /** Copies in other Regions deleted with their source (none with keepCopies). */
  deletedCopies: DeletedCopy[];
}

/**
 * Applies a retention policy (see retention.ts) to each volume's completed
 * snapshots and deletes those no rule keeps (EC2 DeleteSnapshot), recording
 * each deletion in the index, whose maps stay whole for every snapshot left
 * (lineage.markDeleted). Never deletes a volume's newest snapshot (by
 * start, nor its head by completion: the next backup's parent), nor one that
 * a pending or recorded backup run, an unfinished archive, the newest archive
 * of the volume at each place (the next incremental archive compares with
 * its snapshot), an unfinished ECS restore or a copy in progress builds on,
 * nor one a restore is reading (snapshot-readers.ts).
 * A volume with a backup running is skipped (its lock is held). The copies
 * a snapshot has in other Regions are deleted after it (a refused source
 * keeps them all): once it is gone they are marked `deleting` and it is
 * marked deleted, so that a prune failing on a copy leaves it to the next
 * prune, which deletes it whatever its policy; with `keepCopies` they stay
 * recorded. With them go its copies that the index does not record (see
 * copySnapshot), looked for by their tags in every destination the volume
 * has copies in, recorded `deleting` then deleted as the others; a prune
 * that fails before finding them looks again only where the snapshot has a
 * recorded copy left (a dry run lists the recorded copies alone).
 * `destinations` reaches them, needed only when there are copies.
 * INVALID_ARGUMENT when no policy applies to any volume.
 */
export async function prune(deps: { index: PruneIndex; catalog: SnapshotCatalog; destinations?: CopyDestinations }, options: PruneOptions): Promise<PruneResult> {
  const { timeZone, now, volumes, policyOf, unmanagedVolumes } = scopeOf(deps.index, options);
  const result: PruneResult = { dryRun: Boolean(options.dryRun), timeZone, deleted: [], volumes: [], busyVolumes: [], deletedCopies: [], unmanagedVolumes };
  if (unmanagedVolumes.length === volumes.length && volumes.length > 0) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `no retention policy for ${volumes.length === 1 ? `volume ${volumes[0]}` : 'any volume'}: give keepLast, keepDaily, ... or olderThanDays, or set one in the config file`, {
      hint: `a config file's volumes.NAME.retention holds a volume's policy (README: Retention)`,
      details: { option: 'keepLast', otherOptions: ['keepDaily', 'olderThanDays'] },
    });
  }
  const protections = protectedSnapshots(deps.index);

  for (const volume of volumes) {
    const policy = policyOf(volume);
    if (policy === undefined) continue;
    let lock: { release(): void } | undefined;
    if (!options.dryRun) {
      try {
        lock = deps.index.locks.acquire(`volume:${volume}`);
      } catch (err) {
        if (!isSnaplineError(err, ErrorCodes.CONFLICT)) throw err;
        result.busyVolumes.push(volume);
        continue;
      }
    }
    try {
      const copies = { index: deps.index, destinations: destinationsOf(deps) };
      // Where the volume's copies are (before any is deleted): its snapshots' unrecorded copies are looked for there.
      const volumeCopies = deps.index.copies.list(volume);
      // A copy recorded pending keeps its source: first what its destination says of it now (ended, or gone).
      await refreshPendingCopies(copies, volumeCopies);
      // Copies an earlier prune left to delete after their source: whatever the policy says now.
      if (!options.dryRun) result.deletedCopies.push(...(await deleteLeftCopies(copies, volume)));
      const decided = await decide(deps, volume, policy, protections, { now, timeZone });
      result.volumes.push(decided);
      // Oldest first, as a lineage is cut from its old end.
      for (const snapshot of decided.snapshots.filter((s) => s.removed).reverse()) {
        const { snapshotId } = snapshot;
        const ofSnapshot = options.keepCopies ? [] : deps.index.copies.ofSnapshot(snapshotId);
        if (options.dryRun) {
          result.deletedCopies.push(...ofSnapshot.map((copy) => deletedCopy(copy)));
        } else {
          // A restore that began reading it since it was decided keeps it.
          const deletion = holdForDeletion(deps.index.locks, snapshotId);
          if (deletion.held === undefined) {
            snapshot.keptBy = deletion.readers;
            snapshot.removed = false;
            continue;
          }
          // The source goes first: refused, it keeps its copies. Once it is gone its copies are marked
          // to go with it and the index says it is deleted, so that a prune failing on a copy leaves no
          // deleted snapshot listed, and the next prune deletes the copy whatever its policy.
          try {
            await deps.catalog.deleteSnapshot(snapshotId);
            for (const copy of ofSnapshot) deps.index.copies.setState(copy.copySnapshotId, 'deleting');
            deps.index.lineage.markDeleted(snapshotId);
          } finally {
            deletion.held.release();
          }
          const unrecorded = options.keepCopies ? [] : await recordUnrecordedToDelete(copies, { snapshotId, volume }, volumeCopies);
          result.deletedCopies.push(...(await deleteCopies(copies, [...ofSnapshot, ...unrecorded])));
        }
        const ageDays = Math.floor((now.getTime() - Date.parse(snapshot.startedAt)) / 86_400_000);
        result.deleted.push({ volume, snapshotId, ageDays });
      }
    } finally {
      lock?.release();
    }
  }
  return result;
}

export type RetentionPlanOptions = Pick<PruneOptions, 'olderThanDays' | 'keepLast' | 'policy' | 'policies' | 'timeZone' | 'volume' | 'now'>;

export interface RetentionPlan {
  timeZone: string;
  /** The volumes a policy applies to, decided as `prune` (dry run) decides them. */
  volumes: PrunedVolume[];
  /** Volumes no policy applies to. */
  unmanagedVolumes: string[];
}

/**
 * What `prune` would decide for each volume a policy applies to, without
 * deleting or locking anything (the report's retention calendar). Unlike
 * prune, no policy at all is no error: every volume is then unmanaged.
 */
export async function retentionPlan(deps: { index: PruneIndex; catalog: SnapshotCatalog }, options: RetentionPlanOptions): Promise<RetentionPlan> {
  const { timeZone, now, volumes, policyOf, unmanagedVolumes } = scopeOf(deps.index, options);
  const protections = protectedSnapshots(deps.index);
  const decided: PrunedVolume[] = [];
  for (const volume of volumes) {
    const policy = policyOf(volume);
    if (policy !== undefined) decided.push(await decide(deps, volume, policy, protections, { now, timeZone }));
  }
  return { timeZone, volumes: decided, unmanagedVolumes };
}

/** The volumes, the policy of each, the time zone and the time a prune (or its plan) works with. */
function scopeOf(index: PruneIndex, options: RetentionPlanOptions) {
  const given = givenPolicy(options);
  const timeZone = options.timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
  calendarIn(timeZone);
  const now = options.now ?? new Date();
  const volumes = options.volume ? [options.volume] : index.lineage.listVolumes().map((v) => v.name);
  const policyOf = (volume: string) => given ?? options.policies?.get(volume);
  return { timeZone, now, volumes, policyOf, unmanagedVolumes: volumes.filter((v) => policyOf(v) === undefined) };
}

/** The policy of the options alone; undefined when they give no rule. */
function givenPolicy(options: RetentionPlanOptions): RetentionPolicy | undefined {
  const { olderThanDays, keepLast } = options;
  if (olderThanDays !== undefined && (!Number.isFinite(olderThanDays) || olderThanDays < 0)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `olderThanDays must be 0 or more, got ${olderThanDays}`, { details: { option: 'olderThanDays' } });
  }
  if (keepLast !== undefined && !(keepLast >= 1)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `keepLast must be 1 or more, got ${keepLast}`, { details: { option: 'keepLast' } });
  }
  if (options.policy !== undefined) checkPolicy(options.policy);
  const policy: RetentionPolicy = {
    ...options.policy,
    ...(keepLast === undefined ? {} : { keepLast }),
    ...(olderThanDays === undefined ? {} : { keepNewerThanDays: olderThanDays }),
  };
  return isEmptyPolicy(policy) ? undefined : policy;
}

async function decide(
  deps: { index: PruneIndex; catalog: SnapshotCatalog },
  volume: string,
  policy: RetentionPolicy,
  protections: ReadonlyMap<string, string[]>,
  context: { now: Date; timeZone: string },
): Promise<PrunedVolume> {
  const completed = deps.index.lineage.listSnapshots(volume).filter((s) => s.state === 'completed');
  const protect = new Map<string, string[]>();
  const add = (snapshotId: string | null | undefined, reason: string) => {
    if (snapshotId) protect.set(snapshotId, [...(protect.get(snapshotId) ?? []), reason]);
  };
  for (const snapshot of completed) for (const reason of protections.get(snapshot.snapshotId) ?? []) add(snapshot.snapshotId, reason);
  add(deps.index.lineage.headSnapshot(volume)?.snapshotId, 'head (the next backup builds on it)');
  const pending = deps.index.runs.pendingRun(volume);
  if (pending !== undefined) {
    add(pending.parentSnapshotId, `parent of the pending run ${pending.snapshotId}`);
    if (pending.baseSnapshotId !== pending.parentSnapshotId) add(pending.baseSnapshotId, `base of the pending run ${pending.snapshotId}`);
  }
  add(recordedRunParent(deps.index, volume), 'parent of the recorded backup run');
  for (const copy of deps.index.copies.list(volume)) if (copy.state === 'pending') add(copy.sourceSnapshotId, `source of the copy in progress ${copy.copySnapshotId} in ${copy.region}`);
  const tags = policy.keepTags?.length ? await tagsOf(deps.catalog, completed) : new Map<string, Record<string, string>>();
  const decisions = applyRetention(
    completed.map((s) => ({ snapshotId: s.snapshotId, startedAt: s.startedAt, tags: tags.get(s.snapshotId) ?? {} })),
    policy,
    { ...context, protect },
  );
  return {
    volume,
    policy: describePolicy(policy),
    snapshots: decisions.map((d) => ({ snapshotId: d.snapshotId, startedAt: d.startedAt.toISOString(), keptBy: d.keptBy, removed: !d.keep })),
  };
}

/** The parent of a run recorded before its StartSnapshot (a resume sends it again). */
function recordedRunParent(index: PruneIndex, volume: string): string | undefined {
  const start = index.runs.runStart(volume);
  if (start === undefined) return undefined;
  try {
    const input = JSON.parse(start.startInput) as { parentSnapshotId?: unknown };
    return typeof input.parentSnapshotId === 'string' ? input.parentSnapshotId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Snapshots that other work of the index depends on, with why: the snapshot
 * of an unfinished archive and of the archive it builds on, the snapshot of
 * the newest archive of each volume at each place, the source of an ECS
 * restore that is running or failed (the same command resumes it), and a
 * snapshot a restore is reading (snapshot-readers.ts).
 */
function protectedSnapshots(index: PruneIndex): Map<string, string[]> {
  const reasons = new Map<string, string[]>();
  const add = (snapshotId: string, reason: string) => reasons.set(snapshotId, [...(reasons.get(snapshotId) ?? []), reason]);
  const archives = index.archives.list();
  const byId = new Map(archives.map((a) => [a.archiveId, a]));
  const newest = new Map<string, (typeof archives)[number]>();
  for (const archive of archives) {
    if (archive.state === 'uploading') {
      add(archive.snapshotId, `unfinished archive ${archive.archiveId}`);
      const parent = archive.parentArchiveId === null ? undefined : byId.get(archive.parentArchiveId);
      if (parent !== undefined) add(parent.snapshotId, `parent of the unfinished archive ${archive.archiveId}`);
    }
    // listArchives is oldest first: the last archived one of a place wins.
    if (archive.state === 'archived') newest.set(`${archive.volume}\0${archive.target}\0${archive.location}`, archive);
  }
  for (const archive of newest.values()) add(archive.snapshotId, `newest archive ${archive.archiveId} in ${archive.target} ${archive.location}`);
  for (const job of index.ecsJobs.list()) {
    if (job.sourceKind === 'snapshot' && (job.state === 'running' || job.state === 'failed')) add(job.source, `source of the ${job.state} ECS restore ${job.jobId}`);
  }
  for (const [snapshotId, readers] of snapshotsBeingRead(index.locks)) for (const reason of readers) add(snapshotId, reason);
  return reasons;
}

async function tagsOf(catalog: SnapshotCatalog, snapshots: readonly SnapshotRecord[]): Promise<Map<string, Record<string, string>>> {
  const tags = new Map<string, Record<string, string>>();
  for (const remote of await catalog.describeSnapshots(snapshots.map((s) => s.snapshotId))) tags.set(remote.snapshotId, remote.tags);
  return tags;
}

/**
 * Deletes the volume's copies left `deleting` by an earlier prune, after
 * looking again, where they are, for copies of their sources that the index
 * does not record (that prune may have failed before it found them).
 */
async function deleteLeftCopies(deps: CopyDeletionDeps, volume: string): Promise<DeletedCopy[]> {
  const left = deps.index.copies.list(volume).filter((copy) => copy.state === 'deleting');
  for (const snapshotId of new Set(left.map((copy) => copy.sourceSnapshotId))) {
    await recordUnrecordedToDelete(deps, { snapshotId, volume }, left.filter((copy) => copy.sourceSnapshotId === snapshotId));
  }
  return deleteCopies(deps, deps.index.copies.list(volume).filter((copy) => copy.state === 'deleting'));
}

/** Records the pending ones of `copies` completed, failed or deleted as their destinations say; one that cannot be asked stays pending. */
async function refreshPendingCopies(deps: CopyDeletionDeps, copies: readonly CopyRecord[]): Promise<void> {
  for (const copy of copies.filter((c) => c.state === 'pending')) {
    try {
      await recordIfEnded(await deps.destinations.catalogOf(copy.region, copy.connection), copy, deps.index);
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.INTERRUPTED)) throw err;
    }
  }
}

function destinationsOf(deps: { destinations?: CopyDestinations }): CopyDestinations {
  if (deps.destinations !== undefined) return deps.destinations;
  const unreachable = () => new SnaplineError(ErrorCodes.INTERNAL, 'prune found copies in other Regions but was given no way to reach them');
  return {
    get sourceRegion(): string {
      throw unreachable();
    },
    catalogOf: () => Promise.reject(unreachable()),
  };
}
