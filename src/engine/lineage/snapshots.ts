import type { RemoteSnapshot, SnapshotCatalog } from '../../core/ports.js';
import type { IndexPorts, SnapshotRecord } from '../../core/index-ports.js';

export interface SnapshotListOptions {
  /** Only this volume's snapshots; default every volume's. */
  volume?: string;
  /** The time ages are counted to; default now. */
  now?: Date;
}

export interface SnapshotRow {
  volume: string;
  snapshotId: string;
  parentSnapshotId: string | null;
  /** What the index records. */
  indexState: SnapshotRecord['state'];
  /** What EC2 says now; 'missing' when it does not know the snapshot. */
  remoteState: RemoteSnapshot['state'] | 'missing';
  progress: string | null;
  volumeSizeGiB: number;
  sourceBytes: number;
  changedBlocks: number;
  tags: Record<string, string>;
  startedAt: string;
  completedAt: string | null;
  ageDays: number;
  /** Its copies in other Regions (or accounts), as the index records them; deleted ones left out. */
  copies: Array<{ copySnapshotId: string; region: string; connection: string | null; state: string }>;
}

/**
 * The snapshots the index records (oldest first), each reconciled with what
 * EC2 DescribeSnapshots says of it now. Snapshots deleted through snapline are
 * left out.
 */
export async function listSnapshots(
  deps: { index: Pick<IndexPorts, 'lineage' | 'copies'>; catalog: SnapshotCatalog },
  options: SnapshotListOptions = {},
): Promise<SnapshotRow[]> {
  const records = deps.index.lineage.listSnapshots(options.volume).filter((r) => r.state !== 'deleted');
  const remote = new Map<string, RemoteSnapshot>();
  for (let i = 0; i < records.length; i += 200) {
    const ids = records.slice(i, i + 200).map((r) => r.snapshotId);
    for (const snapshot of await deps.catalog.describeSnapshots(ids)) remote.set(snapshot.snapshotId, snapshot);
  }
  const now = (options.now ?? new Date()).getTime();
  return records.map((record) => {
    const live = remote.get(record.snapshotId);
    return {
      volume: record.volume,
      snapshotId: record.snapshotId,
      parentSnapshotId: record.parentSnapshotId,
      indexState: record.state,
      remoteState: live?.state ?? 'missing',
      progress: live?.progress ?? null,
      volumeSizeGiB: record.volumeSizeGiB,
      sourceBytes: record.sourceBytes,
      changedBlocks: record.changedBlocks,
      tags: live?.tags ?? {},
      startedAt: record.startedAt.toISOString(),
      completedAt: record.completedAt?.toISOString() ?? null,
      ageDays: Math.floor((now - record.startedAt.getTime()) / 86_400_000),
      copies: deps.index.copies
        .ofSnapshot(record.snapshotId)
        .map(({ copySnapshotId, region, connection, state }) => ({ copySnapshotId, region, connection, state })),
    };
  });
}
