import { describe, expect, it } from 'vitest';
import type { EcsTaskRecord, NewEcsJob } from '../../src/core/index-ports.js';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, freshIndex } from './index-support.js';

/** The behaviour the engine relies on from an EcsJobStore (src/core/index-ports.ts), for every implementation. */
export function ecsJobsContract(name: string, setup: IndexSetup): void {
  describe(`ECS jobs contract: ${name}`, () => {
    const current = freshIndex(setup);
    const job = (jobId: string, source = 'snap-1'): NewEcsJob => ({
      jobId,
      sourceKind: 'snapshot',
      source,
      volume: 'restored',
      cluster: 'cluster',
      taskDefinition: 'worker:1',
      startedBy: `snapline-${jobId}`,
    });
    const task = (taskArn: string, shard: number, attempt: number, lastStatus: string, at: number): EcsTaskRecord => ({
      taskArn,
      jobId: 'job-1',
      shard,
      attempt,
      lastStatus,
      stopCode: null,
      stoppedReason: null,
      exitCode: null,
      createdAt: new Date(at),
      stoppedAt: null,
    });

    it('creates a running job with its shards waiting; one open job per source', () => {
      const index = current();
      const created = index.ecsJobs.create(job('job-1'), [{ fromBlock: 0, toBlock: 100 }, { fromBlock: 100, toBlock: 150 }]);
      expect(created).toMatchObject({ jobId: 'job-1', state: 'running', snapshotId: null, message: null, source: 'snap-1' });
      expect(index.ecsJobs.shards('job-1')).toEqual([
        { shard: 0, fromBlock: 0, toBlock: 100, state: 'waiting', attempt: 0, launch: 0, message: null },
        { shard: 1, fromBlock: 100, toBlock: 150, state: 'waiting', attempt: 0, launch: 0, message: null },
      ]);
      expect(codeOf(() => index.ecsJobs.create(job('job-2'), [{ fromBlock: 0, toBlock: 1 }]))).toBe(ErrorCodes.CONFLICT);
      expect(codeOf(() => index.ecsJobs.create(job('job-1', 'snap-2'), [{ fromBlock: 0, toBlock: 1 }]))).toBe(ErrorCodes.CONFLICT);
      expect(codeOf(() => index.ecsJobs.create(job('job-3', 'snap-3'), []))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.ecsJobs.create(job('job-4', 'snap-4'), [{ fromBlock: 5, toBlock: 5 }]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.ecsJobs.openFor('snap-1')?.jobId).toBe('job-1');
      expect(index.ecsJobs.get('job-9')).toBeUndefined();
    });

    it('a failed job stays open; a completed or abandoned one frees its source', () => {
      const index = current();
      index.ecsJobs.create(job('job-1'), [{ fromBlock: 0, toBlock: 1 }]);
      const failed = index.ecsJobs.update('job-1', { state: 'failed', message: 'shard 0 failed', snapshotId: 'snap-new' });
      expect(failed).toMatchObject({ state: 'failed', message: 'shard 0 failed', snapshotId: 'snap-new' });
      expect(index.ecsJobs.openFor('snap-1')?.jobId).toBe('job-1');
      expect(index.ecsJobs.update('job-1', { state: 'running', message: null })).toMatchObject({ state: 'running', message: null, snapshotId: 'snap-new' });
      index.ecsJobs.update('job-1', { state: 'abandoned' });
      expect(index.ecsJobs.openFor('snap-1')).toBeUndefined();
      index.ecsJobs.create(job('job-2'), [{ fromBlock: 0, toBlock: 1 }]);
      expect(index.ecsJobs.list().map((j) => j.jobId)).toEqual(['job-1', 'job-2']);
      expect(codeOf(() => index.ecsJobs.update('job-9', { state: 'completed' }))).toBe(ErrorCodes.NOT_FOUND);
      expect(codeOf(() => index.ecsJobs.update('job-2', { state: 'done' as 'completed' }))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });

    it('updates the fields of a shard it is given', () => {
      const index = current();
      index.ecsJobs.create(job('job-1'), [{ fromBlock: 0, toBlock: 1 }, { fromBlock: 1, toBlock: 2 }]);
      index.ecsJobs.updateShard('job-1', 1, { state: 'running', attempt: 1 });
      index.ecsJobs.updateShard('job-1', 1, { launch: 2, message: 'no capacity' });
      expect(index.ecsJobs.shards('job-1')[1]).toEqual({ shard: 1, fromBlock: 1, toBlock: 2, state: 'running', attempt: 1, launch: 2, message: 'no capacity' });
      index.ecsJobs.updateShard('job-1', 1, { message: null });
      expect(index.ecsJobs.shards('job-1')[1]?.message).toBeNull();
      expect(index.ecsJobs.shards('job-1')[0]?.state).toBe('waiting');
      expect(codeOf(() => index.ecsJobs.updateShard('job-1', 2, { state: 'failed' }))).toBe(ErrorCodes.NOT_FOUND);
      expect(codeOf(() => index.ecsJobs.updateShard('job-1', 0, { state: 'lost' as 'failed' }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.ecsJobs.updateShard('job-1', 0, { attempt: -1 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });

    it('records tasks by ARN, by shard and attempt; a later word on a task updates its status', () => {
      const index = current();
      index.ecsJobs.create(job('job-1'), [{ fromBlock: 0, toBlock: 1 }, { fromBlock: 1, toBlock: 2 }]);
      index.ecsJobs.recordTask(task('arn:b', 1, 1, 'PROVISIONING', 1000));
      index.ecsJobs.recordTask(task('arn:a2', 0, 2, 'RUNNING', 3000));
      index.ecsJobs.recordTask(task('arn:a1', 0, 1, 'RUNNING', 2000));
      const stoppedAt = new Date(4000);
      index.ecsJobs.recordTask({ ...task('arn:a1', 0, 1, 'STOPPED', 9999), stopCode: 'EssentialContainerExited', stoppedReason: 'exit 1', exitCode: 1, stoppedAt });
      expect(index.ecsJobs.tasks('job-1').map((t) => t.taskArn)).toEqual(['arn:a1', 'arn:a2', 'arn:b']);
      expect(index.ecsJobs.tasks('job-1')[0]).toEqual({
        taskArn: 'arn:a1',
        jobId: 'job-1',
        shard: 0,
        attempt: 1,
        lastStatus: 'STOPPED',
        stopCode: 'EssentialContainerExited',
        stoppedReason: 'exit 1',
        exitCode: 1,
        createdAt: new Date(2000),
        stoppedAt,
      });
      expect(index.ecsJobs.tasks('job-9')).toEqual([]);
    });
  });
}
