import { BLOCK_SIZE } from '../../core/constants.js';
import type { RunEntry, RunLog } from '../../core/run-log.js';
import type { ArchiveRecord, CopyRecord, IndexPorts, SnapshotRecord } from '../../core/index-ports.js';
import { ErrorCodes } from '../../errors.js';

/** The last restore drill of a volume, as the drill records give it. */
export interface DrillSummary {
  at: string;
  result: 'success' | 'failure';
  snapshotId: string | null;
  errorCode: string | null;
}

/** What status reads: the block index alone (no request is made). */
export type StatusIndex = Pick<IndexPorts, 'lineage' | 'archives' | 'copies' | 'maps' | 'drills'> & { history: Pick<RunLog, 'listRuns'> };

export interface StatusOptions {
  volume?: string;
  /** How often a good snapshot is expected (ms); a volume whose newest is older is late. */
  expectEveryMs?: number;
  now?: Date;
}

export interface LastBackup {
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  result: 'success' | 'failure';
  /** The SnaplineError code of a failed run. */
  errorCode: string | null;
  snapshotId: string | null;
  changedBytes: number;
  /** null when only the snapshot is known (a backup from before runs were recorded). */
  uploadedBytes: number | null;
  /** 'runs': the run history; 'snapshot': the snapshot's own times, for a backup from before the history. */
  from: 'runs' | 'snapshot';
}

export interface VolumeStatus {
  volume: string;
  /** 'late' and 'failing' can both hold; 'failing' is said first. */
  health: 'ok' | 'late' | 'failing' | 'late, failing';
  late: boolean;
  /** The last backup run failed. */
  failing: boolean;
  lastBackup: LastBackup | null;
  newestGoodSnapshot: { snapshotId: string; completedAt: string; ageSeconds: number } | null;
  expectEverySeconds: number | null;
  /** Completed snapshots the index holds for the volume. */
  snapshotCount: number;
  lastArchive: { archiveId: string; snapshotId: string; target: string; location: string; completedAt: string | null; sizeBytes: number } | null;
  /** null until restore drills are recorded. */
  lastDrill: DrillSummary | null;
  /** The newest completed copy in another Region or account (`snapline copy`); null without one. */
  lastCopy: { copySnapshotId: string; sourceSnapshotId: string; region: string; connection: string | null; completedAt: string } | null;
  /**
   * An estimate of the snapshot storage the lineage holds on EBS: the blocks
   * each completed snapshot adds (all its blocks for the first, those changed
   * since its nearest completed ancestor for the others), times 512 KiB,
   * counted from the index: the blocks the run wrote, or where the maps
   * differ when the parent is gone (blocks only the ancestor holds count
   * too, so this can be higher). EBS bills its own measure, which this does
   * not read.
   */
  ebsSpace: { estimatedBytes: number; blocks: number; estimate: true } | null;
}

export interface StatusResult {
  generatedAt: string;
  volumes: VolumeStatus[];
  /** True when a volume is late or failing (the CLI's exit code 1). */
  attention: boolean;
}

/** Per volume: the last backup, the age of the newest good snapshot against `expectEveryMs`, the last archive and drill, the space held. */
export function volumeStatus(index: StatusIndex, options: StatusOptions = {}): StatusResult {
  const now = (options.now ?? new Date()).getTime();
  const runs = index.history.listRuns(options.volume === undefined ? {} : { volume: options.volume });
  const indexed = new Set(index.lineage.listVolumes().map((v) => v.name));
  const names = new Set(indexed);
  // A volume whose first backup failed has runs and no snapshots.
  for (const run of runs) if (run.volume !== null && run.operation === 'backup') names.add(run.volume);
  const volumes = [...names].filter((name) => options.volume === undefined || name === options.volume).sort();
  const archives = index.archives.list().filter((a) => a.state === 'archived');
  const drills = lastDrillsOf(index);
  const result = volumes.map((volume) => {
    const snapshots = indexed.has(volume) ? index.lineage.listSnapshots(volume) : [];
    return statusOf(index, drills, volume, indexed.has(volume), snapshots, runs, archives, options.expectEveryMs, now);
  });
  return { generatedAt: new Date(now).toISOString(), volumes: result, attention: result.some((v) => v.late || v.failing) };
}

function statusOf(
  index: StatusIndex,
  drills: Map<string, DrillSummary>,
  volume: string,
  indexed: boolean,
  snapshots: SnapshotRecord[],
  runs: RunEntry[],
  archives: ArchiveRecord[],
  expectEveryMs: number | undefined,
  now: number,
): VolumeStatus {
  const completed = snapshots.filter((s) => s.state === 'completed' && s.completedAt !== null);
  const newest = completed.reduce<SnapshotRecord | undefined>((a, s) => (a === undefined || s.completedAt! > a.completedAt! ? s : a), undefined);
  const lastBackup = lastBackupOf(runs.filter((r) => r.volume === volume && r.operation === 'backup'), newest);
  const ageMs = newest === undefined ? undefined : now - newest.completedAt!.getTime();
  const late = expectEveryMs !== undefined && (ageMs === undefined || ageMs > expectEveryMs);
  const failing = lastBackup?.result === 'failure';
  const archive = archives
    .filter((a) => a.volume === volume)
    .reduce<ArchiveRecord | undefined>((a, b) => (a === undefined || (b.completedAt ?? b.createdAt) > (a.completedAt ?? a.createdAt) ? b : a), undefined);
  return {
    volume,
    health: failing && late ? 'late, failing' : failing ? 'failing' : late ? 'late' : 'ok',
    late,
    failing,
    lastBackup,
    newestGoodSnapshot: newest === undefined ? null : { snapshotId: newest.snapshotId, completedAt: newest.completedAt!.toISOString(), ageSeconds: Math.floor(ageMs! / 1000) },
    expectEverySeconds: expectEveryMs === undefined ? null : Math.round(expectEveryMs / 1000),
    snapshotCount: completed.length,
    lastArchive:
      archive === undefined
        ? null
        : {
            archiveId: archive.archiveId,
            snapshotId: archive.snapshotId,
            target: archive.target,
            location: archive.location,
            completedAt: archive.completedAt?.toISOString() ?? null,
            sizeBytes: archive.sizeBytes,
          },
    lastDrill: drills.get(volume) ?? null,
    lastCopy: lastCopyOf(indexed ? index.copies.list(volume) : []),
    ebsSpace: snapshots.length === 0 ? null : spaceOf(index.maps, snapshots),
  };
}

