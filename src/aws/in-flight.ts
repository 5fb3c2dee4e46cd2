import { ErrorCodes, SnaplineError } from '../errors.js';

/**
 * The requests of one store under a run's abort signal. A request begun
 * before the signal aborts gets an abort signal of its own that the run's
 * abort fires: the request ends at once and its call fails INTERRUPTED,
 * whatever the transport made of the cut. A request begun after the abort
 * goes out unhindered, so that clean-up made after an interruption (stopping
 * tasks, deleting a scratch snapshot) still reaches the service; refusing new
 * calls is the caller's part (retry.ts refuses every attempt after an abort).
 * One listener on the run's signal whatever the number of requests.
 */
export class InFlightRequests {
  readonly #signal: AbortSignal | undefined;
  readonly #controllers = new Set<AbortController>();

  constructor(signal?: AbortSignal) {
    this.#signal = signal;
    signal?.addEventListener(
      'abort',
      () => {
        for (const controller of this.#controllers) controller.abort(signal.reason);
        this.#controllers.clear();
      },
      { once: true },
    );
  }

  /** Runs one request of `action` (IAM name, for the message) with the signal it should pass on to the transport. */
  async run<T>(action: string, request: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    if (this.#signal === undefined || this.#signal.aborted) return request(undefined);
    const controller = new AbortController();
    this.#controllers.add(controller);
    try {
      return await request(controller.signal);
    } catch (err) {
      if (controller.signal.aborted) throw new SnaplineError(ErrorCodes.INTERRUPTED, `${action} was interrupted`, { cause: err });
      throw err;
    } finally {
      this.#controllers.delete(controller);
    }
  }
}
