/**
 * The ECS restore driver: a pending snapshot filled by N ECS tasks, one per
 * shard of the source's blocks, watched to the end and completed with the
 * LINEAR aggregate of the digests the driver already knows (the index's
 * block map of a snapshot, the manifest of an archive), so no block data
 * passes through the driver.
 *
 * Everything is recorded in the index (job, shards, tasks), every task
 * carries startedBy = snapline-<job> and tags naming its shard and attempt,
 * and every RunTask has a clientToken that a crash cannot change: a driver
 * killed and started again finds the job's tasks, running or stopped, and
 * never starts a duplicate.
 */
import { randomBytes } from 'node:crypto';
import { abortError, sleep, throwIfAborted } from '../../core/abort.js';
import { DEFAULT_PACING, DEFAULT_RETRIES, DEFAULT_SHARDS, MAX_RETRIES, MAX_SHARDS, type EcsPacing } from '../../core/ecs-restore-options.js';
import type { ContainerTasks, LogReader, SnapshotCatalog, SnapshotWriter, TaskPlacement, TaskState } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { EcsJobRecord, EcsShardRecord, EcsTaskRecord, IndexPorts } from '../../core/index-ports.js';
import type { ArchivePlaces } from '../archive/places.js';
import { EC2_SETTLE_MS, completeAndCommit, describeListed, settleWaitText } from '../blocks/committer.js';
import { archiveSource, expectedShardResult, snapshotSource, splitShards, type ShardSource } from './source.js';
import { judgeStoppedTask, TaskLog, workerContainerOf, type WorkerContainer } from './watch.js';
import { SOURCE_BYTES_TAG, VOLUME_TAG } from '../blocks/remote-snapshot.js';

/** Where tasks run, from the connection. */
export interface EcsSettings extends TaskPlacement {
  /** The worker's log group and stream prefix; default: its awslogs options in the task definition. */
  logGroup?: string;
  logStreamPrefix?: string;
  /** The Region the tasks work in (given to them as AWS_REGION). */
  region: string;
  /** Workers address S3 path-style (S3-compatible stores), as the connection does. */
  s3PathStyle?: boolean;
}

export interface EcsRestoreDeps {
  index: Pick<IndexPorts, 'archives' | 'ecsJobs' | 'lineage' | 'maps' | 'runs'>;
  writer: SnapshotWriter;
  catalog: SnapshotCatalog;
  tasks: ContainerTasks;
  logs: LogReader;
  settings: EcsSettings;
  /** For archive sources: where archives are, and the pool that checks their tree hashes. */
  archives: ArchivePlaces;
  hashPool: HashPool;
}

/** The pending snapshot may sit idle this long (tasks waiting for capacity) before EBS cancels it. */
const SNAPSHOT_TIMEOUT_MINUTES = 1440;
const JOB_TAG = 'snapline:ecs-job';
const SHARD_TAG = 'snapline:shard';
const ATTEMPT_TAG = 'snapline:attempt';

export interface EcsRestoreOptions {
  /** A completed snapshot the index knows, or an archive (id, or the id of its snapshot) whose objects are restored. */
  source: string;
  /** Tasks to split the work into (default 4); a job being resumed keeps its own. */
  shards?: number;
  /** Volume the new snapshot is filed under in the index (default: the source's volume + "-restored"). */
  volume?: string;
  /** New attempts per failed shard in this run (default 2). */
  retries?: number;
  /** Give up waiting after this long (the tasks go on; run again to follow them). */
  timeoutMs?: number;
  /** Launch the tasks and return at once; the tasks go on without the driver. */
  detach?: boolean;
  signal?: AbortSignal;
  /** Each line of a task's log. */
  onLine?: (shard: number, line: string) => void;
  /** What the driver does: launches, retries, waits. */
  onNote?: (message: string) => void;
  pacing?: Partial<EcsPacing>;
}

export interface EcsShardReport {
  shard: number;
  fromBlock: number;
  toBlock: number;
  state: EcsShardRecord['state'];
  /** Attempts started so far, all runs. */
  attempts: number;
  taskArn: string | null;
  lastStatus: string | null;
  stopCode: string | null;
  stoppedReason: string | null;
  /** The worker container's exit code of the last task. */
  exitCode: number | null;
  /** Why it failed, or what it waits for. */
  message: string | null;
  /** The last lines of its last task's log (failed shards). */
  lastLines: string[];
}

export interface EcsJobReport {
  jobId: string;
  source: string;
  sourceKind: EcsJobRecord['sourceKind'];
  volume: string;
  snapshotId: string | null;
  /** detached: tasks launched, not watched. */
  state: EcsJobRecord['state'] | 'detached';
  cluster: string;
  startedBy: string;
  shards: EcsShardReport[];
  /** The worker's exit code of the first failed shard that has one. */
  exitCode: number | null;
  durationMs: number;
}

