import { randomFillSync } from 'node:crypto';
import { throwIfAborted } from '../../core/abort.js';
import {
  addBlockRange,
  blockRangesSize,
  changedBlockRanges,
  complementBlockRanges,
  unionBlockRanges,
  type BlockRanges,
  type ChangedRanges,
} from '../../core/changed-ranges.js';
import { ZERO_BLOCK_DIGEST } from '../../core/checksum.js';
import { BLOCK_SIZE, blockCountFor } from '../../core/constants.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts, TrackerRecord } from '../../core/index-ports.js';
import type { BlockSource, SlabPool } from '../../source/index.js';
import type { SnapshotCatalog } from '../../core/ports.js';
import { VOLUME_TAG } from '../blocks/remote-snapshot.js';
import { BlockMapCursor } from '../blocks/block-map.js';
import { digestAt, scanSource } from '../blocks/scan.js';

/** The change-tracking options of a backup (see BackupOptions). */
export interface TrackingOptions {
  dirtyBitmap?: string;
  changedBlocksFile?: string;
  sinceCheckpoint?: string;
  checkpoint?: string;
  verifyUnchangedPercent?: number;
  full?: boolean;
}

/** What a run's change tracking came to, as BackupResult reports it. */
export interface ChangeTrackingResult {
  /** The tracker in words; null when the run was given none (only --checkpoint). */
  tracker: string | null;
  /** tracked: only the blocks the tracker marks were read; full: everything was (see reason). */
  scan: 'tracked' | 'full';
  /** Why a run given a tracker read everything. */
  reason?: string;
  /** The checkpoint the tracker counted changes from. */
  sinceCheckpoint: string | null;
  /** The checkpoint recorded with the new snapshot. */
  checkpoint: string | null;
  /** Blocks the tracker marks as changed (read and hashed); 0 for a full scan. */
  blocksMarked: number;
  /** Blocks the tracker calls unchanged (holes included): what --verify-unchanged draws its sample from; 0 for a full scan. */
  blocksUnchanged: number;
  /** The --verify-unchanged sample: blocks the tracker calls unchanged that were read and compared with the parent's map (see sampleSize). */
  blocksVerified: number;
}

/** The blocks a tracked run reads, and what it reports. */
export interface TrackingPlan {
  /** Block ranges to read; undefined: the whole source. */
  ranges: BlockRanges | undefined;
  result: ChangeTrackingResult;
}

const CHECKPOINT_PATTERN = /^[\x21-\x7e]{1,256}$/;

/** Refuses contradictory or malformed change-tracking options (INVALID_ARGUMENT naming the option). */
export function checkTrackingOptions(options: TrackingOptions): void {
  const invalid = (option: string, message: string, otherOptions: string[] = []) =>
    new SnaplineError(ErrorCodes.INVALID_ARGUMENT, message, { details: { option, ...(otherOptions.length === 0 ? {} : { otherOptions }) } });
  const tracked = options.dirtyBitmap !== undefined || options.changedBlocksFile !== undefined;
  if (options.dirtyBitmap !== undefined && options.changedBlocksFile !== undefined) {
    throw invalid('changedBlocksFile', 'dirtyBitmap and changedBlocksFile exclude each other: give one tracker', ['dirtyBitmap']);
  }
  if (tracked && options.full) {
    const tracker = options.dirtyBitmap !== undefined ? 'dirtyBitmap' : 'changedBlocksFile';
    throw invalid(tracker, `full reads every block: ${tracker} would not be used`, ['full']);
  }
  if (options.dirtyBitmap !== undefined && !CHECKPOINT_PATTERN.test(options.dirtyBitmap)) {
    throw invalid('dirtyBitmap', `dirtyBitmap "${options.dirtyBitmap}" is not a bitmap name: use 1 to 256 printable characters without spaces`);
  }
  for (const [option, value] of [
    ['sinceCheckpoint', options.sinceCheckpoint],
    ['checkpoint', options.checkpoint],
  ] as const) {
    if (value !== undefined && !CHECKPOINT_PATTERN.test(value)) {
      throw invalid(option, `${option} "${value}" is not a checkpoint name: use 1 to 256 printable characters without spaces`);
    }
  }
  if (!tracked && options.sinceCheckpoint !== undefined) {
    throw invalid('sinceCheckpoint', 'sinceCheckpoint names where a tracker counts changes from: give dirtyBitmap or changedBlocksFile with it', ['dirtyBitmap', 'changedBlocksFile']);
  }
  if (options.changedBlocksFile !== undefined && options.sinceCheckpoint === undefined) {
    // "checkpoint" comes last and once as a word: the command line makes that mention its flag.
    throw invalid('sinceCheckpoint', 'changedBlocksFile needs sinceCheckpoint: where its changes count from, as recorded with the parent by checkpoint', ['changedBlocksFile', 'checkpoint']);
  }
  const percent = options.verifyUnchangedPercent;
  if (percent !== undefined) {
    if (!tracked) throw invalid('verifyUnchangedPercent', 'verifyUnchangedPercent checks a tracker: give dirtyBitmap or changedBlocksFile with it', ['dirtyBitmap', 'changedBlocksFile']);
    if (typeof percent !== 'number' || !Number.isFinite(percent) || percent < 0 || percent > 100) {
      throw invalid('verifyUnchangedPercent', `verifyUnchangedPercent must be a percentage from 0 to 100, got ${String(percent)}`);
    }
  }
}

