import { hostname } from 'node:os';
import { BLOCKS_PER_GIB, GIB, MAX_VOLUME_SIZE_GIB } from '../../src/core/constants.js';
import type {
  AdvisoryLocks,
  ArchiveCatalog,
  ArchiveObjectRecord,
  ArchiveRecord,
  ArchiveTargetName,
  BeginArchiveInput,
  BeginRunInput,
  BlockEntry,
  BlockInput,
  BlockMaps,
  BlockRange,
  EcsJobRecord,
  EcsJobState,
  EcsJobStore,
  EcsShardRecord,
  EcsShardState,
  EcsTaskRecord,
  HeldLock,
  LockHolder,
  ImportSnapshotInput,
  IndexPorts,
  NewEcsJob,
  ObjectUploadRecord,
  RestoreTargets,
  RunJournal,
  RunStartRecord,
  SnapshotRecord,
  TargetRecord,
  TargetState,
  UploadPartRecord,
  VolumeLineage,
  VolumeRecord,
} from '../../src/core/index-ports.js';
import type { CopyCatalog, CopyRecord, CopyState, DrillRecord, DrillRecords, NewCopy, NewDrill, TrackerLog, TrackerRecord } from '../../src/core/index-ports.js';
import type { RunEntry, RunLog } from '../../src/core/run-log.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { checkedRunEntry } from '../../src/index/history.js';
import { BLOCK_KEY_SPAN } from '../../src/index/schema.js';
import { checkedBeginRun, checkedImport, checkedTarget, optionalText, requireDigest, requireInteger, requireString, requireText, requireTime } from '../../src/index/validate.js';

/**
 * The index ports in memory, for engine tests that need an index and not a
 * file. It passes the same contract suites as the SQLite index
 * (test/contract/index-ports.test.ts). Differences it does not model: store
 * binding (STORE_MISMATCH), damaged maps (verifyMap never fails on a
 * snapshot with a map), other processes (locks are this object's only).
 * Records are returned as copies.
 */
export class MemoryIndex implements IndexPorts {
  readonly lineage: VolumeLineage;
  readonly runs: RunJournal;
  readonly maps: BlockMaps;
  readonly targets: RestoreTargets;
  readonly archives: ArchiveCatalog;
  readonly ecsJobs: EcsJobStore;
  readonly locks: AdvisoryLocks;
  readonly trackers: TrackerLog = new MemoryTrackers();
  readonly copies: CopyCatalog = new MemoryCopies();
  readonly drills: DrillRecords = new MemoryDrills();
  readonly history: RunLog = new MemoryHistory();

  constructor() {
    const snapshots = new SnapshotState();
    this.lineage = new MemoryLineage(snapshots);
    this.runs = new MemoryRuns(snapshots);
    this.maps = new MemoryMaps(snapshots);
    this.targets = new MemoryTargets();
    this.archives = new MemoryArchives();
    this.ecsJobs = new MemoryEcsJobs();
    this.locks = new MemoryLocks();
  }
}

const DIGEST_BYTES = 32;
const OPEN = new Set<SnapshotRecord['state']>(['pending', 'completing']);