/**
 * Restores `source` into a new snapshot with ECS tasks, or resumes the
 * source's unfinished job: launches what is missing, follows every task and
 * its log, retries a failed shard as a new task for that shard alone (and a
 * placement that found no capacity with backoff, looking the job's tasks up
 * first), and completes the snapshot once every shard succeeded. A job whose
 * retries ran out is left failed with its snapshot pending (the same command
 * again retries the failed shards). Cancelling stops the tasks of the job
 * (StopTask with a reason) unless `detach`.
 */
export async function ecsRestore(deps: EcsRestoreDeps, options: EcsRestoreOptions): Promise<EcsJobReport> {
  const started = Date.now();
  const shards = checkWhole('shards', options.shards ?? DEFAULT_SHARDS, 1, MAX_SHARDS);
  const retries = checkWhole('retries', options.retries ?? DEFAULT_RETRIES, 0, MAX_RETRIES);
  throwIfAborted(options.signal);
  const worker = await workerContainerOf(deps.tasks, deps.settings.taskDefinition, { ...deps.settings, placement: deps.settings });
  if (worker.logGroup === undefined || worker.logStreamPrefix === undefined) {
    options.onNote?.(`the ${worker.name} container has no awslogs group and stream prefix: its logs cannot be followed (set log_group and log_stream_prefix of the connection)`);
  }
  const source = await openSource(deps, options.source, options);
  const job = await prepareJob(deps, source, shards, options);
  let jobWorker = worker;
  if (job.cluster !== deps.settings.cluster || job.taskDefinition !== deps.settings.taskDefinition) {
    options.onNote?.(`job ${job.jobId} keeps its cluster ${job.cluster} and task definition ${job.taskDefinition}; the connection's differ`);
    if (job.taskDefinition !== deps.settings.taskDefinition) jobWorker = await workerContainerOf(deps.tasks, job.taskDefinition, { ...deps.settings, placement: deps.settings });
  }
  const driver = new JobDriver(deps, job, source, jobWorker, { ...DEFAULT_PACING, ...options.pacing }, retries, options);
  return driver.run(started);
}

/** The job as the index and ECS know it now (tasks found by startedBy are recorded); starts and stops nothing. */
export async function ecsStatus(deps: Pick<EcsRestoreDeps, 'index' | 'tasks'>, jobId: string): Promise<EcsJobReport> {
  const started = Date.now();
  const job = deps.index.ecsJobs.get(jobId);
  if (job === undefined) {
    throw new SnaplineError(ErrorCodes.NOT_FOUND, `ECS job ${jobId} is not in the index`, { hint: 'list the jobs with `snapline ecs status`' });
  }
  const worker = await workerContainerOf(deps.tasks, job.taskDefinition, {});
  await findJobTasks(deps, job, worker.name);
  return reportOf(deps.index, deps.index.ecsJobs.get(jobId)!, new Map(), started);
}

/**
 * A snapshot id names the snapshot while the index has it completed, else
 * its archive when it has one (a snapshot deleted after it was archived);
 * any other id names an archive.
 */
async function openSource(deps: EcsRestoreDeps, id: string, options: EcsRestoreOptions): Promise<ShardSource> {
  const isSnapshotId = /^snap-[0-9a-zA-Z]+$/.test(id);
  const archived = deps.index.archives.list().some((a) => a.state !== 'deleted' && (a.archiveId === id || a.snapshotId === id));
  if (isSnapshotId && (deps.index.lineage.getSnapshot(id)?.state === 'completed' || !archived)) {
    return snapshotSource(deps, id, { signal: options.signal, onSettling: (wait) => options.onNote?.(settleWaitText(wait)) });
  }
  return archiveSource(deps, id, { s3PathStyle: deps.settings.s3PathStyle ?? false });
}

