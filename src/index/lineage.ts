/** The volumes and snapshots of the index (VolumeLineage). */
import { BLOCKS_PER_GIB, GIB, MAX_VOLUME_SIZE_GIB } from '../core/constants.js';
import type { ImportSnapshotInput, VolumeLineage } from '../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { DIGEST_BYTES, keyChecksum } from './maps.js';
import { type BlockInput, OPEN_STATES, type SnapshotRecord, type SnapshotRow, type VolumeRecord, type VolumeRow, snapshotRecordOf, volumeRecordOf } from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import type { SnapshotRows } from './snapshot-rows.js';
import { isUniqueViolation } from './sqlite-errors.js';
import type { VolumeStores } from './stores.js';
import { checkedImport, requireDigest, requireInteger, requireString, requireText } from './validate.js';

export class LineageStore implements VolumeLineage {
  readonly #access: IndexAccess;
  readonly #rows: SnapshotRows;
  readonly #stores: VolumeStores;

  constructor(access: IndexAccess, rows: SnapshotRows, stores: VolumeStores) {
    this.#access = access;
    this.#rows = rows;
    this.#stores = stores;
  }

  /** Creates the volume or updates its sizeBytes and sourcePath, and records the bound store for it. Idempotent. */
  ensureVolume(v: { name: string; sourcePath: string; sizeBytes: number }): VolumeRecord {
    const name = requireText('volume name', v?.name);
    const sourcePath = requireString('sourcePath', v.sourcePath);
    const sizeBytes = requireInteger('sizeBytes', v.sizeBytes, 0, MAX_VOLUME_SIZE_GIB * GIB);
    return this.#access.run(() =>
      this.#access.db
        .transaction(() => {
          const row = this.#rows.sql.upsertVolume.get({
            name,
            source_path: sourcePath,
            size_bytes: sizeBytes,
            created_at: Date.now(),
          }) as VolumeRow;
          // A volume of another store: refused, and the upsert rolled back.
          this.#stores.claim(name);
          return volumeRecordOf(row);
        })
        .immediate(),
    );
  }

  getVolume(name: string): VolumeRecord | undefined {
    return this.#access.run(() => {
      this.#stores.check(name);
      const row = this.#rows.sql.volumeByName.get(name) as VolumeRow | undefined;
      return row === undefined ? undefined : volumeRecordOf(row);
    });
  }

  /** By name. */
  listVolumes(): VolumeRecord[] {
    return this.#access.run(() => {
      const shown = this.#stores.shown();
      return (this.#rows.sql.listVolumes.all() as VolumeRow[]).filter((row) => shown.has(row.name)).map(volumeRecordOf);
    });
  }

  getSnapshot(snapshotId: string): SnapshotRecord | undefined {
    return this.#access.run(() => {
      const row = this.#rows.sql.snapshotById.get(snapshotId) as SnapshotRow | undefined;
      if (row !== undefined) this.#stores.check(row.volume);
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /** Newest completed snapshot of the volume, by completion order (commitRun or importSnapshot). */
  headSnapshot(volume: string): SnapshotRecord | undefined {
    return this.#access.run(() => {
      this.#stores.check(volume);
      const row = this.#rows.sql.headSnapshot.get(volume) as SnapshotRow | undefined;
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /** Oldest first (by startedAt), every state. */
  listSnapshots(volume?: string): SnapshotRecord[] {
    return this.#access.run(() => {
      if (volume !== undefined) {
        this.#stores.check(volume);
        return (this.#rows.sql.listVolumeSnapshots.all(volume) as SnapshotRow[]).map(snapshotRecordOf);
      }
      const shown = this.#stores.shown();
      return (this.#rows.sql.listSnapshots.all() as SnapshotRow[]).filter((row) => shown.has(row.volume)).map(snapshotRecordOf);
    });
  }

  /** The snapshot itself, then its base, its base's base... (following baseSnapshotId). */
  baseChain(snapshotId: string): SnapshotRecord[] {
    return this.#access.run(() => this.#rows.chainRows(this.#rows.snapshotRow(snapshotId)).map(snapshotRecordOf));
  }

  /**
   * EC2 DeleteSnapshot is done: state deleted. Its map stays while another
   * snapshot overlays it; once exactly one committed snapshot does, the map is
   * folded into that one (whose base then skips it); once none does, it is
   * dropped. Every remaining snapshot's map stays derivable. An open run's
   * journal is dropped. Idempotent. Durable.
   */
  markDeleted(snapshotId: string): void {
    this.#access.durably(() => {
      const row = this.#rows.snapshotRow(snapshotId);
      if (row.state === 'deleted') return;
      if (OPEN_STATES.has(row.state)) this.#rows.dropJournal(row.snapshot_key);
      this.#rows.sql.setState.run('deleted', row.snapshot_key);
      this.#rows.settleDeleted(row.snapshot_key);
    });
  }

  /**
   * Learns a completed snapshot's full block map (index rebuild), replacing
   * any map known for it: state completed, base null, changedBlocks = the
   * blocks given, newest in completion order. The volume must exist. One
   * durable transaction; INVALID_ARGUMENT (nothing stored) on a bad block.
   */
  importSnapshot(r: ImportSnapshotInput, blocks: Iterable<BlockInput>): SnapshotRecord {
    const { snapshotId, volume, parentSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, startedAt } = checkedImport(r);
    return this.#access.durably(() => {
      this.#stores.check(volume);
      const volumeRow = this.#rows.volumeRow(volume);
      const existing = this.#rows.sql.snapshotById.get(snapshotId) as SnapshotRow | undefined;
      if (existing !== undefined) this.#rows.dropRows(existing);
      const mapKey = this.#rows.sql.nextMapKey.get() as number;
      const mapBase = mapKey * BLOCK_KEY_SPAN;
      const blockCount = volumeSizeGiB * BLOCKS_PER_GIB;
      let count = 0;
      for (const block of blocks) {
        const index = requireInteger(`block ${count} index`, block?.index, 0, blockCount - 1);
        const digest = requireDigest(`block ${index} digest`, block.digest, DIGEST_BYTES);
        try {
          this.#rows.sql.insertBlock.run(mapBase + index, digest);
        } catch (err) {
          if (!isUniqueViolation(err)) throw err;
          throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block ${index} is given twice for ${snapshotId}`);
        }
        count += 1;
      }
      const now = Date.now();
      this.#rows.sql.upsertImported.run({
        snapshot_id: snapshotId,
        volume_key: volumeRow.volume_key,
        parent_snapshot_id: parentSnapshotId,
        volume_size_gib: volumeSizeGiB,
        source_bytes: sourceBytes,
        encrypted: encrypted ? 1 : 0,
        description,
        started_at: startedAt,
        completed_at: now,
        changed_blocks: count,
        map_key: mapKey,
        map_checksum: keyChecksum(this.#rows.maps, mapKey),
      });
      if (existing?.base_key != null) this.#rows.settleDeleted(existing.base_key);
      return snapshotRecordOf(this.#rows.snapshotRow(snapshotId));
    });
  }
}
