import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { VolumeManager } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../../errors.js';
import type { DrillKind, DrillRecord, IndexPorts } from '../../core/index-ports.js';
import { restore, type RestoreDeps } from '../restore/restore.js';
import { verify } from '../restore/verify.js';
import { restoreToVolume, type VolumeRestoreOptions } from './restore-volume.js';
import type { PollOptions } from './wait.js';

export interface DrillDeps extends Omit<RestoreDeps, 'index'> {
  index: RestoreDeps['index'] & Pick<IndexPorts, 'drills'>;
  volumes: VolumeManager;
}

/** The volume settings of a drill onto an EBS volume (as `restore --to-volume` takes them, without attaching). */
export type DrillVolumeSettings = Pick<VolumeRestoreOptions, 'availabilityZone' | 'volumeType' | 'sizeGiB' | 'iops' | 'throughput' | 'encrypted' | 'kmsKeyId' | 'tags'>;

export interface DrillOptions {
  /** The volume (its name in the index) whose recovery is proven. */
  volume: string;
  /** Default: the volume's newest completed snapshot. */
  snapshotId?: string;
  /** Also restore to this file (it must not exist), compare it, and remove it. */
  toFile?: string;
  /** Also make an EBS volume from the snapshot, check it, and delete it. */
  toVolume?: DrillVolumeSettings;
  /** Blocks read at once. */
  window?: number;
  poll?: PollOptions;
  signal?: AbortSignal;
  onStep?: (step: DrillStepName) => void;
}

export type DrillStepName = 'read' | 'restore-file' | 'create-volume' | 'clean-up';

export interface DrillStep {
  step: DrillStepName;
  durationMs: number;
  outcome: string;
}

export interface DrillResult {
  volume: string;
  snapshotId: string;
  kind: DrillKind;
  passed: boolean;
  /** How long the recovery took: the read alone, the restore to the file, or the volume made until available. */
  recoveryMs: number;
  blocksRead: number;
  /** Blocks that did not match their checksum, the index's digest, or the restored file. */
  mismatchedBlocks: number;
  /** Why it failed; null when it passed. */
  message: string | null;
  /** The volume made (and deleted) with toVolume. */
  volumeId: string | null;
  steps: DrillStep[];
  /** The drill as the index recorded it. */
  recordId: number;
}

/**
 * Proves that a snapshot of `volume` can be recovered, and measures it:
 * reads every block through GetSnapshotBlock and checks it against its
 * checksum and the index's digest; with `toFile`, restores it to a new file
 * and compares the file with the index's digests; with `toVolume`, makes an
 * EBS volume from it and checks that it becomes available with the right
 * size and source. What the drill made is removed afterwards, on failure
 * and abort too. The outcome is recorded in the index (not when
 * interrupted). Resolves with passed false when a block does not match;
 * rejects (after recording the failed drill) when a step cannot be carried
 * out, and (after recording what was proven) when what it made cannot be
 * removed, naming it (details.leftBehind): a volume left is billed.
 */
export async function drill(deps: DrillDeps, options: DrillOptions): Promise<DrillResult> {
  const snapshotId = snapshotToDrill(deps, options);
  if (options.toFile !== undefined && existsSync(options.toFile)) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `toFile ${options.toFile} exists: a drill restores to a new file and removes it afterwards`, {
      details: { option: 'toFile' },
    });
  }
  const kind: DrillKind = options.toVolume !== undefined ? 'volume' : options.toFile !== undefined ? 'file' : 'read';
  // One volume drill of a volume at a time: a drill volume of it found meanwhile is one an earlier drill left (killed).
  const lock = kind === 'volume' ? deps.index.locks.acquire(`drill:${options.volume}`) : undefined;
  try {
    return await drillHeld(deps, options, snapshotId, kind);
  } finally {
    lock?.release();
  }
}