function notFound(snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} is not in the index`, { details: { snapshotId } });
}

function badState(message: string, snapshotId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.BAD_STATE, message, { details: { snapshotId } });
}

interface Snapshot {
  record: SnapshotRecord;
  /** Completion order (commitRun, importSnapshot); 0 until completed. */
  seq: number;
  /** The full effective map once completed (kept after a delete, for the runs that build on it). */
  map: Map<number, Buffer> | null;
  journal: Map<number, Buffer>;
  intents: Map<number, Buffer>;
}

/** What the lineage, the runs and the maps share. */
class SnapshotState {
  readonly volumes = new Map<string, VolumeRecord>();
  /** In insertion order, which breaks ties of startedAt as the SQLite key does. */
  readonly snapshots = new Map<string, Snapshot>();
  readonly runStarts = new Map<string, RunStartRecord>();
  seq = 0;

  snapshot(snapshotId: string): Snapshot {
    const found = this.snapshots.get(requireText('snapshotId', snapshotId));
    if (found === undefined) throw notFound(snapshotId);
    return found;
  }

  volume(name: string): VolumeRecord {
    const found = this.volumes.get(name);
    if (found === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `volume ${name} is not in the index`, { details: { volume: name } });
    return found;
  }

  openRun(volume: string): Snapshot | undefined {
    return [...this.snapshots.values()].find((s) => s.record.volume === volume && OPEN.has(s.record.state));
  }

  /** The effective map `snapshot` stands for: its own once completed, its base's while open. */
  mapOf(snapshot: Snapshot): ReadonlyMap<number, Buffer> {
    const { record } = snapshot;
    if (record.state === 'completed') return snapshot.map!;
    if (OPEN.has(record.state)) return record.baseSnapshotId === null ? new Map() : this.snapshot(record.baseSnapshotId).map!;
    throw badState(`snapshot ${record.snapshotId} is ${record.state}: it has no block map`, record.snapshotId);
  }
}

function copy<T extends object>(record: T): T {
  return { ...record };
}

/** Validated blocks of a batch, in the order given. */
function blocksOf(blocks: Iterable<BlockInput>, blockCount: number, label: (at: number) => string): Array<[number, Buffer]> {
  const out: Array<[number, Buffer]> = [];
  let at = 0;
  for (const block of blocks) {
    out.push([requireInteger(`${label(at)}.index`, block?.index, 0, blockCount - 1), requireDigest(`${label(at)}.digest`, block.digest, DIGEST_BYTES)]);
    at += 1;
  }
  return out;
}

/** The entries over [from, to), ascending, while `going()` holds. */
function* ascending(entries: ReadonlyMap<number, Buffer>, from = 0, to = BLOCK_KEY_SPAN, going: () => boolean = () => true): Generator<BlockEntry> {
  const indexes = [...entries.keys()].filter((i) => i >= from && i < to).sort((a, b) => a - b);
  for (const index of indexes) {
    if (!going()) return;
    yield { index, digest: entries.get(index)! };
  }
}

class MemoryLineage implements VolumeLineage {
  readonly #s: SnapshotState;

  constructor(state: SnapshotState) {
    this.#s = state;
  }

  ensureVolume(v: { name: string; sourcePath: string; sizeBytes: number }): VolumeRecord {
    const name = requireText('volume name', v?.name);
    const sourcePath = requireString('sourcePath', v.sourcePath);
    const sizeBytes = requireInteger('sizeBytes', v.sizeBytes, 0, MAX_VOLUME_SIZE_GIB * GIB);
    const record = { name, sourcePath, sizeBytes, createdAt: this.#s.volumes.get(name)?.createdAt ?? new Date() };
    this.#s.volumes.set(name, record);
    return copy(record);
  }

  getVolume(name: string): VolumeRecord | undefined {
    const found = this.#s.volumes.get(name);
    return found === undefined ? undefined : copy(found);
  }

  listVolumes(): VolumeRecord[] {
    return [...this.#s.volumes.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(copy);
  }

  getSnapshot(snapshotId: string): SnapshotRecord | undefined {
    const found = this.#s.snapshots.get(snapshotId);
    return found === undefined ? undefined : copy(found.record);
  }

  headSnapshot(volume: string): SnapshotRecord | undefined {
    let head: Snapshot | undefined;
    for (const s of this.#s.snapshots.values()) {
      if (s.record.volume === volume && s.record.state === 'completed' && (head === undefined || s.seq > head.seq)) head = s;
    }
    return head === undefined ? undefined : copy(head.record);
  }

  listSnapshots(volume?: string): SnapshotRecord[] {
    return [...this.#s.snapshots.values()]
      .map((s) => s.record)
      .filter((r) => volume === undefined || r.volume === volume)
      .sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime())
      .map(copy);
  }

  baseChain(snapshotId: string): SnapshotRecord[] {
    const chain = [this.#s.snapshot(snapshotId).record];
    for (let base = chain[0]!.baseSnapshotId; base !== null; base = chain.at(-1)!.baseSnapshotId) chain.push(this.#s.snapshot(base).record);
    return chain.map(copy);
  }

  markDeleted(snapshotId: string): void {
    const snapshot = this.#s.snapshot(snapshotId);
    if (snapshot.record.state === 'deleted') return;
    snapshot.journal.clear();
    snapshot.intents.clear();
    snapshot.record.state = 'deleted';
  }

  importSnapshot(r: ImportSnapshotInput, blocks: Iterable<BlockInput>): SnapshotRecord {
    const { snapshotId, volume, parentSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, startedAt } = checkedImport(r);
    this.#s.volume(volume);
    const map = new Map<number, Buffer>();
    for (const [index, digest] of blocksOf(blocks, volumeSizeGiB * BLOCKS_PER_GIB, (at) => `block ${at}`)) {
      if (map.has(index)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block ${index} is given twice for ${snapshotId}`);
      map.set(index, digest);
    }
    this.#s.seq += 1;
    const record: SnapshotRecord = {
      snapshotId,
      volume,
      parentSnapshotId,
      baseSnapshotId: null,
      state: 'completed',
      volumeSizeGiB,
      sourceBytes,
      encrypted,
      description,
      startedAt: new Date(startedAt),
      completedAt: new Date(),
      changedBlocks: map.size,
      runOptions: null,
      errorReason: null,
    };
    const existing = this.#s.snapshots.get(snapshotId);
    if (existing !== undefined) Object.assign(existing, { record, seq: this.#s.seq, map, journal: new Map(), intents: new Map() });
    else this.#s.snapshots.set(snapshotId, { record, seq: this.#s.seq, map, journal: new Map(), intents: new Map() });
    return copy(record);
  }
}

