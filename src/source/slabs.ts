import { BLOCK_SIZE } from '../core/constants.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { abortError } from '../core/abort.js';

/** One lease of a pooled buffer; valid until release(). */
export interface Slab {
  readonly buffer: SharedArrayBuffer;
  /** A view over the whole slab. */
  readonly bytes: Uint8Array;
  /** Block i of the slab as a Uint8Array view (no copy). */
  block(i: number): Uint8Array;
  /**
   * Returns the slab to the pool; idempotent. The views stay readable but the
   * bytes belong to the next holder: release only once nothing reads them.
   */
  release(): void;
}

export interface SlabPoolOptions {
  slabCount: number;
  blocksPerSlab: number;
  /** Allocate each slab on its first acquire instead of all of them at once: for a pool that most uses never fill. */
  onDemand?: boolean;
}

interface Waiter {
  grant(buffer: SharedArrayBuffer): void;
}

/**
 * A fixed set of SharedArrayBuffer slabs of `blocksPerSlab` blocks each,
 * handed out one holder at a time. Memory is slabCount * slabBytes, allocated
 * once (all at construction, or each on first need with onDemand); waiting
 * acquirers are served first come, first served.
 */
export class SlabPool {
  readonly slabCount: number;
  readonly blocksPerSlab: number;
  readonly slabBytes: number;
  readonly #free: SharedArrayBuffer[] = [];
  readonly #waiters: Waiter[] = [];
  /** Slabs not allocated yet (an on-demand pool's). */
  #unallocated: number;

  constructor(options: SlabPoolOptions) {
    this.slabCount = positiveInteger('slabCount', options.slabCount);
    this.blocksPerSlab = positiveInteger('blocksPerSlab', options.blocksPerSlab);
    this.slabBytes = this.blocksPerSlab * BLOCK_SIZE;
    this.#unallocated = options.onDemand ? this.slabCount : 0;
    for (let i = this.#unallocated; i < this.slabCount; i += 1) this.#free.push(new SharedArrayBuffer(this.slabBytes));
  }

  /**
   * Resolves with a free slab; waits while all are in use. Rejects with
   * INTERRUPTED if `signal` aborts before a slab is granted (nothing is held then).
   */
  acquire(signal?: AbortSignal): Promise<Slab> {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    let buffer = this.#free.pop();
    if (buffer === undefined && this.#unallocated > 0) {
      this.#unallocated -= 1;
      buffer = new SharedArrayBuffer(this.slabBytes);
    }
    if (buffer !== undefined) return Promise.resolve(this.#lease(buffer));
    return new Promise<Slab>((resolve, reject) => {
      const onAbort = (): void => {
        const index = this.#waiters.indexOf(waiter);
        if (index !== -1) this.#waiters.splice(index, 1);
        reject(abortError(signal!));
      };
      const waiter: Waiter = {
        grant: (granted) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.#lease(granted));
        },
      };
      this.#waiters.push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  #lease(buffer: SharedArrayBuffer): Slab {
    return new SlabLease(buffer, this.blocksPerSlab, () => this.#giveBack(buffer));
  }

  #giveBack(buffer: SharedArrayBuffer): void {
    const waiter = this.#waiters.shift();
    if (waiter === undefined) this.#free.push(buffer);
    else waiter.grant(buffer);
  }
}

class SlabLease implements Slab {
  readonly buffer: SharedArrayBuffer;
  readonly bytes: Uint8Array;
  readonly #blocksPerSlab: number;
  #giveBack: (() => void) | undefined;

  constructor(buffer: SharedArrayBuffer, blocksPerSlab: number, giveBack: () => void) {
    this.buffer = buffer;
    this.bytes = new Uint8Array(buffer);
    this.#blocksPerSlab = blocksPerSlab;
    this.#giveBack = giveBack;
  }

  block(i: number): Uint8Array {
    if (!Number.isInteger(i) || i < 0 || i >= this.#blocksPerSlab) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block ${i} is outside the slab (0..${this.#blocksPerSlab - 1})`);
    }
    return this.bytes.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
  }

  release(): void {
    const giveBack = this.#giveBack;
    this.#giveBack = undefined;
    giveBack?.();
  }
}

/** One block of zeros shared by every zero slab; nobody writes it. */
let zeroBlock: Uint8Array | undefined;

/**
 * A stand-in slab for `blockCount` blocks that read as zeros (a hole of the
 * source): block(i) gives one shared all-zero block, `bytes` covers that one
 * block only, release() does nothing. Read only: never write into it.
 */
export function zeroSlab(blockCount: number): Slab {
  positiveInteger('blockCount', blockCount);
  zeroBlock ??= new Uint8Array(new SharedArrayBuffer(BLOCK_SIZE));
  const bytes = zeroBlock;
  return {
    buffer: bytes.buffer as SharedArrayBuffer,
    bytes,
    block(i: number): Uint8Array {
      if (!Number.isInteger(i) || i < 0 || i >= blockCount) {
        throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `block ${i} is outside the slab (0..${blockCount - 1})`);
      }
      return bytes;
    },
    release(): void {},
  };
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${name} must be a whole number of at least 1, got ${String(value)}`);
  }
  return value;
}
