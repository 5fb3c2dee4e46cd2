/**
 * Bringing archives within reach and keeping them tidy: restore requests
 * (S3 RestoreObject, Glacier archive-retrieval jobs) for every object of an
 * archive's chain, their status (and waiting for them), the store's
 * inventory, and deleting archives: one by name, or the old ones (prune).
 */
import { sleep, throwIfAborted } from '../../core/abort.js';
import { DEFAULT_RESTORE_DAYS, DEFAULT_RETRIEVAL_TIER, MAX_RESTORE_DAYS, retrievalTierOf } from '../../core/archive-options.js';
import type { ArchiveTarget, Inventory, RestoreState, RestoreStatus, RetrievalTier } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { ArchiveRecord, HeldLock, IndexPorts } from '../../core/index-ports.js';
import { MANIFEST_NAME, parseGlacierDescription, segmentName } from './format.js';
import { RESTORE_CLASSES, archiveLockName, chainOf, checkTarget, findArchive, remoteName, requireArchived, storeOf, type ArchivePlaces } from './places.js';

const DAY_MS = 86_400_000;

export interface ArchiveJobsDeps {
  index: Pick<IndexPorts, 'archives' | 'ecsJobs' | 'locks'>;
  archives: ArchivePlaces;
}

// ---- restore -----------------------------------------------------------------

export interface ArchiveRestoreOptions {
  archive: string;
  /** Default Standard (Bulk is cheapest; Deep Archive has no Expedited). */
  tier?: RetrievalTier;
  /** Days a restored S3 copy stays readable (default 7); Glacier keeps job output 24 hours. */
  days?: number;
}

export interface ObjectRestore {
  archiveId: string;
  name: string;
  ref: string;
  state: RestoreState;
  job: string | null;
  /** True when this run asked for it; false when it was readable or under way already. */
  requested: boolean;
}

export interface ArchiveRestoreResult {
  archiveId: string;
  /** The archives restored: the one asked for and those it builds on, oldest first. */
  chain: string[];
  tier: RetrievalTier;
  days: number;
  objects: ObjectRestore[];
}

/**
 * Asks for every object of the archive's chain to be made readable. An
 * object already readable, or with a restore or job under way, is left as
 * it is (a new Glacier job would be paid for again), except a restored S3
 * copy that would expire within `days`: it is asked for again, which keeps it
 * `days` from now. The jobs are recorded
 * in the index for `archive status` and `rehydrate`.
 */
export async function restoreArchive(deps: ArchiveJobsDeps, options: ArchiveRestoreOptions): Promise<ArchiveRestoreResult> {
  const tier = retrievalTierOf(options.tier ?? DEFAULT_RETRIEVAL_TIER);
  const days = options.days ?? DEFAULT_RESTORE_DAYS;
  if (!Number.isSafeInteger(days) || days < 1 || days > MAX_RESTORE_DAYS) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `days must be a whole number from 1 to ${MAX_RESTORE_DAYS}, got ${days}`, { details: { option: 'days' } });
  }
  const record = findArchive(deps.index, options.archive);
  const chain = chainOf(deps.index, record);
  requireArchived(chain);
  for (const member of chain) {
    if (tier === 'Expedited' && member.storageClass === 'DEEP_ARCHIVE') {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `archive ${member.archiveId} is in DEEP_ARCHIVE, which has no Expedited tier`, {
        hint: 'use --tier Standard (about 12 hours) or Bulk (about 48 hours)',
      });
    }
  }
  const objects: ObjectRestore[] = [];
  for (const member of chain) {
    const store = storeOf(deps.archives, member);
    for (const object of deps.index.archives.objects(member.archiveId)) {
      const known = await store.restoreStatus(object.ref, object.restoreJob ?? undefined);
      let status: RestoreStatus = known;
      const requested = known.state === 'archived' || known.state === 'failed' || expiresTooSoon(store.target, known, days);
      if (requested) {
        status = await store.requestRestore(object.ref, { tier, days, description: `snapline restore of ${member.archiveId} ${object.name}` });
        deps.index.archives.recordRestore(member.archiveId, object.name, { job: status.job ?? null, tier, requestedAt: new Date() });
      }
      objects.push({ archiveId: member.archiveId, name: object.name, ref: object.ref, state: status.state, job: status.job ?? null, requested });
    }
  }
  return { archiveId: record.archiveId, chain: chain.map((a) => a.archiveId), tier, days, objects };
}