/** The checkpoint a tracker counts changes from: --since-checkpoint, or for a dirty bitmap its name. */
export function sinceCheckpointOf(options: TrackingOptions): string | null {
  return options.sinceCheckpoint ?? options.dirtyBitmap ?? null;
}

/** What a run with these options records and is resumed by; undefined when it uses no tracking at all. */
export function trackingIdentity(options: TrackingOptions): Record<string, string | number> | undefined {
  const identity: Record<string, string | number> = {};
  if (options.dirtyBitmap !== undefined) identity.dirtyBitmap = options.dirtyBitmap;
  if (options.changedBlocksFile !== undefined) identity.changedBlocks = options.changedBlocksFile;
  const since = sinceCheckpointOf(options);
  if (since !== null && (options.dirtyBitmap !== undefined || options.changedBlocksFile !== undefined)) identity.sinceCheckpoint = since;
  if (options.checkpoint !== undefined) identity.checkpoint = options.checkpoint;
  return Object.keys(identity).length === 0 ? undefined : identity;
}

/**
 * Decides whether the run may read only what `tracker` marks: only on top
 * of a parent this index holds the map of (base = parent), of the same
 * source size, recorded with the checkpoint the tracker counts from. Any
 * other case reads everything, and `reason` says why. `extra` are blocks
 * read whatever the tracker says (a resumed run's unacknowledged uploads).
 * `walked` is the tracker's ranges already being read (changedBlockRanges
 * of it); without it they are read here.
 */
export async function planTracking(
  deps: { index: Pick<IndexPorts, 'lineage' | 'maps' | 'trackers'>; catalog: Pick<SnapshotCatalog, 'describeSnapshots' | 'taggedSnapshots'> },
  volume: string,
  options: TrackingOptions,
  tracker: ChangedRanges | undefined,
  source: BlockSource,
  plan: { parent: string | null; base: string | null; suspects: readonly number[] },
  extra: readonly number[],
  walked?: Promise<BlockRanges>,
): Promise<TrackingPlan | undefined> {
  const { index } = deps;
  const since = sinceCheckpointOf(options);
  const checkpoint = options.checkpoint ?? null;
  if (tracker === undefined) {
    if (checkpoint === null) return undefined;
    return { ranges: undefined, result: { tracker: null, scan: 'full', sinceCheckpoint: null, checkpoint, blocksMarked: 0, blocksUnchanged: 0, blocksVerified: 0 } };
  }
  const full = (reason: string): TrackingPlan => ({
    ranges: undefined,
    result: { tracker: tracker.description, scan: 'full', reason, sinceCheckpoint: since, checkpoint, blocksMarked: 0, blocksUnchanged: 0, blocksVerified: 0 },
  });
  const reason = untrackedReason(index, plan, source, since) ?? (await newerSnapshotReason(deps, volume, plan.parent!));
  if (reason !== undefined) return full(reason);
  let ranges = await (walked ?? changedBlockRanges(tracker.ranges(), source.sizeBytes));
  const blocksMarked = blockRangesSize(ranges);
  if (extra.length > 0) ranges = unionBlockRanges(ranges, extra.map((block): [number, number] => [block, block + 1]));
  const blocksUnchanged = blockCountFor(source.sizeBytes) - blockRangesSize(ranges);
  return { ranges, result: { tracker: tracker.description, scan: 'tracked', sinceCheckpoint: since, checkpoint, blocksMarked, blocksUnchanged, blocksVerified: 0 } };
}

