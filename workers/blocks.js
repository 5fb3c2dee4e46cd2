// Block hashing thread of src/hashing's HashPool (src/hashing/block-threads.ts).
// Every thread is sent every batch; the threads claim its blocks one at a time
// from a counter in the batch's shared state, read (when asked) and hash each,
// and write its digest and zero flag into that state. A block whose bytes the
// caller may not need is read into the thread's own buffer, which stays in the
// core's cache, and copied into the batch's buffer only when it is needed.
// The thread that finishes the last block posts the batch's id: one message a
// batch, whatever the number of threads and blocks. Failures are written into
// the thread's slot of the state as values (a code crossing threads as an
// exception would be lost).
// A thread done with a batch says so in its state, which the pool then reuses.
// Only node built-ins are imported, so this file runs unchanged from the
// source tree and from dist/.
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

// The layout of a batch's state; src/hashing/block-threads.ts has the same numbers.
/** Int32 indexes: the next block to claim, the blocks finished, the threads done with the batch. */
const NEXT = 0;
const DONE = 1;
const SEEN = 2;
/** Bytes of the header, then of each thread's failure slot. */
const HEADER_BYTES = 16;
const SLOT_BYTES = 64;
/** Failure kinds in a slot. */
const READ_FAILED = 1;
const SOURCE_ENDED = 2;
const UNEXPECTED = 3;
/** Bytes of a slot's text (errno or message). */
const TEXT_BYTES = SLOT_BYTES - 16;

/** @type {{ index: number }} */
const { index } = workerData;

/**
 * @typedef {object} Batch
 * @property {number} id
 * @property {SharedArrayBuffer} state header, one failure slot a thread, then 32-byte digests and one flag byte a block
 * @property {number} threads
 * @property {SharedArrayBuffer} buffer the blocks
 * @property {number} offset byte offset of the first block in `buffer`
 * @property {number} blockCount
 * @property {number} blockSize
 * @property {{ fd: number, position: number, available: number, keep?: 'none' | Uint8Array }} [read] read the blocks from this source
 *   first (see readBlock); `keep` says which blocks go into `buffer` (see keptUnless): absent, all of them
 */

/** @type {Map<number, { zeros: Buffer, digest: Buffer }>} */
const zeroBlocks = new Map();
/** This thread's own block buffer, for blocks that may not be needed. @type {Buffer | undefined} */
let ownBlock;

/** @param {number} blockSize */
function ownBlockOf(blockSize) {
  if (ownBlock?.byteLength !== blockSize) ownBlock = Buffer.alloc(blockSize);
  return ownBlock;
}

/** @param {number} blockSize */
function zeroBlockOf(blockSize) {
  let zero = zeroBlocks.get(blockSize);
  if (zero === undefined) {
    const zeros = Buffer.alloc(blockSize);
    zero = { zeros, digest: createHash('sha256').update(zeros).digest() };
    zeroBlocks.set(blockSize, zero);
  }
  return zero;
}

/**
 * Reads block `i` of the source into `block`; the part past `available` is
 * zeros. Returns the failure, or undefined.
 * @param {{ fd: number, position: number, available: number }} read
 * @param {Buffer} block
 * @param {number} i
 * @returns {{ kind: number, at: number, text: string } | undefined}
 */
function readBlock({ fd, position, available }, block, i) {
  const blockSize = block.byteLength;
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
    return { kind: READ_FAILED, at: at + got, text: /** @type {NodeJS.ErrnoException} */ (err).code ?? 'EIO' };
  }
  if (got < wanted) return { kind: SOURCE_ENDED, at: at + got, text: '' };
  // A reused slab still holds earlier bytes: zero the padding.
  if (got < blockSize) block.fill(0, got);
  return undefined;
}

