import type { Duplex } from 'node:stream';

/** What reads reject with once the stream has ended (`cause` undefined) or failed. */
export class WireClosed extends Error {
  constructor(override readonly cause: Error | undefined) {
    super(cause?.message ?? 'the connection was closed');
  }
}

/**
 * The bytes a server sent, read in exact amounts: `read(n)` resolves once n
 * bytes have arrived. One reader at a time (the handshake), until
 * deliverTo() hands every later byte to a parser as it arrives. Once the
 * stream ends or fails, every read waiting or to come rejects with a
 * WireClosed, or with what fail() was given first.
 */
export class Wire {
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #waiter: { bytes: number; resolve: () => void; reject: (err: unknown) => void } | undefined;
  #failure: unknown;
  #stream: Duplex | undefined;
  #sink: { take(bytes: Uint8Array): void; closed(err: unknown): void } | undefined;
  readonly #onData = (chunk: Buffer) => {
    if (this.#sink !== undefined) return this.#sink.take(chunk);
    this.#chunks.push(chunk);
    this.#buffered += chunk.byteLength;
    if (this.#waiter !== undefined && this.#buffered >= this.#waiter.bytes) {
      const { resolve } = this.#waiter;
      this.#waiter = undefined;
      resolve();
    }
  };
  readonly #onEnd = () => this.fail(new WireClosed(undefined));
  readonly #onError = (err: Error) => this.fail(new WireClosed(err));

  /** Reads from `stream` from now on. */
  attach(stream: Duplex): void {
    this.detach();
    this.#stream = stream;
    stream.on('data', this.#onData);
    stream.on('end', this.#onEnd);
    stream.on('close', this.#onEnd);
    stream.on('error', this.#onError);
  }

  /**
   * Bytes `from` read into a buffer it reuses (a socket's onread): taken
   * before this returns, copied where they cannot be. Ignored unless `from`
   * is the stream attached (after STARTTLS, the TLS socket is).
   */
  received(from: Duplex, bytes: Uint8Array): void {
    if (from !== this.#stream) return;
    if (this.#sink !== undefined) this.#sink.take(bytes);
    else this.#onData(Buffer.from(bytes));
  }

  /** Stops reading the current stream (paused; bytes not yet read stay buffered here). */
  detach(): void {
    const stream = this.#stream;
    if (stream === undefined) return;
    stream.pause();
    stream.off('data', this.#onData);
    stream.off('end', this.#onEnd);
    stream.off('close', this.#onEnd);
    stream.off('error', this.#onError);
    this.#stream = undefined;
  }

  /** Bytes received and not read yet. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Makes every pending and later read reject with `err` (the first failure wins). */
  fail(err: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(err);
    this.#sink?.closed(err);
  }

  /**
   * From now on every byte goes to `take` as it arrives, synchronously (the
   * bytes buffered first), and the end or failure of the stream to `closed`;
   * read() is no longer used.
   */
  deliverTo(take: (bytes: Uint8Array) => void, closed: (err: unknown) => void): void {
    this.#sink = { take, closed };
    for (const chunk of this.#chunks.splice(0)) take(chunk);
    this.#buffered = 0;
    if (this.#failure !== undefined) closed(this.#failure);
    else this.#stream?.resume();
  }

  /** The next `bytes` bytes, as one buffer (a view of what arrived when it can be). */
  async read(bytes: number): Promise<Buffer> {
    if (bytes === 0) return Buffer.alloc(0);
    await this.#need(bytes);
    const first = this.#chunks[0]!;
    if (first.byteLength >= bytes) {
      const out = first.subarray(0, bytes);
      this.#consume(bytes);
      return out;
    }
    const out = Buffer.allocUnsafe(bytes);
    this.#copyInto(out, bytes);
    return out;
  }

  /** Copies the next `target.byteLength` bytes into `target`. */
  async readInto(target: Uint8Array): Promise<void> {
    await this.#need(target.byteLength);
    this.#copyInto(target, target.byteLength);
  }

  /** Drops the next `bytes` bytes. */
  async skip(bytes: number): Promise<void> {
    await this.#need(bytes);
    this.#consume(bytes);
  }

  #need(bytes: number): Promise<void> {
    if (this.#buffered >= bytes) return Promise.resolve();
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    if (this.#waiter !== undefined) return Promise.reject(new Error('two reads at once on one NBD connection'));
    return new Promise((resolve, reject) => {
      this.#waiter = { bytes, resolve, reject };
      this.#stream?.resume();
    });
  }

  #copyInto(target: Uint8Array, bytes: number): void {
    let done = 0;
    while (done < bytes) {
      const chunk = this.#chunks[0]!;
      const take = Math.min(chunk.byteLength, bytes - done);
      target.set(take === chunk.byteLength ? chunk : chunk.subarray(0, take), done);
      done += take;
      this.#consume(take);
    }
  }

  /** Drops `bytes` from the front; they are all buffered. */
  #consume(bytes: number): void {
    this.#buffered -= bytes;
    while (bytes > 0) {
      const chunk = this.#chunks[0]!;
      if (chunk.byteLength <= bytes) {
        this.#chunks.shift();
        bytes -= chunk.byteLength;
      } else {
        this.#chunks[0] = chunk.subarray(bytes);
        bytes = 0;
      }
    }
  }
}
