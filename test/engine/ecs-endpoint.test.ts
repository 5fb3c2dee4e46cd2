/**
 * The ECS restore driver on the local endpoint, whose ECS refuses what AWS
 * refuses (ListTasks: startedBy only alone, and then running tasks only):
 * the real ECS and Logs adapters through the SDK, a SQLite index in a temp
 * dir, tasks that run `snapline worker shard` as child processes of the
 * endpoint (dist/ is built by test/e2e/global-setup.ts).
 */
import { DescribeTasksCommand, ECSClient } from '@aws-sdk/client-ecs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openEcsSession } from '../../src/ecs-session.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { ecsRestore } from '../../src/engine/ecs/restore.js';
import { restore } from '../../src/engine/restore/restore.js';
import { writeImage } from '../support/images.js';
import { localSessionOptions, withLocalSession } from '../support/local-endpoint.js';
import { expectSameBytes } from '../support/same-bytes.js';

let work: string;
let emulator: RunningEmulator;
let ecs: ECSClient;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-ecs-endpoint-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
  ecs = new ECSClient({ endpoint: emulator.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
});
afterAll(async () => {
  ecs?.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

describe('ecsRestore on the local endpoint', () => {
  it('a reattach after every shard has STOPPED judges the stopped tasks and runs none of them again', async () => {
    const indexPath = join(work, 'index.db');
    const image = join(work, 'source.img');
    writeImage(image, { label: 'ecs-endpoint', blocks: 6 });
    const source = await withLocalSession(emulator, indexPath, (session) => backup(session, { source: image, volume: 'source' }));
    const session = await openEcsSession(localSessionOptions(emulator, indexPath));
    try {
      const options = { source: source.snapshotId!, pacing: { pollFirstMs: 20, pollMaxMs: 100, logSettleMs: 1000 } };
      const detached = await ecsRestore(session.deps, { ...options, shards: 2, detach: true });
      expect(detached.state).toBe('detached');
      const arns = session.deps.index.ecsJobs.tasks(detached.jobId).map((t) => t.taskArn);
      expect(arns).toHaveLength(2);
      for (let i = 0; ; i += 1) {
        const out = await ecs.send(new DescribeTasksCommand({ tasks: arns }));
        if (out.tasks!.every((task) => task.lastStatus === 'STOPPED')) break;
        if (i > 1200) throw new Error('the shards did not stop');
        await sleep(50);
      }
      const launched = emulator.stats().operations.RunTask!.requests;

      const report = await ecsRestore(session.deps, options);
      expect(report.jobId).toBe(detached.jobId);
      expect(report.state).toBe('completed');
      expect(report.shards.map((s) => [s.state, s.attempts, s.exitCode])).toEqual([
        ['succeeded', 1, 0],
        ['succeeded', 1, 0],
      ]);
      expect(emulator.stats().operations.RunTask!.requests).toBe(launched);
    } finally {
      await session.close();
    }
  });
});

describe('ecsRestore on an endpoint whose clock the test moves with its own', () => {
  let forgetting: RunningEmulator;
  beforeAll(async () => {
    // Date.now read at each call, so that moving the test's clock moves the endpoint's too.
    forgetting = await startEmulator({ dataDir: join(work, 'forgetting-endpoint'), now: () => Date.now() });
  });
  afterAll(() => forgetting?.close());

  it('a reattach an hour after the shards stopped, when ECS no longer shows them, judges them by their logs and runs none of them again', async () => {
    const indexPath = join(work, 'forgetting-index.db');
    const image = join(work, 'forgetting-source.img');
    writeImage(image, { label: 'ecs-forgetting', blocks: 6 });
    const source = await withLocalSession(forgetting, indexPath, (session) => backup(session, { source: image, volume: 'source' }));
    const session = await openEcsSession(localSessionOptions(forgetting, indexPath));
    const client = new ECSClient({ endpoint: forgetting.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    let snapshotId: string;
    try {
      const options = { source: source.snapshotId!, pacing: { pollFirstMs: 20, pollMaxMs: 100, logSettleMs: 1000 } };
      const detached = await ecsRestore(session.deps, { ...options, shards: 2, detach: true });
      const arns = session.deps.index.ecsJobs.tasks(detached.jobId).map((t) => t.taskArn);
      for (let i = 0; ; i += 1) {
        const out = await client.send(new DescribeTasksCommand({ tasks: arns }));
        if (out.tasks!.every((task) => task.lastStatus === 'STOPPED')) break;
        if (i > 1200) throw new Error('the shards did not stop');
        await sleep(50);
      }
      const launched = forgetting.stats().operations.RunTask!.requests;
      const realNow = Date.now.bind(Date);
      const clock = vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 60 * 60 * 1000);
      const notes: string[] = [];
      let report;
      try {
        expect((await client.send(new DescribeTasksCommand({ tasks: arns }))).failures!.map((f) => f.reason)).toEqual(['MISSING', 'MISSING']);
        report = await ecsRestore(session.deps, { ...options, onNote: (note) => notes.push(note) });
      } finally {
        clock.mockRestore();
      }
      expect(report).toMatchObject({ jobId: detached.jobId, state: 'completed' });
      expect(report.shards.map((s) => [s.state, s.attempts])).toEqual([
        ['succeeded', 1],
        ['succeeded', 1],
      ]);
      expect(forgetting.stats().operations.RunTask!.requests).toBe(launched);
      expect(notes.filter((note) => note.includes('ECS no longer shows task'))).toHaveLength(2);
      snapshotId = report.snapshotId!;
    } finally {
      client.destroy();
      await session.close();
    }
    const target = join(work, 'forgetting-restored.img');
    await withLocalSession(forgetting, indexPath, (restoring) => restore(restoring, { snapshotId, target }));
    await expectSameBytes(target, image);
  });
});

describe('ecsRestore with EC2 lagging behind (ec2LagMs 5000)', () => {
  let lagging: RunningEmulator;
  beforeAll(async () => {
    lagging = await startEmulator({ dataDir: join(work, 'lagging-endpoint'), ec2LagMs: 5000 });
  });
  afterAll(() => lagging?.close());

  it("a reattach before EC2 lists the job's new snapshot waits for it, saying so, and goes on with that job instead of abandoning it", async () => {
    const indexPath = join(work, 'lagging-index.db');
    const image = join(work, 'lagging-source.img');
    writeImage(image, { label: 'ecs-lagging', blocks: 6 });
    const source = await withLocalSession(lagging, indexPath, (session) => backup(session, { source: image, volume: 'source' }));
    const session = await openEcsSession(localSessionOptions(lagging, indexPath));
    let snapshotId: string;
    try {
      const options = { source: source.snapshotId!, pacing: { pollFirstMs: 20, pollMaxMs: 100, logSettleMs: 1000 } };
      const detached = await ecsRestore(session.deps, { ...options, shards: 2, detach: true });
      expect(await session.deps.catalog.describeSnapshots([detached.snapshotId!])).toEqual([]);
      const launched = lagging.stats().operations.RunTask!.requests;

      const notes: string[] = [];
      const report = await ecsRestore(session.deps, { ...options, onNote: (note) => notes.push(note) });
      expect(report).toMatchObject({ jobId: detached.jobId, snapshotId: detached.snapshotId, state: 'completed' });
      expect(report.shards.map((s) => [s.state, s.attempts])).toEqual([
        ['succeeded', 1],
        ['succeeded', 1],
      ]);
      expect(lagging.stats().operations.RunTask!.requests).toBe(launched);
      expect(notes.some((note) => note.includes(`snapshot ${detached.snapshotId}`) && note.includes('does not list it yet'))).toBe(true);
      snapshotId = report.snapshotId!;
    } finally {
      await session.close();
    }
    const target = join(work, 'lagging-restored.img');
    await withLocalSession(lagging, indexPath, (restoring) => restore(restoring, { snapshotId, target }));
    await expectSameBytes(target, image);
  });
});