class MemoryRuns implements RunJournal {
  readonly #s: SnapshotState;

  constructor(state: SnapshotState) {
    this.#s = state;
  }

  recordRunStart(r: { volume: string; clientToken: string; startInput: string; runOptions: string | null }): RunStartRecord {
    const volume = requireText('volume', r?.volume);
    const record = {
      volume,
      clientToken: requireText('clientToken', r.clientToken),
      startInput: requireText('startInput', r.startInput),
      runOptions: optionalText('runOptions', r.runOptions),
      createdAt: new Date(),
    };
    this.#s.volume(volume);
    this.#refuseOpenRun(volume);
    this.#s.runStarts.set(volume, record);
    return copy(record);
  }

  runStart(volume: string): RunStartRecord | undefined {
    const found = this.#s.runStarts.get(volume);
    return found === undefined ? undefined : copy(found);
  }

  dropRunStart(volume: string): void {
    this.#s.runStarts.delete(volume);
  }

  pendingRun(volume: string): SnapshotRecord | undefined {
    const open = this.#s.openRun(volume);
    return open === undefined ? undefined : copy(open.record);
  }

  beginRun(r: BeginRunInput): SnapshotRecord {
    const { volume, snapshotId, parentSnapshotId, baseSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, runOptions } = checkedBeginRun(r);
    this.#s.volume(volume);
    if (baseSnapshotId !== null) {
      const base = this.#s.snapshot(baseSnapshotId).record;
      if (base.volume !== volume) {
        throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `base snapshot ${baseSnapshotId} belongs to volume ${base.volume}, not ${volume}`, {
          details: { argument: 'baseSnapshotId' },
        });
      }
      if (base.state !== 'completed') throw badState(`base snapshot ${baseSnapshotId} is ${base.state}, not completed`, baseSnapshotId);
    }
    this.#refuseOpenRun(volume);
    if (this.#s.snapshots.has(snapshotId)) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshotId} is already in the index`, { details: { snapshotId } });
    }
    const record: SnapshotRecord = {
      snapshotId,
      volume,
      parentSnapshotId,
      baseSnapshotId,
      state: 'pending',
      volumeSizeGiB,
      sourceBytes,
      encrypted,
      description,
      startedAt: new Date(),
      completedAt: null,
      changedBlocks: 0,
      runOptions,
      errorReason: null,
    };
    this.#s.snapshots.set(snapshotId, { record, seq: 0, map: null, journal: new Map(), intents: new Map() });
    this.#s.runStarts.delete(volume);
    return copy(record);
  }

  recordIntents(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.recordJournal(snapshotId, { intents: blocks, blocks: [] });
  }

  recordBlocks(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.recordJournal(snapshotId, { intents: [], blocks });
  }

  recordJournal(snapshotId: string, batch: { intents: ReadonlyArray<BlockInput>; blocks: ReadonlyArray<BlockInput> }): void {
    // Both lists are checked before either is applied: all or nothing, as one transaction.
    const intents = this.#batch(snapshotId, batch?.intents, 'intents');
    const blocks = this.#batch(snapshotId, batch?.blocks, 'blocks');
    const snapshot = this.#s.snapshot(snapshotId);
    for (const [index, digest] of intents) snapshot.intents.set(index, digest);
    for (const [index, digest] of blocks) {
      snapshot.journal.set(index, digest);
      snapshot.intents.delete(index);
    }
  }

  unacknowledgedBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    const snapshot = this.#open(snapshotId);
    return ascending(new Map(snapshot.intents), 0, BLOCK_KEY_SPAN, () => OPEN.has(snapshot.record.state));
  }

  writtenBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    const snapshot = this.#open(snapshotId);
    return ascending(new Map(snapshot.journal), 0, BLOCK_KEY_SPAN, () => OPEN.has(snapshot.record.state));
  }

  writtenBlockCount(snapshotId: string): number {
    return this.#open(snapshotId).journal.size;
  }

  markCompleting(snapshotId: string): void {
    const { record } = this.#s.snapshot(snapshotId);
    if (record.state === 'completing') return;
    if (record.state !== 'pending') throw badState(`snapshot ${snapshotId} is ${record.state}, not pending`, snapshotId);
    record.state = 'completing';
  }

  commitRun(snapshotId: string, completedAt: Date = new Date()): SnapshotRecord {
    const at = requireTime('completedAt', completedAt);
    const snapshot = this.#s.snapshot(snapshotId);
    const { record } = snapshot;
    if (record.state === 'completed') return copy(record);
    if (!OPEN.has(record.state)) throw badState(`snapshot ${snapshotId} is ${record.state}: only an open run can be committed`, snapshotId);
    const map = new Map(this.#s.mapOf(snapshot));
    for (const [index, digest] of snapshot.journal) map.set(index, digest);
    this.#s.seq += 1;
    Object.assign(snapshot, { seq: this.#s.seq, map });
    Object.assign(record, { state: 'completed', completedAt: new Date(at), changedBlocks: snapshot.journal.size });
    snapshot.journal = new Map();
    snapshot.intents = new Map();
    return copy(record);
  }

  abandonRun(snapshotId: string, reason: string): void {
    const why = requireText('reason', reason);
    const snapshot = this.#s.snapshot(snapshotId);
    const { record } = snapshot;
    if (record.state === 'error') return;
    if (!OPEN.has(record.state)) throw badState(`snapshot ${snapshotId} is ${record.state}: only an open run can be abandoned`, snapshotId);
    snapshot.journal = new Map();
    snapshot.intents = new Map();
    Object.assign(record, { state: 'error', errorReason: why });
  }

  #refuseOpenRun(volume: string): void {
    const open = this.#s.openRun(volume);
    if (open !== undefined) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `volume ${volume} has an unfinished run (snapshot ${open.record.snapshotId}, ${open.record.state})`, {
        details: { volume, snapshotId: open.record.snapshotId },
      });
    }
  }

  #batch(snapshotId: string, blocks: ReadonlyArray<BlockInput>, name: string): Array<[number, Buffer]> {
    if (!Array.isArray(blocks)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} must be an array`);
    const { record } = this.#s.snapshot(snapshotId);
    if (record.state !== 'pending') {
      throw badState(`snapshot ${snapshotId} is ${record.state}: its journal is written only while it is pending`, snapshotId);
    }
    return blocksOf(blocks, record.volumeSizeGiB * BLOCKS_PER_GIB, (at) => `${name}[${at}]`);
  }

  #open(snapshotId: string): Snapshot {
    const snapshot = this.#s.snapshot(snapshotId);
    if (!OPEN.has(snapshot.record.state)) throw badState(`snapshot ${snapshotId} is ${snapshot.record.state}, not an open run`, snapshotId);
    return snapshot;
  }
}

class MemoryMaps implements BlockMaps {
  readonly #s: SnapshotState;

  constructor(state: SnapshotState) {
    this.#s = state;
  }

  blockMap(snapshotId: string, range: BlockRange = {}): IterableIterator<BlockEntry> {
    const from = requireInteger('fromBlock', range.fromBlock ?? 0, 0, BLOCK_KEY_SPAN);
    const to = requireInteger('toBlock', range.toBlock ?? BLOCK_KEY_SPAN, from, BLOCK_KEY_SPAN);
    return ascending(this.#s.mapOf(this.#s.snapshot(snapshotId)), from, to);
  }

  verifyMap(snapshotId: string): void {
    this.#s.mapOf(this.#s.snapshot(snapshotId));
  }

  diffMaps(a: string, b: string): IterableIterator<number> {
    const mapA = this.#s.mapOf(this.#s.snapshot(a));
    const mapB = this.#s.mapOf(this.#s.snapshot(b));
    const indexes = new Set([...mapA.keys(), ...mapB.keys()]);
    const differing = [...indexes].filter((i) => !mapA.get(i)?.equals(mapB.get(i) ?? Buffer.alloc(0))).sort((x, y) => x - y);
    return differing.values();
  }
}

class MemoryTargets implements RestoreTargets {
  readonly #targets = new Map<string, TargetRecord>();

  set(t: { path: string; snapshotId: string | null; state: TargetState; sizeBytes: number }): void {
    const record = checkedTarget(t);
    this.#targets.set(record.path, { ...record, updatedAt: new Date() });
  }

  get(path: string): TargetRecord | undefined {
    const found = this.#targets.get(path);
    return found === undefined ? undefined : copy(found);
  }

  ownFiles(): string[] {
    return [];
  }
}

function archiveNotFound(archiveId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `archive ${archiveId} is not in the index`, { details: { archiveId } });
}

interface Archive {
  record: ArchiveRecord;
  /** By name. */
  objects: Map<string, ArchiveObjectRecord>;
  uploads: Map<string, ObjectUploadRecord>;
}

class MemoryArchives implements ArchiveCatalog {
  /** In insertion order. */
  readonly #archives = new Map<string, Archive>();

  get(archiveId: string): ArchiveRecord | undefined {
    const found = this.#archives.get(archiveId);
    return found === undefined ? undefined : copy(found.record);
  }

  list(): ArchiveRecord[] {
    return [...this.#archives.values()].map((a) => copy(a.record)).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  }

  live(target: ArchiveTargetName, location: string, snapshotId: string): ArchiveRecord | undefined {
    return this.list().find((a) => a.target === target && a.location === location && a.snapshotId === snapshotId && a.state !== 'deleted');
  }

  latest(volume: string, target: ArchiveTargetName, location: string): ArchiveRecord | undefined {
    return this.list()
      .filter((a) => a.volume === volume && a.target === target && a.location === location && a.state === 'archived')
      .reduce<ArchiveRecord | undefined>((newest, a) => (newest === undefined || a.completedAt!.getTime() >= newest.completedAt!.getTime() ? a : newest), undefined);
  }

  children(archiveId: string): ArchiveRecord[] {
    this.#archive(archiveId);
    return this.list().filter((a) => a.parentArchiveId === archiveId && a.state !== 'deleted');
  }

  begin(input: BeginArchiveInput): ArchiveRecord {
    const archiveId = requireText('archiveId', input?.archiveId);
    if (input.target !== 's3' && input.target !== 'glacier') {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `target must be s3 or glacier, got ${String(input.target)}`);
    }
    const parentArchiveId = optionalText('parentArchiveId', input.parentArchiveId);
    if (parentArchiveId !== null) {
      const parent = this.#archive(parentArchiveId).record;
      if (parent.state !== 'archived') {
        throw new SnaplineError(ErrorCodes.BAD_STATE, `parent archive ${parentArchiveId} is ${parent.state}, not archived`, { details: { archiveId: parentArchiveId } });
      }
    }
    const record: ArchiveRecord = {
      archiveId,
      target: input.target,
      location: requireText('location', input.location),
      prefix: requireText('prefix', input.prefix),
      snapshotId: requireText('snapshotId', input.snapshotId),
      volume: requireText('volume', input.volume),
      parentArchiveId,
      storageClass: optionalText('storageClass', input.storageClass),
      segmentBlocks: requireInteger('segmentBlocks', input.segmentBlocks, 1, 1 << 24),
      state: 'uploading',
      manifestRef: null,
      treeHash: null,
      sizeBytes: 0,
      blockCount: 0,
      createdAt: new Date(),
      completedAt: null,
      deletedAt: null,
    };
    if (this.#archives.has(archiveId) || this.live(record.target, record.location, record.snapshotId) !== undefined) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${record.snapshotId} already has an archive in ${record.target} ${record.location}, or ${archiveId} is taken`, {
        details: { snapshotId: record.snapshotId, archiveId },
      });
    }
    this.#archives.set(archiveId, { record, objects: new Map(), uploads: new Map() });
    return copy(record);
  }

  complete(archiveId: string, manifest: { ref: string; treeHash: string; blockCount: number }): ArchiveRecord {
    const archive = this.#archive(archiveId);
    const { record } = archive;
    if (record.state === 'archived') return copy(record);
    if (record.state !== 'uploading') throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${archiveId} is ${record.state}, not uploading`, { details: { archiveId } });
    Object.assign(record, {
      state: 'archived',
      manifestRef: requireText('manifest ref', manifest.ref),
      treeHash: requireText('tree hash', manifest.treeHash),
      blockCount: requireInteger('blockCount', manifest.blockCount, 0, Number.MAX_SAFE_INTEGER),
      completedAt: new Date(),
      sizeBytes: [...archive.objects.values()].reduce((sum, o) => sum + o.sizeBytes, 0),
    });
    return copy(record);
  }

  markDeleted(archiveId: string): void {
    const archive = this.#archive(archiveId);
    if (archive.record.state === 'deleted') return;
    const live = this.children(archiveId);
    if (live.length > 0) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `archive ${archiveId} is the parent of ${live.map((a) => a.archiveId).join(', ')}`, { details: { archiveId } });
    }
    archive.objects.clear();
    archive.uploads.clear();
    Object.assign(archive.record, { state: 'deleted', deletedAt: new Date() });
  }

  objects(archiveId: string): ArchiveObjectRecord[] {
    return [...this.#archive(archiveId).objects.values()].sort((a, b) => (a.name < b.name ? -1 : 1)).map(copy);
  }

  recordObject(archiveId: string, object: { name: string; ref: string; sizeBytes: number; treeHash: string; entry: string | null }): void {
    const archive = this.#archive(archiveId);
    const name = requireText('object name', object?.name);
    archive.objects.set(name, {
      name,
      ref: requireText('object ref', object.ref),
      sizeBytes: requireInteger('sizeBytes', object.sizeBytes, 0, Number.MAX_SAFE_INTEGER),
      treeHash: requireText('treeHash', object.treeHash),
      entry: optionalText('entry', object.entry),
      restoreJob: null,
      restoreTier: null,
      restoreRequestedAt: null,
    });
    archive.uploads.delete(name);
  }

  recordRestore(archiveId: string, name: string, restore: { job: string | null; tier: string; requestedAt: Date }): void {
    const object = this.#archive(archiveId).objects.get(name);
    const tier = requireText('tier', restore.tier);
    if (object === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `archive ${archiveId} has no object ${name}`);
    Object.assign(object, { restoreJob: restore.job, restoreTier: tier, restoreRequestedAt: new Date(restore.requestedAt.getTime()) });
  }

  upload(archiveId: string, name: string): ObjectUploadRecord | undefined {
    const found = this.#archive(archiveId).uploads.get(name);
    return found === undefined ? undefined : { ...found, parts: [...found.parts].sort((a, b) => a.partNumber - b.partNumber).map(copy) };
  }

  beginUpload(archiveId: string, name: string, uploadId: string, partSize: number): void {
    const archive = this.#archive(archiveId);
    archive.uploads.set(requireText('object name', name), {
      uploadId: requireText('uploadId', uploadId),
      partSize: requireInteger('partSize', partSize, 1, Number.MAX_SAFE_INTEGER),
      startedAt: new Date(),
      parts: [],
    });
  }

  recordPart(archiveId: string, name: string, part: UploadPartRecord): void {
    const upload = this.#archive(archiveId).uploads.get(name);
    if (upload === undefined) throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${archiveId} has no upload of ${name} in progress`);
    const record = {
      partNumber: requireInteger('partNumber', part?.partNumber, 1, 10_000),
      sizeBytes: requireInteger('sizeBytes', part.sizeBytes, 1, Number.MAX_SAFE_INTEGER),
      checksum: requireText('checksum', part.checksum),
    };
    upload.parts = [...upload.parts.filter((p) => p.partNumber !== record.partNumber), record];
  }

  dropUpload(archiveId: string, name: string): void {
    this.#archive(archiveId).uploads.delete(name);
  }

  #archive(archiveId: string): Archive {
    const found = this.#archives.get(requireText('archiveId', archiveId));
    if (found === undefined) throw archiveNotFound(archiveId);
    return found;
  }
}

