import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { DEFAULT_BLOCK_SIZES, Negotiation, type NbdBlockSizes } from './handshake.js';
import {
  BASE_ALLOCATION,
  Command,
  MAX_REPLY_PAYLOAD,
  REPLY_FLAG_DONE,
  REPLY_TYPE_ERROR_BIT,
  ReplyType,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_HEADER_BYTES,
  STRUCTURED_REPLY_MAGIC,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
  encodeRequest,
  errnoName,
} from './protocol.js';
import type { NbdAddress } from './url.js';
import { type Wire, WireClosed } from './wire.js';

export type { NbdBlockSizes } from './handshake.js';

export interface NbdConnectOptions {
  /** Ask for structured replies (default true). Without them there is no block status. */
  structuredReplies?: boolean;
  /** Metadata contexts to select for block status (default base:allocation); ignored without structured replies. */
  metaContexts?: readonly string[];
  /** Most requests in flight on the connection; more wait their turn (default 32). */
  maxInFlight?: number;
  /** Longest the connection and handshake may take before it is given up (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Longest the server may send nothing while requests wait for replies before the connection is given up (default 120 s). */
  replyTimeoutMs?: number;
  /** Aborting it gives up the connection and handshake at once, with the abort error (not the connection once made: see close()). */
  signal?: AbortSignal;
}

/** What the server said of the export on entering transmission. */
export interface NbdExportInfo {
  name: string;
  sizeBytes: number;
  /** The raw transmission flags. */
  flags: number;
  readOnly: boolean;
  canFlush: boolean;
  canWriteZeroes: boolean;
  canTrim: boolean;
  canMultiConn: boolean;
  blockSizes: NbdBlockSizes;
  structuredReplies: boolean;
  /** The metadata contexts selected, by name (block status answers for each). */
  metaContexts: string[];
  /** Whether the connection runs over TLS. */
  tls: boolean;
}

/** Consecutive bytes [offset, offset + length) sharing one status of a metadata context. */
export interface NbdExtent {
  offset: number;
  length: number;
  flags: number;
}

/**
 * The largest request this client sends, even where the server takes more.
 * Larger requests save little per byte and cost the server more: qemu-nbd
 * takes a buffer for each request, and the larger they are, the more of them
 * it maps anew and faults in page by page (at 2 MiB all of them, which costs
 * it three to four times the CPU time per byte of 256 KiB requests, served
 * from its heap).
 */
const MAX_REQUEST_BYTES = 256 * 1024;
/** The largest range a block status or write zeroes request covers at once (its length field is 32 bits). */
const MAX_RANGE_BYTES = 2 ** 31;

/**
 * Opens a connection to an NBD export: fixed newstyle handshake, STARTTLS
 * first for nbds:// URLs, structured replies and metadata contexts when the
 * server has them, then NBD_OPT_GO (NBD_OPT_EXPORT_NAME on servers without
 * it). A refusal (no such export, TLS required, unreachable server) is
 * SOURCE_UNUSABLE naming the URL.
 */
export async function connectNbd(address: NbdAddress, options: NbdConnectOptions = {}): Promise<NbdClient> {
  const negotiation = await Negotiation.open(address, options.handshakeTimeoutMs, undefined, options.signal);
  try {
    const info = await negotiation.run(async () => {
      await negotiation.startTls();
      const structured = options.structuredReplies !== false && (await negotiation.structuredReplies());
      const contexts = structured ? await negotiation.setMetaContexts(options.metaContexts ?? [BASE_ALLOCATION]) : new Map<number, string>();
      return { ...(await negotiation.go()), structured, contexts };
    });
    return new NbdClient(address, negotiation.socket, negotiation.wire, info, {
      maxInFlight: options.maxInFlight ?? 32,
      replyTimeoutMs: options.replyTimeoutMs ?? 120_000,
    });
  } catch (err) {
    negotiation.quit();
    throw err;
  }
}

/**
 * The metadata contexts the server offers on the export for `queries`
 * (NBD_OPT_LIST_META_CONTEXT; no queries: all it lists), then ends the
 * session without entering transmission. Empty when the server has no
 * structured replies or metadata contexts.
 */
