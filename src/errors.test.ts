import { describe, expect, it } from 'vitest';
import { ErrorCodes, ExitCodes, SnaplineError, exitCodeFor, toSnaplineError } from './errors.js';

describe('SnaplineError', () => {
  it('carries the exit code the CLI ends with for its code: one mapping, for the library too', () => {
    for (const code of Object.values(ErrorCodes)) expect(new SnaplineError(code, 'x').exitCode).toBe(exitCodeFor(code));
    expect(new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'x').exitCode).toBe(ExitCodes.USAGE);
    expect(new SnaplineError(ErrorCodes.ENDPOINT_UNREACHABLE, 'x').exitCode).toBe(ExitCodes.UNREACHABLE);
    expect(new SnaplineError(ErrorCodes.TRACKER_UNTRUSTED, 'x').exitCode).toBe(8);
    expect(toSnaplineError(new TypeError('bug')).exitCode).toBe(ExitCodes.INTERNAL);
  });
});
