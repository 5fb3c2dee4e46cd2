import { AwsClients } from './aws/clients.js';
import { Ec2SnapshotCatalog } from './aws/ec2.js';
import { Ec2SnapshotCopier } from './aws/ec2-copy.js';
import { Ec2VolumeManager } from './aws/volumes.js';
import { EbsSnapshotStore } from './aws/ebs.js';
import { GlacierArchiveStore } from './aws/glacier-archive.js';
import { S3ArchiveStore } from './aws/s3-archive.js';
import type { EndpointContact } from './aws/in-flight.js';
import { AdaptiveLimiter, resilientReader, resilientWriter, ThrottleWatch, type RetryClock } from './aws/retry.js';
import { openConnection, type ArchiveConfig, type ConnectionRequest, type LocalEndpointStarter, type OpenConnection } from './config/connection.js';
import { defaultIndexPath } from './config/paths.js';
import { identifyStore, type StoreUsed } from './config/store.js';
import { DEFAULT_CONCURRENCY, MAX_CONCURRENCY } from './core/constants.js';
import type { ArchiveStore, ArchiveTarget, CopyDestination, CopyDestinations, SnapshotCatalog, SnapshotReader, SnapshotWriter, VolumeManager } from './core/ports.js';
import { verifiedReader } from './core/verified-reader.js';
import type { ArchivePlaces } from './engine/archive/places.js';
import { ErrorCodes, SnaplineError } from './errors.js';
import { HashPool } from './hashing/index.js';
import { BlockIndex } from './index/index.js';
import { SlabPool } from './source/index.js';

/** Blocks per slab: 4 MiB sequential reads. */
const BLOCKS_PER_SLAB = 8;
/** Slabs kept for reading and hashing ahead of the uploads. */
const SLABS_AHEAD = 4;

export interface RemoteOptions extends ConnectionRequest {
  /** Requests in flight per direction (uploads, downloads). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Told of every retried call (for logs and progress). */
  onRetry?: (error: SnaplineError, attempt: number, operation: string) => void;
  /** Told before each retry of a throttled EBS call, with how long it has been throttled (for a progress line; see RemoteSession.throttling). */
  onThrottled?: (throttledForMs: number, operation: string) => void;
  /** How long one call (EBS, and the SDK clients' too) may go on being throttled before the run fails; default 10 minutes (see RetryPolicy.throttleBudgetMs). */
  throttleBudgetMs?: number;
  /** The clock the retries measure and wait on; default the system's. For tests: minutes of backoff on a clock of their own. */
  retryClock?: RetryClock;
  /** Snapshots started elsewhere just now: the writer retries "not found" from them for a while (see resilientWriter). */
  newSnapshotIds?: Iterable<string>;
  /** S3 path-style addressing whatever the connection says. */
  s3PathStyle?: boolean;
}

/**
 * The remote side of a run, without any local state: the connection and its
 * SDK clients, the EBS store, the EBS adapters wrapped with retries and one
 * adaptive limiter per direction, the EC2 catalog and a hash pool.
 */
export interface RemoteSession {
  connection: OpenConnection;
  clients: AwsClients;
  /** EBS direct calls as they are: one attempt each, no limiter, the block calls as direct signed requests. */
  store: EbsSnapshotStore;
  /** The store with retries, throttling response and the upload limiter. */
  writer: SnapshotWriter;
  /** The store with checksum verification (on the hash pool), retries and the download limiter. */
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  /** EC2 volumes, instances and fast snapshot restore (disaster recovery). */
  volumes: VolumeManager;
  uploadLimiter: AdaptiveLimiter;
  downloadLimiter: AdaptiveLimiter;
  /** How long the EBS calls of the session have been throttled, while they are. */
  throttling: ThrottleWatch;
  /** Its threads start on first use. */
  readonly hashPool: HashPool;
  /**
   * A new archive store of `target` (S3 bucket or Glacier vault) at
   * `location`, under the run's signal and endpoint contact like the other
   * stores; S3 requests that create objects carry `attributes` as headers.
   */
  archiveStore(target: ArchiveTarget, location: string, attributes?: Record<string, string>): ArchiveStore;
  /** Closes everything, each part even when another fails (the first error is thrown after); idempotent. */
  close(): Promise<void>;
}

export interface SessionOptions extends Omit<RemoteOptions, 'newSnapshotIds' | 's3PathStyle'> {
  /** Block index file; default under the data directory. */
  indexPath?: string;
  /** Told which store the session reaches, once it is known and before anything else is done. */
  onStore?: (store: StoreUsed) => void;
  /** Archive bucket and vault given on the command line, over the connection's. */
  archive?: { bucket?: string; vault?: string };
}

