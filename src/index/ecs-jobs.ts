/**
 * The ECS restore jobs of the index (schema migration 3): jobs, their shards
 * and every task they started. Each method maps
 * SQLite's errors and runs in its own transaction (IndexAccess); the
 * statements are prepared once.
 */
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { isUniqueViolation } from './sqlite-errors.js';
import { requireInteger, requireText } from './validate.js';

import type { EcsJobRecord, EcsJobState, EcsJobStore, EcsShardRecord, EcsShardState, EcsSourceKind, EcsTaskRecord, NewEcsJob } from '../core/index-ports.js';
export type { EcsJobRecord, EcsJobState, EcsShardRecord, EcsShardState, EcsSourceKind, EcsTaskRecord, NewEcsJob };

interface JobRow {
  job_id: string;
  source_kind: EcsSourceKind;
  source: string;
  volume: string;
  snapshot_id: string | null;
  cluster: string;
  task_definition: string;
  started_by: string;
  state: EcsJobState;
  message: string | null;
  created_at: number;
  updated_at: number;
}

interface ShardRow {
  shard: number;
  from_block: number;
  to_block: number;
  state: EcsShardState;
  attempt: number;
  launch: number;
  message: string | null;
}

interface TaskRow {
  task_arn: string;
  job_id: string;
  shard: number;
  attempt: number;
  last_status: string;
  stop_code: string | null;
  stopped_reason: string | null;
  exit_code: number | null;
  created_at: number;
  stopped_at: number | null;
}

