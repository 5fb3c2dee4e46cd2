import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { changedBlockRanges } from '../../core/changed-ranges.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type RunningQemuNbd } from '../../../test/support/qemu-nbd.js';
import { openSource } from '../open.js';
import { readSlabs } from '../reader.js';
import { SlabPool } from '../slabs.js';
import type { BlockSource } from '../open.js';
import { NbdClient } from './client.js';
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

