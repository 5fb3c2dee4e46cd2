import { describe, expect, it } from 'vitest';
import { isSnaplineError } from '../errors.js';
import { GLACIER_MAX_PART, MAX_PARTS, partSizeFor } from './part-size.js';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isSnaplineError(err)) return err.code;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('partSizeFor: the part size that fits an object in 10,000 parts', () => {
  it('keeps the floor while 10,000 parts of it suffice', () => {
    expect(partSizeFor(0)).toBe(MIB);
    expect(partSizeFor(1)).toBe(MIB);
    expect(partSizeFor(MAX_PARTS * MIB)).toBe(MIB);
    expect(partSizeFor(MAX_PARTS * MIB, 16 * MIB)).toBe(16 * MIB);
  });

  it('doubles one byte past each edge', () => {
    expect(partSizeFor(MAX_PARTS * MIB + 1)).toBe(2 * MIB);
    expect(partSizeFor(MAX_PARTS * 2 * MIB)).toBe(2 * MIB);
    expect(partSizeFor(MAX_PARTS * 2 * MIB + 1)).toBe(4 * MIB);
    expect(partSizeFor(MAX_PARTS * 16 * MIB + 1, 16 * MIB)).toBe(32 * MIB);
  });

  it('reaches 4 GiB parts for Glacier\'s largest archive, and refuses one byte more', () => {
    const largest = MAX_PARTS * GLACIER_MAX_PART; // 40,000 GiB
    expect(partSizeFor(largest)).toBe(4 * GIB);
    expect(partSizeFor(largest - 1)).toBe(4 * GIB);
    expect(partSizeFor(MAX_PARTS * 2 * GIB + 1)).toBe(4 * GIB);
    expect(refusal(() => partSizeFor(largest + 1))).toBe('INVALID_ARGUMENT');
  });

  it('every answer is 1 MiB x 2^n and holds the object in at most 10,000 parts', () => {
    for (const bytes of [5, 3 * MIB + 7, 12_345 * MIB, 987_654 * MIB + 3, 39_999 * GIB]) {
      const size = partSizeFor(bytes);
      const mib = size / MIB;
      expect(Number.isInteger(mib) && (mib & (mib - 1)) === 0).toBe(true);
      expect(Math.ceil(bytes / size)).toBeLessThanOrEqual(MAX_PARTS);
      if (size > MIB) expect(Math.ceil(bytes / (size / 2))).toBeGreaterThan(MAX_PARTS);
    }
  });

  it('refuses sizes that are not parts', () => {
    expect(refusal(() => partSizeFor(-1))).toBe('INVALID_ARGUMENT');
    expect(refusal(() => partSizeFor(1.5))).toBe('INVALID_ARGUMENT');
    expect(refusal(() => partSizeFor(10, 3 * MIB))).toBe('INVALID_ARGUMENT');
    expect(refusal(() => partSizeFor(10, MIB / 2))).toBe('INVALID_ARGUMENT');
    expect(refusal(() => partSizeFor(10, 8 * MIB, 4 * MIB))).toBe('INVALID_ARGUMENT');
  });
});
