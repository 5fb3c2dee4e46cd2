import type { BlockRanges } from '../../core/changed-ranges.js';
import { ZERO_BLOCK_DIGEST } from '../../core/checksum.js';
import { blockCountFor } from '../../core/constants.js';
import type { HashPool } from '../../hashing/index.js';
import type { BlockSource, FilledSlab, HoleRun, Slab, SlabPool } from '../../source/index.js';
import { MAX_HOLE_RUN_BLOCKS, fillSlab, readSlabs, slabExtent, sourceEndedError, zeroSlab } from '../../source/index.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';

/**
 * A run of source blocks with the SHA-256 and zero flag of each block. For a
 * hole of the source (`hole` true) nothing was read or hashed: `slab` is a
 * stand-in whose blocks read as zeros, and `digests` and `zero` are shared
 * read-only arrays (the zero-block digest, flag 1).
 */
export interface HashedSlab {
  slab: Slab;
  firstBlock: number;
  blockCount: number;
  /** 32 bytes per block: block i of the slab at [32*i, 32*i+32). */
  digests: Uint8Array;
  /** 1 where block i of the slab is all zeros. */
  zero: Uint8Array;
  /** True for a hole run of the source. */
  hole: boolean;
  /** With ScanOptions.keepBytes a function: its answer for each block of the run. */
  unneededAs?: ReadonlyArray<Uint8Array | undefined>;
}

/** How many runs scanSource reads and hashes ahead of its consumer unless told. */
export const DEFAULT_HASH_AHEAD = 4;

export interface ScanOptions {
  fromBlock?: number;
  toBlock?: number;
  /** Read only these block ranges (ascending, disjoint) instead of [fromBlock, toBlock); read-ahead goes on across them. */
  ranges?: BlockRanges;
  /** How many runs may be queued (read and hashing) ahead of the consumer; at most the pool's slab count. */
  hashAhead?: number;
  /** Skip holes without reading them (default true; a sparse file needs the native addon, an NBD export base:allocation). */
  skipHoles?: boolean;
  /**
   * Which blocks' bytes the consumer reads from the yielded slabs (default
   * 'all'); 'none' when it uses only digests. A function gives the digest
   * under which a block's bytes are not needed (undefined: needed whatever it
   * holds). It is called once a block, in ascending order, as the scan reads
   * ahead, and its answers come with the slab (HashedSlab.unneededAs). A slab
   * holds the bytes of a block of a file only where they are needed: its
   * digest differs from that answer. Leaving out the rest spares copying
   * them out of the hash threads' cache.
   */
  keepBytes?: 'all' | 'none' | ((blockIndex: number) => Uint8Array | undefined);
  signal?: AbortSignal;
}

/**
 * Reads a source once, in ascending block order: the hash pool's threads read
 * each slab's blocks into it and hash them while they are in cache, several
 * slabs ahead of the consumer (a source without a descriptor, an NBD export,
 * is read here, those slabs' reads in flight together, and hashed there);
 * holes of a sparse file and zero extents of an NBD export get the zero
 * digest without being read. Yields runs in order; the consumer owns each yielded
 * slab and must release it. On abort or error every slab not yet yielded is
 * released once no thread uses it.
 */