/** The source's open job whose snapshot is still pending, or a new job with its snapshot started and its run begun. */
async function prepareJob(deps: EcsRestoreDeps, source: ShardSource, shards: number, options: EcsRestoreOptions): Promise<EcsJobRecord> {
  const { index } = deps;
  let job = index.ecsJobs.openFor(source.id);
  if (job?.snapshotId != null && !(await snapshotUsable(deps, job, options))) {
    options.onNote?.(`job ${job.jobId}: its snapshot ${job.snapshotId} is no longer pending; starting a new job`);
    const run = index.lineage.getSnapshot(job.snapshotId);
    if (run?.state === 'pending' || run?.state === 'completing') index.runs.abandonRun(job.snapshotId, `ECS job ${job.jobId}: the snapshot is gone or in error`);
    index.ecsJobs.update(job.jobId, { state: 'abandoned', message: `its snapshot ${job.snapshotId} is gone or in error` });
    job = undefined;
  }
  if (job === undefined) {
    const volume = options.volume ?? `${source.volume}-restored`;
    const open = index.runs.pendingRun(volume);
    if (open !== undefined) {
      throw new SnaplineError(ErrorCodes.CONFLICT, `volume ${volume} has an unfinished run (snapshot ${open.snapshotId})`, {
        hint: 'name another volume with --volume, or let that run finish',
      });
    }
    const spans = await splitShards(source, shards);
    const jobId = `j-${randomBytes(5).toString('hex')}`;
    job = index.ecsJobs.create(
      { jobId, sourceKind: source.kind, source: source.id, volume, cluster: deps.settings.cluster, taskDefinition: deps.settings.taskDefinition, startedBy: `snapline-${jobId}` },
      spans,
    );
    options.onNote?.(`job ${jobId}: ${spans.length} shard${spans.length === 1 ? '' : 's'} of ${source.id} on cluster ${job.cluster}`);
  } else {
    const count = index.ecsJobs.shards(job.jobId).length;
    options.onNote?.(`job ${job.jobId}: resuming (${count} shard${count === 1 ? '' : 's'})${options.shards !== undefined && options.shards !== count ? `; --shards ${options.shards} does not change a job under way` : ''}`);
  }
  if (job.snapshotId === null) {
    // The job id is the client token: a crash before the answer was recorded starts the same snapshot again.
    const snapshot = await deps.writer.startSnapshot({
      volumeSizeGiB: source.volumeSizeGiB,
      encrypted: source.encrypted || undefined,
      description: `snapline ecs restore of ${source.id} (job ${job.jobId})`,
      tags: { [VOLUME_TAG]: job.volume, [SOURCE_BYTES_TAG]: String(source.sourceBytes), [JOB_TAG]: job.jobId },
      timeoutMinutes: SNAPSHOT_TIMEOUT_MINUTES,
      clientToken: job.jobId,
    });
    job = index.ecsJobs.update(job.jobId, { snapshotId: snapshot.snapshotId });
  }
  if (index.lineage.getSnapshot(job.snapshotId!) === undefined) {
    if (index.lineage.getVolume(job.volume) === undefined) index.lineage.ensureVolume({ name: job.volume, sourcePath: '', sizeBytes: source.sourceBytes });
    index.runs.beginRun({
      volume: job.volume,
      snapshotId: job.snapshotId!,
      parentSnapshotId: null,
      baseSnapshotId: null,
      volumeSizeGiB: source.volumeSizeGiB,
      sourceBytes: source.sourceBytes,
      encrypted: source.encrypted,
      description: `snapline ecs restore of ${source.id} (job ${job.jobId})`,
      runOptions: JSON.stringify({ ecsJob: job.jobId }),
    });
  }
  return job;
}

/**
 * The job's snapshot is pending in AWS, or completed with the index about to
 * commit it. EC2 may not list a new snapshot yet: until EC2_SETTLE_MS after
 * its start (its run's start in the index, else the job's creation, which
 * came first) one it does not list is looked up again, as pending, not gone.
 */
async function snapshotUsable(deps: EcsRestoreDeps, job: EcsJobRecord, options: EcsRestoreOptions): Promise<boolean> {
  const snapshotId = job.snapshotId!;
  const run = deps.index.lineage.getSnapshot(snapshotId);
  const listedBy = (run?.startedAt ?? job.createdAt).getTime() + EC2_SETTLE_MS;
  const remote = await describeListed(deps.catalog, snapshotId, listedBy, {
    signal: options.signal,
    onUnsettled: (wait) =>
      options.onNote?.(`job ${job.jobId}: waiting for EC2 to list its snapshot ${snapshotId}: it does not list it yet (EC2 is eventually consistent; at most ${Math.max(0, Math.ceil((wait.settledBy - Date.now()) / 1000))}s more)`),
  });
  if (remote?.state === 'pending') return true;
  return remote?.state === 'completed' && (run?.state === 'completing' || run?.state === 'completed');
}

/** A task of the job as found in ECS, with its shard and attempt (from its tags, else the index). */
interface FoundTask {
  shard: number;
  attempt: number;
  state: TaskState;
  /** False for a task the index recorded and ECS does not show (not yet, or forgotten): its state is the one last recorded. */
  shown: boolean;
  /** When the task was created (epoch ms; ECS's time, as recorded). */
  since: number;
}

/**
 * How long a task that ECS does not show may be "not yet shown" (its API is
 * eventually consistent; AWS's guidance waits up to five minutes); after
 * that it is gone: ECS forgets a stopped task about an hour after it stopped.
 */
const TASK_SETTLE_MS = 5 * 60 * 1000;

/**
 * Every task of the job, running and stopped alike (a reattach that looked
 * at running tasks only would start a finished shard again): those the index
 * recorded, and every task of the job's task definition family in its
 * cluster, RUNNING and STOPPED, that DescribeTasks shows started by the job.
 * (ListTasks takes startedBy only as its sole filter, and then lists running
 * tasks only.) Each one ECS shows is recorded in the index; one the index
 * recorded and ECS does not show comes with its recorded state (shown false).
 */
