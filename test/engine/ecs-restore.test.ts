/**
 * The ECS restore driver against fakes: the in-memory EBS, a real index in a
 * temp directory, and a fake cluster whose tasks run the worker's code
 * (copySnapshotShard) in this process, or behave as a test tells them to:
 * fail, hang, report a wrong result, print nothing. Pacing is shrunk to
 * milliseconds. The end-to-end tests cover the real endpoint and CLI.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { ContainerTasks, LaunchOutcome, LogLine, LogReader, TaskDefinitionInfo, TaskLaunch, TaskState } from '../../src/core/ports.js';
import { EC2_SETTLE_MS } from '../../src/engine/blocks/committer.js';
import { ecsRestore, ecsStatus, familyOf, type EcsRestoreDeps, type EcsRestoreOptions } from '../../src/engine/ecs/restore.js';
import { copySnapshotShard, formatShardResult } from '../../src/engine/ecs/worker.js';
import { ErrorCodes, isSnaplineError, SnaplineError } from '../../src/errors.js';
import type { HashPool } from '../../src/hashing/index.js';
import { BlockIndex } from '../../src/index/index.js';
import type { ArchivePlaces } from '../../src/engine/archive/places.js';
import { MemoryEbs } from '../fakes/memory-ebs.js';
import { rejection } from '../support/rejection.js';

/** What the next task launched does. */
/** 'held': does its work once released with release(). */
type Behaviour = 'work' | 'wrong-result' | 'silent' | 'hang' | 'held' | { exit: number };

interface FakeTask {
  state: TaskState;
  family: string;
  lines: string[];
  finish?: () => void;
}

/**
 * ECS and CloudWatch Logs in memory: one task per launch, its log a list of
 * lines. A client token reused with other launch parameters is refused
 * (CONFLICT), as ECS does.
 */
class FakeCluster implements ContainerTasks, LogReader {
  readonly launches: TaskLaunch[] = [];
  readonly stops: Array<{ taskArn: string; reason: string }> = [];
  readonly behaviours: Behaviour[] = [];
  readonly tasks = new Map<string, FakeTask>();
  readonly #byToken = new Map<string, { taskArn: string; launch: string }>();
  #next = 0;

  constructor(
    private readonly ebs: MemoryEbs,
    private readonly definition: TaskDefinitionInfo,
  ) {}

  async describeTaskDefinition(): Promise<TaskDefinitionInfo> {
    return this.definition;
  }

  /** RunTask calls still to place nothing for want of capacity (RESOURCE:MEMORY). */
  placementFailures = 0;

