/**
 * The archive format, version 1 (README "Archive format"). An archive of a
 * snapshot is a set of objects: block segments and one manifest.
 *
 * A segment holds the bytes of up to `segmentBlocks` stored blocks in
 * ascending block index (all-zero blocks take no bytes), then its block table
 * (ENTRY_BYTES a block: u32 block index, u32 flags, u64 byte offset of the
 * block in the segment, 32-byte SHA-256; big-endian), then a TRAILER_BYTES
 * trailer (magic, version, entry count, table offset and size, SHA-256 of the
 * table). The manifest is JSON: the snapshot's metadata, the parent archive,
 * the blocks removed since the parent, and per segment its object, size,
 * tree hash, block range and the SHA-256 of its table. Pure functions only.
 */
import { createHash } from 'node:crypto';
import { BLOCK_SIZE, MAX_VOLUME_SIZE_GIB, BLOCKS_PER_GIB } from '../../core/constants.js';
import type { ArchiveTarget } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';

export const ARCHIVE_FORMAT = 'snapline-archive';
export const ARCHIVE_FORMAT_VERSION = 1;
export const MANIFEST_NAME = 'manifest.json';
export const ENTRY_BYTES = 48;
export const TRAILER_BYTES = 64;
export const SEGMENT_MAGIC = Buffer.from('SNPLSEG1', 'latin1');
/** Flag of a table entry: the block is all zeros and has no bytes in the segment. */
export const ZERO_FLAG = 1;
const MAX_BLOCK_INDEX = MAX_VOLUME_SIZE_GIB * BLOCKS_PER_GIB - 1;

export interface TableEntry {
  index: number;
  /** True for an all-zero block (no bytes stored). */
  zero: boolean;
  /** Byte offset of the block's data in its segment (0 for a zero block). */
  offset: number;
  /** Raw 32-byte SHA-256 of the block's 524,288 bytes. */
  digest: Buffer;
}

export interface ManifestSegment {
  /** The object's name inside the archive (segment-000000...). */
  name: string;
  /** S3 key or Glacier archive id. */
  ref: string;
  sizeBytes: number;
  /** Tree hash (hex) of the whole object. */
  treeHash: string;
  firstBlock: number;
  lastBlock: number;
  blockCount: number;
  /** Bytes of block data at the start of the object; the table follows. */
  dataBytes: number;
  tableOffset: number;
  tableBytes: number;
  /** SHA-256 (hex) of the table bytes. */
  tableSha256: string;
}

export interface ArchivedSnapshot {
  snapshotId: string;
  volume: string;
  volumeSizeGiB: number;
  sourceBytes: number;
  encrypted: boolean;
  description: string | null;
  startTime: string | null;
}

export interface ManifestParent {
  archiveId: string;
  snapshotId: string;
  /** The parent's manifest: S3 key or Glacier archive id. */
  manifestRef: string;
}

export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  version: typeof ARCHIVE_FORMAT_VERSION;
  archiveId: string;
  createdAt: string;
  target: ArchiveTarget;
  /** Bucket or vault at the time of writing. */
  location: string;
  snapshot: ArchivedSnapshot;
  blockSize: number;
  /** Null for a full archive. */
  parent: ManifestParent | null;
  /** Blocks the parent's snapshot has and this one lacks, as [first, count] runs, ascending. */
  removed: Array<[number, number]>;
  /** Table entries over all segments. */
  blockCount: number;
  segmentBlocks: number;
  segments: ManifestSegment[];
}

export function segmentName(ordinal: number): string {
  return `segment-${String(ordinal).padStart(6, '0')}`;
}

export function hex(digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('hex');
}

// ---- segments --------------------------------------------------------------

export function encodeEntry(entry: TableEntry, into: Buffer, at: number): void {
  into.writeUInt32BE(entry.index, at);
  into.writeUInt32BE(entry.zero ? ZERO_FLAG : 0, at + 4);
  into.writeBigUInt64BE(BigInt(entry.offset), at + 8);
  Buffer.from(entry.digest.buffer, entry.digest.byteOffset, 32).copy(into, at + 16);
}

