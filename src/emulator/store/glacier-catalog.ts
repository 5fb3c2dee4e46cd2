import type Database from 'better-sqlite3';
import type { BlobFile } from './blob-files.js';
import { Contents, type ContentFile } from './contents.js';
import { MultipartParts } from './multipart-parts.js';

export interface GlacierVault {
  name: string;
  createdAt: number;
}

export interface VaultTotals {
  archives: number;
  size: number;
}

export interface GlacierArchive {
  archiveId: string;
  vault: string;
  content: number;
  size: number;
  /** Lowercase hex. */
  treeHash: string;
  description: string;
  createdAt: number;
}

export interface GlacierUpload {
  uploadId: string;
  vault: string;
  partSize: number;
  description: string;
  createdAt: number;
}

export interface GlacierPart {
  firstByte: number;
  content: number;
  size: number;
  treeHash: string;
}

export type JobOutcome = 'Succeeded' | 'Failed';

export interface GlacierJob {
  jobId: string;
  vault: string;
  createdAt: number;
  /** When the job leaves InProgress, ending with `outcome`. */
  completesAt: number;
  outcome: JobOutcome;
  /** What DescribeJob answers besides the status and dates (fixed at initiation). */
  description: Record<string, unknown>;
  /** The output of an inventory retrieval. */
  inventory: string | null;
}

interface JobRow {
  job_id: string;
  vault: string;
  created_at: number;
  completes_at: number;
  outcome: JobOutcome;
  description: string;
  inventory: string | null;
}

const ARCHIVE_COLUMNS = 'archive_id AS archiveId, vault, content, size, tree_hash AS treeHash, description, created_at AS createdAt';
const UPLOAD_COLUMNS = 'upload_id AS uploadId, vault, part_size AS partSize, description, created_at AS createdAt';

/**
 * Glacier vaults, archives, multipart uploads and jobs in the endpoint's
 * catalog. Every method is synchronous and atomic; methods that drop bodies
 * return the names of their files for the caller to delete.
 */
