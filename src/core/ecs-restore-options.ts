/**
 * The defaults and limits of an ECS restore, held here (free of
 * dependencies) so that the engine and the command line's help and option
 * parsers share one copy.
 */

/** Tasks a job's blocks are split into: the default, and the most. */
export const DEFAULT_SHARDS = 4;
export const MAX_SHARDS = 256;
/** New attempts per failed shard in one run: the default, and the most. */
export const DEFAULT_RETRIES = 2;
export const MAX_RETRIES = 100;

/** How fast the driver polls and backs off. */
export interface EcsPacing {
  /** First and largest pause between two polls (the pause grows while nothing changes). */
  pollFirstMs: number;
  pollMaxMs: number;
  /** Backoff after a RunTask that placed nothing (capacity), doubling up to the max. */
  capacityFirstMs: number;
  capacityMaxMs: number;
  /** RunTask calls per shard and run that may place nothing before the shard fails. */
  capacityRetries: number;
  /** After a task stops, how long its log may stay quiet before its last line counts as read. */
  logSettleMs: number;
}

export const DEFAULT_PACING: Readonly<EcsPacing> = {
  pollFirstMs: 500,
  pollMaxMs: 15_000,
  capacityFirstMs: 2000,
  capacityMaxMs: 60_000,
  capacityRetries: 8,
  logSettleMs: 5000,
};
