// Disk images made from a seed, so that a failing reliability run can be
// replayed with the same bytes.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, ftruncateSync, openSync, writeFileSync, writeSync } from 'node:fs';

export const BLOCK_SIZE = 524_288;

/**
 * A seeded generator of numbers in [0, 1) (mulberry32).
 * @param {number} seed
 * @returns {() => number}
 */
export function seededRandom(seed) {
  let state = (Math.imul(seed >>> 0, 0x9e3779b1) ^ 0x5bd1e995) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A whole number in [min, max] drawn from `random`.
 * @param {() => number} random
 * @param {number} min
 * @param {number} max
 */
export function between(random, min, max) {
  return min + Math.floor(random() * (max - min + 1));
}

/**
 * `length` bytes that look random, the same for the same label (AES-CTR keystream).
 * @param {string} label
 * @param {number} length
 * @returns {Buffer}
 */
export function pseudoRandomBytes(label, length) {
  const key = createHash('sha256').update(label).digest();
  const cipher = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(length)), cipher.final()]);
}

/**
 * Writes an image of `blocks` whole blocks plus `tailBytes`, pseudo-random
 * from `label`, with the given blocks zero. Returns its bytes.
 * @param {string} path
 * @param {{ label: string, blocks: number, zeroBlocks?: Iterable<number>, tailBytes?: number }} shape
 * @returns {Buffer}
 */
export function writeImage(path, { label, blocks, zeroBlocks = [], tailBytes = 0 }) {
  const bytes = pseudoRandomBytes(label, blocks * BLOCK_SIZE + tailBytes);
  for (const i of zeroBlocks) bytes.fill(0, i * BLOCK_SIZE, Math.min(bytes.length, (i + 1) * BLOCK_SIZE));
  writeFileSync(path, bytes, { mode: 0o600 });
  return bytes;
}

/**
 * Overwrites blocks of the image file and of `bytes` in place: with
 * pseudo-random data from `label`, or zeros where `zero` says so.
 * @param {string} path
 * @param {Buffer} bytes
 * @param {Iterable<number>} indexes
 * @param {string} label
 * @param {(index: number) => boolean} [zero]
 */
export function overwriteBlocks(path, bytes, indexes, label, zero = () => false) {
  const fd = openSync(path, 'r+');
  try {
    for (const i of indexes) {
      const start = i * BLOCK_SIZE;
      const length = Math.min(BLOCK_SIZE, bytes.length - start);
      if (length <= 0) continue;
      const data = zero(i) ? Buffer.alloc(length) : pseudoRandomBytes(`${label}/${i}`, length);
      writeSync(fd, data, 0, length, start);
      data.copy(bytes, start);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * A block of fresh random bytes for each index (not seeded: for tests that
 * only need every block to differ from every other).
 * @param {Iterable<number>} indexes
 * @returns {Map<number, Buffer>}
 */
export function randomBlocks(indexes) {
  return new Map(Array.from(indexes, (i) => [i, randomBytes(BLOCK_SIZE)]));
}

/**
 * Writes `blocks` into an image, each at its index, clipped to the file's
 * size. With `sizeBytes`, a new image of exactly that size (replacing any
 * file there) with holes where no block is given; without, the image exists
 * and keeps its size and its other blocks.
 * @param {string} path
 * @param {Map<number, Buffer>} blocks
 * @param {number} [sizeBytes]
 */
export function writeBlocks(path, blocks, sizeBytes) {
  const fd = openSync(path, sizeBytes === undefined ? 'r+' : 'w', 0o600);
  try {
    if (sizeBytes !== undefined) ftruncateSync(fd, sizeBytes);
    const size = fstatSync(fd).size;
    for (const [index, data] of blocks) {
      const length = Math.min(BLOCK_SIZE, size - index * BLOCK_SIZE);
      if (length > 0) writeSync(fd, data, 0, length, index * BLOCK_SIZE);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Blocks of `bytes` that are not all zeros.
 * @param {Buffer} bytes
 * @returns {number[]}
 */
export function nonZeroBlocks(bytes) {
  const zeros = Buffer.alloc(BLOCK_SIZE);
  const result = [];
  for (let start = 0, i = 0; start < bytes.length; start += BLOCK_SIZE, i += 1) {
    const block = bytes.subarray(start, start + BLOCK_SIZE);
    if (!block.equals(zeros.subarray(0, block.length))) result.push(i);
  }
  return result;
}
