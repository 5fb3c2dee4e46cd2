/**
 * The worker side of an ECS restore: one shard (a block range) of a source
 * written into a pending snapshot that the driver started and will complete,
 * and the result line the worker prints last so the driver can check what it
 * wrote.
 */
import { throwIfAborted } from '../../core/abort.js';
import { LinearAggregate, ZERO_BLOCK_DIGEST, digestOf } from '../../core/checksum.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { ArchiveStore, SnapshotReader, SnapshotWriter } from '../../core/ports.js';
import { TaskWindow } from '../../core/task-window.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import { loadArchiveChain, planBlocks } from '../archive/chain.js';
import { applyPlan, snapshotSink, writesBlock } from '../archive/rehydrate.js';

/** What a shard worker wrote: its block count and the LINEAR aggregate of their digests, ascending. */
export interface ShardResult {
  job: string;
  shard: number;
  fromBlock: number;
  toBlock: number;
  blocksWritten: number;
  /** base64 SHA-256 over the raw digests of the blocks written, in ascending block order. */
  linear: string;
}

const RESULT_KEY = 'snaplineShardResult';

/** The result as the one-line JSON the worker prints last. */
export function formatShardResult(result: ShardResult): string {
  return JSON.stringify({ [RESULT_KEY]: result });
}

/** The result a log line carries, if it is a well-formed result line. */
export function parseShardResult(line: string): ShardResult | undefined {
  if (!line.startsWith(`{"${RESULT_KEY}"`)) return undefined;
  let value: unknown;
  try {
    value = (JSON.parse(line) as Record<string, unknown>)[RESULT_KEY];
  } catch {
    return undefined;
  }
  const r = value as Partial<ShardResult> | null;
  const whole = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
  if (r === null || typeof r !== 'object' || typeof r.job !== 'string' || typeof r.linear !== 'string') return undefined;
  if (![r.shard, r.fromBlock, r.toBlock, r.blocksWritten].every(whole)) return undefined;
  return { job: r.job, shard: r.shard!, fromBlock: r.fromBlock!, toBlock: r.toBlock!, blocksWritten: r.blocksWritten!, linear: r.linear };
}

/** Whether a block with this digest gets written into a new snapshot (see writesBlock: not an all-zero one unless encrypted). */
export function writesDigest(digest: Uint8Array, encrypted: boolean): boolean {
  return writesBlock({ zero: ZERO_BLOCK_DIGEST.equals(digest) }, encrypted);
}

interface ShardTarget {
  /** The pending snapshot written. */
  snapshotId: string;
  fromBlock: number;
  /** Exclusive. */
  toBlock: number;
  /** The target snapshot is encrypted: all-zero blocks are written too. */
  encrypted: boolean;
  signal?: AbortSignal;
  onProgress?: (progress: CopyShardProgress) => void;
}

export interface CopyShardOptions extends ShardTarget {
  sourceSnapshotId: string;
  /** Blocks read or being written at once (default 64). */
  window?: number;
}

export interface CopyShardProgress {
  blocksListed: number;
  blocksWritten: number;
  zeroBlocksSkipped: number;
}

export interface CopyShardResult extends CopyShardProgress {
  bytesWritten: number;
  /** LINEAR aggregate over the blocks written. */
  linear: string;
}

/**
 * Copies the blocks of [fromBlock, toBlock) of a completed snapshot into a
 * pending one: each block read with its checksum verified (the reader's
 * job), then written with the same checksum. Idempotent while the target is
 * pending: a run again writes the same bytes. Cancelling stops new reads and
 * writes; those under way settle first.
 */
export async function copySnapshotShard(deps: { reader: SnapshotReader; writer: SnapshotWriter }, options: CopyShardOptions): Promise<CopyShardResult> {
  const { fromBlock, toBlock } = checkRange(options);
  const counts = { blocksListed: 0, blocksWritten: 0, zeroBlocksSkipped: 0 };
  // Blocks finish out of order; their digests are kept by listing position and folded in order at the end.
  const digests = new GrowableDigests();
  const tasks = new TaskWindow(options.window ?? 64);
  const ticker = setInterval(() => options.onProgress?.({ ...counts }), 1000);
  try {
    await tasks.run(async () => {
      for await (const page of deps.reader.listBlocks(options.sourceSnapshotId, { startingBlockIndex: fromBlock })) {
        const inside = page.blocks.filter((b) => b.index >= fromBlock && b.index < toBlock);
        for (const block of inside) {
          throwIfAborted(options.signal);
          const position = digests.reserve(block.index);
          counts.blocksListed += 1;
          await tasks.add(async () => {
            const { data, checksum } = await deps.reader.getBlock(options.sourceSnapshotId, block.index, block.token);
            const digest = digestOf(checksum);
            if (!writesDigest(digest, options.encrypted)) {
              counts.zeroBlocksSkipped += 1;
              return;
            }
            await deps.writer.putBlock(options.snapshotId, block.index, data, checksum);
            digests.set(position, digest);
            counts.blocksWritten += 1;
          });
        }
        if (page.blocks.some((b) => b.index >= toBlock)) break;
      }
    });
  } finally {
    clearInterval(ticker);
  }
  options.onProgress?.({ ...counts });
  return { ...counts, bytesWritten: counts.blocksWritten * BLOCK_SIZE, linear: digests.linear() };
}

