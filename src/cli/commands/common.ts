import { Option } from 'commander';
import type { ConnectionRequest } from '../../config/connection.js';
import { DEFAULT_CONCURRENCY, MAX_CONCURRENCY } from '../../core/constants.js';
import type { SessionOptions } from '../../session.js';
import type { CommandContext } from '../main.js';
import { integerOption } from '../parse.js';

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
    onRetry: (error, attempt, operation) => output.verbose(`retrying ${operation} (attempt ${attempt}): ${error.message}`),
    onStore: (store) => output.storeUsed(store),
    ...extra,
  };
}

/** `--concurrency <n>`: `what` is in flight at once; the default and limits every command shares. */
export function concurrencyOption(what: string): Option {
  return new Option('--concurrency <n>', what).default(DEFAULT_CONCURRENCY).argParser(integerOption('--concurrency', 1, MAX_CONCURRENCY));
}
