import { resolve } from 'node:path';
import type { CopyCatalog, IndexPorts, DrillRecords } from '../core/index-ports.js';
import type { RunLog } from '../core/run-log.js';
import { IndexAccess } from './access.js';
import { ArchiveCatalogStore } from './archives.js';
import { BlockMapStore } from './block-maps.js';
import { SnapshotCopies } from './copies.js';
import { DrillRows } from './drills.js';
import { findProblems } from './check.js';
import { EcsJobsStore } from './ecs-jobs.js';
import { RunRows } from './history.js';
import { LineageStore } from './lineage.js';
import { IndexLocks } from './locks.js';
import { openIndexDatabase } from './open.js';
import { RunStore } from './runs.js';
import { SnapshotRows } from './snapshot-rows.js';
import { indexErrorOf } from './sqlite-errors.js';
import { type StoreRef, VolumeStores } from './stores.js';
import { TargetStore } from './targets.js';
import { TrackerHistory } from './trackers.js';
import { requireText } from './validate.js';

export type { BeginRunInput, BlockRange, ImportSnapshotInput } from '../core/index-ports.js';

export interface StorageStats {
  /** Size of the database (page count x page size, WAL included, as after a checkpoint). */
  fileBytes: number;
  /** Rows in the committed maps and the run journal. */
  blockRows: number;
}

/**
 * The SQLite block index, one file holding the engine's index ports
 * (src/core/index-ports.ts) as sub-stores: `lineage` (volumes, snapshots
 * with their lineage and state), `runs` (the journal of runs), `maps`
 * (per-snapshot block digests), `targets` (restore targets), `archives`,
 * `ecsJobs`, `locks` (advisory locks), `trackers` (change trackers),
 * `copies` (in other Regions), `drills` and `history` (the run history).
 * Each sub-store maps SQLite's errors
 * and opens its own transactions.
 *
 * Storage: a committed snapshot stores only the blocks written in it; its
 * effective map is derived along its base chain (snapshot -> base -> ...),
 * newest digest winning. An open run's blocks live in a separate journal and
 * are copied into the maps, in ascending order, when the run commits: nothing
 * claims a snapshot before AWS says it is completed, and committed maps stay
 * densely packed whatever order blocks were acknowledged in.
 *
 * Durability: WAL with synchronous NORMAL for recordBlocks (a batch lost to a
 * power cut is uploaded again on resume; a process crash loses nothing); every
 * state change (beginRun, markCompleting, commitRun, abandonRun, markDeleted,
 * importSnapshot, targets.set) runs with synchronous FULL, which syncs the WAL
 * and with it every earlier batch.
 *
 * One object per process and thread; several processes may share the file
 * (writers wait up to 10 s for each other, then CONFLICT).
 */
export class BlockIndex implements IndexPorts {
  readonly path: string;
  readonly lineage: LineageStore;
  readonly runs: RunStore;
  readonly maps: BlockMapStore;
  readonly targets: TargetStore;
  readonly archives: ArchiveCatalogStore;
  readonly ecsJobs: EcsJobsStore;
  readonly locks: IndexLocks;
  readonly trackers: TrackerHistory;
  readonly copies: CopyCatalog;
  readonly drills: DrillRecords;
  readonly history: RunLog;
  readonly #access: IndexAccess;
  readonly #rows: SnapshotRows;
  readonly #stores: VolumeStores;

