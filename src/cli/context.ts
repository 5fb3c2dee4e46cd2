import type { GlobalOptions, Output } from './output.js';

/** What every command action receives. */
export interface CommandContext {
  /** The global options, resolved. */
  globals(): GlobalOptions;
  output(): Output;
  /** Aborted on SIGINT or SIGTERM; commands pass it down to the engine. */
  signal: AbortSignal;
}

/** A command's action: returns its exit code (0 unless it says otherwise). */
export type CommandAction<A extends unknown[]> = (ctx: CommandContext, ...args: A) => Promise<number | void>;

/** Makes a wrapped action for `command.action(...)`. */
export type Wrap = <A extends unknown[]>(action: CommandAction<A>) => (...args: A) => Promise<void>;