/**
 * Whether a readable S3 copy would be gone before `days` from now: asking
 * again moves its expiry to `days` from now (RestoreObject answers 200, no
 * new retrieval). A Glacier job's output is not extended: a new job would be
 * paid for again.
 */
function expiresTooSoon(target: ArchiveTarget, status: RestoreStatus, days: number): boolean {
  return target === 's3' && status.state === 'available' && status.expiresAt !== undefined && status.expiresAt.getTime() < Date.now() + days * DAY_MS;
}

// ---- status --------------------------------------------------------------------

export interface ArchiveStatusOptions {
  /** One archive (and its chain); default every archive of the index that is not deleted. */
  archive?: string;
  /** Wait until the archive's chain is readable (or a job fails); needs `archive`. */
  wait?: boolean;
  /** Give up waiting after this long (TIMEOUT); default no limit. */
  waitTimeoutMs?: number;
  /** First and largest pause between two polls (default 5 s, growing to 10 min). */
  pollMs?: { first: number; max: number };
  signal?: AbortSignal;
  onWait?: (summary: ArchiveStatusEntry[]) => void;
}

export interface ArchiveStatusEntry {
  archiveId: string;
  snapshotId: string;
  volume: string;
  target: ArchiveTarget;
  location: string;
  state: ArchiveRecord['state'];
  parentArchiveId: string | null;
  storageClass: string | null;
  sizeBytes: number;
  blocks: number;
  createdAt: string;
  completedAt: string | null;
  /**
   * Whether its objects can be read: available when all are, failed when a
   * job failed, in-progress while one is under way, archived otherwise. A
   * listing of every archive looks up only those with a restore asked for;
   * the others say what their storage class implies (objects then empty).
   * Null for an archive that is not archived (unfinished, deleted): there is
   * nothing to read.
   */
  restore: RestoreState | null;
  objects: Array<{ name: string; state: RestoreState; job: string | null; expiresAt: string | null; message: string | null }>;
}

/**
 * The archives of the index with the readability of their objects, asked of
 * the store. With `wait`, polls with growing pauses (no fixed cap unless
 * waitTimeoutMs) until every object of the archive's chain is readable;
 * a failed Glacier job is BAD_STATE naming it (ask again with `archive restore`).
 */
