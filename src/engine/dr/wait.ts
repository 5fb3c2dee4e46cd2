import { sleep as abortableSleep, throwIfAborted } from '../../core/abort.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';

/** How a wait on EC2 polls: the first pause, growing by half each time up to the cap; an optional overall limit. */
export interface PollOptions {
  firstMs?: number;
  maxMs?: number;
  /** Give up (TIMEOUT) after this long; default no limit. */
  timeoutMs?: number;
  /** For tests: the pause between polls. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

const FIRST_MS = 500;
const MAX_MS = 5000;

/**
 * Asks `look` until it answers something other than undefined, pausing
 * between asks (see PollOptions). Rejects with what `look` throws, INTERRUPTED
 * on an abort (checked before every ask, the first one too), TIMEOUT past `timeoutMs` naming `what`.
 */
export async function pollUntil<T>(what: string, look: () => Promise<T | undefined>, options: PollOptions & { signal?: AbortSignal } = {}): Promise<T> {
  const started = Date.now();
  const pause = options.sleep ?? abortableSleep;
  let wait = options.firstMs ?? FIRST_MS;
  for (;;) {
    throwIfAborted(options.signal);
    const found = await look();
    if (found !== undefined) return found;
    if (options.timeoutMs !== undefined && Date.now() - started >= options.timeoutMs) {
      throw new SnaplineError(ErrorCodes.TIMEOUT, `gave up waiting for ${what} after ${Math.round((Date.now() - started) / 1000)} s`);
    }
    await pause(wait, options.signal);
    wait = Math.min(options.maxMs ?? MAX_MS, Math.ceil(wait * 1.5));
  }
}
