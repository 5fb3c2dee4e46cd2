/** The full consistency check behind `snapline index check`. Reads the whole file; rarely run, so its statements are prepared per call. */
import type { Database, Statement } from 'better-sqlite3';
import { BLOCKS_PER_GIB } from '../core/constants.js';
import { DIGEST_BYTES, type KeyedRows, keyChecksum } from './maps.js';
import { OPEN_STATES, SNAPSHOT_ROW_SQL, type SnapshotRow } from './records.js';
import { APPLICATION_ID, BLOCK_KEY_SPAN, SCHEMA_VERSION } from './schema.js';

interface MapRow {
  snapshot_id: string;
  map_key: number;
  map_checksum: Buffer | null;
  volume_size_gib: number;
}

/**
 * SQLite's integrity_check (stops here when it fails) and foreign_key_check,
 * then the domain rules: base chains exist and end, states agree with stored
 * rows, rows belong to known snapshots, digests are 32 bytes, block indexes
 * fit the volume, at most one open run per volume, every map matches its
 * checksum. Returns the problems found; empty when sound.
 */
export function findProblems(db: Database, maps: KeyedRows): string[] {
  const problems: string[] = [];
  const integrity = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
  for (const { integrity_check: line } of integrity) if (line !== 'ok') problems.push(`sqlite: ${line}`);
  if (problems.length > 0) return problems;
  for (const row of db.pragma('foreign_key_check') as Array<{ table: string; rowid: number; parent: string }>) {
    problems.push(`${row.table} row ${row.rowid} refers to a missing ${row.parent} row`);
  }
  if (db.pragma('application_id', { simple: true }) !== APPLICATION_ID) problems.push('wrong application_id');
  if (db.pragma('user_version', { simple: true }) !== SCHEMA_VERSION) problems.push('wrong schema version');
  const snapshots = db.prepare(SNAPSHOT_ROW_SQL).all() as SnapshotRow[];
  checkSnapshots(snapshots, problems);
  checkRowKeys(db, snapshots, problems);
  checkMaps(db, maps, problems);
  return problems;
}

function checkSnapshots(rows: readonly SnapshotRow[], problems: string[]): void {
  const byKey = new Map(rows.map((row) => [row.snapshot_key, row]));
  const openRuns = new Map<string, string[]>();
  for (const row of rows) {
    const id = row.snapshot_id;
    const mustHaveMap = row.state === 'completed';
    const mayHaveMap = mustHaveMap || row.state === 'deleted';
    if (mustHaveMap && row.map_key === null) problems.push(`snapshot ${id} is completed but has no block map`);
    if (!mayHaveMap && row.map_key !== null) problems.push(`snapshot ${id} is ${row.state} but has a block map`);
    if (OPEN_STATES.has(row.state)) openRuns.set(row.volume, [...(openRuns.get(row.volume) ?? []), id]);
    const seen = new Set<number>([row.snapshot_key]);
    let current = row;
    while (current.base_key !== null) {
      const base = byKey.get(current.base_key);
      if (base === undefined) {
        problems.push(`snapshot ${id}: the base of ${current.snapshot_id} is missing`);
        break;
      }
      if (seen.has(base.snapshot_key)) {
        problems.push(`snapshot ${id}: its base chain loops at ${base.snapshot_id}`);
        break;
      }
      if (row.state !== 'error' && base.map_key === null) {
        problems.push(`snapshot ${id}: ${base.snapshot_id} in its base chain has no block map`);
      }
      seen.add(base.snapshot_key);
      current = base;
    }
  }
  for (const [volume, ids] of openRuns) {
    if (ids.length > 1) problems.push(`volume ${volume} has ${ids.length} open runs: ${ids.sort().join(', ')}`);
  }
}

/** Every key holding rows belongs to a snapshot: maps to a map_key, the journal to an open run. */
function checkRowKeys(db: Database, rows: readonly SnapshotRow[], problems: string[]): void {
  const mapKeys = new Set(rows.filter((row) => row.map_key !== null).map((row) => row.map_key!));
  const runKeys = new Set(rows.filter((row) => OPEN_STATES.has(row.state)).map((row) => row.snapshot_key));
  const nextMapKey = db.prepare(`SELECT value FROM meta WHERE name = 'next_map_key'`).pluck().get() as number;
  for (const key of keysWithRows(db, 'blocks')) {
    if (!mapKeys.has(key)) problems.push(`blocks hold rows of map ${key}, which no snapshot owns`);
    if (key >= nextMapKey) problems.push(`map key ${key} is not below next_map_key ${nextMapKey}`);
  }
  for (const journal of ['run_blocks', 'run_intents']) {
    for (const key of keysWithRows(db, journal)) {
      if (!runKeys.has(key)) problems.push(`the run journal holds rows of snapshot key ${key}, which is not an open run`);
    }
  }
  for (const table of ['blocks', 'run_blocks', 'run_intents']) {
    const bad = db
      .prepare(`SELECT count(*) FROM ${table} WHERE typeof(digest) <> 'blob' OR length(digest) <> ${DIGEST_BYTES}`)
      .pluck()
      .get() as number;
    if (bad > 0) problems.push(`${table}: ${bad} digests are not ${DIGEST_BYTES} bytes`);
  }
}

/** Distinct keys present in a keyed table, by skipping from key to key. */
function* keysWithRows(db: Database, table: string): Generator<number> {
  const nextId: Statement = db.prepare(`SELECT min(id) FROM ${table} WHERE id >= ?`).pluck();
  let from = 0;
  for (;;) {
    const id = nextId.get(from) as number | null;
    if (id === null) return;
    const key = Math.floor(id / BLOCK_KEY_SPAN);
    yield key;
    from = (key + 1) * BLOCK_KEY_SPAN;
  }
}

function checkMaps(db: Database, maps: KeyedRows, problems: string[]): void {
  const rows = db
    .prepare('SELECT snapshot_id, map_key, map_checksum, volume_size_gib FROM snapshots WHERE map_key IS NOT NULL')
    .all() as MapRow[];
  const maxId = db.prepare(`SELECT max(id) FROM blocks WHERE id >= @base AND id < @base + ${BLOCK_KEY_SPAN}`).pluck();
  for (const map of rows) {
    const base = map.map_key * BLOCK_KEY_SPAN;
    const last = maxId.get({ base }) as number | null;
    if (last !== null && last - base >= map.volume_size_gib * BLOCKS_PER_GIB) {
      problems.push(`snapshot ${map.snapshot_id}: block ${last - base} lies beyond its ${map.volume_size_gib} GiB`);
    }
    try {
      const checksum = keyChecksum(maps, map.map_key);
      if (map.map_checksum === null || !checksum.equals(map.map_checksum)) {
        problems.push(`snapshot ${map.snapshot_id}: its block map does not match its checksum (altered rows)`);
      }
    } catch (err) {
      problems.push(`snapshot ${map.snapshot_id}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