export async function archiveStatus(deps: ArchiveJobsDeps, options: ArchiveStatusOptions = {}): Promise<ArchiveStatusEntry[]> {
  if (options.wait && options.archive === undefined) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'wait needs an archive to wait for', { details: { option: 'wait' } });
  if (options.archive === undefined) {
    const entries: ArchiveStatusEntry[] = [];
    for (const record of deps.index.archives.list().filter((a) => a.state !== 'deleted')) {
      if (record.state !== 'archived') {
        entries.push(entryOf(record, null, []));
        continue;
      }
      const asked = deps.index.archives.objects(record.archiveId).some((o) => o.restoreRequestedAt !== null);
      // Only archives with a restore asked for are looked up; the others are as their storage class says.
      entries.push(asked ? await statusOf(deps, record) : entryOf(record, needsRestore(record) ? 'archived' : 'available', []));
    }
    return entries;
  }
  const chain = chainOf(deps.index, findArchive(deps.index, options.archive));
  if (!options.wait) return Promise.all(chain.map((record) => statusOf(deps, record)));
  requireArchived(chain);
  const { first, max } = options.pollMs ?? { first: 5000, max: 600_000 };
  const deadline = options.waitTimeoutMs === undefined ? Infinity : Date.now() + options.waitTimeoutMs;
  let pause = first;
  for (;;) {
    throwIfAborted(options.signal);
    const entries: ArchiveStatusEntry[] = [];
    for (const record of chain) entries.push(await statusOf(deps, record));
    const failed = entries.flatMap((e) => e.objects.filter((o) => o.state === 'failed').map((o) => ({ archiveId: e.archiveId, ...o })));
    if (failed.length > 0) {
      const first = failed[0]!;
      throw new SnaplineError(ErrorCodes.BAD_STATE, `the retrieval of ${first.name} of archive ${first.archiveId} failed${first.job ? ` (job ${first.job})` : ''}: ${first.message ?? 'no reason given'}`, {
        hint: `ask for it again with \`snapline archive restore ${options.archive}\``,
        details: { failed },
      });
    }
    if (entries.every((e) => e.restore === 'available')) return entries;
    const expired = expiredCopies(deps, entries);
    if (expired !== undefined) {
      throw new SnaplineError(
        ErrorCodes.BAD_STATE,
        `the restored copies of ${expired.objects.length} objects of archive ${expired.archiveId} expired before archive ${options.archive} was readable`,
        {
          hint: `ask for them again with \`snapline archive restore ${options.archive}\` (with enough --days for S3), then rehydrate once it is readable`,
          details: expired,
        },
      );
    }
    if (entries.some((e) => e.restore === 'archived')) {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${options.archive} has objects no restore was asked for`, {
        hint: `ask for them with \`snapline archive restore ${options.archive}\``,
      });
    }
    options.onWait?.(entries);
    // The last look is at the deadline, not a pause before it.
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new SnaplineError(ErrorCodes.TIMEOUT, `archive ${options.archive} is not readable yet after the wait timeout`, {
        hint: 'run `snapline archive status --wait` again later: the restore goes on',
      });
    }
    await sleep(Math.min(pause, left), options.signal);
    pause = Math.min(max, pause * 2);
  }
}

/** The first archive of a chain being waited for with objects readable no more: a restore was asked for them, and none is under way. */
function expiredCopies(deps: ArchiveJobsDeps, entries: readonly ArchiveStatusEntry[]): { archiveId: string; objects: string[] } | undefined {
  for (const entry of entries) {
    const asked = new Set(deps.index.archives.objects(entry.archiveId).filter((o) => o.restoreRequestedAt !== null).map((o) => o.name));
    const objects = entry.objects.filter((o) => o.state === 'archived' && asked.has(o.name)).map((o) => o.name);
    if (objects.length > 0) return { archiveId: entry.archiveId, objects };
  }
  return undefined;
}

async function statusOf(deps: ArchiveJobsDeps, record: ArchiveRecord): Promise<ArchiveStatusEntry> {
  if (record.state !== 'archived') return entryOf(record, null, []);
  const store = storeOf(deps.archives, record);
  const objects: ArchiveStatusEntry['objects'] = [];
  for (const object of deps.index.archives.objects(record.archiveId)) {
    const status = await store.restoreStatus(object.ref, object.restoreJob ?? undefined);
    objects.push({
      name: object.name,
      state: status.state,
      job: status.job ?? object.restoreJob,
      expiresAt: status.expiresAt?.toISOString() ?? null,
      message: status.message ?? null,
    });
  }
  return entryOf(record, overall(objects.map((o) => o.state)), objects);
}

function overall(states: RestoreState[]): RestoreState {
  if (states.includes('failed')) return 'failed';
  if (states.every((s) => s === 'available')) return 'available';
  if (states.includes('in-progress')) return 'in-progress';
  return 'archived';
}

