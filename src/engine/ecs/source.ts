/**
 * What an ECS restore restores, seen from the driver: the size and
 * encryption of the snapshot to make, the digest of every block it gets (so
 * the driver can check each shard's result and complete the snapshot with
 * the LINEAR aggregate without reading any data), and the worker command of
 * a shard.
 */
import { LinearAggregate } from '../../core/checksum.js';
import { BLOCKS_PER_GIB } from '../../core/constants.js';
import type { SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { EcsSourceKind, IndexPorts } from '../../core/index-ports.js';
import { openArchiveChain, planBlocks } from '../archive/chain.js';
import { findArchive, type ArchivePlaces } from '../archive/places.js';
import { writesDigest } from './worker.js';
import { writesBlock } from '../archive/rehydrate.js';
import { completedSnapshot, type SettleOptions } from '../blocks/remote-snapshot.js';

/** A half-open range of block indexes. */
export interface BlockSpan {
  fromBlock: number;
  toBlock: number;
}

export interface ShardSource {
  kind: EcsSourceKind;
  /** The snapshot or archive id. */
  id: string;
  /** The volume the source belongs to. */
  volume: string;
  volumeSizeGiB: number;
  sourceBytes: number;
  encrypted: boolean;
  /**
   * The blocks the new snapshot gets inside `span` (those the worker
   * writes), ascending, a window at a time: the index is free between
   * windows for the journal's writes.
   */
  blocks(span: BlockSpan): AsyncIterable<Array<{ index: number; digest: Buffer }>>;
  /** The `snapline ...` arguments a task runs to write `span` into `snapshotId`. */
  workerCommand(shard: { job: string; shard: number } & BlockSpan, snapshotId: string): string[];
}

/** Blocks read from the index per window. */
const WINDOW = 16_384;

/**
 * A completed snapshot the index knows (its block map gives every digest),
 * copied block for block into a new snapshot of a new lineage. NOT_FOUND or
 * BAD_STATE when AWS no longer has it completed; NOT_FOUND with a hint when
 * the index does not know it.
 */
export async function snapshotSource(deps: { index: Pick<IndexPorts, 'lineage' | 'maps'>; catalog: SnapshotCatalog }, snapshotId: string, settle: SettleOptions = {}): Promise<ShardSource> {
  const record = deps.index.lineage.getSnapshot(snapshotId);
  if (record === undefined || record.state !== 'completed') {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `snapshot ${snapshotId} is not a completed snapshot in the index: the driver needs its block digests`, {
      hint: `learn it first with \`snapline index rebuild ${snapshotId}\`, or restore from an archive of it`,
      details: { snapshotId },
    });
  }
  const remote = await completedSnapshot(deps, snapshotId, settle);
  const index = deps.index;
  return {
    kind: 'snapshot',
    id: snapshotId,
    volume: record.volume,
    volumeSizeGiB: record.volumeSizeGiB,
    sourceBytes: record.sourceBytes,
    encrypted: remote.encrypted,
    async *blocks(span) {
      for (let from = span.fromBlock; from < span.toBlock; from += WINDOW) {
        const window: Array<{ index: number; digest: Buffer }> = [];
        for (const { index: block, digest } of index.maps.blockMap(snapshotId, { fromBlock: from, toBlock: Math.min(span.toBlock, from + WINDOW) })) {
          if (writesDigest(digest, remote.encrypted)) window.push({ index: block, digest: Buffer.from(digest) });
        }
        if (window.length > 0) yield window;
      }
    },
    workerCommand: (shard, target) => [
      'worker',
      'shard',
      '--job',
      shard.job,
      '--shard',
      String(shard.shard),
      '--source-snapshot',
      snapshotId,
      '--snapshot',
      target,
      '--from',
      String(shard.fromBlock),
      '--to',
      String(shard.toBlock),
      ...(remote.encrypted ? ['--encrypted'] : []),
    ],
  };
}

/**
 * An archive chain (an archive id, or a snapshot id with one archive) whose
 * objects are readable (restored): its manifests and block tables give every
 * digest. The workers find the chain from its newest manifest in the store.
 * `s3PathStyle`: the workers address S3 path-style (S3-compatible stores).
 * BAD_STATE when an object is not restored yet.
 */
export async function archiveSource(
  deps: { index: Pick<IndexPorts, 'archives'>; archives: ArchivePlaces; hashPool: HashPool },
  id: string,
  options: { s3PathStyle?: boolean } = {},
): Promise<ShardSource> {
  const record = findArchive(deps.index, id);
  const chain = await openArchiveChain(deps, record.archiveId);
  const { snapshot } = chain;
  return {
    kind: 'archive',
    id: record.archiveId,
    volume: snapshot.volume,
    volumeSizeGiB: snapshot.volumeSizeGiB,
    sourceBytes: snapshot.sourceBytes,
    encrypted: snapshot.encrypted,
    async *blocks(span) {
      let window: Array<{ index: number; digest: Buffer }> = [];
      for await (const entry of planBlocks(chain, deps.hashPool, span)) {
        if (!writesBlock(entry, snapshot.encrypted)) continue;
        window.push({ index: entry.index, digest: entry.digest });
        if (window.length === WINDOW) {
          yield window;
          window = [];
        }
      }
      if (window.length > 0) yield window;
    },
    workerCommand: (shard, target) => [
      'worker',
      'archive-shard',
      '--job',
      shard.job,
      '--shard',
      String(shard.shard),
      '--store',
      record.target,
      '--location',
      record.location,
      '--manifest',
      record.manifestRef!,
      '--snapshot',
      target,
      '--from',
      String(shard.fromBlock),
      '--to',
      String(shard.toBlock),
      ...(snapshot.encrypted ? ['--encrypted'] : []),
      ...(options.s3PathStyle && record.target === 's3' ? ['--s3-path-style'] : []),
    ],
  };
}

/**
 * Splits the volume's blocks into at most `count` contiguous spans holding
 * about the same number of blocks to write (sparse volumes split by data, not
 * by size); every block of the volume is in exactly one span, and no span is
 * empty of data unless the whole source is.
 */
export async function splitShards(source: ShardSource, count: number): Promise<BlockSpan[]> {
  const volumeBlocks = source.volumeSizeGiB * BLOCKS_PER_GIB;
  const whole = { fromBlock: 0, toBlock: volumeBlocks };
  let total = 0;
  for await (const window of source.blocks(whole)) total += window.length;
  const shards = Math.max(1, Math.min(count, total));
  const perShard = Math.ceil(total / shards);
  const cuts: number[] = [];
  let seen = 0;
  for await (const window of source.blocks(whole)) {
    for (const block of window) {
      if (seen > 0 && seen % perShard === 0 && cuts.length < shards - 1) cuts.push(block.index);
      seen += 1;
    }
  }
  const starts = [0, ...cuts];
  return starts.map((fromBlock, n) => ({ fromBlock, toBlock: starts[n + 1] ?? volumeBlocks }));
}

/** The block count and LINEAR aggregate a worker must report for `span`. */
export async function expectedShardResult(source: ShardSource, span: BlockSpan): Promise<{ blocksWritten: number; linear: string }> {
  const aggregate = new LinearAggregate();
  for await (const window of source.blocks(span)) for (const block of window) aggregate.add(block.index, block.digest);
  return { blocksWritten: aggregate.count, linear: aggregate.digest() };
}