async function findJobTasks(deps: Pick<EcsRestoreDeps, 'index' | 'tasks'>, job: EcsJobRecord, worker: string): Promise<FoundTask[]> {
  const known = new Map(deps.index.ecsJobs.tasks(job.jobId).map((t) => [t.taskArn, t]));
  const arns = new Set(known.keys());
  const family = familyOf(job.taskDefinition);
  for (const desiredStatus of ['RUNNING', 'STOPPED'] as const) for (const arn of await deps.tasks.list(job.cluster, { desiredStatus, family })) arns.add(arn);
  const found: FoundTask[] = [];
  for (const state of await deps.tasks.describe(job.cluster, [...arns])) {
    if (state.startedBy !== job.startedBy && !known.has(state.taskArn)) continue;
    const record = known.get(state.taskArn);
    const shard = Number(state.tags[SHARD_TAG] ?? record?.shard);
    const attempt = Number(state.tags[ATTEMPT_TAG] ?? record?.attempt);
    if (!Number.isSafeInteger(shard) || !Number.isSafeInteger(attempt)) continue;
    recordTask(deps.index, job.jobId, shard, attempt, state, worker);
    found.push({ shard, attempt, state, shown: true, since: (state.createdAt ?? record?.createdAt ?? new Date()).getTime() });
  }
  for (const record of known.values()) {
    if (found.some((f) => f.state.taskArn === record.taskArn)) continue;
    found.push({ shard: record.shard, attempt: record.attempt, state: recordedState(record, worker), shown: false, since: record.createdAt.getTime() });
  }
  return found;
}

/** A task's state as the index last recorded it (its worker container's exit code only). */
function recordedState(record: EcsTaskRecord, worker: string): TaskState {
  return {
    taskArn: record.taskArn,
    lastStatus: record.lastStatus,
    desiredStatus: record.lastStatus === 'STOPPED' ? 'STOPPED' : 'RUNNING',
    ...(record.stopCode === null ? {} : { stopCode: record.stopCode }),
    ...(record.stoppedReason === null ? {} : { stoppedReason: record.stoppedReason }),
    tags: {},
    containers: record.exitCode === null ? [] : [{ name: worker, exitCode: record.exitCode }],
    createdAt: record.createdAt,
    ...(record.stoppedAt === null ? {} : { stoppedAt: record.stoppedAt }),
  };
}

/** The family of a task definition given as family, family:revision or ARN. */
export function familyOf(taskDefinition: string): string {
  const name = taskDefinition.slice(taskDefinition.lastIndexOf('/') + 1);
  return name.split(':')[0]!;
}

function recordTask(index: Pick<IndexPorts, 'ecsJobs'>, jobId: string, shard: number, attempt: number, state: TaskState, worker: string): void {
  const container = state.containers.find((c) => c.name === worker);
  const earlier = index.ecsJobs.tasks(jobId).find((t) => t.taskArn === state.taskArn);
  index.ecsJobs.recordTask({
    taskArn: state.taskArn,
    jobId,
    shard,
    attempt,
    lastStatus: state.lastStatus,
    stopCode: state.stopCode ?? null,
    stoppedReason: state.stoppedReason ?? null,
    exitCode: container?.exitCode ?? earlier?.exitCode ?? null,
    createdAt: state.createdAt ?? earlier?.createdAt ?? new Date(),
    stoppedAt: state.stoppedAt ?? null,
  });
}

/** One task the driver follows. */
interface Followed {
  arn: string;
  attempt: number;
  /** Its last state known: DescribeTasks', else RunTask's answer or the index's record. */
  state: TaskState | undefined;
  log: TaskLog;
  /** When it was created or started (epoch ms): until TASK_SETTLE_MS after, ECS may not show it yet. */
  since: number;
  /** DescribeTasks has shown it. */
  shown: boolean;
  /** ECS no longer shows it (it forgets a stopped task about an hour after it stopped): its log tells how it ended. */
  gone?: boolean;
  /** When the driver first saw it STOPPED, or gone (epoch ms). */
  stoppedSeenAt?: number;
}

interface ShardRun {
  record: EcsShardRecord;
  task?: Followed;
  /** Attempts judged failed in this run. */
  failures: number;
  /** RunTask calls in this run that placed nothing or whose outcome is unknown. */
  unplaced: number;
  nextLaunchAt: number;
  /** No more attempts in this run. */
  gaveUp: boolean;
  lastLines: string[];
}

class JobDriver {
  readonly #shards: ShardRun[];
  readonly #pacing: EcsPacing;

  constructor(
    private readonly deps: EcsRestoreDeps,
    private readonly job: EcsJobRecord,
    private readonly source: ShardSource,
    private readonly worker: WorkerContainer,
    pacing: EcsPacing,
    private readonly retries: number,
    private readonly options: EcsRestoreOptions,
  ) {
    this.#pacing = pacing;
    this.#shards = deps.index.ecsJobs.shards(job.jobId).map((record) => ({ record, failures: 0, unplaced: 0, nextLaunchAt: 0, gaveUp: false, lastLines: [] }));
  }

