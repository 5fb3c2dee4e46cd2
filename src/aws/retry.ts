import { randomUUID } from 'node:crypto';
import { setTimeout as sleepFor } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import type {
  BlockPage,
  BlockRef,
  ChangedBlockRef,
  ListOptions,
  SnapshotReader,
  SnapshotStatus,
  SnapshotWriter,
  StartSnapshotInput,
  StartedSnapshot,
} from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../errors.js';
import { foundNoEndpoint } from './errors.js';
import type { EndpointContact } from './in-flight.js';

export interface RetryPolicy {
  /** Attempts per call for retryable errors, the first included; throttled attempts are not counted (see throttleBudgetMs). */
  maxAttempts: number;
  /** Backoff before the first retry; doubles with every retry. */
  baseDelayMs: number;
  /** Ceiling of one backoff. */
  maxDelayMs: number;
  /** ResourceNotFound on a snapshot younger than this is retried (AWS: up to about two minutes after StartSnapshot). */
  notFoundWindowMs: number;
  /**
   * Attempts of a call that finds no endpoint (connection refused, no such
   * host) while no request of the run has reached it yet (the `contact`
   * option): a wrong endpoint URL fails within a moment. Once any request
   * has reached it, or without a contact, this is retried up to maxAttempts
   * like any transient failure, so that a run outlives a restart of the
   * endpoint. Other failures to connect (EAI_AGAIN, EHOSTUNREACH...) always
   * get maxAttempts.
   */
  unreachableAttemptsBeforeContact: number;
  /**
   * How long one call may go on being throttled (THROTTLED answers, one
   * after another) before it fails. Throttled attempts do not count against
   * maxAttempts: an account throttled for a long while slows a run down, it
   * does not end it, until one call has been refused this long.
   */
  throttleBudgetMs: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<RetryPolicy> = {
  maxAttempts: 10,
  baseDelayMs: 100,
  maxDelayMs: 10_000,
  notFoundWindowMs: 120_000,
  unreachableAttemptsBeforeContact: 3,
  throttleBudgetMs: 10 * 60_000,
};

/** The time the retry wrappers measure and wait in; tests give one that runs on their own. */
export interface RetryClock {
  /** Milliseconds, from any fixed origin. */
  now(): number;
  /** Resolves after `ms`; rejects when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const SYSTEM_CLOCK: RetryClock = {
  now: () => performance.now(),
  sleep: (ms, signal) => sleepFor(ms, undefined, signal === undefined ? undefined : { signal }),
};

/**
 * Which calls of a run are being throttled right now, and since when: what a
 * progress line shows ("throttled, retrying for 2m so far"). One per
 * session, shared by its retry wrappers, on the same clock as theirs.
 */
export class ThrottleWatch {
  readonly clock: RetryClock;
  /** Per throttled call, when its first throttled answer came. */
  readonly #since = new Map<object, number>();

  constructor(clock: RetryClock = SYSTEM_CLOCK) {
    this.clock = clock;
  }

  /** How long the call throttled longest has been retrying, or undefined when no call is throttled now. */
  throttledForMs(): number | undefined {
    if (this.#since.size === 0) return undefined;
    return this.clock.now() - Math.min(...this.#since.values());
  }

  begin(call: object, since: number): void {
    this.#since.set(call, since);
  }

  end(call: object): void {
    this.#since.delete(call);
  }
}

/**
 * Adaptive concurrency for one resource (AIMD): a THROTTLED failure halves the
 * limit (not below 1), once per window: failures of calls that started
 * before the last cut do not cut again. A run of successes as long as the
 * current limit raises it by one, up to `max`. Lowering never interrupts a
 * running call; it only holds back new ones.
 */
export class AdaptiveLimiter {
  readonly max: number;
  readonly #queue: LimitFunction;
  #window = 0;
  #successes = 0;

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `concurrency must be a whole number of at least 1, got ${max}`);
    }
    this.max = max;
    this.#queue = pLimit(max);
  }

  /** Current concurrency limit. */
  get limit(): number {
    return this.#queue.concurrency;
  }

  /** Calls waiting for a slot. */
  get pending(): number {
    return this.#queue.pendingCount;
  }

