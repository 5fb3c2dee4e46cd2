import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, isSnaplineError } from '../errors.js';
import { BlockIndex } from './index.js';

let dir: string;
let index: BlockIndex;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-ecs-jobs-'));
  index = BlockIndex.open(join(dir, 'index.db'));
});
afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

const job = (jobId: string, source = 'snap-0a') => ({
  jobId,
  sourceKind: 'snapshot' as const,
  source,
  volume: 'db-restored',
  cluster: 'restores',
  taskDefinition: 'snapline-worker',
  startedBy: `snapline-${jobId}`,
});

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('ECS jobs in the index', () => {
  it('records a job, its shards and tasks, and keeps them across reopening', () => {
    const created = index.ecsJobs.create(job('j-1'), [
      { fromBlock: 0, toBlock: 100 },
      { fromBlock: 100, toBlock: 180 },
    ]);
    expect(created).toMatchObject({ jobId: 'j-1', state: 'running', snapshotId: null, startedBy: 'snapline-j-1', message: null });
    index.ecsJobs.update('j-1', { snapshotId: 'snap-0b' });
    index.ecsJobs.updateShard('j-1', 1, { state: 'running', attempt: 1 });
    index.ecsJobs.updateShard('j-1', 1, { launch: 2, message: 'capacity: RESOURCE:MEMORY' });
    const createdAt = new Date(1_700_000_000_000);
    index.ecsJobs.recordTask({ taskArn: 'arn:t1', jobId: 'j-1', shard: 1, attempt: 1, lastStatus: 'RUNNING', stopCode: null, stoppedReason: null, exitCode: null, createdAt, stoppedAt: null });
    index.ecsJobs.recordTask({ taskArn: 'arn:t1', jobId: 'j-1', shard: 1, attempt: 1, lastStatus: 'STOPPED', stopCode: 'EssentialContainerExited', stoppedReason: 'done', exitCode: 3, createdAt, stoppedAt: new Date(1_700_000_001_000) });

    index.close();
    index = BlockIndex.open(join(dir, 'index.db'));
    expect(index.ecsJobs.get('j-1')).toMatchObject({ snapshotId: 'snap-0b', state: 'running' });
    expect(index.ecsJobs.shards('j-1')).toEqual([
      { shard: 0, fromBlock: 0, toBlock: 100, state: 'waiting', attempt: 0, launch: 0, message: null },
      { shard: 1, fromBlock: 100, toBlock: 180, state: 'running', attempt: 1, launch: 2, message: 'capacity: RESOURCE:MEMORY' },
    ]);
    expect(index.ecsJobs.tasks('j-1')).toEqual([
      { taskArn: 'arn:t1', jobId: 'j-1', shard: 1, attempt: 1, lastStatus: 'STOPPED', stopCode: 'EssentialContainerExited', stoppedReason: 'done', exitCode: 3, createdAt, stoppedAt: new Date(1_700_000_001_000) },
    ]);
    expect(index.check()).toEqual([]);
  });

  it('allows one open job per source; a completed or abandoned one makes room', () => {
    index.ecsJobs.create(job('j-1'), [{ fromBlock: 0, toBlock: 1 }]);
    const conflict = caught(() => index.ecsJobs.create(job('j-2'), [{ fromBlock: 0, toBlock: 1 }]));
    expect(isSnaplineError(conflict, ErrorCodes.CONFLICT) && conflict.details?.jobId).toBe('j-1');
    index.ecsJobs.update('j-1', { state: 'failed', message: 'shard 0 failed' });
    expect(index.ecsJobs.openFor('snap-0a')?.jobId).toBe('j-1');
    index.ecsJobs.update('j-1', { state: 'abandoned' });
    expect(index.ecsJobs.openFor('snap-0a')).toBeUndefined();
    index.ecsJobs.create(job('j-2'), [{ fromBlock: 0, toBlock: 1 }]);
    expect(index.ecsJobs.list().map((j) => [j.jobId, j.state, j.message])).toEqual([
      ['j-1', 'abandoned', 'shard 0 failed'],
      ['j-2', 'running', null],
    ]);
  });

  it('refuses unknown jobs and shards, empty shard lists and tasks of unknown shards', () => {
    expect(isSnaplineError(caught(() => index.ecsJobs.update('nope', { state: 'failed' })), ErrorCodes.NOT_FOUND)).toBe(true);
    expect(isSnaplineError(caught(() => index.ecsJobs.create(job('j-1'), [])), ErrorCodes.INVALID_ARGUMENT)).toBe(true);
    index.ecsJobs.create(job('j-1'), [{ fromBlock: 0, toBlock: 1 }]);
    expect(isSnaplineError(caught(() => index.ecsJobs.updateShard('j-1', 5, { state: 'failed' })), ErrorCodes.NOT_FOUND)).toBe(true);
    const now = new Date();
    expect(
      caught(() =>
        index.ecsJobs.recordTask({ taskArn: 'arn:x', jobId: 'j-1', shard: 5, attempt: 1, lastStatus: 'PENDING', stopCode: null, stoppedReason: null, exitCode: null, createdAt: now, stoppedAt: null }),
      ),
    ).toBeInstanceOf(Error);
  });
});
