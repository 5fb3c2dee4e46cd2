import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../errors.js';
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

describe('JournalWriter', () => {
  /** The index's journal, counting its writes. */
  const counted = () => {
    const writes: Array<{ intents: number[]; blocks: number[] }> = [];
    const runs = {
      recordJournal: (snapshotId: string, batch: { intents: ReadonlyArray<{ index: number }>; blocks: ReadonlyArray<{ index: number }> }) => {
        index.runs.recordJournal(snapshotId, batch as Parameters<typeof index.runs.recordJournal>[1]);
        writes.push({ intents: batch.intents.map((b) => b.index), blocks: batch.blocks.map((b) => b.index) });
      },
    } as unknown as BlockIndex['runs'];
    return { writes, journal: new JournalWriter({ runs }, 'snap-run') };
  };

  it('writes what one turn of the event loop intends and acknowledges in one transaction, and resolves once it is written', async () => {
    const { writes, journal } = counted();
    const first = journal.intend([1, 2, 3].map((at) => ({ index: at, digest: digestOf(at) })));
    const second = journal.intend([{ index: 9, digest: digestOf(9) }]);
    const acked = journal.acknowledge(7, digestOf(7));
    expect(writes).toEqual([]);
    await Promise.all([first, second, acked]);
    expect(writes).toEqual([{ intents: [1, 2, 3, 9], blocks: [7] }]);
    expect([...index.runs.unacknowledgedBlocks('snap-run')].map((b) => b.index)).toEqual([1, 2, 3, 9]);

    await Promise.all([journal.acknowledge(1, digestOf(1)), journal.acknowledge(2, digestOf(2))]);
    expect(writes).toHaveLength(2);
    expect([...index.runs.writtenBlocks('snap-run')].map((b) => b.index)).toEqual([1, 2, 7]);
  });

  it('copies the digests it is given: a slab buffer reused before the write does not change them', async () => {
    const { journal } = counted();
    const digests = Buffer.concat([digestOf(4), digestOf(5)]);
    const intended = journal.intend([{ index: 4, digest: digests.subarray(0, 32) }]);
    const acked = journal.acknowledge(5, digests.subarray(32, 64));
    digests.fill(0xee);
    await Promise.all([intended, acked]);
    expect(Buffer.from([...index.runs.unacknowledgedBlocks('snap-run')][0]!.digest).equals(digestOf(4))).toBe(true);
    expect(Buffer.from([...index.runs.writtenBlocks('snap-run')][0]!.digest).equals(digestOf(5))).toBe(true);
  });

  it('flush() writes at once; a failed write rejects the promises of its batch and is thrown by flush()', async () => {
    const { writes, journal } = counted();
    const early = journal.intend([{ index: 3, digest: digestOf(3) }]);
    journal.flush();
    expect(writes).toHaveLength(1);
    await early;
    index.runs.markCompleting('snap-run');
    const late = journal.acknowledge(3, digestOf(3));
    await expect(late).rejects.toMatchObject({ code: ErrorCodes.BAD_STATE });
    const last = journal.intend([{ index: 4, digest: digestOf(4) }]);
    expect(() => journal.flush()).toThrow(expect.objectContaining({ code: ErrorCodes.BAD_STATE }));
    await expect(last).rejects.toMatchObject({ code: ErrorCodes.BAD_STATE });
    // Nothing is written twice: the turn's end finds the batch done.
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toHaveLength(1);
  });
});
