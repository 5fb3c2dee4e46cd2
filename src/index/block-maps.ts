/** The block maps of committed snapshots (BlockMaps), derived along their base chains. */
import type { BlockMaps, BlockRange } from '../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { chainDifference, chainEntries, keyChecksum } from './maps.js';
import type { BlockEntry } from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import type { SnapshotRows } from './snapshot-rows.js';
import { requireInteger } from './validate.js';

export class BlockMapStore implements BlockMaps {
  readonly #access: IndexAccess;
  readonly #rows: SnapshotRows;

  constructor(access: IndexAccess, rows: SnapshotRows) {
    this.#access = access;
    this.#rows = rows;
  }

  /**
   * The effective map of a completed snapshot (of a pending or completing
   * one: its base's) over [fromBlock, toBlock): the newest digest of each
   * block along the base chain, ascending; blocks never written are absent.
   * Streams chunk by chunk (memory independent of the volume size); the
   * digests are views of a chunk buffer, copy one to keep it. CONFLICT if a
   * map is rewritten (fold, import) during the scan.
   */
  blockMap(snapshotId: string, range: BlockRange = {}): IterableIterator<BlockEntry> {
    const from = requireInteger('fromBlock', range.fromBlock ?? 0, 0, BLOCK_KEY_SPAN);
    const to = requireInteger('toBlock', range.toBlock ?? BLOCK_KEY_SPAN, from, BLOCK_KEY_SPAN);
    return this.#access.run(() => {
      const keys = this.#rows.mapKeysOf(this.#rows.snapshotRow(snapshotId));
      return chainEntries(this.#rows.maps, keys, from, to, this.#rows.mapsGuard());
    });
  }

  /**
   * Checks that the map blockMap(snapshotId) reads is the one committed:
   * every map along the base chain matches the checksum stored with it.
   * Throws INDEX_UNUSABLE naming the snapshot whose rows were altered or
   * lost. Reads every row of those maps; a backup checks its base this way
   * before trusting it (a lost row would read as a block never written).
   */
  verifyMap(snapshotId: string): void {
    this.#access.run(() => {
      for (const key of this.#rows.mapKeysOf(this.#rows.snapshotRow(snapshotId))) {
        const stored = this.#rows.sql.mapChecksum.get(key) as { snapshot_id: string; map_checksum: Buffer | null } | undefined;
        if (stored?.map_checksum && keyChecksum(this.#rows.maps, key).equals(stored.map_checksum)) continue;
        const owner = stored?.snapshot_id ?? `map ${key}`;
        throw new SnaplineError(ErrorCodes.INDEX_UNUSABLE, `the index ${this.#access.path} is damaged: the block map of ${owner} does not match its checksum`, {
          hint: 'run `snapline index check`; move the file away and learn the snapshot again with `snapline index rebuild`',
          details: { indexPath: this.#access.path, snapshotId: owner },
        });
      }
    });
  }

  /** Block indexes whose digest differs between the maps of `a` and `b` (present in one only counts), ascending. */
  diffMaps(a: string, b: string): IterableIterator<number> {
    return this.#access.run(() => {
      const keysA = this.#rows.mapKeysOf(this.#rows.snapshotRow(a));
      const keysB = this.#rows.mapKeysOf(this.#rows.snapshotRow(b));
      return chainDifference(this.#rows.maps, keysA, keysB, this.#rows.mapsGuard());
    });
  }
}