const JOB_STATES = new Set<EcsJobState>(['running', 'failed', 'completed', 'abandoned']);
const SHARD_STATES = new Set<EcsShardState>(['waiting', 'running', 'succeeded', 'failed']);

class MemoryEcsJobs implements EcsJobStore {
  readonly #jobs = new Map<string, { record: EcsJobRecord; shards: EcsShardRecord[] }>();
  readonly #tasks = new Map<string, EcsTaskRecord>();

  create(input: NewEcsJob, shards: ReadonlyArray<{ fromBlock: number; toBlock: number }>): EcsJobRecord {
    const now = new Date();
    const record: EcsJobRecord = {
      jobId: requireText('jobId', input?.jobId),
      sourceKind: input.sourceKind === 'archive' ? 'archive' : 'snapshot',
      source: requireText('source', input.source),
      volume: requireText('volume', input.volume),
      snapshotId: null,
      cluster: requireText('cluster', input.cluster),
      taskDefinition: requireText('taskDefinition', input.taskDefinition),
      startedBy: requireText('startedBy', input.startedBy),
      state: 'running',
      message: null,
      createdAt: now,
      updatedAt: now,
    };
    if (shards.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'a job needs at least one shard');
    const open = this.openFor(record.source);
    if (open !== undefined) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `${record.source} already has an unfinished ECS job, ${open.jobId}`, { details: { jobId: open.jobId } });
    }
    if (this.#jobs.has(record.jobId) || [...this.#jobs.values()].some((j) => j.record.startedBy === record.startedBy)) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `ECS job ${record.jobId} (or its startedBy ${record.startedBy}) is already in the index`);
    }
    const shardRecords = shards.map((s, n): EcsShardRecord => {
      const fromBlock = requireInteger(`shards[${n}].fromBlock`, s.fromBlock, 0, Number.MAX_SAFE_INTEGER);
      const toBlock = requireInteger(`shards[${n}].toBlock`, s.toBlock, fromBlock + 1, Number.MAX_SAFE_INTEGER);
      return { shard: n, fromBlock, toBlock, state: 'waiting', attempt: 0, launch: 0, message: null };
    });
    this.#jobs.set(record.jobId, { record, shards: shardRecords });
    return copy(record);
  }

  get(jobId: string): EcsJobRecord | undefined {
    const found = this.#jobs.get(jobId);
    return found === undefined ? undefined : copy(found.record);
  }

  openFor(source: string): EcsJobRecord | undefined {
    return this.list().find((j) => j.source === source && (j.state === 'running' || j.state === 'failed'));
  }

  list(): EcsJobRecord[] {
    return [...this.#jobs.values()]
      .map((j) => copy(j.record))
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.jobId < b.jobId ? -1 : 1));
  }

  update(jobId: string, fields: { snapshotId?: string; state?: EcsJobState; message?: string | null }): EcsJobRecord {
    if (fields.state !== undefined && !JOB_STATES.has(fields.state)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown job state ${fields.state}`);
    const job = this.#jobs.get(jobId);
    if (job === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `ECS job ${jobId} is not in the index`, { details: { jobId } });
    const { record } = job;
    if (fields.snapshotId !== undefined) record.snapshotId = fields.snapshotId;
    if (fields.state !== undefined) record.state = fields.state;
    if (fields.message !== undefined) record.message = fields.message;
    record.updatedAt = new Date();
    return copy(record);
  }

  shards(jobId: string): EcsShardRecord[] {
    return (this.#jobs.get(jobId)?.shards ?? []).map(copy);
  }

  updateShard(jobId: string, shard: number, fields: { state?: EcsShardState; attempt?: number; launch?: number; message?: string | null }): void {
    if (fields.state !== undefined && !SHARD_STATES.has(fields.state)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown shard state ${fields.state}`);
    const attempt = fields.attempt === undefined ? undefined : requireInteger('attempt', fields.attempt, 0, Number.MAX_SAFE_INTEGER);
    const launch = fields.launch === undefined ? undefined : requireInteger('launch', fields.launch, 0, Number.MAX_SAFE_INTEGER);
    const record = this.#jobs.get(jobId)?.shards.find((s) => s.shard === shard);
    if (record === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `ECS job ${jobId} has no shard ${shard}`);
    if (fields.state !== undefined) record.state = fields.state;
    if (attempt !== undefined) record.attempt = attempt;
    if (launch !== undefined) record.launch = launch;
    if (fields.message !== undefined) record.message = fields.message;
  }

  recordTask(task: EcsTaskRecord): void {
    const taskArn = requireText('taskArn', task?.taskArn);
    const lastStatus = requireText('lastStatus', task.lastStatus);
    const earlier = this.#tasks.get(taskArn);
    const update = { lastStatus, stopCode: task.stopCode, stoppedReason: task.stoppedReason, exitCode: task.exitCode, stoppedAt: task.stoppedAt };
    this.#tasks.set(taskArn, earlier === undefined ? { ...task, taskArn, lastStatus } : { ...earlier, ...update });
  }

  tasks(jobId: string): EcsTaskRecord[] {
    return [...this.#tasks.values()]
      .filter((t) => t.jobId === jobId)
      .sort((a, b) => a.shard - b.shard || a.attempt - b.attempt || a.createdAt.getTime() - b.createdAt.getTime())
      .map(copy);
  }
}