/** Why the tracker cannot be used on top of this plan's parent; undefined when it can. */
function untrackedReason(
  index: Pick<IndexPorts, 'lineage' | 'maps' | 'trackers'>,
  plan: { parent: string | null; base: string | null; suspects: readonly number[] },
  source: BlockSource,
  since: string | null,
): string | undefined {
  if (plan.parent === null) return 'there is no parent snapshot to take the unchanged blocks from: this backup reads every block';
  if (plan.base !== plan.parent) {
    return `the index holds no block map of the parent ${plan.parent} (it was taken elsewhere): every block is read and compared`;
  }
  const parent = index.lineage.getSnapshot(plan.parent);
  if (parent !== undefined && parent.sourceBytes !== source.sizeBytes) {
    return `the source holds ${source.sizeBytes} bytes, the parent ${plan.parent} was taken of ${parent.sourceBytes}: a resized disk is read whole`;
  }
  const recorded: TrackerRecord | undefined = index.trackers.get(plan.parent);
  if (recorded === undefined || recorded.checkpoint === null) {
    return `the parent ${plan.parent} has no checkpoint recorded (take it with --checkpoint), so nothing shows the tracker counts changes from it: every block is read`;
  }
  if (recorded.checkpoint !== since) {
    return `the tracker counts changes since checkpoint "${since}", but the parent ${plan.parent} was taken at checkpoint "${recorded.checkpoint}": its history does not continue from the parent, so every block is read`;
  }
  return undefined;
}

/**
 * Why the tracker cannot be used on top of `parent` when a snapshot of the
 * volume newer than it exists: the tools that own bitmaps and checkpoints
 * clear, remove or reuse them once a backup succeeds, so after any later
 * backup (this index's, one recorded only in a newer copy of the index, or
 * another machine's) a checkpoint of the parent's name may count from that
 * backup instead, and the changes between the two would be missed. Looks
 * at the index's head, then at the volume's snapshots in AWS (snapline:volume
 * tag, completed, started after the parent). Undefined when there is none.
 */
async function newerSnapshotReason(
  deps: { index: Pick<IndexPorts, 'lineage'>; catalog: Pick<SnapshotCatalog, 'describeSnapshots' | 'taggedSnapshots'> },
  volume: string,
  parent: string,
): Promise<string | undefined> {
  const because = (newer: string, where: string) =>
    `${newer}, a snapshot of "${volume}" newer than the parent ${parent}, ${where}: the tracker's checkpoint may have been cleared or reused after it, so every block is read`;
  const head = deps.index.lineage.headSnapshot(volume);
  if (head !== undefined && head.snapshotId !== parent) return because(head.snapshotId, 'is the newest in the index');
  const tagged = await deps.catalog.taggedSnapshots({ [VOLUME_TAG]: volume });
  const parentStart = tagged.find((snapshot) => snapshot.snapshotId === parent)?.startTime ?? (await deps.catalog.describeSnapshots([parent]))[0]?.startTime;
  const newer = tagged.find(
    (snapshot) =>
      snapshot.snapshotId !== parent &&
      snapshot.state === 'completed' &&
      (parentStart === undefined || snapshot.startTime === undefined || snapshot.startTime.getTime() > parentStart.getTime()),
  );
  return newer === undefined ? undefined : because(newer.snapshotId, 'exists in AWS and the index does not build on it (an older copy of the index, or another one backing up this volume)');
}

/** A source of uniform random numbers in [0, 1). */
export type RandomSource = () => number;

/**
 * The --verify-unchanged sample size: ceil(percent / 100 x unchanged), all of
 * them at 100, none at 0; so at least one block whenever percent > 0 and a
 * block is unchanged.
 */
export function sampleSize(unchanged: number, percent: number): number {
  if (percent <= 0 || unchanged <= 0) return 0;
  if (percent >= 100) return unchanged;
  return Math.min(unchanged, Math.ceil((percent * unchanged) / 100));
}

