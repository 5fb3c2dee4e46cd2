// Hashing worker, run by the piscina pool of src/hashing (the blocks of slabs
// go to workers/blocks.js instead). Pure functions of their task: they read the caller's SharedArrayBuffer in place and return
// plain values. Only node built-ins and piscina's `move` (to transfer the
// result instead of copying it) are imported, so this file runs unchanged from
// the source tree and from dist/.
import { createHash } from 'node:crypto';
import { move, transferableSymbol, valueSymbol } from 'piscina';

/** Glacier's tree hash works on 1 MiB chunks. */
const TREE_HASH_CHUNK = 1024 * 1024;

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

/** @param {Uint8Array} data */
function sha256(data) {
  return createHash('sha256').update(data).digest();
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