class MemoryLocks implements AdvisoryLocks {
  /** Held lock name -> since when. */
  readonly #held = new Map<string, Date>();

  acquire(name: string): HeldLock {
    if (typeof name !== 'string' || name.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'lock name must be a non-empty string');
    if (this.#held.has(name)) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `${name} is in use by pid ${process.pid}`, { details: { lock: name, pid: process.pid } });
    }
    this.#held.set(name, new Date());
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#held.delete(name);
      },
    };
  }

  holders(prefix: string): LockHolder[] {
    if (typeof prefix !== 'string' || prefix.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'lock name prefix must be a non-empty string');
    return [...this.#held]
      .filter(([name]) => name.startsWith(prefix))
      .map(([name, since]) => ({ name, pid: process.pid, host: hostname(), since }));
  }
}

/** The trackers of committed snapshots, by snapshot id. */
class MemoryTrackers implements TrackerLog {
  readonly #rows = new Map<string, TrackerRecord>();

  get(snapshotId: string): TrackerRecord | undefined {
    const row = this.#rows.get(requireText('snapshotId', snapshotId));
    return row && { ...row, recordedAt: new Date(row.recordedAt) };
  }

  record(record: Omit<TrackerRecord, 'recordedAt'>): void {
    const snapshotId = requireText('snapshotId', record.snapshotId);
    this.#rows.set(snapshotId, {
      snapshotId,
      kind: record.kind,
      name: optionalText('tracker name', record.name),
      sinceCheckpoint: optionalText('sinceCheckpoint', record.sinceCheckpoint),
      checkpoint: optionalText('checkpoint', record.checkpoint),
      scan: record.scan,
      reason: optionalText('reason', record.reason),
      recordedAt: new Date(),
    });
  }
}

