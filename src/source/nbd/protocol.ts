/**
 * Numbers of the NBD protocol (the fixed newstyle handshake, structured
 * replies, metadata contexts) as the client in this folder uses them. All
 * fields on the wire are big-endian.
 */

/** "NBDMAGIC": the first 8 bytes a server sends. */
export const INIT_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": newstyle negotiation, and the prefix of every option the client sends. */
export const OPTION_MAGIC = 0x49484156454f5054n;
/** What an oldstyle server sends instead of IHAVEOPT. */
export const OLDSTYLE_MAGIC = 0x00420281861253n;
/** The prefix of every option reply. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;

export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;

export const Option = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

export const OptionReply = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
} as const;

/** Error replies to options have bit 31 set. */
export const OPTION_REPLY_ERROR_BIT = 0x80000000;
export const OptionError = {
  UNSUP: 0x80000001,
  POLICY: 0x80000002,
  INVALID: 0x80000003,
  PLATFORM: 0x80000004,
  TLS_REQD: 0x80000005,
  UNKNOWN: 0x80000006,
  SHUTDOWN: 0x80000007,
  BLOCK_SIZE_REQD: 0x80000008,
  TOO_BIG: 0x80000009,
} as const;

const OPTION_ERROR_NAMES: Record<number, string> = {
  [OptionError.UNSUP]: 'unsupported option',
  [OptionError.POLICY]: 'refused by policy',
  [OptionError.INVALID]: 'invalid request',
  [OptionError.PLATFORM]: 'not supported on the server platform',
  [OptionError.TLS_REQD]: 'TLS required',
  [OptionError.UNKNOWN]: 'unknown export',
  [OptionError.SHUTDOWN]: 'server shutting down',
  [OptionError.BLOCK_SIZE_REQD]: 'block size constraints must be requested',
  [OptionError.TOO_BIG]: 'request or reply too large',
};

/** A short name for an option error reply type. */
export function optionErrorName(type: number): string {
  return OPTION_ERROR_NAMES[type] ?? `error 0x${type.toString(16)}`;
}

/** Information types of NBD_OPT_INFO / NBD_OPT_GO. */
export const Info = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const Command = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;

export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 0x8001,
  ERROR_OFFSET: 0x8002,
} as const;

/** Error chunk types have bit 15 set. */
export const REPLY_TYPE_ERROR_BIT = 0x8000;

/** base:allocation: the extent reads as zeros. (Bit 0, a hole, says nothing of the content: such an extent is read.) */
export const STATE_ZERO = 1 << 1;

/** The metadata context that tells holes and zeros apart from data. */
export const BASE_ALLOCATION = 'base:allocation';

/** The metadata context of a qemu dirty bitmap (qemu-nbd -B NAME, libvirt's pull-mode backups). */
export function dirtyBitmapContext(name: string): string {
  return `qemu:dirty-bitmap:${name}`;
}

/** qemu:dirty-bitmap: the extent was written since the bitmap was last cleared. */
export const STATE_DIRTY = 1 << 0;

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM (operation not permitted)',
  5: 'EIO (input/output error)',
  12: 'ENOMEM (out of memory)',
  22: 'EINVAL (invalid argument)',
  28: 'ENOSPC (no space left)',
  75: 'EOVERFLOW (value too large)',
  95: 'ENOTSUP (not supported)',
  108: 'ESHUTDOWN (server shutting down)',
};

/** A transmission error value as text; an unknown value (which the spec says to treat as EINVAL) reads as `error N`, its number kept. */
export function errnoName(value: number): string {
  return ERRNO_NAMES[value] ?? `error ${value}`;
}

/** A reply payload beyond this is taken for a broken server (block status replies hold up to 8 MiB). */
export const MAX_REPLY_PAYLOAD = 64 * 1024 * 1024;

/** The header of a request, 28 bytes. */
export const REQUEST_HEADER_BYTES = 28;
/** Simple reply: magic, error, cookie. */
export const SIMPLE_REPLY_BYTES = 16;
/** Structured reply chunk header: magic, flags, type, cookie, length. */
export const STRUCTURED_HEADER_BYTES = 20;
/** Option reply header: magic, option, type, length. */
export const OPTION_REPLY_HEADER_BYTES = 20;

/** An option: IHAVEOPT, the option, the length of its data, the data. */
export function encodeOption(option: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const message = Buffer.allocUnsafe(16 + data.byteLength);
  message.writeBigUInt64BE(OPTION_MAGIC, 0);
  message.writeUInt32BE(option, 8);
  message.writeUInt32BE(data.byteLength, 12);
  message.set(data, 16);
  return message;
}

/** A 32-bit length, then the UTF-8 bytes of `text`. */
export function lengthPrefixed(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const out = Buffer.allocUnsafe(4 + bytes.byteLength);
  out.writeUInt32BE(bytes.byteLength, 0);
  out.set(bytes, 4);
  return out;
}

/** The data of NBD_OPT_INFO / NBD_OPT_GO: the export name and the information asked for. */
export function goData(exportName: string, infos: readonly number[]): Buffer {
  const tail = Buffer.allocUnsafe(2 + 2 * infos.length);
  tail.writeUInt16BE(infos.length, 0);
  infos.forEach((info, i) => tail.writeUInt16BE(info, 2 + 2 * i));
  return Buffer.concat([lengthPrefixed(exportName), tail]);
}

/** The data of NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. */
export function metaContextData(exportName: string, queries: readonly string[]): Buffer {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(queries.length, 0);
  return Buffer.concat([lengthPrefixed(exportName), count, ...queries.map(lengthPrefixed)]);
}

/** A request header; cookies are 32-bit here (the high half is zero). */
export function encodeRequest(command: number, flags: number, cookie: number, offset: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
  header.writeUInt32BE(REQUEST_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(command, 6);
  header.writeUInt32BE(0, 8);
  header.writeUInt32BE(cookie, 12);
  header.writeBigUInt64BE(BigInt(offset), 16);
  header.writeUInt32BE(length, 24);
  return header;
}