/**
 * Everything a command needs for one run, built once and closed together: the
 * remote side (openRemote), the index, the slabs and the archive tier.
 */
export interface Session extends RemoteSession {
  /** The index, bound to `storeUsed` when it is known (see BlockIndex.bindStore). */
  index: BlockIndex;
  /** The store (AWS account and Region, or local endpoint data) the session reaches; undefined when it cannot be told (a warning said why). */
  storeUsed: StoreUsed | undefined;
  slabs: SlabPool;
  /** The archive tier: the connection's bucket and vault, opened on first use. */
  archives: ArchivePlaces;
}

export function validateConcurrency(value: number | undefined): number {
  const concurrency = value ?? DEFAULT_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_CONCURRENCY) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `concurrency must be a whole number from 1 to ${MAX_CONCURRENCY}, got ${value}`, { details: { option: 'concurrency' } });
  }
  return concurrency;
}

/**
 * Starts the local endpoint in this process for the built-in `local`
 * connection (see openConnection). Its code is loaded here, the one place
 * that starts it: every other connection, and `local` when a `snapline
 * serve` answers, does without it.
 */
export const startLocalEndpoint: LocalEndpointStarter = async (dataDir) => {
  const { startEmulator } = await import('./emulator/index.js');
  return startEmulator({ dataDir, host: '127.0.0.1', port: 0 });
};