/**
 * Exactly sampleSize(blocks of `ranges`, percent) distinct blocks of
 * `ranges`, each subset of that size equally likely (selection sampling: one
 * draw of `random` a block, in ascending order, stopping once the sample is
 * full), so the sample spreads over the whole disk. Returned as ascending
 * block ranges.
 */
export function sampleBlocks(ranges: BlockRanges, percent: number, random: RandomSource = secureRandom()): BlockRanges {
  let remaining = blockRangesSize(ranges);
  let wanted = sampleSize(remaining, percent);
  if (wanted === remaining) return ranges.map(([from, to]): [number, number] => [from, to]);
  const sample: BlockRanges = [];
  for (const [from, to] of ranges) {
    for (let block = from; block < to && wanted > 0; block += 1) {
      // Taken with the chance (still wanted) / (still to come): exactly `wanted` in the end.
      if (random() * remaining < wanted) {
        addBlockRange(sample, block, block + 1);
        wanted -= 1;
      }
      remaining -= 1;
    }
    if (wanted === 0) break;
  }
  return sample;
}

/**
 * Uniform numbers in [0, 1) from the operating system's cryptographic
 * generator, drawn 4096 at a time: a user cannot predict which blocks a
 * sample will check.
 */
export function secureRandom(): RandomSource {
  const words = new Uint32Array(4096);
  let next = words.length;
  return () => {
    if (next === words.length) {
      randomFillSync(words);
      next = 0;
    }
    return words[next++]! / 2 ** 32;
  };
}

/**
 * Reads a random sample of the blocks the tracker calls unchanged (see
 * sampleBlocks; all of them at 100) and compares each with the base map (a
 * block the map lacks is zeros). Any difference throws TRACKER_UNTRUSTED
 * naming the first blocks and the sample's size; nothing has been started
 * then. `onSampled` hears the sample's size before it is read. Returns how
 * many blocks were compared: the sample's size.
 */
export async function verifyUnchanged(
  deps: { index: Pick<IndexPorts, 'maps'>; hashPool: HashPool; slabs: SlabPool; random?: RandomSource },
  source: BlockSource,
  base: string,
  tracked: BlockRanges,
  percent: number,
  description: string,
  options: { signal?: AbortSignal; onSampled?: (blocks: number) => void },
): Promise<number> {
  const unchanged = complementBlockRanges(tracked, blockCountFor(source.sizeBytes));
  const sample = sampleBlocks(unchanged, percent, deps.random);
  const sampled = blockRangesSize(sample);
  options.onSampled?.(sampled);
  if (sampled === 0) return 0;
  const { signal } = options;
  const map = new BlockMapCursor(deps.index, base, undefined, sample);
  const differing: number[] = [];
  let compared = 0;
  for await (const slab of scanSource(source, deps.slabs, deps.hashPool, { ranges: sample, keepBytes: 'none', signal })) {
    try {
      throwIfAborted(signal);
      for (let i = 0; i < slab.blockCount; i += 1) {
        const expected = map.digestAt(slab.firstBlock + i) ?? ZERO_BLOCK_DIGEST;
        if (Buffer.compare(expected, digestAt(slab, i)) !== 0) differing.push(slab.firstBlock + i);
      }
      compared += slab.blockCount;
    } finally {
      slab.slab.release();
    }
  }
  if (differing.length > 0) {
    const shown = differing.slice(0, 5).map((block) => `${block} (byte ${block * BLOCK_SIZE})`);
    const unchangedCount = blockRangesSize(unchanged);
    const drawn = percent >= 100 ? '' : ` (a random sample of ${compared} of the ${unchangedCount} blocks it calls unchanged: ${percent} %)`;
    throw new SnaplineError(
      ErrorCodes.TRACKER_UNTRUSTED,
      `${description} cannot be trusted: ${differing.length} of ${compared} blocks it calls unchanged differ from the parent ${base}${drawn}, such as block${differing.length === 1 ? '' : 's'} ${shown.join(', ')}; no snapshot was taken`,
      {
        hint: 'back up without the tracker (a full scan finds every change), then start a new checkpoint; look for writes the tracker missed (a disabled bitmap, a bitmap cleared early, a crash)',
        details: { option: 'verifyUnchangedPercent', blocksUnchanged: unchangedCount, blocksCompared: compared, blocksDiffering: differing.length, firstBlocks: differing.slice(0, 20) },
      },
    );
  }
  return compared;
}