function entryOf(record: ArchiveRecord, restore: RestoreState | null, objects: ArchiveStatusEntry['objects']): ArchiveStatusEntry {
  return {
    archiveId: record.archiveId,
    snapshotId: record.snapshotId,
    volume: record.volume,
    target: record.target,
    location: record.location,
    state: record.state,
    parentArchiveId: record.parentArchiveId,
    storageClass: record.storageClass,
    sizeBytes: record.sizeBytes,
    blocks: record.blockCount,
    createdAt: record.createdAt.toISOString(),
    completedAt: record.completedAt?.toISOString() ?? null,
    restore,
    objects,
  };
}

/** Whether reading an archive's objects needs a restore first (Glacier, or S3 GLACIER and DEEP_ARCHIVE). */
export function needsRestore(record: ArchiveRecord): boolean {
  return record.target === 'glacier' || RESTORE_CLASSES.has(record.storageClass ?? '');
}

// ---- inventory -------------------------------------------------------------------

export interface InventoryOptions {
  to?: ArchiveTarget;
}

export interface InventoryArchive {
  archiveId: string | null;
  snapshotId: string;
  volume: string;
  /** The manifest's S3 key or Glacier archive id. */
  manifestRef: string;
  objects: number;
  sizeBytes: number;
  /** What the index says of it; null when the index does not know it. */
  indexState: ArchiveRecord['state'] | null;
}

export interface InventoryResult {
  target: ArchiveTarget;
  location: string;
  state: Inventory['state'];
  /** The Glacier inventory job, while it runs (or when it failed). */
  job: string | null;
  takenAt: string | null;
  archives: InventoryArchive[];
  /** Objects the index records for live archives that the store does not list. */
  missing: Array<{ archiveId: string; name: string; ref: string }>;
  /** Objects under the prefix that belong to no archive the store holds a manifest of (an unfinished archive, another tool). */
  strays: Array<{ ref: string; name: string; sizeBytes: number }>;
}

/**
 * What the store holds: the S3 listing under the connection's path, or the
 * vault's inventory (a Glacier job of several hours: the first call starts
 * it, later calls read it once it is done), grouped into archives by their
 * manifests and compared with the index.
 */
export async function archiveInventory(deps: ArchiveJobsDeps, options: InventoryOptions = {}): Promise<InventoryResult> {
  const target = checkTarget(options.to, deps.archives);
  const store = deps.archives.store(target);
  const prefix = target === 's3' ? s3PathPrefix(deps.archives.path) : undefined;
  const inventory = await store.inventory({ ...(prefix ? { prefix } : {}), start: true });
  const base = { target, location: store.location, state: inventory.state };
  if (inventory.state !== 'ready') return { ...base, job: inventory.job, takenAt: null, archives: [], missing: [], strays: [] };
  const known = deps.index.archives.list().filter((a) => a.target === target && a.location === store.location);
  const strays: InventoryResult['strays'] = [];
  const byGroup = new Map<string, { manifest?: { ref: string }; snapshotId: string; volume: string; archiveId: string | null; objects: typeof inventory.objects }>();
  for (const object of inventory.objects) {
    const group = groupOf(target, object.name);
    if (group === undefined) {
      strays.push({ ref: object.ref, name: object.name, sizeBytes: object.sizeBytes });
      continue;
    }
    const entry = byGroup.get(group.key) ?? { snapshotId: group.snapshotId, volume: group.volume, archiveId: group.archiveId, objects: [] };
    entry.objects.push(object);
    if (group.manifest) entry.manifest = { ref: object.ref };
    byGroup.set(group.key, entry);
  }
  const archives: InventoryArchive[] = [];
  for (const group of byGroup.values()) {
    if (group.manifest === undefined) {
      strays.push(...group.objects.map((o) => ({ ref: o.ref, name: o.name, sizeBytes: o.sizeBytes })));
      continue;
    }
    const record =
      known.find((a) => a.manifestRef === group.manifest!.ref) ??
      (group.archiveId === null ? known.find((a) => a.snapshotId === group.snapshotId && a.state !== 'deleted') : known.find((a) => a.archiveId === group.archiveId));
    archives.push({
      archiveId: record?.archiveId ?? group.archiveId,
      snapshotId: group.snapshotId,
      volume: group.volume,
      manifestRef: group.manifest.ref,
      objects: group.objects.length,
      sizeBytes: group.objects.reduce((sum, o) => sum + o.sizeBytes, 0),
      indexState: record?.state ?? null,
    });
  }
  const listed = new Set(inventory.objects.map((o) => o.ref));
  const missing: InventoryResult['missing'] = [];
  for (const record of known.filter((a) => a.state === 'archived')) {
    for (const object of deps.index.archives.objects(record.archiveId)) {
      if (!listed.has(object.ref)) missing.push({ archiveId: record.archiveId, name: object.name, ref: object.ref });
    }
  }
  return { ...base, job: null, takenAt: inventory.takenAt?.toISOString() ?? null, archives, missing, strays };
}