/** The table of a segment and its trailer, as the bytes that end the segment. */
export function encodeTableAndTrailer(entries: readonly TableEntry[], dataBytes: number): { bytes: Buffer; tableSha256: string } {
  const tableBytes = entries.length * ENTRY_BYTES;
  const bytes = Buffer.alloc(tableBytes + TRAILER_BYTES);
  entries.forEach((entry, i) => encodeEntry(entry, bytes, i * ENTRY_BYTES));
  const tableDigest = createHash('sha256').update(bytes.subarray(0, tableBytes)).digest();
  const trailer = bytes.subarray(tableBytes);
  SEGMENT_MAGIC.copy(trailer, 0);
  trailer.writeUInt32BE(ARCHIVE_FORMAT_VERSION, 8);
  trailer.writeUInt32BE(entries.length, 12);
  trailer.writeBigUInt64BE(BigInt(dataBytes), 16);
  trailer.writeBigUInt64BE(BigInt(tableBytes), 24);
  tableDigest.copy(trailer, 32);
  return { bytes, tableSha256: tableDigest.toString('hex') };
}

/**
 * Decodes a segment's table, checking it against the manifest's entry: its
 * SHA-256, ascending block indexes inside the segment's range, offsets inside
 * the data. CHECKSUM_MISMATCH when anything disagrees.
 */
export function decodeTable(table: Buffer, segment: ManifestSegment): TableEntry[] {
  const corrupt = (why: string) =>
    new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `the block table of ${segment.name} (${segment.ref}) is corrupt: ${why}`, {
      details: { object: segment.ref },
    });
  if (table.byteLength !== segment.tableBytes || segment.tableBytes !== segment.blockCount * ENTRY_BYTES) throw corrupt('wrong size');
  if (createHash('sha256').update(table).digest('hex') !== segment.tableSha256) throw corrupt('its SHA-256 differs from the manifest');
  const entries: TableEntry[] = [];
  let previous = -1;
  for (let at = 0; at < table.byteLength; at += ENTRY_BYTES) {
    const index = table.readUInt32BE(at);
    const flags = table.readUInt32BE(at + 4);
    const offset = Number(table.readBigUInt64BE(at + 8));
    const zero = (flags & ZERO_FLAG) !== 0;
    if (index <= previous || index < segment.firstBlock || index > segment.lastBlock) throw corrupt(`block ${index} is out of order`);
    if (!zero && (offset % BLOCK_SIZE !== 0 || offset + BLOCK_SIZE > segment.dataBytes)) throw corrupt(`block ${index} lies outside the data`);
    entries.push({ index, zero, offset: zero ? 0 : offset, digest: Buffer.from(table.subarray(at + 16, at + 48)) });
    previous = index;
  }
  return entries;
}

// ---- removed blocks ----------------------------------------------------------

/** Appends `index` (ascending) to [first, count] runs. */
export function addToRuns(runs: Array<[number, number]>, index: number): void {
  const last = runs.at(-1);
  if (last !== undefined && last[0] + last[1] === index) last[1] += 1;
  else runs.push([index, 1]);
}

// ---- the manifest ------------------------------------------------------------

