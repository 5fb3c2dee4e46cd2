import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { BlockIndex } from './index.js';
import { APPLICATION_ID, SCHEMA_VERSION, migrations } from './schema.js';

let dir: string;
let index: BlockIndex;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-copies-'));
  index = BlockIndex.open(join(dir, 'index.db'));
});
afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

const copy = (copySnapshotId: string, sourceSnapshotId: string, region = 'eu-west-1') => ({
  copySnapshotId,
  sourceSnapshotId,
  volume: 'db',
  region,
  connection: null,
  encrypted: false,
  kmsKeyId: null,
  incrementalOf: null,
});

describe('copies in the index', () => {
  it('records a copy pending, then completed or deleted; lists by snapshot and volume without the deleted; keeps them across reopening', () => {
    index.copies.record(copy('snap-c1', 'snap-a'), new Date(1000));
    index.copies.record(copy('snap-c2', 'snap-a', 'ap-south-1'), new Date(2000));
    index.copies.record({ ...copy('snap-c3', 'snap-b'), incrementalOf: 'snap-c1' }, new Date(3000));
    expect(index.copies.get('snap-c1')).toMatchObject({ state: 'pending', completedAt: null, createdAt: new Date(1000) });
    expect(index.copies.setState('snap-c1', 'completed', null, new Date(5000))).toMatchObject({ state: 'completed', completedAt: new Date(5000) });
    index.copies.setState('snap-c2', 'error', 'key refused');
    index.copies.setState('snap-c3', 'deleted');

    const path = index.path;
    index.close();
    index = BlockIndex.open(path);
    expect(index.copies.ofSnapshot('snap-a').map((c) => [c.copySnapshotId, c.state, c.message])).toEqual([
      ['snap-c1', 'completed', null],
      ['snap-c2', 'error', 'key refused'],
    ]);
    expect(index.copies.ofSnapshot('snap-b')).toEqual([]);
    expect(index.copies.get('snap-c3')).toMatchObject({ state: 'deleted', incrementalOf: 'snap-c1' });
    expect(index.copies.list('db').map((c) => c.copySnapshotId)).toEqual(['snap-c1', 'snap-c2']);
    expect(index.copies.list('other')).toEqual([]);
  });

  it('refuses a copy recorded twice, a state for an unknown copy, and an empty id', () => {
    index.copies.record(copy('snap-c1', 'snap-a'));
    expect(() => index.copies.record(copy('snap-c1', 'snap-a'))).toThrow(expect.objectContaining({ code: ErrorCodes.CONFLICT }));
    expect(() => index.copies.setState('snap-none', 'completed')).toThrow(expect.objectContaining({ code: ErrorCodes.NOT_FOUND }));
    expect(() => index.copies.record(copy('', 'snap-a'))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});

describe('durability', () => {
  /** The synchronous settings `write` ran under, in order. */
  function syncsOf(write: () => void): string[] {
    const pragma = vi.spyOn(Database.prototype, 'pragma');
    try {
      write();
      return pragma.mock.calls.map(([source]) => String(source)).filter((source) => source.startsWith('synchronous'));
    } finally {
      pragma.mockRestore();
    }
  }

  it('recording a copy and changing its state are synced to disk at commit (synchronous FULL), as drills and the run history are', () => {
    expect(syncsOf(() => index.copies.record(copy('snap-c1', 'snap-a')))).toEqual(['synchronous = FULL', 'synchronous = NORMAL']);
    expect(syncsOf(() => index.copies.setState('snap-c1', 'completed'))).toEqual(['synchronous = FULL', 'synchronous = NORMAL']);
  });
});

describe('migration 10 (copies may be deleting)', () => {
  it('keeps the copies of an index of schema version 9, and lets one be marked deleting', () => {
    const path = join(dir, 'older.db');
    const db = new Database(path);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma('journal_mode = WAL');
    for (const step of migrations.slice(0, 9)) step(db);
    db.pragma('user_version = 9');
    db.prepare(
      `INSERT INTO snapshot_copies (copy_snapshot_id, source_snapshot_id, volume, region, connection, state, encrypted, created_at, completed_at)
       VALUES ('snap-c1', 'snap-a', 'db', 'eu-west-1', NULL, 'completed', 0, 1000, 2000)`,
    ).run();
    expect(() => db.prepare(`UPDATE snapshot_copies SET state = 'deleting'`).run()).toThrow(/CHECK/);
    db.close();

    const migrated = BlockIndex.open(path);
    try {
      expect(migrated.copies.get('snap-c1')).toMatchObject({ sourceSnapshotId: 'snap-a', state: 'completed', createdAt: new Date(1000), completedAt: new Date(2000) });
      expect(migrated.copies.setState('snap-c1', 'deleting')).toMatchObject({ state: 'deleting', completedAt: new Date(2000) });
      expect(migrated.copies.ofSnapshot('snap-a').map((c) => c.copySnapshotId)).toEqual(['snap-c1']);
      expect(migrated.check()).toEqual([]);
    } finally {
      migrated.close();
    }
    const reopened = new Database(path, { readonly: true });
    try {
      expect(reopened.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      reopened.close();
    }
  });
});
