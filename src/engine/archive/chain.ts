/**
 * Reading archives back: a chain of manifests (a full archive and the
 * incremental ones on top of it), and the merged block plan it stands for,
 * read from the segments' block tables. Every ranged read whose tree hash the
 * store sends is checked against the bytes in the worker pool.
 */
import { throwIfAborted } from '../../core/abort.js';
import { BLOCKS_PER_GIB } from '../../core/constants.js';
import type { ArchiveStore } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts } from '../../core/index-ports.js';
import {
  SEGMENT_MAGIC,
  TRAILER_BYTES,
  decodeTable,
  hex,
  parseManifest,
  type ArchiveManifest,
  type ArchivedSnapshot,
  type ManifestSegment,
  type TableEntry,
} from './format.js';
import { chainOf, findArchive, requireArchived, storeOf, type ArchivePlaces } from './places.js';

const MIB = 1024 * 1024;

export interface ChainMember {
  manifest: ArchiveManifest;
  store: ArchiveStore;
  /** The Glacier retrieval job of each object (by ref) when the index knows it; the store finds one otherwise. */
  jobs: ReadonlyMap<string, string>;
}

/** A full archive and the incremental ones on top of it, oldest first; the last is the archive asked for. */
export interface ArchiveChain {
  members: ChainMember[];
  /** The snapshot the chain gives back (the newest member's). */
  snapshot: ArchivedSnapshot;
}

/** One block of the merged plan: its digest and where its bytes lie (none for an all-zero block). */
export interface PlanEntry {
  index: number;
  digest: Buffer;
  zero: boolean;
  member: ChainMember;
  segment: ManifestSegment;
  /** Byte offset of its data in the segment. */
  offset: number;
}

/** A half-open range of block indexes. */
export interface BlockSpan {
  fromBlock: number;
  toBlock: number;
}

/**
 * The chain of archive `archive` (an archive id, or a snapshot id with one
 * archive) from the index, each manifest read from its store and checked
 * against the tree hash recorded when it was written. BAD_STATE, before
 * anything is read, when an object of the chain is not readable (restored) yet.
 */
export async function openArchiveChain(
  deps: { index: Pick<IndexPorts, 'archives'>; archives: ArchivePlaces; hashPool: HashPool },
  archive: string,
): Promise<ArchiveChain> {
  const records = chainOf(deps.index, findArchive(deps.index, archive));
  requireArchived(records);
  const members: ChainMember[] = [];
  for (const record of records) {
    const store = storeOf(deps.archives, record);
    const objects = deps.index.archives.objects(record.archiveId);
    const jobs = new Map(objects.filter((o) => o.restoreJob !== null && record.target === 'glacier').map((o) => [o.ref, o.restoreJob!]));
    const unreadable: string[] = [];
    for (const object of objects) if ((await store.restoreStatus(object.ref, jobs.get(object.ref))).state !== 'available') unreadable.push(object.name);
    if (unreadable.length > 0) {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${record.archiveId} is not readable yet: ${unreadable.length} of its ${objects.length} objects are not restored`, {
        details: { archiveId: record.archiveId, objects: unreadable },
        hint: `ask for it with \`snapline archive restore ${archive}\`, then wait with \`snapline archive status ${archive} --wait\``,
      });
    }
    const manifestObject = objects.find((o) => o.ref === record.manifestRef);
    const manifest = await readManifest(deps.hashPool, store, record.manifestRef!, jobs.get(record.manifestRef!), manifestObject?.treeHash);
    if (manifest.archiveId !== record.archiveId || manifest.snapshot.snapshotId !== record.snapshotId) {
      throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `${record.manifestRef} is the manifest of ${manifest.archiveId}, not of ${record.archiveId}`);
    }
    members.push({ manifest, store, jobs });
  }
  return { members, snapshot: members.at(-1)!.manifest.snapshot };
}

/**
 * The chain ending in the manifest `manifestRef` of `store`, found by
 * following each manifest's parent in the same store: no index needed (a
 * worker in the cloud). Glacier jobs are looked up by the store.
 */
export async function loadArchiveChain(deps: { hashPool: HashPool }, store: ArchiveStore, manifestRef: string): Promise<ArchiveChain> {
  const members: ChainMember[] = [];
  const seen = new Set<string>();
  let ref: string | undefined = manifestRef;
  while (ref !== undefined) {
    if (seen.has(ref)) throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `the archive chain of ${manifestRef} loops at ${ref}`);
    seen.add(ref);
    const manifest = await readManifest(deps.hashPool, store, ref, undefined, undefined);
    members.unshift({ manifest, store, jobs: new Map() });
    ref = manifest.parent?.manifestRef;
  }
  return { members, snapshot: members.at(-1)!.manifest.snapshot };
}