  async run(started: number): Promise<EcsJobReport> {
    const { signal } = this.options;
    const deadline = this.options.timeoutMs === undefined ? Infinity : started + this.options.timeoutMs;
    this.#index.ecsJobs.update(this.job.jobId, { state: 'running', message: null });
    try {
      await this.#adopt();
      let pause = this.#pacing.pollFirstMs;
      for (;;) {
        throwIfAborted(signal);
        let changed = await this.#launchDue();
        if (this.options.detach) return this.#report('detached', started);
        changed = (await this.#observe()) || changed;
        if (this.#shards.every((s) => s.record.state === 'succeeded' || s.gaveUp)) break;
        if (Date.now() >= deadline) throw this.#timedOut();
        pause = changed ? this.#pacing.pollFirstMs : Math.min(this.#pacing.pollMaxMs, Math.ceil(pause * 1.5));
        const nextLaunch = Math.min(...this.#shards.filter((s) => this.#needsTask(s)).map((s) => s.nextLaunchAt));
        await sleep(Math.max(1, Math.min(pause, nextLaunch - Date.now(), deadline - Date.now())), signal);
      }
    } catch (err) {
      const stopped = signal?.aborted && !this.options.detach ? await this.#stopAll(`snapline: interrupted (job ${this.job.jobId})`) : 0;
      throw this.#resumable(err, stopped);
    }
    const failed = this.#shards.filter((s) => s.record.state !== 'succeeded');
    if (failed.length > 0) {
      const message = failed.map((s) => `shard ${s.record.shard}: ${s.record.message ?? 'failed'}`).join('; ');
      this.#index.ecsJobs.update(this.job.jobId, { state: 'failed', message });
      return this.#report('failed', started);
    }
    await this.#complete(deadline);
    return this.#report('completed', started);
  }

  get #index(): EcsRestoreDeps['index'] {
    return this.deps.index;
  }

  get #cluster(): string {
    return this.job.cluster;
  }

  #note(message: string): void {
    this.options.onNote?.(message);
  }

