import { ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs';
import Database from 'better-sqlite3';
import { readdirSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator } from '../../src/emulator/index.js';
import { isSnaplineError } from '../../src/errors.js';
import {
  blockOf,
  checksum,
  clientsFor,
  complete,
  distinctBlock,
  expectBytes,
  get,
  listAll,
  put,
  readBack,
  rejection,
  snapshotWith,
  start,
  startTestEndpoint,
  tempDir,
} from './helpers.js';

function packBytes(dataDir: string): number {
  const packs = join(dataDir, 'packs');
  return readdirSync(packs).reduce((sum, name) => sum + statSync(join(packs, name)).size, 0);
}

describe('persistence', () => {
  it('keeps completed and pending snapshots, blocks and tokens across a restart', async () => {
    const dir = tempDir();
    try {
      const first = await startTestEndpoint({}, dir.path);
      const done = await snapshotWith(first.ebs, new Map([[0, blockOf(1)], [3, blockOf(2)]]));
      const child = await snapshotWith(first.ebs, new Map([[3, blockOf(4)]]), { ParentSnapshotId: done });
      const tokens = await listAll(first.ebs, done);
      const pending = await start(first.ebs);
      await put(first.ebs, pending, 0, blockOf(5));
      await first.stop();

      const second = await startTestEndpoint({}, dir.path);
      expectBytes((await get(second.ebs, done, 3, tokens[1]!.BlockToken!)).data, blockOf(2));
      expectBytes(await readBack(second.ebs, child, 0), blockOf(1));
      expectBytes(await readBack(second.ebs, child, 3), blockOf(4));
      await put(second.ebs, pending, 1, blockOf(6));
      expect(await complete(second.ebs, pending, new Map([[0, blockOf(5)], [1, blockOf(6)]]))).toBe('completed');
      expectBytes(await readBack(second.ebs, pending, 0), blockOf(5));
      await second.stop();
    } finally {
      dir.cleanup();
    }
  });

  it('a data directory whose client tokens were kept without their Region still replays them (the migration makes tokens per Region)', async () => {
    const dir = tempDir();
    try {
      const first = await startTestEndpoint({}, dir.path);
      const id = await start(first.ebs, { ClientToken: 'token-before-regions' });
      await first.stop();
      // As the schema before tokens were per Region kept it: the bare token, user_version 4.
      const db = new Database(join(dir.path, 'catalog.sqlite'));
      db.prepare('UPDATE snapshots SET client_token = ? WHERE snapshot_id = ?').run('token-before-regions', id);
      db.pragma('user_version = 4');
      db.close();

      const second = await startTestEndpoint({}, dir.path);
      expect(await start(second.ebs, { ClientToken: 'token-before-regions' })).toBe(id);
      await second.stop();
    } finally {
      dir.cleanup();
    }
  });

  it('stores identical blocks once', async () => {
    const t = await startTestEndpoint();
    try {
      const a = await start(t.ebs);
      const b = await start(t.ebs);
      for (let i = 0; i < 10; i += 1) {
        await put(t.ebs, a, i, blockOf(7));
        await put(t.ebs, b, i, blockOf(7));
      }
      expect(packBytes(t.dataDir)).toBe(BLOCK_SIZE);
      await put(t.ebs, b, 10, blockOf(8));
      expect(packBytes(t.dataDir)).toBe(2 * BLOCK_SIZE);
      expect((await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: await snapshotWith(t.ebs, new Map([[0, blockOf(7)]])) }))).Blocks).toHaveLength(1);
    } finally {
      await t.stop();
    }
  });

  it('refuses a second endpoint on the same data directory, and frees it on close', async () => {
    const t = await startTestEndpoint();
    try {
      const err = await rejection(startEmulator({ dataDir: t.dataDir }));
      expect(isSnaplineError(err, 'CONFLICT')).toBe(true);
      await t.emulator.close();
      const again = await startEmulator({ dataDir: t.dataDir });
      await again.close();
    } finally {
      await t.stop();
    }
  });

  it('refuses a data directory it cannot use with IO_FAILED', async () => {
    const dir = tempDir();
    try {
      const file = join(dir.path, 'a-file');
      writeFileSync(file, 'not a directory');
      const err = await rejection(startEmulator({ dataDir: file }));
      expect(isSnaplineError(err, 'IO_FAILED')).toBe(true);
      expect(err.message).toContain(file);
    } finally {
      dir.cleanup();
    }
  });

  it('refuses a port in use with CONFLICT', async () => {
    const t = await startTestEndpoint();
    const dir = tempDir();
    try {
      const err = await rejection(startEmulator({ dataDir: dir.path, port: t.emulator.port }));
      expect(isSnaplineError(err, 'CONFLICT')).toBe(true);
      expect(err.message).toMatch(/in use/);
    } finally {
      dir.cleanup();
      await t.stop();
    }
  });
});

