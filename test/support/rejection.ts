import { expect } from 'vitest';
import { SnaplineError } from '../../src/errors.js';

/** The SnaplineError `promise` rejects with; fails the test when it resolves or rejects with anything else. */
export async function rejection(promise: Promise<unknown>): Promise<SnaplineError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    return err as SnaplineError;
  }
  throw new Error('expected a rejection, the promise resolved');
}
