import Database from 'better-sqlite3';
import { ARCHIVE_SCHEMA } from './archive-schema.js';
import type { BlobLocation } from './packs.js';
import { VOLUME_SCHEMA } from './volume-schema.js';

export type SnapshotStatus = 'pending' | 'completed' | 'error';

export interface Tag {
  Key: string;
  Value: string;
}

/** One snapshot as the catalog keeps it. `id` is internal; `snapshotId` is the AWS id. */
export interface SnapshotRecord {
  id: number;
  snapshotId: string;
  parent: number | null;
  parentSnapshotId: string | null;
  /** Internal id of the first snapshot of the lineage (itself when it has no parent). */
  root: number;
  volumeSize: number;
  status: SnapshotStatus;
  statusMessage: string | null;
  /** Epoch milliseconds. */
  startTime: number;
  timeoutMinutes: number;
  description: string | null;
  encrypted: boolean;
  kmsKeyArn: string | null;
  tags: Tag[];
  clientToken: string | null;
  /** Canonical form of the StartSnapshot arguments, for ClientToken idempotency. */
  fingerprint: string | null;
  /** Set once CompleteSnapshot was accepted: when the snapshot leaves pending, and how. */
  completesAt: number | null;
  completionOutcome: 'completed' | 'error' | null;
  completionMessage: string | null;
  progress: number | null;
  deletedAt: number | null;
  /** The Region the snapshot lives in: it is seen and read only through requests signed for that Region. */
  region: string;
  /** For a copy made by EC2 CopySnapshot: the AWS id of the snapshot it copies. */
  copySource: string | null;
}

export type NewSnapshot = Omit<SnapshotRecord, 'id' | 'parentSnapshotId' | 'root' | 'completesAt' | 'completionOutcome' | 'completionMessage' | 'deletedAt' | 'statusMessage' | 'progress' | 'status'>;

interface SnapshotRow {
  id: number;
  snapshot_id: string;
  parent: number | null;
  parent_snapshot_id: string | null;
  root: number;
  volume_size: number;
  status: SnapshotStatus;
  status_message: string | null;
  start_time: number;
  timeout_minutes: number;
  description: string | null;
  encrypted: number;
  kms_key_arn: string | null;
  tags: string;
  client_token: string | null;
  fingerprint: string | null;
  completes_at: number | null;
  completion_outcome: 'completed' | 'error' | null;
  completion_message: string | null;
  progress: number | null;
  deleted_at: number | null;
  region: string;
  copy_source: string | null;
}

/** A block of a snapshot and where its bytes are. */
export interface StoredBlock extends BlobLocation {
  digest: Buffer;
}

/** One row of ListChangedBlocks: which of the two snapshots hold the block. */
export interface ChangedRow {
  index: number;
  inFirst: boolean;
  inSecond: boolean;
}

/** Snapshot rows with their parent's AWS id. */
const SELECT_SNAPSHOT = 'SELECT s.*, p.snapshot_id AS parent_snapshot_id FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent';

const SCHEMA = `
CREATE TABLE snapshots (
  id INTEGER PRIMARY KEY,
  snapshot_id TEXT NOT NULL UNIQUE,
  parent INTEGER REFERENCES snapshots(id),
  root INTEGER NOT NULL,
  volume_size INTEGER NOT NULL,
  status TEXT NOT NULL,
  status_message TEXT,
  start_time INTEGER NOT NULL,
  timeout_minutes INTEGER NOT NULL,
  description TEXT,
  encrypted INTEGER NOT NULL,
  kms_key_arn TEXT,
  tags TEXT NOT NULL,
  client_token TEXT UNIQUE,
  fingerprint TEXT,
  completes_at INTEGER,
  completion_outcome TEXT,
  completion_message TEXT,
  progress INTEGER,
  deleted_at INTEGER
);
CREATE INDEX snapshots_pending ON snapshots(status) WHERE status = 'pending';
-- Block bytes, stored once per distinct content.
CREATE TABLE blobs (
  id INTEGER PRIMARY KEY,
  digest BLOB NOT NULL UNIQUE,
  pack INTEGER NOT NULL,
  offset INTEGER NOT NULL
);
-- Every block a snapshot holds, inherited or written. origin is the snapshot
-- whose PutSnapshotBlock wrote this version of the block.
CREATE TABLE blocks (
  snapshot INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  blob INTEGER NOT NULL,
  origin INTEGER NOT NULL,
  PRIMARY KEY (snapshot, idx)
) WITHOUT ROWID;
`;