function s3PathPrefix(path: string | undefined): string {
  const trimmed = (path ?? '').replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? '' : `${trimmed}/`;
}

/** Which archive an object belongs to: its S3 key `<path>/<volume>/<snapshot>/<name>`, or its Glacier description. */
function groupOf(target: ArchiveTarget, name: string): { key: string; snapshotId: string; volume: string; archiveId: string | null; manifest: boolean } | undefined {
  if (target === 'glacier') {
    const parsed = parseGlacierDescription(name);
    if (parsed === undefined) return undefined;
    return { key: parsed.archiveId, snapshotId: parsed.snapshotId, volume: parsed.volume, archiveId: parsed.archiveId, manifest: parsed.name === MANIFEST_NAME };
  }
  const parts = name.split('/');
  if (parts.length < 3) return undefined;
  const object = parts.at(-1)!;
  if (object !== MANIFEST_NAME && !/^segment-\d{6}$/.test(object)) return undefined;
  const snapshotId = parts.at(-2)!;
  const volume = parts.at(-3)!;
  return { key: parts.slice(0, -1).join('/'), snapshotId, volume, archiveId: null, manifest: object === MANIFEST_NAME };
}

// ---- prune -----------------------------------------------------------------------

export interface ArchivePruneOptions {
  /** Default: the connection's delete_older_than_days. */
  olderThanDays?: number;
  volume?: string;
  dryRun?: boolean;
  now?: Date;
}

export interface ArchivePruneResult {
  dryRun: boolean;
  olderThanDays: number;
  deleted: Array<{ archiveId: string; snapshotId: string; volume: string; target: ArchiveTarget; location: string; ageDays: number; objects: number }>;
  /** Old archives kept because a newer one builds on them, or as their volume's newest at their place. */
  kept: Array<{ archiveId: string; reason: string }>;
}

/**
 * Deletes archives completed more than `olderThanDays` days ago: their
 * objects first, then the record. Never the newest archive of a volume at a
 * place, nor one an unfinished ECS restore reads or another run holds (a
 * rehydration), nor one a kept archive builds on (an incremental chain goes
 * as a whole or not at all). Unfinished archives are left alone.
 */
