/**
 * Changed-block tracking end to end: qcow2 images with persistent dirty
 * bitmaps (qemu-img bitmap), written with qemu-io and served by qemu-nbd -B,
 * backed up through the real adapters against the local endpoint; and
 * changed-blocks files on a plain image file. Every restore is compared with
 * what `qemu-img convert -O raw` makes of the image.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { backup, type BackupOptions, type BackupResult } from '../../src/engine/backup/backup.js';
import { restore } from '../../src/engine/restore/restore.js';
import { verify } from '../../src/engine/restore/verify.js';
import { ErrorCodes } from '../../src/errors.js';
import { NbdClient } from '../../src/source/nbd/client.js';
import { nonZeroBlocks, pseudoRandomBytes } from '../support/images.js';
import { startLocalEndpoint, type LocalEndpoint } from '../support/local-endpoint.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type RunningQemuNbd } from '../support/qemu-nbd.js';

const MIB = 1024 * 1024;

describe.skipIf(qemuMissing !== undefined)('changed-block tracking against the local endpoint', () => {
  let local: LocalEndpoint;
  const servers: RunningQemuNbd[] = [];

  beforeAll(async () => {
    local = await startLocalEndpoint('snapline-cbt-');
  });
  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await local?.close();
  });

  /** A 40 MiB + 64 KiB qcow2 of pseudo-random data with zero runs (left unallocated), and a first bitmap. */
  function makeImage(name: string, bitmap: string): string {
    const raw = local.pathFor(`${name}.raw`);
    const bytes = pseudoRandomBytes(name, 40 * MIB + 64 * 1024);
    bytes.fill(0, 4 * MIB, 12 * MIB);
    bytes.fill(0, 30 * MIB, 33 * MIB);
    writeFileSync(raw, bytes);
    const image = local.pathFor(`${name}.qcow2`);
    qemuImg('convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, image);
    qemuImg('bitmap', '--add', image, bitmap);
    return image;
  }

  /** Serves the image read-only with `bitmap` exported (always at the same URL), runs `body`, stops the server. */
  async function served<T>(image: string, bitmap: string | undefined, body: (url: string) => Promise<T>): Promise<T> {
    const server = await startQemuNbd(local.work, { image, format: 'qcow2', exportName: 'vm', bitmap, socket: `${image}.sock` });
    servers.push(server);
    try {
      return await body(server.url);
    } finally {
      await server.stop();
    }
  }

  async function backupServed(image: string, bitmap: string | undefined, options: Omit<BackupOptions, 'source'>, warnings: string[] = []): Promise<BackupResult> {
    return served(image, bitmap, (url) => backup(local.session, { ...options, source: url, onWarning: (message) => warnings.push(message) }));
  }

  async function expectRestoresTo(snapshotId: string, image: string, what: string): Promise<void> {
    const target = local.pathFor(`restore-${process.hrtime.bigint()}.raw`);
    await restore(local.session, { snapshotId, target });
    const expected = rawBytesOf(image, 'qcow2', local.work);
    const actual = readFileSync(target);
    expect(actual.byteLength, `size of ${what}`).toBe(expected.byteLength);
    expect(actual.equals(expected), `bytes of ${what}`).toBe(true);
  }

  it('takes a full backup, then incrementals that read only the blocks the bitmap marks dirty, each restoring byte-identical to the image', async () => {
    const image = makeImage('tracked', 'gen1');
    const volume = 'tracked';
    const dataBlocks = nonZeroBlocks(rawBytesOf(image, 'qcow2', local.work)).length;

    // The full backup records the checkpoint the bitmap gen1 counts from.
    const full = await backupServed(image, undefined, { volume, checkpoint: 'gen1' });
    expect(full).toMatchObject({ blocksRead: dataBlocks, changeTracking: { tracker: null, scan: 'full', checkpoint: 'gen1' } });
    await expectRestoresTo(full.snapshotId!, image, 'the full backup');

    // Writes land in gen1; gen2 starts before the backup reads them.
    qemuIo(image, 'qcow2', 'write -P 0x42 1M 4k', `write -P 0x43 ${36 * MIB} 512k`, `write -P 0x44 ${20 * MIB + 4096} 1M`, `write -z ${14 * MIB} 512k`);
    qemuImg('bitmap', '--add', image, 'gen2');
    const warnings: string[] = [];
    const first = await backupServed(image, 'gen1', { volume, dirtyBitmap: 'gen1', checkpoint: 'gen2' }, warnings);
    expect(warnings).toEqual([]);
    // Dirty: block 2 (1 MiB), 72 (36 MiB), 40..42 (20 MiB + 4 KiB, 1 MiB long), 28 (14 MiB, zeroed: a hole, not read, uploaded as zeros).
    expect(first).toMatchObject({
      parentSnapshotId: full.snapshotId,
      blocksScanned: 6,
      blocksRead: 5,
      blocksChanged: 6,
      blocksUploaded: 6,
      changeTracking: { scan: 'tracked', sinceCheckpoint: 'gen1', checkpoint: 'gen2', blocksMarked: 6, blocksVerified: 0 },
    });
    expect(first.changeTracking?.tracker).toContain('dirty bitmap "gen1"');
    expect(local.session.index.trackers.get(first.snapshotId!)).toMatchObject({ kind: 'dirty-bitmap', name: 'gen1', sinceCheckpoint: 'gen1', checkpoint: 'gen2', scan: 'tracked' });
    await expectRestoresTo(first.snapshotId!, image, 'the first incremental');
    qemuImg('bitmap', '--remove', image, 'gen1');

    // A second generation, checked: every block gen2 calls clean is read and compared first.
    qemuIo(image, 'qcow2', `write -P 0x45 ${39 * MIB} 1M`);
    qemuImg('bitmap', '--add', image, 'gen3');
    const second = await backupServed(image, 'gen2', { volume, dirtyBitmap: 'gen2', checkpoint: 'gen3', verifyUnchangedPercent: 100 });
    expect(second).toMatchObject({ parentSnapshotId: first.snapshotId, blocksRead: 2, blocksUploaded: 2, changeTracking: { scan: 'tracked', blocksMarked: 2 } });
    expect(second.changeTracking!.blocksVerified).toBe(Math.ceil((40 * MIB + 64 * 1024) / BLOCK_SIZE) - 2);
    await expectRestoresTo(second.snapshotId!, image, 'the second incremental');

    // verify reads the NBD export and finds it equal to the snapshot.
    const checked = await served(image, undefined, (url) => verify(local.session, { snapshotId: second.snapshotId!, source: url }));
    expect(checked).toMatchObject({ equal: true, differingBlocks: 0 });
  });

  it('walks the dirty bitmap while the parent is looked up in EC2, not after', async () => {
    const image = makeImage('early', 'e1');
    const volume = 'early';
    const full = await backupServed(image, undefined, { volume, checkpoint: 'e1' });
    qemuIo(image, 'qcow2', 'write -P 0x61 2M 4k', `write -P 0x62 ${24 * MIB} 4k`);
    const statusRequests = vi.spyOn(NbdClient.prototype, 'blockStatus');
    const seenByDescribe: number[] = [];
    const session = local.session;
    const catalog: typeof session.catalog = new Proxy(session.catalog, {
      get: (target, key) => {
        const value: unknown = Reflect.get(target, key, target);
        if (typeof value !== 'function') return value;
        if (key !== 'describeSnapshots') return value.bind(target);
        return (...args: Parameters<typeof target.describeSnapshots>) => {
          seenByDescribe.push(statusRequests.mock.calls.length);
          return target.describeSnapshots(...args);
        };
      },
    });
    const deps = new Proxy(session, { get: (target, key) => (key === 'catalog' ? catalog : Reflect.get(target, key, target)) });
    try {
      const result = await served(image, 'e1', (url) => backup(deps, { source: url, volume, dirtyBitmap: 'e1' }));
      expect(result).toMatchObject({ parentSnapshotId: full.snapshotId, blocksRead: 2, blocksUploaded: 2, changeTracking: { scan: 'tracked' } });
      // The first DescribeSnapshots (of the parent) went out with the walk's first block status request already sent.
      expect(seenByDescribe[0]).toBeGreaterThan(0);
    } finally {
      statusRequests.mockRestore();
    }
  });

  it('falls back to a full scan, saying why, when the bitmap does not continue from the parent, and without a parent', async () => {
    const image = makeImage('broken', 'a');
    const volume = 'broken';
    const dataBlocks = nonZeroBlocks(rawBytesOf(image, 'qcow2', local.work)).length;
    const noParent: string[] = [];
    const full = await backupServed(image, 'a', { volume, dirtyBitmap: 'a', checkpoint: 'b' }, noParent);
    expect(noParent).toEqual([expect.stringContaining('there is no parent snapshot')]);
    expect(full).toMatchObject({ blocksRead: dataBlocks, changeTracking: { scan: 'full', checkpoint: 'b' } });

    // The parent was taken at "b", but this bitmap counts from "a": it also holds writes from before the parent, and may lack some after it.
    qemuIo(image, 'qcow2', 'write -P 0x51 3M 4k');
    const warnings: string[] = [];
    const next = await backupServed(image, 'a', { volume, dirtyBitmap: 'a', checkpoint: 'c' }, warnings);
    expect(warnings).toEqual([expect.stringMatching(/dirty bitmap "a" .* is not used: the tracker counts changes since checkpoint "a", but the parent .* was taken at checkpoint "b": its history does not continue/)]);
    expect(next).toMatchObject({ blocksRead: dataBlocks, blocksUploaded: 1, changeTracking: { scan: 'full', checkpoint: 'c' } });
    expect(next.changeTracking!.reason).toContain('does not continue from the parent');
    expect(local.session.index.trackers.get(next.snapshotId!)).toMatchObject({ scan: 'full', checkpoint: 'c', reason: expect.stringContaining('checkpoint "b"') });
    await expectRestoresTo(next.snapshotId!, image, 'the fallback backup');

    // An export without the bitmap asked for is refused before anything starts.
    await expect(backupServed(image, undefined, { volume, dirtyBitmap: 'c' })).rejects.toMatchObject({
      code: ErrorCodes.SOURCE_UNUSABLE,
      message: expect.stringContaining('offers no dirty bitmap "c"'),
      details: { option: 'dirtyBitmap' },
    });
  });

  it('catches a lying bitmap (writes made while it was disabled) with --verify-unchanged 100, and takes no snapshot', async () => {
    const image = makeImage('lying', 'g1');
    const volume = 'lying';
    const full = await backupServed(image, undefined, { volume, checkpoint: 'g1' });
    qemuIo(image, 'qcow2', 'write -P 0x61 1M 4k');
    qemuImg('bitmap', '--disable', image, 'g1');
    qemuIo(image, 'qcow2', `write -P 0x62 ${25 * MIB} 4k`, `write -P 0x63 ${38 * MIB} 4k`);

    // Trusted blindly, the bitmap would lose two changed blocks: a dry run shows it.
    const blind = await backupServed(image, 'g1', { volume, dirtyBitmap: 'g1', dryRun: true });
    expect(blind).toMatchObject({ blocksRead: 1, blocksChanged: 1 });

    const err = await backupServed(image, 'g1', { volume, dirtyBitmap: 'g1', checkpoint: 'g2', verifyUnchangedPercent: 100 }).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: ErrorCodes.TRACKER_UNTRUSTED,
      exitCode: 8,
      message: expect.stringMatching(/the dirty bitmap "g1" of .* cannot be trusted: 2 of 80 blocks it calls unchanged differ from the parent .*, such as blocks 50 \(byte 26214400\), 76 \(byte 39845888\); no snapshot was taken/),
      details: { blocksDiffering: 2, firstBlocks: [50, 76] },
    });
    expect(local.session.index.runs.pendingRun(volume)).toBeUndefined();
    expect(local.session.index.lineage.headSnapshot(volume)?.snapshotId).toBe(full.snapshotId);
    expect(local.session.index.lineage.listSnapshots(volume)).toHaveLength(1);
  });

  it('reads only the ranges a changed-blocks file lists, on a plain image file, after checking the checkpoint', async () => {
    const path = local.pathFor('tracked-file.raw');
    const volume = 'tracked-file';
    const bytes = pseudoRandomBytes('changed blocks', 16 * MIB);
    writeFileSync(path, bytes);
    const full = await backup(local.session, { source: path, volume, checkpoint: 'era-1' });
    expect(full.changeTracking).toMatchObject({ scan: 'full', checkpoint: 'era-1' });

    bytes.fill(0x71, 3 * MIB + 10, 3 * MIB + 20);
    bytes.fill(0x72, 9 * MIB - 1, 9 * MIB + 1);
    writeFileSync(path, bytes);
    const changes = local.pathFor('changes.txt');
    writeFileSync(changes, `# dm-era blocks written since era-1\n0x900000 0x100000\n${3 * MIB} 4096 # the first write\n\n${9 * MIB - 4096} 8192\n`);
    const next = await backup(local.session, { source: path, volume, changedBlocksFile: changes, sinceCheckpoint: 'era-1', checkpoint: 'era-2' });
    // Blocks 6 (3 MiB), 17 and 18 (9 MiB - 4 KiB .. 9 MiB + 4 KiB), 18 and 19 (0x900000, 1 MiB).
    expect(next).toMatchObject({ blocksScanned: 4, blocksRead: 4, blocksUploaded: 3, changeTracking: { scan: 'tracked', blocksMarked: 4, tracker: `the changed-blocks file ${changes}` } });
    const target = local.pathFor('tracked-file.restored');
    await restore(local.session, { snapshotId: next.snapshotId!, target });
    expect(readFileSync(target).equals(bytes)).toBe(true);

    // A changed-blocks file whose history starts elsewhere is not used.
    const warnings: string[] = [];
    const other = await backup(local.session, { source: path, volume, changedBlocksFile: changes, sinceCheckpoint: 'era-1', dryRun: true, onWarning: (m) => warnings.push(m) });
    expect(other).toMatchObject({ blocksRead: 32, changeTracking: { scan: 'full' } });
    expect(warnings[0]).toContain('counts changes since checkpoint "era-1", but the parent');

    // Bad files are refused with the line, before anything starts.
    writeFileSync(changes, `0 4096\n${16 * MIB - 10} 11\n`);
    await expect(backup(local.session, { source: path, volume, changedBlocksFile: changes, sinceCheckpoint: 'era-2' })).rejects.toMatchObject({
      code: ErrorCodes.INVALID_ARGUMENT,
      message: `changedBlocksFile ${changes} line 2: bytes [${16 * MIB - 10}, ${16 * MIB + 1}) reach past the source's end at ${16 * MIB} bytes`,
    });
    expect(local.session.index.runs.pendingRun(volume)).toBeUndefined();
  });
});
