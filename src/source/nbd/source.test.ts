import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { changedBlockRanges } from '../../core/changed-ranges.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import { chunkHeader, startFakeNbdServer } from '../../../test/support/nbd-fake-server.js';
import { pseudoRandomBytes } from '../../../test/support/images.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type RunningQemuNbd } from '../../../test/support/qemu-nbd.js';
import { openSource } from '../open.js';
import { readSlabs } from '../reader.js';
import { SlabPool } from '../slabs.js';
import type { BlockSource } from '../open.js';
import { NbdClient } from './client.js';
import { Command, Option, OptionReply, REPLY_FLAG_DONE, ReplyType, STATE_DIRTY, STATE_ZERO } from './protocol.js';
import { openNbdSource } from './source.js';
import { parseNbdUrl } from './url.js';

const MIB = 1024 * 1024;

/** The runs readSlabs yields, as [first block, end block, 'hole' | 'data'], and whether the data read equals `bytes`. */
async function runsOf(source: BlockSource, bytes: Buffer, spans: Array<[number, number]> = [[0, source.sizeBytes / BLOCK_SIZE]]): Promise<{ runs: Array<[number, number, string]>; same: boolean }> {
  const pool = new SlabPool({ slabCount: 2, blocksPerSlab: 4 });
  const runs: Array<[number, number, string]> = [];
  let same = true;
  // One walk a span, as a tracked scan reads its ranges.
  const walks = spans.map(([fromBlock, toBlock]) => readSlabs(source, pool, { fromBlock, toBlock }));
  for (const walk of walks) for await (const run of walk) {
    runs.push([run.firstBlock, run.firstBlock + run.blockCount, run.hole ? 'hole' : 'data']);
    const start = run.firstBlock * BLOCK_SIZE;
    const expected = Buffer.alloc(run.blockCount * BLOCK_SIZE);
    bytes.copy(expected, 0, start, start + expected.byteLength);
    if (run.hole) same &&= expected.every((byte) => byte === 0);
    else {
      same &&= Buffer.from(run.slab.bytes.subarray(0, expected.byteLength)).equals(expected);
      run.slab.release();
    }
  }
  return { runs, same };
}