/** Snapshots belong to a Region (the ones made before this step to us-east-1, the endpoint's default); copies name their source. */
const REGION_SCHEMA = `
ALTER TABLE snapshots ADD COLUMN region TEXT NOT NULL DEFAULT 'us-east-1';
ALTER TABLE snapshots ADD COLUMN copy_source TEXT;
`;

/**
 * StartSnapshot client tokens are per Region: the column holds "REGION TOKEN"
 * (neither has white space), so that one token may start a snapshot in each Region.
 */
const CLIENT_TOKEN_REGION_SCHEMA = `
UPDATE snapshots SET client_token = region || ' ' || client_token WHERE client_token IS NOT NULL;
`;

/** Schema steps in order; user_version counts the steps applied. */
const MIGRATIONS = [SCHEMA, ARCHIVE_SCHEMA, REGION_SCHEMA, VOLUME_SCHEMA, CLIENT_TOKEN_REGION_SCHEMA];
const SCHEMA_VERSION = MIGRATIONS.length;

/**
 * The endpoint's metadata in SQLite (WAL): snapshots, blobs and block maps.
 * Statements are prepared once. Every method is synchronous and atomic.
 * A child snapshot gets a copy of its parent's block map when it starts, so
 * every read is one lookup and deleting a parent never touches its children.
 */
export class Catalog {
  readonly #db: Database.Database;
  readonly #s;
  readonly #putBlockTx: (snapshot: number, index: number, digest: Buffer, stored: BlobLocation | number) => void;