export async function listNbdMetaContexts(address: NbdAddress, queries: readonly string[] = [], handshakeTimeoutMs?: number): Promise<string[]> {
  const negotiation = await Negotiation.open(address, handshakeTimeoutMs);
  try {
    return await negotiation.run(async () => {
      await negotiation.startTls();
      return (await negotiation.structuredReplies()) ? await negotiation.listMetaContexts(queries) : [];
    });
  } finally {
    negotiation.quit();
  }
}

/** One request waiting for its reply. */
interface Pending {
  command: number;
  offset: number;
  length: number;
  /** Where a read's bytes go. */
  target?: Uint8Array;
  /** The ranges of a structured read covered by data or hole chunks so far (see coverRange). */
  covered: CoveredRanges;
  /** Block status extents by context id. */
  extents?: Map<number, NbdExtent[]>;
  /** The first error the server reported for this request. */
  error?: { errno: number; message: string };
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * A connection in the transmission phase. Requests of any kind may be in
 * flight together (up to maxInFlight; the rest wait), and their replies come
 * in any order. A server error fails the one request (IO_FAILED, with the
 * errno and the server's message); a broken protocol, a closed connection or
 * a server silent for replyTimeoutMs while requests wait fails every request
 * in flight and all later ones (IO_FAILED).
 */
export class NbdClient {
  readonly info: NbdExportInfo;
  readonly #pending = new Map<number, Pending>();
  readonly #slotWaiters: Array<() => void> = [];
  readonly #contextNames: Map<number, string>;
  readonly #requestBytes: number;
  #cookie = 0;
  #corked = false;
  /** Where the reply parser puts the next bytes, and what it does once they are in. */
  #step: { into: Uint8Array; filled: number; then: () => void } = { into: new Uint8Array(0), filled: 0, then: () => undefined };
  /** Reply headers and small payloads are gathered here. */
  readonly #scratch = Buffer.allocUnsafe(16);
  #failure: SnaplineError | undefined;
  #closing: Promise<void> | undefined;

  constructor(
    readonly address: NbdAddress,
    private readonly socket: Socket | TLSSocket,
    private readonly wire: Wire,
    negotiated: { sizeBytes: number; flags: number; blockSizes: NbdBlockSizes; tls: boolean; structured: boolean; contexts: Map<number, string> },
    private readonly limits: { maxInFlight: number; replyTimeoutMs: number },
  ) {
    const { flags, blockSizes } = negotiated;
    this.info = {
      name: address.exportName,
      sizeBytes: negotiated.sizeBytes,
      flags,
      readOnly: (flags & TFLAG_READ_ONLY) !== 0,
      canFlush: (flags & TFLAG_SEND_FLUSH) !== 0,
      canWriteZeroes: (flags & TFLAG_SEND_WRITE_ZEROES) !== 0,
      canTrim: (flags & TFLAG_SEND_TRIM) !== 0,
      canMultiConn: (flags & TFLAG_CAN_MULTI_CONN) !== 0,
      blockSizes,
      structuredReplies: negotiated.structured,
      metaContexts: [...negotiated.contexts.values()],
      tls: negotiated.tls,
    };
    this.#contextNames = negotiated.contexts;
    const minimum = Math.max(1, blockSizes.minimum);
    const largest = Math.min(MAX_REQUEST_BYTES, blockSizes.maximum || DEFAULT_BLOCK_SIZES.maximum);
    this.#requestBytes = Math.max(minimum, largest - (largest % minimum));
    socket.on('timeout', () => {
      if (this.#pending.size === 0) return;
      const seconds = limits.replyTimeoutMs / 1000;
      const waiting = this.#pending.size;
      this.#fail(
        new SnaplineError(ErrorCodes.IO_FAILED, `NBD server ${address.url} sent nothing for ${seconds} s with ${waiting} request${waiting === 1 ? '' : 's'} unanswered`, {
          details: { url: address.url },
        }),
      );
      socket.destroy();
    });
    this.#nextReply();
    wire.deliverTo(
      (bytes) => this.#receive(bytes),
      (err) => this.#fail(err instanceof SnaplineError ? err : this.#closedError(err instanceof WireClosed ? err.cause : err)),
    );
  }

  /**
   * Reads [offset, offset + target.byteLength) into `target`, split into
   * requests of at most 256 KiB (and the server's maximum payload) sent at
   * once. Holes the server reports come out as zeros. A range not aligned to
   * the export's minimum block size is read rounded out to it.
   */
  async read(target: Uint8Array, offset: number): Promise<void> {
    this.#checkBounds('read', offset, target.byteLength);
    const aligned = this.#alignOut(offset, target.byteLength);
    if (aligned === undefined) return this.#readAligned(target, offset);
    const whole = new Uint8Array(aligned.length);
    await this.#readAligned(whole, aligned.offset);
    target.set(whole.subarray(offset - aligned.offset, offset - aligned.offset + target.byteLength));
  }

  async #readAligned(target: Uint8Array, offset: number): Promise<void> {
    this.#checkRange('read', offset, target.byteLength);
    await this.#inRequests(target.byteLength, (done, length) =>
      this.#request(Command.READ, 0, offset + done, length, { target: target.subarray(done, done + length) }),
    );
  }

