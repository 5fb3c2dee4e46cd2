/**
 * Reading block maps: the rows of one key, a chain of overlaid keys (the
 * effective map of a snapshot), and the difference of two chains.
 *
 * Rows are read a chunk of CHUNK_SPAN block indexes at a time, one aggregate
 * query per key and chunk (the indexes as text, the digests as one blob), so a
 * scan costs a few native calls per 32,768 blocks instead of one per row, and
 * no cursor stays open between chunks: the connection stays usable while a
 * caller consumes a map (a backup records blocks while it merges).
 */
import { createHash } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { BlockEntry } from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import { indexErrorOf } from './sqlite-errors.js';

export const DIGEST_BYTES = 32;
/** Block indexes per chunk: 16 GiB of volume, about 1 MiB of digests per key. */
export const CHUNK_SPAN = 32_768;

const EMPTY = Buffer.alloc(0);
const NO_INDEXES = new Int32Array(0);

/** The rows of one key inside one chunk, ascending. */
class ChunkRows {
  count = 0;
  /** Sized on read to the rows the chunk holds (at most CHUNK_SPAN): a key of a few rows costs a few bytes, not 128 KiB. */
  indexes = NO_INDEXES;
  /** count * 32 bytes; a fresh buffer per read, so views handed out stay valid. */
  digests: Buffer = EMPTY;
}

export type KeyedTable = 'blocks' | 'run_blocks' | 'run_intents';

/** Reads the rows of one key of a keyed block table. */
export class KeyedRows {
  readonly #chunk: Statement;
  readonly #next: Statement;
  readonly #path: string;

  constructor(db: Database, table: KeyedTable, path: string) {
    this.#path = path;
    // Both aggregates see the rows in one pass in rowid order; parseIndexes
    // asserts that order, which also proves the digests line up with them.
    // better-sqlite3 binds numbers as REAL: the cast keeps the indexes integers.
    this.#chunk = db
      .prepare(
        `SELECT group_concat(id - CAST(@base AS INTEGER), ','), CAST(group_concat(digest, '') AS BLOB)
         FROM ${table} WHERE id >= @base + @lo AND id < @base + @hi`,
      )
      .raw();
    this.#next = db.prepare(`SELECT min(id) - @base FROM ${table} WHERE id >= @base + @from AND id < @base + @to`).pluck();
  }

