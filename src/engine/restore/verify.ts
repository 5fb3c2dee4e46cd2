import { throwIfAborted } from '../../core/abort.js';
import { ZERO_BLOCK_DIGEST, digestOf } from '../../core/checksum.js';
import { BLOCKS_PER_GIB, blockCountFor } from '../../core/constants.js';
import type { SnapshotCatalog, SnapshotReader } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts } from '../../core/index-ports.js';
import { openSource, type BlockSource, type SlabPool } from '../../source/index.js';
import { BlockMapCursor } from '../blocks/block-map.js';
import type { SettleWait } from '../blocks/committer.js';
import { completedSnapshot, taggedSourceBytes } from '../blocks/remote-snapshot.js';
import { digestAt, scanSource } from '../blocks/scan.js';

export interface VerifyDeps {
  index: Pick<IndexPorts, 'lineage' | 'maps'>;
  /** Hands out only blocks that match the checksum sent with them (see session). */
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  hashPool: HashPool;
  slabs: SlabPool;
}

export interface VerifyOptions {
  /** Image file or block device to compare; optional with `remote`. */
  source?: string;
  snapshotId: string;
  /**
   * Read every block of the snapshot through GetSnapshotBlock and check it:
   * against the checksum sent with it, against the index's digest when the
   * index maps the snapshot, and against the source when one is given.
   * Without it, a source is compared with the index's digests and the
   * snapshot is not read (it is read when the index does not map it).
   */
  remote?: boolean;
  /**
   * Compare only the source's first this many bytes, as if it ended there (a
   * device larger than the snapshot restored onto it: what lies past the
   * restored bytes is not the snapshot's).
   */
  upToBytes?: number;
  /** Blocks fetched at once when the snapshot is read (memory: this many blocks). */
  window?: number;
  signal?: AbortSignal;
  onProgress?: (progress: VerifyProgress) => void;
  /** Told while EC2 does not show the snapshot completed yet (see completedSnapshot). */
  onSettling?: (wait: SettleWait) => void;
}

export interface VerifyProgress {
  /** Blocks of the volume: the source's, or the snapshot's when larger or without a source. */
  totalBlocks: number;
  /** Blocks of the volume checked so far; reaches totalBlocks at the end. */
  blocksDone: number;
  /** Blocks read from the snapshot so far. */
  blocksRead: number;
}

/** Inclusive range of block indexes. */
export interface BlockRange {
  first: number;
  last: number;
}

export interface VerifyResult {
  snapshotId: string;
  /** The source compared, null when none was given (remote). */
  source: string | null;
  /**
   * 'index': the source's blocks were hashed and compared with the index's
   * digests of the snapshot, which was not read. 'remote': every block of
   * the snapshot was read through GetSnapshotBlock and matched the checksum
   * sent with it, and was compared with the index's digest (when the index
   * maps the snapshot) and with the source (when one was given).
   */
  kind: 'index' | 'remote';
  /** True when every comparison made found no difference (and the sizes agree, when both are known). */
  equal: boolean;
  /** Where the digests the source was compared with came from. */
  expectedFrom: 'index' | 'snapshot';
  /** The source's size; null without a source. */
  sourceBytes: number | null;
  /** The byte size recorded for the snapshot (by the index, else its snapline:source-bytes tag), when known. */
  snapshotBytes: number | null;
  /** Source blocks compared with the snapshot (past the source's end, the snapshot's blocks there, compared with zeros). */
  blocksCompared: number;
  differingBlocks: number;
  differingRanges: BlockRange[];
  /** Blocks read from the snapshot, each matching its checksum. */
  blocksRead: number;
  /** Whether what was read was compared with the index's map of the snapshot (remote, when the index maps it). */
  indexChecked: boolean;
  /** Blocks where the snapshot holds something other than the index's map says. */
  indexMismatches: number;
  indexMismatchRanges: BlockRange[];
  durationMs: number;
}

/** A block's digest, in ascending block order. */
interface BlockDigest {
  index: number;
  digest: Buffer;
}

/** Block ranges built from ascending block indexes. */
class RangeList {
  readonly ranges: BlockRange[] = [];
  count = 0;

  add(blockIndex: number): void {
    this.count += 1;
    const last = this.ranges.at(-1);
    if (last && last.last === blockIndex - 1) last.last = blockIndex;
    else this.ranges.push({ first: blockIndex, last: blockIndex });
  }
}

/**
 * Checks a snapshot. Without `remote`, a source's blocks are compared with
 * the index's digests of the snapshot (a block the map lacks must be zeros);
 * when the index does not map the snapshot, or with `remote`, every block of
 * the snapshot is read instead (see VerifyOptions.remote).
 */
