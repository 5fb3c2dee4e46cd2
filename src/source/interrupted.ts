import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';

/**
 * The error to throw when `signal` has aborted: its reason when that already
 * is a SnaplineError (the engine's own stop), else INTERRUPTED.
 */
export function interruptedError(signal: AbortSignal | undefined): SnaplineError {
  const reason: unknown = signal?.reason;
  if (isSnaplineError(reason)) return reason;
  return new SnaplineError(ErrorCodes.INTERRUPTED, 'the run was interrupted', { cause: reason });
}