export function encodeManifest(manifest: ArchiveManifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest)}\n`, 'utf8');
}

/** Parses and checks a manifest. CHECKSUM_MISMATCH when it is not a sound one; INVALID_ARGUMENT for a newer version. */
export function parseManifest(bytes: Buffer, ref: string): ArchiveManifest {
  const corrupt = (why: string) =>
    new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `${ref} is not a sound snapline archive manifest: ${why}`, { details: { object: ref } });
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw corrupt('it is not JSON');
  }
  const m = value as Partial<ArchiveManifest> | null;
  if (m === null || typeof m !== 'object' || m.format !== ARCHIVE_FORMAT) throw corrupt('it has no snapline-archive format mark');
  if (m.version !== ARCHIVE_FORMAT_VERSION) {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `${ref} is archive format version ${String(m.version)}; this snapline reads version ${ARCHIVE_FORMAT_VERSION}`,
      { hint: 'use the snapline version that wrote it, or a newer one' },
    );
  }
  const s = m.snapshot;
  const wholeNumber = (v: unknown, max = Number.MAX_SAFE_INTEGER): v is number => Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max;
  if (
    typeof m.archiveId !== 'string' ||
    s === undefined ||
    typeof s.snapshotId !== 'string' ||
    typeof s.volume !== 'string' ||
    !wholeNumber(s.volumeSizeGiB, MAX_VOLUME_SIZE_GIB) ||
    !wholeNumber(s.sourceBytes) ||
    typeof s.encrypted !== 'boolean' ||
    m.blockSize !== BLOCK_SIZE ||
    !wholeNumber(m.blockCount) ||
    !Array.isArray(m.segments) ||
    !Array.isArray(m.removed)
  ) {
    throw corrupt('a field is missing or has the wrong type');
  }
  let next = 0;
  for (const segment of m.segments) {
    const sound =
      typeof segment?.ref === 'string' &&
      typeof segment.treeHash === 'string' &&
      typeof segment.tableSha256 === 'string' &&
      wholeNumber(segment.firstBlock, MAX_BLOCK_INDEX) &&
      wholeNumber(segment.lastBlock, MAX_BLOCK_INDEX) &&
      segment.firstBlock >= next &&
      segment.lastBlock >= segment.firstBlock &&
      wholeNumber(segment.blockCount) &&
      segment.tableOffset === segment.dataBytes &&
      segment.tableBytes === segment.blockCount * ENTRY_BYTES &&
      segment.sizeBytes === segment.dataBytes + segment.tableBytes + TRAILER_BYTES;
    if (!sound) throw corrupt(`segment ${String(segment?.name)} is described wrongly`);
    next = segment.lastBlock + 1;
  }
  if (m.segments.reduce((sum, segment) => sum + segment.blockCount, 0) !== m.blockCount) throw corrupt('its block count does not add up');
  let after = 0;
  for (const run of m.removed) {
    if (!Array.isArray(run) || !wholeNumber(run[0], MAX_BLOCK_INDEX) || !wholeNumber(run[1]) || run[1] < 1 || run[0] < after) {
      throw corrupt('its removed blocks are not ascending runs');
    }
    after = run[0] + run[1];
  }
  return m as ArchiveManifest;
}

// ---- remote names ------------------------------------------------------------

/** The S3 key prefix of an archive: `<path>/<volume>/<snapshotId>/` (path without leading or trailing slashes). */
export function s3Prefix(path: string | undefined, volume: string, snapshotId: string): string {
  const trimmed = (path ?? '').replace(/^\/+|\/+$/g, '');
  return `${trimmed === '' ? '' : `${trimmed}/`}${volume}/${snapshotId}/`;
}

/**
 * The Glacier description of one of an archive's objects, which identifies
 * it in a vault inventory without the local index:
 * `snapline-archive/1 <archive-id> <name> <snapshot-id> <volume>` (the
 * adapter refuses one past 1024 printable ASCII bytes).
 */
export function glacierDescription(archiveId: string, name: string, snapshotId: string, volume: string): string {
  return `${ARCHIVE_FORMAT}/${ARCHIVE_FORMAT_VERSION} ${archiveId} ${name} ${snapshotId} ${volume}`;
}

/** What a Glacier description of snapline's says, or undefined for another one. */
export function parseGlacierDescription(text: string): { archiveId: string; name: string; snapshotId: string; volume: string } | undefined {
  const match = /^snapline-archive\/(\d+) (\S+) (\S+) (\S+) (\S+)$/.exec(text);
  if (match === null) return undefined;
  return { archiveId: match[2]!, name: match[3]!, snapshotId: match[4]!, volume: match[5]! };
}
