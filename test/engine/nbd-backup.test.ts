/**
 * NBD exports as backup sources and restore targets, end to end: qemu-nbd
 * serving qcow2 and raw images made by qemu-img and qemu-io, the engine's
 * backup and restore through the real adapters against the local endpoint,
 * and the bytes compared with what `qemu-img convert -O raw` makes of the
 * image.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { backup } from '../../src/engine/backup/backup.js';
import { restore } from '../../src/engine/restore/restore.js';
import { verify } from '../../src/engine/restore/verify.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { Command, Option, REPLY_FLAG_DONE, ReplyType, TFLAG_HAS_FLAGS, TFLAG_SEND_FLUSH } from '../../src/source/nbd/protocol.js';
import { nonZeroBlocks, pseudoRandomBytes } from '../support/images.js';
import { startLocalEndpoint, type LocalEndpoint } from '../support/local-endpoint.js';
import { chunkHeader, goAnswer, startFakeNbdServer } from '../support/nbd-fake-server.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type QemuNbdOptions, type RunningQemuNbd } from '../support/qemu-nbd.js';

const MIB = 1024 * 1024;

function expectSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  expect(actual.byteLength, `size of ${what}`).toBe(expected.byteLength);
  expect(actual.equals(expected), `bytes of ${what}`).toBe(true);
}

describe.skipIf(qemuMissing !== undefined)('NBD sources and targets against the local endpoint', () => {
  let local: LocalEndpoint;
  const servers: RunningQemuNbd[] = [];

  beforeAll(async () => {
    local = await startLocalEndpoint('snapline-nbd-');
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await local?.close();
  });

  async function serve(options: QemuNbdOptions): Promise<RunningQemuNbd> {
    const server = await startQemuNbd(local.work, options);
    servers.push(server);
    return server;
  }

  /** A 40 MiB + 64 KiB qcow2: pseudo-random data with zero runs (left unallocated by convert) and an explicit zero cluster run. */
  function makeQcow2(): string {
    const raw = local.pathFor('seed.raw');
    const bytes = pseudoRandomBytes('nbd-e2e', 40 * MIB + 64 * 1024);
    bytes.fill(0, 4 * MIB, 12 * MIB);
    bytes.fill(0, 30 * MIB, 33 * MIB);
    writeFileSync(raw, bytes);
    const image = local.pathFor('disk.qcow2');
    qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image);
    qemuIo(image, 'qcow2', 'write -z 20M 2M');
    return image;
  }

  it('backs up a qcow2 served by qemu-nbd (volume named after the export), restores it equal to qemu-img convert -O raw, and an incremental uploads only the changed blocks', async () => {
    const image = makeQcow2();
    const socket = local.pathFor('disk.sock');
    const expected = rawBytesOf(image, 'qcow2', local.work);
    const blocks = Math.ceil(expected.byteLength / BLOCK_SIZE);
    const dataBlocks = nonZeroBlocks(expected).length;
    let server = await serve({ image, format: 'qcow2', exportName: 'vm-disk', socket });

    const first = await backup(local.session, { source: server.url });
    expect(first).toMatchObject({ volume: 'vm-disk', sourceBytes: expected.byteLength, blocksScanned: blocks, blocksUploaded: dataBlocks });
    expect(first.blocksZeroSkipped).toBe(blocks - dataBlocks);
    expect(local.session.index.lineage.getVolume('vm-disk')?.sourcePath).toBe(server.url);

    const restored = local.pathFor('restored.raw');
    const back = await restore(local.session, { snapshotId: first.snapshotId!, target: restored, verify: true });
    expect(back.verified).toBe(true);
    expectSameBytes(readFileSync(restored), expected, 'the first restore');

    // Change two blocks and zero a third while the server is down, then serve the image again on the same socket.
    await server.stop();
    qemuIo(image, 'qcow2', 'write -P 0x42 1M 4k', `write -P 0x43 ${36 * MIB} 512k`, 'write -z 2M 512k');
    server = await serve({ image, format: 'qcow2', exportName: 'vm-disk', socket });
    const second = await backup(local.session, { source: server.url });
    expect(second).toMatchObject({ volume: 'vm-disk', parentSnapshotId: first.snapshotId, blocksChanged: 3, blocksUploaded: 3 });

    const again = local.pathFor('restored-2.raw');
    await restore(local.session, { snapshotId: second.snapshotId!, target: again });
    expectSameBytes(readFileSync(again), rawBytesOf(image, 'qcow2', local.work), 'the second restore');
  });

  it('asks for --volume when the URL names no export (the default export), and takes the name given', async () => {
    const image = makeQcow2();
    const server = await serve({ image, format: 'qcow2' });
    expect(server.url).toMatch(/^nbd\+unix:\/\/\/\?socket=/);
    await expect(backup(local.session, { source: server.url })).rejects.toMatchObject({
      code: ErrorCodes.INVALID_ARGUMENT,
      message: expect.stringMatching(/names no export.*pass --volume/),
    });
    const result = await backup(local.session, { source: server.url, volume: 'default-export', dryRun: true });
    expect(result).toMatchObject({ volume: 'default-export', dryRun: true, blocksScanned: 81 });
  });

  it('restores onto a writable NBD export, zeroing what the snapshot lacks, and verifies it; a read-only or too small export is refused, one holding a partition table needs force', async () => {
    const image = makeQcow2();
    const source = await serve({ image, format: 'qcow2', exportName: 'source-disk', tcp: true });
    const { snapshotId } = await backup(local.session, { source: source.url });
    const expected = rawBytesOf(image, 'qcow2', local.work);

    // The target export holds old data everywhere.
    const targetImage = local.pathFor('target.raw');
    writeFileSync(targetImage, pseudoRandomBytes('old content', expected.byteLength));
    const target = await serve({ image: targetImage, format: 'raw', exportName: 'target', readOnly: false });
    const result = await restore(local.session, { snapshotId: snapshotId!, target: target.url, verify: true });
    expect(result).toMatchObject({ target: target.url, verified: true, sizeBytes: expected.byteLength });
    await target.stop();
    expectSameBytes(readFileSync(targetImage), expected, 'the target export');

    // An export whose start carries a partition table is overwritten only with --force.
    const partitioned = local.pathFor('partitioned.raw');
    const head = pseudoRandomBytes('old content', expected.byteLength);
    head[510] = 0x55;
    head[511] = 0xaa;
    writeFileSync(partitioned, head);
    const guarded = await serve({ image: partitioned, format: 'raw', exportName: 'partitioned', readOnly: false });
    await expect(restore(local.session, { snapshotId: snapshotId!, target: guarded.url })).rejects.toMatchObject({
      code: ErrorCodes.TARGET_UNUSABLE,
      message: expect.stringContaining('holds an MBR partition table or boot sector (boot signature 0x55AA at byte 510)'),
      hint: expect.stringContaining('--force'),
    });
    await restore(local.session, { snapshotId: snapshotId!, target: guarded.url, force: true });
    await guarded.stop();
    expectSameBytes(readFileSync(partitioned), expected, 'the partitioned export, overwritten with force');

    const readOnly = await serve({ image: targetImage, format: 'raw', exportName: 'target' });
    await expect(restore(local.session, { snapshotId: snapshotId!, target: readOnly.url })).rejects.toMatchObject({
      code: ErrorCodes.TARGET_UNUSABLE,
      message: expect.stringContaining('is read-only'),
    });
    const smallImage = local.pathFor('small.raw');
    qemuImg('create', '-q', '-f', 'raw', smallImage, '8M');
    const small = await serve({ image: smallImage, format: 'raw', exportName: 'small', readOnly: false });
    await expect(restore(local.session, { snapshotId: snapshotId!, target: small.url })).rejects.toMatchObject({
      code: ErrorCodes.TARGET_UNUSABLE,
      message: expect.stringContaining(`holds ${8 * MIB} bytes, less than the ${expected.byteLength} bytes`),
    });
  });

  it('restores incrementally onto an export that serves one client at a time (qemu-nbd without --shared), hashing it over the connection it writes on', async () => {
    const image = local.pathFor('one-client-source.raw');
    const first = pseudoRandomBytes('one client', 8 * MIB + 4096);
    writeFileSync(image, first);
    const a = await backup(local.session, { source: image, volume: 'one-client' });
    const second = Buffer.from(first);
    second.fill(0x5a, 3 * MIB, 3 * MIB + 100);
    second.fill(0, 6 * MIB, 7 * MIB);
    writeFileSync(image, second);
    const b = await backup(local.session, { source: image, volume: 'one-client' });

    const targetImage = local.pathFor('one-client-target.raw');
    writeFileSync(targetImage, pseudoRandomBytes('old content', second.byteLength));
    const target = await serve({ image: targetImage, format: 'raw', exportName: 'one-client', readOnly: false, shared: 1 });
    await restore(local.session, { snapshotId: a.snapshotId!, target: target.url });
    const result = await restore(local.session, { snapshotId: b.snapshotId!, target: target.url, incremental: true, verify: true });
    expect(result).toMatchObject({ incremental: { method: 'hashed', blocksHashed: 17, blocksDiffering: 3 }, blocksFetched: 1, blocksZeroed: 2, verified: true });
    await target.stop();
    expectSameBytes(readFileSync(targetImage), second, 'the target export');
  });

  it('fails a backup with a clear error when the server goes away in the middle of the scan, leaving a resumable run or nothing started', async () => {
    let reads = 0;
    const server = await startFakeNbdServer(local.work, {
      exportSize: 32 * MIB,
      onRequest(request, socket) {
        if (request.command !== Command.READ) return;
        reads += 1;
        if (reads > 3) {
          socket.destroy();
          return;
        }
        const offset = Buffer.alloc(8);
        offset.writeBigUInt64BE(BigInt(request.offset));
        socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + request.length), offset, Buffer.alloc(request.length, 7)]));
      },
    });
    try {
      const err = await backup(local.session, { source: server.url, volume: 'going-away' }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.IO_FAILED });
      expect((err as Error).message).toMatch(/^NBD server nbd\+unix:\/\/\/disk\?socket=.* closed the connection/);
      // The snapshot starts with the first block to upload: the read may fail before or after that.
      const pending = local.session.index.runs.pendingRun('going-away');
      if (pending === undefined) expect(local.session.index.lineage.listSnapshots('going-away')).toEqual([]);
      else expect((await local.session.catalog.describeSnapshots([pending.snapshotId]))[0]).toMatchObject({ state: 'pending' });
    } finally {
      await server.close();
    }
  });
  it('ends an interrupted backup at once when the server has stopped answering, failing the reads it waits for', async () => {
    const abort = new AbortController();
    // Answers no read: the first one asked for interrupts the run.
    const server = await startFakeNbdServer(local.work, {
      exportSize: 32 * MIB,
      onRequest(request) {
        if (request.command === Command.READ) abort.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by SIGINT'));
      },
    });
    try {
      const err = await backup(local.session, { source: server.url, volume: 'stalled', signal: abort.signal }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED });
      expect(local.session.index.runs.pendingRun('stalled')).toBeUndefined();
    } finally {
      await server.close();
    }
  });
  it('ends an interrupted verify of an export whose server has stopped answering at once', async () => {
    const serving = await startServingNines(local.work);
    const abort = new AbortController();
    const stalled = await startFakeNbdServer(local.work, {
      exportSize: 2 * MIB,
      onRequest(request) {
        if (request.command === Command.READ) abort.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by SIGINT'));
      },
    });
    try {
      const { snapshotId } = await backup(local.session, { source: serving.url, volume: 'verify-stalled' });
      const err = await verify(local.session, { snapshotId: snapshotId!, source: stalled.url, signal: abort.signal }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED });
    } finally {
      await Promise.all([serving.close(), stalled.close()]);
    }
  });
  it('ends an interrupted restore onto an export whose server has stopped answering at once', async () => {
    const serving = await startServingNines(local.work);
    const abort = new AbortController();
    // Writable, and answers no write: the first one interrupts the run.
    const stalled = await startFakeNbdServer(local.work, {
      exportSize: 2 * MIB,
      onOption: (option) => (option === Option.GO ? goAnswer(2 * MIB, TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH) : undefined),
      onRequest(request) {
        if (request.command === Command.WRITE) abort.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by SIGINT'));
      },
    });
    try {
      const { snapshotId } = await backup(local.session, { source: serving.url, volume: 'restore-stalled' });
      const err = await restore(local.session, { snapshotId: snapshotId!, target: stalled.url, force: true, signal: abort.signal }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCodes.INTERRUPTED });
    } finally {
      await Promise.all([serving.close(), stalled.close()]);
    }
  });
  it('ends an interrupted backup at once while the server has not finished the handshake', async () => {
    // Accepts the connection and never greets.
    const server = await startFakeNbdServer(local.work, { greeting: Buffer.alloc(0) });
    const abort = new AbortController();
    try {
      const run = backup(local.session, { source: server.url, volume: 'greetless', signal: abort.signal });
      setImmediate(() => abort.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by SIGINT')));
      await expect(run).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED });
    } finally {
      await server.close();
    }
  });
});

/** A 2 MiB export of bytes 9, its socket under `work`, that answers every read at once. */
function startServingNines(work: string) {
  return startFakeNbdServer(work, {
    exportSize: 2 * MIB,
    onRequest(request, socket) {
      if (request.command !== Command.READ) return;
      const offset = Buffer.alloc(8);
      offset.writeBigUInt64BE(BigInt(request.offset));
      socket.write(Buffer.concat([chunkHeader(REPLY_FLAG_DONE, ReplyType.OFFSET_DATA, request.cookie, 8 + request.length), offset, Buffer.alloc(request.length, 9)]));
    },
  });
}
