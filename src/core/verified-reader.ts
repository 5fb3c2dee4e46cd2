import { checksumOf, sha256 } from './checksum.js';
import { BLOCK_SIZE } from './constants.js';
import type { SnapshotReader } from './ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';

/**
 * Wraps a reader so that getBlock only ever returns bytes that match the
 * checksum the service sent with them. A mismatch is CHECKSUM_MISMATCH,
 * retryable: the retry wrapper around this one fetches the block again.
 * `digestOf` computes the SHA-256 (default: on the calling thread; a session
 * passes its hash pool's, so the hashing leaves the main thread).
 */
export function verifiedReader(
  inner: SnapshotReader,
  digestOf: (data: Uint8Array) => Uint8Array | Promise<Uint8Array> = sha256,
): SnapshotReader {
  return {
    listBlocks: (snapshotId, options) => inner.listBlocks(snapshotId, options),
    listChangedBlocks: (first, second, options) => inner.listChangedBlocks(first, second, options),
    async getBlock(snapshotId, blockIndex, blockToken) {
      const block = await inner.getBlock(snapshotId, blockIndex, blockToken);
      if (block.data.byteLength !== BLOCK_SIZE || checksumOf(await digestOf(block.data)) !== block.checksum) {
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
