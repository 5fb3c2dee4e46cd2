import type { SnapshotCatalog } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { IndexPorts, SnapshotRecord } from '../../core/index-ports.js';

export interface PruneOptions {
  olderThanDays: number;
  /** Keep at least this many newest completed snapshots per volume. */
  keepLast?: number;
  volume?: string;
  dryRun?: boolean;
  now?: Date;
}

export interface PruneResult {
  dryRun: boolean;
  deleted: Array<{ volume: string; snapshotId: string; ageDays: number }>;
  /** Volumes skipped because a backup of them was running. */
  busyVolumes: string[];
}

/**
 * Deletes completed snapshots older than the cut-off (EC2 DeleteSnapshot) and
 * records the deletions in the index. Never deletes a volume's newest
 * completed snapshot, one of its `keepLast` newest, or one a pending run
 * builds on. A volume with a backup running is skipped (its lock is held).
 */
export async function prune(deps: { index: Pick<IndexPorts, 'lineage' | 'locks' | 'runs'>; catalog: SnapshotCatalog }, options: PruneOptions): Promise<PruneResult> {
  if (!Number.isFinite(options.olderThanDays) || options.olderThanDays < 0) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--older-than-days must be 0 or more, got ${options.olderThanDays}`);
  }
  const keepLast = Math.max(1, options.keepLast ?? 1);
  const cutoff = (options.now ?? new Date()).getTime() - options.olderThanDays * 86_400_000;
  const volumes = options.volume ? [options.volume] : deps.index.lineage.listVolumes().map((v) => v.name);
  const result: PruneResult = { dryRun: Boolean(options.dryRun), deleted: [], busyVolumes: [] };

  for (const volume of volumes) {
    let lock: { release(): void } | undefined;
    if (!options.dryRun) {
      try {
        lock = deps.index.locks.acquire(`volume:${volume}`);
      } catch (err) {
        if (!isSnaplineError(err, ErrorCodes.CONFLICT)) throw err;
        result.busyVolumes.push(volume);
        continue;
      }
    }
    try {
      for (const snapshot of candidates(deps.index, volume, keepLast, cutoff)) {
        const ageDays = Math.floor(((options.now ?? new Date()).getTime() - snapshot.startedAt.getTime()) / 86_400_000);
        if (!options.dryRun) {
          await deps.catalog.deleteSnapshot(snapshot.snapshotId);
          deps.index.lineage.markDeleted(snapshot.snapshotId);
        }
        result.deleted.push({ volume, snapshotId: snapshot.snapshotId, ageDays });
      }
    } finally {
      lock?.release();
    }
  }
  return result;
}

function candidates(index: Pick<IndexPorts, 'lineage' | 'runs'>, volume: string, keepLast: number, cutoff: number): SnapshotRecord[] {
  const all = index.lineage.listSnapshots(volume);
  const completed = all.filter((s) => s.state === 'completed');
  const kept = new Set(completed.slice(-keepLast).map((s) => s.snapshotId));
  const pending = index.runs.pendingRun(volume);
  if (pending?.parentSnapshotId) kept.add(pending.parentSnapshotId);
  if (pending?.baseSnapshotId) kept.add(pending.baseSnapshotId);
  return completed.filter((s) => !kept.has(s.snapshotId) && s.startedAt.getTime() < cutoff);
}