function copyOfCopy(row: CopyRecord): CopyRecord {
  return { ...row, createdAt: new Date(row.createdAt), completedAt: row.completedAt && new Date(row.completedAt) };
}

/** Copies in other Regions, by id; lists leave out the deleted ones and go oldest first, then by id. */
class MemoryCopies implements CopyCatalog {
  readonly #rows = new Map<string, CopyRecord>();

  record(copy: NewCopy, at: Date = new Date()): CopyRecord {
    const row: CopyRecord = {
      copySnapshotId: requireText('copySnapshotId', copy.copySnapshotId),
      sourceSnapshotId: requireText('sourceSnapshotId', copy.sourceSnapshotId),
      volume: requireText('volume', copy.volume),
      region: requireText('region', copy.region),
      connection: copy.connection,
      state: copy.state ?? 'pending',
      encrypted: copy.encrypted,
      kmsKeyId: copy.kmsKeyId,
      incrementalOf: copy.incrementalOf,
      message: null,
      createdAt: new Date(at),
      completedAt: copy.state === 'completed' ? new Date(at) : null,
    };
    if (this.#rows.has(row.copySnapshotId)) throw new SnaplineError(ErrorCodes.CONFLICT, `copy ${row.copySnapshotId} is already recorded`);
    this.#rows.set(row.copySnapshotId, row);
    return copyOfCopy(row);
  }

