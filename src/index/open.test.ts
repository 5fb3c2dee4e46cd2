import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SnaplineError } from '../errors.js';
import { APPLICATION_ID, BlockIndex, SCHEMA_VERSION } from './index.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-index-open-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The error BlockIndex.open throws for `path`. */
function refusal(path: string): SnaplineError {
  try {
    BlockIndex.open(path).close();
  } catch (err) {
    if (err instanceof SnaplineError) return err;
    throw err;
  }
  throw new Error(`${path} was opened`);
}

/** A closed, checkpointed index with one volume. */
function makeIndex(path: string): void {
  const index = BlockIndex.open(path);
  index.lineage.ensureVolume({ name: 'vol', sourcePath: '/img', sizeBytes: 1 });
  index.close();
}

describe('creating an index', () => {
  it('creates the file 0600 and missing parent directories 0700', () => {
    const path = join(dir, 'a', 'b', 'index.db');
    const index = BlockIndex.open(path);
    index.lineage.ensureVolume({ name: 'vol', sourcePath: '/img', sizeBytes: 1 });
    expect(index.path).toBe(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(`${path}-wal`).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'a')).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'a', 'b')).mode & 0o777).toBe(0o700);
    index.close();
  });

  it('stamps the application id and schema version, in WAL mode', () => {
    const path = join(dir, 'index.db');
    makeIndex(path);
    const db = new Database(path, { readonly: true });
    expect(db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    expect(db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
  });

  it('takes an empty file as a new index', () => {
    const path = join(dir, 'index.db');
    writeFileSync(path, '');
    makeIndex(path);
    const index = BlockIndex.open(path);
    expect(index.lineage.listVolumes().length).toBe(1);
    index.close();
  });

  it('migrates a file at an older schema version', () => {
    const path = join(dir, 'index.db');
    const db = new Database(path);
    db.pragma(`application_id = ${APPLICATION_ID}`); // version 0: stamped, no tables yet
    db.close();
    const index = BlockIndex.open(path);
    index.lineage.ensureVolume({ name: 'vol', sourcePath: '/img', sizeBytes: 1 });
    index.close();
    const reopened = new Database(path, { readonly: true });
    expect(reopened.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    reopened.close();
  });
});

describe('refusing a file', () => {
  it('refuses an index from a newer snapline, leaving it untouched', () => {
    const path = join(dir, 'index.db');
    makeIndex(path);
    const db = new Database(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    const before = readFileSync(path);
    const err = refusal(path);
    expect(err.code).toBe('INDEX_UNUSABLE');
    expect(err.message).toContain(path);
    expect(err.message).toContain(`schema version ${SCHEMA_VERSION + 1}`);
    expect(err.hint).toMatch(/upgrade snapline/);
    expect(readFileSync(path).equals(before)).toBe(true);
  });

  it("refuses another application's SQLite file without changing it", () => {
    const path = join(dir, 'other.db');
    const db = new Database(path);
    db.exec('CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES (1)');
    db.close();
    const before = readFileSync(path);
    const err = refusal(path);
    expect(err.code).toBe('INDEX_UNUSABLE');
    expect(err.message).toMatch(/another application/);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(existsSync(`${path}-wal`)).toBe(false);

    const stamped = join(dir, 'stamped.db');
    const other = new Database(stamped);
    other.pragma('application_id = 1234');
    other.exec('CREATE TABLE t (x)');
    other.close();
    expect(refusal(stamped).message).toMatch(/another application/);
  });

  it('refuses a file that is not SQLite', () => {
    const garbage = join(dir, 'garbage.db');
    writeFileSync(garbage, randomBytes(8192));
    expect(refusal(garbage)).toMatchObject({ code: 'INDEX_UNUSABLE', message: expect.stringMatching(/not an SQLite database/) });

    const short = join(dir, 'short.db');
    writeFileSync(short, 'SQLite format 3\0');
    expect(refusal(short)).toMatchObject({ code: 'INDEX_UNUSABLE', message: expect.stringMatching(/too few/) });

    const directory = join(dir, 'dir.db');
    mkdirSync(directory);
    expect(refusal(directory)).toMatchObject({ code: 'INDEX_UNUSABLE', message: expect.stringMatching(/not a regular file/) });
  });

  it('refuses an index whose header is damaged', () => {
    const path = join(dir, 'index.db');
    makeIndex(path);
    const bytes = readFileSync(path);
    bytes.writeUInt16BE(3000, 16); // page size: not a power of two
    writeFileSync(path, bytes);
    const err = refusal(path);
    expect(err.code).toBe('INDEX_UNUSABLE');
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/header is damaged/);
  });

  it('never uses an index whose pages were overwritten: open or check says so', () => {
    const path = join(dir, 'index.db');
    makeIndex(path);
    const bytes = readFileSync(path);
    const pageSize = bytes.readUInt16BE(16);
    randomBytes(bytes.length - pageSize).copy(bytes, pageSize); // every page but the header's
    writeFileSync(path, bytes);
    let problems: string[];
    try {
      const index = BlockIndex.open(path);
      problems = index.check();
      index.close();
    } catch (err) {
      expect(err).toMatchObject({ code: 'INDEX_UNUSABLE' });
      return;
    }
    expect(problems.length).toBeGreaterThan(0);
  });
});
