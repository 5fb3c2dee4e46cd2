import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ErrorCodes, SnaplineError } from '../errors.js';

/** The same path from src/hashing/ (tests) and dist/src/hashing/ (build). */
const WORKER_FILE = fileURLToPath(new URL('../../workers/blocks.js', import.meta.url));

// The layout of a batch's state, as workers/blocks.js reads it.
/** Int32 index of the number of threads done with the batch (they touch its state no more). */
const SEEN = 2;
const HEADER_BYTES = 16;
const SLOT_BYTES = 64;
const TEXT_BYTES = SLOT_BYTES - 16;
const READ_FAILED = 1;
const SOURCE_ENDED = 2;

/** Blocks of a buffer to hash, read from a source first when `read` is given. */
export interface BlockBatch {
  buffer: SharedArrayBuffer;
  offset: number;
  blockCount: number;
  blockSize: number;
  /**
   * Read block i from byte position + i * blockSize of descriptor fd; the
   * source has `available` bytes from `position` on. `keep` says which blocks
   * read go into `buffer` (absent: all).
   */
  read?: { fd: number; position: number; available: number; keep?: KeptBlocks };
}

/**
 * Which blocks of a read batch are written into its buffer: none (only their
 * digests are wanted), or those whose digest differs from the one given for
 * them: 32 bytes a block, then a flag a block (1 where a digest is given). A
 * block not kept is hashed from the thread's own buffer, which stays in the
 * core's cache; the batch's buffer keeps the bytes it held there, except
 * where the digest given is the zero block's: such a block (one never
 * written before) is read into the batch's buffer whatever it holds.
 */
export type KeptBlocks = 'none' | Uint8Array;

/** What a batch gave: the digests (32 bytes a block) and zero flags, or its first failure in block order. */
export type BatchOutcome =
  | { digests: Uint8Array; zero: Uint8Array }
  | { failure: { kind: 'readFailed'; at: number; errno: string } | { kind: 'sourceEnded'; at: number } | { kind: 'unexpected'; message: string } };

/** Batches of up to this many blocks reuse the states of finished ones. */
const REUSED_STATE_BLOCKS = 64;
/** Finished states kept for reuse. */
const KEPT_STATES = 32;

/** A batch's state and the number of threads it was sent to. */
interface State {
  buffer: SharedArrayBuffer;
  header: Int32Array;
  recipients: number;
}

interface Pending {
  state: State;
  blockCount: number;
  settle: (outcome: BatchOutcome) => void;
  fail: (err: Error) => void;
}

/**
 * Plain worker threads (workers/blocks.js) that hash batches of blocks
 * together: each batch goes to every thread, the threads claim its blocks
 * from a shared counter, and the main thread hears once a batch, when its
 * last block is done. The threads start with the object, so that they are
 * ready by the time the caller has planned its first batch.
 */
export class BlockThreads {
  readonly #threads: number;
  #workers: Worker[];
  readonly #pending = new Map<number, Pending>();
  #nextId = 0;
  /** The thread the next batch goes to first: batches of fewer blocks than threads take turns, not thread 0 alone. */
  #nextThread = 0;
  /** States of finished batches, reused once every thread they were sent to is done with them. */
  readonly #finishedStates: State[] = [];
  /** Why the threads are unusable (one died), once they are. */
  #failure: Error | undefined;