  get(copySnapshotId: string): CopyRecord | undefined {
    const row = this.#rows.get(copySnapshotId);
    return row && copyOfCopy(row);
  }

  ofSnapshot(sourceSnapshotId: string): CopyRecord[] {
    return this.#live((c) => c.sourceSnapshotId === sourceSnapshotId);
  }

  list(volume?: string): CopyRecord[] {
    return this.#live((c) => volume === undefined || c.volume === volume);
  }

  /** `completed` stamps completedAt; any other state keeps the one it had. */
  setState(copySnapshotId: string, state: CopyState, message: string | null = null, at: Date = new Date()): CopyRecord {
    const row = this.#rows.get(copySnapshotId);
    if (row === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `no copy ${copySnapshotId} is recorded`);
    Object.assign(row, { state, message, completedAt: state === 'completed' ? new Date(at) : row.completedAt });
    return copyOfCopy(row);
  }

  #live(wanted: (c: CopyRecord) => boolean): CopyRecord[] {
    return [...this.#rows.values()]
      .filter((c) => c.state !== 'deleted' && wanted(c))
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.copySnapshotId < b.copySnapshotId ? -1 : a.copySnapshotId > b.copySnapshotId ? 1 : 0))
      .map(copyOfCopy);
  }
}

function copyOfDrill(row: DrillRecord): DrillRecord {
  return { ...row, startedAt: new Date(row.startedAt), finishedAt: new Date(row.finishedAt) };
}

