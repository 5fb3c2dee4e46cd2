import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Piscina } from 'piscina';
import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { abortError, untilAborted } from '../core/abort.js';
import { type BatchOutcome, type BlockBatch, BlockThreads, type KeptBlocks } from './block-threads.js';

export { startBlockThreadsEarly, type KeptBlocks } from './block-threads.js';

export interface ReadAndHashOptions {
  signal?: AbortSignal;
  /** Which blocks read are written into the buffer (absent: all; see KeptBlocks). */
  keep?: KeptBlocks;
}

/** The same path from src/hashing/ (tests) and dist/src/hashing/ (build). */
const WORKER_FILE = fileURLToPath(new URL('../../workers/hash.js', import.meta.url));
/** The worker's functions by name: the pool's tasks and results are typed from them. */
type HashWorker = typeof import('../../workers/hash.js');

export interface SlabDigests {
  /** 32 bytes per block, block i at [32*i, 32*i+32). */
  digests: Uint8Array;
  /** 1 where block i is all zeros, else 0. */
  zero: Uint8Array;
}

export interface HashPoolOptions {
  /** Worker threads; default os.availableParallelism(). */
  threads?: number;
}

/**
 * SHA-256 of 512 KiB blocks on a fixed set of worker threads. Data stays in
 * the caller's SharedArrayBuffer: workers read it in place, and must not see
 * it change until the returned promise settles.
 */
export class HashPool {
  readonly threads: number;
  /** The threads of sha256, sha256Moving and treeHash, loaded and started on the first of those calls (a backup makes none). */
  #piscina: Promise<Piscina> | undefined;
  /** Tasks handed to piscina and not yet settled, awaited by destroy(). */
  readonly #inFlight = new Set<Promise<unknown>>();
  /** A failure of the threads outside any task (a worker that cannot start). */
  #failure: Error | undefined;
  /** Shared buffers that sha256() copies unshared data into. */
  readonly #copies = new SharedBuffers();
  /** The threads of hashBlocks and readAndHashBlocks. */
  readonly #blocks: BlockThreads;
  #destroyed = false;

