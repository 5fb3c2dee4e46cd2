/**
 * `snapline ecs restore` as a user runs it: the built CLI as a child process
 * driving the local endpoint's ECS, whose tasks run `snapline worker shard`
 * as child processes of the endpoint (in this test process) and write into
 * the endpoint's EBS; their output reaches the driver through the endpoint's
 * CloudWatch Logs. dist/ is built by test/e2e/global-setup.ts.
 */
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeTasksCommand, ECSClient, ListTasksCommand, type Task } from '@aws-sdk/client-ecs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { createArchive } from '../../src/engine/archive/archive.js';
import { backup } from '../../src/engine/backup/backup.js';
import { BlockIndex } from '../../src/index/index.js';
import { killStrays, startCli, until, type CliResult } from '../support/cli.js';
import { writeImage } from '../support/images.js';
import { withLocalSession } from '../support/local-endpoint.js';

let work: string;
let indexPath: string;
let emulator: RunningEmulator;
let ecs: ECSClient;
let logs: CloudWatchLogsClient;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-ecs-e2e-'));
  indexPath = join(work, 'index.db');
  emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
  const config = { endpoint: emulator.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
  ecs = new ECSClient(config);
  logs = new CloudWatchLogsClient(config);
});
afterEach(() => {
  killStrays();
  emulator.setFaults({});
});
afterAll(async () => {
  ecs?.destroy();
  logs?.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

/** `snapline <globals> ...args` against the endpoint and the test's index. */
function snapline(args: string[]) {
  return startCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', indexPath, '--no-progress', ...args], { dataDir: join(work, 'data'), cwd: work });
}

/** `snapline ecs restore SOURCE ...` with a short wait for the last log lines (the endpoint ships them within 150 ms). */
function ecsRestore(source: string, ...more: string[]) {
  return snapline(['--json', 'ecs', 'restore', source, '--log-wait', '1', ...more]);
}

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

interface Report {
  jobId: string;
  state: string;
  snapshotId: string;
  startedBy: string;
  exitCode: number | null;
  shards: Array<{ shard: number; state: string; attempts: number; exitCode: number | null; lastLines: string[] }>;
}

/** Backs up a fresh image (library call: setup, not what is under test); its bytes and snapshot id. */
async function sourceSnapshot(name: string, blocks: number, zeroBlocks: number[] = []): Promise<{ image: string; bytes: Buffer; snapshotId: string }> {
  const image = join(work, `${name}.img`);
  const bytes = writeImage(image, { label: name, blocks, zeroBlocks, tailBytes: 1000 });
  const result = await withLocalSession(emulator, indexPath, (session) => backup(session, { source: image, volume: name }));
  if (result.snapshotId === null) throw new Error(`the backup of ${image} took no snapshot`);
  return { image, bytes, snapshotId: result.snapshotId };
}

/**
 * The job's tasks, stopped or running, with their tags: every task of the
 * default cluster by desired status, kept when DescribeTasks shows it
 * started by `startedBy` (ListTasks takes startedBy only alone, and then
 * lists running tasks only).
 */
async function jobTasks(startedBy: string): Promise<Task[]> {
  const arns: string[] = [];
  for (const desiredStatus of ['RUNNING', 'STOPPED'] as const) {
    let nextToken: string | undefined;
    do {
      const page = await ecs.send(new ListTasksCommand({ desiredStatus, ...(nextToken === undefined ? {} : { nextToken }) }));
      arns.push(...(page.taskArns ?? []));
      nextToken = page.nextToken;
    } while (nextToken !== undefined);
  }
  const tasks: Task[] = [];
  for (let start = 0; start < arns.length; start += 100) {
    tasks.push(...((await ecs.send(new DescribeTasksCommand({ tasks: arns.slice(start, start + 100), include: ['TAGS'] }))).tasks ?? []));
  }
  return tasks.filter((task) => task.startedBy === startedBy);
}

/** Archives a snapshot in an S3 bucket in class STANDARD (readable at once); the archive id. */
async function archived(snapshotId: string, bucket: string): Promise<string> {
  const s3 = new S3Client({ endpoint: emulator.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, forcePathStyle: true });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    s3.destroy();
  }
  const created = await withLocalSession(emulator, indexPath, (session) => createArchive(session, { snapshotId, to: 's3', storageClass: 'STANDARD' }), { archive: { bucket } });
  return created.archiveId;
}

const tag = (task: Task, key: string) => task.tags?.find((t) => t.key === key)?.value;

/** Restores `snapshotId` to a file with the CLI and compares it with `expected`. */
async function expectRestoresTo(snapshotId: string, expected: Buffer, name: string): Promise<void> {
  const target = join(work, `${name}.restored`);
  expectExit(await snapline(['restore', snapshotId, target]).done, 0);
  const actual = await readFile(target);
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected), `${target} equals the source image`).toBe(true);
}

