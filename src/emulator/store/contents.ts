import type Database from 'better-sqlite3';
import type { BlobFile } from './blob-files.js';

/** A file of a content with, for Glacier bodies, the SHA-256 of each of its 1 MiB chunks. */
export interface ContentFile extends BlobFile {
  chunkHashes: Buffer | null;
}

/**
 * Contents: stored bodies (objects, archives, upload parts), each an ordered
 * list of files. Completing a multipart upload moves the parts' files into a
 * new content without copying bytes. Methods are synchronous; callers run
 * them inside their own transactions. Removing a content returns the names of
 * its files, which the caller deletes after the transaction commits.
 */
export class Contents {
  readonly #s;

  constructor(db: Database.Database) {
    this.#s = {
      insert: db.prepare<[number]>('INSERT INTO contents (size) VALUES (?)'),
      insertFile: db.prepare<[number, number, string, number, Buffer | null]>(
        'INSERT INTO content_files (content, seq, name, size, chunk_hashes) VALUES (?, ?, ?, ?, ?)',
      ),
      files: db.prepare<[number], ContentFile>('SELECT name, size, chunk_hashes AS chunkHashes FROM content_files WHERE content = ? ORDER BY seq'),
      maxSeq: db.prepare<[number], { seq: number | null }>('SELECT max(seq) AS seq FROM content_files WHERE content = ?'),
      move: db.prepare<[number, number, number]>('UPDATE content_files SET content = ?, seq = seq + ? WHERE content = ?'),
      deleteFiles: db.prepare<[number]>('DELETE FROM content_files WHERE content = ?'),
      delete: db.prepare<[number]>('DELETE FROM contents WHERE id = ?'),
      allNames: db.prepare<[], { name: string }>('SELECT name FROM content_files'),
    };
  }

  /** A new content of one file. */
  create(file: BlobFile, chunkHashes?: Buffer): number {
    const id = Number(this.#s.insert.run(file.size).lastInsertRowid);
    this.#s.insertFile.run(id, 0, file.name, file.size, chunkHashes ?? null);
    return id;
  }

  /** A new content made of the files of `parts`, in order; the parts are gone afterwards. */
  concatenate(parts: readonly number[], size: number): number {
    const id = Number(this.#s.insert.run(size).lastInsertRowid);
    let next = 0;
    for (const part of parts) {
      const last = this.#s.maxSeq.get(part)?.seq;
      if (last === null || last === undefined) throw new Error(`content #${part} has no files`);
      this.#s.move.run(id, next, part);
      this.#s.delete.run(part);
      next += last + 1;
    }
    return id;
  }

  files(content: number): ContentFile[] {
    return this.#s.files.all(content);
  }

  /** Forgets a content; returns the names of its files for the caller to delete. */
  remove(content: number): string[] {
    const names = this.#s.files.all(content).map((file) => file.name);
    this.#s.deleteFiles.run(content);
    this.#s.delete.run(content);
    return names;
  }

  /** Every file name any content holds. */
  allNames(): Set<string> {
    return new Set(this.#s.allNames.all().map((row) => row.name));
  }
}