  constructor(options: HashPoolOptions = {}) {
    const threads = options.threads ?? availableParallelism();
    if (!Number.isSafeInteger(threads) || threads < 1) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `threads must be a whole number of at least 1, got ${String(threads)}`);
    }
    this.threads = threads;
    this.#blocks = new BlockThreads(threads);
  }

  /**
   * SHA-256 and zero flag of `blockCount` blocks starting at byte `offset` of
   * `buffer`, the blocks shared by all threads (BlockThreads). On abort it
   * rejects at once with INTERRUPTED (or the signal's SnaplineError reason);
   * the threads still finish the batch (a few milliseconds) and its result is
   * dropped.
   */
  async hashBlocks(buffer: SharedArrayBuffer, offset: number, blockCount: number, signal?: AbortSignal): Promise<SlabDigests> {
    this.#checkBlocks(buffer, offset, blockCount);
    if (signal?.aborted) throw abortError(signal);
    return untilAborted(this.#batch({ buffer, offset, blockCount, blockSize: BLOCK_SIZE }), signal);
  }

  /**
   * Reads `blockCount` blocks of a file or device (descriptor `fd`) from byte
   * `position` into `buffer` at `offset` (those `options.keep` asks for), and
   * gives the SHA-256 and zero flag of each, like hashBlocks. Each thread
   * reads a block and hashes it while it is in its cache, so the caller's
   * thread does neither. The source has
   * `available` bytes for these blocks; the rest of the last one is zeros. A
   * failed read is IO_FAILED and a source that ends early SOURCE_UNUSABLE,
   * with details { position, errno } or { endedAt }, of the first failed block;
   * no block is read after a failure. An abort is seen before the reads
   * start; once started they run to their end (a few milliseconds), so the
   * buffer is never written after the promise settles.
   */
  async readAndHashBlocks(
    fd: number,
    position: number,
    available: number,
    buffer: SharedArrayBuffer,
    offset: number,
    blockCount: number,
    options: ReadAndHashOptions = {},
  ): Promise<SlabDigests> {
    this.#checkBlocks(buffer, offset, blockCount);
    if (!Number.isSafeInteger(fd) || fd < 0 || !Number.isSafeInteger(position) || position < 0 || !Number.isSafeInteger(available) || available < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `fd, position and available must be whole numbers of at least 0, got ${fd}, ${position}, ${available}`);
    }
    const { signal, keep } = options;
    if (keep instanceof Uint8Array && keep.byteLength !== 33 * blockCount) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `keep must hold 33 bytes a block (${33 * blockCount}), got ${keep.byteLength}`);
    }
    if (signal?.aborted) throw abortError(signal);
    return this.#batch({ buffer, offset, blockCount, blockSize: BLOCK_SIZE, read: { fd, position, available, ...(keep === undefined ? {} : { keep }) } });
  }

  async #batch(batch: BlockBatch): Promise<SlabDigests> {
    let outcome: BatchOutcome;
    try {
      outcome = await this.#blocks.run(batch);
    } catch (err) {
      if (err instanceof SnaplineError) throw err;
      throw new SnaplineError(ErrorCodes.INTERNAL, `hash worker failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    if (!('failure' in outcome)) return outcome;
    const { failure } = outcome;
    if (failure.kind === 'sourceEnded') {
      throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `the source ended at byte ${failure.at}`, { details: { endedAt: failure.at } });
    }
    if (failure.kind === 'readFailed') {
      throw new SnaplineError(ErrorCodes.IO_FAILED, `reading at byte ${failure.at} failed: ${failure.errno}`, { details: { position: failure.at, errno: failure.errno } });
    }
    throw new SnaplineError(ErrorCodes.INTERNAL, `hash worker failed: ${failure.message}`);
  }

  #checkBlocks(buffer: SharedArrayBuffer, offset: number, blockCount: number): void {
    if (!Number.isSafeInteger(blockCount) || blockCount < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `blockCount must be a whole number of at least 0, got ${String(blockCount)}`);
    }
    this.#checkRange(buffer, offset, blockCount * BLOCK_SIZE, 'blockCount');
  }

  /**
   * SHA-256 of `data` as raw 32 bytes, computed in a worker so the calling
   * thread only copies: bytes in a SharedArrayBuffer are read in place, any
   * other buffer is copied into a pooled shared one first (a copy costs a
   * tenth of the hash). `data` must not change until the promise settles.
   */
  async sha256(data: Uint8Array): Promise<Uint8Array> {
    if (data.buffer instanceof SharedArrayBuffer) {
      this.#checkRange(data.buffer, data.byteOffset, data.byteLength, 'length');
      return this.#run('digest', { buffer: data.buffer, offset: data.byteOffset, length: data.byteLength });
    }
    const lease = this.#copies.lease(data.byteLength);
    try {
      new Uint8Array(lease, 0, data.byteLength).set(data);
      this.#checkRange(lease, 0, data.byteLength, 'length');
      return await this.#run('digest', { buffer: lease, offset: 0, length: data.byteLength });
    } finally {
      this.#copies.giveBack(lease);
    }
  }

  /**
   * SHA-256 of `data` in a worker without copying it: a Buffer that owns its
   * whole ArrayBuffer (as a fetched block does) is transferred to the worker
   * and back. Use the returned `data`: the one passed in is detached (empty)
   * from the call on. Other buffers go through sha256() and come back as they are.
   */
  async sha256Moving(data: Buffer): Promise<{ digest: Uint8Array; data: Buffer }> {
    const buffer = data.buffer;
    if (buffer instanceof SharedArrayBuffer || data.byteOffset !== 0 || data.byteLength !== buffer.byteLength) {
      return { digest: await this.sha256(data), data };
    }
    if (this.#destroyed) throw new SnaplineError(ErrorCodes.INTERNAL, 'the hash pool was used after destroy()');
    const task = { buffer, offset: 0, length: data.byteLength };
    const moved = await this.#run('digestMoved', task, undefined, [buffer]);
    return { digest: moved.digest, data: Buffer.from(moved.buffer, 0, task.length) };
  }

  /** SHA-256 tree hash (Glacier) of [offset, offset+length) as raw 32 bytes, computed in a worker. */
  async treeHash(buffer: SharedArrayBuffer, offset: number, length: number): Promise<Uint8Array> {
    this.#checkRange(buffer, offset, length, 'length');
    return this.#run('treeHash', { buffer, offset, length });
  }

  /** Lets the tasks in flight finish, then stops the threads. Idempotent; later calls are refused. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    await Promise.allSettled(this.#inFlight);
    await Promise.all([this.#piscina?.then((tasks) => tasks.destroy()), this.#blocks.close()]);
  }

  #checkRange(buffer: SharedArrayBuffer, offset: number, length: number, lengthName: string): void {
    if (this.#destroyed) throw new SnaplineError(ErrorCodes.INTERNAL, 'the hash pool was used after destroy()');
    if (!(buffer instanceof SharedArrayBuffer)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'buffer must be a SharedArrayBuffer (the workers read it in place)');
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `offset must be a byte offset of at least 0, got ${String(offset)}`);
    }
    if (!Number.isSafeInteger(length) || length < 0 || offset + length > buffer.byteLength) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `${lengthName} reaches past the buffer: ${String(length)} bytes at offset ${offset} of ${buffer.byteLength}`,
      );
    }
  }

  #tasks(): Promise<Piscina> {
    this.#piscina ??= import('piscina').then(({ Piscina }) => {
      // Two tasks queued per thread: a thread starts its next piece while the
      // main thread is still handling the last result (on a busy machine that
      // hand-off waits for a core).
      const tasks = new Piscina({ filename: WORKER_FILE, minThreads: this.threads, maxThreads: this.threads, concurrentTasksPerWorker: 2 });
      tasks.on('error', (err: Error) => {
        this.#failure ??= err;
      });
      return tasks;
    });
    return this.#piscina;
  }

  // Aborts are not passed to piscina: it would kill the thread of a running
  // task, and a result already on its way back then surfaces as a pool error.
  async #run<N extends keyof HashWorker>(name: N, task: Parameters<HashWorker[N]>[0], signal?: AbortSignal, transferList?: ArrayBuffer[]): Promise<ReturnType<HashWorker[N]>> {
    if (this.#failure !== undefined) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `hash workers failed: ${this.#failure.message}`, { cause: this.#failure });
    }
    const running: Promise<ReturnType<HashWorker[N]>> = this.#tasks().then((tasks) => tasks.run(task, transferList === undefined ? { name } : { name, transferList }));
    this.#inFlight.add(running);
    const settled = (): void => {
      this.#inFlight.delete(running);
    };
    running.then(settled, settled);
    try {
      return await (signal === undefined ? running : untilAborted(running, signal));
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      const reason = err instanceof Error ? err.message : String(err);
      throw new SnaplineError(ErrorCodes.INTERNAL, `hash worker failed: ${reason}`, { cause: err });
    }
  }
}

/**
 * Reusable SharedArrayBuffers of BLOCK_SIZE (or the size asked for when it
 * is larger). As many are held as are leased at once; a few are kept idle.
 */
class SharedBuffers {
  static readonly KEEP = 64;
  readonly #idle: SharedArrayBuffer[] = [];

  lease(length: number): SharedArrayBuffer {
    if (length > BLOCK_SIZE) return new SharedArrayBuffer(length);
    return this.#idle.pop() ?? new SharedArrayBuffer(BLOCK_SIZE);
  }

  giveBack(buffer: SharedArrayBuffer): void {
    if (buffer.byteLength === BLOCK_SIZE && this.#idle.length < SharedBuffers.KEEP) this.#idle.push(buffer);
  }
}
