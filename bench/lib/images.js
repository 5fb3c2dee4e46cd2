// Disk images for benchmarks: random (every block distinct), sparse (data
// runs spread over a large hole), and in-place changes of some blocks.
import { randomFillSync } from 'node:crypto';
import { open } from 'node:fs/promises';

const BLOCK = 512 * 1024;
const CHUNK = 8 * 1024 * 1024;

/**
 * Writes `bytes` of random data (no two blocks alike) to a new file.
 * @param {string} path
 * @param {number} bytes
 */
export async function writeRandomImage(path, bytes) {
  const file = await open(path, 'w', 0o600);
  try {
    const chunk = Buffer.alloc(CHUNK);
    for (let at = 0; at < bytes; at += CHUNK) {
      const length = Math.min(CHUNK, bytes - at);
      randomFillSync(chunk, 0, length);
      await file.write(chunk, 0, length, at);
    }
  } finally {
    await file.close();
  }
}

/**
 * A sparse file of `sizeBytes` holding `dataBytes` of random data in runs of
 * `runBytes`, spread evenly; everything else is a hole.
 * @param {string} path
 * @param {number} sizeBytes
 * @param {number} dataBytes
 * @param {number} runBytes
 */
export async function writeSparseImage(path, sizeBytes, dataBytes, runBytes) {
  const runs = Math.max(1, Math.floor(dataBytes / runBytes));
  const spacing = Math.floor(sizeBytes / runs / BLOCK) * BLOCK;
  const file = await open(path, 'w', 0o600);
  try {
    await file.truncate(sizeBytes);
    const chunk = Buffer.alloc(runBytes);
    for (let run = 0; run < runs; run += 1) {
      randomFillSync(chunk);
      await file.write(chunk, 0, runBytes, run * spacing);
    }
  } finally {
    await file.close();
  }
  return { runs, spacing };
}

/**
 * Changes the first 4 KiB of `count` distinct random blocks of the image in place.
 * @param {string} path
 * @param {number} count
 * @returns {Promise<number[]>} the changed block indexes, ascending
 */
export async function changeBlocks(path, count) {
  const file = await open(path, 'r+');
  try {
    const blocks = Math.floor((await file.stat()).size / BLOCK);
    const chosen = new Set();
    while (chosen.size < Math.min(count, blocks)) chosen.add(Math.floor(Math.random() * blocks));
    const patch = Buffer.alloc(4096);
    const sorted = [...chosen].sort((a, b) => a - b);
    for (const block of sorted) {
      randomFillSync(patch);
      await file.write(patch, 0, patch.length, block * BLOCK);
    }
    return sorted;
  } finally {
    await file.close();
  }
}