/** Drills in the order recorded. */
class MemoryDrills implements DrillRecords {
  readonly #rows: DrillRecord[] = [];

  record(drill: NewDrill): DrillRecord {
    requireText('volume', drill.volume);
    requireText('snapshot id', drill.snapshotId);
    const row = copyOfDrill({ ...drill, id: this.#rows.length + 1 });
    this.#rows.push(row);
    return copyOfDrill(row);
  }

  /** The newest drill of each volume, by volume name. */
  lastPerVolume(): DrillRecord[] {
    const last = new Map(this.#rows.map((d) => [d.volume, d]));
    return [...last.values()].sort((a, b) => (a.volume < b.volume ? -1 : a.volume > b.volume ? 1 : 0)).map(copyOfDrill);
  }

  ofVolume(volume: string): DrillRecord[] {
    return this.#rows.filter((d) => d.volume === volume).map(copyOfDrill);
  }
}

function copyOfEntry(entry: RunEntry): RunEntry {
  return { ...entry, startedAt: new Date(entry.startedAt), finishedAt: new Date(entry.finishedAt) };
}

/** The run history, oldest first by start, then as recorded (no stores: every entry is listed). */
class MemoryHistory implements RunLog {
  readonly #entries: RunEntry[] = [];

  recordRun(entry: RunEntry): void {
    this.#entries.push(checkedRunEntry(entry));
  }

  listRuns(filter: { volume?: string; operation?: RunEntry['operation'] } = {}): RunEntry[] {
    return this.#entries
      .filter((e) => (filter.volume === undefined || e.volume === filter.volume) && (filter.operation === undefined || e.operation === filter.operation))
      .map(copyOfEntry);
  }
}