  constructor(file: string) {
    this.#db = new Database(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma('foreign_keys = ON');
    this.#migrate();
    const db = this.#db;
    this.#s = {
      insertSnapshot: db.prepare(
        `INSERT INTO snapshots (snapshot_id, parent, root, volume_size, status, start_time, timeout_minutes, description,
           encrypted, kms_key_arn, tags, client_token, fingerprint, region, copy_source)
         VALUES (@snapshotId, @parent, 0, @volumeSize, 'pending', @startTime, @timeoutMinutes, @description,
           @encrypted, @kmsKeyArn, @tags, @clientToken, @fingerprint, @region, @copySource)`,
      ),
      setRoot: db.prepare('UPDATE snapshots SET root = ? WHERE id = ?'),
      bySnapshotId: db.prepare<[string], SnapshotRow>(`${SELECT_SNAPSHOT} WHERE s.snapshot_id = ?`),
      byId: db.prepare<[number], SnapshotRow>(`${SELECT_SNAPSHOT} WHERE s.id = ?`),
      byClientToken: db.prepare<[string], SnapshotRow>(`${SELECT_SNAPSHOT} WHERE s.client_token = ?`),
      pending: db.prepare<[], SnapshotRow>(`${SELECT_SNAPSHOT} WHERE s.status = 'pending' AND s.deleted_at IS NULL`),
      visible: db.prepare<[], SnapshotRow>(`${SELECT_SNAPSHOT} WHERE s.deleted_at IS NULL ORDER BY s.id`),
      countPending: db.prepare<[string], { n: number }>(`SELECT count(*) AS n FROM snapshots WHERE status = 'pending' AND deleted_at IS NULL AND region = ?`),
      countVisible: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM snapshots WHERE deleted_at IS NULL AND region = ?'),
      copyBlocks: db.prepare('INSERT INTO blocks (snapshot, idx, blob, origin) SELECT ?, idx, blob, origin FROM blocks WHERE snapshot = ?'),
      // A copy holds its source's blocks; those the previous copy holds with the same bytes keep that copy's origin, the rest are the copy's own.
      copyOfBlocks: db.prepare<{ copy: number; source: number; previous: number | null }>(
        `INSERT INTO blocks (snapshot, idx, blob, origin)
         SELECT @copy, s.idx, s.blob, coalesce((SELECT p.origin FROM blocks p WHERE p.snapshot = @previous AND p.idx = s.idx AND p.blob = s.blob), @copy)
         FROM blocks s WHERE s.snapshot = @source`,
      ),
      blobByDigest: db.prepare<[Buffer], { id: number }>('SELECT id FROM blobs WHERE digest = ?'),
      insertBlob: db.prepare<[Buffer, number, number]>('INSERT INTO blobs (digest, pack, offset) VALUES (?, ?, ?)'),
      putBlock: db.prepare<[number, number, number, number]>('INSERT OR REPLACE INTO blocks (snapshot, idx, blob, origin) VALUES (?, ?, ?, ?)'),
      block: db.prepare<[number, number], StoredBlock>(
        'SELECT b.pack AS pack, b.offset AS offset, b.digest AS digest FROM blocks k JOIN blobs b ON b.id = k.blob WHERE k.snapshot = ? AND k.idx = ?',
      ),
      hasBlock: db.prepare<[number, number], { one: number }>('SELECT 1 AS one FROM blocks WHERE snapshot = ? AND idx = ?'),
      listBlocks: db.prepare<[number, number, number], { idx: number }>(
        'SELECT idx FROM blocks WHERE snapshot = ? AND idx >= ? ORDER BY idx LIMIT ?',
      ),
      writtenDigests: db.prepare<[number, number], { idx: number; digest: Buffer }>(
        'SELECT k.idx AS idx, b.digest AS digest FROM blocks k JOIN blobs b ON b.id = k.blob WHERE k.snapshot = ? AND k.origin = ? ORDER BY k.idx',
      ),
      changed: db.prepare<{ first: number; second: number; firstChain: string; secondChain: string; start: number; limit: number }, { idx: number }>(
        `SELECT idx FROM blocks WHERE snapshot = @first AND idx >= @start AND origin IN (SELECT value FROM json_each(@firstChain))
         UNION
         SELECT idx FROM blocks WHERE snapshot = @second AND idx >= @start AND origin IN (SELECT value FROM json_each(@secondChain))
         ORDER BY idx LIMIT @limit`,
      ),
      setCompletion: db.prepare<[number, string, string | null, number]>(
        'UPDATE snapshots SET completes_at = ?, completion_outcome = ?, completion_message = ? WHERE id = ?',
      ),
      setStatus: db.prepare<[string, string | null, number | null, number]>(
        'UPDATE snapshots SET status = ?, status_message = ?, progress = coalesce(?, progress) WHERE id = ?',
      ),
      setTags: db.prepare<[string, number]>('UPDATE snapshots SET tags = ? WHERE id = ?'),
      markDeleted: db.prepare<[number, number]>('UPDATE snapshots SET deleted_at = ? WHERE id = ?'),
      deleteBlocks: db.prepare<[number]>('DELETE FROM blocks WHERE snapshot = ?'),
    };
    this.#putBlockTx = db.transaction((snapshot: number, index: number, digest: Buffer, stored: BlobLocation | number) => {
      // Another write of the same bytes may have been recorded meanwhile: keep the first.
      const blob =
        typeof stored === 'number'
          ? stored
          : (this.#s.blobByDigest.get(digest)?.id ?? Number(this.#s.insertBlob.run(digest, stored.pack, stored.offset).lastInsertRowid));
      this.#s.putBlock.run(snapshot, index, blob, snapshot);
    });
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    if (version === SCHEMA_VERSION) return;
    if (version > SCHEMA_VERSION) throw new Error(`endpoint catalog has schema version ${version}, this build knows ${SCHEMA_VERSION}`);
    this.#db.transaction(() => {
      for (const step of MIGRATIONS.slice(version)) this.#db.exec(step);
      this.#db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  /** Inserts a pending snapshot and, with a parent, copies the parent's block map. One transaction. */
  createSnapshot(snapshot: NewSnapshot): SnapshotRecord {
    return this.#db.transaction(() => {
      const info = this.#s.insertSnapshot.run({
        ...snapshot,
        clientToken: snapshot.clientToken === null ? null : clientTokenKey(snapshot.region, snapshot.clientToken),
        encrypted: snapshot.encrypted ? 1 : 0,
        tags: JSON.stringify(snapshot.tags),
      });
      const id = Number(info.lastInsertRowid);
      const root = snapshot.parent === null ? id : this.#row(snapshot.parent).root;
      this.#s.setRoot.run(root, id);
      if (snapshot.parent !== null) this.#s.copyBlocks.run(id, snapshot.parent);
      return this.#record(this.#row(id));
    })();
  }

  /**
   * Inserts a pending copy of `source` (internal id) whose completion is
   * already decided (`completesAt`, `outcome`, `message`). With `previous`
   * (an earlier copy of the lineage in the same Region) the copy is its
   * child: only the blocks that differ from it are the copy's own, as in an
   * incremental snapshot. One transaction.
   */
  createCopy(copy: NewSnapshot, source: number, completesAt: number, outcome: 'completed' | 'error', message: string | null): SnapshotRecord {
    return this.#db.transaction(() => {
      const info = this.#s.insertSnapshot.run({ ...copy, encrypted: copy.encrypted ? 1 : 0, tags: JSON.stringify(copy.tags) });
      const id = Number(info.lastInsertRowid);
      this.#s.setRoot.run(copy.parent === null ? id : this.#row(copy.parent).root, id);
      this.#s.copyOfBlocks.run({ copy: id, source, previous: copy.parent });
      this.#s.setCompletion.run(completesAt, outcome, message, id);
      return this.#record(this.#row(id));
    })();
  }

  bySnapshotId(snapshotId: string): SnapshotRecord | undefined {
    const row = this.#s.bySnapshotId.get(snapshotId);
    return row === undefined ? undefined : this.#record(row);
  }

  byId(id: number): SnapshotRecord | undefined {
    const row = this.#s.byId.get(id);
    return row === undefined ? undefined : this.#record(row);
  }

  /** The snapshot StartSnapshot made with this client token in this Region. */
  byClientToken(region: string, token: string): SnapshotRecord | undefined {
    const row = this.#s.byClientToken.get(clientTokenKey(region, token));
    return row === undefined ? undefined : this.#record(row);
  }

  /** Pending snapshots not deleted. */
  pendingSnapshots(): SnapshotRecord[] {
    return this.#s.pending.all().map((row) => this.#record(row));
  }

  /** Every snapshot not deleted, oldest first. */
  visibleSnapshots(): SnapshotRecord[] {
    return this.#s.visible.all().map((row) => this.#record(row));
  }

  /** Pending snapshots of a Region (quotas are per Region). */
  countPending(region: string): number {
    return this.#s.countPending.get(region)!.n;
  }

  /** Snapshots of a Region not deleted. */
  countVisible(region: string): number {
    return this.#s.countVisible.get(region)!.n;
  }

  blobByDigest(digest: Buffer): number | undefined {
    return this.#s.blobByDigest.get(digest)?.id;
  }

  /**
   * Records stored bytes (already on disk, or an existing blob id) and points
   * the block at them, written by this snapshot. One transaction.
   */
  putBlock(snapshot: number, index: number, digest: Buffer, stored: BlobLocation | number): void {
    this.#putBlockTx(snapshot, index, digest, stored);
  }

  block(snapshot: number, index: number): StoredBlock | undefined {
    return this.#s.block.get(snapshot, index);
  }

  hasBlock(snapshot: number, index: number): boolean {
    return this.#s.hasBlock.get(snapshot, index) !== undefined;
  }

  /** Block indexes of a snapshot from `start` up, ascending, at most `limit`. */
  listBlocks(snapshot: number, start: number, limit: number): number[] {
    return this.#s.listBlocks.all(snapshot, start, limit).map((row) => row.idx);
  }

  /** (index, digest) of every block written in this snapshot itself, ascending. */
  *writtenDigests(snapshot: number): IterableIterator<{ idx: number; digest: Buffer }> {
    yield* this.#s.writtenDigests.iterate(snapshot, snapshot);
  }

  /**
   * Indexes that differ between two snapshots of one lineage, from `start`
   * up, ascending, at most `limit`. A block differs when it was written in a
   * snapshot on the path from the common ancestor to either side: the
   * chains list those snapshots (internal ids), excluding the ancestor.
   */
  changedBlocks(first: number, second: number, firstChain: number[], secondChain: number[], start: number, limit: number): ChangedRow[] {
    const rows = this.#s.changed.all({
      first,
      second,
      firstChain: JSON.stringify(firstChain),
      secondChain: JSON.stringify(secondChain),
      start,
      limit,
    });
    return rows.map((row) => ({ index: row.idx, inFirst: this.hasBlock(first, row.idx), inSecond: this.hasBlock(second, row.idx) }));
  }

  setCompletion(id: number, completesAt: number, outcome: 'completed' | 'error', message: string | null): void {
    this.#s.setCompletion.run(completesAt, outcome, message, id);
  }

  setStatus(id: number, status: SnapshotStatus, message: string | null, progress: number | null): void {
    this.#s.setStatus.run(status, message, progress, id);
  }

  setTags(id: number, tags: Tag[]): void {
    this.#s.setTags.run(JSON.stringify(tags), id);
  }

  /** Hides the snapshot and drops its block map; the bytes stay for every other snapshot holding them. */
  deleteSnapshot(id: number, at: number): void {
    this.#db.transaction(() => {
      this.#s.markDeleted.run(at, id);
      this.#s.deleteBlocks.run(id);
    })();
  }

  /** The open database, for the stores that keep their tables in the same file (S3, Glacier, EC2 volumes). */
  get database(): Database.Database {
    return this.#db;
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }

  #row(id: number): SnapshotRow {
    const row = this.#s.byId.get(id);
    if (row === undefined) throw new Error(`snapshot #${id} vanished from the catalog`);
    return row;
  }

  #record(row: SnapshotRow): SnapshotRecord {
    return {
      id: row.id,
      snapshotId: row.snapshot_id,
      parent: row.parent,
      parentSnapshotId: row.parent_snapshot_id,
      root: row.root,
      volumeSize: row.volume_size,
      status: row.status,
      statusMessage: row.status_message,
      startTime: row.start_time,
      timeoutMinutes: row.timeout_minutes,
      description: row.description,
      encrypted: row.encrypted === 1,
      kmsKeyArn: row.kms_key_arn,
      tags: JSON.parse(row.tags) as Tag[],
      clientToken: row.client_token === null ? null : row.client_token.slice(row.client_token.indexOf(' ') + 1),
      fingerprint: row.fingerprint,
      completesAt: row.completes_at,
      completionOutcome: row.completion_outcome,
      completionMessage: row.completion_message,
      progress: row.progress,
      deletedAt: row.deleted_at,
      region: row.region,
      copySource: row.copy_source,
    };
  }
}

/** How a StartSnapshot client token is kept: tokens are per Region. */
function clientTokenKey(region: string, token: string): string {
  return `${region} ${token}`;
}
