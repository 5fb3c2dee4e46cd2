import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlockIndex } from '../../index/index.js';
import { CHUNK_SPAN } from '../../index/maps.js';
import { JournalWriter, ResumeState } from './journal.js';

/** Blocks the index reads in its first, second and third chunk. */
const WRITTEN = [1, 3, CHUNK_SPAN + 7, 2 * CHUNK_SPAN + 100];
const digestOf = (at: number) => Buffer.alloc(32, at % 251);

let dir: string;
let index: BlockIndex;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-journal-'));
  index = BlockIndex.open(join(dir, 'index.db'));
  index.lineage.ensureVolume({ name: 'vol', sourcePath: '/images/vol.img', sizeBytes: 64 * 1024 ** 3 });
  index.runs.beginRun({
    volume: 'vol',
    snapshotId: 'snap-run',
    parentSnapshotId: null,
    baseSnapshotId: null,
    volumeSizeGiB: 64,
    sourceBytes: 64 * 1024 ** 3,
    encrypted: false,
    description: 'a run',
    runOptions: '{}',
  });
});

afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('ResumeState', () => {
  it('answers a walk in ascending order with the blocks written before, across chunks, while the run records more', () => {
    index.runs.recordBlocks(
      'snap-run',
      WRITTEN.map((at) => ({ index: at, digest: digestOf(at) })),
    );
    index.runs.recordIntents('snap-run', [{ index: 5, digest: digestOf(5) }]);
    const resume = ResumeState.load(index, 'snap-run');
    const journal = new JournalWriter(index, 'snap-run');

    const seen = new Map<number, Buffer>();
    const asked = [0, 1, 2, 3, 5, CHUNK_SPAN, CHUNK_SPAN + 7, CHUNK_SPAN + 8, 2 * CHUNK_SPAN + 100, 3 * CHUNK_SPAN];
    for (const at of asked) {
      const written = resume.written(at);
      if (written !== undefined) seen.set(at, Buffer.from(written));
      // The run uploads what it has walked past and records it at once, as a backup does (with other bytes here).
      journal.intend([{ index: at, digest: digestOf(at + 7) }]);
      journal.acknowledge(at, digestOf(at + 7));
      journal.flush();
    }

    expect([...seen.keys()]).toEqual(WRITTEN);
    for (const at of WRITTEN) expect(seen.get(at)!.equals(digestOf(at)), `block ${at}`).toBe(true);
    expect(resume.mustRewrite(5)).toBe(true);
    expect(resume.mustRewrite(6)).toBe(false);
    expect(() => resume.written(3)).toThrow(/after block/);
  });

  it('is empty for a new run', () => {
    const resume = ResumeState.empty();
    expect(resume.written(0)).toBeUndefined();
    expect(resume.mustRewrite(0)).toBe(false);
  });
});
