/**
 * The limits and defaults of `snapline bench`, held here (free of
 * dependencies) so that the engine and the command line's help and option
 * parsers share one copy.
 */

/** Highest concurrency level: each request in flight holds a 512 KiB buffer. */
export const MAX_BENCH_CONCURRENCY = 1024;
/** Most levels in one run. */
export const MAX_BENCH_LEVELS = 16;
/** Levels measured when none are given. */
export const DEFAULT_BENCH_LEVELS: readonly number[] = [1, 4, 16, 32, 64, 128];
