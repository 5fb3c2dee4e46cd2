/**
 * snapline as a library: the same operations as the CLI, typed. Each call
 * opens what it needs (connection, index, worker pool) and closes it again.
 * Errors are SnaplineError; an error about one option names it (as in the
 * options here) in its message and in `details.option`.
 *
 *   import { backup } from 'snapline';
 *   const result = await backup({ source: '/dev/sdb', volume: 'db1', connection: 'local' });
 */
import { existsSync } from 'node:fs';
import { openEcsSession } from './ecs-session.js';
import { createArchive, type ArchiveCreateOptions, type ArchiveCreateResult } from './engine/archive/archive.js';
import {
  archiveInventory as archiveInventoryWith,
  archiveStatus as archiveStatusWith,
  deleteArchive,
  pruneArchives,
  restoreArchive,
  type ArchiveDeleteOptions,
  type ArchiveDeleteResult,
  type ArchivePruneOptions,
  type ArchivePruneResult,
  type ArchiveRestoreOptions,
  type ArchiveRestoreResult,
  type ArchiveStatusEntry,
  type ArchiveStatusOptions,
  type InventoryOptions,
  type InventoryResult,
} from './engine/archive/jobs.js';
import { rehydrate as rehydrateWith, type RehydrateOptions, type RehydrateResult } from './engine/archive/rehydrate.js';
import { backup as backupWith, type BackupOptions, type BackupResult } from './engine/backup/backup.js';
import { runBench, type BenchOptions, type BenchResult } from './engine/bench/bench.js';
import { ecsRestore as ecsRestoreWith, ecsStatus as ecsStatusWith, type EcsJobReport, type EcsRestoreOptions } from './engine/ecs/restore.js';
import { copySnapshot, type CopyOptions, type CopyResult } from './engine/dr/copy.js';
import { drill as drillWith, type DrillOptions, type DrillResult } from './engine/dr/drill.js';
import { restoreToVolume as restoreToVolumeWith, type VolumeRestoreOptions, type VolumeRestoreResult } from './engine/dr/restore-volume.js';
import { diff as diffWith, type DiffResult } from './engine/lineage/diff.js';
import { prune as pruneWith, type PruneOptions, type PruneResult } from './engine/lineage/prune.js';
import { rebuildIndex as rebuildIndexWith, type RebuildOptions, type RebuildResult } from './engine/lineage/rebuild.js';
import { listSnapshots, type SnapshotListOptions, type SnapshotRow } from './engine/lineage/snapshots.js';
import { restore as restoreWith, type RestoreOptions, type RestoreResult } from './engine/restore/restore.js';
import { prometheusText } from './engine/ops/metrics.js';
import { indexReport, reportHtml } from './engine/ops/report.js';
import { volumeStatus, type StatusOptions, type StatusResult } from './engine/ops/status.js';
import { installSchedule, listSchedules, removeSchedule, type InstallResult, type ScheduleEntry } from './engine/schedule/install.js';
import type { ScheduledBackup } from './engine/schedule/units.js';
import { verify as verifyWith, type VerifyOptions, type VerifyResult } from './engine/restore/verify.js';
import { defaultIndexPath } from './config/paths.js';
import { BlockIndex } from './index/index.js';
import { scheduleEnvironment, scheduledSource, scheduleHost, snaplineScript } from './schedule-host.js';
import { copyDestinations, openCopyDestination, withRemote, withSession, type RemoteOptions, type SessionOptions } from './session.js';

