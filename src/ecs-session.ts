/**
 * What the ECS restore commands run with: the driver's session (the usual
 * one plus ECS and CloudWatch Logs and the connection's ECS settings), and a
 * worker's, which has no index: a task in the cloud knows only the
 * snapshots it is told of.
 */
import { EcsContainerTasks } from './aws/ecs.js';
import { CloudWatchLogReader } from './aws/logs.js';
import type { ConnectionRequest, OpenConnection } from './config/connection.js';
import type { ArchiveStore, ArchiveTarget, SnapshotReader, SnapshotWriter } from './core/ports.js';
import type { EcsRestoreDeps, EcsSettings } from './engine/ecs/restore.js';
import type { HashPool } from './hashing/index.js';
import { openRemote, openSession, type SessionOptions } from './session.js';

/** The task definition and cluster used when the connection names none. */
export const DEFAULT_TASK_DEFINITION = 'snapline-worker';
export const DEFAULT_CLUSTER = 'default';

export interface EcsSession {
  deps: EcsRestoreDeps;
  close(): Promise<void>;
}

/** The driver's session: openSession's, with ECS and Logs adapters on its clients and the connection's ECS settings. */
export async function openEcsSession(options: SessionOptions): Promise<EcsSession> {
  const session = await openSession(options);
  try {
    return {
      deps: {
        index: session.index,
        writer: session.writer,
        catalog: session.catalog,
        tasks: new EcsContainerTasks(session.clients.ecs()),
        logs: new CloudWatchLogReader(session.clients.logs()),
        settings: ecsSettingsOf(session.connection),
        archives: session.archives,
        hashPool: session.hashPool,
      },
      close: () => session.close(),
    };
  } catch (err) {
    await session.close();
    throw err;
  }
}

/** The connection's ECS settings with their defaults. */
export function ecsSettingsOf(connection: Pick<OpenConnection, 'ecs' | 'settings'>): EcsSettings {
  const ecs = connection.ecs;
  return {
    cluster: ecs.cluster ?? DEFAULT_CLUSTER,
    taskDefinition: ecs.taskDefinition ?? DEFAULT_TASK_DEFINITION,
    ...(ecs.launchType === undefined ? {} : { launchType: ecs.launchType }),
    ...(ecs.capacityProviderStrategy === undefined ? {} : { capacityProviderStrategy: ecs.capacityProviderStrategy }),
    ...(ecs.subnets === undefined || ecs.subnets.length === 0
      ? {}
      : {
          network: {
            subnets: ecs.subnets,
            ...(ecs.securityGroups === undefined ? {} : { securityGroups: ecs.securityGroups }),
            ...(ecs.assignPublicIp === undefined ? {} : { assignPublicIp: ecs.assignPublicIp }),
          },
        }),
    ...(ecs.logGroup === undefined ? {} : { logGroup: ecs.logGroup }),
    ...(ecs.logStreamPrefix === undefined ? {} : { logStreamPrefix: ecs.logStreamPrefix }),
    region: connection.settings.region,
    ...(connection.settings.forcePathStyle ? { s3PathStyle: true } : {}),
  };
}

export interface WorkerSessionOptions extends ConnectionRequest {
  concurrency?: number;
  /** Snapshots started by someone else just now: "not found" from them is retried for a while (see resilientWriter). */
  newSnapshotIds: string[];
  signal?: AbortSignal;
  /** The archive store a worker reads (S3 bucket or Glacier vault). */
  archive?: { target: ArchiveTarget; location: string; s3PathStyle?: boolean };
}

export interface WorkerSession {
  reader: SnapshotReader;
  writer: SnapshotWriter;
  hashPool: HashPool;
  /** The archive store asked for, if any. */
  store?: ArchiveStore;
  close(): Promise<void>;
}

/**
 * A worker's session: openRemote's EBS reads (checked on the hash pool) and
 * writes with retries and one limiter each, its hash pool, and the archive
 * store asked for; no index. The store gets no extra request headers
 * (archive attributes such as SSE-C keys stay on the driver's machine).
 */
export async function openWorkerSession(options: WorkerSessionOptions): Promise<WorkerSession> {
  const { archive, ...remoteOptions } = options;
  const remote = await openRemote({ ...remoteOptions, ...(archive?.s3PathStyle ? { s3PathStyle: true } : {}) });
  return {
    reader: remote.reader,
    writer: remote.writer,
    hashPool: remote.hashPool,
    ...(archive === undefined ? {} : { store: remote.archiveStore(archive.target, archive.location) }),
    close: () => remote.close(),
  };
}
