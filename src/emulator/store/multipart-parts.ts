import type Database from 'better-sqlite3';
import type { BlobFile } from './blob-files.js';
import type { Contents } from './contents.js';

type PartField<Part> = Exclude<keyof Part, 'content'> & string;

/**
 * Where a service keeps its multipart uploads (store/archive-schema.ts): an
 * upload table keyed by upload_id, and a part table keyed by (upload_id, the
 * part's key column) whose rows each name a content. The names are the
 * catalog's own constants, never taken from a request.
 */
export interface PartTables<Part extends { content: number }> {
  uploads: string;
  parts: string;
  /** The field that names a part within its upload and orders the parts (S3: the part number; Glacier: the first byte). */
  key: PartField<Part>;
  /** The column of every field of a part but `content`. */
  columns: { [Field in PartField<Part>]: string };
}

/**
 * The parts of the multipart uploads of one service, S3's or Glacier's, and
 * their contents. Methods are synchronous; callers run them inside their own
 * transactions. Methods that drop bodies return the names of their files,
 * which the caller deletes after the transaction commits.
 */
export class MultipartParts<Part extends { content: number }> {
  readonly #contents: Contents;
  readonly #key: PartField<Part>;
  readonly #s;

  constructor(db: Database.Database, contents: Contents, tables: PartTables<Part>) {
    this.#contents = contents;
    const fields = Object.keys(tables.columns) as Array<PartField<Part>>;
    const keyColumn = tables.columns[tables.key];
    // The key first, then the content, then the rest: the order of the part tables' columns.
    const selected = [`${keyColumn} AS ${tables.key}`, 'content', ...fields.filter((f) => f !== tables.key).map((f) => `${tables.columns[f]} AS ${f}`)];
    const inserted = [tables.key, ...fields.filter((f) => f !== tables.key)];
    this.#s = {
      hasUpload: db.prepare<[string], { one: number }>(`SELECT 1 AS one FROM ${tables.uploads} WHERE upload_id = ?`),
      deleteUpload: db.prepare<[string]>(`DELETE FROM ${tables.uploads} WHERE upload_id = ?`),
      part: db.prepare<[string, unknown], { content: number }>(`SELECT content FROM ${tables.parts} WHERE upload_id = ? AND ${keyColumn} = ?`),
      upsertPart: db.prepare(
        `INSERT OR REPLACE INTO ${tables.parts} (upload_id, ${inserted.map((f) => tables.columns[f]).join(', ')}, content)
         VALUES (@uploadId, ${inserted.map((f) => `@${f}`).join(', ')}, @content)`,
      ),
      parts: db.prepare<[string], Part>(`SELECT ${selected.join(', ')} FROM ${tables.parts} WHERE upload_id = ? ORDER BY ${keyColumn}`),
      deleteParts: db.prepare<[string]>(`DELETE FROM ${tables.parts} WHERE upload_id = ?`),
    };
    this.#key = tables.key;
  }

  /**
   * Records a part (replacing an earlier one of the same key) as a new
   * content of one file. Returns the replaced part's files, or undefined when
   * the upload is gone (aborted or completed meanwhile): the caller then
   * deletes the new file itself.
   */
  put(uploadId: string, part: Omit<Part, 'content'>, file: BlobFile, chunkHashes?: Buffer): string[] | undefined {
    if (this.#s.hasUpload.get(uploadId) === undefined) return undefined;
    const old = this.#s.part.get(uploadId, part[this.#key]);
    const content = this.#contents.create(file, chunkHashes);
    this.#s.upsertPart.run({ ...part, uploadId, content });
    return old === undefined ? [] : this.#contents.remove(old.content);
  }

  /** The parts of an upload in key order. */
  parts(uploadId: string): Part[] {
    return this.#s.parts.all(uploadId);
  }

  /**
   * Forgets an upload and its part rows; returns its parts in key order, whose
   * contents stay for the caller to reuse or remove. Undefined when there is no such upload.
   */
  take(uploadId: string): Part[] | undefined {
    if (this.#s.hasUpload.get(uploadId) === undefined) return undefined;
    const parts = this.#s.parts.all(uploadId);
    this.#s.deleteParts.run(uploadId);
    this.#s.deleteUpload.run(uploadId);
    return parts;
  }

  /** Forgets an upload, its parts and their contents; returns the files. Undefined when there is no such upload. */
  drop(uploadId: string): string[] | undefined {
    return this.take(uploadId)?.flatMap((part) => this.#contents.remove(part.content));
  }
}