describe('snapline ecs restore on the local endpoint', () => {
  it('restores with --shards 4: every shard a task, every task log line printed, the snapshot restores byte for byte', async () => {
    const source = await sourceSnapshot('sharded', 40, [3, 4, 5, 30]);
    const run = await ecsRestore(source.snapshotId, '--shards', '4').done;
    expectExit(run, 0);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => [s.state, s.attempts, s.exitCode])).toEqual(Array(4).fill(['succeeded', 1, 0]));

    const tasks = await jobTasks(report.startedBy);
    expect(tasks.map((t) => Number(tag(t, 'snapline:shard'))).sort()).toEqual([0, 1, 2, 3]);
    for (const task of tasks) {
      expect(task.lastStatus).toBe('STOPPED');
      // Every line of the worker's stream, the last one included, went through the driver with its shard.
      const stream = `snapline/worker/${task.taskArn!.split('/').at(-1)}`;
      const events = await logs.send(new GetLogEventsCommand({ logGroupName: '/snapline/worker', logStreamName: stream, startFromHead: true }));
      const lines = events.events!.map((e) => e.message!);
      expect(lines.at(-1)).toMatch(/^\{"snaplineShardResult"/);
      for (const line of lines) expect(run.stderr).toContain(`[shard ${tag(task, 'snapline:shard')}] ${line}`);
    }
    await expectRestoresTo(report.snapshotId, source.bytes, 'sharded');

    const index = BlockIndex.open(indexPath);
    try {
      expect(index.ecsJobs.get(report.jobId)?.state).toBe('completed');
      expect(index.ecsJobs.tasks(report.jobId).map((t) => [t.lastStatus, t.exitCode])).toEqual(Array(4).fill(['STOPPED', 0]));
      expect(index.lineage.getSnapshot(report.snapshotId)?.state).toBe('completed');
    } finally {
      index.close();
    }
  });

  it('restores an archive in S3 with --shards 4: the workers read the chain from its manifest, the snapshot restores byte for byte', async () => {
    const source = await sourceSnapshot('archived', 24, [2, 3, 17]);
    const archiveId = await archived(source.snapshotId, 'ecs-archives');
    const run = await ecsRestore(archiveId, '--shards', '4').done;
    expectExit(run, 0);
    const report = JSON.parse(run.stdout) as Report & { sourceKind: string; source: string };
    expect([report.sourceKind, report.source, report.state]).toEqual(['archive', archiveId, 'completed']);
    expect(report.shards.map((s) => s.state)).toEqual(Array(4).fill('succeeded'));
    expect(run.stderr).toMatch(/\[shard 3\] shard 3: writing blocks \d+\.\.\d+ of the archive \S+ in s3 ecs-archives/);
    await expectRestoresTo(report.snapshotId, source.bytes, 'archived');
  });

  it("retries a shard's failure as a new task for that shard alone", async () => {
    const source = await sourceSnapshot('retry-one', 12);
    emulator.setFaults({ ecsExitFailures: 1, ecsExitCode: 42 });
    const run = await ecsRestore(source.snapshotId, '--shards', '2').done;
    expectExit(run, 0);
    const report = JSON.parse(run.stdout) as Report;
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => s.attempts)).toEqual([2, 1]);
    expect(run.stderr).toMatch(/shard 0: failed: the worker container exited with code 42.*retrying as attempt 2/);
    const tasks = await jobTasks(report.startedBy);
    const attempts = tasks.map((t) => `${tag(t, 'snapline:shard')}/${tag(t, 'snapline:attempt')}`).sort();
    expect(attempts).toEqual(['0/1', '0/2', '1/1']);
  });

  it("passes the worker's exit code through and shows its last lines; the same command again retries the failed shard", async () => {
    const source = await sourceSnapshot('exit-code', 6);
    emulator.setFaults({ ecsExitFailures: 5, ecsExitCode: 42 });
    const failed = await ecsRestore(source.snapshotId, '--shards', '1', '--retries', '0').done;
    expectExit(failed, 42);
    const report = JSON.parse(failed.stdout) as Report;
    expect(report.state).toBe('failed');
    expect(report.exitCode).toBe(42);
    expect(failed.stderr).toContain("last lines of shard 0's log:");
    expect(failed.stderr).toContain('  the local endpoint makes this container exit with code 42');

    const status = await snapline(['ecs', 'status', report.jobId]).done;
    expectExit(status, 0);
    expect(status.stdout).toMatch(/shard 0: blocks 0\.\.\d+, failed, 1 attempt, STOPPED exit 42/);

    emulator.setFaults({});
    const again = await ecsRestore(source.snapshotId).done;
    expectExit(again, 0);
    const resumed = JSON.parse(again.stdout) as Report;
    expect(resumed.jobId).toBe(report.jobId);
    expect(resumed.snapshotId).toBe(report.snapshotId);
    expect(resumed.state).toBe('completed');
    expect(resumed.shards.map((s) => [s.state, s.attempts])).toEqual([['succeeded', 2]]);
  });

  it('retries placements that found no capacity, and lost RunTask answers start no ghost', async () => {
    const source = await sourceSnapshot('capacity', 8);
    emulator.setFaults({ ecsCapacityFailures: 2, ecsLostResponses: 1 });
    const run = await ecsRestore(source.snapshotId, '--shards', '2').done;
    expectExit(run, 0);
    expect(run.stderr).toContain('no capacity: RESOURCE:MEMORY; trying again in 2 s');
    const report = JSON.parse(run.stdout) as Report;
    expect(report.state).toBe('completed');
    const tasks = await jobTasks(report.startedBy);
    expect(tasks.map((t) => tag(t, 'snapline:shard')).sort()).toEqual(['0', '1']);
    expect(emulator.stats().operations.RunTask!.requests).toBeGreaterThanOrEqual(5);
  });

  it('reattaches: a driver killed while tasks run, or detached, is followed by the same command without a duplicate task', async () => {
    const source = await sourceSnapshot('reattach', 8);
    emulator.setFaults({ latencyMs: 400 });
    const first = ecsRestore(source.snapshotId, '--shards', '2');
    let stderr = '';
    first.child.stderr!.on('data', (chunk: Buffer | string) => (stderr += String(chunk)));
    await until(() => (stderr.match(/started task/g) ?? []).length === 2, 'both tasks started', first.child);
    first.child.kill('SIGKILL');
    await first.done;

    const again = await ecsRestore(source.snapshotId).done;
    expectExit(again, 0);
    expect(again.stderr).toMatch(/resuming \(2 shards\)/);
    expect(again.stderr).not.toContain('started task');
    const report = JSON.parse(again.stdout) as Report;
    expect((await jobTasks(report.startedBy)).length).toBe(2);
    await expectRestoresTo(report.snapshotId, source.bytes, 'reattach');

    // Detached, then every task stopped before the driver comes back: a driver that looked at running tasks only would start them again.
    emulator.setFaults({});
    const other = await sourceSnapshot('detached', 4);
    const detached = await ecsRestore(other.snapshotId, '--shards', '2', '--detach').done;
    expectExit(detached, 0);
    const launched = JSON.parse(detached.stdout) as Report;
    expect(launched.state).toBe('detached');
    for (let i = 0; (await jobTasks(launched.startedBy)).some((t) => t.lastStatus !== 'STOPPED'); i += 1) {
      if (i > 600) throw new Error('the detached tasks did not stop');
      await sleep(50);
    }
    const finished = await ecsRestore(other.snapshotId).done;
    expectExit(finished, 0);
    expect(finished.stderr).not.toContain('started task');
    expect((JSON.parse(finished.stdout) as Report).state).toBe('completed');
    expect((await jobTasks(launched.startedBy)).length).toBe(2);
  });

  it('Ctrl-C stops the tasks it started, with a reason, and exits 130', async () => {
    const source = await sourceSnapshot('interrupt', 8);
    emulator.setFaults({ latencyMs: 1000 });
    const run = ecsRestore(source.snapshotId, '--shards', '2');
    let stderr = '';
    run.child.stderr!.on('data', (chunk: Buffer | string) => (stderr += String(chunk)));
    await until(() => (stderr.match(/\] shard \d: writing blocks/g) ?? []).length === 2, 'both workers running', run.child);
    run.child.kill('SIGINT');
    const result = await run.done;
    expectExit(result, 130);
    expect(result.stderr).toMatch(/2 tasks stopped, snapshot snap-\w+ stays pending/);
    const jobId = /job (j-[0-9a-f]+)/.exec(result.stderr)![1]!;
    let tasks: Task[] = [];
    for (let i = 0; i <= 600; i += 1) {
      tasks = await jobTasks(`snapline-${jobId}`);
      if (tasks.every((t) => t.lastStatus === 'STOPPED')) break;
      await sleep(50);
    }
    expect(tasks).toHaveLength(2);
    for (const task of tasks) {
      expect(task.lastStatus).toBe('STOPPED');
      expect(task.stopCode).toBe('UserInitiated');
      expect(task.stoppedReason).toBe(`snapline: interrupted (job ${jobId})`);
    }
  });
});