/** The last drill of each volume the index records, as status shows it: a failed drill's code is CHECKSUM_MISMATCH when blocks did not match. */
function lastDrillsOf(index: Pick<IndexPorts, 'drills'>): Map<string, DrillSummary> {
  return new Map(
    index.drills.lastPerVolume().map((drill) => [
      drill.volume,
      {
        at: drill.finishedAt.toISOString(),
        result: drill.passed ? 'success' : 'failure',
        snapshotId: drill.snapshotId,
        errorCode: drill.passed ? null : drill.mismatchedBlocks > 0 ? ErrorCodes.CHECKSUM_MISMATCH : ErrorCodes.BAD_STATE,
      },
    ]),
  );
}

function lastCopyOf(copies: CopyRecord[]): VolumeStatus['lastCopy'] {
  const newest = copies
    .filter((c) => c.state === 'completed' && c.completedAt !== null)
    .reduce<CopyRecord | undefined>((a, c) => (a === undefined || c.completedAt! >= a.completedAt! ? c : a), undefined);
  if (newest === undefined) return null;
  const { copySnapshotId, sourceSnapshotId, region, connection } = newest;
  return { copySnapshotId, sourceSnapshotId, region, connection, completedAt: newest.completedAt!.toISOString() };
}

/** The newest backup run recorded; without one, what the newest completed snapshot says of its own backup. */
function lastBackupOf(backups: RunEntry[], newest: SnapshotRecord | undefined): LastBackup | null {
  const last = backups.at(-1);
  if (last !== undefined) {
    return {
      startedAt: last.startedAt.toISOString(),
      finishedAt: last.finishedAt.toISOString(),
      durationMs: last.finishedAt.getTime() - last.startedAt.getTime(),
      result: last.result,
      errorCode: last.errorCode,
      snapshotId: last.snapshotId,
      changedBytes: last.changedBytes,
      uploadedBytes: last.transferredBytes,
      from: 'runs',
    };
  }
  if (newest === undefined) return null;
  return {
    startedAt: newest.startedAt.toISOString(),
    finishedAt: newest.completedAt!.toISOString(),
    durationMs: newest.completedAt!.getTime() - newest.startedAt.getTime(),
    result: 'success',
    errorCode: null,
    snapshotId: newest.snapshotId,
    changedBytes: newest.changedBlocks * BLOCK_SIZE,
    uploadedBytes: null,
    from: 'snapshot',
  };
}

/**
 * See VolumeStatus.ebsSpace. The ancestor is found through the index's
 * parents, deleted snapshots included. A snapshot's own blocks are those its
 * run wrote (changedBlocks) when its parent is that ancestor (or it has
 * neither), else the blocks its map holds, or that differ from the
 * ancestor's map.
 */
function spaceOf(maps: Pick<IndexPorts['maps'], 'blockMap' | 'diffMaps'>, snapshots: SnapshotRecord[]): VolumeStatus['ebsSpace'] {
  const count = (entries: Iterable<unknown>) => {
    let n = 0;
    for (const _entry of entries) n++;
    return n;
  };
  const ownBlocks = (snapshot: SnapshotRecord, ancestor: SnapshotRecord | undefined) => {
    if (snapshot.parentSnapshotId === (ancestor?.snapshotId ?? null)) return snapshot.changedBlocks;
    return count(ancestor === undefined ? maps.blockMap(snapshot.snapshotId) : maps.diffMaps(ancestor.snapshotId, snapshot.snapshotId));
  };
  const byId = new Map(snapshots.map((s) => [s.snapshotId, s]));
  const live = (s: SnapshotRecord | undefined) => s !== undefined && s.state === 'completed';
  let blocks = 0;
  for (const snapshot of snapshots.filter(live)) {
    let ancestor = snapshot.parentSnapshotId === null ? undefined : byId.get(snapshot.parentSnapshotId);
    const seen = new Set<string>();
    while (ancestor !== undefined && !live(ancestor) && !seen.has(ancestor.snapshotId)) {
      seen.add(ancestor.snapshotId);
      ancestor = ancestor.parentSnapshotId === null ? undefined : byId.get(ancestor.parentSnapshotId);
    }
    blocks += ownBlocks(snapshot, ancestor !== undefined && live(ancestor) ? ancestor : undefined);
  }
  return { estimatedBytes: blocks * BLOCK_SIZE, blocks, estimate: true };
}
