import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { BLOCK_SIZE } from './constants.js';
import { LinearAggregate, ZERO_BLOCK_DIGEST, checksumOf, linearAggregateOf, sha256, treeHash } from './checksum.js';

// Test vectors from AWS-FACTS.md.
const block0 = Buffer.alloc(BLOCK_SIZE, 0x01);
const block1 = Buffer.alloc(BLOCK_SIZE, 0x02);

describe('block checksums', () => {
  it('matches the per-block vectors', () => {
    expect(checksumOf(sha256(block0))).toBe('M6FQvOsTwamSIx5ltPrRaBUhL8Bs20CJltMu6yzvnrs=');
    expect(checksumOf(sha256(block1))).toBe('Ioxb8/mw3beyMReNfgZ6/5ZqGRsfzT7Q4uNx7KM/zfw=');
    expect(checksumOf(ZERO_BLOCK_DIGEST)).toBe('B4VNL+8pega6gWheZgwzLeNtXRjVRpJ9MNqtbX/aFUE=');
  });

  it('aggregates raw digests, not base64 strings (LINEAR)', () => {
    const aggregate = new LinearAggregate();
    aggregate.add(0, sha256(block0));
    aggregate.add(1, sha256(block1));
    expect(aggregate.count).toBe(2);
    expect(aggregate.digest()).toBe('fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=');
  });

  it('sorts by block index when given unordered blocks', () => {
    const value = linearAggregateOf([
      { index: 7, digest: sha256(block1) },
      { index: 3, digest: sha256(block0) },
    ]);
    expect(value).toBe('fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=');
  });

  it('refuses indexes that do not ascend', () => {
    const aggregate = new LinearAggregate();
    aggregate.add(5, sha256(block0));
    expect(() => aggregate.add(5, sha256(block1))).toThrow(RangeError);
    expect(() => aggregate.add(4, sha256(block1))).toThrow(RangeError);
  });
});

describe('tree hash', () => {
  const plain = (b: Buffer) => createHash('sha256').update(b).digest();

  it('equals the plain SHA-256 up to 1 MiB', () => {
    const data = Buffer.alloc(1024 * 1024, 7);
    expect(treeHash(data).equals(plain(data))).toBe(true);
  });

  it('hashes pairs and carries an odd node up', () => {
    const mib = 1024 * 1024;
    const data = Buffer.concat([Buffer.alloc(mib, 1), Buffer.alloc(mib, 2), Buffer.alloc(100, 3)]);
    const h = [plain(data.subarray(0, mib)), plain(data.subarray(mib, 2 * mib)), plain(data.subarray(2 * mib))];
    const expected = plain(Buffer.concat([plain(Buffer.concat([h[0]!, h[1]!])), h[2]!]));
    expect(treeHash(data).equals(expected)).toBe(true);
  });
});