  constructor(threads: number) {
    this.#threads = threads;
    const early = takeEarlyThreads(threads);
    this.#workers = early?.workers ?? spawnThreads(threads);
    for (const worker of this.#workers) this.#listen(worker);
    if (early?.failure !== undefined) this.#died(early.failure);
  }

  /**
   * Hashes a batch. Settles once no thread touches its blocks any more: after
   * a failure no further block is claimed and the claimed ones are finished.
   */
  run(batch: BlockBatch): Promise<BatchOutcome> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (batch.blockCount === 0) return Promise.resolve({ digests: new Uint8Array(0), zero: new Uint8Array(0) });
    const workers = this.#workers;
    const id = this.#nextId++;
    const recipients = Math.min(workers.length, batch.blockCount);
    const state = this.#lease(batch.blockCount, recipients);
    const done = new Promise<BatchOutcome>((settle, fail) => {
      this.#pending.set(id, { state, blockCount: batch.blockCount, settle, fail });
    });
    // Keep the process alive while a batch is out; idle threads do not.
    if (this.#pending.size === 1) for (const worker of workers) worker.ref();
    const message = { ...batch, id, state: state.buffer, threads: this.#threads };
    for (let t = 0; t < recipients; t += 1) workers[(this.#nextThread + t) % workers.length]!.postMessage(message);
    this.#nextThread = (this.#nextThread + recipients) % workers.length;
    return done;
  }

  /** A zeroed state for a batch: a finished one that no thread touches any more, else a new one. */
  #lease(blockCount: number, recipients: number): State {
    if (blockCount <= REUSED_STATE_BLOCKS) {
      const free = this.#finishedStates.findIndex((state) => Atomics.load(state.header, SEEN) === state.recipients);
      if (free >= 0) {
        const [state] = this.#finishedStates.splice(free, 1);
        new Uint8Array(state!.buffer).fill(0);
        state!.recipients = recipients;
        return state!;
      }
    }
    const buffer = new SharedArrayBuffer(HEADER_BYTES + this.#threads * SLOT_BYTES + 33 * Math.max(blockCount, REUSED_STATE_BLOCKS));
    return { buffer, header: new Int32Array(buffer, 0, HEADER_BYTES / 4), recipients };
  }

  /** Refuses new batches, waits for the batches out, then stops the threads. */
  async close(): Promise<void> {
    this.#failure ??= new SnaplineError(ErrorCodes.INTERNAL, 'the hash pool was used after destroy()');
    const pending = [...this.#pending.values()].map((entry) => new Promise((resolve) => {
      const { settle, fail } = entry;
      entry.settle = (outcome) => (settle(outcome), resolve(undefined));
      entry.fail = (err) => (fail(err), resolve(undefined));
    }));
    await Promise.all(pending);
    const workers = this.#workers;
    this.#workers = [];
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  #listen(worker: Worker): void {
    worker.on('message', (id: number) => this.#finished(id));
    worker.on('error', (err) => this.#died(err));
    worker.on('exit', (code) => {
      if (this.#workers.includes(worker)) this.#died(exitError(code));
    });
  }

  #finished(id: number): void {
    const entry = this.#pending.get(id);
    if (entry === undefined) return;
    this.#pending.delete(id);
    if (this.#pending.size === 0) for (const worker of this.#workers) worker.unref();
    entry.settle(outcomeOf(entry.state.buffer, this.#threads, entry.blockCount));
    if (entry.state.buffer.byteLength === HEADER_BYTES + this.#threads * SLOT_BYTES + 33 * REUSED_STATE_BLOCKS && this.#finishedStates.length < KEPT_STATES) {
      this.#finishedStates.push(entry.state);
    }
  }

  /**
   * A thread that dies leaves its claimed blocks unfinished: the other threads
   * are stopped, since they may still be writing the buffers of the batches
   * out, and once they have stopped every batch out fails; later ones fail at once.
   */
  #died(err: Error): void {
    const failure = (this.#failure ??= new SnaplineError(ErrorCodes.INTERNAL, `hash workers failed: ${err.message}`, { cause: err }));
    const workers = this.#workers;
    this.#workers = [];
    void Promise.allSettled(workers.map((worker) => worker.terminate())).then(() => {
      const pending = [...this.#pending.values()];
      this.#pending.clear();
      for (const entry of pending) entry.fail(failure);
    });
  }
}

/** Threads that keep no process alive, numbered for their failure slots. */
function spawnThreads(threads: number): Worker[] {
  return Array.from({ length: threads }, (_, index) => {
    const worker = new Worker(WORKER_FILE, { workerData: { index } });
    worker.unref();
    return worker;
  });
}

function exitError(code: number): Error {
  return new Error(`a hash thread exited with code ${code}`);
}

/** Threads started by startBlockThreadsEarly and not yet taken, with the first failure of any of them. */
let early: { workers: Worker[]; failure: Error | undefined } | undefined;

/**
 * Starts `threads` hash threads now, for the next BlockThreads of as many
 * threads to take: a command that will hash calls this before it loads its
 * modules and plans, so that the threads boot meanwhile, on the core the
 * command's own thread leaves idle. Threads nobody takes keep no process
 * alive. Calls while threads wait to be taken do nothing.
 */
export function startBlockThreadsEarly(threads = availableParallelism()): void {
  if (early !== undefined) return;
  const started: { workers: Worker[]; failure: Error | undefined } = { workers: spawnThreads(threads), failure: undefined };
  for (const worker of started.workers) {
    worker.on('error', (err) => (started.failure ??= err));
    worker.on('exit', (code) => (started.failure ??= exitError(code)));
  }
  early = started;
}

/** The early threads, when there are `threads` of them; ones of another number are stopped. */
function takeEarlyThreads(threads: number): { workers: Worker[]; failure: Error | undefined } | undefined {
  const taken = early;
  early = undefined;
  if (taken === undefined) return undefined;
  for (const worker of taken.workers) worker.removeAllListeners();
  if (taken.workers.length === threads) return taken;
  for (const worker of taken.workers) void worker.terminate();
  return undefined;
}

/** Reads a finished batch's state: its lowest failed block's failure, else a copy of its digests and flags. */
function outcomeOf(state: SharedArrayBuffer, threads: number, blockCount: number): BatchOutcome {
  const view = new DataView(state);
  let first: number | undefined;
  for (let t = 0; t < threads; t += 1) {
    const slot = HEADER_BYTES + t * SLOT_BYTES;
    const block = view.getInt32(slot, true) - 1;
    if (block >= 0 && (first === undefined || block < view.getInt32(first, true) - 1)) first = slot;
  }
  if (first !== undefined) {
    const kind = view.getInt32(first + 4, true);
    const at = view.getFloat64(first + 8, true);
    const text = Buffer.from(state, first + 16, TEXT_BYTES).toString('utf8').replace(/\0+$/, '');
    if (kind === READ_FAILED) return { failure: { kind: 'readFailed', at, errno: text } };
    if (kind === SOURCE_ENDED) return { failure: { kind: 'sourceEnded', at } };
    return { failure: { kind: 'unexpected', message: text } };
  }
  const results = new Uint8Array(33 * blockCount);
  results.set(new Uint8Array(state, HEADER_BYTES + threads * SLOT_BYTES, 33 * blockCount));
  return { digests: results.subarray(0, 32 * blockCount), zero: results.subarray(32 * blockCount) };
}
