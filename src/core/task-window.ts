/**
 * Runs async tasks with at most `size` of them unsettled at once. The first
 * failure is kept: add() and drain() throw it, later tasks are not started,
 * and the tasks already running are still awaited by drain() so that nothing
 * is left running behind the caller's back.
 */
export class TaskWindow {
  readonly #running = new Set<Promise<void>>();
  #failure: { error: unknown } | undefined;

  constructor(private readonly size: number = Infinity) {}

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  /** Waits for room, then starts `task`. Throws the first failure seen so far. */
  async add(task: () => Promise<void>): Promise<void> {
    while (this.#running.size >= this.size && !this.#failure) await Promise.race(this.#running);
    this.#throwFailure();
    const running: Promise<void> = task()
      .catch((error: unknown) => {
        this.#failure ??= { error };
      })
      .finally(() => this.#running.delete(running));
    this.#running.add(running);
  }

  /** Waits until every started task has settled; throws the first failure. */
  async drain(): Promise<void> {
    while (this.#running.size > 0) await Promise.all(this.#running);
    this.#throwFailure();
  }

  /** Records a failure that happened outside the tasks (e.g. in the producer). */
  fail(error: unknown): void {
    this.#failure ??= { error };
  }

  #throwFailure(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