export class GlacierCatalog {
  readonly #db: Database.Database;
  readonly #contents: Contents;
  readonly #multipart: MultipartParts<GlacierPart>;
  readonly #s;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#contents = new Contents(db);
    this.#multipart = new MultipartParts<GlacierPart>(db, this.#contents, {
      uploads: 'glacier_uploads',
      parts: 'glacier_parts',
      key: 'firstByte',
      columns: { firstByte: 'first_byte', size: 'size', treeHash: 'tree_hash' },
    });
    this.#s = {
      insertVault: db.prepare<[string, number]>('INSERT OR IGNORE INTO glacier_vaults (name, created_at) VALUES (?, ?)'),
      vault: db.prepare<[string], GlacierVault>('SELECT name, created_at AS createdAt FROM glacier_vaults WHERE name = ?'),
      vaults: db.prepare<[], GlacierVault>('SELECT name, created_at AS createdAt FROM glacier_vaults ORDER BY name'),
      totals: db.prepare<[string], VaultTotals>('SELECT count(*) AS archives, coalesce(sum(size), 0) AS size FROM glacier_archives WHERE vault = ?'),
      deleteVault: db.prepare<[string]>('DELETE FROM glacier_vaults WHERE name = ?'),
      deleteJobsOf: db.prepare<[string]>('DELETE FROM glacier_jobs WHERE vault = ?'),
      insertArchive: db.prepare(
        `INSERT INTO glacier_archives (archive_id, vault, content, size, tree_hash, description, created_at)
         VALUES (@archiveId, @vault, @content, @size, @treeHash, @description, @createdAt)`,
      ),
      archive: db.prepare<[string], GlacierArchive>(`SELECT ${ARCHIVE_COLUMNS} FROM glacier_archives WHERE archive_id = ?`),
      archivesOf: db.prepare<[string], GlacierArchive>(`SELECT ${ARCHIVE_COLUMNS} FROM glacier_archives WHERE vault = ? ORDER BY created_at, rowid`),
      deleteArchive: db.prepare<[string]>('DELETE FROM glacier_archives WHERE archive_id = ?'),
      insertUpload: db.prepare(
        `INSERT INTO glacier_uploads (upload_id, vault, part_size, description, created_at)
         VALUES (@uploadId, @vault, @partSize, @description, @createdAt)`,
      ),
      upload: db.prepare<[string], GlacierUpload>(`SELECT ${UPLOAD_COLUMNS} FROM glacier_uploads WHERE upload_id = ?`),
      uploadsOf: db.prepare<[string], GlacierUpload>(`SELECT ${UPLOAD_COLUMNS} FROM glacier_uploads WHERE vault = ? ORDER BY created_at, rowid`),
      insertJob: db.prepare(
        `INSERT INTO glacier_jobs (job_id, vault, created_at, completes_at, outcome, description, inventory)
         VALUES (@jobId, @vault, @createdAt, @completesAt, @outcome, @description, @inventory)`,
      ),
      job: db.prepare<[string], JobRow>('SELECT * FROM glacier_jobs WHERE job_id = ?'),
      jobsOf: db.prepare<[string], JobRow>('SELECT * FROM glacier_jobs WHERE vault = ? ORDER BY created_at, rowid'),
    };
  }

  /** Idempotent: an existing vault stays as it is. */
  createVault(name: string, now: number): void {
    this.#s.insertVault.run(name, now);
  }

  vault(name: string): GlacierVault | undefined {
    return this.#s.vault.get(name);
  }

  vaults(): GlacierVault[] {
    return this.#s.vaults.all();
  }

  totals(vault: string): VaultTotals {
    return this.#s.totals.get(vault)!;
  }

  /** 'not-empty' while archives remain; otherwise drops the vault with its unfinished uploads and jobs. */
  deleteVault(name: string): { outcome: 'deleted' | 'not-empty'; files: string[] } {
    return this.#db.transaction(() => {
      if (this.#s.totals.get(name)!.archives > 0) return { outcome: 'not-empty' as const, files: [] };
      const files = this.#s.uploadsOf.all(name).flatMap((upload) => this.#multipart.drop(upload.uploadId) ?? []);
      this.#s.deleteJobsOf.run(name);
      this.#s.deleteVault.run(name);
      return { outcome: 'deleted' as const, files };
    })();
  }

  /** Stores an archive of one file; false when the vault is gone. */
  putArchive(archive: Omit<GlacierArchive, 'content'>, file: BlobFile, chunkHashes: Buffer): boolean {
    return this.#db.transaction(() => {
      if (this.#s.vault.get(archive.vault) === undefined) return false;
      const content = this.#contents.create(file, chunkHashes);
      this.#s.insertArchive.run({ ...archive, content });
      return true;
    })();
  }

  archive(archiveId: string): GlacierArchive | undefined {
    return this.#s.archive.get(archiveId);
  }

  /** Archives of a vault, oldest first (in upload order). */
  archivesOf(vault: string): GlacierArchive[] {
    return this.#s.archivesOf.all(vault);
  }

  files(content: number): ContentFile[] {
    return this.#contents.files(content);
  }

  /** Forgets an archive; returns its files, or undefined when there is none. */
  deleteArchive(archiveId: string): string[] | undefined {
    return this.#db.transaction(() => {
      const archive = this.#s.archive.get(archiveId);
      if (archive === undefined) return undefined;
      this.#s.deleteArchive.run(archiveId);
      return this.#contents.remove(archive.content);
    })();
  }

  createUpload(upload: GlacierUpload): void {
    this.#s.insertUpload.run(upload);
  }

  upload(uploadId: string): GlacierUpload | undefined {
    return this.#s.upload.get(uploadId);
  }

  uploadsOf(vault: string): GlacierUpload[] {
    return this.#s.uploadsOf.all(vault);
  }

  /**
   * Records a part at its first byte (replacing an earlier one there).
   * Returns the replaced part's files, or undefined when the upload is gone.
   */
  putPart(uploadId: string, part: Omit<GlacierPart, 'content'>, file: BlobFile, chunkHashes: Buffer): string[] | undefined {
    return this.#db.transaction(() => this.#multipart.put(uploadId, part, file, chunkHashes))();
  }

  parts(uploadId: string): GlacierPart[] {
    return this.#multipart.parts(uploadId);
  }

  /**
   * Turns an upload into an archive made of all its parts in order (checked
   * by the caller). False when the upload is gone.
   */
  completeUpload(uploadId: string, archive: Omit<GlacierArchive, 'content'>): boolean {
    return this.#db.transaction(() => {
      const parts = this.#multipart.take(uploadId);
      if (parts === undefined) return false;
      const content = this.#contents.concatenate(
        parts.map((part) => part.content),
        archive.size,
      );
      this.#s.insertArchive.run({ ...archive, content });
      return true;
    })();
  }

  /** Drops an upload and its parts; returns their files, or undefined when there is no such upload. */
  abortUpload(uploadId: string): string[] | undefined {
    return this.#db.transaction(() => this.#multipart.drop(uploadId))();
  }

  createJob(job: GlacierJob): void {
    this.#s.insertJob.run({ ...job, description: JSON.stringify(job.description) });
  }

  job(jobId: string): GlacierJob | undefined {
    const row = this.#s.job.get(jobId);
    return row === undefined ? undefined : jobOf(row);
  }

  /** Jobs of a vault, oldest first (in initiation order). */
  jobsOf(vault: string): GlacierJob[] {
    return this.#s.jobsOf.all(vault).map(jobOf);
  }
}

function jobOf(row: JobRow): GlacierJob {
  return {
    jobId: row.job_id,
    vault: row.vault,
    createdAt: row.created_at,
    completesAt: row.completes_at,
    outcome: row.outcome,
    description: JSON.parse(row.description) as Record<string, unknown>,
    inventory: row.inventory,
  };
}
