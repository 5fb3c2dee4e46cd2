import type { ConnectionRequest } from '../../config/connection.js';
import type { SessionOptions } from '../../session.js';
import type { CommandContext } from '../main.js';

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
    ...extra,
  };
}
