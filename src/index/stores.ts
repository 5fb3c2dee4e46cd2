/**
 * The store each volume lives in (schema migration 4): an AWS account and
 * Region, or a local endpoint's data. Once the index is bound to the store
 * a command reaches, naming a volume of another store is refused, and the
 * lists leave such volumes out. Its callers (BlockIndex, the lineage and
 * the runs) wrap each method in their error mapping and transactions; the
 * statements are prepared once.
 */
import type { Database, Statement } from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';

/** A store as the index records it. */
export interface StoreRef {
  /** Stable key: "aws:ACCOUNT:REGION", "snapline:STOREID". */
  id: string;
  /** The store in words, for messages. */
  label: string;
}

export class VolumeStores {
  readonly #get: Statement;
  readonly #all: Statement;
  readonly #insert: Statement;
  #bound: StoreRef | undefined;

  constructor(db: Database) {
    this.#get = db.prepare('SELECT store AS id, label FROM volume_stores WHERE volume = ?');
    this.#all = db.prepare('SELECT v.name AS volume, s.store AS id, s.label FROM volumes v LEFT JOIN volume_stores s ON s.volume = v.name ORDER BY v.name');
    this.#insert = db.prepare('INSERT INTO volume_stores (volume, store, label) VALUES (?, ?, ?)');
  }

  get bound(): StoreRef | undefined {
    return this.#bound;
  }

  bind(store: StoreRef): void {
    if (this.#bound !== undefined && this.#bound.id !== store.id) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `the index is bound to ${this.#bound.label} already, not to ${store.label}`);
    }
    this.#bound = { id: store.id, label: store.label };
  }

  /** Where `volume` lives, as recorded; undefined for a volume not recorded yet (unknown, or from before migration 4). */
  storeOf(volume: string): StoreRef | undefined {
    return this.#get.get(volume) as StoreRef | undefined;
  }

  /** STORE_MISMATCH when the index is bound and `volume` is recorded in another store. */
  check(volume: string): void {
    const bound = this.#bound;
    if (bound === undefined) return;
    const recorded = this.storeOf(volume);
    if (recorded !== undefined && recorded.id !== bound.id) throw mismatch(`volume "${volume}" lives in ${recorded.label}, not in ${bound.label}, the store this command reached`, { volume, recorded, reached: bound });
  }

  /** check(), then records the bound store for a volume that has none yet. Call in the transaction that creates or updates the volume. */
  claim(volume: string): void {
    this.check(volume);
    if (this.#bound !== undefined && this.storeOf(volume) === undefined) this.#insert.run(volume, this.#bound.id, this.#bound.label);
  }

  /**
   * The names of the volumes a bound index shows: those of its store and
   * those not recorded yet; every volume when unbound. STORE_MISMATCH when
   * every volume of the index lives in another store.
   */
  shown(): Set<string> {
    const rows = this.#all.all() as Array<{ volume: string; id: string | null; label: string | null }>;
    const bound = this.#bound;
    const here = rows.filter((row) => bound === undefined || row.id === null || row.id === bound.id);
    if (bound !== undefined && rows.length > 0 && here.length === 0) {
      const elsewhere = [...new Set(rows.map((row) => row.label!))];
      const volumes = rows.length === 1 ? `its volume "${rows[0]!.volume}" lives` : `its ${rows.length} volumes live`;
      throw mismatch(`the index holds no volume of ${bound.label}, the store this command reached: ${volumes} in ${elsewhere.join('; ')}`, {
        recorded: elsewhere,
        reached: bound,
      });
    }
    return new Set(here.map((row) => row.volume));
  }
}

function mismatch(message: string, details: Record<string, unknown>): SnaplineError {
  return new SnaplineError(ErrorCodes.STORE_MISMATCH, message, {
    hint: 'reach the store the index expects (a local endpoint: snapline serve --data-dir on its data, or its --endpoint-url; AWS: that account\'s credentials and --region), or give this store an index of its own (--index)',
    details,
  });
}