async function drillHeld(deps: DrillDeps, options: DrillOptions, snapshotId: string, kind: DrillKind): Promise<DrillResult> {
  const startedAt = new Date();
  const steps: DrillStep[] = [];
  const timed = async <T>(step: DrillStepName, work: () => Promise<T>, outcome: (value: T) => string): Promise<T> => {
    options.onStep?.(step);
    const at = Date.now();
    const value = await work();
    steps.push({ step, durationMs: Date.now() - at, outcome: outcome(value) });
    return value;
  };
  const outcome = { passed: true, blocksRead: 0, mismatchedBlocks: 0, message: null as string | null, recoveryMs: 0, volumeId: null as string | null };
  const fail = (mismatched: number, message: string) => {
    outcome.passed = false;
    outcome.mismatchedBlocks += mismatched;
    outcome.message ??= message;
  };
  let createdFile = false;
  let failure: unknown;
  let cleaned: CleanUp = { removed: [], left: [] };
  try {
    await timed(
      'read',
      async () => {
        try {
          const checked = await verify(deps, { snapshotId, remote: true, ...(options.window === undefined ? {} : { window: options.window }), ...signalOf(options) });
          outcome.blocksRead = checked.blocksRead;
          outcome.recoveryMs = checked.durationMs;
          if (checked.indexMismatches > 0) fail(checked.indexMismatches, `${checked.indexMismatches} blocks of ${snapshotId} differ from the index's digests`);
        } catch (err) {
          if (!isSnaplineError(err, ErrorCodes.CHECKSUM_MISMATCH)) throw err;
          fail(1, err.message);
        }
        return outcome.passed;
      },
      (ok) => (ok ? `${outcome.blocksRead} blocks, each matching its checksum and the index` : 'MISMATCH'),
    );
    if (outcome.passed && options.toFile !== undefined) {
      const target = options.toFile;
      const restored = await timed(
        'restore-file',
        () => {
          createdFile = true;
          return restore(deps, { snapshotId, target, verify: true, ...(options.window === undefined ? {} : { window: options.window }), ...signalOf(options) });
        },
        (r) => (r.verified ? `${target} equals the index's digests` : `${target} DIFFERS`),
      );
      outcome.recoveryMs = restored.durationMs;
      if (restored.verified !== true) fail(1, `the file restored from ${snapshotId} differs from the index's digests`);
    }
    if (outcome.passed && options.toVolume !== undefined) {
      const made = await timed(
        'create-volume',
        () =>
          restoreToVolume(deps, {
            ...options.toVolume!,
            snapshotId,
            tags: { ...options.toVolume!.tags, [DRILL_TAG]: startedAt.toISOString(), [DRILL_OF_TAG]: options.volume },
            ...(options.poll === undefined ? {} : { poll: options.poll }),
            ...signalOf(options),
          }),
        (v) => `${v.volumeId} ${v.state}, ${v.sizeGiB} GiB from ${snapshotId}`,
      );
      outcome.volumeId = made.volumeId;
      outcome.recoveryMs = made.steps.find((s) => s.step === 'create-volume')?.durationMs ?? made.durationMs;
      const seen = await deps.volumes.describeVolume(made.volumeId);
      const expectedGiB = options.toVolume.sizeGiB ?? deps.index.lineage.getSnapshot(snapshotId)!.volumeSizeGiB;
      if (seen?.state !== 'available' || seen.snapshotId !== snapshotId || seen.sizeGiB !== expectedGiB) {
        fail(0, `volume ${made.volumeId} is ${seen?.state ?? 'gone'}, ${seen?.sizeGiB ?? '?'} GiB from ${seen?.snapshotId ?? 'nothing'}; expected available, ${expectedGiB} GiB from ${snapshotId}`);
      }
    }
  } catch (err) {
    failure = err;
    // A volume made and kept by a failed step is the drill's to remove.
    if (isSnaplineError(err) && typeof err.details?.volumeId === 'string') outcome.volumeId = err.details.volumeId;
  } finally {
    cleaned = await timed('clean-up', () => cleanUp(deps, createdFile ? options.toFile : undefined, outcome.volumeId, kind === 'volume' ? options.volume : undefined), describeCleanUp);
  }
  if (isSnaplineError(failure, ErrorCodes.INTERRUPTED)) throw withLeftBehind(failure, cleaned.left);
  if (failure !== undefined) fail(0, failure instanceof Error ? failure.message : String(failure));
  const record = deps.index.drills.record({
    volume: options.volume,
    snapshotId,
    kind,
    startedAt,
    finishedAt: new Date(),
    passed: outcome.passed,
    recoveryMs: outcome.recoveryMs,
    blocksRead: outcome.blocksRead,
    mismatchedBlocks: outcome.mismatchedBlocks,
    message: outcome.message,
  });
  if (failure !== undefined) throw withLeftBehind(failure, cleaned.left);
  // What the drill made and could not remove goes on costing: the run fails and names it (the record keeps what was proven).
  if (cleaned.left.length > 0) {
    throw withLeftBehind(
      new SnaplineError(codeOf(cleaned.left[0]!.error), `drill of ${options.volume} on ${snapshotId} ${outcome.passed ? 'passed' : 'FAILED'}`),
      cleaned.left,
    );
  }
  return { volume: options.volume, snapshotId, kind, ...outcome, steps, recordId: record.id };
}

/** What the clean-up removed, and what it could not (with why). */
interface CleanUp {
  removed: string[];
  left: Array<{ what: string; error: unknown }>;
}

