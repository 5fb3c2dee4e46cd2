import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Socket as NetSocket, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCertificateAuthority, issueServerCertificate } from '../../emulator/tls/x509.js';
import { ErrorCodes } from '../../errors.js';
import { pseudoRandomBytes } from '../../../test/support/images.js';
import { chunkHeader, goAnswer, startFakeNbdServer, type FakeRequest } from '../../../test/support/nbd-fake-server.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type RunningQemuNbd } from '../../../test/support/qemu-nbd.js';
import { connectNbd, listNbdMetaContexts, type NbdClient, type NbdExtent } from './client.js';
import { Negotiation } from './handshake.js';
import { Command, Option, OptionReply, ReplyType, REPLY_FLAG_DONE, SIMPLE_REPLY_MAGIC, STATE_DIRTY, STATE_ZERO, TFLAG_HAS_FLAGS, TFLAG_SEND_WRITE_ZEROES } from './protocol.js';
import { parseNbdUrl } from './url.js';

const MIB = 1024 * 1024;

let dir: string;
const servers: RunningQemuNbd[] = [];

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-nbd-client-'));
});
afterAll(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function serve(options: Parameters<typeof startQemuNbd>[1]): Promise<RunningQemuNbd> {
  const server = await startQemuNbd(dir, options);
  servers.push(server);
  return server;
}

async function withClient<T>(url: string, fn: (client: NbdClient) => Promise<T>, options?: Parameters<typeof connectNbd>[1]): Promise<T> {
  const client = await connectNbd(parseNbdUrl(url), options);
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** The ZERO flag of every byte range from `extents`, adjacent ranges of one kind merged: [start, end, zero]. */
function zeroMap(extents: NbdExtent[]): Array<[number, number, boolean]> {
  const out: Array<[number, number, boolean]> = [];
  for (const extent of extents) {
    const zero = (extent.flags & STATE_ZERO) !== 0;
    const last = out.at(-1);
    if (last !== undefined && last[2] === zero && last[1] === extent.offset) last[1] = extent.offset + extent.length;
    else out.push([extent.offset, extent.offset + extent.length, zero]);
  }
  return out;
}

/** Every extent of `context` over the whole export, asking as often as the server needs. */
async function allExtents(client: NbdClient, context: string): Promise<NbdExtent[]> {
  const extents: NbdExtent[] = [];
  for (let at = 0; at < client.info.sizeBytes; ) {
    const status = await client.blockStatus(at, client.info.sizeBytes - at);
    for (const extent of status.get(context)!) {
      const end = Math.min(extent.offset + extent.length, client.info.sizeBytes);
      extents.push({ ...extent, length: end - extent.offset });
      at = end;
    }
  }
  return extents;
}

describe.skipIf(qemuMissing !== undefined)('NBD client against qemu-nbd', () => {
  let raw: { path: string; bytes: Buffer };
  let qcow2: { path: string; bytes: Buffer };

  beforeAll(() => {
    // 24 MiB of pseudo-random data, 4 MiB of it zeros, and a tail that is not a whole MiB.
    const rawPath = join(dir, 'disk.raw');
    const bytes = pseudoRandomBytes('nbd-client-raw', 24 * MIB + 4096);
    bytes.fill(0, 6 * MIB, 10 * MIB);
    writeFileSync(rawPath, bytes);
    raw = { path: rawPath, bytes };
    // A sparse 64 MiB qcow2: data at [1, 3) MiB and [20, 20.5) MiB, an explicit zero cluster run at [8, 9) MiB.
    const qcowPath = join(dir, 'disk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', qcowPath, '64M');
    qemuIo(qcowPath, 'qcow2', 'write -P 0xab 1M 2M', 'write -z 8M 1M', 'write -P 0x11 20M 512k');
    qemuImg('bitmap', '--add', qcowPath, 'b0');
    qcow2 = { path: qcowPath, bytes: rawBytesOf(qcowPath, 'qcow2', dir) };
  });

  it('reads a raw image over a Unix socket and a qcow2 over TCP byte for byte, structured replies on and off', async () => {
    const overUnix = await serve({ image: raw.path, format: 'raw', exportName: 'disk' });
    const overTcp = await serve({ image: qcow2.path, format: 'qcow2', exportName: 'vm disk', tcp: true });
    expect(overTcp.url).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+\/vm%20disk$/);
    for (const structuredReplies of [true, false]) {
      for (const [server, image] of [
        [overUnix, raw],
        [overTcp, qcow2],
      ] as const) {
        await withClient(
          server.url,
          async (client) => {
            expect(client.info).toMatchObject({ sizeBytes: image.bytes.byteLength, readOnly: true, structuredReplies, tls: false });
            expect(client.info.metaContexts).toEqual(structuredReplies ? ['base:allocation'] : []);
            const whole = new Uint8Array(image.bytes.byteLength);
            await client.read(whole, 0);
            expect(Buffer.from(whole).equals(image.bytes), `${server.url}, structured ${structuredReplies}`).toBe(true);
          },
          { structuredReplies },
        );
      }
    }
  });

  it('keeps many reads in flight on one connection, more than it lets out at once, and each gets its own bytes', async () => {
    const server = await serve({ image: raw.path, format: 'raw', exportName: 'disk' });
    await withClient(
      server.url,
      async (client) => {
        const reads = Array.from({ length: 40 }, (_, i) => {
          const offset = ((i * 7919) % 23) * MIB + i * 512;
          const length = (1 + (i % 5)) * 256 * 1024 + (i % 3) * 512;
          return { offset, target: new Uint8Array(length) };
        });
        await Promise.all(reads.map(({ offset, target }) => client.read(target, offset)));
        for (const { offset, target } of reads) {
          expect(Buffer.from(target).equals(raw.bytes.subarray(offset, offset + target.byteLength)), `read at ${offset}`).toBe(true);
        }
      },
      { maxInFlight: 3 },
    );
  });

  it('gives base:allocation extents of a sparse qcow2: holes and zero clusters read as zeros, data does not', async () => {
    const server = await serve({ image: qcow2.path, format: 'qcow2', exportName: 'disk' });
    await withClient(server.url, async (client) => {
      const extents = await allExtents(client, 'base:allocation');
      expect(zeroMap(extents)).toEqual([
        [0, 1 * MIB, true],
        [1 * MIB, 3 * MIB, false],
        [3 * MIB, 20 * MIB, true],
        [20 * MIB, 20 * MIB + 512 * 1024, false],
        [20 * MIB + 512 * 1024, 64 * MIB, true],
      ]);
      // A query from the middle of an extent starts there.
      const [first] = (await client.blockStatus(2 * MIB, MIB)).get('base:allocation')!;
      expect(first).toMatchObject({ offset: 2 * MIB, flags: 0 });
    });
  });

  it('lists qemu:dirty-bitmap contexts of an exported bitmap and selects one beside base:allocation', async () => {
    const server = await serve({ image: qcow2.path, format: 'qcow2', exportName: 'disk', bitmap: 'b0' });
    const address = parseNbdUrl(server.url);
    expect(await listNbdMetaContexts(address, ['qemu:'])).toContain('qemu:dirty-bitmap:b0');
    const all = await listNbdMetaContexts(address);
    expect(all).toEqual(expect.arrayContaining(['base:allocation', 'qemu:dirty-bitmap:b0']));
    await withClient(
      server.url,
      async (client) => {
        expect([...client.info.metaContexts].sort()).toEqual(['base:allocation', 'qemu:dirty-bitmap:b0']);
        const status = await client.blockStatus(0, client.info.sizeBytes);
        // Nothing was written since the bitmap was added: one clean extent.
        expect(status.get('qemu:dirty-bitmap:b0')).toEqual([{ offset: 0, length: 64 * MIB, flags: 0 }]);
      },
      { metaContexts: ['base:allocation', 'qemu:dirty-bitmap:b0'] },
    );
  });

  it('refuses an export the server does not have, naming it', async () => {
    const server = await serve({ image: raw.path, format: 'raw', exportName: 'disk' });
    const wrong = server.url.replace('/disk?', '/nope?');
    const err = await connectNbd(parseNbdUrl(wrong)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { reason: 'unknown-export' } });
    expect((err as Error).message).toContain('has no export "nope"');
  });

  it('says when nothing listens on the socket or port', async () => {
    const err = await connectNbd(parseNbdUrl(`nbd+unix:///disk?socket=${join(dir, 'absent.sock')}`)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { errno: 'ENOENT' } });
    expect((err as Error).message).toMatch(/cannot reach NBD server .*absent\.sock/);
  });

  it('fails every read, in flight or waiting its turn, when qemu-nbd stops answering or dies, and reads again once it is back', async () => {
    const socket = join(dir, 'restarted.sock');
    const first = await serve({ image: raw.path, format: 'raw', exportName: 'disk', socket });
    // Stopped before the reads go out: none can be answered, more are asked than may be in flight at once.
    const stalled = await connectNbd(parseNbdUrl(first.url), { replyTimeoutMs: 200 });
    first.process.kill('SIGSTOP');
    const waiting = Array.from({ length: 12 }, (_, i) => stalled.read(new Uint8Array(MIB).fill(0xee), i * MIB).catch((e: unknown) => e));
    for (const err of await Promise.all(waiting)) {
      expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED });
      expect((err as Error).message).toMatch(/NBD server .* sent nothing for 0\.2 s with 32 requests unanswered/);
    }
    await stalled.close();
    first.process.kill('SIGCONT');
    // Stopped with reads in flight, then killed: every one fails as the connection drops.
    const dying = await connectNbd(parseNbdUrl(first.url));
    first.process.kill('SIGSTOP');
    const lost = Array.from({ length: 12 }, (_, i) => dying.read(new Uint8Array(MIB).fill(0xee), i * MIB).catch((e: unknown) => e));
    setImmediate(() => first.process.kill('SIGKILL'));
    for (const err of await Promise.all(lost)) {
      expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED });
      expect((err as Error).message).toMatch(/NBD server .* closed the connection with 32 requests unanswered/);
    }
    await expect(dying.read(new Uint8Array(4096), 0)).rejects.toMatchObject({ code: ErrorCodes.IO_FAILED });
    await dying.close();
    await first.stop();
    // A new server on the same socket serves a new connection.
    const again = await serve({ image: raw.path, format: 'raw', exportName: 'disk', socket });
    await withClient(again.url, async (client) => {
      const whole = new Uint8Array(raw.bytes.byteLength);
      await client.read(whole, 0);
      expect(Buffer.from(whole).equals(raw.bytes)).toBe(true);
    });
  });

  it('writes, zeroes and flushes a writable export, and a read-only one refuses writes', async () => {
    const image = join(dir, 'target.raw');
    qemuImg('create', '-q', '-f', 'raw', image, '8M');
    const server = await serve({ image, format: 'raw', exportName: 'target', readOnly: false });
    const data = pseudoRandomBytes('nbd-write', 5 * MIB);
    await withClient(server.url, async (client) => {
      expect(client.info).toMatchObject({ readOnly: false, canFlush: true, canWriteZeroes: true });
      await client.write(data, MIB);
      await client.writeZeroes(2 * MIB, MIB);
      await client.flush();
      const back = new Uint8Array(8 * MIB);
      await client.read(back, 0);
      const expected = Buffer.alloc(8 * MIB);
      data.copy(expected, MIB);
      expected.fill(0, 2 * MIB, 3 * MIB);
      expect(Buffer.from(back).equals(expected)).toBe(true);
    });
    const readOnly = await serve({ image, format: 'raw', exportName: 'target' });
    await withClient(readOnly.url, async (client) => {
      await expect(client.write(data.subarray(0, 512), 0)).rejects.toMatchObject({ code: ErrorCodes.TARGET_UNUSABLE });
    });
  });

  describe('TLS', () => {
    let tlsDir: string;
    let clientDir: string;

    beforeAll(() => {
      tlsDir = join(dir, 'server-tls');
      clientDir = join(dir, 'client-tls');
      const ca = createCertificateAuthority({ commonName: 'snapline test CA', days: 2 });
      const server = issueServerCertificate(ca, { commonName: '127.0.0.1', days: 2, hosts: ['127.0.0.1', 'localhost'] });
      for (const [folder, files] of [
        [tlsDir, { 'ca-cert.pem': ca.cert, 'server-cert.pem': server.cert, 'server-key.pem': server.key }],
        [clientDir, { 'ca-cert.pem': ca.cert }],
      ] as const) {
        mkdirSync(folder);
        for (const [name, text] of Object.entries(files)) writeFileSync(join(folder, name), text);
      }
    });

    it('reads over STARTTLS with the CA given, refuses plain NBD to a server that requires TLS, and an untrusted certificate', async () => {
      const server = await serve({ image: raw.path, format: 'raw', exportName: 'disk', tcp: true, tlsDir });
      await withClient(`${server.url}?tls-certificates=${clientDir}`, async (client) => {
        expect(client.info).toMatchObject({ tls: true, structuredReplies: true, sizeBytes: raw.bytes.byteLength });
        const part = new Uint8Array(3 * MIB);
        await client.read(part, 5 * MIB);
        expect(Buffer.from(part).equals(raw.bytes.subarray(5 * MIB, 8 * MIB))).toBe(true);
      });
      const plain = server.url.replace(/^nbds:/, 'nbd:');
      const refused = await connectNbd(parseNbdUrl(plain)).catch((e: unknown) => e);
      expect(refused).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { reason: 'tls-required' } });
      expect((refused as Error).message).toContain('requires TLS');
      const untrusted = await connectNbd(parseNbdUrl(server.url)).catch((e: unknown) => e);
      expect(untrusted).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE });
      expect((untrusted as Error).message).toMatch(/TLS handshake failed/);
    });
  });
});

