import { combineTreeHashes } from '../../core/checksum.js';
import type { ContentFile } from '../store/contents.js';

const MIB = 1024 * 1024;
const DIGEST = 32;

/** The lowercase hex tree hash of a body from the concatenated SHA-256 digests of its 1 MiB chunks. */
export function treeHashOfChunks(chunkHashes: Buffer): string {
  return combineTreeHashes(splitDigests(chunkHashes)).toString('hex');
}

/** The lowercase hex tree hash of consecutive parts from their own tree hashes (parts of 1 MiB x 2^n, as Glacier requires). */
export function treeHashOfParts(partHashes: readonly string[]): string {
  return combineTreeHashes(partHashes.map((hex) => Buffer.from(hex, 'hex'))).toString('hex');
}

/**
 * Whether bytes start..end (inclusive) of a body of `size` bytes form a
 * subtree of its tree hash: the range starts on a 1 MiB boundary, covers a
 * power-of-two number of chunks (fewer only where it ends the body), and
 * starts at a multiple of that many chunks.
 */
export function isTreeHashAligned(start: number, end: number, size: number): boolean {
  if (start % MIB !== 0 || start > end || end >= size) return false;
  if ((end + 1) % MIB !== 0 && end !== size - 1) return false;
  const chunks = Math.ceil((end - start + 1) / MIB);
  let span = 1;
  while (span < chunks) span *= 2;
  return (start / MIB) % span === 0 && (chunks === span || end === size - 1);
}

/**
 * The tree hash of bytes start..end of the body made of `files` (each
 * holding its chunk digests), or undefined when the range is not tree-hash
 * aligned. Files start on 1 MiB boundaries, as Glacier parts do.
 */
export function rangeTreeHash(files: readonly ContentFile[], start: number, end: number): string | undefined {
  const size = files.reduce((sum, file) => sum + file.size, 0);
  if (!isTreeHashAligned(start, end, size)) return undefined;
  const digests = files.flatMap((file) => (file.chunkHashes === null ? [] : splitDigests(file.chunkHashes)));
  const first = start / MIB;
  return combineTreeHashes(digests.slice(first, first + Math.ceil((end - start + 1) / MIB))).toString('hex');
}

function splitDigests(concatenated: Buffer): Buffer[] {
  const digests: Buffer[] = [];
  for (let at = 0; at < concatenated.length; at += DIGEST) digests.push(concatenated.subarray(at, at + DIGEST));
  return digests;
}