export async function pruneArchives(deps: ArchiveJobsDeps, options: ArchivePruneOptions = {}): Promise<ArchivePruneResult> {
  const olderThanDays = options.olderThanDays ?? deps.archives.deleteOlderThanDays;
  if (olderThanDays === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'give olderThanDays, or set archive.delete_older_than_days in the connection', { details: { option: 'olderThanDays' } });
  }
  if (!Number.isSafeInteger(olderThanDays) || olderThanDays < 0) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `olderThanDays must be a whole number of 0 or more, got ${olderThanDays}`, { details: { option: 'olderThanDays' } });
  }
  const now = (options.now ?? new Date()).getTime();
  const cutoff = now - olderThanDays * DAY_MS;
  const all = deps.index.archives.list().filter((a) => a.state === 'archived' && (options.volume === undefined || a.volume === options.volume));
  const kept: ArchivePruneResult['kept'] = [];
  const newest = new Map<string, ArchiveRecord>();
  for (const record of all) {
    const place = `${record.volume}\0${record.target}\0${record.location}`;
    const current = newest.get(place);
    if (current === undefined || record.completedAt!.getTime() >= current.completedAt!.getTime()) newest.set(place, record);
  }
  const candidates = new Set(all.filter((a) => a.completedAt!.getTime() < cutoff).map((a) => a.archiveId));
  for (const record of newest.values()) {
    if (candidates.delete(record.archiveId)) kept.push({ archiveId: record.archiveId, reason: 'the newest archive of its volume there' });
  }
  // An ECS restore that is running or failed (the same command resumes it) still reads the archive.
  for (const id of [...candidates]) {
    const job = deps.index.ecsJobs.openFor(id);
    if (job !== undefined) {
      candidates.delete(id);
      kept.push({ archiveId: id, reason: `ECS restore job ${job.jobId} from it is ${job.state}` });
    }
  }
  // The archives to delete are held until they are gone; one another run holds (a rehydration reading it) stays.
  const held = new Map<string, HeldLock>();
  try {
    for (const record of all.filter((a) => candidates.has(a.archiveId))) {
      try {
        held.set(record.archiveId, deps.index.locks.acquire(archiveLockName(record.target, record.location, record.snapshotId)));
      } catch (err) {
        if (!isSnaplineError(err, ErrorCodes.CONFLICT)) throw err;
        candidates.delete(record.archiveId);
        kept.push({ archiveId: record.archiveId, reason: `in use by another run (pid ${String(err.details?.pid)}), such as a rehydration` });
      }
    }
    // A candidate stays while an archive that stays builds on it.
    for (let changed = true; changed; ) {
      changed = false;
      for (const id of [...candidates]) {
        const child = deps.index.archives.children(id).find((c) => !candidates.has(c.archiveId));
        if (child !== undefined) {
          candidates.delete(id);
          kept.push({ archiveId: id, reason: `archive ${child.archiveId} builds on it` });
          changed = true;
        }
      }
    }
    // Children before their parents.
    const order = all.filter((a) => candidates.has(a.archiveId)).sort((a, b) => depthOf(deps.index, b) - depthOf(deps.index, a));
    const deleted: ArchivePruneResult['deleted'] = [];
    for (const record of order) {
      const objects = deps.index.archives.objects(record.archiveId);
      if (!options.dryRun) await removeArchive(deps, record);
      deleted.push({
        archiveId: record.archiveId,
        snapshotId: record.snapshotId,
        volume: record.volume,
        target: record.target,
        location: record.location,
        ageDays: Math.floor((now - record.completedAt!.getTime()) / DAY_MS),
        objects: objects.length,
      });
    }
    return { dryRun: Boolean(options.dryRun), olderThanDays, deleted, kept };
  } finally {
    for (const lock of held.values()) lock.release();
  }
}

/**
 * Deletes an archive's objects, and aborts the multipart upload an
 * unfinished one has under way, then marks it deleted in the index (its
 * objects and upload journal dropped). A run cut short leaves the record as
 * it was: deleting again finishes (object deletes are idempotent).
 * Returns the uploads aborted.
 */
async function removeArchive(deps: ArchiveJobsDeps, record: ArchiveRecord): Promise<number> {
  const store = storeOf(deps.archives, record);
  let aborted = 0;
  for (const name of uploadsOf(deps.index, record)) {
    const upload = deps.index.archives.upload(record.archiveId, name);
    if (upload === undefined) continue;
    await store.abortUpload(remoteName(record, name), upload.uploadId);
    aborted += 1;
  }
  for (const object of deps.index.archives.objects(record.archiveId)) await store.deleteObject(object.ref);
  deps.index.archives.markDeleted(record.archiveId);
  return aborted;
}