describe('NBD client against a scripted server', () => {
  it('fails every read in flight with a clear error when the server closes the connection mid-reply, and later reads too', async () => {
    const server = await startFakeNbdServer(dir, {
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        // The header of a data chunk, 8 offset bytes, then only part of the data.
        socket.write(chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + request.length));
        const offset = Buffer.alloc(8);
        offset.writeBigUInt64BE(BigInt(request.offset));
        socket.write(Buffer.concat([offset, Buffer.alloc(1000)]));
        socket.destroy();
      },
    });
    try {
      const client = await connectNbd(parseNbdUrl(server.url));
      const reads = [client.read(new Uint8Array(MIB), 0), client.read(new Uint8Array(MIB), 4 * MIB)];
      for (const read of reads) {
        const err = await read.catch((e: unknown) => e);
        expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED });
        expect((err as Error).message).toMatch(/NBD server .* closed the connection with \d requests? unanswered/);
      }
      await expect(client.read(new Uint8Array(512), 0)).rejects.toMatchObject({ code: ErrorCodes.IO_FAILED });
      await client.close();
    } finally {
      await server.close();
    }
  });

  it('fails a read whose reply claims success without all the bytes, and one the server answers with an error', async () => {
    const server = await startFakeNbdServer(dir, {
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        if (request.offset === 0) {
          socket.write(chunkHeader(REPLY_FLAG_DONE, ReplyType.NONE, request.cookie, 0));
        } else {
          const message = Buffer.from('disk on fire');
          const payload = Buffer.alloc(6);
          payload.writeUInt32BE(5, 0);
          payload.writeUInt16BE(message.byteLength, 4);
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.ERROR, request.cookie, 6 + message.byteLength), payload, message]));
        }
      },
    });
    try {
      const address = parseNbdUrl(server.url);
      const failing = await connectNbd(address);
      const err = await failing.read(new Uint8Array(4096), 8192).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED, details: { errno: 5, position: 8192 } });
      expect((err as Error).message).toContain('EIO (input/output error) (server says: disk on fire)');
      await failing.close();
      const short = await connectNbd(address);
      await expect(short.read(new Uint8Array(4096), 0)).rejects.toThrow(/broke the protocol: it ended a read of 4096 bytes having sent 0/);
      await short.close();
    } finally {
      await server.close();
    }
  });

  it('drops a server that sends a data or hole chunk overlapping one it sent before for the same read', async () => {
    // Reads at 0: the first half twice as data then done. Other reads: the first half as data, then a hole over the middle half.
    const server = await startFakeNbdServer(dir, {
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        const half = request.length / 2;
        const data = Buffer.alloc(8 + half, 0xab);
        data.writeBigUInt64BE(BigInt(request.offset));
        if (request.offset === 0) {
          socket.write(Buffer.concat([chunkHeader(0, ReplyType.OFFSET_DATA, request.cookie, data.byteLength), data]));
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, data.byteLength), data]));
        } else {
          const hole = Buffer.alloc(12);
          hole.writeBigUInt64BE(BigInt(request.offset + half / 2));
          hole.writeUInt32BE(half, 8);
          socket.write(Buffer.concat([chunkHeader(0, ReplyType.OFFSET_DATA, request.cookie, data.byteLength), data]));
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_HOLE, request.cookie, 12), hole]));
        }
      },
    });
    try {
      const address = parseNbdUrl(server.url);
      const twice = await connectNbd(address);
      await expect(twice.read(new Uint8Array(256 * 1024).fill(0xee), 0)).rejects.toThrow(/broke the protocol: it sent 131072 bytes at byte 0, overlapping a chunk/);
      await twice.close();
      const overlappingHole = await connectNbd(address);
      await expect(overlappingHole.read(new Uint8Array(256 * 1024), 2 * MIB)).rejects.toThrow(/broke the protocol: it sent a hole of 131072 bytes at byte 2162688, overlapping a chunk/);
      await overlappingHole.close();
    } finally {
      await server.close();
    }
  });

  it('drops a server that sends two block status chunks for one metadata context in one reply, rather than keep only the last', async () => {
    const bitmap = 'qemu:dirty-bitmap:b1';
    const server = await startFakeNbdServer(dir, {
      onOption(option) {
        if (option !== Option.SET_META_CONTEXT) return undefined;
        const context = Buffer.alloc(4 + bitmap.length);
        context.writeUInt32BE(7, 0);
        context.write(bitmap, 4);
        return [[OptionReply.META_CONTEXT, context], [OptionReply.ACK]];
      },
      onRequest(request, socket) {
        if (request.command !== Command.BLOCK_STATUS) return;
        // The spec allows exactly one chunk per context: here the first says dirty, the second clean.
        const extent = (flags: number) => {
          const payload = Buffer.alloc(12);
          payload.writeUInt32BE(7, 0);
          payload.writeUInt32BE(request.length, 4);
          payload.writeUInt32BE(flags, 8);
          return payload;
        };
        socket.write(Buffer.concat([chunkHeader(0, ReplyType.BLOCK_STATUS, request.cookie, 12), extent(STATE_DIRTY)]));
        socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.BLOCK_STATUS, request.cookie, 12), extent(0)]));
      },
    });
    try {
      const client = await connectNbd(parseNbdUrl(server.url), { metaContexts: [bitmap] });
      expect(client.info.metaContexts).toEqual([bitmap]);
      await expect(client.blockStatus(0, MIB)).rejects.toThrow(/broke the protocol: it sent block status for metadata context qemu:dirty-bitmap:b1 twice in one reply/);
      await client.close();
    } finally {
      await server.close();
    }
  });

  it('sends the requests of a large read together, 256 KiB each, and takes their replies in any order, split in chunks', async () => {
    const held: Array<{ request: FakeRequest; socket: Socket }> = [];
    const server = await startFakeNbdServer(dir, {
      exportSize: 16 * MIB,
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        held.push({ request, socket });
        if (held.length < 16) return;
        // All sixteen are in flight: answer the last first, each as a data chunk then a hole chunk.
        for (const { request: r, socket: s } of held.reverse()) {
          const half = r.length / 2;
          const data = Buffer.alloc(8 + half, r.offset / (256 * 1024) + 1);
          data.writeBigUInt64BE(BigInt(r.offset));
          const hole = Buffer.alloc(12);
          hole.writeBigUInt64BE(BigInt(r.offset + half));
          hole.writeUInt32BE(half, 8);
          s.write(Buffer.concat([chunkHeader(0, ReplyType.OFFSET_DATA, r.cookie, data.byteLength), data, chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_HOLE, r.cookie, 12), hole]));
        }
      },
    });
    try {
      // No reply comes until all sixteen requests are in: a client that sent them one at a time would time out.
      const client = await connectNbd(parseNbdUrl(server.url), { replyTimeoutMs: 5000 });
      const target = new Uint8Array(4 * MIB).fill(0xee);
      await client.read(target, 4 * MIB);
      expect(server.requests.map(({ offset, length }) => [offset, length])).toEqual(Array.from({ length: 16 }, (_, i) => [4 * MIB + i * 256 * 1024, 256 * 1024]));
      for (let i = 0; i < 16; i += 1) {
        const part = target.subarray(i * 256 * 1024, (i + 1) * 256 * 1024);
        expect(part.subarray(0, 128 * 1024).every((byte) => byte === 16 + i + 1)).toBe(true);
        expect(part.subarray(128 * 1024).every((byte) => byte === 0)).toBe(true);
      }
      await client.close();
    } finally {
      await server.close();
    }
  });

  it('takes replies cut anywhere, a few bytes per socket read, headers and offsets included', async () => {
    const disk = Buffer.from(pseudoRandomBytes('cut replies', MIB));
    const server = await startFakeNbdServer(dir, {
      exportSize: MIB,
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        const half = request.length / 2;
        const offset = Buffer.alloc(8);
        offset.writeBigUInt64BE(BigInt(request.offset));
        const hole = Buffer.alloc(12);
        hole.writeBigUInt64BE(BigInt(request.offset + half));
        hole.writeUInt32BE(half, 8);
        const reply = Buffer.concat([
          chunkHeader(0, ReplyType.OFFSET_HOLE, request.cookie, 12),
          hole,
          chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + half),
          offset,
          disk.subarray(request.offset, request.offset + half),
        ]);
        // Seven bytes a write, each in its own turn of the event loop: the client reads them apart.
        const sendFrom = (at: number): void => {
          if (at >= reply.byteLength || socket.destroyed) return;
          socket.write(reply.subarray(at, at + 7));
          setImmediate(() => sendFrom(at + 7));
        };
        sendFrom(0);
      },
    });
    try {
      const client = await connectNbd(parseNbdUrl(server.url));
      const target = new Uint8Array(2 * 4096).fill(0xee);
      await client.read(target, 3 * 4096);
      const expected = Buffer.concat([disk.subarray(3 * 4096, 4 * 4096), Buffer.alloc(4096)]);
      expect(Buffer.from(target).equals(expected)).toBe(true);
      await client.close();
    } finally {
      await server.close();
    }
  });

  it("cuts reads and writes at the export's maximum block size where it is below 256 KiB", async () => {
    const maximum = 64 * 1024;
    const size = MIB;
    const disk = Buffer.from(pseudoRandomBytes('small maximum', size));
    const server = await startFakeNbdServer(dir, {
      exportSize: size,
      onOption(option) {
        if (option !== Option.GO) return undefined;
        return goAnswer(size, TFLAG_HAS_FLAGS, { minimum: 1, preferred: 4096, maximum });
      },
      onRequest(request, socket) {
        const end = request.offset + request.length;
        if (request.command === Command.READ) {
          const offset = Buffer.alloc(8);
          offset.writeBigUInt64BE(BigInt(request.offset));
          const data = disk.subarray(request.offset, end);
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + data.byteLength), offset, data]));
          return;
        }
        if (request.command === Command.WRITE) request.payload!.copy(disk, request.offset);
        const reply = Buffer.alloc(16);
        reply.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
        request.cookie.copy(reply, 8);
        socket.write(reply);
      },
    });
    try {
      const client = await connectNbd(parseNbdUrl(server.url));
      expect(client.info.blockSizes.maximum).toBe(maximum);
      const expected = Buffer.from(disk);
      const target = new Uint8Array(300 * 1024);
      await client.read(target, 100_000);
      expect(Buffer.from(target).equals(expected.subarray(100_000, 100_000 + target.byteLength))).toBe(true);
      const reads = server.requests.filter((r) => r.command === Command.READ);
      expect(reads.map((r) => r.length)).toEqual([maximum, maximum, maximum, maximum, 300 * 1024 - 4 * maximum]);
      const data = pseudoRandomBytes('written in pieces', 200 * 1024);
      await client.write(data, 5000);
      Buffer.from(data).copy(expected, 5000);
      const writes = server.requests.filter((r) => r.command === Command.WRITE);
      expect(writes.map((r) => r.length)).toEqual([maximum, maximum, maximum, 200 * 1024 - 3 * maximum]);
      await client.close();
      expect(disk.equals(expected)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('on an export with a 4096-byte minimum block size, reads, writes and zeroes ranges not aligned to it as aligned requests', async () => {
    const minimum = 4096;
    const size = 64 * 1024;
    const disk = Buffer.from(pseudoRandomBytes('aligned disk', size));
    const expected = Buffer.from(disk);
    const server = await startFakeNbdServer(dir, {
      exportSize: size,
      onOption(option) {
        if (option !== Option.GO) return undefined;
        return goAnswer(size, TFLAG_HAS_FLAGS | TFLAG_SEND_WRITE_ZEROES, { minimum, preferred: minimum, maximum: MIB });
      },
      onRequest(request, socket) {
        const simple = (errno: number) => {
          const reply = Buffer.alloc(16);
          reply.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
          reply.writeUInt32BE(errno, 4);
          request.cookie.copy(reply, 8);
          socket.write(reply);
        };
        const end = request.offset + request.length;
        // The server holds the client to its minimum block size (the spec lets it refuse with EINVAL).
        if (request.offset % minimum !== 0 || (request.length % minimum !== 0 && end !== size)) return simple(22);
        if (request.command === Command.READ) {
          const offset = Buffer.alloc(8);
          offset.writeBigUInt64BE(BigInt(request.offset));
          const data = disk.subarray(request.offset, end);
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + data.byteLength), offset, data]));
        } else if (request.command === Command.WRITE) {
          request.payload!.copy(disk, request.offset);
          simple(0);
        } else if (request.command === Command.WRITE_ZEROES) {
          disk.fill(0, request.offset, end);
          simple(0);
        } else {
          simple(0);
        }
      },
    });
    try {
      const client = await connectNbd(parseNbdUrl(server.url));
      expect(client.info.blockSizes.minimum).toBe(minimum);
      // A snapshot's tail that ends inside a block: read rounded out, written read-modify-write.
      const tail = new Uint8Array(5000);
      await client.read(tail, 3 * minimum + 100);
      expect(Buffer.from(tail).equals(expected.subarray(3 * minimum + 100, 3 * minimum + 5100))).toBe(true);
      const data = pseudoRandomBytes('unaligned write', 5000);
      await client.write(data, 3 * minimum + 100);
      Buffer.from(data).copy(expected, 3 * minimum + 100);
      await client.writeZeroes(minimum - 10, 3 * minimum);
      expected.fill(0, minimum - 10, 4 * minimum - 10);
      await client.writeZeroes(10 * minimum + 1, 10);
      expected.fill(0, 10 * minimum + 1, 10 * minimum + 11);
      await client.close();
      expect(disk.equals(expected)).toBe(true);
      for (const request of server.requests.filter((r) => r.command !== Command.DISC)) {
        expect(request.offset % minimum, `request ${request.command} at ${request.offset}`).toBe(0);
        expect(request.length % minimum, `request ${request.command} of ${request.length} bytes`).toBe(0);
      }
      expect(server.requests.some((r) => r.command === Command.WRITE_ZEROES)).toBe(true);
    } finally {
      await server.close();
    }
  });

  it('gives up a connection whose server stays silent while a read waits, with a clear error', async () => {
    const server = await startFakeNbdServer(dir);
    try {
      const client = await connectNbd(parseNbdUrl(server.url), { replyTimeoutMs: 100 });
      const err = await client.read(new Uint8Array(4096), 0).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED });
      expect((err as Error).message).toMatch(/NBD server .* sent nothing for 0\.1 s with 1 request unanswered/);
      expect(server.requests.map((request) => request.command)).toEqual([Command.READ]);
      await client.close();
    } finally {
      await server.close();
    }
  });

  it('refuses an oldstyle server, a server that refuses STARTTLS for nbds://, and one that stays silent past the deadline', async () => {
    const oldstyle = Buffer.alloc(152);
    oldstyle.write('NBDMAGIC', 0, 'latin1');
    oldstyle.writeBigUInt64BE(0x00420281861253n, 8);
    const servers = await Promise.all([
      startFakeNbdServer(dir, { greeting: oldstyle }),
      startFakeNbdServer(dir, { onOption: (option) => (option === 5 ? [[0x80000002, Buffer.from('no TLS here')]] : undefined) }),
      startFakeNbdServer(dir, { greeting: Buffer.alloc(0) }),
    ]);
    try {
      const [old, noTls, silent] = servers;
      await expect(connectNbd(parseNbdUrl(old!.url))).rejects.toThrow(/speaks only the oldstyle handshake/);
      const tlsUrl = noTls!.url.replace(/^nbd\+unix:/, 'nbds+unix:');
      await expect(connectNbd(parseNbdUrl(tlsUrl))).rejects.toThrow(/refused TLS \(refused by policy \(server says: no TLS here\)\)/);
      const err = await connectNbd(parseNbdUrl(silent!.url), { handshakeTimeoutMs: 100 }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE });
      expect((err as Error).message).toContain('did not finish the handshake within 0.1 s');
      // A connection never accepted (no loopback server can be made to hold one off): a socket that never connects.
      let never: Socket | undefined;
      const unaccepted = await Negotiation.open(parseNbdUrl('nbd://127.0.0.1:10809/disk'), 100, () => (never = new NetSocket())).catch((e: unknown) => e);
      expect(unaccepted).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE });
      expect((unaccepted as Error).message).toContain('did not accept the connection within 0.1 s');
      expect(never!.destroyed).toBe(true);
    } finally {
      await Promise.all(servers.map((server) => server.close()));
    }
  });
});
