import { checksumOf, sha256 } from './checksum.js';
import { BLOCK_SIZE } from './constants.js';
import type { SnapshotReader } from './ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';

/**
 * Computes the SHA-256 of a fetched block: the digest alone, or the digest
 * with the bytes to use from then on (a digester may move the block to a
 * worker thread and back, leaving the buffer it was given empty).
 */
export type BlockDigester = (data: Buffer) => Uint8Array | Promise<Uint8Array> | Promise<{ digest: Uint8Array; data: Buffer }>;

/**
 * Wraps a reader so that getBlock only ever returns bytes that match the
 * checksum the service sent with them. A mismatch is CHECKSUM_MISMATCH,
 * retryable: the retry wrapper around this one fetches the block again.
 * `digester` hashes each block (default: on the calling thread; a session
 * passes its hash pool's, so the hashing leaves the main thread).
 */
export function verifiedReader(inner: SnapshotReader, digester: BlockDigester = sha256): SnapshotReader {
  return {
    listBlocks: (snapshotId, options) => inner.listBlocks(snapshotId, options),
    listChangedBlocks: (first, second, options) => inner.listChangedBlocks(first, second, options),
    async getBlock(snapshotId, blockIndex, blockToken) {
      const fetched = await inner.getBlock(snapshotId, blockIndex, blockToken);
      const hashed = await digester(fetched.data);
      const { digest, data } = hashed instanceof Uint8Array ? { digest: hashed, data: fetched.data } : hashed;
      const block = { ...fetched, data };
      if (data.byteLength !== BLOCK_SIZE || checksumOf(digest) !== block.checksum) {
        throw new SnaplineError(
          ErrorCodes.CHECKSUM_MISMATCH,
          `block ${blockIndex} of ${snapshotId} does not match its checksum`,
          { retryable: true, details: { snapshotId, blockIndex } },
        );
      }
      return block;
    },
  };
}