  private constructor(path: string, access: IndexAccess) {
    this.path = path;
    this.#access = access;
    this.#rows = new SnapshotRows(access);
    this.#stores = new VolumeStores(access.db);
    this.lineage = new LineageStore(access, this.#rows, this.#stores);
    this.runs = new RunStore(access, this.#rows, this.#stores);
    this.maps = new BlockMapStore(access, this.#rows);
    this.targets = new TargetStore(access);
    this.archives = new ArchiveCatalogStore(access);
    this.ecsJobs = new EcsJobsStore(access);
    this.locks = new IndexLocks(access);
    this.trackers = new TrackerHistory(access.db, path);
    const copies = new SnapshotCopies(access.db, (fn) => access.run(fn));
    this.copies = {
      record: (copy, at) => access.durably(() => copies.record(copy, at)),
      get: (copySnapshotId) => copies.get(copySnapshotId),
      ofSnapshot: (sourceSnapshotId) => copies.ofSnapshot(sourceSnapshotId),
      list: (volume) => copies.list(volume),
      setState: (copySnapshotId, state, message, at) => access.durably(() => copies.setState(copySnapshotId, state, message, at)),
    };
    const drills = new DrillRows(access.db);
    this.drills = {
      record: (drill) => access.durably(() => drills.record(drill)),
      lastPerVolume: () => access.run(() => drills.lastPerVolume()),
      ofVolume: (volume) => access.run(() => drills.ofVolume(volume)),
    };
    const history = new RunRows(access.db);
    this.history = {
      recordRun: (entry) => access.durably(() => history.record(entry, this.#stores.bound)),
      listRuns: (filter = {}) => access.run(() => history.list(filter, this.#stores.bound)),
    };
  }

  /**
   * Opens or creates the index at `path` (file 0600, missing parent
   * directories 0700). Refuses with INDEX_UNUSABLE, naming the file, one that
   * is not a snapline index, is damaged, or has a newer schema version;
   * migrates an older one.
   */
  static open(path: string): BlockIndex {
    const absolute = resolve(requireText('index path', path));
    const db = openIndexDatabase(absolute);
    try {
      return new BlockIndex(absolute, new IndexAccess(absolute, db));
    } catch (err) {
      db.close();
      throw indexErrorOf(err, absolute);
    }
  }

  /** Releases this object's locks and closes the file. Idempotent. */
  close(): void {
    if (this.#access.closed) return;
    try {
      this.locks.releaseAll();
    } finally {
      this.#access.close();
    }
  }

  // ---- the store -----------------------------------------------------------

  /**
   * Binds the index to the store the command reaches (an AWS account and
   * Region, or a local endpoint's data; once per object). From then on a
   * volume is recorded in this store when first written (lineage.ensureVolume);
   * naming a volume recorded in another store (by name, or by one of its
   * snapshots) throws STORE_MISMATCH before anything is read or written;
   * lineage.listVolumes() and listSnapshots() leave such volumes out, and throw
   * STORE_MISMATCH when every volume of the index lives elsewhere. Unbound,
   * the index works on every volume.
   */
  bindStore(store: StoreRef): void {
    this.#access.run(() => this.#stores.bind(store));
  }

  /** The store recorded for `volume`; undefined when none is (unknown volume, or never written by a bound index). */
  volumeStore(volume: string): StoreRef | undefined {
    return this.#access.run(() => this.#stores.storeOf(volume));
  }

  // ---- maintenance ---------------------------------------------------------

  /**
   * Full check for `snapline index check`: SQLite's integrity_check and
   * foreign_key_check, then the domain rules (base chains exist and end,
   * states agree with stored rows, rows belong to known snapshots, digests
   * are 32 bytes, block indexes fit the volume, at most one open run per
   * volume, every map matches its checksum). Reads the whole file. Returns
   * the problems found; empty when sound.
   */
  check(): string[] {
    return this.#access.run(() => findProblems(this.#access.db, this.#rows.maps));
  }

  /** For the bench: size of the database and number of stored block rows. */
  storageStats(): StorageStats {
    return this.#access.run(() => {
      const pageCount = this.#access.db.pragma('page_count', { simple: true }) as number;
      const pageSize = this.#access.db.pragma('page_size', { simple: true }) as number;
      return { fileBytes: pageCount * pageSize, blockRows: this.#rows.sql.blockRows.get() as number };
    });
  }
}