function jobRecordOf(row: JobRow): EcsJobRecord {
  return {
    jobId: row.job_id,
    sourceKind: row.source_kind,
    source: row.source,
    volume: row.volume,
    snapshotId: row.snapshot_id,
    cluster: row.cluster,
    taskDefinition: row.task_definition,
    startedBy: row.started_by,
    state: row.state,
    message: row.message,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

function shardRecordOf(row: ShardRow): EcsShardRecord {
  return { shard: row.shard, fromBlock: row.from_block, toBlock: row.to_block, state: row.state, attempt: row.attempt, launch: row.launch, message: row.message };
}

function taskRecordOf(row: TaskRow): EcsTaskRecord {
  return {
    taskArn: row.task_arn,
    jobId: row.job_id,
    shard: row.shard,
    attempt: row.attempt,
    lastStatus: row.last_status,
    stopCode: row.stop_code,
    stoppedReason: row.stopped_reason,
    exitCode: row.exit_code,
    createdAt: new Date(row.created_at),
    stoppedAt: row.stopped_at === null ? null : new Date(row.stopped_at),
  };
}

const JOB_STATES = new Set<EcsJobState>(['running', 'failed', 'completed', 'abandoned']);
const SHARD_STATES = new Set<EcsShardState>(['waiting', 'running', 'succeeded', 'failed']);

function unknownJob(jobId: string): SnaplineError {
  return new SnaplineError(ErrorCodes.NOT_FOUND, `ECS job ${jobId} is not in the index`, { details: { jobId } });
}

/** The ECS job tables (EcsJobStore). */
export class EcsJobsStore implements EcsJobStore {
  readonly #access: IndexAccess;
  readonly #sql;

  constructor(access: IndexAccess) {
    this.#access = access;
    const db = access.db;
    this.#sql = {
      insertJob: db.prepare(
        `INSERT INTO ecs_jobs (job_id, source_kind, source, volume, cluster, task_definition, started_by, state, created_at, updated_at)
         VALUES (@job_id, @source_kind, @source, @volume, @cluster, @task_definition, @started_by, 'running', @now, @now)`,
      ),
      insertShard: db.prepare(`INSERT INTO ecs_shards (job_id, shard, from_block, to_block, state) VALUES (?, ?, ?, ?, 'waiting')`),
      job: db.prepare('SELECT * FROM ecs_jobs WHERE job_id = ?'),
      openJob: db.prepare(`SELECT * FROM ecs_jobs WHERE source = ? AND state IN ('running', 'failed')`),
      jobs: db.prepare('SELECT * FROM ecs_jobs ORDER BY created_at, job_id'),
      updateJob: db.prepare(
        `UPDATE ecs_jobs SET snapshot_id = coalesce(@snapshot_id, snapshot_id), state = coalesce(@state, state),
           message = CASE WHEN @set_message THEN @message ELSE message END, updated_at = @now WHERE job_id = @job_id`,
      ),
      shards: db.prepare('SELECT shard, from_block, to_block, state, attempt, launch, message FROM ecs_shards WHERE job_id = ? ORDER BY shard'),
      updateShard: db.prepare(
        `UPDATE ecs_shards SET state = coalesce(@state, state), attempt = coalesce(@attempt, attempt), launch = coalesce(@launch, launch),
           message = CASE WHEN @set_message THEN @message ELSE message END WHERE job_id = @job_id AND shard = @shard`,
      ),
      upsertTask: db.prepare(
        `INSERT INTO ecs_tasks (task_arn, job_id, shard, attempt, last_status, stop_code, stopped_reason, exit_code, created_at, stopped_at)
         VALUES (@task_arn, @job_id, @shard, @attempt, @last_status, @stop_code, @stopped_reason, @exit_code, @created_at, @stopped_at)
         ON CONFLICT (task_arn) DO UPDATE SET last_status = excluded.last_status, stop_code = excluded.stop_code,
           stopped_reason = excluded.stopped_reason, exit_code = excluded.exit_code, stopped_at = excluded.stopped_at`,
      ),
      tasks: db.prepare('SELECT * FROM ecs_tasks WHERE job_id = ? ORDER BY shard, attempt, created_at'),
    };
  }

  /** A new job, state running, with its shards waiting. CONFLICT when the source has an open job or the id is taken. */
  create(input: NewEcsJob, shards: ReadonlyArray<{ fromBlock: number; toBlock: number }>): EcsJobRecord {
    return this.#access.durably(() => {
      const row = {
        job_id: requireText('jobId', input?.jobId),
        source_kind: input.sourceKind === 'archive' ? 'archive' : 'snapshot',
        source: requireText('source', input.source),
        volume: requireText('volume', input.volume),
        cluster: requireText('cluster', input.cluster),
        task_definition: requireText('taskDefinition', input.taskDefinition),
        started_by: requireText('startedBy', input.startedBy),
        now: Date.now(),
      };
      if (shards.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'a job needs at least one shard');
      const open = this.#sql.openJob.get(row.source) as JobRow | undefined;
      if (open !== undefined) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `${row.source} already has an unfinished ECS job, ${open.job_id}`, {
          hint: 'run the same command again to resume it',
          details: { jobId: open.job_id },
        });
      }
      try {
        this.#sql.insertJob.run(row);
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new SnaplineError(ErrorCodes.CONFLICT, `ECS job ${row.job_id} (or its startedBy ${row.started_by}) is already in the index`);
      }
      shards.forEach((s, n) => {
        const from = requireInteger(`shards[${n}].fromBlock`, s.fromBlock, 0, Number.MAX_SAFE_INTEGER);
        this.#sql.insertShard.run(row.job_id, n, from, requireInteger(`shards[${n}].toBlock`, s.toBlock, from + 1, Number.MAX_SAFE_INTEGER));
      });
      return this.get(row.job_id)!;
    });
  }

  get(jobId: string): EcsJobRecord | undefined {
    return this.#access.run(() => {
      const row = this.#sql.job.get(jobId) as JobRow | undefined;
      return row === undefined ? undefined : jobRecordOf(row);
    });
  }

  /** The source's job that is running or failed, if any. */
  openFor(source: string): EcsJobRecord | undefined {
    return this.#access.run(() => {
      const row = this.#sql.openJob.get(source) as JobRow | undefined;
      return row === undefined ? undefined : jobRecordOf(row);
    });
  }

  /** Oldest first. */
  list(): EcsJobRecord[] {
    return this.#access.run(() => (this.#sql.jobs.all() as JobRow[]).map(jobRecordOf));
  }

  /** Sets the fields given; `message: null` clears it. */
  update(jobId: string, fields: { snapshotId?: string; state?: EcsJobState; message?: string | null }): EcsJobRecord {
    return this.#access.durably(() => {
      if (fields.state !== undefined && !JOB_STATES.has(fields.state)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown job state ${fields.state}`);
      const changed = this.#sql.updateJob.run({
        job_id: jobId,
        snapshot_id: fields.snapshotId ?? null,
        state: fields.state ?? null,
        set_message: fields.message === undefined ? 0 : 1,
        message: fields.message ?? null,
        now: Date.now(),
      }).changes;
      if (changed === 0) throw unknownJob(jobId);
      return this.get(jobId)!;
    });
  }

  shards(jobId: string): EcsShardRecord[] {
    return this.#access.run(() => (this.#sql.shards.all(jobId) as ShardRow[]).map(shardRecordOf));
  }

  /** Sets the fields given; `message: null` clears it. */
  updateShard(jobId: string, shard: number, fields: { state?: EcsShardState; attempt?: number; launch?: number; message?: string | null }): void {
    return this.#access.durably(() => {
      if (fields.state !== undefined && !SHARD_STATES.has(fields.state)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `unknown shard state ${fields.state}`);
      const changed = this.#sql.updateShard.run({
        job_id: jobId,
        shard,
        state: fields.state ?? null,
        attempt: fields.attempt === undefined ? null : requireInteger('attempt', fields.attempt, 0, Number.MAX_SAFE_INTEGER),
        launch: fields.launch === undefined ? null : requireInteger('launch', fields.launch, 0, Number.MAX_SAFE_INTEGER),
        set_message: fields.message === undefined ? 0 : 1,
        message: fields.message ?? null,
      }).changes;
      if (changed === 0) throw new SnaplineError(ErrorCodes.NOT_FOUND, `ECS job ${jobId} has no shard ${shard}`);
    });
  }

  /** Records a task or what ECS now says of it (keyed by ARN). */
  recordTask(task: EcsTaskRecord): void {
    return this.#access.durably(() => {
      this.#sql.upsertTask.run({
        task_arn: requireText('taskArn', task?.taskArn),
        job_id: task.jobId,
        shard: task.shard,
        attempt: task.attempt,
        last_status: requireText('lastStatus', task.lastStatus),
        stop_code: task.stopCode,
        stopped_reason: task.stoppedReason,
        exit_code: task.exitCode,
        created_at: task.createdAt.getTime(),
        stopped_at: task.stoppedAt === null ? null : task.stoppedAt.getTime(),
      });
    });
  }

  /** By shard, then attempt. */
  tasks(jobId: string): EcsTaskRecord[] {
    return this.#access.run(() => (this.#sql.tasks.all(jobId) as TaskRow[]).map(taskRecordOf));
  }
}
