/**
 * A scripted NBD server on a Unix socket, for what a real server will not do
 * on demand: close the connection in the middle of a reply, speak the
 * oldstyle handshake, refuse TLS, stay silent. By default it does the fixed
 * newstyle handshake (structured replies, no metadata contexts, NBD_OPT_GO)
 * for one read-only export and answers nothing in transmission.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import {
  FLAG_FIXED_NEWSTYLE,
  INIT_MAGIC,
  Info,
  OPTION_MAGIC,
  OPTION_REPLY_MAGIC,
  Option,
  OptionError,
  OptionReply,
  REQUEST_HEADER_BYTES,
  STRUCTURED_REPLY_MAGIC,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
} from '../../src/source/nbd/protocol.js';

export interface FakeRequest {
  command: number;
  /** The 8 cookie bytes as sent. */
  cookie: Buffer;
  offset: number;
  length: number;
  /** The data of a write. */
  payload?: Buffer;
}

export type OptionAnswer = Array<[type: number, data?: Buffer]> | 'close' | 'silent';

export interface FakeScript {
  /** Bytes sent on connecting instead of the fixed newstyle greeting. */
  greeting?: Buffer;
  /** Answers to an option; undefined: the default answer. */
  onOption?(option: number, data: Buffer): OptionAnswer | undefined;
  /** Called for every request in transmission. */
  onRequest?(request: FakeRequest, socket: Socket): void;
  exportSize?: number;
}

export interface FakeNbdServer {
  url: string;
  /** Requests seen in transmission. */
  requests: FakeRequest[];
  close(): Promise<void>;
}

let serial = 0;

export async function startFakeNbdServer(dir: string, script: FakeScript = {}): Promise<FakeNbdServer> {
  const socketPath = join(dir, `fake-nbd-${process.pid}-${++serial}.sock`);
  const requests: FakeRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    serve(socket, script, requests);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    url: `nbd+unix:///disk?socket=${socketPath}`,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A structured reply chunk header. */
export function chunkHeader(flags: number, type: number, cookie: Buffer, length: number): Buffer {
  const header = Buffer.alloc(20);
  header.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  header.writeUInt16BE(flags, 4);
  header.writeUInt16BE(type, 6);
  cookie.copy(header, 8);
  header.writeUInt32BE(length, 16);
  return header;
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(20);
  header.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(type, 12);
  header.writeUInt32BE(data.byteLength, 16);
  return Buffer.concat([header, data]);
}

function serve(socket: Socket, script: FakeScript, requests: FakeRequest[]): void {
  const size = script.exportSize ?? 16 * 1024 * 1024;
  if (script.greeting !== undefined) {
    socket.write(script.greeting);
    return;
  }
  const hello = Buffer.alloc(18);
  hello.writeBigUInt64BE(INIT_MAGIC, 0);
  hello.writeBigUInt64BE(OPTION_MAGIC, 8);
  hello.writeUInt16BE(FLAG_FIXED_NEWSTYLE, 16);
  socket.write(hello);
  let buffered = Buffer.alloc(0);
  let stage: 'flags' | 'options' | 'transmission' = 'flags';
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (stage === 'flags') {
        if (buffered.byteLength < 4) return;
        buffered = buffered.subarray(4);
        stage = 'options';
      } else if (stage === 'options') {
        if (buffered.byteLength < 16) return;
        const length = buffered.readUInt32BE(12);
        if (buffered.byteLength < 16 + length) return;
        const option = buffered.readUInt32BE(8);
        const data = buffered.subarray(16, 16 + length);
        buffered = buffered.subarray(16 + length);
        const answer = script.onOption?.(option, data) ?? defaultAnswer(option, size);
        if (answer === 'close') {
          socket.destroy();
          return;
        }
        if (answer === 'silent') continue;
        for (const [type, payload] of answer) socket.write(optionReply(option, type, payload));
        if (option === Option.GO && answer.at(-1)?.[0] === OptionReply.ACK) stage = 'transmission';
      } else {
        if (buffered.byteLength < REQUEST_HEADER_BYTES) return;
        const request: FakeRequest = {
          command: buffered.readUInt16BE(6),
          cookie: Buffer.from(buffered.subarray(8, 16)),
          offset: Number(buffered.readBigUInt64BE(16)),
          length: buffered.readUInt32BE(24),
        };
        const payload = request.command === 1 ? request.length : 0;
        if (buffered.byteLength < REQUEST_HEADER_BYTES + payload) return;
        if (payload > 0) request.payload = Buffer.from(buffered.subarray(REQUEST_HEADER_BYTES, REQUEST_HEADER_BYTES + payload));
        buffered = buffered.subarray(REQUEST_HEADER_BYTES + payload);
        requests.push(request);
        script.onRequest?.(request, socket);
      }
    }
  });
}

/** An answer to NBD_OPT_GO: the export's size and transmission flags, its block sizes when given, then ACK. */
export function goAnswer(size: number, flags: number, blockSizes?: { minimum: number; preferred: number; maximum: number }): OptionAnswer {
  const info = Buffer.alloc(12);
  info.writeUInt16BE(Info.EXPORT, 0);
  info.writeBigUInt64BE(BigInt(size), 2);
  info.writeUInt16BE(flags, 10);
  if (blockSizes === undefined) return [[OptionReply.INFO, info], [OptionReply.ACK]];
  const sizes = Buffer.alloc(14);
  sizes.writeUInt16BE(Info.BLOCK_SIZE, 0);
  sizes.writeUInt32BE(blockSizes.minimum, 2);
  sizes.writeUInt32BE(blockSizes.preferred, 6);
  sizes.writeUInt32BE(blockSizes.maximum, 10);
  return [[OptionReply.INFO, info], [OptionReply.INFO, sizes], [OptionReply.ACK]];
}

function defaultAnswer(option: number, size: number): OptionAnswer {
  switch (option) {
    case Option.STRUCTURED_REPLY:
      return [[OptionReply.ACK]];
    case Option.SET_META_CONTEXT:
    case Option.LIST_META_CONTEXT:
      return [[OptionReply.ACK]];
    case Option.GO:
      return goAnswer(size, TFLAG_HAS_FLAGS | TFLAG_READ_ONLY);
    case Option.ABORT:
      return [[OptionReply.ACK]];
    default:
      return [[OptionError.UNSUP]];
  }
}
