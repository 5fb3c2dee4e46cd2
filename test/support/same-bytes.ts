import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';

/** Asserts the two files have the same size and bytes (no deep-equality diff of megabytes). */
export async function expectSameBytes(actualPath: string, expectedPath: string): Promise<void> {
  const [actual, expected] = await Promise.all([readFile(actualPath), readFile(expectedPath)]);
  expect(actual.length, `size of ${actualPath}`).toBe(expected.length);
  expect(actual.equals(expected), `bytes of ${actualPath} equal ${expectedPath}`).toBe(true);
}
