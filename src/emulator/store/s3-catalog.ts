import type Database from 'better-sqlite3';
import type { ChecksumAlgorithm } from '../protocol/flexible-checksums.js';
import type { Tier } from '../tiers.js';
import type { BlobFile } from './blob-files.js';
import { Contents, type ContentFile } from './contents.js';
import { MultipartParts } from './multipart-parts.js';

export interface S3Bucket {
  name: string;
  region: string;
  createdAt: number;
}

export type ChecksumType = 'FULL_OBJECT' | 'COMPOSITE';

/** What an object (or an upload, for the object it will make) keeps besides its bytes. */
export interface ObjectAttributes {
  /** Headers echoed on GetObject and HeadObject: Content-Type and the like, x-amz-meta-*, server-side encryption. */
  headers: Record<string, string>;
  /** MD5 (base64) of the SSE-C key the object was written with; reads must present the same key. */
  ssecKeyMd5?: string;
  checksumAlgorithm?: ChecksumAlgorithm;
  checksumType?: ChecksumType;
  /** base64, with "-N" for a composite multipart checksum. Absent on uploads. */
  checksum?: string;
  /** Number of parts of an object made by a multipart upload. */
  partsCount?: number;
}

/** A requested restore of a GLACIER or DEEP_ARCHIVE object: in progress until doneAt, readable until expiresAt. */
export interface Restore {
  tier: Tier;
  doneAt: number;
  expiresAt: number;
}

export interface S3Object {
  bucket: string;
  key: string;
  content: number;
  size: number;
  /** Quoted, as S3 sends it. */
  etag: string;
  storageClass: string;
  lastModified: number;
  attributes: ObjectAttributes;
  restore: Restore | null;
}

export type NewObject = Omit<S3Object, 'content' | 'restore'>;

export interface S3Upload {
  uploadId: string;
  bucket: string;
  key: string;
  storageClass: string;
  initiated: number;
  attributes: ObjectAttributes;
}

export interface S3Part {
  partNumber: number;
  content: number;
  size: number;
  etag: string;
  checksum: string | null;
  lastModified: number;
}

interface ObjectRow {
  bucket: string;
  key: string;
  content: number;
  size: number;
  etag: string;
  storage_class: string;
  last_modified: number;
  attributes: string;
  restore_tier: Tier | null;
  restore_done_at: number | null;
  restore_expires_at: number | null;
}

interface UploadRow {
  upload_id: string;
  bucket: string;
  key: string;
  storage_class: string;
  initiated: number;
  attributes: string;
}

/**
 * S3 buckets, objects and multipart uploads in the endpoint's catalog.
 * Every method is synchronous and atomic. Methods that drop bodies return
 * the names of their files; the caller deletes those files afterwards.
 */
