import { readFile } from 'node:fs/promises';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import {
  BASE_ALLOCATION,
  Command,
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INIT_MAGIC,
  Info,
  OLDSTYLE_MAGIC,
  OPTION_MAGIC,
  OPTION_REPLY_ERROR_BIT,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  Option,
  OptionError,
  OptionReply,
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
  encodeOption,
  encodeRequest,
  errnoName,
  goData,
  metaContextData,
  optionErrorName,
} from './protocol.js';
import type { NbdAddress } from './url.js';
import { Wire, WireClosed } from './wire.js';

export interface NbdConnectOptions {
  /** Ask for structured replies (default true). Without them there is no block status. */
  structuredReplies?: boolean;
  /** Metadata contexts to select for block status (default base:allocation); ignored without structured replies. */
  metaContexts?: readonly string[];
  /** Most requests in flight on the connection; more wait their turn (default 16). */
  maxInFlight?: number;
  /** Longest the connection and handshake may take before it is given up (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Longest the server may send nothing while requests wait for replies before the connection is given up (default 120 s). */
  replyTimeoutMs?: number;
}

/** Size constraints of an export (NBD_INFO_BLOCK_SIZE, else the protocol's defaults). */
export interface NbdBlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
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

/** The largest request this client sends, even where the server takes more. */
const MAX_REQUEST_BYTES = 2 * 1024 * 1024;
/** The largest block status range asked at once (the field is 32 bits). */
const MAX_STATUS_BYTES = 2 ** 31;
/** A reply payload beyond this is taken for a broken server (block status replies hold up to 8 MiB). */
const MAX_REPLY_PAYLOAD = 64 * 1024 * 1024;
/** Spec defaults when the server gives no NBD_INFO_BLOCK_SIZE. */
const DEFAULT_BLOCK_SIZES: NbdBlockSizes = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };

/**
 * Opens a connection to an NBD export: fixed newstyle handshake, STARTTLS
 * first for nbds:// URLs, structured replies and metadata contexts when the
 * server has them, then NBD_OPT_GO (NBD_OPT_EXPORT_NAME on servers without
 * it). A refusal (no such export, TLS required, unreachable server) is
 * SOURCE_UNUSABLE naming the URL.
 */