  async launch(launch: TaskLaunch): Promise<LaunchOutcome> {
    this.launches.push(launch);
    if (this.placementFailures > 0) {
      this.placementFailures -= 1;
      return { failures: [{ reason: 'RESOURCE:MEMORY' }] };
    }
    const { clientToken, ...parameters } = launch;
    const earlier = this.#byToken.get(clientToken);
    if (earlier !== undefined) {
      if (earlier.launch !== JSON.stringify(parameters)) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `client token ${clientToken} was used with other parameters`, { details: { resourceIds: [earlier.taskArn] } });
      }
      return { task: this.tasks.get(earlier.taskArn)?.state ?? { taskArn: earlier.taskArn, lastStatus: 'STOPPED', desiredStatus: 'STOPPED', tags: {}, containers: [] }, failures: [] };
    }
    const taskArn = `arn:aws:ecs:us-east-1:123456789012:task/${launch.cluster}/t${(this.#next += 1)}`;
    this.#byToken.set(clientToken, { taskArn, launch: JSON.stringify(parameters) });
    const task: FakeTask = {
      state: { taskArn, lastStatus: 'RUNNING', desiredStatus: 'RUNNING', startedBy: launch.startedBy, tags: { ...launch.tags }, containers: [{ name: 'sidecar' }, { name: 'worker' }] },
      family: familyOf(launch.taskDefinition),
      lines: [],
    };
    this.tasks.set(taskArn, task);
    void this.#run(task, launch, this.behaviours.shift() ?? 'work');
    const lost = this.answerLost;
    if (lost !== undefined) {
      this.answerLost = undefined;
      lost();
      throw new SnaplineError(ErrorCodes.UNAVAILABLE, 'the answer to RunTask was lost', { retryable: true });
    }
    return { task: { ...task.state }, failures: [] };
  }

  /** Starts a task the way another driver would have (for reattach tests). */
  async launchAs(launch: TaskLaunch, behaviour: Behaviour): Promise<string> {
    this.behaviours.unshift(behaviour);
    return (await this.launch(launch)).task!.taskArn;
  }

  async describe(_cluster: string, taskArns: readonly string[]): Promise<TaskState[]> {
    return taskArns.flatMap((arn) => {
      const task = this.tasks.get(arn);
      return task === undefined ? [] : [structuredClone(task.state)];
    });
  }

  /** When set, the next launch starts its task, calls this, and fails as if its answer were lost (once). */
  answerLost: (() => void) | undefined;

  /** Tasks ListTasks does not show yet (it is eventually consistent); DescribeTasks does. */
  readonly unlisted = new Set<string>();

  async list(_cluster: string, filter: { desiredStatus: 'RUNNING' | 'STOPPED'; family?: string }): Promise<string[]> {
    return [...this.tasks.values()]
      .filter((t) => !this.unlisted.has(t.state.taskArn))
      .filter((t) => t.state.desiredStatus === filter.desiredStatus && (filter.family === undefined || t.family === filter.family))
      .map((t) => t.state.taskArn);
  }

  /** ECS no longer lists or describes a task (it keeps stopped ones for about an hour); its client token stays spent. */
  forget(taskArn: string): void {
    this.tasks.delete(taskArn);
  }

  async stop(_cluster: string, taskArn: string, reason: string): Promise<void> {
    this.stops.push({ taskArn, reason });
    const task = this.tasks.get(taskArn)!;
    if (task.state.lastStatus !== 'STOPPED') this.#stopped(task, { stopCode: 'UserInitiated', stoppedReason: reason }, 143);
    task.finish?.();
  }

  async readForward(_group: string, stream: string, token: string | undefined): Promise<{ lines: LogLine[]; token: string | undefined }> {
    const task = [...this.tasks.values()].find((t) => stream.endsWith(`/${t.state.taskArn.split('/').at(-1)}`));
    if (task === undefined) return { lines: [], token };
    const from = Number(token ?? 0);
    return { lines: task.lines.slice(from).map((message) => ({ timestamp: new Date(), message })), token: String(task.lines.length) };
  }

  async #run(task: FakeTask, launch: TaskLaunch, behaviour: Behaviour): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 5));
    if (typeof behaviour === 'object') {
      task.lines.push('boom');
      return this.#stopped(task, { stopCode: 'EssentialContainerExited' }, behaviour.exit);
    }
    if (behaviour === 'hang') return new Promise<void>((resolve) => (task.finish = resolve));
    if (behaviour === 'held') await new Promise<void>((resolve) => (task.finish = resolve));
    const flag = (name: string) => launch.command[launch.command.indexOf(name) + 1]!;
    const result = await copySnapshotShard(
      { reader: this.ebs, writer: this.ebs },
      { sourceSnapshotId: flag('--source-snapshot'), snapshotId: flag('--snapshot'), fromBlock: Number(flag('--from')), toBlock: Number(flag('--to')), encrypted: false },
    );
    if (behaviour !== 'silent') {
      task.lines.push(`shard ${flag('--shard')}: wrote ${result.blocksWritten} blocks`);
      const linear = behaviour === 'wrong-result' ? sha256(Buffer.from('something else')).toString('base64') : result.linear;
      task.lines.push(
        formatShardResult({ job: flag('--job'), shard: Number(flag('--shard')), fromBlock: Number(flag('--from')), toBlock: Number(flag('--to')), blocksWritten: result.blocksWritten, linear }),
      );
    }
    this.#stopped(task, { stopCode: 'EssentialContainerExited' }, 0);
  }

  #stopped(task: FakeTask, why: { stopCode: string; stoppedReason?: string }, exitCode: number): void {
    task.state = {
      ...task.state,
      ...why,
      lastStatus: 'STOPPED',
      desiredStatus: 'STOPPED',
      containers: [
        { name: 'sidecar', exitCode: 0 },
        { name: 'worker', exitCode },
      ],
    };
  }
}