export async function verify(deps: VerifyDeps, options: VerifyOptions): Promise<VerifyResult> {
  const started = Date.now();
  if (options.source === undefined && !options.remote) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'give a source to compare with the snapshot, or remote to read and check the snapshot alone', {
      details: { option: 'remote' },
    });
  }
  const remote = await completedSnapshot(deps, options.snapshotId, options);
  const known = deps.index.lineage.getSnapshot(options.snapshotId);
  const mapped = known?.state === 'completed';
  if (mapped) deps.index.maps.verifyMap(options.snapshotId);
  const snapshotBytes = known?.sourceBytes ?? taggedSourceBytes(remote) ?? null;
  const snapshotBlocks = snapshotBytes === null ? remote.volumeSizeGiB * BLOCKS_PER_GIB : blockCountFor(snapshotBytes);
  const opened = options.source === undefined ? undefined : await openSource(options.source, { signal: options.signal });
  const source = opened === undefined || options.upToBytes === undefined ? opened : cutSource(opened, options.upToBytes);
  const kind = options.remote || !mapped ? 'remote' : 'index';
  try {
    const totalBlocks = Math.max(snapshotBlocks, source ? blockCountFor(source.sizeBytes) : 0);
    const walk = new Walk(totalBlocks, options.onProgress);
    try {
      if (kind === 'index') await compareWithIndex(deps, options, source!, walk);
      else await readAndCompare(deps, options, source, mapped ? remote.volumeSizeGiB * BLOCKS_PER_GIB : 0, walk);
    } finally {
      walk.stop();
    }
    walk.finish();
    const sourceBytes = source?.sizeBytes ?? null;
    return {
      snapshotId: options.snapshotId,
      source: source?.path ?? null,
      kind,
      equal: walk.differing.count === 0 && walk.indexMismatches.count === 0 && (snapshotBytes === null || sourceBytes === null || snapshotBytes === sourceBytes),
      expectedFrom: kind === 'index' ? 'index' : 'snapshot',
      sourceBytes,
      snapshotBytes,
      blocksCompared: walk.compared,
      differingBlocks: walk.differing.count,
      differingRanges: walk.differing.ranges,
      blocksRead: walk.read,
      indexChecked: kind === 'remote' && mapped,
      indexMismatches: walk.indexMismatches.count,
      indexMismatchRanges: walk.indexMismatches.ranges,
      durationMs: Date.now() - started,
    };
  } finally {
    await source?.close();
  }
}

/**
 * The source read as if it ended at `sizeBytes` (when it is longer): the
 * tail of its last block reads as zeros, as a source of that size is backed
 * up. Closing it closes the source.
 */
export function cutSource(source: BlockSource, sizeBytes: number): BlockSource {
  const size = Math.min(source.sizeBytes, sizeBytes);
  return {
    path: source.path,
    kind: source.kind,
    sizeBytes: size,
    fd: source.fd,
    read: (into, position) => source.read(into.subarray(0, Math.max(0, Math.min(into.byteLength, size - position))), position),
    dataRegionAt: async (position) => {
      const region = await source.dataRegionAt(position);
      return { start: Math.min(region.start, size), end: Math.min(region.end, size) };
    },
    close: () => source.close(),
  };
}

