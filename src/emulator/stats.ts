/** Counters of one operation. Bytes are body bytes (request in, response out). */
export interface OperationStats {
  requests: number;
  /** Answers with a status of 400 or more, and connections reset by a fault. */
  errors: number;
  bytesIn: number;
  bytesOut: number;
}

/** How often each fault fired. */
export interface FaultStats {
  resets: number;
  throttled: number;
  rateLimited: number;
  internalErrors: number;
  notFound: number;
  corrupted: number;
  completionErrors: number;
  /** CompleteSnapshot answers dropped after the completion was accepted. */
  lostCompletions: number;
  latencySpikes: number;
  jobFailures: number;
}

/** What GET /_snapline/stats answers. Operations are named as in the AWS APIs, e.g. PutSnapshotBlock. */
export interface EmulatorStats {
  operations: Record<string, OperationStats>;
  faults: FaultStats;
  totals: OperationStats;
}

const noFaults = (): FaultStats => ({ resets: 0, throttled: 0, rateLimited: 0, internalErrors: 0, notFound: 0, corrupted: 0, completionErrors: 0, lostCompletions: 0, latencySpikes: 0, jobFailures: 0 });

/** Request and byte counters by operation. Not persisted. */
export class StatsRecorder {
  #operations = new Map<string, OperationStats>();
  #faults = noFaults();

  /** The counters of an operation, created on first use; callers add to them. */
  operation(name: string): OperationStats {
    let stats = this.#operations.get(name);
    if (stats === undefined) {
      stats = { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 };
      this.#operations.set(name, stats);
    }
    return stats;
  }

  fault(kind: keyof FaultStats): void {
    this.#faults[kind] += 1;
  }

  snapshot(): EmulatorStats {
    const operations: Record<string, OperationStats> = {};
    const totals: OperationStats = { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 };
    for (const [name, stats] of [...this.#operations].sort(([a], [b]) => a.localeCompare(b))) {
      operations[name] = { ...stats };
      totals.requests += stats.requests;
      totals.errors += stats.errors;
      totals.bytesIn += stats.bytesIn;
      totals.bytesOut += stats.bytesOut;
    }
    return { operations, faults: { ...this.#faults }, totals };
  }

  /** Zeroes every counter in place (requests in flight keep counting into the same objects). */
  reset(): void {
    for (const stats of this.#operations.values()) Object.assign(stats, { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 });
    this.#faults = noFaults();
  }
}
