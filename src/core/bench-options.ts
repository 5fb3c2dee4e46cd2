/**
 * The limits and defaults of `snapline bench`, held here (free of
 * dependencies but core/constants) so that the engine and the command line's
 * help and option parsers share one copy.
 */
import { MAX_CONCURRENCY } from './constants.js';

/**
 * Highest concurrency level: the run's concurrency, which the command passes
 * on as its highest level. Each request in flight holds a 512 KiB buffer.
 */
export const MAX_BENCH_CONCURRENCY = MAX_CONCURRENCY;
/** Most levels in one run. */
export const MAX_BENCH_LEVELS = 16;
/** Levels measured when none are given. */
export const DEFAULT_BENCH_LEVELS: readonly number[] = [1, 4, 16, 32, 64, 128];
