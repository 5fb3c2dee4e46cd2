/**
 * The catalog tables of the archive services (S3 and Glacier), the second
 * step of the catalog's schema. Bytes live in files (store/blob-files.ts);
 * these tables say which files make up what. Times are epoch milliseconds.
 */
export const ARCHIVE_SCHEMA = `
-- A stored body: an object, an archive or an upload part, made of files in order.
CREATE TABLE contents (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  size INTEGER NOT NULL
);
CREATE TABLE content_files (
  content INTEGER NOT NULL REFERENCES contents(id),
  seq INTEGER NOT NULL,
  name TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  -- SHA-256 of each 1 MiB chunk, concatenated (Glacier only).
  chunk_hashes BLOB,
  PRIMARY KEY (content, seq)
) WITHOUT ROWID;

CREATE TABLE s3_buckets (
  name TEXT PRIMARY KEY,
  region TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE s3_objects (
  bucket TEXT NOT NULL REFERENCES s3_buckets(name),
  key TEXT NOT NULL,
  content INTEGER NOT NULL REFERENCES contents(id),
  size INTEGER NOT NULL,
  etag TEXT NOT NULL,
  storage_class TEXT NOT NULL,
  last_modified INTEGER NOT NULL,
  -- JSON: headers echoed on reads, checksum, SSE-C key digest.
  attributes TEXT NOT NULL,
  restore_tier TEXT,
  restore_done_at INTEGER,
  restore_expires_at INTEGER,
  PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE s3_uploads (
  upload_id TEXT PRIMARY KEY,
  bucket TEXT NOT NULL REFERENCES s3_buckets(name),
  key TEXT NOT NULL,
  storage_class TEXT NOT NULL,
  initiated INTEGER NOT NULL,
  attributes TEXT NOT NULL
);
CREATE INDEX s3_uploads_by_key ON s3_uploads(bucket, key, initiated);
CREATE TABLE s3_parts (
  upload_id TEXT NOT NULL REFERENCES s3_uploads(upload_id),
  part_number INTEGER NOT NULL,
  content INTEGER NOT NULL REFERENCES contents(id),
  size INTEGER NOT NULL,
  etag TEXT NOT NULL,
  -- base64 checksum of the upload's algorithm, when it has one.
  checksum TEXT,
  last_modified INTEGER NOT NULL,
  PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;

CREATE TABLE glacier_vaults (
  name TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL
);
CREATE TABLE glacier_archives (
  archive_id TEXT PRIMARY KEY,
  vault TEXT NOT NULL REFERENCES glacier_vaults(name),
  content INTEGER NOT NULL REFERENCES contents(id),
  size INTEGER NOT NULL,
  tree_hash TEXT NOT NULL,
  description TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE INDEX glacier_archives_by_vault ON glacier_archives(vault, created_at);
CREATE TABLE glacier_uploads (
  upload_id TEXT PRIMARY KEY,
  vault TEXT NOT NULL REFERENCES glacier_vaults(name),
  part_size INTEGER NOT NULL,
  description TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE glacier_parts (
  upload_id TEXT NOT NULL REFERENCES glacier_uploads(upload_id),
  first_byte INTEGER NOT NULL,
  content INTEGER NOT NULL REFERENCES contents(id),
  size INTEGER NOT NULL,
  tree_hash TEXT NOT NULL,
  PRIMARY KEY (upload_id, first_byte)
) WITHOUT ROWID;
CREATE TABLE glacier_jobs (
  job_id TEXT PRIMARY KEY,
  vault TEXT NOT NULL REFERENCES glacier_vaults(name),
  created_at INTEGER NOT NULL,
  completes_at INTEGER NOT NULL,
  outcome TEXT NOT NULL,
  -- JSON: what DescribeJob answers besides status and dates.
  description TEXT NOT NULL,
  -- The inventory-retrieval output (JSON or CSV) taken when the job was initiated.
  inventory TEXT
);
CREATE INDEX glacier_jobs_by_vault ON glacier_jobs(vault, created_at);
`;