function describeCleanUp(cleaned: CleanUp): string {
  const parts = [
    ...(cleaned.removed.length === 0 ? [] : [`removed ${cleaned.removed.join(', ')}`]),
    ...cleaned.left.map(({ what, error }) => `COULD NOT REMOVE ${what}: ${error instanceof Error ? error.message : String(error)}`),
  ];
  return parts.length === 0 ? 'nothing to remove' : parts.join('; ');
}

/** The code of a clean-up's failure: EC2's (access denied, unreachable...), else IO_FAILED (the file). */
function codeOf(error: unknown): SnaplineError['code'] {
  return error instanceof SnaplineError ? error.code : ErrorCodes.IO_FAILED;
}

/** `err` (as a SnaplineError) saying what the drill left behind, in its message and as details.leftBehind; `err` itself when nothing was. */
function withLeftBehind(err: unknown, left: CleanUp['left']): unknown {
  if (left.length === 0) return err;
  const cause = toSnaplineError(err);
  const volume = left.find(({ what }) => what.startsWith('vol-'));
  const named = left.map(({ what, error }) => `${what} (${error instanceof Error ? error.message : String(error)})`).join(', ');
  return new SnaplineError(cause.code, `${cause.message}; the drill could not remove what it made, which stays until deleted: ${named}`, {
    cause: err,
    retryable: cause.retryable,
    hint: volume === undefined ? cause.hint : `aws ec2 delete-volume --volume-id ${volume.what} deletes it: the volume is billed while it exists`,
    details: { ...cause.details, leftBehind: left.map(({ what }) => what) },
  });
}

/** The last drill of each volume the index records, by volume name. */
export function lastDrills(deps: { index: Pick<IndexPorts, 'drills'> }): DrillRecord[] {
  return deps.index.drills.lastPerVolume();
}

/** The snapshot to drill: the one given (it must be of the volume), else the volume's newest completed one. */
function snapshotToDrill(deps: DrillDeps, options: DrillOptions): string {
  if (options.snapshotId !== undefined) {
    const known = deps.index.lineage.getSnapshot(options.snapshotId);
    if (known === undefined || known.state !== 'completed') {
      throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index has no completed snapshot ${options.snapshotId} to check the blocks against`, {
        hint: `\`snapline index rebuild ${options.snapshotId}\` learns its block map`,
        details: { option: 'snapshotId' },
      });
    }
    if (known.volume !== options.volume) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${options.snapshotId} is of volume ${known.volume}, not ${options.volume}`, { details: { option: 'snapshotId' } });
    }
    return options.snapshotId;
  }
  const newest = deps.index
    .lineage.listSnapshots(options.volume)
    .filter((s) => s.volume === options.volume && s.state === 'completed')
    .at(-1);
  if (newest === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `the index has no completed snapshot of volume ${options.volume}`, { details: { option: 'volume' } });
  return newest.snapshotId;
}

/**
 * Removes the drill's file and volume, and with `drilled` (a volume drill,
 * its lock held) the volumes that earlier drills of that volume made and did
 * not live to remove (killed). Never throws: what it could not remove is
 * returned with why; a failed look for earlier volumes is left to the next drill.
 */
async function cleanUp(deps: DrillDeps, file: string | undefined, volumeId: string | null, drilled: string | undefined): Promise<CleanUp> {
  const cleaned: CleanUp = { removed: [], left: [] };
  const remove = (what: string, work: () => Promise<unknown>, note = '') =>
    work().then(
      () => cleaned.removed.push(`${what}${note}`),
      (error: unknown) => cleaned.left.push({ what, error }),
    );
  if (file !== undefined) await remove(file, () => rm(file, { force: true }));
  if (volumeId !== null) await remove(volumeId, () => deps.volumes.deleteVolume(volumeId));
  if (drilled !== undefined) {
    const earlier = await deps.volumes.taggedVolumes({ [DRILL_OF_TAG]: drilled, [DRILL_TAG]: '*' }).catch(() => []);
    for (const volume of earlier.filter((v) => v.volumeId !== volumeId && LEFT_STATES.has(v.state))) {
      await remove(volume.volumeId, () => deps.volumes.deleteVolume(volume.volumeId), ' (left by an earlier drill)');
    }
  }
  return cleaned;
}

/** The tags of a drill's volume: when the drill started, and the volume (lineage) drilled. */
const DRILL_TAG = 'snapline:drill';
const DRILL_OF_TAG = 'snapline:drill-of';
/** States of a drill volume an earlier drill left that can be deleted (never one in use). */
const LEFT_STATES: ReadonlySet<string> = new Set(['creating', 'available', 'error']);

function signalOf(options: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return options.signal === undefined ? {} : { signal: options.signal };
}
