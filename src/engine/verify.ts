import { ZERO_BLOCK_DIGEST, digestOf } from '../core/checksum.js';
import type { SnapshotCatalog, SnapshotReader } from '../core/ports.js';
import { TaskWindow } from '../core/task-window.js';
import type { HashPool } from '../hashing/index.js';
import type { BlockIndex } from '../index/index.js';
import { openSource, type SlabPool } from '../source/index.js';
import { BlockMapCursor } from './block-map.js';
import { completedSnapshot, taggedSourceBytes } from './restore.js';
import { digestAt, scanSource } from './scan.js';

export interface VerifyDeps {
  index: BlockIndex;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  slabs: SlabPool;
}

export interface VerifyOptions {
  /** Image file or block device to compare. */
  source: string;
  snapshotId: string;
  signal?: AbortSignal;
}

/** Inclusive range of block indexes. */
export interface BlockRange {
  first: number;
  last: number;
}

export interface VerifyResult {
  snapshotId: string;
  source: string;
  equal: boolean;
  /** Where the snapshot's block digests came from. */
  expectedFrom: 'index' | 'snapshot';
  sourceBytes: number;
  /** The byte size recorded for the snapshot (by the index, else its snapline:source-bytes tag), when known. */
  snapshotBytes: number | null;
  blocksCompared: number;
  differingBlocks: number;
  differingRanges: BlockRange[];
  durationMs: number;
}

/** Digest lookups over a snapshot's blocks, asked in ascending order. */
interface ExpectedDigests {
  digestAt(blockIndex: number): Buffer | undefined;
}

/**
 * Compares a source's blocks with a snapshot: block digests from the index
 * when it knows the snapshot, otherwise by reading the snapshot (every block
 * fetched, its checksum verified). A block the snapshot lacks must be zeros.
 */
export async function verify(deps: VerifyDeps, options: VerifyOptions): Promise<VerifyResult> {
  const started = Date.now();
  const remote = await completedSnapshot(deps.catalog, options.snapshotId);
  const known = deps.index.getSnapshot(options.snapshotId);
  const fromIndex = known?.state === 'completed';
  if (fromIndex) deps.index.verifyMap(options.snapshotId);
  const expected: ExpectedDigests = fromIndex
    ? new BlockMapCursor(deps.index, options.snapshotId)
    : await readSnapshotDigests(deps.reader, options.snapshotId);

  const source = await openSource(options.source);
  const ranges: BlockRange[] = [];
  let compared = 0;
  let differing = 0;
  try {
    for await (const slab of scanSource(source, deps.slabs, deps.hashPool, { signal: options.signal })) {
      for (let i = 0; i < slab.blockCount; i += 1) {
        const blockIndex = slab.firstBlock + i;
        const want = expected.digestAt(blockIndex) ?? ZERO_BLOCK_DIGEST;
        if (!want.equals(digestAt(slab, i))) {
          differing += 1;
          const last = ranges.at(-1);
          if (last && last.last === blockIndex - 1) last.last = blockIndex;
          else ranges.push({ first: blockIndex, last: blockIndex });
        }
      }
      compared += slab.blockCount;
      slab.slab.release();
    }
  } finally {
    await source.close();
  }
  const snapshotBytes = known?.sourceBytes ?? taggedSourceBytes(remote) ?? null;
  return {
    snapshotId: options.snapshotId,
    source: source.path,
    equal: differing === 0 && (snapshotBytes === null || snapshotBytes === source.sizeBytes),
    expectedFrom: fromIndex ? 'index' : 'snapshot',
    sourceBytes: source.sizeBytes,
    snapshotBytes,
    blocksCompared: compared,
    differingBlocks: differing,
    differingRanges: ranges,
    durationMs: Date.now() - started,
  };
}

/** Reads every block of a snapshot to learn its digests (the reader verifies each checksum). */
async function readSnapshotDigests(reader: SnapshotReader, snapshotId: string): Promise<ExpectedDigests> {
  const digests = new Map<number, Buffer>();
  const tasks = new TaskWindow(64);
  try {
    for await (const page of reader.listBlocks(snapshotId)) {
      for (const block of page.blocks) {
        await tasks.add(async () => {
          const { checksum } = await reader.getBlock(snapshotId, block.index, block.token);
          digests.set(block.index, digestOf(checksum));
        });
      }
    }
  } catch (err) {
    tasks.fail(err);
  }
  await tasks.drain();
  return { digestAt: (blockIndex) => digests.get(blockIndex) };
}
