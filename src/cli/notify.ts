import { hostname } from 'node:os';
import type { RunEntry, RunOperation } from '../core/run-log.js';
import { ErrorCodes, SnaplineError } from '../errors.js';

/** Version of the event's shape; a field is only ever added under the same version. */
export const EVENT_SCHEMA = 'snapline.event/1';

/**
 * What `--notify` POSTs (application/json). Built from named facts only:
 * never a credential, a config value or a request header; URLs in the error
 * message lose their user:password@, query and fragment.
 */
export interface NotifyEvent {
  schema: typeof EVENT_SCHEMA;
  /** `backup.succeeded`, `prune.failed`, ... */
  event: `${RunOperation}.${'succeeded' | 'failed'}`;
  operation: RunOperation;
  result: 'success' | 'failure';
  host: string;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** The command's exit code. */
  exitCode: number;
  error: { code: string; message: string } | null;
  /** One entry per volume the run dealt with. */
  volumes: Array<{ volume: string | null; result: 'success' | 'failure'; errorCode: string | null; snapshotId: string | null; changedBytes: number; transferredBytes: number }>;
}

export function notifyEvent(operation: RunOperation, entries: RunEntry[], started: Date, finished: Date, exitCode: number, error: SnaplineError | undefined): NotifyEvent {
  const failed = error !== undefined || exitCode !== 0 || entries.some((e) => e.result === 'failure');
  return {
    schema: EVENT_SCHEMA,
    event: `${operation}.${failed ? 'failed' : 'succeeded'}`,
    operation,
    result: failed ? 'failure' : 'success',
    host: hostname(),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    exitCode,
    error: error === undefined ? null : { code: error.code, message: withoutUrlSecrets(error.message) },
    volumes: entries.map((e) => ({
      volume: e.volume,
      result: e.result,
      errorCode: e.errorCode,
      snapshotId: e.snapshotId,
      changedBytes: e.changedBytes,
      transferredBytes: e.transferredBytes,
    })),
  };
}

/**
 * `text` with every URL cut to its scheme, host and path: no user:password@, query or fragment.
 * Everything up to the last `@` before any `?` or `#` counts as user:password@, so that a
 * password holding `@` or `/` (a URL as mistyped, quoted by an error) goes whole.
 */
export function withoutUrlSecrets(text: string): string {
  return text.replace(/\b([a-z][a-z0-9+.-]*:\/\/)(?:[^\s?#]*@)?([^\s/?#]*)([^\s?#]*)(?:\?[^\s#]*)?(?:#\S*)?/gi, '$1$2$3');
}

/** The URL as it may be shown: scheme and host only (a webhook's path is often its key). */
export function shownUrl(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(not a URL)';
  }
}

/** `--notify`'s value: an http(s) URL without user:password@; INVALID_ARGUMENT names the flag and never quotes the URL. */
export function notifyUrlOption(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // Said below.
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--notify must be an http:// or https:// URL', { details: { option: 'notify' } });
  }
  if (url.username !== '' || url.password !== '') {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--notify must not carry user:password@: events never carry credentials', {
      hint: 'give the receiver a URL of its own (a webhook path or query key)',
      details: { option: 'notify' },
    });
  }
  return value;
}

export interface NotifyPolicy {
  /** Attempts in all (default 3). */
  attempts?: number;
  /** Pause before the second attempt; doubled after each (default 500 ms). */
  firstPauseMs?: number;
  /** Each attempt's limit (default 5 s). */
  attemptTimeoutMs?: number;
}

/**
 * POSTs `event` to `url`, retrying a refused connection, a timeout, 429 and
 * 5xx with doubling pauses (3 attempts and 1.5 s of pauses by default, so at
 * most about 16.5 s in all). Never throws: returns why it gave up, for a
 * warning that names only the URL's origin.
 */
export async function sendEvent(url: string, event: NotifyEvent, policy: NotifyPolicy = {}): Promise<string | undefined> {
  const attempts = policy.attempts ?? 3;
  let pause = policy.firstPauseMs ?? 500;
  let reason = 'not sent';
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) {
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause *= 2;
    }
    try {
      const answer = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'snapline' },
        body: JSON.stringify(event),
        redirect: 'error',
        signal: AbortSignal.timeout(policy.attemptTimeoutMs ?? 5000),
      });
      await answer.arrayBuffer().catch(() => undefined);
      if (answer.ok) return undefined;
      reason = `HTTP ${answer.status}`;
      if (answer.status !== 429 && answer.status < 500) return `${reason} (not retried)`;
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
      reason = cause instanceof Error ? ((cause as NodeJS.ErrnoException).code ?? cause.name) : 'failed';
    }
  }
  return `${reason} after ${attempts} attempts`;
}
