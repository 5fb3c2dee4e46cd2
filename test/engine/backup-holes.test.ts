import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, rmSync, ftruncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import { backup, type BackupDeps } from '../../src/engine/backup/backup.js';
import { HashPool } from '../../src/hashing/index.js';
import { SlabPool } from '../../src/source/index.js';
import { MemoryEbs } from '../fakes/memory-ebs.js';
import { MemoryIndex } from '../fakes/memory-index.js';

/**
 * Backups of sparse image files: blocks wholly inside holes come from the
 * scan as hole runs (not read, when the native hole seeker is built) and must
 * be treated exactly like blocks of zeros that were read. Real hash pool,
 * slab pool and files; the in-memory index, and the in-memory EBS fake behind
 * the retry wrappers.
 */

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
const SLAB_COUNT = 2;
const BLOCKS_PER_SLAB = 4;

let hashPool: HashPool;
let dir: string;

beforeAll(() => {
  hashPool = new HashPool({ threads: 2 });
});
afterAll(async () => {
  await hashPool.destroy();
});
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function setUp(ebs: MemoryEbs, wrapWriter: (inner: SnapshotWriter) => SnapshotWriter = (inner) => inner): BackupDeps {
  dir = mkdtempSync(join(tmpdir(), 'snapline-holes-test-'));
  const policy = { baseDelayMs: 1, maxDelayMs: 5 };
  return {
    index: new MemoryIndex(),
    writer: wrapWriter(resilientWriter(ebs, { policy, limiter: new AdaptiveLimiter(64) })),
    reader: resilientReader(ebs, { policy, limiter: new AdaptiveLimiter(64) }),
    catalog: ebs,
    hashPool,
    slabs: new SlabPool({ slabCount: SLAB_COUNT, blocksPerSlab: BLOCKS_PER_SLAB }),
  };
}

/** Writes a sparse file of `blocks` blocks holding `data` at the given block indexes; the rest is a hole. */
function sparseImage(path: string, blocks: number, data: ReadonlyMap<number, Buffer>): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, blocks * BLOCK_SIZE);
    for (const [i, bytes] of data) writeSync(fd, bytes, 0, BLOCK_SIZE, i * BLOCK_SIZE);
  } finally {
    closeSync(fd);
  }
}

function randomBlocks(indexes: number[]): Map<number, Buffer> {
  return new Map(indexes.map((i) => [i, randomBytes(BLOCK_SIZE)]));
}

describe('backup of a sparse image', () => {
  it('a new lineage uploads the data blocks only and counts the hole blocks as zero blocks skipped', async () => {
    const ebs = new MemoryEbs();
    const deps = setUp(ebs);
    const data = randomBlocks([3, 4, 40, 95]);
    const path = join(dir, 'sparse.img');
    sparseImage(path, 100, data);
    const result = await backup(deps, { source: path, volume: 'sparse' });
    expect(result).toMatchObject({ blocksScanned: 100, blocksChanged: 4, blocksUploaded: 4, blocksZeroSkipped: 96 });
    const content = ebs.contentOf(result.snapshotId!);
    expect([...content.keys()].sort((a, b) => a - b)).toEqual([3, 4, 40, 95]);
    for (const [i, bytes] of data) expect(content.get(i)?.equals(bytes)).toBe(true);
  });

  it('an encrypted snapshot gets the hole blocks written as zeros, never more in flight than the slab pool holds', async () => {
    const ebs = new MemoryEbs();
    let inFlight = 0;
    let most = 0;
    const deps = setUp(ebs, (inner) => ({
      ...inner,
      startSnapshot: (input) => inner.startSnapshot(input),
      completeSnapshot: (...args) => inner.completeSnapshot(...args),
      async putBlock(...args) {
        inFlight += 1;
        most = Math.max(most, inFlight);
        try {
          await new Promise((resolve) => setTimeout(resolve, 1));
          return await inner.putBlock(...args);
        } finally {
          inFlight -= 1;
        }
      },
    }));
    const data = randomBlocks([0, 50]);
    const path = join(dir, 'sparse-encrypted.img');
    sparseImage(path, 60, data);
    const result = await backup(deps, { source: path, volume: 'sparse', encrypted: true });
    expect(result).toMatchObject({ blocksScanned: 60, blocksUploaded: 60, blocksZeroSkipped: 0 });
    const content = ebs.contentOf(result.snapshotId!);
    expect(content.size).toBe(60);
    for (let i = 0; i < 60; i += 1) expect(content.get(i)?.equals(data.get(i) ?? ZERO_BLOCK), `block ${i}`).toBe(true);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(SLAB_COUNT * BLOCKS_PER_SLAB);
  });

  it('blocks that became holes under a parent are written as zeros in the child', async () => {
    const ebs = new MemoryEbs();
    const deps = setUp(ebs);
    const path = join(dir, 'shrinking.img');
    const first = randomBlocks([1, 2, 3, 20, 21, 30]);
    sparseImage(path, 32, first);
    const parent = await backup(deps, { source: path, volume: 'sparse' });
    // The same file rewritten with blocks 2, 3 and 21 punched out.
    const second = new Map([...first].filter(([i]) => ![2, 3, 21].includes(i)));
    sparseImage(path, 32, second);
    const child = await backup(deps, { source: path, volume: 'sparse' });
    expect(child).toMatchObject({ parentSnapshotId: parent.snapshotId, blocksChanged: 3, blocksUploaded: 3 });
    const content = ebs.contentOf(child.snapshotId!);
    for (const i of [2, 3, 21]) expect(content.get(i)?.equals(ZERO_BLOCK), `block ${i} is zeros`).toBe(true);
    for (const [i, bytes] of second) expect(content.get(i)?.equals(bytes), `block ${i}`).toBe(true);
  });
});