  /**
   * Writes `data` at `offset` (split like reads). Not durable until flush().
   * A range not aligned to the export's minimum block size is written as a
   * read-modify-write of the blocks it covers, which is not atomic against
   * other requests in flight on those blocks.
   */
  async write(data: Uint8Array, offset: number): Promise<void> {
    this.#checkWritable('write');
    this.#checkBounds('write', offset, data.byteLength);
    const aligned = this.#alignOut(offset, data.byteLength);
    if (aligned === undefined) return this.#writeAligned(data, offset);
    const whole = new Uint8Array(aligned.length);
    await this.#readAligned(whole, aligned.offset);
    whole.set(data, offset - aligned.offset);
    await this.#writeAligned(whole, aligned.offset);
  }

  async #writeAligned(data: Uint8Array, offset: number): Promise<void> {
    this.#checkRange('write', offset, data.byteLength);
    await this.#inRequests(data.byteLength, (done, length) =>
      this.#request(Command.WRITE, 0, offset + done, length, { payload: data.subarray(done, done + length) }),
    );
  }

  /** `bytes` cut into requests of at most #requestBytes, sent together; settles when all have (see settleAll). */
  #inRequests(bytes: number, send: (done: number, length: number) => Promise<void>): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let done = 0; done < bytes; done += this.#requestBytes) parts.push(send(done, Math.min(this.#requestBytes, bytes - done)));
    return settleAll(parts);
  }

  /**
   * Makes [offset, offset + length) read as zeros with NBD_CMD_WRITE_ZEROES
   * (the server may leave a hole). Needs info.canWriteZeroes. The parts of
   * the range that cover a minimum block only in part are written as zero
   * bytes (see write()).
   */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable('write zeros to');
    if (!this.info.canWriteZeroes) throw new SnaplineError(ErrorCodes.INTERNAL, `NBD export ${this.address.url} cannot write zeros: write zero bytes instead`);
    this.#checkBounds('zero', offset, length);
    const end = offset + length;
    const minimum = Math.max(1, this.info.blockSizes.minimum);
    const innerStart = Math.min(end, Math.ceil(offset / minimum) * minimum);
    const innerEnd = end === this.info.sizeBytes ? end : Math.max(innerStart, Math.floor(end / minimum) * minimum);
    await settleAll([
      ...(innerEnd > innerStart ? [this.#zeroAligned(innerStart, innerEnd - innerStart)] : []),
      ...(innerStart > offset ? [this.write(new Uint8Array(innerStart - offset), offset)] : []),
      ...(innerEnd < end ? [this.write(new Uint8Array(end - innerEnd), innerEnd)] : []),
    ]);
  }

  async #zeroAligned(offset: number, length: number): Promise<void> {
    this.#checkRange('zero', offset, length);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += MAX_RANGE_BYTES) {
      parts.push(this.#request(Command.WRITE_ZEROES, 0, offset + done, Math.min(MAX_RANGE_BYTES, length - done)));
    }
    await settleAll(parts);
  }

  /** Makes every write the server has acknowledged durable; a no-op where the server has no flush. */
  async flush(): Promise<void> {
    if (!this.info.canFlush) return;
    await this.#request(Command.FLUSH, 0, 0, 0);
  }

  /**
   * The status of the bytes from `offset` on, for each selected metadata
   * context (by name): consecutive extents starting at `offset`, covering at
   * least one byte and perhaps less or more than `length`. Needs a selected
   * context. The range asked is clipped at the export's end; the extents are
   * as the server sent them.
   */
  async blockStatus(offset: number, length: number): Promise<Map<string, NbdExtent[]>> {
    if (this.#contextNames.size === 0) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `NBD export ${this.address.url}: block status needs a selected metadata context`);
    }
    const asked = Math.min(length, MAX_RANGE_BYTES, this.info.sizeBytes - offset);
    this.#checkRange('query the status of', offset, asked);
    const extents = new Map<number, NbdExtent[]>();
    await this.#request(Command.BLOCK_STATUS, 0, offset, asked, { extents });
    const byName = new Map<string, NbdExtent[]>();
    for (const [id, name] of this.#contextNames) {
      const list = extents.get(id);
      if (list === undefined || list.length === 0) throw this.#broken(`answered a block status request without extents for ${name}`);
      byName.set(name, list);
    }
    return byName;
  }

  /**
   * Ends the session: NBD_CMD_DISC when nothing is in flight, else a hard
   * disconnect that fails the requests in flight, and all later ones, with
   * `reason` (default IO_FAILED, closed by snapline). Idempotent: the first
   * call's reason holds.
   */
  close(reason?: SnaplineError): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const idle = this.#pending.size === 0 && this.#failure === undefined;
      this.#fail(reason ?? new SnaplineError(ErrorCodes.IO_FAILED, `the connection to NBD server ${this.address.url} was closed by snapline`));
      if (!idle || this.socket.destroyed) {
        this.socket.destroy();
        resolve();
        return;
      }
      this.socket.write(encodeRequest(Command.DISC, 0, this.#nextCookie(), 0, 0));
      this.socket.end(() => {
        this.socket.destroy();
        resolve();
      });
    });
    return this.#closing;
  }

  #checkWritable(what: string): void {
    if (this.info.readOnly) {
      throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `NBD export ${this.address.url} is read-only: cannot ${what} it`, { details: { url: this.address.url } });
    }
  }

  #checkBounds(what: string, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.info.sizeBytes) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `cannot ${what} ${length} bytes at byte ${offset} of NBD export ${this.address.url}, which holds ${this.info.sizeBytes} bytes`,
      );
    }
  }

  /**
   * [offset, offset + length) rounded out to the export's minimum block size
   * (its end clipped at the export's end, which the spec lets a request
   * reach unaligned); undefined when the range is aligned already.
   */
  #alignOut(offset: number, length: number): { offset: number; length: number } | undefined {
    const minimum = Math.max(1, this.info.blockSizes.minimum);
    const start = Math.floor(offset / minimum) * minimum;
    const end = Math.min(this.info.sizeBytes, Math.ceil((offset + length) / minimum) * minimum);
    if (length === 0 || (start === offset && end === offset + length)) return undefined;
    return { offset: start, length: end - start };
  }

  /** Bounds and alignment of a request as sent. */
  #checkRange(what: string, offset: number, length: number): void {
    const { minimum } = this.info.blockSizes;
    this.#checkBounds(what, offset, length);
    if (minimum > 1 && (offset % minimum !== 0 || (length % minimum !== 0 && offset + length !== this.info.sizeBytes))) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `cannot ${what} ${length} bytes at byte ${offset} of NBD export ${this.address.url}: not aligned to its ${minimum}-byte blocks`,
      );
    }
  }

  #nextCookie(): number {
    do this.#cookie = (this.#cookie + 1) >>> 0;
    while (this.#pending.has(this.#cookie));
    return this.#cookie;
  }

  async #request(
    command: number,
    flags: number,
    offset: number,
    length: number,
    extra: { target?: Uint8Array; payload?: Uint8Array; extents?: Map<number, NbdExtent[]> } = {},
  ): Promise<void> {
    if (length === 0 && command !== Command.FLUSH) return;
    while (this.#pending.size >= this.limits.maxInFlight && this.#failure === undefined) {
      await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    }
    if (this.#failure !== undefined) throw this.#failure;
    const cookie = this.#nextCookie();
    const done = new Promise<void>((resolve, reject) => {
      this.#pending.set(cookie, { command, offset, length, target: extra.target, extents: extra.extents, covered: [], resolve, reject });
    });
    // The server's silence counts only while a reply is awaited.
    if (this.#pending.size === 1) this.socket.setTimeout(this.limits.replyTimeoutMs);
    const header = encodeRequest(command, flags, cookie, offset, command === Command.FLUSH ? 0 : length);
    this.#send(header);
    if (extra.payload !== undefined) this.#send(extra.payload);
    try {
      await done;
    } finally {
      this.#slotWaiters.shift()?.();
    }
  }

  /**
   * Writes `bytes` to the socket, corked until the current callbacks and
   * promise reactions have run: the requests a read is cut into, or those
   * that replies let out, go out in one system call.
   */
  #send(bytes: Uint8Array): void {
    if (!this.#corked) {
      this.#corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(bytes);
  }

  /**
   * Takes the bytes the server sent as they arrive, synchronously: headers
   * and small payloads are gathered, the data of a read goes straight into
   * the read's target. A protocol violation fails the connection and drops
   * the rest.
   */
  #receive(bytes: Uint8Array): void {
    let at = 0;
    try {
      while (at < bytes.byteLength && this.#failure === undefined) {
        const step = this.#step;
        const take = Math.min(bytes.byteLength - at, step.into.byteLength - step.filled);
        step.into.set(take === bytes.byteLength ? bytes : bytes.subarray(at, at + take), step.filled);
        step.filled += take;
        at += take;
        if (step.filled === step.into.byteLength) step.then();
      }
    } catch (err) {
      // Thrown only by #broken, which has failed the connection already.
      if (!(err instanceof SnaplineError)) throw err;
    }
  }

  /** The next `bytes` bytes are gathered (a few into the scratch buffer), then given to `then`. */
  #expect(bytes: number, then: (gathered: Buffer) => void): void {
    const gathered = bytes <= this.#scratch.byteLength ? this.#scratch.subarray(0, bytes) : Buffer.allocUnsafe(bytes);
    this.#step = { into: gathered, filled: 0, then: () => then(gathered) };
  }

  /** The next `into.byteLength` bytes (at least one) go straight into `into`, then `then` runs. */
  #expectData(into: Uint8Array, then: () => void): void {
    this.#step = { into, filled: 0, then };
  }

  readonly #nextReply = (): void => this.#expect(4, (magic) => this.#reply(magic.readUInt32BE(0)));

  #reply(magic: number): void {
    if (magic === SIMPLE_REPLY_MAGIC) this.#expect(SIMPLE_REPLY_BYTES - 4, (rest) => this.#simpleReply(rest));
    else if (magic === STRUCTURED_REPLY_MAGIC && this.info.structuredReplies) this.#expect(STRUCTURED_HEADER_BYTES - 4, (header) => this.#structuredChunk(header));
    else throw this.#broken(`sent a reply with magic 0x${magic.toString(16)}`);
  }

  #simpleReply(rest: Buffer): void {
    const errno = rest.readUInt32BE(0);
    const cookie = this.#cookieOf(rest, 4);
    const request = this.#find(cookie);
    if (request.command === Command.READ && this.info.structuredReplies) throw this.#broken('answered a read with a simple reply after agreeing to structured replies');
    if (errno === 0 && request.command === Command.BLOCK_STATUS) throw this.#broken('answered block status with a simple reply that holds no status');
    const settle = (): void => {
      this.#take(cookie);
      if (errno !== 0) request.reject(this.#requestError(request, { errno, message: '' }));
      else request.resolve();
      this.#nextReply();
    };
    // The request stays pending until its data is in: a connection lost meanwhile fails it.
    if (errno === 0 && request.command === Command.READ) this.#expectData(request.target!, settle);
    else settle();
  }

  #structuredChunk(header: Buffer): void {
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const length = header.readUInt32BE(12);
    const cookie = this.#cookieOf(header, 4);
    const request = this.#find(cookie);
    if (length > MAX_REPLY_PAYLOAD && type !== ReplyType.OFFSET_DATA) throw this.#broken(`sent a reply chunk of ${length} bytes`);
    const done = (): void => this.#chunkDone(request, cookie, flags);
    switch (type) {
      case ReplyType.NONE:
        if (length !== 0 || (flags & REPLY_FLAG_DONE) === 0) throw this.#broken('sent a malformed final chunk');
        return done();
      case ReplyType.OFFSET_DATA:
        if (request.command !== Command.READ || length < 9) throw this.#broken('sent data that was not asked for');
        return this.#expect(8, (offset) => {
          const at = Number(offset.readBigUInt64BE(0));
          const bytes = length - 8;
          const start = at - request.offset;
          if (start < 0 || start + bytes > request.length) throw this.#broken(`sent ${bytes} bytes at byte ${at}, outside the read of ${request.length} bytes at byte ${request.offset}`);
          if (!coverRange(request.covered, start, start + bytes)) throw this.#broken(`sent ${bytes} bytes at byte ${at}, overlapping a chunk it sent before for the same read`);
          this.#expectData(request.target!.subarray(start, start + bytes), done);
        });
      case ReplyType.OFFSET_HOLE:
        if (request.command !== Command.READ || length !== 12) throw this.#broken('sent a hole that was not asked for');
        return this.#expect(12, (payload) => {
          const at = Number(payload.readBigUInt64BE(0));
          const bytes = payload.readUInt32BE(8);
          const start = at - request.offset;
          if (bytes === 0 || start < 0 || start + bytes > request.length) throw this.#broken(`sent a hole of ${bytes} bytes at byte ${at}, outside the read`);
          if (!coverRange(request.covered, start, start + bytes)) throw this.#broken(`sent a hole of ${bytes} bytes at byte ${at}, overlapping a chunk it sent before for the same read`);
          request.target!.fill(0, start, start + bytes);
          done();
        });
      case ReplyType.BLOCK_STATUS:
        if (request.command !== Command.BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) throw this.#broken('sent a malformed block status chunk');
        return this.#expect(length, (payload) => {
            const id = payload.readUInt32BE(0);
            if (!this.#contextNames.has(id)) throw this.#broken(`sent block status for metadata context ${id}, which was not selected`);
            // One chunk per context (the spec's rule): a second would replace the first's extents, a dirty range among them.
            if (request.extents!.has(id)) throw this.#broken(`sent block status for metadata context ${this.#contextNames.get(id)} twice in one reply`);
            const list: NbdExtent[] = [];
            let at = request.offset;
            for (let p = 4; p < length; p += 8) {
              const extentLength = payload.readUInt32BE(p);
              if (extentLength === 0) throw this.#broken('sent a block status extent of length 0');
              list.push({ offset: at, length: extentLength, flags: payload.readUInt32BE(p + 4) });
              at += extentLength;
            }
            request.extents!.set(id, list);
            done();
        });
      default:
        if ((type & REPLY_TYPE_ERROR_BIT) === 0) throw this.#broken(`sent a reply chunk of unknown type ${type}`);
        if (length < 6) throw this.#broken('sent an error chunk too short to hold an error');
        return this.#expect(length, (payload) => {
            const errno = payload.readUInt32BE(0);
            const messageLength = payload.readUInt16BE(4);
            if (6 + messageLength > length) throw this.#broken('sent an error message longer than its chunk');
            request.error ??= { errno, message: payload.subarray(6, 6 + messageLength).toString('utf8') };
            done();
        });
    }
  }

  /** After a chunk of `request`: the next chunk, or with the done flag the request settled. */
  #chunkDone(request: Pending, cookie: number, flags: number): void {
    if ((flags & REPLY_FLAG_DONE) !== 0) {
      if (request.error === undefined && request.command === Command.READ && coveredBytes(request.covered) !== request.length) {
        throw this.#broken(`ended a read of ${request.length} bytes having sent ${coveredBytes(request.covered)}`);
      }
      this.#take(cookie);
      if (request.error !== undefined) request.reject(this.#requestError(request, request.error));
      else request.resolve();
    }
    this.#nextReply();
  }

  /** The cookie of a reply (at `at`); -1 for one this client cannot have sent (its high half is not zero). */
  #cookieOf(buffer: Buffer, at: number): number {
    return buffer.readUInt32BE(at) === 0 ? buffer.readUInt32BE(at + 4) : -1;
  }

  #find(cookie: number): Pending {
    const request = this.#pending.get(cookie);
    if (request === undefined) throw this.#broken('answered a request that was not sent');
    return request;
  }

  /** The request a reply settles, no longer pending. */
  #take(cookie: number): void {
    this.#pending.delete(cookie);
    if (this.#pending.size === 0) this.socket.setTimeout(0);
  }

  #requestError(request: Pending, error: { errno: number; message: string }): SnaplineError {
    const what = {
      [Command.READ]: `reading ${request.length} bytes at byte ${request.offset}`,
      [Command.WRITE]: `writing ${request.length} bytes at byte ${request.offset}`,
      [Command.WRITE_ZEROES]: `zeroing ${request.length} bytes at byte ${request.offset}`,
      [Command.FLUSH]: 'flushing',
      [Command.BLOCK_STATUS]: `block status of ${request.length} bytes at byte ${request.offset}`,
    }[request.command];
    const said = error.message === '' ? '' : ` (server says: ${error.message})`;
    return new SnaplineError(ErrorCodes.IO_FAILED, `NBD server ${this.address.url} failed ${what ?? 'a request'}: ${errnoName(error.errno)}${said}`, {
      details: { url: this.address.url, position: request.offset, errno: error.errno },
    });
  }

  /** A protocol violation: the connection is dropped and every request fails. */
  #broken(what: string): SnaplineError {
    const err = new SnaplineError(ErrorCodes.IO_FAILED, `NBD server ${this.address.url} broke the protocol: it ${what}`, { details: { url: this.address.url } });
    this.#fail(err);
    this.socket.destroy();
    return err;
  }

  #closedError(cause: unknown): SnaplineError {
    const unanswered = this.#pending.size;
    const reason = cause instanceof Error && cause.message !== '' ? `: ${cause.message}` : '';
    return new SnaplineError(
      ErrorCodes.IO_FAILED,
      `NBD server ${this.address.url} closed the connection${unanswered > 0 ? ` with ${unanswered} request${unanswered === 1 ? '' : 's'} unanswered` : ''}${reason}`,
      { cause, details: { url: this.address.url } },
    );
  }

  /** Fails every request in flight and all later ones with `err` (the first failure wins). */
  #fail(err: SnaplineError): void {
    if (this.#failure !== undefined) return;
    this.#failure = err;
    this.wire.fail(err);
    for (const request of this.#pending.values()) request.reject(err);
    this.#pending.clear();
    for (const wake of this.#slotWaiters.splice(0)) wake();
  }
}

/** Disjoint, non-adjacent [start, end) ranges, sorted by start. */
type CoveredRanges = Array<[start: number, end: number]>;

/**
 * Adds [start, end) to `ranges`, merging it with neighbours it touches.
 * False (and `ranges` unchanged) when it overlaps a range already there: the
 * NBD spec forbids a server to send overlapping chunks for one read, and a
 * byte count alone would take a chunk sent twice for the whole read.
 */
function coverRange(ranges: CoveredRanges, start: number, end: number): boolean {
  let low = 0;
  let high = ranges.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (ranges[middle]![0] < start) low = middle + 1;
    else high = middle;
  }
  // ranges[low - 1] starts before `start`, ranges[low] at or after it.
  const before = ranges[low - 1];
  const after = ranges[low];
  if ((before !== undefined && before[1] > start) || (after !== undefined && after[0] < end)) return false;
  const joinsBefore = before !== undefined && before[1] === start;
  const joinsAfter = after !== undefined && after[0] === end;
  if (joinsBefore && joinsAfter) {
    before[1] = after[1];
    ranges.splice(low, 1);
  } else if (joinsBefore) before[1] = end;
  else if (joinsAfter) after[0] = start;
  else ranges.splice(low, 0, [start, end]);
  return true;
}

function coveredBytes(ranges: CoveredRanges): number {
  let bytes = 0;
  for (const [start, end] of ranges) bytes += end - start;
  return bytes;
}

/** Waits for every part; rejects with the first failure once all have settled (no part left running behind the caller). */
async function settleAll(parts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