export type { BackupOptions, BackupProgress, BackupResult } from './engine/backup/backup.js';
export type { ChangeTrackingResult } from './engine/backup/tracking.js';
export type { RestoreOptions, RestoreProgress, RestoreResult, IncrementalReport } from './engine/restore/restore.js';
export type { VerifyOptions, VerifyProgress, VerifyResult, BlockRange } from './engine/restore/verify.js';
export type { DiffResult } from './engine/lineage/diff.js';
export type { SnapshotListOptions, SnapshotRow } from './engine/lineage/snapshots.js';
export type { PruneOptions, PruneResult, PrunedSnapshot, PrunedVolume } from './engine/lineage/prune.js';
export type { CalendarDuration, KeepCount, RetentionPolicy, TagList } from './engine/lineage/retention.js';
export type { CopyOptions, CopyProgress, CopyResult, DeletedCopy } from './engine/dr/copy.js';
export type { VolumeRestoreOptions, VolumeRestoreResult, VolumeStep, VolumeStepName } from './engine/dr/restore-volume.js';
export type { DrillOptions, DrillResult, DrillStep, DrillStepName, DrillVolumeSettings } from './engine/dr/drill.js';
export type { DrillSummary, LastBackup, StatusOptions, StatusResult, VolumeStatus } from './engine/ops/status.js';
export type { InstallResult, ScheduleEntry } from './engine/schedule/install.js';
export type { ScheduledBackup, ScheduleUnits } from './engine/schedule/units.js';
export type { RebuildOptions, RebuildResult } from './engine/lineage/rebuild.js';
export type { ArchiveCreateOptions, ArchiveCreateResult, ArchiveProgress } from './engine/archive/archive.js';
export type {
  ArchiveDeleteOptions,
  ArchiveDeleteResult,
  ArchivePruneOptions,
  ArchivePruneResult,
  ArchiveRestoreOptions,
  ArchiveRestoreResult,
  ArchiveStatusEntry,
  ArchiveStatusOptions,
  InventoryArchive,
  InventoryOptions,
  InventoryResult,
  ObjectRestore,
} from './engine/archive/jobs.js';
export type { ApplyProgress, RehydrateOptions, RehydrateResult } from './engine/archive/rehydrate.js';
export type { EcsJobReport, EcsRestoreOptions, EcsShardReport } from './engine/ecs/restore.js';
export type { BenchEvent, BenchOptions, BenchResult, LevelResult, Latency, Recommendation } from './engine/bench/bench.js';
export type { ArchiveTarget, RetrievalTier } from './core/ports.js';
export type { RemoteOptions, SessionOptions } from './session.js';
export { SnaplineError, ErrorCodes, type ErrorCode } from './errors.js';
export { startEmulator, type EmulatorOptions, type RunningEmulator } from './emulator/index.js';

/** Backs up one source to a new snapshot (see `snapline backup`). */
export function backup(options: BackupOptions & SessionOptions): Promise<BackupResult> {
  return withSession(options, (session) => backupWith(session, options));
}

/** Restores a snapshot onto a file or device (see `snapline restore`). */
export function restore(options: RestoreOptions & SessionOptions): Promise<RestoreResult> {
  return withSession(options, (session) => restoreWith(session, options));
}

/** Compares a source with a snapshot, or reads and checks the snapshot alone (see `snapline verify`). */
export function verify(options: VerifyOptions & SessionOptions): Promise<VerifyResult> {
  return withSession(options, (session) => verifyWith(session, options));
}

/** The blocks that differ between two snapshots (see `snapline diff`). */
export function diff(options: { first: string; second: string } & SessionOptions): Promise<DiffResult> {
  return withSession(options, (session) => diffWith(session, options.first, options.second));
}

/** The snapshots the index records, each with what EC2 says of it now (see `snapline snapshots`). */
export function snapshots(options: SnapshotListOptions & SessionOptions = {}): Promise<SnapshotRow[]> {
  return withSession(options, (session) => listSnapshots(session, options));
}

/**
 * Deletes the snapshots a retention policy does not keep, never a volume's
 * newest, and their copies in other Regions unless `keepCopies` (see
 * `snapline prune`).
 */
export function prune(options: PruneOptions & SessionOptions): Promise<PruneResult> {
  return withSession(options, async (session) => {
    const destinations = copyDestinations(session, pick(options, ['configPath', 'onWarning', 'signal']));
    try {
      return await pruneWith({ index: session.index, catalog: session.catalog, destinations }, options);
    } finally {
      await destinations.close();
    }
  });
}

/** Teaches the index a snapshot from its tags and blocks (see `snapline index rebuild`). */
export function rebuildIndex(options: RebuildOptions & SessionOptions): Promise<RebuildResult> {
  return withSession(options, (session) => rebuildIndexWith(session, options));
}

/**
 * The session options of an operation on an archive the index records: the
 * archive is found by its record, so no bucket or vault is given (and
 * `archive` names the archive).
 */
export type RecordedArchiveSessionOptions = Omit<SessionOptions, 'archive'>;