export async function connectNbd(address: NbdAddress, options: NbdConnectOptions = {}): Promise<NbdClient> {
  const negotiation = await Negotiation.open(address, options.handshakeTimeoutMs);
  try {
    const info = await negotiation.run(async () => {
      await negotiation.startTls();
      const structured = options.structuredReplies !== false && (await negotiation.structuredReplies());
      const contexts = structured ? await negotiation.setMetaContexts(options.metaContexts ?? [BASE_ALLOCATION]) : new Map<number, string>();
      return { ...(await negotiation.go()), structured, contexts };
    });
    return new NbdClient(address, negotiation.socket, negotiation.wire, info, {
      maxInFlight: options.maxInFlight ?? 16,
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

/** The handshake phase of one connection. */
class Negotiation {
  socket: Socket | TLSSocket;
  readonly wire: Wire;
  #tls = false;
  #noZeroes = false;
  /** Options may be sent: the greeting is done and no TLS handshake is under way. */
  #optionsPhase = false;

  private constructor(
    readonly address: NbdAddress,
    socket: Socket,
    private readonly timeoutMs: number,
  ) {
    this.socket = socket;
    this.wire = new Wire();
    this.wire.attach(socket);
  }

  static async open(address: NbdAddress, timeoutMs = 30_000): Promise<Negotiation> {
    const { transport } = address;
    const socket = transport.kind === 'tcp' ? netConnect({ host: transport.host, port: transport.port, noDelay: true }) : netConnect({ path: transport.socket });
    const negotiation = new Negotiation(address, socket, timeoutMs);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => reject(unreachable(address, err));
      socket.once('error', onError);
      socket.once('connect', () => {
        socket.off('error', onError);
        resolve();
      });
    });
    return negotiation;
  }

  /** Runs the handshake steps under the handshake deadline. */
  async run<T>(steps: () => Promise<T>): Promise<T> {
    const timer = setTimeout(() => {
      const err = refused(this.address, `did not finish the handshake within ${this.timeoutMs / 1000} s`);
      this.wire.fail(err);
      this.socket.destroy(err);
    }, this.timeoutMs);
    try {
      await this.#greeting();
      return await steps();
    } catch (err) {
      if (!(err instanceof WireClosed)) throw err;
      throw refused(this.address, err.cause === undefined ? 'closed the connection during the handshake' : `broke off the handshake: ${err.cause.message}`, {
        cause: err.cause,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  async #greeting(): Promise<void> {
    const hello = await this.wire.read(18);
    if (hello.readBigUInt64BE(0) !== INIT_MAGIC) throw refused(this.address, 'does not speak NBD (no NBDMAGIC greeting)');
    const style = hello.readBigUInt64BE(8);
    if (style === OLDSTYLE_MAGIC) throw refused(this.address, 'speaks only the oldstyle handshake, which has no export names; snapline needs fixed newstyle');
    if (style !== OPTION_MAGIC) throw refused(this.address, 'sent an unknown handshake magic');
    const flags = hello.readUInt16BE(16);
    if ((flags & FLAG_FIXED_NEWSTYLE) === 0) throw refused(this.address, 'does not offer the fixed newstyle handshake snapline needs');
    this.#noZeroes = (flags & FLAG_NO_ZEROES) !== 0;
    const reply = Buffer.alloc(4);
    reply.writeUInt32BE(FLAG_C_FIXED_NEWSTYLE | (this.#noZeroes ? FLAG_C_NO_ZEROES : 0), 0);
    this.socket.write(reply);
    this.#optionsPhase = true;
  }

  /** STARTTLS for a TLS URL; the server must accept it. */
  async startTls(): Promise<void> {
    const tls = this.address.tls;
    if (tls === undefined) return;
    const { type, data } = await this.#option(Option.STARTTLS);
    if (type !== OptionReply.ACK) {
      throw refused(this.address, `refused TLS (${optionErrorName(type)}${serverText(data)})`, {
        hint: 'the nbds:// schemes require TLS; use nbd:// or nbd+unix:// if the server does not offer it',
      });
    }
    if (this.wire.buffered > 0) throw refused(this.address, 'sent data between accepting STARTTLS and the TLS handshake');
    this.#optionsPhase = false;
    this.wire.detach();
    const ca = tls.certificates === undefined ? undefined : await readCertificate(this.address, join(tls.certificates, 'ca-cert.pem'), true);
    const cert = tls.certificates === undefined ? undefined : await readCertificate(this.address, join(tls.certificates, 'client-cert.pem'), false);
    const key = tls.certificates === undefined ? undefined : await readCertificate(this.address, join(tls.certificates, 'client-key.pem'), false);
    const transport = this.address.transport;
    const hostname = tls.hostname ?? (transport.kind === 'tcp' ? transport.host : undefined);
    const secure = tlsConnect({
      socket: this.socket,
      ca,
      cert: cert !== undefined && key !== undefined ? cert : undefined,
      key: cert !== undefined && key !== undefined ? key : undefined,
      servername: hostname !== undefined && isIP(hostname) === 0 ? hostname : undefined,
      rejectUnauthorized: tls.verifyPeer,
      // Without a host name (a Unix socket and no tls-hostname) only the chain is checked.
      checkServerIdentity: (_name, peer) => (hostname === undefined ? undefined : checkServerIdentity(hostname, peer)),
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          refused(this.address, `TLS handshake failed: ${err.message}`, {
            cause: err,
            hint: 'give the CA that signed the server certificate with tls-certificates=DIR (DIR/ca-cert.pem), or tls-verify-peer=0 to skip the check',
          }),
        );
      secure.once('error', onError);
      secure.once('secureConnect', () => {
        secure.off('error', onError);
        resolve();
      });
    });
    this.socket = secure;
    this.#tls = true;
    this.#optionsPhase = true;
    this.wire.attach(secure);
  }

  /** NBD_OPT_STRUCTURED_REPLY: true when the server agreed. */
  async structuredReplies(): Promise<boolean> {
    const { type, data } = await this.#option(Option.STRUCTURED_REPLY);
    if (type === OptionReply.ACK) return true;
    if (type === OptionError.UNSUP || type === OptionError.POLICY) return false;
    throw this.#optionFailure('structured replies', type, data);
  }

  /** NBD_OPT_SET_META_CONTEXT: the contexts selected, by id. */
  async setMetaContexts(queries: readonly string[]): Promise<Map<number, string>> {
    const selected = new Map<number, string>();
    if (queries.length === 0) return selected;
    this.#send(Option.SET_META_CONTEXT, metaContextData(this.address.exportName, queries));
    for (;;) {
      const { type, data } = await this.#reply(Option.SET_META_CONTEXT);
      if (type === OptionReply.META_CONTEXT) {
        if (data.byteLength < 4) throw refused(this.address, 'sent a metadata context reply too short to hold an id');
        selected.set(data.readUInt32BE(0), data.subarray(4).toString('utf8'));
      } else if (type === OptionReply.ACK) {
        return selected;
      } else if (type === OptionError.UNSUP || type === OptionError.POLICY) {
        // No metadata contexts here: block status is not used.
        return new Map();
      } else {
        throw this.#optionFailure('selecting metadata contexts', type, data);
      }
    }
  }

  /** NBD_OPT_LIST_META_CONTEXT: the names offered. */
  async listMetaContexts(queries: readonly string[]): Promise<string[]> {
    this.#send(Option.LIST_META_CONTEXT, metaContextData(this.address.exportName, queries));
    const names: string[] = [];
    for (;;) {
      const { type, data } = await this.#reply(Option.LIST_META_CONTEXT);
      if (type === OptionReply.META_CONTEXT) {
        if (data.byteLength < 4) throw refused(this.address, 'sent a metadata context reply too short to hold an id');
        names.push(data.subarray(4).toString('utf8'));
      } else if (type === OptionReply.ACK) {
        return names;
      } else if (type === OptionError.UNSUP || type === OptionError.POLICY) {
        return [];
      } else {
        throw this.#optionFailure('listing metadata contexts', type, data);
      }
    }
  }

  /** NBD_OPT_GO with NBD_INFO_BLOCK_SIZE; NBD_OPT_EXPORT_NAME where the server has no NBD_OPT_GO. */
  async go(): Promise<{ sizeBytes: number; flags: number; blockSizes: NbdBlockSizes; tls: boolean }> {
    this.#send(Option.GO, goData(this.address.exportName, [Info.BLOCK_SIZE]));
    let exportInfo: { sizeBytes: number; flags: number } | undefined;
    let blockSizes = DEFAULT_BLOCK_SIZES;
    for (;;) {
      const { type, data } = await this.#reply(Option.GO);
      if (type === OptionReply.INFO) {
        if (data.byteLength < 2) throw refused(this.address, 'sent an export information reply with no type');
        const info = data.readUInt16BE(0);
        if (info === Info.EXPORT) {
          if (data.byteLength !== 12) throw refused(this.address, 'sent export information of the wrong length');
          exportInfo = { sizeBytes: safeSize(this.address, data.readBigUInt64BE(2)), flags: data.readUInt16BE(10) };
        } else if (info === Info.BLOCK_SIZE) {
          if (data.byteLength !== 14) throw refused(this.address, 'sent block size information of the wrong length');
          blockSizes = { minimum: data.readUInt32BE(2), preferred: data.readUInt32BE(6), maximum: data.readUInt32BE(10) };
        }
        // Other information (the export's name and description) is not needed.
      } else if (type === OptionReply.ACK) {
        if (exportInfo === undefined) throw refused(this.address, 'accepted the export without saying its size');
        return { ...exportInfo, blockSizes, tls: this.#tls };
      } else if (type === OptionError.UNSUP) {
        return { ...(await this.#exportName()), blockSizes, tls: this.#tls };
      } else {
        throw this.#optionFailure('opening the export', type, data);
      }
    }
  }

  /**
   * Ends a session that will not enter transmission: NBD_OPT_ABORT (its reply
   * not waited for) where options may be sent, else the connection dropped.
   */
  quit(): void {
    const socket = this.socket;
    this.wire.detach();
    // Nothing more is read; a late failure (the server gone first) is of no interest.
    socket.on('error', () => undefined);
    if (this.#optionsPhase && socket.writable) socket.end(encodeOption(Option.ABORT), () => socket.destroy());
    else socket.destroy();
  }

  /** The old way into transmission: the server closes the connection for an unknown export. */
  async #exportName(): Promise<{ sizeBytes: number; flags: number }> {
    this.socket.write(encodeOption(Option.EXPORT_NAME, Buffer.from(this.address.exportName, 'utf8')));
    try {
      const reply = await this.wire.read(this.#noZeroes ? 10 : 134);
      return { sizeBytes: safeSize(this.address, reply.readBigUInt64BE(0)), flags: reply.readUInt16BE(8) };
    } catch (err) {
      throw refused(this.address, `closed the connection when asked for export "${this.address.exportName}": it has no such export, or it requires TLS`, {
        cause: err,
      });
    }
  }

  #send(option: number, data?: Uint8Array): void {
    this.socket.write(encodeOption(option, data));
  }

  async #option(option: number, data?: Uint8Array): Promise<{ type: number; data: Buffer }> {
    this.#send(option, data);
    return this.#reply(option);
  }

  async #reply(option: number): Promise<{ type: number; data: Buffer }> {
    const header = await this.wire.read(OPTION_REPLY_HEADER_BYTES);
    if (header.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw refused(this.address, 'sent an option reply with a bad magic number');
    if (header.readUInt32BE(8) !== option) throw refused(this.address, `answered option ${header.readUInt32BE(8)} when asked option ${option}`);
    const type = header.readUInt32BE(12);
    const length = header.readUInt32BE(16);
    if (length > MAX_REPLY_PAYLOAD) throw refused(this.address, `sent an option reply of ${length} bytes`);
    // Copied: a view would pin the socket's chunk and the next read may reuse nothing of it anyway.
    const data = Buffer.from(await this.wire.read(length));
    return { type, data };
  }

  #optionFailure(what: string, type: number, data: Buffer): SnaplineError {
    const text = serverText(data);
    const exportName = this.address.exportName === '' ? 'the default export' : `export "${this.address.exportName}"`;
    switch (type) {
      case OptionError.TLS_REQD:
        return refused(this.address, `requires TLS${text}`, {
          hint: `use nbds:// or nbds+unix:// (with tls-certificates=DIR for a private CA)`,
          details: { url: this.address.url, reason: 'tls-required' },
        });
      case OptionError.UNKNOWN:
        return refused(this.address, `has no ${exportName}${text}`, {
          hint: 'the export name is the URL path after the first slash; `nbdinfo --list URL` lists the exports',
          details: { url: this.address.url, reason: 'unknown-export' },
        });
      case OptionError.SHUTDOWN:
        return refused(this.address, `is shutting down${text}`);
      default:
        if ((type & OPTION_REPLY_ERROR_BIT) === 0) return refused(this.address, `sent reply type ${type} to ${what}`);
        return refused(this.address, `refused ${what} on ${exportName}: ${optionErrorName(type)}${text}`);
    }
  }
}

async function readCertificate(address: NbdAddress, path: string, required: boolean): Promise<Buffer | undefined> {
  try {
    return await readFile(path);
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw refused(address, `cannot read ${path}: ${(err as Error).message}`, { cause: err, hint: 'tls-certificates=DIR names a folder holding ca-cert.pem' });
  }
}

/** What the server said with an error reply, as " (text)". */
function serverText(data: Buffer): string {
  const text = data.toString('utf8').trim();
  return text === '' ? '' : ` (server says: ${text})`;
}

function safeSize(address: NbdAddress, size: bigint): number {
  if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw refused(address, `gave an export size of ${size} bytes`);
  return Number(size);
}

function refused(address: NbdAddress, what: string, options: { cause?: unknown; hint?: string; details?: Record<string, unknown> } = {}): SnaplineError {
  return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `NBD server ${address.url} ${what}`, {
    cause: options.cause,
    hint: options.hint,
    details: options.details ?? { url: address.url },
  });
}

function unreachable(address: NbdAddress, err: NodeJS.ErrnoException): SnaplineError {
  const where = address.transport.kind === 'tcp' ? `${address.transport.host}:${address.transport.port}` : address.transport.socket;
  return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `cannot reach NBD server ${address.url} at ${where}: ${err.code ?? err.message}`, {
    cause: err,
    hint: err.code === 'ENOENT' ? 'the socket does not exist: is the server running (qemu-nbd -k PATH)?' : 'is the server running and listening there?',
    details: { url: address.url, errno: err.code },
  });
}

/** One request waiting for its reply. */
interface Pending {
  command: number;
  offset: number;
  length: number;
  /** Where a read's bytes go. */
  target?: Uint8Array;
  /** Bytes of a structured read covered by data or hole chunks so far. */
  covered: number;
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
    void this.#receive();
  }

  /**
   * Reads [offset, offset + target.byteLength) into `target`, split into
   * requests of at most 2 MiB (and the server's maximum payload) sent at
   * once. Holes the server reports come out as zeros.
   */
  async read(target: Uint8Array, offset: number): Promise<void> {
    this.#checkRange('read', offset, target.byteLength);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < target.byteLength; done += this.#requestBytes) {
      const length = Math.min(this.#requestBytes, target.byteLength - done);
      parts.push(this.#request(Command.READ, 0, offset + done, length, { target: target.subarray(done, done + length) }));
    }
    await settleAll(parts);
  }

  /** Writes `data` at `offset` (split like reads). Not durable until flush(). */
  async write(data: Uint8Array, offset: number): Promise<void> {
    this.#checkWritable('write');
    this.#checkRange('write', offset, data.byteLength);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < data.byteLength; done += this.#requestBytes) {
      const length = Math.min(this.#requestBytes, data.byteLength - done);
      parts.push(this.#request(Command.WRITE, 0, offset + done, length, { payload: data.subarray(done, done + length) }));
    }
    await settleAll(parts);
  }

  /** Makes [offset, offset + length) read as zeros with NBD_CMD_WRITE_ZEROES (the server may leave a hole). Needs info.canWriteZeroes. */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable('write zeros to');
    if (!this.info.canWriteZeroes) throw new SnaplineError(ErrorCodes.INTERNAL, `NBD export ${this.address.url} cannot write zeros: write zero bytes instead`);
    this.#checkRange('zero', offset, length);
    const parts: Promise<void>[] = [];
    for (let done = 0; done < length; done += MAX_STATUS_BYTES) {
      parts.push(this.#request(Command.WRITE_ZEROES, 0, offset + done, Math.min(MAX_STATUS_BYTES, length - done)));
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
   * context; clipped at the export's end.
   */
  async blockStatus(offset: number, length: number): Promise<Map<string, NbdExtent[]>> {
    if (this.#contextNames.size === 0) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `NBD export ${this.address.url}: block status needs a selected metadata context`);
    }
    const asked = Math.min(length, MAX_STATUS_BYTES, this.info.sizeBytes - offset);
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
   * disconnect that fails the requests in flight. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const idle = this.#pending.size === 0 && this.#failure === undefined;
      this.#fail(new SnaplineError(ErrorCodes.IO_FAILED, `the connection to NBD server ${this.address.url} was closed by snapline`));
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

  #checkRange(what: string, offset: number, length: number): void {
    const { minimum } = this.info.blockSizes;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.info.sizeBytes) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `cannot ${what} ${length} bytes at byte ${offset} of NBD export ${this.address.url}, which holds ${this.info.sizeBytes} bytes`,
      );
    }
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
      this.#pending.set(cookie, { command, offset, length, target: extra.target, extents: extra.extents, covered: 0, resolve, reject });
    });
    // The server's silence counts only while a reply is awaited.
    if (this.#pending.size === 1) this.socket.setTimeout(this.limits.replyTimeoutMs);
    const header = encodeRequest(command, flags, cookie, offset, command === Command.FLUSH ? 0 : length);
    if (extra.payload === undefined) {
      this.socket.write(header);
    } else {
      this.socket.cork();
      this.socket.write(header);
      this.socket.write(extra.payload);
      this.socket.uncork();
    }
    try {
      await done;
    } finally {
      this.#slotWaiters.shift()?.();
    }
  }

  /** The reply loop: runs until the connection ends or breaks. */
  async #receive(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.wire.read(4)).readUInt32BE(0);
        if (magic === SIMPLE_REPLY_MAGIC) await this.#simpleReply();
        else if (magic === STRUCTURED_REPLY_MAGIC && this.info.structuredReplies) await this.#structuredChunk();
        else throw this.#broken(`sent a reply with magic 0x${magic.toString(16)}`);
      }
    } catch (err) {
      this.#fail(err instanceof SnaplineError ? err : this.#closedError(err instanceof WireClosed ? err.cause : err));
    }
  }

  async #simpleReply(): Promise<void> {
    const rest = await this.wire.read(SIMPLE_REPLY_BYTES - 4);
    const errno = rest.readUInt32BE(0);
    const request = this.#find(rest, 4);
    if (request.command === Command.READ && this.info.structuredReplies) throw this.#broken('answered a read with a simple reply after agreeing to structured replies');
    if (errno === 0 && request.command === Command.BLOCK_STATUS) throw this.#broken('answered block status with a simple reply that holds no status');
    // The request stays pending until its data is in: a connection lost meanwhile fails it.
    if (errno === 0 && request.command === Command.READ) await this.wire.readInto(request.target!);
    this.#take(rest, 4);
    if (errno !== 0) request.reject(this.#requestError(request, { errno, message: '' }));
    else request.resolve();
  }

  async #structuredChunk(): Promise<void> {
    const header = await this.wire.read(STRUCTURED_HEADER_BYTES - 4);
    const flags = header.readUInt16BE(0);
    const type = header.readUInt16BE(2);
    const length = header.readUInt32BE(12);
    const request = this.#find(header, 4);
    if (length > MAX_REPLY_PAYLOAD && type !== ReplyType.OFFSET_DATA) throw this.#broken(`sent a reply chunk of ${length} bytes`);
    switch (type) {
      case ReplyType.NONE:
        if (length !== 0 || (flags & REPLY_FLAG_DONE) === 0) throw this.#broken('sent a malformed final chunk');
        break;
      case ReplyType.OFFSET_DATA: {
        if (request.command !== Command.READ || length < 9) throw this.#broken('sent data that was not asked for');
        const at = Number((await this.wire.read(8)).readBigUInt64BE(0));
        const bytes = length - 8;
        const start = at - request.offset;
        if (start < 0 || start + bytes > request.length) throw this.#broken(`sent ${bytes} bytes at byte ${at}, outside the read of ${request.length} bytes at byte ${request.offset}`);
        await this.wire.readInto(request.target!.subarray(start, start + bytes));
        request.covered += bytes;
        break;
      }
      case ReplyType.OFFSET_HOLE: {
        if (request.command !== Command.READ || length !== 12) throw this.#broken('sent a hole that was not asked for');
        const payload = await this.wire.read(12);
        const at = Number(payload.readBigUInt64BE(0));
        const bytes = payload.readUInt32BE(8);
        const start = at - request.offset;
        if (bytes === 0 || start < 0 || start + bytes > request.length) throw this.#broken(`sent a hole of ${bytes} bytes at byte ${at}, outside the read`);
        request.target!.fill(0, start, start + bytes);
        request.covered += bytes;
        break;
      }
      case ReplyType.BLOCK_STATUS: {
        if (request.command !== Command.BLOCK_STATUS || length < 12 || (length - 4) % 8 !== 0) throw this.#broken('sent a malformed block status chunk');
        const payload = await this.wire.read(length);
        const id = payload.readUInt32BE(0);
        if (!this.#contextNames.has(id)) throw this.#broken(`sent block status for metadata context ${id}, which was not selected`);
        const list: NbdExtent[] = [];
        let at = request.offset;
        for (let p = 4; p < length; p += 8) {
          const extentLength = payload.readUInt32BE(p);
          if (extentLength === 0) throw this.#broken('sent a block status extent of length 0');
          list.push({ offset: at, length: extentLength, flags: payload.readUInt32BE(p + 4) });
          at += extentLength;
        }
        request.extents!.set(id, list);
        break;
      }
      default: {
        if ((type & REPLY_TYPE_ERROR_BIT) === 0) throw this.#broken(`sent a reply chunk of unknown type ${type}`);
        if (length < 6) throw this.#broken('sent an error chunk too short to hold an error');
        const payload = await this.wire.read(length);
        const errno = payload.readUInt32BE(0);
        const messageLength = payload.readUInt16BE(4);
        if (6 + messageLength > length) throw this.#broken('sent an error message longer than its chunk');
        request.error ??= { errno, message: payload.subarray(6, 6 + messageLength).toString('utf8') };
      }
    }
    if ((flags & REPLY_FLAG_DONE) === 0) return;
    if (request.error === undefined && request.command === Command.READ && request.covered !== request.length) {
      throw this.#broken(`ended a read of ${request.length} bytes having sent ${request.covered}`);
    }
    this.#take(header, 4);
    if (request.error !== undefined) request.reject(this.#requestError(request, request.error));
    else request.resolve();
  }

  #find(buffer: Buffer, at: number): Pending {
    const cookie = buffer.readUInt32BE(at + 4);
    const request = buffer.readUInt32BE(at) === 0 ? this.#pending.get(cookie) : undefined;
    if (request === undefined) throw this.#broken('answered a request that was not sent');
    return request;
  }

  /** The request a reply settles, no longer pending. */
  #take(buffer: Buffer, at: number): Pending {
    const request = this.#find(buffer, at);
    this.#pending.delete(buffer.readUInt32BE(at + 4));
    if (this.#pending.size === 0) this.socket.setTimeout(0);
    return request;
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

/** Waits for every part; rejects with the first failure once all have settled (no part left running behind the caller). */
async function settleAll(parts: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(parts);
  const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}
