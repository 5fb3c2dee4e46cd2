import { ErrorCodes, SnaplineError } from '../errors.js';
import { failedToConnect } from './errors.js';

/**
 * Whether any request of a run has had an outcome from the endpoint yet: an
 * answer, an error answer, a connection that broke or timed out, a body of
 * the wrong length. Only failures to connect at all (connection refused, no
 * such host, no route: see failedToConnect) leave it unset. InFlightRequests
 * sets it; the retrying wrappers read it (see RetryPolicy). One per session,
 * shared by every store of the session.
 */
export interface EndpointContact {
  reached: boolean;
}

export interface RequestOptions {
  /**
   * false: the run's abort does not cut this request; it runs to its end.
   * Default true.
   */
  cutOnAbort?: boolean;
}

/**
 * The requests of one store under a run's abort signal, and the session's
 * EndpointContact that every outcome of them marks.
 *
 * What an abort cuts. A request that only moves or reads data (block
 * transfers, part uploads, ranged reads, listings, descriptions), begun
 * before the abort, gets an abort signal of its own that the run's abort
 * fires: the request ends at once and its call fails INTERRUPTED, whatever
 * the transport made of the cut; the run's record of its work says what to
 * send again. A request that creates, seals or deletes remote state
 * (StartSnapshot, CompleteSnapshot, DeleteSnapshot, CreateTags, creating,
 * completing or aborting an upload, putting or deleting an archive or object,
 * starting a restore or a job) runs with { cutOnAbort: false }: it is never
 * cut, so its caller learns what the service did and can record it (a cut
 * after the service acted would leave a snapshot, upload, archive or job that
 * nothing knows of, or an index listing a deleted snapshot). Such a request
 * is one short exchange bounded by the transport's timeouts; the second
 * Ctrl-C (the CLI exits) remains the way out of it. Requests begun after the
 * abort go out unhindered (clean-up); refusing new calls is the caller's part
 * (retry.ts refuses every attempt after an abort).
 *
 * The listener on the run's signal is there only while cuttable requests are
 * in flight: a store that is idle holds none, so sessions opened one after
 * another on one long-lived signal do not pile listeners up on it.
 */
export class InFlightRequests {
  readonly #signal: AbortSignal | undefined;
  readonly #contact: EndpointContact;
  readonly #cuttable = new Set<AbortController>();
  readonly #onAbort = (): void => {
    for (const controller of this.#cuttable) controller.abort(this.#signal?.reason);
    this.#cuttable.clear();
  };

  /** Without `contact`, the store keeps one of its own. */
  constructor(signal?: AbortSignal, contact: EndpointContact = { reached: false }) {
    this.#signal = signal;
    this.#contact = contact;
  }

  /** Runs one request of `action` (IAM name, for the message) with the signal it should pass on to the transport. */
  async run<T>(action: string, request: (signal: AbortSignal | undefined) => Promise<T>, options: RequestOptions = {}): Promise<T> {
    const controller = options.cutOnAbort === false ? undefined : this.#register();
    try {
      const value = await request(controller?.signal);
      this.#contact.reached = true;
      return value;
    } catch (err) {
      if (controller?.signal.aborted) throw new SnaplineError(ErrorCodes.INTERRUPTED, `${action} was interrupted`, { cause: err });
      if (!failedToConnect(err)) this.#contact.reached = true;
      throw err;
    } finally {
      if (controller !== undefined) this.#release(controller);
    }
  }

  /** A controller the run's abort fires, or none when there is no signal or it has aborted already. */
  #register(): AbortController | undefined {
    const signal = this.#signal;
    if (signal === undefined || signal.aborted) return undefined;
    if (this.#cuttable.size === 0) signal.addEventListener('abort', this.#onAbort, { once: true });
    const controller = new AbortController();
    this.#cuttable.add(controller);
    return controller;
  }

  #release(controller: AbortController): void {
    if (this.#cuttable.delete(controller) && this.#cuttable.size === 0) this.#signal?.removeEventListener('abort', this.#onAbort);
  }
}