async function readManifest(hashPool: HashPool, store: ArchiveStore, ref: string, job: string | undefined, treeHash: string | undefined): Promise<ArchiveManifest> {
  const range = await store.getRange(ref, 0, undefined, job);
  const actual = hex(await treeHashOf(hashPool, range.data));
  for (const expected of [range.treeHash, treeHash]) {
    if (expected !== undefined && expected !== actual) {
      throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `the manifest ${ref} does not match its tree hash (got ${actual}, expected ${expected})`, {
        details: { object: ref },
      });
    }
  }
  return parseManifest(range.data, ref);
}

/** The tree hash of `data`, computed in the worker pool. */
export async function treeHashOf(hashPool: HashPool, data: Uint8Array): Promise<Uint8Array> {
  const shared = new SharedArrayBuffer(data.byteLength);
  new Uint8Array(shared).set(data);
  return hashPool.treeHash(shared, 0, data.byteLength);
}

/** Throws CHECKSUM_MISMATCH when the store sent a tree hash for a range that the bytes do not have. */
export function checkRangeTreeHash(actual: Uint8Array, expected: string | undefined, ref: string, start: number, length: number): void {
  if (expected !== undefined && expected !== hex(actual)) {
    throw new SnaplineError(
      ErrorCodes.CHECKSUM_MISMATCH,
      `bytes ${start}..${start + length} of ${ref} do not match the tree hash the store sent with them (got ${hex(actual)}, expected ${expected})`,
      { details: { object: ref, start, length } },
    );
  }
}

/** Walks one member's table entries inside a span, one segment's table at a time. */
class MemberCursor {
  current: (TableEntry & { segment: ManifestSegment }) | undefined;
  readonly #segments: ManifestSegment[];
  #segment = -1;
  #entries: TableEntry[] = [];
  #position = 0;
  #removedAt = 0;

  constructor(
    readonly member: ChainMember,
    private readonly span: BlockSpan,
    private readonly hashPool: HashPool,
  ) {
    this.#segments = member.manifest.segments.filter((s) => s.lastBlock >= span.fromBlock && s.firstBlock < span.toBlock);
  }

  /** Loads `current` (the next entry inside the span), reading tables as needed. */
  async fill(): Promise<void> {
    for (;;) {
      while (this.#position < this.#entries.length) {
        const entry = this.#entries[this.#position]!;
        if (entry.index >= this.span.toBlock) break;
        if (entry.index >= this.span.fromBlock) {
          this.current = { ...entry, segment: this.#segments[this.#segment]! };
          return;
        }
        this.#position += 1;
      }
      if (this.#position < this.#entries.length || this.#segment + 1 >= this.#segments.length) {
        this.current = undefined;
        return;
      }
      this.#segment += 1;
      this.#entries = await readTable(this.hashPool, this.member, this.#segments[this.#segment]!);
      this.#position = 0;
    }
  }

  advance(): void {
    this.#position += 1;
    this.current = undefined;
  }

  /** True when this member's snapshot lacks `index` (removed since its parent). Calls must ascend. */
  removes(index: number): boolean {
    const runs = this.member.manifest.removed;
    while (this.#removedAt < runs.length && runs[this.#removedAt]![0] + runs[this.#removedAt]![1] <= index) this.#removedAt += 1;
    const run = runs[this.#removedAt];
    return run !== undefined && run[0] <= index;
  }
}

/** A segment's block table: read from the megabyte boundary before it to the end, in tree-hash-aligned pieces, then checked. */
async function readTable(hashPool: HashPool, member: ChainMember, segment: ManifestSegment): Promise<TableEntry[]> {
  const start = Math.floor(segment.tableOffset / MIB) * MIB;
  const data = await readObjectRange(hashPool, member, segment, start, segment.sizeBytes);
  const at = segment.tableOffset - start;
  const trailer = data.subarray(data.byteLength - TRAILER_BYTES);
  if (!trailer.subarray(0, SEGMENT_MAGIC.byteLength).equals(SEGMENT_MAGIC) || trailer.readUInt32BE(12) !== segment.blockCount) {
    throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `${segment.ref} does not end in the segment trailer the manifest describes`, { details: { object: segment.ref } });
  }
  return decodeTable(data.subarray(at, at + segment.tableBytes), segment);
}

/**
 * Bytes [start, end) of a segment, fetched as tree-hash-aligned pieces (see
 * treeHashAlignedRanges) so that Glacier sends the tree hash of each, and
 * each one checked in the worker pool. `start` is a multiple of 1 MiB; `end`
 * too, or the end of the object.
 */
export async function readObjectRange(hashPool: HashPool, member: ChainMember, segment: ManifestSegment, start: number, end: number): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for (const [from, to] of treeHashAlignedRanges(start, end, segment.sizeBytes)) {
    const range = await member.store.getRange(segment.ref, from, to, member.jobs.get(segment.ref));
    if (range.data.byteLength !== to - from) {
      throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `${segment.ref} sent ${range.data.byteLength} bytes for ${from}..${to}`, { details: { object: segment.ref } });
    }
    if (range.treeHash !== undefined) checkRangeTreeHash(await treeHashOf(hashPool, range.data), range.treeHash, segment.ref, from, range.data.byteLength);
    pieces.push(range.data);
  }
  return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
}

