import { DEFAULT_RETRY_POLICY, SYSTEM_CLOCK, type RetryClock } from './retry.js';

/**
 * The retry strategy of an SDK client (the SDK's RetryStrategyV2), as much of
 * it as the wrapper below uses: the SDK's retry middleware asks for a token
 * before the first attempt and for a new one after each failure (a refusal
 * ends the call with the failure), and reads the token's retry count and
 * delay.
 */
interface RetryToken {
  getRetryCount(): number;
  getRetryDelay(): number;
}

interface RetryErrorInfo {
  errorType: 'THROTTLING' | 'TRANSIENT' | 'SERVER_ERROR' | 'CLIENT_ERROR';
}

interface RetryStrategy {
  acquireInitialRetryToken(scope: string): Promise<RetryToken>;
  refreshRetryTokenForRetry(token: RetryToken, errorInfo: RetryErrorInfo): Promise<RetryToken>;
  recordSuccess(token: RetryToken): void;
}

export interface ThrottleBudget {
  /** How long one call may go on being throttled; see RetryPolicy.throttleBudgetMs. */
  budgetMs: number;
  /** Where the wrapper measures and waits; default the system's. */
  clock?: RetryClock;
}

/** A token of the wrapper: the inner strategy's token, the call's retries so far and since when it is throttled. */
class BudgetToken implements RetryToken {
  constructor(
    readonly inner: RetryToken,
    readonly retries: number,
    readonly scope: string,
    readonly throttledSince: number | undefined,
    readonly delay: number,
  ) {}

  getRetryCount(): number {
    return this.retries;
  }

  getRetryDelay(): number {
    return this.delay;
  }
}

/**
 * The SDK's own strategy (standard or adaptive, with the connection's
 * max_attempts) with throttling given a budget in time: a throttled call the
 * strategy would give up on (out of attempts, or of its retry quota) is
 * retried after a capped exponential backoff, with a fresh token of the
 * strategy (the adaptive one's rate limiter still paces it), until the call
 * has been throttled for budgetMs. Other errors are the strategy's alone.
 */
export class ThrottleTolerantStrategy implements RetryStrategy {
  readonly #inner: RetryStrategy;
  readonly #budgetMs: number;
  readonly #clock: RetryClock;

  constructor(inner: RetryStrategy, budget: ThrottleBudget) {
    this.#inner = inner;
    this.#budgetMs = budget.budgetMs;
    this.#clock = budget.clock ?? SYSTEM_CLOCK;
  }

  async acquireInitialRetryToken(scope: string): Promise<RetryToken> {
    return new BudgetToken(await this.#inner.acquireInitialRetryToken(scope), 0, scope, undefined, 0);
  }

  async refreshRetryTokenForRetry(token: RetryToken, errorInfo: RetryErrorInfo): Promise<RetryToken> {
    const own = token as BudgetToken;
    const throttled = errorInfo.errorType === 'THROTTLING';
    const since = throttled ? (own.throttledSince ?? this.#clock.now()) : undefined;
    try {
      const next = await this.#inner.refreshRetryTokenForRetry(own.inner, errorInfo);
      return new BudgetToken(next, own.retries + 1, own.scope, since, next.getRetryDelay());
    } catch (refused) {
      if (since === undefined || this.#clock.now() - since >= this.#budgetMs) throw refused;
      const { baseDelayMs, maxDelayMs } = DEFAULT_RETRY_POLICY;
      const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(own.retries, 30));
      await this.#clock.sleep(ceiling / 2 + Math.random() * (ceiling / 2));
      return new BudgetToken(await this.#inner.acquireInitialRetryToken(own.scope), own.retries + 1, own.scope, since, 0);
    }
  }

  recordSuccess(token: RetryToken): void {
    this.#inner.recordSuccess((token as BudgetToken).inner);
  }
}

/**
 * Wraps the retry strategy an SDK client resolved from its configuration in
 * a ThrottleTolerantStrategy, once, for every later call of the client.
 */
export function withThrottleBudget<C extends { config: object }>(client: C, budget: ThrottleBudget): C {
  const config = client.config as { retryStrategy: () => Promise<RetryStrategy> };
  const resolve = config.retryStrategy;
  let wrapped: Promise<RetryStrategy> | undefined;
  config.retryStrategy = () => (wrapped ??= resolve().then((inner) => new ThrottleTolerantStrategy(inner, budget)));
  return client;
}