/** Opens the connection and builds the remote side of a run (see RemoteSession); close() releases it all. */
export async function openRemote(options: RemoteOptions): Promise<RemoteSession> {
  const concurrency = validateConcurrency(options.concurrency);
  const connection = await openConnection(options, startLocalEndpoint);
  const closers: Array<() => Promise<void> | void> = [() => connection.close()];
  const close = closeOnce(closers);
  try {
    const settings = options.s3PathStyle ? { ...connection.settings, forcePathStyle: true } : connection.settings;
    const clients = new AwsClients(settings, {
      concurrency: 2 * concurrency,
      ...(options.throttleBudgetMs === undefined ? {} : { throttleBudgetMs: options.throttleBudgetMs }),
      ...(options.retryClock === undefined ? {} : { retryClock: options.retryClock }),
    });
    closers.push(() => clients.destroy());
    let pool: HashPool | undefined;
    closers.push(() => pool?.destroy());
    const hashPool = () => (pool ??= new HashPool());
    // One contact for every store of the session, marked by their requests' outcomes: once any request has
    // reached the endpoint, a refused connection is waited for (an endpoint restart), not failed early.
    const contact: EndpointContact = { reached: false };
    // An abort ends the transfers in flight, not the calls that change remote state; calls made after it (clean-up) go out.
    const requests = { signal: options.signal, contact };
    const store = new EbsSnapshotStore(clients.ebs(), { direct: clients.ebsBlockRequests(), ...requests });
    const uploadLimiter = new AdaptiveLimiter(concurrency);
    const downloadLimiter = new AdaptiveLimiter(concurrency);
    // The connection's retries.max_attempts bounds EBS calls too; their backoff and throttling response stay snapline's.
    const maxAttempts = connection.settings.retries?.maxAttempts;
    const throttling = new ThrottleWatch(options.retryClock);
    const policy = {
      ...(maxAttempts === undefined ? {} : { maxAttempts }),
      ...(options.throttleBudgetMs === undefined ? {} : { throttleBudgetMs: options.throttleBudgetMs }),
    };
    const wrap = { signal: options.signal, onRetry: options.onRetry, onThrottled: options.onThrottled, throttleWatch: throttling, contact, policy };
    return {
      connection,
      clients,
      store,
      writer: resilientWriter(store, { ...wrap, limiter: uploadLimiter, ...(options.newSnapshotIds === undefined ? {} : { newSnapshotIds: options.newSnapshotIds }) }),
      reader: resilientReader(verifiedReader(store, (data) => hashPool().sha256Moving(data)), { ...wrap, limiter: downloadLimiter }),
      catalog: new Ec2SnapshotCatalog(() => clients.ec2Requests(), requests),
      volumes: new Ec2VolumeManager(() => clients.ec2(), requests),
      uploadLimiter,
      downloadLimiter,
      throttling,
      get hashPool() {
        return hashPool();
      },
      archiveStore(target, location, attributes = {}) {
        return target === 's3' ? new S3ArchiveStore(clients.s3(), location, { attributes, ...requests }) : new GlacierArchiveStore(clients.glacier(), location, requests);
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

export interface CopyDestinationOptions {
  /** The Region the copies go to. */
  region: string;
  /** Another connection (account, credentials, endpoint) for the destination; default the source's, in `region`. */
  connection?: string;
  configPath?: string;
  onWarning?: (message: string) => void;
  signal?: AbortSignal;
}

/**
 * The destination of snapshot copies (EC2 CopySnapshot and the copies'
 * bookkeeping, in the destination Region): through the source session's
 * connection with the Region changed, or through another connection. close()
 * releases what it opened.
 */
export async function openCopyDestination(source: RemoteSession, options: CopyDestinationOptions): Promise<CopyDestination & { close(): Promise<void> }> {
  const requests = { ...(options.signal === undefined ? {} : { signal: options.signal }) };
  if (options.connection === undefined) {
    const clients = new AwsClients({ ...source.connection.settings, region: options.region }, { concurrency: 2 });
    return {
      region: options.region,
      copier: new Ec2SnapshotCopier(() => clients.ec2(), requests),
      catalog: new Ec2SnapshotCatalog(() => clients.ec2Requests(), requests),
      close: async () => clients.destroy(),
    };
  }
  const remote = await openRemote({
    connection: options.connection,
    region: options.region,
    concurrency: 2,
    ...(options.configPath === undefined ? {} : { configPath: options.configPath }),
    ...(options.onWarning === undefined ? {} : { onWarning: options.onWarning }),
    ...requests,
  });
  return {
    region: options.region,
    connection: options.connection,
    copier: new Ec2SnapshotCopier(() => remote.clients.ec2(), requests),
    catalog: remote.catalog,
    close: () => remote.close(),
  };
}

/**
 * The destinations of recorded copies, each opened on first use (see
 * openCopyDestination) and all closed by close().
 */
export function copyDestinations(source: RemoteSession, options: Omit<CopyDestinationOptions, 'region' | 'connection'>): CopyDestinations & { close(): Promise<void> } {
  const opened = new Map<string, Promise<CopyDestination & { close(): Promise<void> }>>();
  return {
    sourceRegion: source.connection.settings.region,
    async catalogOf(region, connection) {
      const key = `${connection ?? ''}@${region}`;
      let destination = opened.get(key);
      if (destination === undefined) {
        destination = openCopyDestination(source, { ...options, region, ...(connection === null ? {} : { connection }) });
        opened.set(key, destination);
      }
      return (await destination).catalog;
    },
    /** Closes each destination opened, even when another fails (one that failed to open has nothing to close); throws the first error. */
    async close() {
      const errors: unknown[] = [];
      for (const opening of opened.values()) {
        try {
          await (await opening.catch(() => undefined))?.close();
        } catch (err) {
          errors.push(err);
        }
      }
      opened.clear();
      if (errors.length > 0) throw errors[0];
    },
  };
}

/** Runs `fn` with the remote side of a run and closes it whatever happens. */
export function withRemote<T>(options: RemoteOptions, fn: (remote: RemoteSession) => Promise<T>): Promise<T> {
  return closedAfter(openRemote(options), fn);
}

/**
 * Runs `fn` with what `opening` gives, then closes it. When `fn` fails, its
 * error is thrown (a failure to close then is dropped, so an INTERRUPTED run
 * still ends INTERRUPTED); when only the closing fails, that is thrown.
 */
async function closedAfter<S extends { close(): Promise<void> }, T>(opening: Promise<S>, fn: (opened: S) => Promise<T>): Promise<T> {
  const opened = await opening;
  let result: T;
  try {
    result = await fn(opened);
  } catch (err) {
    await opened.close().catch(() => undefined);
    throw err;
  }
  await opened.close();
  return result;
}

export async function openSession(options: SessionOptions): Promise<Session> {
  const concurrency = validateConcurrency(options.concurrency);
  const index = BlockIndex.open(options.indexPath ?? defaultIndexPath());
  let remote: RemoteSession;
  try {
    remote = await openRemote({ ...options, newSnapshotIds: pendingRunsOf(index) });
  } catch (err) {
    index.close();
    throw err;
  }
  const close = closeOnce([() => index.close(), () => remote.close()]);
  try {
    const warn = options.onWarning ?? ((message: string) => process.emitWarning(message, 'SnaplineWarning'));
    const store = await identifyStore(remote.connection, remote.clients, { warn, ...(options.signal === undefined ? {} : { signal: options.signal }) });
    if (store !== undefined) {
      index.bindStore(store);
      options.onStore?.(store);
    }
    const slabs = new SlabPool({ slabCount: Math.ceil(concurrency / BLOCKS_PER_SLAB) + SLABS_AHEAD, blocksPerSlab: BLOCKS_PER_SLAB });
    const archives = archivePlaces(remote, { ...remote.connection.archive, ...withoutUndefined(options.archive ?? {}) });
    // Field by field, not a spread: spreading would start the remote's hash pool.
    return {
      connection: remote.connection,
      clients: remote.clients,
      store: remote.store,
      writer: remote.writer,
      reader: remote.reader,
      catalog: store === undefined ? remote.catalog : storeChecked(remote.catalog, index),
      volumes: remote.volumes,
      uploadLimiter: remote.uploadLimiter,
      downloadLimiter: remote.downloadLimiter,
      throttling: remote.throttling,
      get hashPool() {
        return remote.hashPool;
      },
      archiveStore: (target, location, attributes) => remote.archiveStore(target, location, attributes),
      index,
      storeUsed: store,
      slabs,
      archives,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Runs `fn` with a session and closes it whatever happens. */
export function withSession<T>(options: SessionOptions, fn: (session: Session) => Promise<T>): Promise<T> {
  return closedAfter(openSession(options), fn);
}

/**
 * The catalog of a bound index's session: describing a snapshot the index
 * files under a volume of another store throws STORE_MISMATCH (see
 * BlockIndex.bindStore) instead of finding it missing here.
 */
function storeChecked(catalog: SnapshotCatalog, index: BlockIndex): SnapshotCatalog {
  return {
    async describeSnapshots(snapshotIds) {
      for (const snapshotId of snapshotIds) index.lineage.getSnapshot(snapshotId);
      return catalog.describeSnapshots(snapshotIds);
    },
    taggedSnapshots: (tags) => catalog.taggedSnapshots(tags),
    deleteSnapshot: (snapshotId) => catalog.deleteSnapshot(snapshotId),
    createTags: (snapshotId, tags) => catalog.createTags(snapshotId, tags),
    encryptionByDefault: () => catalog.encryptionByDefault(),
  };
}

/**
 * Snapshots of the index's unfinished backup runs. A backup may resume one
 * just after another process started it, while the service may still answer
 * "not found" for it: the writer retries that as for a snapshot it started.
 */
function pendingRunsOf(index: BlockIndex): string[] {
  return index.lineage
    .listSnapshots()
    .filter((s) => s.state === 'pending')
    .map((s) => s.snapshotId);
}

/**
 * The archive stores of a connection's settings, one per bucket or vault,
 * made on first use: S3 with its storage classes and `attributes` headers
 * (path-style addressing comes with the S3 client), Glacier vaults.
 */
function archivePlaces(remote: RemoteSession, archive: ArchiveConfig): ArchivePlaces {
  const stores = new Map<string, ArchiveStore>();
  return {
    store(target, location) {
      const place = location ?? (target === 's3' ? archive.bucket : archive.vault);
      if (place === undefined) {
        const field = target === 's3' ? 'bucket' : 'vault';
        throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `no archive ${field} is configured for ${target}`, {
          hint: `set archive.${field} in the connection, or pass --${field}`,
        });
      }
      const key = `${target}:${place}`;
      let store = stores.get(key);
      if (store === undefined) {
        store = remote.archiveStore(target, place, archive.attributes);
        stores.set(key, store);
      }
      return store;
    },
    ...(archive.bucket !== undefined ? { defaultTarget: 's3' as const } : archive.vault !== undefined ? { defaultTarget: 'glacier' as const } : {}),
    ...(archive.path === undefined ? {} : { path: archive.path }),
    ...(archive.storageClass === undefined ? {} : { storageClass: archive.storageClass }),
    ...(archive.deleteOlderThanDays === undefined ? {} : { deleteOlderThanDays: archive.deleteOlderThanDays }),
  };
}

/**
 * A close() that runs `closers` once, last added first, each one even when
 * another throws (a connection left open can keep the process alive), then
 * throws the first error. Later calls return the first call's promise.
 */
function closeOnce(closers: ReadonlyArray<() => Promise<void> | void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  const closeAll = async () => {
    const errors: unknown[] = [];
    for (const closer of [...closers].reverse()) {
      try {
        await closer();
      } catch (err) {
        errors.push(err);
      }
    }
    if (errors.length > 0) throw errors[0];
  };
  return () => (closing ??= closeAll());
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