const WITH_LOGS: TaskDefinitionInfo = {
  arn: 'arn:td/snapline-worker:1',
  containers: [
    { name: 'sidecar', essential: false },
    { name: 'worker', essential: true, logGroup: '/snapline/worker', logStreamPrefix: 'snapline' },
  ],
};

let dir: string;
let index: BlockIndex;
let ebs: MemoryEbs;
let cluster: FakeCluster;
let source: string;
let content: Map<number, Buffer>;

function deps(definition = WITH_LOGS): EcsRestoreDeps {
  cluster = new FakeCluster(ebs, definition);
  return {
    index,
    writer: ebs,
    catalog: ebs,
    tasks: cluster,
    logs: cluster,
    settings: { cluster: 'restores', taskDefinition: 'snapline-worker', region: 'us-east-1' },
    archives: {} as ArchivePlaces,
    hashPool: {} as HashPool,
  };
}

const fast = { pollFirstMs: 2, pollMaxMs: 10, capacityFirstMs: 2, capacityMaxMs: 10, logSettleMs: 30 };
const notes: string[] = [];
const options = (more: Partial<EcsRestoreOptions> = {}): EcsRestoreOptions => ({ source, pacing: fast, onNote: (n) => notes.push(n), ...more });

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-ecs-engine-'));
  index = BlockIndex.open(join(dir, 'index.db'));
  ebs = new MemoryEbs();
  notes.length = 0;
  // A source snapshot of 12 blocks with distinct bytes, known to the index.
  content = new Map(Array.from({ length: 12 }, (_, i) => [i * 3, Buffer.alloc(BLOCK_SIZE, i + 1)]));
  const started = await ebs.startSnapshot({ volumeSizeGiB: 1 });
  for (const [i, data] of content) await ebs.putBlock(started.snapshotId, i, data, sha256(data).toString('base64'));
  const blocks = [...content].map(([i, data]) => ({ index: i, digest: sha256(data) }));
  expect(await ebs.completeSnapshot(started.snapshotId, blocks.length, linearAggregateOf(blocks))).toBe('completed');
  source = started.snapshotId;
  index.lineage.ensureVolume({ name: 'db', sourcePath: '/dev/db', sizeBytes: 36 * BLOCK_SIZE });
  index.lineage.importSnapshot({ snapshotId: source, volume: 'db', parentSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 36 * BLOCK_SIZE, encrypted: false, description: null }, blocks);
});
afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

function expectCopied(snapshotId: string): void {
  expect(ebs.inspect(snapshotId)?.status).toBe('completed');
  const copied = ebs.contentOf(snapshotId);
  expect([...copied.keys()].sort((a, b) => a - b)).toEqual([...content.keys()]);
  for (const [i, data] of content) expect(copied.get(i)!.equals(data)).toBe(true);
}

