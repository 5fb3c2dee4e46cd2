import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../core/checksum.js';
import { BlockIndex } from './index.js';
import { BLOCK_KEY_SPAN } from './schema.js';

let dir: string;
let path: string;

/** An index with a chain of two snapshots and an open run, closed. */
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-index-check-'));
  path = join(dir, 'index.db');
  const index = BlockIndex.open(path);
  index.lineage.ensureVolume({ name: 'vol', sourcePath: '/img', sizeBytes: 1 });
  const run = { volume: 'vol', volumeSizeGiB: 1, sourceBytes: 1, encrypted: false, description: null, runOptions: null };
  const blocks = (labels: string[]) => labels.map((label, at) => ({ index: at * 3, digest: sha256(Buffer.from(label)) }));
  index.runs.beginRun({ ...run, snapshotId: 'snap-1', parentSnapshotId: null, baseSnapshotId: null });
  index.runs.recordBlocks('snap-1', blocks(['a', 'b', 'c']));
  index.runs.commitRun('snap-1');
  index.runs.beginRun({ ...run, snapshotId: 'snap-2', parentSnapshotId: 'snap-1', baseSnapshotId: 'snap-1' });
  index.runs.recordBlocks('snap-2', blocks(['d']));
  index.runs.commitRun('snap-2');
  index.runs.beginRun({ ...run, snapshotId: 'snap-3', parentSnapshotId: 'snap-2', baseSnapshotId: 'snap-2' });
  index.runs.recordBlocks('snap-3', blocks(['e', 'f']));
  index.close();
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Changes the file behind the index's back. */
function plant(sql: string, options: { ignoreChecks?: boolean } = {}): void {
  const db = new Database(path);
  db.pragma('foreign_keys = OFF');
  if (options.ignoreChecks) db.pragma('ignore_check_constraints = ON');
  db.exec(sql);
  db.close();
}

function problems(): string[] {
  const index = BlockIndex.open(path);
  try {
    return index.check();
  } finally {
    index.close();
  }
}

const mapKey = (snapshotId: string) => `(SELECT map_key FROM snapshots WHERE snapshot_id = '${snapshotId}')`;

describe('index check', () => {
  it('finds nothing wrong in a sound index', () => {
    expect(problems()).toEqual([]);
  });

  it('finds a digest altered in place', () => {
    plant(`UPDATE blocks SET digest = zeroblob(32) WHERE id = ${mapKey('snap-1')} * ${BLOCK_KEY_SPAN} + 3`);
    expect(problems()).toEqual([expect.stringMatching(/snap-1: its block map does not match its checksum/)]);
  });

  it('finds a digest of the wrong length', () => {
    plant(`UPDATE blocks SET digest = zeroblob(31) WHERE id = ${mapKey('snap-2')} * ${BLOCK_KEY_SPAN}`);
    const found = problems();
    expect(found).toContain('blocks: 1 digests are not 32 bytes');
    expect(found.some((problem) => problem.includes('snap-2'))).toBe(true);
  });

  it('a map read whose digests are fewer than its rows fails INDEX_UNUSABLE instead of dropping rows', () => {
    plant(`UPDATE blocks SET digest = zeroblob(0) WHERE id = ${mapKey('snap-1')} * ${BLOCK_KEY_SPAN} + 6`, { ignoreChecks: true });
    const index = BlockIndex.open(path);
    try {
      expect(() => [...index.maps.blockMap('snap-1')]).toThrow(/holds a digest that is not 32 bytes/);
    } finally {
      index.close();
    }
  });

  it('finds blocks that belong to no snapshot', () => {
    plant(`INSERT INTO blocks (id, digest) VALUES (77 * ${BLOCK_KEY_SPAN} + 1, zeroblob(32))`);
    plant(`INSERT INTO run_blocks (id, digest) VALUES (55 * ${BLOCK_KEY_SPAN}, zeroblob(32))`);
    const found = problems();
    expect(found).toContain('blocks hold rows of map 77, which no snapshot owns');
    expect(found).toContain('the run journal holds rows of snapshot key 55, which is not an open run');
  });

  it('finds a base chain that is broken', () => {
    plant(`UPDATE snapshots SET base_key = 999 WHERE snapshot_id = 'snap-2'`);
    expect(problems()).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/snapshots row \d+ refers to a missing snapshots row/),
        'snapshot snap-3: the base of snap-2 is missing',
      ]),
    );
  });

  it('finds a base chain that loops', () => {
    plant(`UPDATE snapshots SET base_key = (SELECT snapshot_key FROM snapshots WHERE snapshot_id = 'snap-2') WHERE snapshot_id = 'snap-1'`);
    expect(problems()).toEqual(expect.arrayContaining(['snapshot snap-3: its base chain loops at snap-2']));
  });

  it('finds a completed snapshot without a map and two open runs of one volume', () => {
    plant(`
      UPDATE snapshots SET map_key = NULL WHERE snapshot_id = 'snap-1';
      DROP INDEX snapshots_one_open_run;
      INSERT INTO snapshots (snapshot_id, volume_key, state, volume_size_gib, source_bytes, encrypted, started_at)
        VALUES ('snap-4', 1, 'pending', 1, 1, 0, 0);
    `);
    const found = problems();
    expect(found).toContain('snapshot snap-1 is completed but has no block map');
    expect(found).toContain('volume vol has 2 open runs: snap-3, snap-4');
  });

  it('finds blocks beyond the volume size', () => {
    plant(`UPDATE blocks SET id = id + 5000 WHERE id = ${mapKey('snap-2')} * ${BLOCK_KEY_SPAN}`);
    expect(problems()).toEqual(expect.arrayContaining([expect.stringMatching(/snap-2: block 5000 lies beyond its 1 GiB/)]));
  });
});
