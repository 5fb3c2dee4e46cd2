/**
 * The one error type of snapline. Code is the contract: callers match on
 * `err.code`, never on the message or the class of a cause. Only the CLI turns
 * codes into exit codes (see exitCodeFor); library code never exits.
 */
export const ErrorCodes = {
  /** A command-line option or library argument is invalid. */
  INVALID_ARGUMENT: 'INVALID_ARGUMENT',
  /** The source to back up is missing, unreadable or unusable. */
  SOURCE_UNUSABLE: 'SOURCE_UNUSABLE',
  /** The restore target is refused (exists, mounted, too small, directory). */
  TARGET_UNUSABLE: 'TARGET_UNUSABLE',
  /** A snapshot (or other remote object) does not exist. */
  NOT_FOUND: 'NOT_FOUND',
  /** A snapshot is in a state that forbids the operation (pending, error). */
  BAD_STATE: 'BAD_STATE',
  /** The remote side refused the arguments (AWS ValidationException, ...). */
  REMOTE_REJECTED: 'REMOTE_REJECTED',
  /** Credentials are missing or wrong, or a permission is missing. */
  ACCESS_DENIED: 'ACCESS_DENIED',
  /** The service asked us to slow down (retryable). */
  THROTTLED: 'THROTTLED',
  /** A transient service or network failure (retryable). */
  UNAVAILABLE: 'UNAVAILABLE',
  /** The endpoint cannot be reached at all. */
  ENDPOINT_UNREACHABLE: 'ENDPOINT_UNREACHABLE',
  /** Data did not match its checksum. */
  CHECKSUM_MISMATCH: 'CHECKSUM_MISMATCH',
  /** The index file is corrupt, foreign or from a newer schema. */
  INDEX_UNUSABLE: 'INDEX_UNUSABLE',
  /** Another run holds the volume or target, or an idempotency conflict. */
  CONFLICT: 'CONFLICT',
  /** The index records the volume in another store (AWS account and Region, or local endpoint data) than the one reached. */
  STORE_MISMATCH: 'STORE_MISMATCH',
  /** A quota was exceeded. */
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  /** The configuration file is invalid. */
  CONFIG_INVALID: 'CONFIG_INVALID',
  /** The run was interrupted (SIGINT, SIGTERM, abort signal). */
  INTERRUPTED: 'INTERRUPTED',
  /** A wait ran past its timeout. */
  TIMEOUT: 'TIMEOUT',
  /** Local I/O failed (disk full, permission denied while writing). */
  IO_FAILED: 'IO_FAILED',
  /** A change tracker (dirty bitmap, changed-blocks file) called blocks unchanged that changed. */
  TRACKER_UNTRUSTED: 'TRACKER_UNTRUSTED',
  /** A bug: something that should not happen did. */
  INTERNAL: 'INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface SnaplineErrorOptions {
  /** True when the same call may succeed if repeated later. */
  retryable?: boolean;
  /** A hint for the user on what to do next. */
  hint?: string;
  cause?: unknown;
  /**
   * Extra facts for --json output and logs (never secrets). An error about
   * an option says which in `option` (its name in the operation's options,
   * as olderThanDays), and `otherOptions` lists any other its message names;
   * the message spells them so, and the CLI shows its flags instead.
   */
  details?: Record<string, unknown>;
}

export class SnaplineError extends Error {
  override readonly name = 'SnaplineError';
  readonly code: ErrorCode;
  /** The exit code the CLI ends with for this error: exitCodeFor(code), the one mapping (see the README's Exit codes). */
  readonly exitCode: number;
  readonly retryable: boolean;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: SnaplineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.exitCode = exitCodeFor(code);
    this.retryable = options.retryable ?? false;
    this.hint = options.hint;
    this.details = options.details;
  }
}

export function isSnaplineError(err: unknown, code?: ErrorCode): err is SnaplineError {
  return err instanceof SnaplineError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a SnaplineError, keeping one that already is. */
export function toSnaplineError(err: unknown): SnaplineError {
  if (err instanceof SnaplineError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new SnaplineError(ErrorCodes.INTERNAL, message, { cause: err });
}

/**
 * Exit codes, decided here and only here. Documented in the README.
 * 1 is reserved for "ran fine, found differences" (verify, diff --exit-code).
 */
export const ExitCodes = {
  OK: 0,
  DIFFERENCES: 1,
  USAGE: 2,
  REMOTE: 3,
  INTEGRITY: 4,
  CONFLICT: 5,
  UNREACHABLE: 6,
  LOCAL_IO: 7,
  TRACKER_UNTRUSTED: 8,
  /** backup --copy-to-region: the backups are committed, a copy to the second Region failed. */
  COPY_FAILED: 9,
  INTERNAL: 70,
  /** `backup --if-idle` found a backup of the volume running and did nothing (sysexits' EX_TEMPFAIL). */
  BUSY: 75,
  INTERRUPTED: 130,
} as const;

export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCodes.INVALID_ARGUMENT:
    case ErrorCodes.SOURCE_UNUSABLE:
    case ErrorCodes.TARGET_UNUSABLE:
    case ErrorCodes.CONFIG_INVALID:
      return ExitCodes.USAGE;
    case ErrorCodes.NOT_FOUND:
    case ErrorCodes.BAD_STATE:
    case ErrorCodes.REMOTE_REJECTED:
    case ErrorCodes.ACCESS_DENIED:
    case ErrorCodes.THROTTLED:
    case ErrorCodes.UNAVAILABLE:
    case ErrorCodes.QUOTA_EXCEEDED:
    case ErrorCodes.TIMEOUT:
      return ExitCodes.REMOTE;
    case ErrorCodes.CHECKSUM_MISMATCH:
    case ErrorCodes.INDEX_UNUSABLE:
      return ExitCodes.INTEGRITY;
    case ErrorCodes.CONFLICT:
    case ErrorCodes.STORE_MISMATCH:
      return ExitCodes.CONFLICT;
    case ErrorCodes.ENDPOINT_UNREACHABLE:
      return ExitCodes.UNREACHABLE;
    case ErrorCodes.IO_FAILED:
      return ExitCodes.LOCAL_IO;
    case ErrorCodes.TRACKER_UNTRUSTED:
      return ExitCodes.TRACKER_UNTRUSTED;
    case ErrorCodes.INTERRUPTED:
      return ExitCodes.INTERRUPTED;
    case ErrorCodes.INTERNAL:
      return ExitCodes.INTERNAL;
  }
}