describe.skipIf(qemuMissing !== undefined)('NBD export as a block source', () => {
  let dir: string;
  let server: RunningQemuNbd;
  let bytes: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-nbd-source-'));
    // 64 MiB, 128 blocks: data in blocks 2..5, 40 and a few bytes of 60; an explicit zero cluster run in block 16.
    const image = join(dir, 'sparse.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, '64M');
    qemuIo(image, 'qcow2', 'write -P 0xab 1M 2M', 'write -z 8M 1M', 'write -P 0x11 20M 512k', `write -P 0x5a ${30 * MIB + 100 * 1024} 4k`);
    bytes = rawBytesOf(image, 'qcow2', dir);
    server = await startQemuNbd(dir, { image, format: 'qcow2', exportName: 'sparse' });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('opens from its URL, reads through NBD_CMD_READ and skips the blocks base:allocation reports as zeros', async () => {
    const source = await openSource(server.url);
    try {
      expect(source).toMatchObject({ kind: 'nbd', fd: undefined, sizeBytes: 64 * MIB, path: server.url });
      const { runs, same } = await runsOf(source, bytes);
      expect(same).toBe(true);
      expect(runs).toEqual([
        [0, 2, 'hole'],
        [2, 6, 'data'],
        [6, 40, 'hole'],
        [40, 41, 'data'],
        [41, 60, 'hole'],
        [60, 61, 'data'],
        [61, 128, 'hole'],
      ]);
    } finally {
      await source.close();
    }
  });

  it('reads everything as data when the server gives no block status (no structured replies)', async () => {
    const source = await openNbdSource(parseNbdUrl(server.url), { structuredReplies: false });
    try {
      const { runs, same } = await runsOf(source, bytes);
      expect(same).toBe(true);
      expect(runs.every(([, , kind]) => kind === 'data')).toBe(true);
      expect(runs.at(-1)?.[1]).toBe(128);
    } finally {
      await source.close();
    }
  });
});

describe.skipIf(qemuMissing !== undefined)('NBD export with a dirty bitmap as a block source', () => {
  let dir: string;
  let server: RunningQemuNbd;
  let bytes: Buffer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-nbd-bitmap-'));
    // 64 MiB with data in blocks 2..5; then, under bitmap b0: 4 KiB in block 6, 64 KiB in block 40,
    // 1 MiB over blocks 80..81 (in the data of no earlier write) and zeros written over block 3.
    const image = join(dir, 'tracked.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, '64M');
    qemuIo(image, 'qcow2', 'write -P 0xab 1M 2M');
    qemuImg('bitmap', '--add', image, 'b0');
    qemuIo(image, 'qcow2', 'write -P 0x22 3M 4k', 'write -P 0x33 20M 64k', 'write -P 0x44 40M 1M', 'write -z 1536k 512k');
    bytes = rawBytesOf(image, 'qcow2', dir);
    server = await startQemuNbd(dir, { image, format: 'qcow2', exportName: 'tracked', bitmap: 'b0' });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('reads the blocks of the dirty extents with the block status its bitmap walk was told, asking no more', async () => {
    const statusRequests = vi.spyOn(NbdClient.prototype, 'blockStatus');
    const source = await openNbdSource(parseNbdUrl(server.url), { dirtyBitmap: 'b0' });
    try {
      const ranges = await changedBlockRanges(source.changedRanges!.ranges(), source.sizeBytes);
      expect(ranges).toEqual([
        [3, 4],
        [6, 7],
        [40, 41],
        [80, 82],
      ]);
      const walked = statusRequests.mock.calls.length;
      const { runs, same } = await runsOf(source, bytes, ranges);
      expect(same).toBe(true);
      expect(runs).toEqual([
        [3, 4, 'hole'],
        [6, 7, 'data'],
        [40, 41, 'data'],
        [80, 82, 'data'],
      ]);
      expect(statusRequests.mock.calls.length).toBe(walked);
    } finally {
      statusRequests.mockRestore();
      await source.close();
    }
  });
});


describe('NBD export whose server answers block status a little at a time', () => {
  const KIB = 1024;
  const size = 8 * MIB + 4 * KIB;
  // [start, end) byte ranges, not aligned to blocks; the last of each runs 1 MiB past the export's end.
  const zeros: Array<[number, number]> = [
    [64 * KIB, 3 * MIB + 4 * KIB],
    [5 * MIB, 6 * MIB],
    [7 * MIB + 512 * KIB, size + MIB],
  ];
  const dirty: Array<[number, number]> = [
    [2 * MIB + 100, 2 * MIB + 200],
    [4 * MIB - 4 * KIB, 4 * MIB + 4 * KIB],
    [size - 100, size + MIB],
  ];
  let dir: string;
  let bytes: Buffer;
  let stop: () => Promise<void>;
  let url: string;
  /** Whether the connection being served selected the bitmap (the tests connect one at a time). */
  let bitmapSelected = false;

  /** Extents of `marked` ranges (flag `flag`) and of the bytes between them (flag 0), from `offset` on: at most `count` of them. */
  function extentsFrom(marked: Array<[number, number]>, flag: number, offset: number, count: number): Array<[number, number]> {
    const all: Array<[number, number, number]> = [];
    let at = 0;
    for (const [start, end] of marked) {
      if (start > at) all.push([at, start, 0]);
      all.push([start, end, flag]);
      at = end;
    }
    const out: Array<[number, number]> = [];
    for (const [start, end, flags] of all) {
      if (end <= offset || out.length === count) continue;
      out.push([end - Math.max(start, offset), flags]);
    }
    return out;
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-nbd-status-'));
    bytes = Buffer.from(pseudoRandomBytes('little at a time', size));
    for (const [start, end] of zeros) bytes.fill(0, start, Math.min(end, size));
    const server = await startFakeNbdServer(dir, {
      exportSize: size,
      onOption(option, data) {
        if (option !== Option.SET_META_CONTEXT) return undefined;
        // The queries after the export name and their count: base:allocation gets id 1, the bitmap id 2.
        const queries: string[] = [];
        let at = 4 + data.readUInt32BE(0) + 4;
        while (at < data.byteLength) {
          const length = data.readUInt32BE(at);
          queries.push(data.subarray(at + 4, at + 4 + length).toString());
          at += 4 + length;
        }
        bitmapSelected = queries.length > 1;
        const replies: Array<[number, Buffer]> = queries.map((name) => {
          const reply = Buffer.alloc(4 + name.length);
          reply.writeUInt32BE(name === 'base:allocation' ? 1 : 2, 0);
          reply.write(name, 4);
          return [OptionReply.META_CONTEXT, reply];
        });
        return [...replies, [OptionReply.ACK]];
      },
      onRequest(request, socket) {
        if (request.command === Command.READ) {
          const offset = Buffer.alloc(8);
          offset.writeBigUInt64BE(BigInt(request.offset));
          const data = bytes.subarray(request.offset, request.offset + request.length);
          socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + data.byteLength), offset, data]));
          return;
        }
        if (request.command !== Command.BLOCK_STATUS) return;
        // Two allocation extents and one bitmap extent a reply, whatever the length asked.
        const chunk = (id: number, extents: Array<[number, number]>, flags: number) => {
          const payload = Buffer.alloc(4 + 8 * extents.length);
          payload.writeUInt32BE(id, 0);
          extents.forEach(([length, state], i) => {
            payload.writeUInt32BE(length, 4 + 8 * i);
            payload.writeUInt32BE(state, 8 + 8 * i);
          });
          return Buffer.concat([chunkHeader(flags, ReplyType.BLOCK_STATUS, request.cookie, payload.byteLength), payload]);
        };
        socket.write(
          Buffer.concat([
            ...(bitmapSelected ? [chunk(2, extentsFrom(dirty, STATE_DIRTY, request.offset, 1), 0)] : []),
            chunk(1, extentsFrom(zeros, STATE_ZERO, request.offset, 2), REPLY_FLAG_DONE),
          ]),
        );
      },
    });
    url = server.url;
    stop = () => server.close();
  });
  afterAll(async () => {
    await stop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('skips only the blocks wholly inside zero extents and reads the rest as they are', async () => {
    const source = await openNbdSource(parseNbdUrl(url));
    try {
      expect(source.sizeBytes).toBe(size);
      const { runs, same } = await runsOf(source, bytes, [[0, 17]]);
      expect(same).toBe(true);
      expect(runs.filter(([, , kind]) => kind === 'hole').map(([from, to]) => [from, to])).toEqual([
        [1, 6],
        [10, 12],
        [15, 16],
      ]);
    } finally {
      await source.close();
    }
  });

  it('reports the dirty extents clipped to the export, and reads their blocks with the allocation it was told beside them', async () => {
    const source = await openNbdSource(parseNbdUrl(url), { dirtyBitmap: 'b1' });
    try {
      const ranges = await changedBlockRanges(source.changedRanges!.ranges(), source.sizeBytes);
      expect(ranges).toEqual([
        [4, 5],
        [7, 9],
        [16, 17],
      ]);
      const { runs, same } = await runsOf(source, bytes, ranges);
      expect(same).toBe(true);
      expect(runs).toEqual([
        [4, 5, 'hole'],
        [7, 9, 'data'],
        // The export's partial last block is read (as zeros), like any block a hole covers only in part.
        [16, 17, 'data'],
      ]);
    } finally {
      await source.close();
    }
  });
});