/**
 * The digest under which block `i` of a read batch is not needed in the
 * batch's buffer: `keep` holds 32 bytes a block, then a flag a block (1 where
 * that digest is given). Undefined where the block is needed whatever it holds.
 * @param {Uint8Array} keep
 * @param {number} i
 * @param {number} blockCount
 */
function keptUnless(keep, i, blockCount) {
  return keep[32 * blockCount + i] === 1 ? keep.subarray(32 * i, 32 * i + 32) : undefined;
}

/**
 * Reads (when asked) and hashes block `i` of the batch into its state. An
 * all-zero block is found with one memcmp and gets the zero digest unhashed.
 * @param {Batch} batch
 * @param {Uint8Array} results digests, then flags
 * @param {number} i
 */
function hashBlock(batch, results, i) {
  const inBuffer = Buffer.from(batch.buffer, batch.offset + i * batch.blockSize, batch.blockSize);
  const keep = batch.read?.keep;
  const zero = zeroBlockOf(batch.blockSize);
  /** The digest that spares copying the block into the batch's buffer; with keep 'none' none is copied. */
  const unneededAs = keep === undefined || keep === 'none' ? undefined : keptUnless(keep, i, batch.blockCount);
  // A block unneeded only as zeros (one never written before) most likely holds data: it is read
  // straight into the batch's buffer, where a zero block costs nothing more, instead of copied there.
  const ownBuffer = keep === 'none' || (unneededAs !== undefined && !zero.digest.equals(unneededAs));
  const block = ownBuffer ? ownBlockOf(batch.blockSize) : inBuffer;
  if (batch.read !== undefined) {
    const failure = readBlock(batch.read, block, i);
    if (failure !== undefined) return failure;
  }
  const digest = results.subarray(32 * i, 32 * i + 32);
  if (block.equals(zero.zeros)) {
    digest.set(zero.digest);
    results[32 * batch.blockCount + i] = 1;
  } else {
    createHash('sha256').update(block).digest().copy(digest);
  }
  if (block !== inBuffer && unneededAs !== undefined && Buffer.compare(digest, unneededAs) !== 0) block.copy(inBuffer);
  return undefined;
}

/**
 * Writes this thread's failure at block `i` into its slot.
 * @param {SharedArrayBuffer} state
 * @param {number} i
 * @param {{ kind: number, at: number, text: string }} failure
 */
function recordFailure(state, i, { kind, at, text }) {
  const slot = HEADER_BYTES + index * SLOT_BYTES;
  const view = new DataView(state, slot, SLOT_BYTES);
  view.setInt32(0, i + 1, true);
  view.setInt32(4, kind, true);
  view.setFloat64(8, at, true);
  Buffer.from(state, slot + 16, TEXT_BYTES).write(text.slice(0, TEXT_BYTES), 'utf8');
}

/** @param {Batch} batch */
function work(batch) {
  const header = new Int32Array(batch.state, 0, 3);
  const results = new Uint8Array(batch.state, HEADER_BYTES + batch.threads * SLOT_BYTES, 33 * batch.blockCount);
  const count = batch.blockCount;
  for (let i = Atomics.add(header, NEXT, 1); i < count; i = Atomics.add(header, NEXT, 1)) {
    /** @type {{ kind: number, at: number, text: string } | undefined} */
    let failure;
    try {
      failure = hashBlock(batch, results, i);
    } catch (err) {
      failure = { kind: UNEXPECTED, at: 0, text: err instanceof Error ? err.message : String(err) };
    }
    let finished = 1;
    if (failure !== undefined) {
      recordFailure(batch.state, i, failure);
      // No thread claims a block after a failure; the ones never claimed count as finished.
      finished += Math.max(0, count - Atomics.exchange(header, NEXT, count));
    }
    if (Atomics.add(header, DONE, finished) + finished === count) parentPort?.postMessage(batch.id);
  }
  // The last touch of the state: from here on the pool may reuse it for another batch.
  Atomics.add(header, SEEN, 1);
}

parentPort?.on('message', work);