  /** A shard that has no task to follow and may get one. */
  #needsTask(shard: ShardRun): boolean {
    return shard.record.state !== 'succeeded' && !shard.gaveUp && (shard.task === undefined || shard.record.state === 'failed');
  }

  /**
   * Takes over the tasks the job already has: for each shard the task of its
   * current attempt, running or stopped (a stopped one is judged once its log
   * is read). Tasks of older attempts still running are stopped: they would
   * only write what the current attempt writes again.
   */
  async #adopt(): Promise<boolean> {
    const found = await findJobTasks(this.deps, this.job, this.worker.name);
    let adopted = false;
    for (const shard of this.#shards) {
      const mine = found.filter((t) => t.shard === shard.record.shard);
      // The newest attempt; of its tasks, one ECS shows before one only the index knows.
      const newest = mine.reduce<FoundTask | undefined>((a, t) => (a === undefined || t.attempt > a.attempt || (t.attempt === a.attempt && t.shown && !a.shown) ? t : a), undefined);
      if (newest === undefined) continue;
      for (const old of mine) {
        if (old !== newest && old.shown && old.state.lastStatus !== 'STOPPED' && old.state.desiredStatus !== 'STOPPED') {
          await this.deps.tasks.stop(this.#cluster, old.state.taskArn, `snapline: attempt ${newest.attempt} of shard ${shard.record.shard} replaces this task`);
        }
      }
      const current = newest.attempt > shard.record.attempt || (newest.attempt === shard.record.attempt && shard.record.state !== 'succeeded' && shard.record.state !== 'failed');
      if (!current || shard.task?.arn === newest.state.taskArn) continue;
      this.#updateShard(shard, { state: 'running', attempt: newest.attempt });
      shard.task = this.#follow(shard, newest.state.taskArn, newest.attempt, newest.state, newest.since, newest.shown);
      adopted = true;
      const seen = newest.shown ? newest.state.lastStatus : `${newest.state.lastStatus} when last seen; ECS does not show it now`;
      this.#note(`shard ${shard.record.shard}: following task ${newest.state.taskArn} (attempt ${newest.attempt}, ${seen})`);
    }
    return adopted;
  }

  /** Launches a task for every shard that needs one and whose backoff is over; looks the job's tasks up first. */
  async #launchDue(): Promise<boolean> {
    const now = Date.now();
    const due = this.#shards.filter((s) => this.#needsTask(s) && s.nextLaunchAt <= now);
    if (due.length === 0) return false;
    // A RunTask whose answer was lost, or a crash after it, may have started a task: find it before starting another.
    if ((await this.#adopt()) && !this.#shards.some((s) => this.#needsTask(s) && s.nextLaunchAt <= now)) return true;
    for (const shard of this.#shards.filter((s) => this.#needsTask(s) && s.nextLaunchAt <= now)) await this.#launch(shard);
    return true;
  }

  async #launch(shard: ShardRun): Promise<void> {
    // The task of an attempt that failed is done with: until a new one is placed, the shard has none (and needs one).
    shard.task = undefined;
    if (shard.record.attempt === 0 || shard.record.state === 'failed') this.#updateShard(shard, { state: 'waiting', attempt: shard.record.attempt + 1, launch: 0 });
    const { record } = shard;
    const clientToken = `${this.job.jobId}-${record.shard}-${record.attempt}-${record.launch}`;
    const settings = this.deps.settings;
    let outcome;
    try {
      // The job's own cluster and task definition: where its tasks are looked up, whatever the connection says now.
      outcome = await this.deps.tasks.launch({
        cluster: this.job.cluster,
        taskDefinition: this.job.taskDefinition,
        ...(settings.launchType === undefined ? {} : { launchType: settings.launchType }),
        ...(settings.capacityProviderStrategy === undefined ? {} : { capacityProviderStrategy: settings.capacityProviderStrategy }),
        ...(settings.network === undefined ? {} : { network: settings.network }),
        container: this.worker.name,
        command: this.source.workerCommand({ job: this.job.jobId, shard: record.shard, fromBlock: record.fromBlock, toBlock: record.toBlock }, this.job.snapshotId!),
        environment: { AWS_REGION: settings.region },
        tags: { [JOB_TAG]: this.job.jobId, [SHARD_TAG]: String(record.shard), [ATTEMPT_TAG]: String(record.attempt), 'snapline:source': this.source.id },
        propagateTags: true,
        startedBy: this.job.startedBy,
        clientToken,
      });
    } catch (err) {
      const error = toSnaplineError(err);
      if (error.code === ErrorCodes.CONFLICT) {
        // The token was spent on a RunTask with other parameters (the connection's ECS settings changed since). ECS names the tasks that
        // RunTask started (resourceIds): one not stopped is this shard's attempt, which ListTasks did not show #adopt; follow it. Only
        // when all of them have stopped or are gone (ECS forgets stopped tasks after about an hour) does the shard take a new token.
        const earlier = stringsIn(error.details?.resourceIds);
        const live = earlier.length === 0 ? undefined : (await this.deps.tasks.describe(this.job.cluster, earlier)).find((t) => t.lastStatus !== 'STOPPED');
        if (live !== undefined) {
          this.#started(shard, live, `client token ${clientToken} already started task ${live.taskArn} (${live.lastStatus}); following it`);
          return;
        }
        this.#updateShard(shard, { launch: record.launch + 1, message: `RunTask refused client token ${clientToken}: ${error.message}` });
        this.#note(`shard ${record.shard}: client token ${clientToken} was used with other RunTask parameters; launching with a new one`);
        return;
      }
      if (!error.retryable) throw error;
      // The answer is unknown: the next call sends the same clientToken, which cannot start a second task.
      this.#unplaced(shard, `RunTask failed: ${error.message}`, false);
      return;
    }
    if (outcome.task !== undefined) {
      this.#started(shard, outcome.task, `started task ${outcome.task.taskArn} (attempt ${record.attempt}, blocks ${record.fromBlock}..${record.toBlock})`);
      return;
    }
    const reasons = outcome.failures.map((f) => `${f.reason}${f.detail ? ` (${f.detail})` : ''}`).join(', ') || 'no task and no reason';
    if (outcome.failures.some((f) => isCapacityFailure(f.reason))) {
      this.#unplaced(shard, `no capacity: ${reasons}`, true);
      return;
    }
    this.#failed(shard, { reason: `RunTask placed no task: ${reasons}` });
  }

  /** The shard's current attempt runs as `task`: record it and follow it. */
  #started(shard: ShardRun, task: TaskState, what: string): void {
    const { record } = shard;
    recordTask(this.#index, this.job.jobId, record.shard, record.attempt, task, this.worker.name);
    this.#updateShard(shard, { state: 'running', message: null });
    shard.task = this.#follow(shard, task.taskArn, record.attempt, task, Date.now(), false);
    this.#note(`shard ${record.shard}: ${what}`);
  }

  /** A RunTask that placed nothing: back off and try again, up to the capacity retries. */
  #unplaced(shard: ShardRun, why: string, definite: boolean): void {
    shard.unplaced += 1;
    // Only a definite "nothing placed" moves the clientToken on; an unknown outcome is asked again with the same one.
    this.#updateShard(shard, { message: why, ...(definite ? { launch: shard.record.launch + 1 } : {}) });
    if (shard.unplaced > this.#pacing.capacityRetries) {
      this.#updateShard(shard, { state: 'failed' });
      shard.gaveUp = true;
      this.#note(`shard ${shard.record.shard}: giving up after ${shard.unplaced} placements: ${why}`);
      return;
    }
    const delay = Math.min(this.#pacing.capacityMaxMs, this.#pacing.capacityFirstMs * 2 ** (shard.unplaced - 1));
    shard.nextLaunchAt = Date.now() + delay;
    this.#note(`shard ${shard.record.shard}: ${why}; trying again in ${Math.ceil(delay / 1000)} s`);
  }

  #follow(shard: ShardRun, arn: string, attempt: number, state: TaskState, since: number, shown: boolean): Followed {
    const log = new TaskLog(this.deps.logs, this.worker, arn, (line) => this.options.onLine?.(shard.record.shard, line));
    return { arn, attempt, state, log, since, shown };
  }

  /** DescribeTasks for the tasks followed, their logs, and a verdict for each stopped task whose log is read to the end. */
  async #observe(): Promise<boolean> {
    const followed = this.#shards.filter((s) => s.task !== undefined && s.record.state === 'running');
    if (followed.length === 0) return false;
    let changed = false;
    const states = new Map((await this.deps.tasks.describe(this.#cluster, followed.map((s) => s.task!.arn))).map((t) => [t.taskArn, t]));
    for (const shard of followed) {
      const task = shard.task!;
      const state = states.get(task.arn);
      if (state === undefined) {
        // Just started: ECS may not show it yet. Shown before, or started long ago: ECS forgot it (it keeps a stopped task for about an hour).
        if (!task.gone && (task.shown || Date.now() - task.since >= TASK_SETTLE_MS)) {
          task.gone = true;
          task.stoppedSeenAt ??= Date.now();
          changed = true;
          this.#note(`shard ${shard.record.shard}: ECS no longer shows task ${task.arn} (it forgets a stopped task about an hour after it stopped); reading its log to the end`);
        }
        continue;
      }
      task.shown = true;
      if (task.state?.lastStatus !== state.lastStatus || task.state?.desiredStatus !== state.desiredStatus) {
        changed = true;
        recordTask(this.#index, this.job.jobId, shard.record.shard, task.attempt, state, this.worker.name);
      }
      task.state = state;
      if (state.lastStatus === 'STOPPED') task.stoppedSeenAt ??= Date.now();
    }
    for (const shard of followed) {
      changed = (await shard.task!.log.pump()) || changed;
    }
    for (const shard of followed) {
      const task = shard.task!;
      if (task.stoppedSeenAt === undefined) continue;
      // The last lines reach the log after the task stops: read on until the result line, or until the log stays quiet.
      const quietSince = Math.max(task.stoppedSeenAt, task.log.lastNewAt);
      if (task.log.result === undefined && task.log.readable && Date.now() - quietSince < this.#pacing.logSettleMs) continue;
      await this.#judge(shard, task);
      changed = true;
    }
    return changed;
  }

  /**
   * A stopped task by its worker container, then by its result line. A task
   * ECS forgot before the driver saw it stop has no exit code to judge: only
   * a result line that matches what the driver expects (the worker prints it
   * after its last block was written) makes its shard done.
   */
  async #judge(shard: ShardRun, task: Followed): Promise<void> {
    shard.lastLines = [...task.log.lastLines];
    const unseenEnd = task.gone === true && task.state?.lastStatus !== 'STOPPED';
    const verdict = unseenEnd ? ({ ok: true } as const) : judgeStoppedTask(task.state!, this.worker.name);
    if (!verdict.ok) return this.#failed(shard, verdict);
    const { record } = shard;
    const expected = await expectedShardResult(this.source, record);
    const result = task.log.result;
    if (result === undefined && unseenEnd) {
      return this.#failed(shard, { reason: `ECS no longer knows task ${task.arn}, and its log holds no result line: how it ended is unknown` });
    } else if (result === undefined) {
      this.#note(`shard ${record.shard}: its result line did not arrive; the snapshot's aggregate checksum will check its blocks`);
    } else if (result.job !== this.job.jobId || result.shard !== record.shard || result.blocksWritten !== expected.blocksWritten || result.linear !== expected.linear) {
      return this.#failed(shard, {
        reason: `the worker reports ${result.blocksWritten} blocks with aggregate ${result.linear} for job ${result.job} shard ${result.shard}; expected ${expected.blocksWritten} blocks with ${expected.linear}`,
      });
    }
    this.#updateShard(shard, { state: 'succeeded', message: null });
    this.#note(`shard ${record.shard}: done (${expected.blocksWritten} block${expected.blocksWritten === 1 ? '' : 's'}, attempt ${task.attempt})`);
  }

  /** The attempt failed: a new task for this shard alone while retries last. */
  #failed(shard: ShardRun, failure: { reason: string; exitCode?: number }): void {
    shard.failures += 1;
    this.#updateShard(shard, { state: 'failed', message: failure.reason });
    if (shard.failures > this.retries) {
      shard.gaveUp = true;
      this.#note(`shard ${shard.record.shard}: failed: ${failure.reason}; no retries left`);
    } else {
      shard.nextLaunchAt = 0;
      this.#note(`shard ${shard.record.shard}: failed: ${failure.reason}; retrying as attempt ${shard.record.attempt + 1}`);
    }
  }

  #updateShard(shard: ShardRun, fields: Partial<Pick<EcsShardRecord, 'state' | 'attempt' | 'launch' | 'message'>>): void {
    this.#index.ecsJobs.updateShard(this.job.jobId, shard.record.shard, fields);
    shard.record = { ...shard.record, ...fields };
  }

  /** Every shard succeeded: the run's journal gets the digests, then CompleteSnapshot with the aggregate and the wait. */
  async #complete(deadline: number): Promise<void> {
    const snapshotId = this.job.snapshotId!;
    const run = this.#index.lineage.getSnapshot(snapshotId);
    if (run?.state === 'pending') {
      for (const shard of this.#shards) for await (const window of this.source.blocks(shard.record)) this.#index.runs.recordBlocks(snapshotId, window);
    }
    this.#note(`completing snapshot ${snapshotId}`);
    try {
      await completeAndCommit(this.#index, this.deps.writer, this.deps.catalog, snapshotId, {
        ...(deadline === Infinity ? {} : { waitTimeoutMs: Math.max(0, deadline - Date.now()) }),
        signal: this.options.signal,
      });
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.BAD_STATE)) this.#index.ecsJobs.update(this.job.jobId, { state: 'abandoned', message: err.message });
      throw this.#resumable(err, 0);
    }
    this.#index.ecsJobs.update(this.job.jobId, { state: 'completed', message: null });
  }

  /** StopTask for every task of the job that has not stopped; how many. Best effort: a failure is reported, the others still tried. */
  async #stopAll(reason: string): Promise<number> {
    let failure: unknown;
    let stopped = 0;
    for (const shard of this.#shards) {
      const task = shard.task;
      if (task === undefined || task.gone === true || task.state?.lastStatus === 'STOPPED') continue;
      try {
        await this.deps.tasks.stop(this.#cluster, task.arn, reason);
        stopped += 1;
        this.#note(`shard ${shard.record.shard}: stopped task ${task.arn}`);
      } catch (err) {
        failure ??= err;
      }
    }
    if (failure !== undefined) this.#note(`could not stop every task: ${toSnaplineError(failure).message}`);
    return stopped;
  }

  #timedOut(): SnaplineError {
    return new SnaplineError(ErrorCodes.TIMEOUT, `job ${this.job.jobId} is still running after the timeout; its tasks go on`, {
      hint: `follow it with \`snapline ecs status ${this.job.jobId}\`, or run the same command again to finish it`,
      details: { jobId: this.job.jobId, snapshotId: this.job.snapshotId },
    });
  }

  /** An interruption reworded to name the job, the tasks stopped and how to go on; other errors unchanged. */
  #resumable(err: unknown, stopped: number): unknown {
    const interrupted = isSnaplineError(err, ErrorCodes.INTERRUPTED) ? err : this.options.signal?.aborted ? abortError(this.options.signal) : undefined;
    if (interrupted === undefined) return err;
    const tasks = stopped > 0 ? `${stopped} task${stopped === 1 ? '' : 's'} stopped` : 'no task stopped';
    return new SnaplineError(ErrorCodes.INTERRUPTED, `${interrupted.message}; job ${this.job.jobId}: ${tasks}, snapshot ${this.job.snapshotId} stays pending`, {
      hint: 'run the same command again to resume the job',
      details: { jobId: this.job.jobId, snapshotId: this.job.snapshotId },
    });
  }

  #report(state: EcsJobReport['state'], started: number): EcsJobReport {
    const lastLines = new Map(this.#shards.map((s) => [s.record.shard, s.lastLines]));
    const job = this.#index.ecsJobs.get(this.job.jobId)!;
    return reportOf(this.#index, job, lastLines, started, state);
  }
}