describe('ecsRestore with a fake cluster', () => {
  it('splits by data, completes the snapshot with the digests it knows, and records the job', async () => {
    const report = await ecsRestore(deps(), options({ shards: 3 }));
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => [s.fromBlock, s.toBlock, s.state])).toEqual([
      [0, 12, 'succeeded'],
      [12, 24, 'succeeded'],
      [24, 2048, 'succeeded'],
    ]);
    expectCopied(report.snapshotId!);
    expect(index.lineage.getSnapshot(report.snapshotId!)).toMatchObject({ state: 'completed', volume: 'db-restored', changedBlocks: 12 });
    expect(cluster.launches.map((l) => [l.clientToken, l.startedBy, l.tags['snapline:attempt']])).toEqual([
      [`${report.jobId}-0-1-0`, `snapline-${report.jobId}`, '1'],
      [`${report.jobId}-1-1-0`, `snapline-${report.jobId}`, '1'],
      [`${report.jobId}-2-1-0`, `snapline-${report.jobId}`, '1'],
    ]);
  });

  it('a result line that does not match the digests the driver knows fails the shard, and its retry succeeds', async () => {
    const d = deps();
    cluster.behaviours.push('wrong-result');
    const report = await ecsRestore(d, options({ shards: 2 }));
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => s.attempts)).toEqual([2, 1]);
    expect(notes.join('\n')).toMatch(/shard 0: failed: the worker reports 6 blocks with aggregate \S+ .*expected 6 blocks with \S+; retrying as attempt 2/);
  });

  it('without readable logs the exit code decides, and the snapshot aggregate stays the check', async () => {
    const d = deps({ arn: 'arn:td/plain:1', containers: [{ name: 'worker', essential: true }] });
    cluster.behaviours.push('silent', 'silent');
    const report = await ecsRestore(d, options({ shards: 2 }));
    expect(report.state).toBe('completed');
    expect(notes.join('\n')).toContain('has no awslogs group and stream prefix');
    expectCopied(report.snapshotId!);
  });

  it('when retries run out the job fails with the first failed shard\'s exit code; the snapshot stays pending', async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 7 }, 'work', { exit: 9 });
    const report = await ecsRestore(d, options({ shards: 2, retries: 1 }));
    expect(report.state).toBe('failed');
    expect(report.exitCode).toBe(9);
    expect(report.shards.map((s) => [s.state, s.attempts, s.exitCode])).toEqual([
      ['failed', 2, 9],
      ['succeeded', 1, 0],
    ]);
    expect(report.shards[0]!.lastLines).toEqual(['boom']);
    expect(ebs.inspect(report.snapshotId!)?.status).toBe('pending');
    expect(index.ecsJobs.get(report.jobId)?.message).toMatch(/shard 0: the worker container exited with code 9/);
  });

  it('a retry whose placement finds no capacity is placed again once there is room, and the job ends', async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 42 });
    const report = await ecsRestore(d, {
      ...options({ shards: 1, timeoutMs: 10_000 }),
      onNote: (note) => {
        notes.push(note);
        if (note.includes('retrying as attempt 2')) cluster.placementFailures = 2;
      },
    });
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => [s.state, s.attempts, s.exitCode])).toEqual([['succeeded', 2, 0]]);
    expect(cluster.launches.map((l) => l.clientToken)).toEqual([1, 2, 3, 4].map((n) => `${report.jobId}-0-${n === 1 ? 1 : 2}-${n === 1 ? 0 : n - 2}`));
    expectCopied(report.snapshotId!);
  });

  it("a shard whose last attempt found no capacity reports that attempt, not the task and exit code of the attempt before it", async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 42 });
    const report = await ecsRestore(d, {
      ...options({ shards: 1, retries: 1, timeoutMs: 10_000 }),
      onNote: (note) => {
        notes.push(note);
        if (note.includes('retrying as attempt 2')) cluster.placementFailures = 100;
      },
    });
    expect(report.state).toBe('failed');
    expect(report.shards.map((s) => [s.state, s.attempts, s.taskArn, s.exitCode])).toEqual([['failed', 2, null, null]]);
    expect(report.shards[0]!.message).toMatch(/^no capacity: RESOURCE:MEMORY/);
    expect(report.exitCode).toBeNull();
  });

  it('--timeout leaves the tasks running and says how to follow them; the next run adopts them', async () => {
    const d = deps();
    cluster.behaviours.push('hang');
    const error = await ecsRestore(d, options({ shards: 1, timeoutMs: 50 })).catch((e: unknown) => e);
    expect(isSnaplineError(error, ErrorCodes.TIMEOUT)).toBe(true);
    expect(cluster.stops).toEqual([]);
    const [arn] = [...cluster.tasks.keys()];
    const status = await ecsStatus(d, index.ecsJobs.list()[0]!.jobId);
    expect(status.shards.map((s) => [s.state, s.taskArn, s.lastStatus])).toEqual([['running', arn, 'RUNNING']]);
    await cluster.stop('restores', arn!, 'test');
    const again = await ecsRestore(d, options({ retries: 0 }));
    expect(again.state).toBe('failed');
    expect(cluster.launches).toHaveLength(1);
  });

  it('reattach stops a task of an older attempt still running and follows the current one', async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 1 });
    const failed = await ecsRestore(d, options({ shards: 1, retries: 0 }));
    expect(failed.state).toBe('failed');
    // A ghost of attempt 1 still running (a task the index missed), and attempt 2 started by a driver that died.
    const launch = cluster.launches[0]!;
    const ghost = await cluster.launchAs({ ...launch, clientToken: 'ghost' }, 'hang');
    index.ecsJobs.updateShard(failed.jobId, 0, { state: 'waiting', attempt: 2, launch: 0 });
    await cluster.launchAs({ ...launch, clientToken: `${failed.jobId}-0-2-0`, tags: { ...launch.tags, 'snapline:attempt': '2' } }, 'work');
    const report = await ecsRestore(d, options());
    expect(report.state).toBe('completed');
    expect(cluster.stops).toEqual([{ taskArn: ghost, reason: 'snapline: attempt 2 of shard 0 replaces this task' }]);
    expect(cluster.launches).toHaveLength(3);
    expectCopied(report.snapshotId!);
  });

  it('reattach finds a task that stopped while no driver watched (listing stopped tasks of the family, matching startedBy): its shard runs nothing again; tasks of another job are left alone', async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 1 });
    const failed = await ecsRestore(d, options({ shards: 1, retries: 0 }));
    const launch = cluster.launches[0]!;
    // Attempt 2 started by a driver that died before recording it; it ran to the end while no driver watched.
    index.ecsJobs.updateShard(failed.jobId, 0, { state: 'waiting', attempt: 2, launch: 0 });
    const arn = await cluster.launchAs({ ...launch, clientToken: 'answer-lost', tags: { ...launch.tags, 'snapline:attempt': '2' } }, 'work');
    // Another job's task of the same family, tagged as a later attempt of shard 0: not this job's.
    await cluster.launchAs({ ...launch, clientToken: 'other-job', startedBy: 'snapline-j-other', tags: { ...launch.tags, 'snapline:attempt': '7' } }, { exit: 1 });
    while ([...cluster.tasks.values()].some((t) => t.state.lastStatus !== 'STOPPED')) await new Promise((resolve) => setTimeout(resolve, 2));
    const report = await ecsRestore(d, options());
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => [s.attempts, s.taskArn])).toEqual([[2, arn]]);
    expect(cluster.launches).toHaveLength(3);
    expectCopied(report.snapshotId!);
  });

  it('reattach an hour later to a task ECS forgot before any driver saw it stop, whose log holds no result line: not taken for done, its shard runs again as a new attempt', async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 1 });
    const detached = await ecsRestore(d, options({ shards: 1, detach: true }));
    const [arn] = [...cluster.tasks.keys()];
    while (cluster.tasks.get(arn!)!.state.lastStatus !== 'STOPPED') await new Promise((resolve) => setTimeout(resolve, 2));
    cluster.forget(arn!);
    const realNow = Date.now.bind(Date);
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 60 * 60 * 1000);
    let report;
    try {
      report = await ecsRestore(d, options());
    } finally {
      clock.mockRestore();
    }
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => s.attempts)).toEqual([2]);
    expect(cluster.launches.map((l) => l.clientToken)).toEqual([`${detached.jobId}-0-1-0`, `${detached.jobId}-0-2-0`]);
    expect(notes.join('\n')).toContain(`shard 0: failed: ECS no longer knows task ${arn}, and its log holds no result line`);
    expectCopied(report.snapshotId!);
  });

  it("reattach: a job's snapshot EC2 does not list is waited for, saying so, until EC2_SETTLE_MS after its run started; only then is the job abandoned and a new one started", async () => {
    const d = deps();
    cluster.behaviours.push({ exit: 1 });
    const failed = await ecsRestore(d, options({ shards: 1, retries: 0 }));
    expect(failed.state).toBe('failed');
    await ebs.deleteSnapshot(failed.snapshotId!);
    const startedAt = index.lineage.getSnapshot(failed.snapshotId!)!.startedAt.getTime();
    // The clock jumps to the end of the settle window once the driver says it waits: before that, "not listed" is "not yet".
    const realNow = Date.now.bind(Date);
    let ahead = 0;
    const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + ahead);
    let report;
    try {
      const waiting = (note: string) => {
        notes.push(note);
        if (note.includes(`waiting for EC2 to list its snapshot ${failed.snapshotId}`)) ahead = startedAt + EC2_SETTLE_MS - realNow();
      };
      report = await ecsRestore(d, options({ onNote: waiting }));
    } finally {
      clock.mockRestore();
    }
    const said = notes.join('\n');
    const waited = said.indexOf(`job ${failed.jobId}: waiting for EC2 to list its snapshot ${failed.snapshotId}: it does not list it yet`);
    expect(waited).toBeGreaterThanOrEqual(0);
    expect(said.indexOf(`job ${failed.jobId}: its snapshot ${failed.snapshotId} is no longer pending`)).toBeGreaterThan(waited);
    expect(index.ecsJobs.get(failed.jobId)).toMatchObject({ state: 'abandoned' });
    expect(report.jobId).not.toBe(failed.jobId);
    expect(report.state).toBe('completed');
    expectCopied(report.snapshotId!);
  });

  it('a job keeps its cluster and task definition; a client token refused as used with other parameters (the settings changed, its task unrecorded and forgotten) moves on to a new token', async () => {
    const d = deps();
    cluster.behaviours.push('hang');
    const abort = new AbortController();
    // The driver dies right after RunTask started the task, its answer never read: the index does not know the task.
    cluster.answerLost = () => abort.abort();
    expect(isSnaplineError(await ecsRestore(d, options({ shards: 1, signal: abort.signal })).catch((e: unknown) => e), ErrorCodes.INTERRUPTED)).toBe(true);
    const [arn] = [...cluster.tasks.keys()];
    const jobId = index.ecsJobs.list()[0]!.jobId;
    await cluster.stop('restores', arn!, 'test');
    cluster.forget(arn!);
    d.settings = { ...d.settings, cluster: 'elsewhere', launchType: 'EC2' };
    const report = await ecsRestore(d, options());
    expect(report.state).toBe('completed');
    const token = (n: number) => `${jobId}-0-1-${n}`;
    expect(cluster.launches.map((l) => [l.clientToken, l.cluster, l.taskDefinition])).toEqual([
      [token(0), 'restores', 'snapline-worker'],
      [token(0), 'restores', 'snapline-worker'],
      [token(1), 'restores', 'snapline-worker'],
    ]);
    expect(notes.join('\n')).toContain(`job ${jobId} keeps its cluster restores and task definition snapline-worker`);
    expect(notes.join('\n')).toContain(`client token ${token(0)} was used with other RunTask parameters`);
    expectCopied(report.snapshotId!);
  });

  it('a client token refused as used with other parameters while its task still runs (its answer lost, ListTasks not showing it yet): the task is followed, no new token', async () => {
    const d = deps();
    cluster.behaviours.push('held');
    const abort = new AbortController();
    // The driver dies right after RunTask started the task, its answer never read.
    cluster.answerLost = () => abort.abort();
    expect(isSnaplineError(await ecsRestore(d, options({ shards: 1, signal: abort.signal })).catch((e: unknown) => e), ErrorCodes.INTERRUPTED)).toBe(true);
    const [arn] = [...cluster.tasks.keys()];
    const jobId = index.ecsJobs.list()[0]!.jobId;
    while (cluster.tasks.get(arn!)!.finish === undefined) await new Promise((resolve) => setTimeout(resolve, 2));
    cluster.unlisted.add(arn!);
    d.settings = { ...d.settings, launchType: 'EC2' };
    const report = await ecsRestore(d, {
      ...options(),
      onNote: (note) => {
        notes.push(note);
        // Once the driver follows the task, let it do its work.
        if (note.includes('following it')) cluster.tasks.get(arn!)!.finish?.();
      },
    });
    expect(report.state).toBe('completed');
    const token = `${jobId}-0-1-0`;
    expect(cluster.launches.map((l) => l.clientToken)).toEqual([token, token]);
    expect(notes.join('\n')).toContain(`shard 0: client token ${token} already started task ${arn} (RUNNING); following it`);
    expect(cluster.stops).toEqual([]);
    expectCopied(report.snapshotId!);
  });

  it('a definition in network mode awsvpc without subnets in the connection, or subnets for another mode, is refused before anything starts', async () => {
    const d = deps({ ...WITH_LOGS, networkMode: 'awsvpc' });
    const missing = await rejection(ecsRestore(d, options()));
    expect([missing.code, missing.message, missing.hint]).toEqual([
      ErrorCodes.INVALID_ARGUMENT,
      'task definition arn:td/snapline-worker:1 uses network mode awsvpc: ECS runs it only with subnets, and the connection names none',
      'set ecs.subnets (and ecs.security_groups) of the connection',
    ]);
    expect([index.ecsJobs.list(), cluster.launches]).toEqual([[], []]);
    d.settings = { ...d.settings, network: { subnets: ['subnet-1'] } };
    expect((await ecsRestore(d, options())).state).toBe('completed');
    const bridge = deps();
    bridge.settings = { ...bridge.settings, network: { subnets: ['subnet-1'] } };
    expect((await rejection(ecsRestore(bridge, options({ volume: 'db-bridge' })))).message).toMatch(/uses network mode bridge: ECS takes subnets only for network mode awsvpc/);
  });

  it('familyOf: the family of a task definition given as family, family:revision or ARN', () => {
    expect(['snapline-worker', 'snapline-worker:3', 'arn:aws:ecs:us-east-1:123456789012:task-definition/snapline-worker:3'].map(familyOf)).toEqual(Array(3).fill('snapline-worker'));
  });

  it('cancelling stops the running tasks with a reason', async () => {
    const d = deps();
    cluster.behaviours.push('hang', 'hang');
    const abort = new AbortController();
    const running = ecsRestore(d, options({ shards: 2, signal: abort.signal }));
    while (cluster.tasks.size < 2) await new Promise((resolve) => setTimeout(resolve, 2));
    abort.abort();
    const error = await running.catch((e: unknown) => e);
    expect(isSnaplineError(error, ErrorCodes.INTERRUPTED)).toBe(true);
    expect((error as Error).message).toMatch(/2 tasks stopped, snapshot snap-\w+ stays pending/);
    expect(cluster.stops.map((s) => s.reason)).toEqual(Array(2).fill(`snapline: interrupted (job ${index.ecsJobs.list()[0]!.jobId})`));
  });

  it('--detach launches every shard and returns, leaving the tasks running', async () => {
    const d = deps();
    cluster.behaviours.push('hang', 'hang');
    const report = await ecsRestore(d, options({ shards: 2, detach: true }));
    expect(report.state).toBe('detached');
    expect(report.shards.map((s) => [s.state, s.lastStatus])).toEqual(Array(2).fill(['running', 'RUNNING']));
    expect(cluster.stops).toEqual([]);
    expect(index.ecsJobs.get(report.jobId)?.state).toBe('running');
  });
});