  /** Calls running. */
  get active(): number {
    return this.#queue.activeCount;
  }

  /** Runs `fn` in a slot; its outcome steers the limit. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    return this.#queue(() => this.#observe(fn));
  }

  async #observe<T>(fn: () => Promise<T>): Promise<T> {
    const window = this.#window;
    try {
      const value = await fn();
      this.#succeeded();
      return value;
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.THROTTLED)) this.#throttled(window);
      throw err;
    }
  }

  #throttled(window: number): void {
    if (window !== this.#window) return;
    this.#window += 1;
    this.#successes = 0;
    this.#queue.concurrency = Math.max(1, Math.floor(this.limit / 2));
  }

  #succeeded(): void {
    if (this.limit >= this.max) return;
    this.#successes += 1;
    if (this.#successes >= this.limit) {
      this.#successes = 0;
      this.#queue.concurrency = this.limit + 1;
    }
  }
}

export interface ResilienceOptions {
  /** Every attempt takes one slot; the slot is free during backoff sleeps. */
  limiter: AdaptiveLimiter;
  policy?: Partial<RetryPolicy>;
  /**
   * Aborting stops new attempts and sleeps (INTERRUPTED), and a call that
   * fails after it is not retried. Ending the requests in flight is the
   * stores' part (their `signal` option).
   */
  signal?: AbortSignal;
  /** Told before each retry: the error, the attempt that failed (1-based) and the operation, in the user's terms ("uploading blocks"). */
  onRetry?: (error: SnaplineError, attempt: number, operation: string) => void;
  /** Told before each retry of a throttled call: how long it has been throttled so far, and the operation. */
  onThrottled?: (throttledForMs: number, operation: string) => void;
  /** Records the calls being throttled (see ThrottleWatch); its clock is the wrapper's unless `clock` is given. */
  throttleWatch?: ThrottleWatch;
  /** Default: the watch's clock, else the system's. */
  clock?: RetryClock;
  /**
   * The session's record of whether any of its requests has reached the
   * endpoint, kept by the stores' transport (InFlightRequests), so that an
   * answer to any store of the session counts. Without it no call fails
   * early for want of contact.
   */
  contact?: EndpointContact;
}

export interface WriterResilienceOptions extends ResilienceOptions {
  /**
   * Snapshots the caller started recently in another process or run (a
   * resumed backup): their ResourceNotFound window counts from the creation
   * of this wrapper. Snapshots started through the wrapper are known anyway.
   */
  newSnapshotIds?: Iterable<string>;
}

class Retrier {
  readonly #policy: RetryPolicy;
  readonly #options: ResilienceOptions;
  readonly #contact: EndpointContact | undefined;

  readonly #clock: RetryClock;

  constructor(options: ResilienceOptions) {
    this.#policy = { ...DEFAULT_RETRY_POLICY, ...options.policy };
    this.#options = options;
    this.#contact = options.contact;
    this.#clock = options.clock ?? options.throttleWatch?.clock ?? SYSTEM_CLOCK;
    const { maxAttempts, baseDelayMs, maxDelayMs, notFoundWindowMs, unreachableAttemptsBeforeContact, throttleBudgetMs } = this.#policy;
    if (!(throttleBudgetMs >= 0)) throw invalid('policy.throttleBudgetMs', throttleBudgetMs);
    if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw invalid('policy.maxAttempts', maxAttempts);
    if (!(baseDelayMs >= 0)) throw invalid('policy.baseDelayMs', baseDelayMs);
    if (!(maxDelayMs >= baseDelayMs)) throw invalid('policy.maxDelayMs', maxDelayMs);
    if (!(notFoundWindowMs >= 0)) throw invalid('policy.notFoundWindowMs', notFoundWindowMs);
    if (!Number.isInteger(unreachableAttemptsBeforeContact) || unreachableAttemptsBeforeContact < 1) {
      throw invalid('policy.unreachableAttemptsBeforeContact', unreachableAttemptsBeforeContact);
    }
  }

  get notFoundWindowMs(): number {
    return this.#policy.notFoundWindowMs;
  }