/**
 * Splits [start, end) of an object of `size` bytes into the fewest ranges
 * that are tree-hash aligned, the ranges Glacier sends a tree hash for: a
 * range of 2^k MiB that starts at a multiple of its length, or a last range
 * reaching the object's end whose start is a multiple of the power of two
 * above its length in MiB. `start` must be a multiple of 1 MiB and `end` too,
 * or `size`. Pure.
 */
export function treeHashAlignedRanges(start: number, end: number, size: number): Array<[number, number]> {
  if (start % MIB !== 0 || end < start || end > size || (end % MIB !== 0 && end !== size)) {
    throw new SnaplineError(ErrorCodes.INTERNAL, `range ${start}..${end} of ${size} bytes cannot be split into tree-hash-aligned ranges`);
  }
  const ranges: Array<[number, number]> = [];
  let at = start;
  while (at < end) {
    if (end === size) {
      let span = MIB;
      while (span < end - at) span *= 2;
      if (at % span === 0) {
        ranges.push([at, end]);
        return ranges;
      }
    }
    let length = MIB;
    while (at % (2 * length) === 0 && at + 2 * length <= end) length *= 2;
    const stop = Math.min(at + length, end);
    ranges.push([at, stop]);
    at = stop;
  }
  return ranges;
}

/**
 * The blocks of the chain's snapshot inside `span`, ascending: for each
 * block the newest member that stores it wins, unless a newer member removed
 * it (then the snapshot lacks it). Memory: one segment table per member.
 */
export async function* planBlocks(chain: ArchiveChain, hashPool: HashPool, span: BlockSpan, signal?: AbortSignal): AsyncGenerator<PlanEntry> {
  checkSpan(span, chain);
  const cursors = chain.members.map((member) => new MemberCursor(member, span, hashPool));
  for (;;) {
    throwIfAborted(signal);
    let next = Infinity;
    for (const cursor of cursors) {
      if (cursor.current === undefined) await cursor.fill();
      if (cursor.current !== undefined && cursor.current.index < next) next = cursor.current.index;
    }
    if (next === Infinity) return;
    let winner: MemberCursor | undefined;
    for (let m = cursors.length - 1; m >= 0; m -= 1) {
      const cursor = cursors[m]!;
      if (cursor.current?.index === next) {
        winner = cursor;
        break;
      }
      if (cursor.removes(next)) break;
    }
    if (winner !== undefined) {
      const entry = winner.current!;
      yield { index: entry.index, digest: entry.digest, zero: entry.zero, member: winner.member, segment: entry.segment, offset: entry.offset };
    }
    for (const cursor of cursors) if (cursor.current?.index === next) cursor.advance();
  }
}

/** Every block of the chain's volume as a span. */
export function wholeSpan(chain: ArchiveChain): BlockSpan {
  return { fromBlock: 0, toBlock: chain.snapshot.volumeSizeGiB * BLOCKS_PER_GIB };
}

function checkSpan(span: BlockSpan, chain: ArchiveChain): void {
  const blocks = chain.snapshot.volumeSizeGiB * BLOCKS_PER_GIB;
  const { fromBlock, toBlock } = span;
  if (!Number.isSafeInteger(fromBlock) || !Number.isSafeInteger(toBlock) || fromBlock < 0 || toBlock < fromBlock || toBlock > blocks) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block range ${fromBlock}..${toBlock} is not inside the volume's ${blocks} blocks`);
  }
}
