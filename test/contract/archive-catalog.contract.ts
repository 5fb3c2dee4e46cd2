import { describe, expect, it } from 'vitest';
import type { BeginArchiveInput } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from an ArchiveCatalog (src/core/index-ports.ts), for every implementation. */
export function archiveCatalogContract(name: string, setup: IndexSetup): void {
  describe(`archive catalog contract: ${name}`, () => {
    const current = freshIndex(setup);
    const archive = (archiveId: string, snapshotId: string, parentArchiveId: string | null = null): BeginArchiveInput => ({
      archiveId,
      target: 's3',
      location: 'bucket',
      prefix: `vol/${archiveId}`,
      snapshotId,
      volume: 'vol',
      parentArchiveId,
      storageClass: 'DEEP_ARCHIVE',
      segmentBlocks: 2048,
    });
    const object = (name: string, sizeBytes: number) => ({ name, ref: `vol/${name}`, sizeBytes, treeHash: 'ab'.repeat(32), entry: null });

    it('begins an archive uploading, one live per snapshot and place; completes it with the size of its objects', () => {
      const index = current();
      const begun = index.archives.begin(archive('arc-1', 'snap-1'));
      expect(begun).toMatchObject({ archiveId: 'arc-1', state: 'uploading', parentArchiveId: null, manifestRef: null, sizeBytes: 0, completedAt: null });
      expect(codeOf(() => index.archives.begin(archive('arc-2', 'snap-1')))).toBe(ErrorCodes.CONFLICT);
      expect(codeOf(() => index.archives.begin(archive('arc-1', 'snap-9')))).toBe(ErrorCodes.CONFLICT);
      expect(index.archives.live('s3', 'bucket', 'snap-1')?.archiveId).toBe('arc-1');
      expect(index.archives.live('glacier', 'bucket', 'snap-1')).toBeUndefined();
      index.archives.recordObject('arc-1', object('segment-000000', 100));
      index.archives.recordObject('arc-1', object('manifest.json', 7));
      const done = index.archives.complete('arc-1', { ref: 'vol/manifest.json', treeHash: 'cd'.repeat(32), blockCount: 12 });
      expect(done).toMatchObject({ state: 'archived', manifestRef: 'vol/manifest.json', sizeBytes: 107, blockCount: 12 });
      expect(index.archives.complete('arc-1', { ref: 'other', treeHash: 'ef', blockCount: 1 })).toEqual(done);
      expect(index.archives.objects('arc-1').map((o) => o.name)).toEqual(['manifest.json', 'segment-000000']);
    });

    it('builds an incremental on an archived parent only; the latest is the newest archived', () => {
      const index = current();
      index.archives.begin(archive('arc-1', 'snap-1'));
      expect(codeOf(() => index.archives.begin(archive('arc-2', 'snap-2', 'arc-1')))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.archives.begin(archive('arc-2', 'snap-2', 'arc-none')))).toBe(ErrorCodes.NOT_FOUND);
      expect(index.archives.latest('vol', 's3', 'bucket')).toBeUndefined();
      index.archives.complete('arc-1', { ref: 'm1', treeHash: 'aa', blockCount: 1 });
      index.archives.begin(archive('arc-2', 'snap-2', 'arc-1'));
      index.archives.complete('arc-2', { ref: 'm2', treeHash: 'bb', blockCount: 1 });
      expect(index.archives.latest('vol', 's3', 'bucket')?.archiveId).toBe('arc-2');
      expect(index.archives.children('arc-1').map((a) => a.archiveId)).toEqual(['arc-2']);
      expect(index.archives.list().map((a) => a.archiveId)).toEqual(['arc-1', 'arc-2']);
      expect(codeOf(() => index.archives.markDeleted('arc-1'))).toBe(ErrorCodes.CONFLICT);
      index.archives.markDeleted('arc-2');
      index.archives.markDeleted('arc-2');
      expect(index.archives.get('arc-2')).toMatchObject({ state: 'deleted' });
      expect(index.archives.objects('arc-2')).toEqual([]);
      expect(index.archives.children('arc-1')).toEqual([]);
      index.archives.markDeleted('arc-1');
      expect(index.archives.list().map((a) => a.state)).toEqual(['deleted', 'deleted']);
      expect(index.archives.live('s3', 'bucket', 'snap-1')).toBeUndefined();
      expect(index.archives.begin(archive('arc-3', 'snap-1')).state).toBe('uploading');
    });

    it('journals a multipart upload part by part until its object is recorded', () => {
      const index = current();
      index.archives.begin(archive('arc-1', 'snap-1'));
      expect(index.archives.upload('arc-1', 'segment-000000')).toBeUndefined();
      expect(codeOf(() => index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 1, sizeBytes: 5, checksum: 'e1' }))).toBe(ErrorCodes.BAD_STATE);
      index.archives.beginUpload('arc-1', 'segment-000000', 'up-1', 1024);
      index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 2, sizeBytes: 5, checksum: 'e2' });
      index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 1, sizeBytes: 1024, checksum: 'e1' });
      index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 1, sizeBytes: 1024, checksum: 'e1b' });
      expect(index.archives.upload('arc-1', 'segment-000000')).toMatchObject({
        uploadId: 'up-1',
        partSize: 1024,
        parts: [
          { partNumber: 1, sizeBytes: 1024, checksum: 'e1b' },
          { partNumber: 2, sizeBytes: 5, checksum: 'e2' },
        ],
      });
      index.archives.beginUpload('arc-1', 'segment-000000', 'up-2', 2048);
      expect(index.archives.upload('arc-1', 'segment-000000')).toMatchObject({ uploadId: 'up-2', parts: [] });
      index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 1, sizeBytes: 2048, checksum: 'f1' });
      index.archives.recordObject('arc-1', object('segment-000000', 2048));
      expect(index.archives.upload('arc-1', 'segment-000000')).toBeUndefined();
      index.archives.beginUpload('arc-1', 'segment-000001', 'up-3', 2048);
      index.archives.dropUpload('arc-1', 'segment-000001');
      index.archives.dropUpload('arc-1', 'segment-000001');
      expect(index.archives.upload('arc-1', 'segment-000001')).toBeUndefined();
      expect(codeOf(() => index.archives.recordPart('arc-1', 'segment-000000', { partNumber: 0, sizeBytes: 1, checksum: 'x' }))).toBe(ErrorCodes.BAD_STATE);
    });

    it('remembers the restore asked for each object; a new copy of the object forgets it', () => {
      const index = current();
      index.archives.begin(archive('arc-1', 'snap-1'));
      index.archives.recordObject('arc-1', object('segment-000000', 10));
      const requestedAt = new Date('2026-03-04T05:06:07Z');
      index.archives.recordRestore('arc-1', 'segment-000000', { job: 'job-1', tier: 'Bulk', requestedAt });
      expect(index.archives.objects('arc-1')[0]).toMatchObject({ restoreJob: 'job-1', restoreTier: 'Bulk', restoreRequestedAt: requestedAt });
      expect(codeOf(() => index.archives.recordRestore('arc-1', 'segment-000009', { job: null, tier: 'Bulk', requestedAt }))).toBe(ErrorCodes.NOT_FOUND);
      index.archives.recordObject('arc-1', object('segment-000000', 11));
      expect(index.archives.objects('arc-1')[0]).toMatchObject({ sizeBytes: 11, restoreJob: null, restoreTier: null, restoreRequestedAt: null });
    });

    it('names an unknown archive NOT_FOUND', () => {
      const index = current();
      expect(index.archives.get('arc-none')).toBeUndefined();
      for (const call of [
        () => index.archives.objects('arc-none'),
        () => index.archives.children('arc-none'),
        () => index.archives.upload('arc-none', 'x'),
        () => index.archives.complete('arc-none', { ref: 'm', treeHash: 'aa', blockCount: 0 }),
        () => index.archives.markDeleted('arc-none'),
        () => index.archives.recordObject('arc-none', object('x', 1)),
        () => index.archives.beginUpload('arc-none', 'x', 'up', 1),
      ]) {
        expect(codeOf(call)).toBe(ErrorCodes.NOT_FOUND);
      }
    });
  });
}
