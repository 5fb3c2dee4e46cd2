import { Option } from 'commander';
import type { ConnectionRequest } from '../../config/connection.js';
import { DEFAULT_CONCURRENCY, MAX_CONCURRENCY } from '../../core/constants.js';
import type { RemoteSession, SessionOptions } from '../../session.js';
import type { CommandContext } from '../context.js';
import type { Output } from '../output.js';
import { integerOption } from '../parse.js';
import { formatDuration, ProgressDisplay } from '../progress.js';

/** The connection the global flags ask for; warnings go to stderr. */
export function connectionRequest(ctx: CommandContext): ConnectionRequest {
  const globals = ctx.globals();
  const output = ctx.output();
  return {
    connection: globals.connection,
    endpointUrl: globals.endpointUrl,
    region: globals.region,
    configPath: globals.config,
    onWarning: (message) => output.warn(message),
  };
}

/** Session options from the global flags, plus a command's own. */
export function sessionOptions(ctx: CommandContext, extra: Partial<SessionOptions> = {}): SessionOptions {
  const globals = ctx.globals();
  const output = ctx.output();
  return {
    ...connectionRequest(ctx),
    indexPath: globals.index,
    signal: ctx.signal,
    onRetry: (error, attempt, operation) => output.verbose(`${operation}: attempt ${attempt} failed, trying again: ${error.message}`),
    onStore: (store) => output.storeUsed(store),
    ...extra,
  };
}

/** `--concurrency <n>`: `what` is in flight at once; the default and limits every command shares. */
/**
 * Starts the hash threads of a command that will hash a source, before it
 * loads the rest of its code and plans (see startBlockThreadsEarly): the
 * threads boot meanwhile, and the scan starts on ready threads.
 */
export async function startHashThreads(): Promise<void> {
  const { startBlockThreadsEarly } = await import('../../hashing/index.js');
  startBlockThreadsEarly();
}

export function concurrencyOption(what: string): Option {
  return new Option('--concurrency <n>', what).default(DEFAULT_CONCURRENCY).argParser(integerOption('--concurrency', 1, MAX_CONCURRENCY));
}

/** Shorter throttled stretches are part of the normal flow and go unmentioned. */
const THROTTLE_NOTE_AFTER_MS = 1000;

/** "throttled, retrying for 2m05s so far" while the session's EBS calls have been throttled a while; undefined otherwise. */
export function throttleNote(throttling: RemoteSession['throttling']): string | undefined {
  const ms = throttling.throttledForMs();
  return ms === undefined || ms < THROTTLE_NOTE_AFTER_MS ? undefined : `throttled, retrying for ${formatDuration(ms)} so far`;
}

/**
 * A progress display that says when the run is being throttled: `onThrottled`
 * goes into the session options (it redraws the line at each throttled retry,
 * since the transfer may stand still meanwhile), `display` makes the display
 * once the session is open.
 */
export function throttleAwareProgress(output: Output): { onThrottled: () => void; display: (session: RemoteSession) => ProgressDisplay } {
  let display: ProgressDisplay | undefined;
  return {
    onThrottled: () => display?.refresh(),
    display: (session) => (display = new ProgressDisplay(output).withNote(() => throttleNote(session.throttling))),
  };
}