/** The objects an unfinished archive may have an upload of: the segment after those stored (segments are written one at a time), and the manifest. */
function uploadsOf(index: Pick<IndexPorts, 'archives'>, record: ArchiveRecord): string[] {
  if (record.state !== 'uploading') return [];
  const segments = index.archives.objects(record.archiveId).filter((o) => o.name !== MANIFEST_NAME).length;
  return [segmentName(segments), MANIFEST_NAME];
}

// ---- delete ----------------------------------------------------------------------

export interface ArchiveDeleteOptions {
  /** An archive id, or a snapshot id with one archive. */
  archive: string;
  /** Say what would be deleted; delete nothing. */
  dryRun?: boolean;
}

export interface ArchiveDeleteResult {
  dryRun: boolean;
  archiveId: string;
  snapshotId: string;
  volume: string;
  target: ArchiveTarget;
  location: string;
  /** What it was: archived, or uploading (an unfinished archive). */
  state: ArchiveRecord['state'];
  /** Objects deleted (or that would be). */
  objects: number;
  /** Multipart uploads of an unfinished archive aborted (or that would be). */
  uploads: number;
}

/**
 * Deletes one archive: its objects (S3 objects or Glacier archives), an
 * upload an unfinished one has under way, and its records in the index (see
 * removeArchive). Refused while something depends on it: CONFLICT when an
 * archive builds on it, an ECS restore job from it is unfinished, or another
 * run writes it; NOT_FOUND when it is deleted already. With dryRun the same
 * checks are made and nothing is deleted.
 */
export async function deleteArchive(deps: ArchiveJobsDeps, options: ArchiveDeleteOptions): Promise<ArchiveDeleteResult> {
  const record = findArchive(deps.index, options.archive);
  if (record.state === 'deleted') {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `archive ${record.archiveId} is deleted already${record.deletedAt ? ` (${record.deletedAt.toISOString()})` : ''}`, {
      details: { archiveId: record.archiveId },
    });
  }
  const children = deps.index.archives.children(record.archiveId);
  if (children.length > 0) {
    const ids = children.map((c) => c.archiveId);
    throw new SnaplineError(ErrorCodes.CONFLICT, `archive ${record.archiveId} cannot be deleted: ${ids.join(', ')} ${ids.length === 1 ? 'builds' : 'build'} on it`, {
      details: { archiveId: record.archiveId, children: ids },
      hint: `delete ${ids.length === 1 ? 'it' : 'them'} first (\`snapline archive delete ${ids[0]}\`)`,
    });
  }
  const job = deps.index.ecsJobs.openFor(record.archiveId);
  if (job !== undefined) {
    throw new SnaplineError(ErrorCodes.CONFLICT, `archive ${record.archiveId} cannot be deleted: ECS restore job ${job.jobId} from it is ${job.state}`, {
      details: { archiveId: record.archiveId, job: job.jobId },
      hint: `finish the job (\`snapline ecs status ${job.jobId}\`) before deleting the archive`,
    });
  }
  const lock = deps.index.locks.acquire(archiveLockName(record.target, record.location, record.snapshotId));
  try {
    const objects = deps.index.archives.objects(record.archiveId).length;
    const pending = uploadsOf(deps.index, record).filter((name) => deps.index.archives.upload(record.archiveId, name) !== undefined).length;
    const uploads = options.dryRun ? pending : await removeArchive(deps, record);
    return {
      dryRun: Boolean(options.dryRun),
      archiveId: record.archiveId,
      snapshotId: record.snapshotId,
      volume: record.volume,
      target: record.target,
      location: record.location,
      state: record.state,
      objects,
      uploads,
    };
  } finally {
    lock.release();
  }
}

function depthOf(index: Pick<IndexPorts, 'archives'>, record: ArchiveRecord): number {
  return chainOf(index, record).length;
}