  /**
   * Runs `call` in the limiter until it succeeds, fails permanently, runs out
   * of attempts or of throttling budget (the error then says retryable:
   * false) or the signal aborts. `retryNotFound` says whether a NOT_FOUND
   * may be retried right now. A refusal for the signing time after which
   * the client corrected its clock (details.clockSkewCorrected) is retried
   * once, at once, outside the count.
   */
  async run<T>(operation: string, call: () => Promise<T>, retryNotFound: () => boolean = () => false): Promise<T> {
    const { limiter, onRetry, onThrottled, throttleWatch } = this.#options;
    let retries = 0;
    let skewRetried = false;
    let throttledSince: number | undefined;
    const throttledCall = {};
    try {
      for (let attempt = 1; ; attempt++) {
        this.throwIfAborted(operation);
        try {
          const value = await limiter.run(() => {
            this.throwIfAborted(operation);
            return call();
          });
          return value;
        } catch (err) {
          // Whatever an attempt cut short by the abort ended with, it is not retried.
          this.throwIfAborted(operation);
          const error = toSnaplineError(err);
          const notFoundWindow = error.code === ErrorCodes.NOT_FOUND && retryNotFound();
          if (!error.retryable && !notFoundWindow) throw error;
          if (error.details?.clockSkewCorrected === true) {
            if (skewRetried) throw exhausted(error, attempt, 'still refused after the clock was corrected');
            skewRetried = true;
            onRetry?.(error, attempt, operation);
            continue;
          }
          if (this.#contact?.reached === false && foundNoEndpoint(error) && attempt >= this.#policy.unreachableAttemptsBeforeContact) {
            throw exhausted(error, attempt, 'no request of this run has reached the endpoint yet');
          }
          if (error.code === ErrorCodes.THROTTLED) {
            const now = this.#clock.now();
            if (throttledSince === undefined) {
              throttledSince = now;
              throttleWatch?.begin(throttledCall, now);
            }
            const throttledFor = now - throttledSince;
            if (throttledFor >= this.#policy.throttleBudgetMs) throw exhausted(error, attempt, `throttled for ${describeMs(throttledFor)}`);
            onThrottled?.(throttledFor, operation);
          } else if (!notFoundWindow && ++retries >= this.#policy.maxAttempts) {
            throw exhausted(error, attempt);
          }
          onRetry?.(error, attempt, operation);
          await this.backoff(attempt, operation);
        }
      }
    } finally {
      throttleWatch?.end(throttledCall);
    }
  }

  /** Sleeps before retry number `attempt`: half of the capped exponential delay fixed, half random. */
  async backoff(attempt: number, operation: string): Promise<void> {
    const { baseDelayMs, maxDelayMs } = this.#policy;
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(attempt - 1, 30));
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    try {
      await this.#clock.sleep(delay, this.#options.signal);
    } catch {
      this.throwIfAborted(operation);
    }
  }

  /** INTERRUPTED once the signal aborts, saying why (the signal's SnaplineError, as "interrupted by SIGINT") and while doing what. */
  throwIfAborted(operation: string): void {
    const signal = this.#options.signal;
    if (signal?.aborted) {
      const why = signal.reason instanceof SnaplineError ? signal.reason.message : 'interrupted';
      throw new SnaplineError(ErrorCodes.INTERRUPTED, `${why} while ${operation}`, { cause: signal.reason });
    }
  }

