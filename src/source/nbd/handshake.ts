/**
 * The handshake phase of an NBD connection (fixed newstyle): the greeting,
 * STARTTLS, options and their replies, up to NBD_OPT_GO. Every refusal is
 * SOURCE_UNUSABLE naming the URL; client.ts puts the steps together.
 */
import { readFile } from 'node:fs/promises';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { join } from 'node:path';
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from 'node:tls';
import { abortError, throwIfAborted } from '../../core/abort.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import {
  FLAG_C_FIXED_NEWSTYLE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INIT_MAGIC,
  Info,
  MAX_REPLY_PAYLOAD,
  OLDSTYLE_MAGIC,
  OPTION_MAGIC,
  OPTION_REPLY_ERROR_BIT,
  OPTION_REPLY_HEADER_BYTES,
  OPTION_REPLY_MAGIC,
  Option,
  OptionError,
  OptionReply,
  encodeOption,
  goData,
  metaContextData,
  optionErrorName,
} from './protocol.js';
import type { NbdAddress } from './url.js';
import { Wire, WireClosed } from './wire.js';

/** Size constraints of an export (NBD_INFO_BLOCK_SIZE, else the protocol's defaults). */
export interface NbdBlockSizes {
  minimum: number;
  preferred: number;
  maximum: number;
}

/** Spec defaults when the server gives no NBD_INFO_BLOCK_SIZE. */
export const DEFAULT_BLOCK_SIZES: NbdBlockSizes = { minimum: 1, preferred: 4096, maximum: 32 * 1024 * 1024 };

/** The handshake phase of one connection. */
export class Negotiation {
  socket: Socket | TLSSocket;
  readonly wire: Wire;
  #tls = false;
  #noZeroes = false;
  /** Options may be sent: the greeting is done and no TLS handshake is under way. */
  #optionsPhase = false;
  #connected = false;
  /** Runs from before the connection is made until run() or quit() ends. */
  readonly #deadline: NodeJS.Timeout;
  /** Stops the deadline and the abort signal from ending the handshake. */
  readonly #unwatch: () => void;

  private constructor(
    readonly address: NbdAddress,
    socket: Socket,
    wire: Wire,
    private readonly timeoutMs: number,
    signal: AbortSignal | undefined,
  ) {
    this.socket = socket;
    this.wire = wire;
    this.wire.attach(socket);
    this.#deadline = setTimeout(() => {
      const what = this.#connected ? 'did not finish the handshake' : 'did not accept the connection';
      this.#giveUp(refused(this.address, `${what} within ${this.timeoutMs / 1000} s`));
    }, timeoutMs);
    const onAbort = (): void => this.#giveUp(abortError(signal!));
    signal?.addEventListener('abort', onAbort, { once: true });
    this.#unwatch = () => {
      clearTimeout(this.#deadline);
      signal?.removeEventListener('abort', onAbort);
    };
  }

  /** Ends the connection and the handshake with `err`. */
  #giveUp(err: SnaplineError): void {
    this.wire.fail(err);
    this.socket.destroy(err);
  }

  /**
   * Connects (`connectSocket`, by default to the address's host and port or
   * Unix socket) under the handshake deadline, which goes on running through
   * run(): a server that never accepts is given up like one that never
   * answers. Aborting `signal` gives up at once, with the abort error.
   */
  static async open(
    address: NbdAddress,
    timeoutMs = 30_000,
    connectSocket: (address: NbdAddress, wire: Wire) => Socket = socketTo,
    signal?: AbortSignal,
  ): Promise<Negotiation> {
    throwIfAborted(signal);
    const wire = new Wire();
    const socket = connectSocket(address, wire);
    const negotiation = new Negotiation(address, socket, wire, timeoutMs, signal);
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException) => reject(err instanceof SnaplineError ? err : unreachable(address, err));
        socket.once('error', onError);
        socket.once('connect', () => {
          socket.off('error', onError);
          resolve();
        });
      });
    } catch (err) {
      negotiation.quit();
      throw err;
    }
    negotiation.#connected = true;
    return negotiation;
  }

  /** Runs the handshake steps under the handshake deadline, which ends with them. */
  async run<T>(steps: () => Promise<T>): Promise<T> {
    try {
      await this.#greeting();
      return await steps();
    } catch (err) {
      if (!(err instanceof WireClosed)) throw err;
      throw refused(this.address, err.cause === undefined ? 'closed the connection during the handshake' : `broke off the handshake: ${err.cause.message}`, {
        cause: err.cause,
      });
    } finally {
      this.#unwatch();
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
    this.#unwatch();
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

/** How much one read of the socket takes at most. */
const READ_BUFFER_BYTES = 256 * 1024;

/**
 * A socket that reads into one buffer of its own, again and again, and hands
 * each read's bytes to `wire` before the next: no buffer is allocated per
 * read, and a read's data is copied once, into its target.
 */
function socketTo(address: NbdAddress, wire: Wire): Socket {
  const { transport } = address;
  const onread = {
    buffer: Buffer.allocUnsafe(READ_BUFFER_BYTES),
    callback: (bytes: number, buffer: Uint8Array): boolean => {
      wire.received(socket, buffer.subarray(0, bytes));
      return true;
    },
  };
  const socket: Socket =
    transport.kind === 'tcp' ? netConnect({ host: transport.host, port: transport.port, noDelay: true, onread }) : netConnect({ path: transport.socket, onread });
  return socket;
}

function unreachable(address: NbdAddress, err: NodeJS.ErrnoException): SnaplineError {
  const where = address.transport.kind === 'tcp' ? `${address.transport.host}:${address.transport.port}` : address.transport.socket;
  return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `cannot reach NBD server ${address.url} at ${where}: ${err.code ?? err.message}`, {
    cause: err,
    hint: err.code === 'ENOENT' ? 'the socket does not exist: is the server running (qemu-nbd -k PATH)?' : 'is the server running and listening there?',
    details: { url: address.url, errno: err.code },
  });
}