/** What a verify has found so far, and its progress. */
class Walk {
  readonly differing = new RangeList();
  readonly indexMismatches = new RangeList();
  compared = 0;
  read = 0;
  #done = 0;
  readonly #ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly totalBlocks: number,
    private readonly onProgress?: (progress: VerifyProgress) => void,
  ) {
    if (onProgress) this.#ticker = setInterval(() => this.#report(), 500);
  }

  /** Every block below `blockIndex` has been checked. */
  passed(blockIndex: number): void {
    this.#done = Math.max(this.#done, Math.min(blockIndex, this.totalBlocks));
  }

  /** The walk is over: progress at its end. */
  finish(): void {
    this.#done = this.totalBlocks;
    this.#report();
  }

  /** Ends the periodic reports. */
  stop(): void {
    clearInterval(this.#ticker);
  }

  #report(): void {
    this.onProgress?.({ totalBlocks: this.totalBlocks, blocksDone: this.#done, blocksRead: this.read });
  }
}

/** The source's blocks against the index's digests of the snapshot. */
async function compareWithIndex(deps: VerifyDeps, options: VerifyOptions, source: BlockSource, walk: Walk): Promise<void> {
  const expected = new BlockMapCursor(deps.index, options.snapshotId);
  for await (const slab of scanSource(source, deps.slabs, deps.hashPool, { keepBytes: 'none', signal: options.signal })) {
    try {
      for (let i = 0; i < slab.blockCount; i += 1) {
        const blockIndex = slab.firstBlock + i;
        if (!(expected.digestAt(blockIndex) ?? ZERO_BLOCK_DIGEST).equals(digestAt(slab, i))) walk.differing.add(blockIndex);
      }
      walk.compared += slab.blockCount;
      walk.passed(slab.firstBlock + slab.blockCount);
    } finally {
      slab.slab.release();
    }
  }
  // Past the source's end the source reads as zeros: a block of the snapshot there differs unless it is zeros.
  for (const entry of deps.index.maps.blockMap(options.snapshotId, { fromBlock: blockCountFor(source.sizeBytes) })) {
    walk.compared += 1;
    if (!entry.digest.equals(ZERO_BLOCK_DIGEST)) walk.differing.add(entry.index);
  }
}

/**
 * Reads every block of the snapshot and walks the volume in block order:
 * each block read (or zeros, where the snapshot lacks one) against the
 * index's map over [0, mapBlocks) and against the source's block.
 */
async function readAndCompare(deps: VerifyDeps, options: VerifyOptions, source: BlockSource | undefined, mapBlocks: number, walk: Walk): Promise<void> {
  const read = blocksInOrder(deps.reader, options.snapshotId, options.window ?? 128, walk, options.signal);
  const map = mapEntries(deps.index, options.snapshotId, mapBlocks);
  let block: BlockDigest | undefined;
  let entry = map.next().value;
  /** Checks block `blockIndex` (with the source's digest there, if any) and moves the cursors past it. */
  const check = async (blockIndex: number, sourceDigest: Uint8Array | undefined) => {
    const held = block?.index === blockIndex ? block.digest : ZERO_BLOCK_DIGEST;
    if (mapBlocks > 0 && !(entry?.index === blockIndex ? entry.digest : ZERO_BLOCK_DIGEST).equals(held)) walk.indexMismatches.add(blockIndex);
    if (sourceDigest !== undefined) {
      walk.compared += 1;
      if (!held.equals(sourceDigest)) walk.differing.add(blockIndex);
    }
    if (block?.index === blockIndex) block = await nextOf(read);
    if (entry?.index === blockIndex) entry = map.next().value;
    walk.passed(blockIndex + 1);
  };
  try {
    block = await nextOf(read);
    if (source) {
      for await (const slab of scanSource(source, deps.slabs, deps.hashPool, { keepBytes: 'none', signal: options.signal })) {
        try {
          for (let i = 0; i < slab.blockCount; i += 1) await check(slab.firstBlock + i, digestAt(slab, i));
        } finally {
          slab.slab.release();
        }
      }
    }
    // Past the source (or without one): the blocks the snapshot or the map has. Past a source's end the source reads as zeros,
    // so a block there differs unless it is zeros (the size check alone misses it when the snapshot's size is not known).
    for (;;) {
      const next = Math.min(block?.index ?? Infinity, entry?.index ?? Infinity);
      if (next === Infinity) break;
      await check(next, source ? ZERO_BLOCK_DIGEST : undefined);
    }
  } finally {
    await read.return(undefined);
  }
}

async function nextOf<T>(iterator: AsyncIterator<T>): Promise<T | undefined> {
  const next = await iterator.next();
  return next.done ? undefined : next.value;
}

/**
 * The digest of every block of a snapshot, in ascending block order, from
 * the checksum each GetSnapshotBlock answer carries (the reader hands out
 * only blocks that match it). Up to `window` fetches run ahead of the
 * consumer; when it stops early they are awaited before it goes on.
 */
async function* blocksInOrder(reader: SnapshotReader, snapshotId: string, window: number, walk: Walk, signal?: AbortSignal): AsyncGenerator<BlockDigest> {
  const ahead: Array<{ index: number; digest: Promise<Buffer> }> = [];
  const take = async (): Promise<BlockDigest> => {
    const head = ahead.shift()!;
    return { index: head.index, digest: await head.digest };
  };
  try {
    for await (const page of reader.listBlocks(snapshotId)) {
      for (const { index, token } of page.blocks) {
        throwIfAborted(signal);
        const digest = reader.getBlock(snapshotId, index, token).then(({ checksum }) => {
          walk.read += 1;
          return digestOf(checksum);
        });
        // Keep a failure from being reported as unhandled while it waits its turn.
        digest.catch(() => undefined);
        ahead.push({ index, digest });
        if (ahead.length >= window) yield await take();
      }
    }
    while (ahead.length > 0) yield await take();
  } finally {
    await Promise.allSettled(ahead.map((pending) => pending.digest));
  }
}

/** The index's map of a snapshot over [0, toBlock), ascending, read a window at a time (the digests are views of the index's buffers). */
function* mapEntries(index: Pick<IndexPorts, 'maps'>, snapshotId: string, toBlock: number, window = 16_384): Generator<BlockDigest> {
  for (let fromBlock = 0; fromBlock < toBlock; fromBlock += window) {
    yield* [...index.maps.blockMap(snapshotId, { fromBlock, toBlock: Math.min(toBlock, fromBlock + window) })];
  }
}