/** Archives a snapshot to S3 or Glacier (see `snapline archive create`); `archive` names the bucket or vault over the connection's. */
export function archive(options: ArchiveCreateOptions & SessionOptions): Promise<ArchiveCreateResult> {
  return withSession(options, (session) => createArchive(session, options));
}

/** Asks for an archive's objects to be made readable (see `snapline archive restore`). */
export function archiveRestore(options: ArchiveRestoreOptions & RecordedArchiveSessionOptions): Promise<ArchiveRestoreResult> {
  return withSession(withoutArchive(options), (session) => restoreArchive(session, options));
}

/** The archives and the readability of their objects, or of one archive, waiting with `wait` (see `snapline archive status`). */
export function archiveStatus(options: ArchiveStatusOptions & RecordedArchiveSessionOptions = {}): Promise<ArchiveStatusEntry[]> {
  return withSession(withoutArchive(options), (session) => archiveStatusWith(session, options));
}

/** What the bucket or vault holds, compared with the index (see `snapline archive inventory`). */
export function archiveInventory(options: InventoryOptions & SessionOptions = {}): Promise<InventoryResult> {
  return withSession(options, (session) => archiveInventoryWith(session, options));
}

/** Deletes an archive, its objects first (see `snapline archive delete`). */
export function archiveDelete(options: ArchiveDeleteOptions & RecordedArchiveSessionOptions): Promise<ArchiveDeleteResult> {
  return withSession(withoutArchive(options), (session) => deleteArchive(session, options));
}

/** Deletes old archives, never one a kept archive builds on (see `snapline archive prune`). */
export function archivePrune(options: ArchivePruneOptions & SessionOptions = {}): Promise<ArchivePruneResult> {
  return withSession(options, (session) => pruneArchives(session, options));
}

/** Brings an archive back as a new snapshot or onto an image (see `snapline rehydrate`). */
export function rehydrate(options: RehydrateOptions & RecordedArchiveSessionOptions): Promise<RehydrateResult> {
  return withSession(withoutArchive(options), (session) => rehydrateWith(session, options));
}

/** Restores a snapshot or an archive into a new snapshot with ECS tasks (see `snapline ecs restore`). */
export async function ecsRestore(options: EcsRestoreOptions & SessionOptions): Promise<EcsJobReport> {
  const session = await openEcsSession(options);
  try {
    return await ecsRestoreWith(session.deps, options);
  } finally {
    await session.close();
  }
}

/** Where an ECS restore job stands (see `snapline ecs status JOB`). */
export async function ecsStatus(options: { jobId: string } & SessionOptions): Promise<EcsJobReport> {
  const session = await openEcsSession(options);
  try {
    return await ecsStatusWith(session.deps, options.jobId);
  } finally {
    await session.close();
  }
}

/** Measures PutSnapshotBlock and GetSnapshotBlock at each level of requests in flight, on a scratch snapshot (see `snapline bench`). */
export function bench(options: BenchOptions & Omit<RemoteOptions, 'concurrency' | 'newSnapshotIds' | 's3PathStyle'>): Promise<BenchResult> {
  return withRemote({ ...options, concurrency: Math.max(1, ...options.levels) }, (remote) => runBench(remote, options));
}

/** Makes a new EBS volume from a snapshot, optionally with fast snapshot restore and attached to an instance (see `snapline restore --to-volume`). */
export function restoreToVolume(options: VolumeRestoreOptions & SessionOptions): Promise<VolumeRestoreResult> {
  return withSession(options, (session) => restoreToVolumeWith(session, options));
}

/** Proves a volume's snapshot can be recovered and measures how long it takes, recording the drill in the index (see `snapline drill`). */
export function drill(options: DrillOptions & SessionOptions): Promise<DrillResult> {
  return withSession(options, (session) => drillWith(session, options));
}

/** Where a copy goes: a Region, through this session's connection or through `toConnection` (another account). */
export interface CopyToOptions {
  toRegion: string;
  toConnection?: string;
}

/** Copies a snapshot into another Region (or account) and waits until the copy is completed (see `snapline copy`). */
export function copy(options: CopyOptions & CopyToOptions & SessionOptions): Promise<CopyResult> {
  return withSession(options, async (session) => {
    const destination = await openCopyDestination(session, {
      region: options.toRegion,
      ...pick(options, ['configPath', 'onWarning', 'signal']),
      ...(options.toConnection === undefined ? {} : { connection: options.toConnection }),
    });
    try {
      return await copySnapshot({ index: session.index, catalog: session.catalog, sourceRegion: session.connection.settings.region, destination }, options);
    } finally {
      await destination.close();
    }
  });
}