export class S3Catalog {
  readonly #db: Database.Database;
  readonly #contents: Contents;
  readonly #multipart: MultipartParts<S3Part>;
  readonly #s;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#contents = new Contents(db);
    this.#multipart = new MultipartParts<S3Part>(db, this.#contents, {
      uploads: 's3_uploads',
      parts: 's3_parts',
      key: 'partNumber',
      columns: { partNumber: 'part_number', size: 'size', etag: 'etag', checksum: 'checksum', lastModified: 'last_modified' },
    });
    this.#s = {
      insertBucket: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO s3_buckets (name, region, created_at) VALUES (?, ?, ?)'),
      bucket: db.prepare<[string], { name: string; region: string; createdAt: number }>(
        'SELECT name, region, created_at AS createdAt FROM s3_buckets WHERE name = ?',
      ),
      buckets: db.prepare<[], S3Bucket>('SELECT name, region, created_at AS createdAt FROM s3_buckets ORDER BY name'),
      hasObjects: db.prepare<[string], { one: number }>('SELECT 1 AS one FROM s3_objects WHERE bucket = ? LIMIT 1'),
      deleteBucket: db.prepare<[string]>('DELETE FROM s3_buckets WHERE name = ?'),
      object: db.prepare<[string, string], ObjectRow>('SELECT * FROM s3_objects WHERE bucket = ? AND key = ?'),
      upsertObject: db.prepare(
        `INSERT OR REPLACE INTO s3_objects (bucket, key, content, size, etag, storage_class, last_modified, attributes)
         VALUES (@bucket, @key, @content, @size, @etag, @storageClass, @lastModified, @attributes)`,
      ),
      deleteObject: db.prepare<[string, string]>('DELETE FROM s3_objects WHERE bucket = ? AND key = ?'),
      objectsFrom: db.prepare<[string, string, number], ObjectRow>('SELECT * FROM s3_objects WHERE bucket = ? AND key >= ? ORDER BY key LIMIT ?'),
      objectsAfter: db.prepare<[string, string, number], ObjectRow>('SELECT * FROM s3_objects WHERE bucket = ? AND key > ? ORDER BY key LIMIT ?'),
      setRestore: db.prepare<[Tier, number, number, string, string]>(
        'UPDATE s3_objects SET restore_tier = ?, restore_done_at = ?, restore_expires_at = ? WHERE bucket = ? AND key = ?',
      ),
      insertUpload: db.prepare(
        `INSERT INTO s3_uploads (upload_id, bucket, key, storage_class, initiated, attributes)
         VALUES (@uploadId, @bucket, @key, @storageClass, @initiated, @attributes)`,
      ),
      upload: db.prepare<[string], UploadRow>('SELECT * FROM s3_uploads WHERE upload_id = ?'),
      uploadsOf: db.prepare<[string], UploadRow>('SELECT * FROM s3_uploads WHERE bucket = ? ORDER BY key, initiated, rowid'),
    };
  }

  /** False when the bucket exists already. */
  createBucket(name: string, region: string, now: number): boolean {
    return this.#s.insertBucket.run(name, region, now).changes === 1;
  }

  bucket(name: string): S3Bucket | undefined {
    return this.#s.bucket.get(name);
  }

  buckets(): S3Bucket[] {
    return this.#s.buckets.all();
  }

  /** 'not-empty' while objects remain; otherwise drops the bucket and its unfinished uploads. */
  deleteBucket(name: string): { outcome: 'deleted' | 'not-empty'; files: string[] } {
    return this.#db.transaction(() => {
      if (this.#s.hasObjects.get(name) !== undefined) return { outcome: 'not-empty' as const, files: [] };
      const files = this.#s.uploadsOf.all(name).flatMap((upload) => this.#multipart.drop(upload.upload_id) ?? []);
      this.#s.deleteBucket.run(name);
      return { outcome: 'deleted' as const, files };
    })();
  }

  object(bucket: string, key: string): S3Object | undefined {
    const row = this.#s.object.get(bucket, key);
    return row === undefined ? undefined : objectOf(row);
  }

  /** Objects whose key is `from` or later (after `from` unless inclusive), in key order (UTF-8 binary), at most `limit`. */
  objectsFrom(bucket: string, from: string, inclusive: boolean, limit: number): S3Object[] {
    return (inclusive ? this.#s.objectsFrom : this.#s.objectsAfter).all(bucket, from, limit).map(objectOf);
  }

  files(content: number): ContentFile[] {
    return this.#contents.files(content);
  }

  /**
   * Stores a new object (replacing any of that key) made of one file. Returns
   * the replaced object's files, or undefined when the bucket is gone.
   */
  putObject(object: NewObject, file: BlobFile): string[] | undefined {
    return this.#db.transaction(() => {
      if (this.#s.bucket.get(object.bucket) === undefined) return undefined;
      const replaced = this.#dropObject(object.bucket, object.key);
      const content = this.#contents.create(file);
      this.#s.upsertObject.run({ ...object, content, attributes: JSON.stringify(object.attributes) });
      return replaced;
    })();
  }

  /** Forgets an object; returns its files. Nothing when there is none. */
  deleteObject(bucket: string, key: string): string[] {
    return this.#db.transaction(() => this.#dropObject(bucket, key))();
  }

  setRestore(bucket: string, key: string, restore: Restore): void {
    this.#s.setRestore.run(restore.tier, restore.doneAt, restore.expiresAt, bucket, key);
  }

  createUpload(upload: S3Upload): void {
    this.#s.insertUpload.run({ ...upload, attributes: JSON.stringify(upload.attributes) });
  }

  upload(uploadId: string): S3Upload | undefined {
    const row = this.#s.upload.get(uploadId);
    return row === undefined ? undefined : uploadOf(row);
  }

  uploadsOf(bucket: string): S3Upload[] {
    return this.#s.uploadsOf.all(bucket).map(uploadOf);
  }

  /**
   * Records a part (replacing an earlier one of that number). Returns the
   * replaced part's files, or undefined when the upload is gone (aborted or
   * completed meanwhile): the caller then deletes the new file itself.
   */
  putPart(uploadId: string, part: Omit<S3Part, 'content'>, file: BlobFile): string[] | undefined {
    return this.#db.transaction(() => this.#multipart.put(uploadId, part, file))();
  }

  parts(uploadId: string): S3Part[] {
    return this.#multipart.parts(uploadId);
  }

  /**
   * Turns an upload into an object made of the chosen parts (already checked
   * by the caller against parts()), replacing any object of that key. The
   * upload and its other parts go. Returns the files no longer used, or
   * undefined when the upload is gone.
   */
  completeUpload(uploadId: string, chosen: readonly S3Part[], object: NewObject): string[] | undefined {
    return this.#db.transaction(() => {
      const all = this.#multipart.take(uploadId);
      if (all === undefined) return undefined;
      const replaced = this.#dropObject(object.bucket, object.key);
      const chosenNumbers = new Set(chosen.map((part) => part.partNumber));
      const unused = all.filter((part) => !chosenNumbers.has(part.partNumber)).flatMap((part) => this.#contents.remove(part.content));
      const content = this.#contents.concatenate(
        chosen.map((part) => part.content),
        object.size,
      );
      this.#s.upsertObject.run({ ...object, content, attributes: JSON.stringify(object.attributes) });
      return [...replaced, ...unused];
    })();
  }

  /** Drops an upload and its parts; returns their files, or undefined when there is no such upload. */
  abortUpload(uploadId: string): string[] | undefined {
    return this.#db.transaction(() => this.#multipart.drop(uploadId))();
  }

  #dropObject(bucket: string, key: string): string[] {
    const row = this.#s.object.get(bucket, key);
    if (row === undefined) return [];
    this.#s.deleteObject.run(bucket, key);
    return this.#contents.remove(row.content);
  }
}

function objectOf(row: ObjectRow): S3Object {
  return {
    bucket: row.bucket,
    key: row.key,
    content: row.content,
    size: row.size,
    etag: row.etag,
    storageClass: row.storage_class,
    lastModified: row.last_modified,
    attributes: JSON.parse(row.attributes) as ObjectAttributes,
    restore:
      row.restore_tier === null || row.restore_done_at === null || row.restore_expires_at === null
        ? null
        : { tier: row.restore_tier, doneAt: row.restore_done_at, expiresAt: row.restore_expires_at },
  };
}

function uploadOf(row: UploadRow): S3Upload {
  return {
    uploadId: row.upload_id,
    bucket: row.bucket,
    key: row.key,
    storageClass: row.storage_class,
    initiated: row.initiated,
    attributes: JSON.parse(row.attributes) as ObjectAttributes,
  };
}
