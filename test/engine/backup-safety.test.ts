/**
 * Incremental backups that must never be fooled into a snapshot that lacks a
 * block of the source or holds a stale one: the engine on the strict local
 * endpoint through the real adapters (session, SDK, HTTP on loopback), a
 * SQLite index, the hash pool and image files. Each snapshot is checked by a
 * restore compared byte for byte with the source.
 */
import { appendFileSync, copyFileSync, truncateSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import { backup, type BackupDeps } from '../../src/engine/backup/backup.js';
import { prune } from '../../src/engine/lineage/prune.js';
import { restore } from '../../src/engine/restore/restore.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import type { Session } from '../../src/session.js';
import { overwriteBlocks, pseudoRandomBytes, writeBlocks, writeImage } from '../support/images.js';
import { clientsFor, snapshotWith } from '../emulator/helpers.js';
import { startLocalEndpoint, withLocalSession, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

let local: LocalEndpoint;
beforeAll(async () => {
  local = await startLocalEndpoint('snapline-backup-safety-', { emulator: { log: () => undefined } });
});
afterAll(() => local.close());

function depsOf(session: Session, replaced: Partial<BackupDeps> = {}): BackupDeps {
  return { index: session.index, writer: session.writer, reader: session.reader, catalog: session.catalog, hashPool: session.hashPool, slabs: session.slabs, ...replaced };
}

/** The session's writer, but the process "dies" (INTERRUPTED) at the upload after the first `count`. */
function dyingAfterPuts(writer: SnapshotWriter, count: number): SnapshotWriter {
  let sent = 0;
  return {
    startSnapshot: (input) => writer.startSnapshot(input),
    async putBlock(...args) {
      sent += 1;
      if (sent > count) throw new SnaplineError(ErrorCodes.INTERRUPTED, 'the process died (test)');
      await writer.putBlock(...args);
    },
    completeSnapshot: (...args) => writer.completeSnapshot(...args),
  };
}

/** Restores `snapshotId` into a new file and compares it with the image at `imagePath`. */
async function expectRestoresTo(snapshotId: string, imagePath: string): Promise<void> {
  const target = local.pathFor('restored.img');
  await restore(local.session, { snapshotId, target });
  await expectSameBytes(target, imagePath);
}

describe('a pending run and a source that changed size since', () => {
  /** Backs up the image at `path` until the upload after the first `uploads` "kills" the run; the pending run left. */
  async function crashedRun(path: string, uploads: number): Promise<string> {
    const crashed = await rejection(backup(depsOf(local.session, { writer: dyingAfterPuts(local.session.writer, uploads) }), { source: path }));
    expect(crashed.code).toBe(ErrorCodes.INTERRUPTED);
    const pending = local.session.index.runs.pendingRun(basename(path));
    expect(pending?.state).toBe('pending');
    return pending!.snapshotId;
  }

  /** The rerun after the resize: a new snapshot of the resized source, the old run abandoned with a warning. */
  async function expectFreshRun(path: string, abandoned: string, sizes: { before: number; after: number }): Promise<void> {
    const warnings: string[] = [];

    const result = await backup(local.session, { source: path, onWarning: (message) => warnings.push(message) });

    expect(result).toMatchObject({ resumed: false, sourceBytes: sizes.after });
    expect(result.snapshotId).not.toBe(abandoned);
    expect(warnings.join('\n')).toContain(`the unfinished backup ${abandoned} of "${basename(path)}" is not resumed: the source holds ${sizes.after} bytes, not the ${sizes.before}`);
    expect(local.session.index.lineage.getSnapshot(abandoned)?.state).toBe('error');
    expect(local.session.index.lineage.getSnapshot(result.snapshotId!)?.sourceBytes).toBe(sizes.after);
    await expectRestoresTo(result.snapshotId!, path);
  }

  it('grown: the rerun does not complete the pending snapshot, which would restore to the old size and lose the new bytes', async () => {
    const path = local.pathFor('grown.img');
    writeImage(path, { label: path, blocks: 16 });
    const pending = await crashedRun(path, 4);
    appendFileSync(path, pseudoRandomBytes(`${path}/grown`, 2 * BLOCK_SIZE + 1000));

    await expectFreshRun(path, pending, { before: 16 * BLOCK_SIZE, after: 18 * BLOCK_SIZE + 1000 });
  });

  it('shrunk: the rerun does not complete the pending snapshot, which would restore to the old size with stale blocks past the new end', async () => {
    const path = local.pathFor('shrunk.img');
    writeImage(path, { label: path, blocks: 16 });
    const pending = await crashedRun(path, 12);
    truncateSync(path, 6 * BLOCK_SIZE + 777);

    await expectFreshRun(path, pending, { before: 16 * BLOCK_SIZE, after: 6 * BLOCK_SIZE + 777 });
  });

  it('a run that crashed after CompleteSnapshot: the rerun watches it to the end and reports the size the snapshot holds, not the grown source\'s', async () => {
    const path = local.pathFor('sealed.img');
    writeImage(path, { label: path, blocks: 8 });
    const writer = local.session.writer;
    const dying: SnapshotWriter = {
      startSnapshot: (input) => writer.startSnapshot(input),
      putBlock: (...args) => writer.putBlock(...args),
      async completeSnapshot(...args) {
        await writer.completeSnapshot(...args);
        throw new SnaplineError(ErrorCodes.INTERRUPTED, 'the process died (test)');
      },
    };
    await rejection(backup(depsOf(local.session, { writer: dying }), { source: path }));
    const sealed = local.session.index.runs.pendingRun(basename(path));
    expect(sealed?.state).toBe('completing');
    appendFileSync(path, pseudoRandomBytes(`${path}/grown`, BLOCK_SIZE));

    const result = await backup(local.session, { source: path });

    expect(result).toMatchObject({ snapshotId: sealed!.snapshotId, resumed: true, sourceBytes: 8 * BLOCK_SIZE });
  });

  it('the same size: the rerun resumes the pending snapshot and uploads only what is missing', async () => {
    const path = local.pathFor('same.img');
    writeImage(path, { label: path, blocks: 16 });
    const pending = await crashedRun(path, 4);

    const result = await backup(local.session, { source: path });

    expect(result).toMatchObject({ snapshotId: pending, resumed: true });
    expect(result.blocksUploaded).toBeLessThan(16);
    await expectRestoresTo(pending, path);
  });
});

describe('parents and sizes between completed runs', () => {
  it('a parent taken elsewhere that is a sibling of the head (made from an older snapshot): every block the two disagree on is uploaded, zeros included', async () => {
    const path = local.pathFor('sibling.img');
    const bytes = writeImage(path, { label: path, blocks: 8 });
    const first = await backup(local.session, { source: path });
    overwriteBlocks(path, bytes, [2, 3], `${path}/second`);
    const head = await backup(local.session, { source: path });
    // Taken in AWS of a volume made from the first snapshot: block 5 written there.
    const elsewhere = pseudoRandomBytes(`${path}/elsewhere`, BLOCK_SIZE);
    const { ebs } = clientsFor(local.emulator.url);
    const parent = await snapshotWith(ebs, new Map([[5, elsewhere]]), { ParentSnapshotId: first.snapshotId!, VolumeSize: 1 });
    // The source now: the head's block 2, zeros in block 3 (the head's data, the parent's first data), the parent's block 5.
    writeBlocks(path, new Map([[3, Buffer.alloc(BLOCK_SIZE)], [5, elsewhere]]));

    const result = await backup(local.session, { source: path, parent });

    expect(result).toMatchObject({ parentSnapshotId: parent });
    expect(head.snapshotId).not.toBe(parent);
    await expectRestoresTo(result.snapshotId!, path);
  });

  it('a source shrunk, then grown back with zeros: the blocks past the shrunk end are zeros in the last snapshot, not the first run\'s data', async () => {
    const path = local.pathFor('regrown.img');
    writeImage(path, { label: path, blocks: 16 });
    await backup(local.session, { source: path });
    truncateSync(path, 6 * BLOCK_SIZE + 777);
    const shrunk = await backup(local.session, { source: path });
    await expectRestoresTo(shrunk.snapshotId!, path);
    truncateSync(path, 12 * BLOCK_SIZE);

    const regrown = await backup(local.session, { source: path });

    await expectRestoresTo(regrown.snapshotId!, path);
  });

  it('a parent taken elsewhere with blocks past the end of the source: the next runs, once the source has grown over them, do not keep that parent\'s data there', async () => {
    const path = local.pathFor('beyond.img');
    writeImage(path, { label: path, blocks: 16 });
    const head = await backup(local.session, { source: path });
    // Taken in AWS of a volume made from the head, written past the bytes the source holds.
    const { ebs } = clientsFor(local.emulator.url);
    const parent = await snapshotWith(ebs, new Map([[20, pseudoRandomBytes(`${path}/beyond`, BLOCK_SIZE)]]), { ParentSnapshotId: head.snapshotId!, VolumeSize: 1 });
    const reconciled = await backup(local.session, { source: path, parent });
    expect(reconciled).toMatchObject({ blocksScanned: 16, blocksUploaded: 1 });
    await expectRestoresTo(reconciled.snapshotId!, path);
    truncateSync(path, 24 * BLOCK_SIZE);

    const grown = await backup(local.session, { source: path });

    expect(grown.parentSnapshotId).toBe(reconciled.snapshotId);
    await expectRestoresTo(grown.snapshotId!, path);
  });
});

describe('a tracker whose checkpoint name was reused after a later backup', () => {
  /** A changed-blocks file listing `blocks` (whole blocks). */
  function changedBlocks(blocks: number[]): string {
    const path = local.pathFor('changes.txt');
    writeFileSync(path, blocks.map((block) => `${block * BLOCK_SIZE} ${BLOCK_SIZE}\n`).join(''));
    return path;
  }

  /**
   * The usual cycle with one checkpoint name, reset once each backup succeeded: a full backup at
   * checkpoint "c", then a tracked one of blocks 2 and 3; then block 5 is written (the tracker,
   * reset after the second backup, counts only that one). Returns the first two snapshots.
   */
  async function twoBackupsAtOneCheckpoint(path: string, bytes: Buffer, indexPath: string, copyOfFirstIndex?: string): Promise<{ first: string; second: string }> {
    const first = await withLocalSession(local.emulator, indexPath, (session) => backup(session, { source: path, checkpoint: 'c' }));
    if (copyOfFirstIndex !== undefined) copyFileSync(indexPath, copyOfFirstIndex);
    overwriteBlocks(path, bytes, [2, 3], `${path}/second`);
    const second = await withLocalSession(local.emulator, indexPath, (session) =>
      backup(session, { source: path, changedBlocksFile: changedBlocks([2, 3]), sinceCheckpoint: 'c', checkpoint: 'c' }),
    );
    expect(second.changeTracking).toMatchObject({ scan: 'tracked', blocksMarked: 2 });
    overwriteBlocks(path, bytes, [5], `${path}/third`);
    return { first: first.snapshotId!, second: second.snapshotId! };
  }

  it('an older copy of the index (its head the first snapshot): the tracker is not trusted, every block is read, the snapshot holds all changes', async () => {
    const path = local.pathFor('old-index.img');
    const bytes = writeImage(path, { label: path, blocks: 16 });
    const indexPath = local.pathFor('index.db');
    const oldCopy = local.pathFor('index-copy.db');
    const { first, second } = await twoBackupsAtOneCheckpoint(path, bytes, indexPath, oldCopy);

    const third = await withLocalSession(local.emulator, oldCopy, (session) =>
      backup(session, { source: path, changedBlocksFile: changedBlocks([5]), sinceCheckpoint: 'c', checkpoint: 'c' }),
    );

    expect(third.parentSnapshotId).toBe(first);
    expect(third.changeTracking?.scan).toBe('full');
    expect(third.changeTracking?.reason).toContain(second);
    await expectRestoresTo(third.snapshotId!, path);
  });

  it('a parent older than the head (--parent): the tracker is not trusted, every block is read, the snapshot holds all changes', async () => {
    const path = local.pathFor('older-parent.img');
    const bytes = writeImage(path, { label: path, blocks: 16 });
    const indexPath = local.pathFor('index.db');
    const { first, second } = await twoBackupsAtOneCheckpoint(path, bytes, indexPath);

    const third = await withLocalSession(local.emulator, indexPath, (session) =>
      backup(session, { source: path, parent: first, changedBlocksFile: changedBlocks([5]), sinceCheckpoint: 'c', checkpoint: 'c' }),
    );

    expect(third.changeTracking?.scan).toBe('full');
    expect(third.changeTracking?.reason).toContain(second);
    await expectRestoresTo(third.snapshotId!, path);
  });

  it('the parent is the newest snapshot of the volume: the tracker is trusted', async () => {
    const path = local.pathFor('newest.img');
    const bytes = writeImage(path, { label: path, blocks: 16 });
    const indexPath = local.pathFor('index.db');
    const { second } = await twoBackupsAtOneCheckpoint(path, bytes, indexPath);

    const third = await withLocalSession(local.emulator, indexPath, (session) =>
      backup(session, { source: path, changedBlocksFile: changedBlocks([5]), sinceCheckpoint: 'c', checkpoint: 'c' }),
    );

    expect(third).toMatchObject({ parentSnapshotId: second, blocksRead: 1, changeTracking: { scan: 'tracked', blocksMarked: 1 } });
    await expectRestoresTo(third.snapshotId!, path);
  });
});

describe('the parent\'s map after its ancestors were pruned', () => {
  it('the incremental on top of a snapshot whose ancestors were deleted writes zeros where data became zero and holds every change', async () => {
    const path = local.pathFor('pruned.img');
    const bytes = writeImage(path, { label: path, blocks: 12, zeroBlocks: [9] });
    const indexPath = local.pathFor('index.db');
    await withLocalSession(local.emulator, indexPath, async (session) => {
      await backup(session, { source: path });
      overwriteBlocks(path, bytes, [2, 3, 9], `${path}/second`);
      await backup(session, { source: path });
      overwriteBlocks(path, bytes, [4], `${path}/third`);
      const kept = await backup(session, { source: path });
      const pruned = await prune({ index: session.index, catalog: session.catalog }, { volume: basename(path), keepLast: 1 });
      expect(pruned.volumes[0]?.snapshots.filter((snapshot) => snapshot.removed)).toHaveLength(2);
      // Data that became zero (written by the deleted snapshots), and a block changed again.
      overwriteBlocks(path, bytes, [2, 9], 'zero', () => true);
      overwriteBlocks(path, bytes, [3], `${path}/fourth`);

      const next = await backup(session, { source: path });

      expect(next).toMatchObject({ parentSnapshotId: kept.snapshotId, blocksUploaded: 3 });
      await expectRestoresTo(next.snapshotId!, path);
    });
  });
});