describe('load and bad clients', () => {
  it('takes 128 PutSnapshotBlock requests in flight at once', async () => {
    const t = await startTestEndpoint();
    const wide = clientsFor(t.emulator.url, 128);
    try {
      const id = await start(wide.ebs);
      const written = new Map(Array.from({ length: 128 }, (_, i) => [i * 7, distinctBlock(i)] as const));
      const answers = await Promise.all([...written].map(([index, data]) => put(wide.ebs, id, index, data)));
      expect(answers.every((a) => a.$metadata.httpStatusCode === 201)).toBe(true);
      expect(t.emulator.stats().operations.PutSnapshotBlock).toMatchObject({ requests: 128, errors: 0, bytesIn: 128 * BLOCK_SIZE });
      expect(await complete(wide.ebs, id, written)).toBe('completed');
      const listed = await listAll(wide.ebs, id);
      expect(listed.map((b) => b.BlockIndex)).toEqual([...written.keys()]);
      for (const block of listed.slice(0, 128).filter((_, i) => i % 16 === 0)) {
        const got = await get(wide.ebs, id, block.BlockIndex!, block.BlockToken!);
        expect(got.checksum).toBe(checksum(written.get(block.BlockIndex!)!));
        expectBytes(got.data, written.get(block.BlockIndex!)!);
      }
    } finally {
      wide.ebs.destroy();
      await t.stop();
    }
  });

  it('survives a client that hangs up mid-block: nothing lands, the block can be written again', async () => {
    const t = await startTestEndpoint();
    try {
      const id = await start(t.ebs);
      await put(t.ebs, id, 0, blockOf(1));
      const half = request(new URL(`${t.emulator.url}/snapshots/${id}/blocks/1`), {
        method: 'PUT',
        headers: { 'content-length': BLOCK_SIZE, 'x-amz-data-length': BLOCK_SIZE, 'x-amz-checksum': checksum(blockOf(2)), 'x-amz-checksum-algorithm': 'SHA256' },
      });
      half.on('error', () => {});
      half.write(blockOf(2).subarray(0, BLOCK_SIZE / 2));
      await new Promise((r) => setTimeout(r, 50));
      half.destroy();
      // The endpoint frees the block index when it sees the hang-up.
      for (let attempt = 0; ; attempt += 1) {
        const err = await put(t.ebs, id, 1, blockOf(3)).then(
          () => undefined,
          (e: Error & { Reason?: string }) => e,
        );
        if (err === undefined) break;
        expect(err.Reason).toBe('CONFLICTING_BLOCK_UPDATE');
        expect(attempt).toBeLessThan(200);
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await complete(t.ebs, id, new Map([[0, blockOf(1)], [1, blockOf(3)]]))).toBe('completed');
      expectBytes(await readBack(t.ebs, id, 1), blockOf(3));
    } finally {
      await t.stop();
    }
  });

  it('answers garbage on the wire with 400 and keeps serving', async () => {
    const t = await startTestEndpoint();
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const socket = connect(t.emulator.port, '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
        let text = '';
        socket.on('data', (d) => (text += d.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
      expect(reply).toMatch(/^HTTP\/1\.1 400/);
      expect(await start(t.ebs)).toMatch(/^snap-/);
    } finally {
      await t.stop();
    }
  });

  it('answers an internal failure with InternalServerException (500), reports it, and keeps serving', async () => {
    const logged: string[] = [];
    const t = await startTestEndpoint({ log: (line) => logged.push(line) });
    try {
      const id = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]));
      const [block] = await listAll(t.ebs, id);
      // Damage the store behind the endpoint's back: the block's bytes are gone.
      for (const name of readdirSync(join(t.dataDir, 'packs'))) truncateSync(join(t.dataDir, 'packs', name), 0);
      const err = await rejection(get(t.ebs, id, 0, block!.BlockToken!));
      expect(err.name).toBe('InternalServerException');
      expect(err.$metadata?.httpStatusCode).toBe(500);
      expect(logged.join('\n')).toMatch(/internal error in GET \/snapshots\/snap-/);
      expect(await start(t.ebs)).toMatch(/^snap-/);
    } finally {
      await t.stop();
    }
  });

  it('close() lets a request under way finish or drops it, and loses no stored block', async () => {
    const dir = tempDir();
    try {
      const t = await startTestEndpoint({}, dir.path);
      const id = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]));
      t.emulator.setFaults({ latencyMs: 200 });
      const late = listAll(t.ebs, id).then(
        () => 'answered',
        () => 'dropped',
      );
      await new Promise((r) => setTimeout(r, 20));
      await t.stop();
      expect(['answered', 'dropped']).toContain(await late);
      const again = await startTestEndpoint({}, dir.path);
      expectBytes(await readBack(again.ebs, id, 0), blockOf(1));
      await again.stop();
    } finally {
      dir.cleanup();
    }
  });
});
