import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockIndex } from './index.js';
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
      expect(index.getVolume('vol')?.sourcePath).toBe('/v.img');
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
