/**
 * The history of runs (backup, restore, prune, archive): one entry per volume
 * a run dealt with, failed runs included. The CLI records an entry after each
 * run; status, metrics and the report read them. The index implements it
 * (src/index/runs.ts).
 */

/** When a notification is sent: on failures (the default), on successes, or after every run. */
export const NOTIFY_ON = ['failure', 'success', 'always'] as const;
export type NotifyOn = (typeof NOTIFY_ON)[number];

export const RUN_OPERATIONS = ['backup', 'restore', 'prune', 'archive'] as const;
export type RunOperation = (typeof RUN_OPERATIONS)[number];

export interface RunEntry {
  operation: RunOperation;
  /** The volume the run dealt with; null when it is not known (a restore of a snapshot the index does not hold, a prune of every volume that failed before it got to one). */
  volume: string | null;
  startedAt: Date;
  finishedAt: Date;
  /** 'failure' carries errorCode: a SnaplineError code. */
  result: 'success' | 'failure';
  errorCode: string | null;
  /** The snapshot made (backup), read (restore, archive); null otherwise. */
  snapshotId: string | null;
  /** Blocks that differed from the parent (backup); snapshots deleted (prune); else 0. */
  changedBlocks: number;
  changedBytes: number;
  /** Blocks and bytes sent (backup, archive) or written (restore). */
  transferredBlocks: number;
  transferredBytes: number;
  /** Completed snapshots the volume had in the index once the run was over (backup, prune); null when not counted. */
  liveSnapshots: number | null;
}

/** Where runs are kept. */
export interface RunLog {
  /** Appends one entry, filed under the store the log is bound to (if any). Durable when it returns. */
  recordRun(entry: RunEntry): void;
  /**
   * Entries in the order they were recorded (the order the runs ended), of the
   * bound store and of none; only `volume`'s when given. Not by their times:
   * after the clock is set back, the last entry is still the last run.
   */
  listRuns(filter?: { volume?: string; operation?: RunOperation }): RunEntry[];
}
