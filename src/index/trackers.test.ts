import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockIndex } from './index.js';
import { APPLICATION_ID, SCHEMA_VERSION, migrations } from './schema.js';

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-trackers-'));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('the tracker history', () => {
  it('records the tracker and checkpoints of a snapshot, replaces them, and knows nothing of others', () => {
    const index = BlockIndex.open(join(dir, 'index.db'));
    try {
      expect(index.trackers.get('snap-1')).toBeUndefined();
      index.trackers.record({ snapshotId: 'snap-1', kind: 'dirty-bitmap', name: 'gen1', sinceCheckpoint: 'gen1', checkpoint: 'gen2', scan: 'tracked', reason: null });
      expect(index.trackers.get('snap-1')).toMatchObject({ kind: 'dirty-bitmap', name: 'gen1', sinceCheckpoint: 'gen1', checkpoint: 'gen2', scan: 'tracked', reason: null, recordedAt: expect.any(Date) });
      index.trackers.record({ snapshotId: 'snap-1', kind: null, name: null, sinceCheckpoint: null, checkpoint: 'gen3', scan: 'full', reason: 'no parent' });
      expect(index.trackers.get('snap-1')).toMatchObject({ kind: null, checkpoint: 'gen3', scan: 'full', reason: 'no parent' });
      expect(index.check()).toEqual([]);
    } finally {
      index.close();
    }
  });

  it('comes with the migration that upgrades an index of the previous version, keeping its rows', () => {
    const path = join(dir, 'index.db');
    const db = new Database(path);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma('journal_mode = WAL');
    for (const step of migrations.slice(0, -1)) step(db);
    db.pragma(`user_version = ${SCHEMA_VERSION - 1}`);
    db.prepare(`INSERT INTO volumes (name, source_path, size_bytes, created_at) VALUES ('vol', '/v.img', 1, 0)`).run();
    db.close();
    const index = BlockIndex.open(path);
    try {
      expect(index.lineage.getVolume('vol')?.sourcePath).toBe('/v.img');
      index.trackers.record({ snapshotId: 'snap-1', kind: 'changed-blocks', name: '/x', sinceCheckpoint: 'a', checkpoint: 'b', scan: 'tracked', reason: null });
      expect(index.trackers.get('snap-1')?.checkpoint).toBe('b');
    } finally {
      index.close();
    }
  });
});
