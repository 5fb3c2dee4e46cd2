/**
 * The multipart parts store as the S3 and Glacier catalogs use it, on a real
 * catalog file in a temp dir: parts replaced by key, listed in key order,
 * taken by completion, dropped with their files by abort and by deleting the
 * bucket or vault, and nothing recorded once the upload is gone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Catalog } from './catalog.js';
import { GlacierCatalog } from './glacier-catalog.js';
import { S3Catalog, type NewObject } from './s3-catalog.js';

const MIB = 1024 * 1024;

let dir: string;
let catalog: Catalog;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-multipart-parts-'));
  catalog = new Catalog(join(dir, 'catalog.db'));
});

afterEach(() => {
  catalog.close();
  rmSync(dir, { recursive: true, force: true });
});

const file = (name: string, size = 10) => ({ name, size });

describe('S3 uploads', () => {
  const objectOf = (size: number): NewObject => ({
    bucket: 'b',
    key: 'k',
    size,
    etag: '"x-1"',
    storageClass: 'STANDARD',
    lastModified: 3,
    attributes: { headers: {} },
  });

  function started(s3: S3Catalog): void {
    s3.createBucket('b', 'us-east-1', 1);
    s3.createUpload({ uploadId: 'u', bucket: 'b', key: 'k', storageClass: 'STANDARD', initiated: 1, attributes: { headers: {} } });
  }

  it('replaces a part of the same number (returning its files), lists parts by number, and completion keeps only the chosen ones', () => {
    const s3 = new S3Catalog(catalog.database);
    started(s3);
    expect(s3.putPart('u', { partNumber: 2, size: 10, etag: '"e2"', checksum: null, lastModified: 2 }, file('two'))).toEqual([]);
    expect(s3.putPart('u', { partNumber: 1, size: 10, etag: '"e1"', checksum: 'c1', lastModified: 2 }, file('one'))).toEqual([]);
    expect(s3.putPart('u', { partNumber: 1, size: 10, etag: '"e1b"', checksum: null, lastModified: 4 }, file('one-again'))).toEqual(['one']);

    const parts = s3.parts('u');
    expect(parts.map(({ content: _content, ...part }) => part)).toEqual([
      { partNumber: 1, size: 10, etag: '"e1b"', checksum: null, lastModified: 4 },
      { partNumber: 2, size: 10, etag: '"e2"', checksum: null, lastModified: 2 },
    ]);

    expect(s3.completeUpload('u', [parts[0]!], objectOf(10))).toEqual(['two']);
    expect(s3.files(s3.object('b', 'k')!.content).map((f) => f.name)).toEqual(['one-again']);
    expect(s3.upload('u')).toBeUndefined();
    expect(s3.parts('u')).toEqual([]);
    expect(s3.putPart('u', { partNumber: 3, size: 10, etag: '"e3"', checksum: null, lastModified: 5 }, file('late'))).toBeUndefined();
    expect(s3.completeUpload('u', [], objectOf(0))).toBeUndefined();
  });

  it('abort and deleting the bucket drop the upload with its parts and hand back their files', () => {
    const s3 = new S3Catalog(catalog.database);
    started(s3);
    s3.putPart('u', { partNumber: 1, size: 10, etag: '"e1"', checksum: null, lastModified: 2 }, file('one'));
    expect(s3.abortUpload('u')).toEqual(['one']);
    expect(s3.abortUpload('u')).toBeUndefined();

    s3.createUpload({ uploadId: 'v', bucket: 'b', key: 'k', storageClass: 'STANDARD', initiated: 2, attributes: { headers: {} } });
    s3.putPart('v', { partNumber: 1, size: 10, etag: '"e1"', checksum: null, lastModified: 2 }, file('v1'));
    s3.putPart('v', { partNumber: 2, size: 10, etag: '"e2"', checksum: null, lastModified: 2 }, file('v2'));
    expect(s3.deleteBucket('b')).toEqual({ outcome: 'deleted', files: ['v1', 'v2'] });
    expect(s3.upload('v')).toBeUndefined();
  });
});

describe('Glacier uploads', () => {
  function started(glacier: GlacierCatalog): void {
    glacier.createVault('v', 1);
    glacier.createUpload({ uploadId: 'u', vault: 'v', partSize: MIB, description: '', createdAt: 1 });
  }

  it('replaces a part at the same first byte, lists parts by first byte with their chunk hashes, and completion joins them all', () => {
    const glacier = new GlacierCatalog(catalog.database);
    started(glacier);
    const hashes = Buffer.alloc(32, 7);
    expect(glacier.putPart('u', { firstByte: MIB, size: 10, treeHash: 'bb' }, file('second'), hashes)).toEqual([]);
    expect(glacier.putPart('u', { firstByte: 0, size: MIB, treeHash: 'aa' }, file('first', MIB), hashes)).toEqual([]);
    expect(glacier.putPart('u', { firstByte: 0, size: MIB, treeHash: 'cc' }, file('first-again', MIB), hashes)).toEqual(['first']);

    expect(glacier.parts('u').map(({ content: _content, ...part }) => part)).toEqual([
      { firstByte: 0, size: MIB, treeHash: 'cc' },
      { firstByte: MIB, size: 10, treeHash: 'bb' },
    ]);

    const archive = { archiveId: 'a', vault: 'v', size: MIB + 10, treeHash: 'dd', description: '', createdAt: 2 };
    expect(glacier.completeUpload('u', archive)).toBe(true);
    const files = glacier.files(glacier.archive('a')!.content);
    expect(files.map((f) => [f.name, f.chunkHashes])).toEqual([
      ['first-again', hashes],
      ['second', hashes],
    ]);
    expect(glacier.upload('u')).toBeUndefined();
    expect(glacier.completeUpload('u', archive)).toBe(false);
    expect(glacier.putPart('u', { firstByte: 0, size: 10, treeHash: 'ee' }, file('late'), hashes)).toBeUndefined();
  });

  it('abort and deleting the vault drop the upload with its parts and hand back their files', () => {
    const glacier = new GlacierCatalog(catalog.database);
    started(glacier);
    glacier.putPart('u', { firstByte: 0, size: MIB, treeHash: 'aa' }, file('first', MIB), Buffer.alloc(32));
    expect(glacier.abortUpload('u')).toEqual(['first']);
    expect(glacier.abortUpload('u')).toBeUndefined();

    glacier.createUpload({ uploadId: 'w', vault: 'v', partSize: MIB, description: '', createdAt: 2 });
    glacier.putPart('w', { firstByte: 0, size: MIB, treeHash: 'aa' }, file('w0', MIB), Buffer.alloc(32));
    glacier.putPart('w', { firstByte: MIB, size: 10, treeHash: 'bb' }, file('w1'), Buffer.alloc(32));
    expect(glacier.deleteVault('v')).toEqual({ outcome: 'deleted', files: ['w0', 'w1'] });
    expect(glacier.upload('w')).toBeUndefined();
  });
});