export async function* scanSource(
  source: BlockSource,
  slabs: SlabPool,
  hashPool: HashPool,
  options: ScanOptions = {},
): AsyncGenerator<HashedSlab> {
  // More than the pool holds would wait forever for a slab the queue itself holds.
  const hashAhead = Math.max(1, Math.min(options.hashAhead ?? DEFAULT_HASH_AHEAD, slabs.slabCount));
  const queue: Array<{ filled: FilledSlab | undefined; hashed: Promise<HashedSlab> }> = [];
  const { keepBytes = 'all' } = options;
  const answersFor = (firstBlock: number, blockCount: number) =>
    typeof keepBytes === 'function' ? { unneededAs: Array.from({ length: blockCount }, (_, i) => keepBytes(firstBlock + i)) } : {};
  const hash = async (filled: FilledSlab): Promise<HashedSlab> => {
    const answers = answersFor(filled.firstBlock, filled.blockCount);
    if (source.fd === undefined) {
      // Only this thread can read the source (an NBD export): read the slab here, hash it there.
      await fillSlab(source, filled.slab, filled.firstBlock, filled.blockCount);
      const { digests, zero } = await hashPool.hashBlocks(filled.slab.buffer, 0, filled.blockCount, options.signal);
      return { ...filled, digests, zero, hole: false, ...answers };
    }
    const { position, available } = slabExtent(source, filled.firstBlock, filled.blockCount);
    const keep = keepBytes === 'all' ? undefined : keepBytes === 'none' ? 'none' : keptUnless(answers.unneededAs!);
    try {
      const { digests, zero } = await hashPool.readAndHashBlocks(source.fd, position, available, filled.slab.buffer, 0, filled.blockCount, {
        signal: options.signal,
        ...(keep === undefined ? {} : { keep }),
      });
      return { ...filled, digests, zero, hole: false, ...answers };
    } catch (err) {
      throw sourceFailure(source, err);
    }
  };
  const takeHead = async (): Promise<HashedSlab> => {
    const head = queue.shift()!;
    try {
      return await head.hashed;
    } catch (err) {
      head.filled?.slab.release();
      throw err;
    }
  };
  const spans = options.ranges ?? [[options.fromBlock ?? 0, options.toBlock ?? blockCountFor(source.sizeBytes)]];
  try {
    for (const [fromBlock, toBlock] of spans) {
      for await (const run of readSlabs(source, slabs, { ...options, fromBlock, toBlock, fill: false })) {
        if (run.hole) {
          queue.push({ filled: undefined, hashed: Promise.resolve({ ...hashedHole(run), ...answersFor(run.firstBlock, run.blockCount) }) });
        } else {
          const hashed = hash(run);
          // Keep a rejection from being reported as unhandled while it waits in the queue.
          hashed.catch(() => undefined);
          queue.push({ filled: run, hashed });
        }
        if (queue.length >= hashAhead) yield await takeHead();
      }
    }
    while (queue.length > 0) yield await takeHead();
  } finally {
    // A worker may still be reading a queued slab: let it finish before the slab is reused.
    await Promise.allSettled(queue.map((pending) => pending.hashed));
    for (const pending of queue) pending.filled?.slab.release();
  }
}

/** The hash pool's form of keepBytes' answers for a slab: 32 bytes a block, then a flag a block (1 where a digest is given). */
function keptUnless(unneededAs: ReadonlyArray<Uint8Array | undefined>): Uint8Array {
  const keep = new Uint8Array(33 * unneededAs.length);
  for (const [i, digest] of unneededAs.entries()) {
    if (digest === undefined) continue;
    keep.set(digest, 32 * i);
    keep[32 * unneededAs.length + i] = 1;
  }
  return keep;
}

/** The digest of block `i` of a hashed run, as a view (no copy). */
export function digestAt(slab: HashedSlab, i: number): Uint8Array {
  return slab.digests.subarray(32 * i, 32 * i + 32);
}

/** The zero digest MAX_HOLE_RUN_BLOCKS times and as many zero flags, built once. */
let holeDigests: { digests: Uint8Array; zero: Uint8Array } | undefined;

function hashedHole(run: HoleRun): HashedSlab {
  if (holeDigests === undefined) {
    const digests = new Uint8Array(32 * MAX_HOLE_RUN_BLOCKS);
    for (let i = 0; i < MAX_HOLE_RUN_BLOCKS; i += 1) digests.set(ZERO_BLOCK_DIGEST, 32 * i);
    holeDigests = { digests, zero: new Uint8Array(MAX_HOLE_RUN_BLOCKS).fill(1) };
  }
  return {
    slab: zeroSlab(run.blockCount),
    firstBlock: run.firstBlock,
    blockCount: run.blockCount,
    digests: holeDigests.digests.subarray(0, 32 * run.blockCount),
    zero: holeDigests.zero.subarray(0, run.blockCount),
    hole: true,
  };
}

/** A read failure from the pool, named with the source as the reader names it. */
function sourceFailure(source: BlockSource, err: unknown): unknown {
  if (isSnaplineError(err, ErrorCodes.SOURCE_UNUSABLE) && typeof err.details?.endedAt === 'number') return sourceEndedError(source, err.details.endedAt);
  if (isSnaplineError(err, ErrorCodes.IO_FAILED) && typeof err.details?.position === 'number') {
    const { position, errno } = err.details;
    return new SnaplineError(ErrorCodes.IO_FAILED, `reading source ${source.path} at byte ${position} failed: ${String(errno)}`, {
      cause: err,
      details: { path: source.path, position },
    });
  }
  return err;
}