/**
 * Per volume: the last backup, the newest good snapshot's age against
 * `expectEveryMs`, the last archive, drill and copy, the space held on EBS
 * (see `snapline status`). Reads the index alone, as the command does.
 */
export async function status(options: StatusOptions & { indexPath?: string } = {}): Promise<StatusResult> {
  return readIndex(options.indexPath, (index) => volumeStatus(index, options)) ?? noVolumes(options);
}

/** One self-contained HTML page: the status table, charts of each volume's backups, its drills and its snapshot calendar (see `snapline report`, without its retention rules). Reads the index alone. */
export async function report(options: StatusOptions & { indexPath?: string } = {}): Promise<string> {
  return reportHtml(readIndex(options.indexPath, (index) => indexReport(index, options)) ?? { status: noVolumes(options), runs: [], snapshots: [] });
}

/** The recorded runs as Prometheus text exposition (see `--metrics-file`); reads the index alone, and an index not made yet has no runs. */
export async function metrics(options: { indexPath?: string } = {}): Promise<string> {
  return prometheusText(readIndex(options.indexPath, (index) => index.history.listRuns()) ?? []);
}

/** `read` of the index at `indexPath` (default: under the data directory) opened alone, no connection made; undefined when there is no index yet. */
function readIndex<T>(indexPath: string | undefined, read: (index: BlockIndex) => T): T | undefined {
  const path = indexPath ?? defaultIndexPath();
  if (!existsSync(path)) return undefined;
  const index = BlockIndex.open(path);
  try {
    return read(index);
  } finally {
    index.close();
  }
}

/** The status of an index not made yet. */
function noVolumes(options: StatusOptions): StatusResult {
  return { generatedAt: (options.now ?? new Date()).toISOString(), volumes: [], attention: false };
}

/** Where the units of scheduled backups are: the user's (`user`) or the system's, or `unitDir` (then systemctl is never run). */
export interface ScheduleHostOptions {
  user?: boolean;
  unitDir?: string;
}

/**
 * A scheduled backup's request: `source` is made absolute; `command` (the
 * program the unit runs, with the global options to repeat) defaults to
 * this node and snapline's script.
 */
export type ScheduleInstallOptions = Omit<ScheduledBackup, 'user' | 'command'> & Partial<Pick<ScheduledBackup, 'command'>> & ScheduleHostOptions;

/** Writes a systemd service and timer that back up `source` as `volume`, and enables the timer when systemd runs (see `snapline schedule install`). */
export function scheduleInstall(options: ScheduleInstallOptions): Promise<InstallResult> {
  const { user = false, unitDir, command, ...request } = options;
  return installSchedule(
    { ...request, source: scheduledSource(request.source), user, command: command ?? [process.execPath, snaplineScript()], environment: { ...scheduleEnvironment(user), ...request.environment } },
    scheduleHost(user, unitDir),
  );
}

/** The scheduled backups whose timers snapline wrote (see `snapline schedule list`). */
export function scheduleList(options: ScheduleHostOptions = {}): Promise<ScheduleEntry[]> {
  return listSchedules(scheduleHost(Boolean(options.user), options.unitDir).dir);
}

export type ScheduleRemoval = Awaited<ReturnType<typeof removeSchedule>>;

/** Stops and disables a volume's timer and deletes its units (see `snapline schedule remove`). */
export function scheduleRemove(options: { volume: string } & ScheduleHostOptions): Promise<ScheduleRemoval> {
  const user = Boolean(options.user);
  return removeSchedule(options.volume, user, scheduleHost(user, options.unitDir));
}

/** The `keys` of `options` that are set. */
function pick<T extends object, K extends keyof T>(options: T, keys: readonly K[]): Partial<Pick<T, K>> {
  const picked: Partial<Pick<T, K>> = {};
  for (const key of keys) if (options[key] !== undefined) picked[key] = options[key];
  return picked;
}

/** Session options without the operation's own `archive` (an archive id, not a place). */
function withoutArchive<T extends { archive?: unknown }>(options: T): Omit<T, 'archive'> {
  const { archive: _archive, ...rest } = options;
  return rest;
}