function reportOf(
  index: Pick<IndexPorts, 'ecsJobs'>,
  job: EcsJobRecord,
  lastLines: ReadonlyMap<number, string[]>,
  started: number,
  state: EcsJobReport['state'] = job.state,
): EcsJobReport {
  const tasks = index.ecsJobs.tasks(job.jobId);
  const shards = index.ecsJobs.shards(job.jobId).map((record): EcsShardReport => {
    // The task of the shard's current attempt only: an earlier attempt's exit code is not this attempt's outcome.
    const task = tasks.filter((t) => t.shard === record.shard && t.attempt === record.attempt).at(-1);
    return {
      shard: record.shard,
      fromBlock: record.fromBlock,
      toBlock: record.toBlock,
      state: record.state,
      attempts: record.attempt,
      taskArn: task?.taskArn ?? null,
      lastStatus: task?.lastStatus ?? null,
      stopCode: task?.stopCode ?? null,
      stoppedReason: task?.stoppedReason ?? null,
      exitCode: task?.exitCode ?? null,
      message: record.message,
      lastLines: record.state === 'succeeded' ? [] : (lastLines.get(record.shard) ?? []),
    };
  });
  const exitCode = shards.find((s) => s.state === 'failed' && s.exitCode !== null && s.exitCode !== 0)?.exitCode ?? null;
  return {
    jobId: job.jobId,
    source: job.source,
    sourceKind: job.sourceKind,
    volume: job.volume,
    snapshotId: job.snapshotId,
    state,
    cluster: job.cluster,
    startedBy: job.startedBy,
    shards,
    exitCode,
    durationMs: Date.now() - started,
  };
}

/** RunTask failures that mean "no room now": retried with backoff. */
export function isCapacityFailure(reason: string): boolean {
  return /RESOURCE:(CPU|MEMORY|PORTS|GPU|ENI)/.test(reason) || /capacity is unavailable|insufficient capacity/i.test(reason);
}

function checkWhole(option: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `${option} must be a whole number from ${min} to ${max}, got ${value}`, { details: { option } });
  }
  return value;
}

/** The strings of `value` when it is an array (an error detail), else none. */
function stringsIn(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}