  /**
   * Pages of a listing, each page fetched in the limiter and retried like a
   * call. A failed page restarts the listing after the last block already
   * yielded (or where it began), so pages already handed out are not repeated.
   */
  async *pages<T extends { index: number }>(
    operation: string,
    open: (options: ListOptions) => AsyncIterable<BlockPage<T>>,
    options: ListOptions,
  ): AsyncGenerator<BlockPage<T>> {
    let resumeAt = options.startingBlockIndex;
    let iterator = open(options)[Symbol.asyncIterator]();
    try {
      while (true) {
        const result = await this.run(operation, async () => {
          try {
            return await iterator.next();
          } catch (err) {
            iterator = open({ ...options, ...(resumeAt === undefined ? {} : { startingBlockIndex: resumeAt }) })[Symbol.asyncIterator]();
            throw err;
          }
        });
        if (result.done === true) return;
        const last = result.value.blocks.at(-1);
        if (last !== undefined) resumeAt = last.index + 1;
        yield result.value;
      }
    } finally {
      await iterator.return?.();
    }
  }
}

/**
 * Wraps a writer with the limiter and retries (see ResilienceOptions).
 * Retryable errors are retried with jittered exponential backoff, up to
 * maxAttempts, throttling for up to throttleBudgetMs; NOT_FOUND
 * from putBlock or completeSnapshot is retried while the snapshot is younger
 * than notFoundWindowMs; any other error fails at once. startSnapshot gets a
 * client token when the caller gave none, so its retries cannot start a
 * second snapshot.
 */
export function resilientWriter(inner: SnapshotWriter, options: WriterResilienceOptions): SnapshotWriter {
  const retrier = new Retrier(options);
  const startedAt = new Map<string, number>();
  const created = performance.now();
  for (const id of options.newSnapshotIds ?? []) startedAt.set(id, created);
  const young = (snapshotId: string) => () => {
    const start = startedAt.get(snapshotId);
    return start !== undefined && performance.now() - start < retrier.notFoundWindowMs;
  };

  return {
    async startSnapshot(input: StartSnapshotInput): Promise<StartedSnapshot> {
      const idempotent = { ...input, clientToken: input.clientToken ?? randomUUID() };
      const started = await retrier.run('starting the snapshot', () => inner.startSnapshot(idempotent));
      startedAt.set(started.snapshotId, performance.now());
      return started;
    },
    putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number): Promise<void> {
      return retrier.run('uploading blocks', () => inner.putBlock(snapshotId, blockIndex, data, checksum, progress), young(snapshotId));
    },
    completeSnapshot(snapshotId: string, changedBlocksCount: number, aggregateChecksum: string): Promise<SnapshotStatus> {
      return retrier.run('completing the snapshot', () => inner.completeSnapshot(snapshotId, changedBlocksCount, aggregateChecksum), young(snapshotId));
    },
  };
}

/** Wraps a reader with the limiter and retries (see ResilienceOptions); NOT_FOUND is never retried. */
export function resilientReader(inner: SnapshotReader, options: ResilienceOptions): SnapshotReader {
  const retrier = new Retrier(options);
  return {
    listBlocks(snapshotId: string, listOptions: ListOptions = {}): AsyncIterable<BlockPage<BlockRef>> {
      return retrier.pages('listing the blocks of the snapshot', (o) => inner.listBlocks(snapshotId, o), listOptions);
    },
    listChangedBlocks(firstSnapshotId: string, secondSnapshotId: string, listOptions: ListOptions = {}): AsyncIterable<BlockPage<ChangedBlockRef>> {
      return retrier.pages('listing the changed blocks', (o) => inner.listChangedBlocks(firstSnapshotId, secondSnapshotId, o), listOptions);
    },
    getBlock(snapshotId: string, blockIndex: number, blockToken: string): Promise<{ data: Buffer; checksum: string }> {
      return retrier.run('reading blocks', () => inner.getBlock(snapshotId, blockIndex, blockToken));
    },
  };
}

/** One call retried as the wrappers above retry theirs (see ResilienceOptions), for a store whose calls are not a port's. */
export function retried<T>(operation: string, call: () => Promise<T>, options: ResilienceOptions): Promise<T> {
  return new Retrier(options).run(operation, call);
}

/** The last error of a call that ran out of attempts (for the reason `why`, if given): same code, no longer retryable. */
function exhausted(error: SnaplineError, attempts: number, why?: string): SnaplineError {
  return new SnaplineError(error.code, `${error.message} (gave up after ${attempts} attempts${why === undefined ? '' : `: ${why}`})`, {
    retryable: false,
    hint: error.hint,
    cause: error,
    details: { ...error.details, attempts },
  });
}

/** "45 s", "12 min". */
function describeMs(ms: number): string {
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
}

function invalid(option: string, value: number): SnaplineError {
  return new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `retry ${option} is invalid: ${value}`);
}