export interface ArchiveShardOptions extends ShardTarget {
  /** The manifest of the newest archive of the chain, in `store`. */
  manifestRef: string;
  /** Ranged downloads at once (default 8, 8 MiB each). */
  downloads?: number;
}

/**
 * Writes the blocks of [fromBlock, toBlock) of an archive chain (found from
 * its newest manifest in the store, no index needed) into a pending
 * snapshot, every ranged read and every block checked before it is written
 * (see applyPlan). Idempotent while the target is pending.
 */
export async function applyArchiveShard(
  deps: { hashPool: HashPool; writer: SnapshotWriter; store: ArchiveStore },
  options: ArchiveShardOptions,
): Promise<CopyShardResult> {
  const span = checkRange(options);
  const chain = await loadArchiveChain(deps, deps.store, options.manifestRef);
  const aggregate = new LinearAggregate();
  let zeroBlocksSkipped = 0;
  // The plan is walked in block order: the aggregate of what is written is built on the way.
  const plan = async function* () {
    for await (const entry of planBlocks(chain, deps.hashPool, span, options.signal)) {
      if (writesBlock(entry, options.encrypted)) aggregate.add(entry.index, entry.digest);
      else zeroBlocksSkipped += 1;
      yield entry;
    }
  };
  const progress = (p: { blocksPlanned: number }) =>
    options.onProgress?.({ blocksListed: p.blocksPlanned, blocksWritten: aggregate.count, zeroBlocksSkipped });
  const applied = await applyPlan(deps.hashPool, plan(), snapshotSink(deps.writer, options.snapshotId, options.encrypted), {
    ...(options.downloads === undefined ? {} : { downloads: options.downloads }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    onProgress: progress,
  });
  progress(applied);
  return { blocksListed: applied.blocksPlanned, blocksWritten: aggregate.count, zeroBlocksSkipped, bytesWritten: aggregate.count * BLOCK_SIZE, linear: aggregate.digest() };
}

function checkRange(options: { fromBlock: number; toBlock: number }): { fromBlock: number; toBlock: number } {
  const { fromBlock, toBlock } = options;
  if (!Number.isSafeInteger(fromBlock) || !Number.isSafeInteger(toBlock) || fromBlock < 0 || toBlock <= fromBlock) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `the block range ${fromBlock}..${toBlock} is empty or invalid`);
  }
  return { fromBlock, toBlock };
}

/** Digests by listing position (ascending block index), some positions left empty (skipped blocks). */
class GrowableDigests {
  #indexes = new Float64Array(1024);
  #digests = Buffer.alloc(1024 * 32);
  #set = new Uint8Array(1024);
  #length = 0;

  /** The position of the next listed block. */
  reserve(blockIndex: number): number {
    if (this.#length === this.#indexes.length) this.#grow();
    this.#indexes[this.#length] = blockIndex;
    return this.#length++;
  }

  set(position: number, digest: Uint8Array): void {
    this.#digests.set(digest, position * 32);
    this.#set[position] = 1;
  }

  linear(): string {
    const aggregate = new LinearAggregate();
    for (let at = 0; at < this.#length; at += 1) {
      if (this.#set[at] === 1) aggregate.add(this.#indexes[at]!, this.#digests.subarray(at * 32, at * 32 + 32));
    }
    return aggregate.digest();
  }

  #grow(): void {
    const size = this.#indexes.length * 2;
    const indexes = new Float64Array(size);
    indexes.set(this.#indexes);
    const digests = Buffer.alloc(size * 32);
    this.#digests.copy(digests);
    const set = new Uint8Array(size);
    set.set(this.#set);
    [this.#indexes, this.#digests, this.#set] = [indexes, digests, set];
  }
}
