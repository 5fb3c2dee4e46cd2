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

  /**
   * Runs `produce`, which adds the tasks, then waits for every task started:
   * a failure of the producer is kept like a task's (add() throws the first
   * failure, so the producer stops at it), and the first failure is thrown
   * once nothing runs any more.
   */
  async run(produce: () => Promise<void>): Promise<void> {
    try {
      await produce();
    } catch (error) {
      this.fail(error);
    }
    await this.drain();
  }

  /** Records a failure that happened outside the tasks (e.g. in the producer). */
  fail(error: unknown): void {
    this.#failure ??= { error };
  }

  #throwFailure(): void {
    if (this.#failure) throw this.#failure.error;
  }
}
