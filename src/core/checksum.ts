import { createHash } from 'node:crypto';
import { BLOCK_SIZE } from './constants.js';

/** Raw 32-byte SHA-256 of `data`. */
export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

/** The x-amz-Checksum of a block: base64 of its raw SHA-256 digest. */
export function checksumOf(digest: Uint8Array): string {
  return Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('base64');
}

/** The raw digest a base64 x-amz-Checksum stands for. */
export function digestOf(checksum: string): Buffer {
  return Buffer.from(checksum, 'base64');
}

/**
 * Accumulates the LINEAR aggregate checksum of CompleteSnapshot: SHA-256 over
 * the concatenated raw digests of every block written in the snapshot, in
 * ascending block index. Callers must add digests in that order; add() throws
 * on an index that does not ascend, so a misuse cannot produce a wrong value.
 */
export class LinearAggregate {
  readonly #hash = createHash('sha256');
  #lastIndex = -1;
  #count = 0;

  add(blockIndex: number, digest: Uint8Array): void {
    if (blockIndex <= this.#lastIndex) {
      throw new RangeError(`LINEAR aggregate needs ascending block indexes: ${blockIndex} after ${this.#lastIndex}`);
    }
    if (digest.byteLength !== 32) throw new RangeError(`a SHA-256 digest has 32 bytes, got ${digest.byteLength}`);
    this.#lastIndex = blockIndex;
    this.#count += 1;
    this.#hash.update(digest);
  }

  get count(): number {
    return this.#count;
  }

  /** The base64 aggregate; the accumulator cannot be used afterwards. */
  digest(): string {
    return this.#hash.digest('base64');
  }
}

/** LINEAR aggregate of (index, digest) pairs given in any order. */
export function linearAggregateOf(blocks: Iterable<{ index: number; digest: Uint8Array }>): string {
  const sorted = [...blocks].sort((a, b) => a.index - b.index);
  const aggregate = new LinearAggregate();
  for (const block of sorted) aggregate.add(block.index, block.digest);
  return aggregate.digest();
}

/** SHA-256 of a block of BLOCK_SIZE zero bytes. */
export const ZERO_BLOCK_DIGEST: Buffer = sha256(Buffer.alloc(BLOCK_SIZE));

const MIB = 1024 * 1024;

/**
 * The Glacier tree hash of `data` as raw bytes: SHA-256 of each 1 MiB chunk,
 * then pairs hashed level by level, an odd last node carried up unchanged.
 */
export function treeHash(data: Uint8Array): Buffer {
  if (data.byteLength === 0) return sha256(data);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < data.byteLength; offset += MIB) {
    chunks.push(sha256(data.subarray(offset, Math.min(offset + MIB, data.byteLength))));
  }
  return combineTreeHashes(chunks);
}

/** Combines the tree hashes of consecutive 1 MiB-aligned pieces, in order. */
export function combineTreeHashes(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 0) throw new RangeError('a tree hash needs at least one chunk');
  let level = hashes;
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i]!;
      const right = level[i + 1];
      next.push(right === undefined ? left : sha256(Buffer.concat([left, right])));
    }
    level = next;
  }
  return level[0]!;
}