  /** The smallest block index in [from, to) stored under `key`, if any. */
  nextIndex(key: number, from: number, to: number): number | undefined {
    try {
      const index = this.#next.get({ base: key * BLOCK_KEY_SPAN, from, to }) as number | null;
      return index ?? undefined;
    } catch (err) {
      throw indexErrorOf(err, this.#path);
    }
  }

  /** Loads the rows of `key` with index in [lo, hi) into `into`. */
  read(key: number, lo: number, hi: number, into: ChunkRows): void {
    let row: [string | null, Buffer | null];
    try {
      row = this.#chunk.get({ base: key * BLOCK_KEY_SPAN, lo, hi }) as [string | null, Buffer | null];
    } catch (err) {
      throw indexErrorOf(err, this.#path);
    }
    const [indexText, digests] = row;
    if (indexText === null || digests === null) {
      into.count = 0;
      into.digests = EMPTY;
      return;
    }
    // One index per digest; a list that disagrees ends with a count that fails the check below.
    const rows = Math.min(Math.ceil(digests.length / DIGEST_BYTES), CHUNK_SPAN);
    if (into.indexes.length < rows) into.indexes = new Int32Array(rows);
    into.count = parseIndexes(indexText, into.indexes, lo, hi);
    into.digests = digests;
    if (digests.length !== into.count * DIGEST_BYTES) {
      throw new SnaplineError(
        ErrorCodes.INDEX_UNUSABLE,
        `the index ${this.#path} holds a digest that is not ${DIGEST_BYTES} bytes (blocks ${lo}..${hi - 1})`,
        { hint: 'run `snapline index check`', details: { indexPath: this.#path } },
      );
    }
  }
}

/** Parses "i,j,k" into `out` (indexes past its length are counted, not stored); the indexes must ascend strictly inside [lo, hi). */
function parseIndexes(text: string, out: Int32Array, lo: number, hi: number): number {
  let count = 0;
  let value = 0;
  let previous = lo - 1;
  const length = text.length;
  for (let at = 0; at <= length; at += 1) {
    const code = at < length ? text.charCodeAt(at) : 44;
    if (code !== 44) {
      value = value * 10 + (code - 48);
      continue;
    }
    if (value <= previous || value >= hi) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `SQLite returned block ${value} out of order (after ${previous}, chunk end ${hi})`);
    }
    out[count] = value;
    count += 1;
    previous = value;
    value = 0;
  }
  return count;
}

/** The smallest block index in [from, to) stored under any of `keys`. */
function nextStart(rows: KeyedRows, keys: readonly number[], from: number, to: number): number | undefined {
  let start: number | undefined;
  for (const key of keys) {
    const index = rows.nextIndex(key, from, start ?? to);
    if (index !== undefined) start = index;
  }
  return start;
}

/**
 * Resolves, for each block of the chunk, which member holds its newest digest:
 * `slotMember[i]` is the position in `members` (or -1) and `slotRow[i]` the row
 * within it. `order` lists member positions newest first.
 */
function overlay(
  members: readonly ChunkRows[],
  order: readonly number[],
  lo: number,
  span: number,
  slotMember: Int32Array,
  slotRow: Int32Array,
): void {
  slotMember.fill(-1, 0, span);
  for (let at = order.length - 1; at >= 0; at -= 1) {
    const memberAt = order[at]!;
    const member = members[memberAt]!;
    const { indexes, count } = member;
    for (let row = 0; row < count; row += 1) {
      const slot = indexes[row]! - lo;
      slotMember[slot] = memberAt;
      slotRow[slot] = row;
    }
  }
}

/** Called before each chunk; throws when what is being read changed underneath. */
export type ChunkGuard = () => void;

/**
 * The effective map of a chain of keys (newest first) over [from, to): for
 * each block the digest of the newest key that holds it, ascending. Digests
 * are views of a buffer read fresh for each chunk: they stay valid, and a
 * kept one keeps its chunk's buffer (32 bytes a block) alive.
 */
export function* chainEntries(
  rows: KeyedRows,
  keys: readonly number[],
  from: number,
  to: number,
  guard: ChunkGuard,
): Generator<BlockEntry, void, undefined> {
  if (keys.length === 0) return;
  const members = keys.map(() => new ChunkRows());
  const order = keys.map((_, at) => at);
  const slotMember = new Int32Array(keys.length > 1 ? CHUNK_SPAN : 0);
  const slotRow = new Int32Array(slotMember.length);
  let lo = nextStart(rows, keys, from, to);
  while (lo !== undefined) {
    const hi = Math.min(lo + CHUNK_SPAN, to);
    guard();
    for (let at = 0; at < keys.length; at += 1) rows.read(keys[at]!, lo, hi, members[at]!);
    if (keys.length === 1) {
      const { indexes, digests, count } = members[0]!;
      for (let row = 0; row < count; row += 1) {
        const offset = row * DIGEST_BYTES;
        yield { index: indexes[row]!, digest: digests.subarray(offset, offset + DIGEST_BYTES) };
      }
    } else {
      const span = hi - lo;
      overlay(members, order, lo, span, slotMember, slotRow);
      for (let slot = 0; slot < span; slot += 1) {
        const memberAt = slotMember[slot]!;
        if (memberAt < 0) continue;
        const offset = slotRow[slot]! * DIGEST_BYTES;
        yield { index: lo + slot, digest: members[memberAt]!.digests.subarray(offset, offset + DIGEST_BYTES) };
      }
    }
    lo = nextStart(rows, keys, hi, to);
  }
}

function sameDigest(a: Buffer, aOffset: number, b: Buffer, bOffset: number): boolean {
  for (let at = 0; at < DIGEST_BYTES; at += 1) {
    if (a[aOffset + at] !== b[bOffset + at]) return false;
  }
  return true;
}

/**
 * Block indexes whose effective digest differs between two chains (newest
 * first), a block present in one map only included, ascending. Keys both
 * chains share (their common tail) are read only where a key of one chain
 * alone holds rows: elsewhere the maps agree by construction.
 */
export function* chainDifference(
  rows: KeyedRows,
  keysA: readonly number[],
  keysB: readonly number[],
  guard: ChunkGuard,
): Generator<number, void, undefined> {
  const keys = [...new Set([...keysA, ...keysB])];
  const inA = new Set(keysA);
  const inB = new Set(keysB);
  const exclusive = keys.filter((key) => !(inA.has(key) && inB.has(key)));
  if (exclusive.length === 0) return;
  const members = keys.map(() => new ChunkRows());
  const orderA = keysA.map((key) => keys.indexOf(key));
  const orderB = keysB.map((key) => keys.indexOf(key));
  const slotMemberA = new Int32Array(CHUNK_SPAN);
  const slotRowA = new Int32Array(CHUNK_SPAN);
  const slotMemberB = new Int32Array(CHUNK_SPAN);
  const slotRowB = new Int32Array(CHUNK_SPAN);
  let lo = nextStart(rows, exclusive, 0, BLOCK_KEY_SPAN);
  while (lo !== undefined) {
    const hi = Math.min(lo + CHUNK_SPAN, BLOCK_KEY_SPAN);
    const span = hi - lo;
    guard();
    for (let at = 0; at < keys.length; at += 1) rows.read(keys[at]!, lo, hi, members[at]!);
    overlay(members, orderA, lo, span, slotMemberA, slotRowA);
    overlay(members, orderB, lo, span, slotMemberB, slotRowB);
    for (let slot = 0; slot < span; slot += 1) {
      const memberA = slotMemberA[slot]!;
      const memberB = slotMemberB[slot]!;
      if (memberA < 0 && memberB < 0) continue;
      if (memberA < 0 || memberB < 0) {
        yield lo + slot;
        continue;
      }
      const rowA = slotRowA[slot]!;
      const rowB = slotRowB[slot]!;
      if (memberA === memberB && rowA === rowB) continue;
      if (!sameDigest(members[memberA]!.digests, rowA * DIGEST_BYTES, members[memberB]!.digests, rowB * DIGEST_BYTES)) {
        yield lo + slot;
      }
    }
    lo = nextStart(rows, exclusive, hi, BLOCK_KEY_SPAN);
  }
}

/**
 * SHA-256 over the rows of one key: SHA-256(indexes as u32 little-endian, in
 * order) followed by SHA-256(digests, in order), hashed again. Independent of
 * CHUNK_SPAN; stored at commit, recomputed by check() to find altered rows.
 */
export function keyChecksum(rows: KeyedRows, key: number): Buffer {
  const indexHash = createHash('sha256');
  const digestHash = createHash('sha256');
  let indexBytes = EMPTY;
  for (const chunk of keyChunks(rows, key)) {
    if (indexBytes.length < chunk.count * 4) indexBytes = Buffer.allocUnsafe(chunk.count * 4);
    for (let row = 0; row < chunk.count; row += 1) indexBytes.writeUInt32LE(chunk.indexes[row]!, row * 4);
    indexHash.update(indexBytes.subarray(0, chunk.count * 4));
    digestHash.update(chunk.digests);
  }
  return createHash('sha256').update(indexHash.digest()).update(digestHash.digest()).digest();
}

function* keyChunks(rows: KeyedRows, key: number): Generator<ChunkRows, void, undefined> {
  const chunk = new ChunkRows();
  let lo = rows.nextIndex(key, 0, BLOCK_KEY_SPAN);
  while (lo !== undefined) {
    const hi = Math.min(lo + CHUNK_SPAN, BLOCK_KEY_SPAN);
    rows.read(key, lo, hi, chunk);
    yield chunk;
    lo = rows.nextIndex(key, hi, BLOCK_KEY_SPAN);
  }
}
