// Hashing worker, run by the piscina pool of src/hashing. Pure functions of
// their task: they read the caller's SharedArrayBuffer in place and return
// plain values. Only node built-ins and piscina's `move` (to transfer the
// result instead of copying it) are imported, so this file runs unchanged from
// the source tree and from dist/.
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { move, transferableSymbol, valueSymbol } from 'piscina';

/** Glacier's tree hash works on 1 MiB chunks. */
const TREE_HASH_CHUNK = 1024 * 1024;

/**
 * @typedef {object} HashBlocksTask
 * @property {SharedArrayBuffer} buffer
 * @property {number} offset byte offset of the first block in `buffer`
 * @property {number} blockCount
 * @property {number} blockSize
 */

/**
 * @typedef {object} ReadHashTask
 * @property {number} fd a descriptor of the source, open for reading (descriptors are shared by all threads)
 * @property {number} position source byte of the first block
 * @property {number} available bytes of the source from `position` on that the blocks cover; the rest reads as zeros
 * @property {SharedArrayBuffer} buffer where the blocks go
 * @property {number} offset byte offset of the first block in `buffer`
 * @property {number} blockCount
 * @property {number} blockSize
 */

/**
 * @typedef {object} DigestTask
 * @property {SharedArrayBuffer} buffer
 * @property {number} offset
 * @property {number} length
 */

/**
 * @typedef {object} MovedDigestTask
 * @property {ArrayBuffer} buffer transferred to this thread, and back with the result
 * @property {number} offset
 * @property {number} length
 */

/**
 * @typedef {object} TreeHashTask
 * @property {SharedArrayBuffer} buffer
 * @property {number} offset
 * @property {number} length
 */

/** @type {Map<number, { zeros: Buffer, digest: Buffer }>} */
const zeroBlocks = new Map();

/** @param {number} blockSize */
function zeroBlockOf(blockSize) {
  let zero = zeroBlocks.get(blockSize);
  if (zero === undefined) {
    const zeros = Buffer.alloc(blockSize);
    zero = { zeros, digest: sha256(zeros) };
    zeroBlocks.set(blockSize, zero);
  }
  return zero;
}

/** @param {Uint8Array} data */
function sha256(data) {
  return createHash('sha256').update(data).digest();
}

/**
 * Puts the SHA-256 and zero flag of `block` (block `i` of `count`) into
 * `result`: 32 bytes a block, then one flag byte a block (1 = zero). An
 * all-zero block is found with one memcmp and gets the zero digest unhashed.
 * @param {Buffer} block
 * @param {Uint8Array} result
 * @param {number} i
 * @param {number} count
 */
function hashInto(block, result, i, count) {
  const zero = zeroBlockOf(block.byteLength);
  if (block.equals(zero.zeros)) {
    result.set(zero.digest, 32 * i);
    result[32 * count + i] = 1;
  } else {
    result.set(sha256(block), 32 * i);
  }
}

/**
 * SHA-256 and zero flag of each block. Returns one transferred ArrayBuffer of
 * 33 bytes a block: the digests (32 * blockCount bytes, block order), then
 * one flag byte a block (1 = zero).
 * @param {HashBlocksTask} task
 * @returns {ArrayBuffer}
 */
export function hashBlocks({ buffer, offset, blockCount, blockSize }) {
  const result = new Uint8Array(33 * blockCount);
  for (let i = 0; i < blockCount; i += 1) hashInto(Buffer.from(buffer, offset + i * blockSize, blockSize), result, i, blockCount);
  return transferred(result.buffer);
}

/**
 * Reads each block from the source into `buffer` and hashes it right away,
 * while it is still in this core's cache; the part of a block past
 * `available` is zeros. Returns hashBlocks' ArrayBuffer, or as a value (not
 * an exception, which would lose its code crossing threads) the failure:
 * { errno, at } for a failed read, { endedAt } for a source that ended early.
 * @param {ReadHashTask} task
 * @returns {ArrayBuffer | { errno: string, at: number } | { endedAt: number }}
 */
export function readAndHashBlocks({ fd, position, available, buffer, offset, blockCount, blockSize }) {
  const result = new Uint8Array(33 * blockCount);
  for (let i = 0; i < blockCount; i += 1) {
    const block = Buffer.from(buffer, offset + i * blockSize, blockSize);
    const wanted = Math.max(0, Math.min(blockSize, available - i * blockSize));
    const at = position + i * blockSize;
    let got = 0;
    try {
      while (got < wanted) {
        const read = readSync(fd, block, got, wanted - got, at + got);
        if (read === 0) break;
        got += read;
      }
    } catch (err) {
      return { errno: /** @type {NodeJS.ErrnoException} */ (err).code ?? 'EIO', at: at + got };
    }
    if (got < wanted) return { endedAt: at + got };
    // A reused slab still holds earlier bytes: zero the padding.
    if (got < blockSize) block.fill(0, got);
    hashInto(block, result, i, blockCount);
  }
  return transferred(result.buffer);
}

/**
 * SHA-256 of [offset, offset + length) as raw 32 bytes.
 * @param {DigestTask} task
 * @returns {Uint8Array}
 */
export function digest({ buffer, offset, length }) {
  return new Uint8Array(sha256(new Uint8Array(buffer, offset, length)));
}

/**
 * SHA-256 of [offset, offset + length) of a buffer moved here, which moves
 * back with the digest: { digest, buffer }.
 * @param {MovedDigestTask} task
 * @returns {{ digest: Uint8Array, buffer: ArrayBuffer }}
 */
export function digestMoved({ buffer, offset, length }) {
  const digest = new Uint8Array(sha256(new Uint8Array(buffer, offset, length)));
  return transferred({ digest, buffer }, buffer);
}

/**
 * `value` marked for piscina to transfer `buffer` (by default `value`
 * itself) instead of copying it; typed as what the caller receives, the
 * value itself.
 * @template T
 * @param {T} value
 * @param {ArrayBuffer} [buffer]
 * @returns {T}
 */
function transferred(value, buffer) {
  const marked = buffer === undefined ? move(/** @type {ArrayBuffer} */ (value)) : move(/** @type {any} */ ({ [transferableSymbol]: buffer, [valueSymbol]: value }));
  return /** @type {T} */ (marked);
}

/**
 * Glacier tree hash of [offset, offset + length) as raw 32 bytes: SHA-256 of
 * each 1 MiB chunk, then pairs hashed level by level, an odd last node carried
 * up unchanged.
 * @param {TreeHashTask} task
 * @returns {Uint8Array}
 */
export function treeHash({ buffer, offset, length }) {
  const data = Buffer.from(buffer, offset, length);
  if (length === 0) return new Uint8Array(sha256(data));
  /** @type {Buffer[]} */
  let level = [];
  for (let at = 0; at < length; at += TREE_HASH_CHUNK) {
    level.push(sha256(data.subarray(at, Math.min(at + TREE_HASH_CHUNK, length))));
  }
  while (level.length > 1) {
    /** @type {Buffer[]} */
    const next = [];
    for (let i = 0; i < level.length; i += 2) {
      const left = /** @type {Buffer} */ (level[i]);
      const right = level[i + 1];
      next.push(right === undefined ? left : createHash('sha256').update(left).update(right).digest());
    }
    level = next;
  }
  return new Uint8Array(/** @type {Buffer} */ (level[0]));
}
