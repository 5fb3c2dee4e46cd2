/**
 * The port `snapline serve` listens on by default, where the built-in `local`
 * connection looks for a running endpoint first. Free of dependencies: the
 * serve command's option default needs it without loading the connection code.
 */
export const DEFAULT_LOCAL_PORT = 4577;
