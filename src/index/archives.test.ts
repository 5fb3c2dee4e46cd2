import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSnaplineError } from '../errors.js';
import { BlockIndex, type BeginArchiveInput } from './index.js';
import { APPLICATION_ID, SCHEMA_VERSION, migrations } from './schema.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-archives-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('migration 2 (archives)', () => {
  it('upgrades an index of schema version 1, keeping its rows', () => {
    const path = join(dir, 'index.db');
    const db = new Database(path);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma('journal_mode = WAL');
    migrations[0]!(db);
    db.pragma('user_version = 1');
    db.prepare(`INSERT INTO volumes (name, source_path, size_bytes, created_at) VALUES ('vol', '/v.img', 1, 0)`).run();
    db.close();

    const index = BlockIndex.open(path);
    try {
      expect(index.lineage.getVolume('vol')?.sourcePath).toBe('/v.img');
      expect(index.check()).toEqual([]);
    } finally {
      index.close();
    }
    const reopened = new Database(path, { readonly: true });
    try {
      expect(reopened.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      const tables = reopened.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'archive%' ORDER BY name`).pluck().all();
      expect(tables).toEqual(['archive_objects', 'archive_upload_parts', 'archive_uploads', 'archives']);
    } finally {
      reopened.close();
    }
  });
});

describe('archive records', () => {
  let index: BlockIndex;
  beforeEach(() => {
    index = BlockIndex.open(join(dir, 'index.db'));
  });
  afterEach(() => index.close());

  const input = (archiveId: string, snapshotId: string, parentArchiveId: string | null = null): BeginArchiveInput => ({
    archiveId,
    target: 's3',
    location: 'bucket',
    prefix: `vol/${snapshotId}/`,
    snapshotId,
    volume: 'vol',
    parentArchiveId,
    storageClass: 'DEEP_ARCHIVE',
    segmentBlocks: 2048,
  });

  function codeOf(fn: () => unknown): string | undefined {
    try {
      fn();
    } catch (err) {
      if (isSnaplineError(err)) return err.code;
      throw err;
    }
    return undefined;
  }

  it('records an archive, its objects and its state through to deletion', () => {
    const begun = index.archives.begin(input('ar-1', 'snap-1'));
    expect(begun).toMatchObject({ archiveId: 'ar-1', state: 'uploading', parentArchiveId: null, sizeBytes: 0, manifestRef: null });
    expect(index.archives.live('s3', 'bucket', 'snap-1')?.archiveId).toBe('ar-1');
    expect(index.archives.latest('vol', 's3', 'bucket')).toBeUndefined();

    index.archives.recordObject('ar-1', { name: 'segment-000000', ref: 'vol/snap-1/segment-000000', sizeBytes: 1000, treeHash: 'aa', entry: '{}' });
    index.archives.recordObject('ar-1', { name: 'manifest.json', ref: 'vol/snap-1/manifest.json', sizeBytes: 24, treeHash: 'bb', entry: null });
    const done = index.archives.complete('ar-1', { ref: 'vol/snap-1/manifest.json', treeHash: 'bb', blockCount: 3 });
    expect(done).toMatchObject({ state: 'archived', sizeBytes: 1024, blockCount: 3, treeHash: 'bb' });
    expect(index.archives.complete('ar-1', { ref: 'x', treeHash: 'y', blockCount: 0 }).manifestRef).toBe('vol/snap-1/manifest.json');
    expect(index.archives.latest('vol', 's3', 'bucket')?.archiveId).toBe('ar-1');
    expect(index.archives.objects('ar-1').map((o) => o.name)).toEqual(['manifest.json', 'segment-000000']);

    index.archives.recordRestore('ar-1', 'manifest.json', { job: 'job-1', tier: 'Bulk', requestedAt: new Date(5) });
    expect(index.archives.objects('ar-1')[0]).toMatchObject({ restoreJob: 'job-1', restoreTier: 'Bulk', restoreRequestedAt: new Date(5) });

    // A second live archive of the snapshot at the same place is refused; an incremental child pins its parent.
    expect(codeOf(() => index.archives.begin(input('ar-2', 'snap-1')))).toBe('CONFLICT');
    index.archives.begin(input('ar-3', 'snap-2', 'ar-1'));
    expect(index.archives.get('ar-3')?.parentArchiveId).toBe('ar-1');
    expect(index.archives.children('ar-1').map((a) => a.archiveId)).toEqual(['ar-3']);
    expect(codeOf(() => index.archives.markDeleted('ar-1'))).toBe('CONFLICT');
    index.archives.markDeleted('ar-3');
    index.archives.markDeleted('ar-1');
    index.archives.markDeleted('ar-1');
    expect(index.archives.get('ar-1')).toMatchObject({ state: 'deleted' });
    expect(index.archives.objects('ar-1')).toEqual([]);
    // Once deleted, the snapshot may be archived there again.
    expect(index.archives.begin(input('ar-4', 'snap-1')).state).toBe('uploading');
    expect(index.check()).toEqual([]);
  });

  it('refuses a parent that is unknown or not archived', () => {
    expect(codeOf(() => index.archives.begin(input('ar-1', 'snap-1', 'ar-missing')))).toBe('NOT_FOUND');
    index.archives.begin(input('ar-1', 'snap-1'));
    expect(codeOf(() => index.archives.begin(input('ar-2', 'snap-2', 'ar-1')))).toBe('BAD_STATE');
    expect(codeOf(() => index.archives.objects('ar-nope'))).toBe('NOT_FOUND');
  });

  it('journals a multipart upload until its object is recorded', () => {
    index.archives.begin(input('ar-1', 'snap-1'));
    expect(index.archives.upload('ar-1', 'segment-000000')).toBeUndefined();
    expect(codeOf(() => index.archives.recordPart('ar-1', 'segment-000000', { partNumber: 1, sizeBytes: 5, checksum: 'e1' }))).toBe('BAD_STATE');
    index.archives.beginUpload('ar-1', 'segment-000000', 'upload-1', 16);
    index.archives.recordPart('ar-1', 'segment-000000', { partNumber: 2, sizeBytes: 16, checksum: 'e2' });
    index.archives.recordPart('ar-1', 'segment-000000', { partNumber: 1, sizeBytes: 16, checksum: 'e1' });
    index.archives.recordPart('ar-1', 'segment-000000', { partNumber: 1, sizeBytes: 16, checksum: 'e1b' });
    expect(index.archives.upload('ar-1', 'segment-000000')).toMatchObject({
      uploadId: 'upload-1',
      partSize: 16,
      parts: [
        { partNumber: 1, sizeBytes: 16, checksum: 'e1b' },
        { partNumber: 2, sizeBytes: 16, checksum: 'e2' },
      ],
    });
    // A new upload of the same object replaces the journal.
    index.archives.beginUpload('ar-1', 'segment-000000', 'upload-2', 32);
    expect(index.archives.upload('ar-1', 'segment-000000')).toMatchObject({ uploadId: 'upload-2', partSize: 32, parts: [] });
    index.archives.recordPart('ar-1', 'segment-000000', { partNumber: 1, sizeBytes: 32, checksum: 'x' });
    index.archives.recordObject('ar-1', { name: 'segment-000000', ref: 'k', sizeBytes: 40, treeHash: 'th', entry: null });
    expect(index.archives.upload('ar-1', 'segment-000000')).toBeUndefined();
    index.archives.beginUpload('ar-1', 'segment-000001', 'upload-3', 32);
    index.archives.dropUpload('ar-1', 'segment-000001');
    expect(index.archives.upload('ar-1', 'segment-000001')).toBeUndefined();
  });
});
