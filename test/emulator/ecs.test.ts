/**
 * The ECS and CloudWatch Logs subsets of the local endpoint, driven through
 * the real SDK clients over HTTP. Task containers run a small stand-in image
 * (node -e) instead of snapline, so that each task is a real child process
 * that starts fast: its command says what to print and how to end.
 */
import {
  CloudWatchLogsClient,
  CreateLogGroupCommand,
  CreateLogStreamCommand,
  DescribeLogStreamsCommand,
  GetLogEventsCommand,
  PutLogEventsCommand,
} from '@aws-sdk/client-cloudwatch-logs';
import {
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ListTasksCommand,
  RegisterTaskDefinitionCommand,
  RunTaskCommand,
  StopTaskCommand,
  type RunTaskCommandInput,
  type Task,
} from '@aws-sdk/client-ecs';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CREDENTIALS, expectAwsError, REGION, startTestEndpoint, TestClock, type TestEndpoint } from './helpers.js';

/**
 * The stand-in image: `print LINE...` writes each LINE and exits 0, `exit N LINE...` writes and exits N,
 * `env NAME` prints the variable, `wait` writes "waiting" and waits for a signal.
 */
const IMAGE = `
const [verb, ...args] = process.argv.slice(1);
if (verb === 'env') { console.log(args[0] + '=' + process.env[args[0]]); }
else if (verb === 'wait') { console.log('waiting'); setInterval(() => {}, 1000); }
else if (verb === 'exit') { for (const line of args.slice(1)) console.log(line); process.exitCode = Number(args[0]); }
else { for (const line of args) console.log(line); }
`;

let t: TestEndpoint;
let ecs: ECSClient;
let logs: CloudWatchLogsClient;

beforeAll(async () => {
  t = await startTestEndpoint({ tasks: { entrypoint: [process.execPath, '-e', IMAGE], logLagMs: 50, stopTimeoutMs: 2000 } });
  const config = {
    endpoint: t.emulator.url,
    region: REGION,
    credentials: CREDENTIALS,
    requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ keepAlive: true }) }),
  };
  ecs = new ECSClient({ ...config, maxAttempts: 1 });
  logs = new CloudWatchLogsClient({ ...config, maxAttempts: 1 });
});
afterEach(() => t.emulator.setFaults({}));
afterAll(async () => {
  ecs.destroy();
  logs.destroy();
  await t.stop();
});

function run(command: string[], extra: Partial<RunTaskCommandInput> = {}) {
  return ecs.send(
    new RunTaskCommand({
      cluster: 'restores',
      taskDefinition: 'snapline-worker',
      overrides: { containerOverrides: [{ name: 'worker', command }] },
      ...extra,
    }),
  );
}

async function describe1(taskArn: string, include?: 'TAGS'): Promise<Task> {
  const out = await ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: [taskArn], ...(include ? { include: [include] } : {}) }));
  return out.tasks![0]!;
}

/** Polls DescribeTasks until the task is STOPPED (a guard against a hang, not a timed assertion). */
async function stopped(taskArn: string): Promise<Task> {
  for (let i = 0; i < 1500; i += 1) {
    const task = await describe1(taskArn, 'TAGS');
    if (task.lastStatus === 'STOPPED') return task;
    await sleep(20);
  }
  throw new Error(`task ${taskArn} did not stop`);
}

/** Every message of a stream once at least `expected` are readable (the stream appears when the task starts; lines after the ingestion lag). */
async function linesOf(group: string, stream: string, expected: number): Promise<string[]> {
  for (let i = 0; i < 500; i += 1) {
    try {
      const out = await logs.send(new GetLogEventsCommand({ logGroupName: group, logStreamName: stream, startFromHead: true }));
      const lines = (out.events ?? []).map((e) => e.message!);
      if (lines.length >= expected) return lines;
    } catch (err) {
      if ((err as Error).name !== 'ResourceNotFoundException') throw err;
    }
    await sleep(20);
  }
  throw new Error(`fewer than ${expected} lines in ${stream}`);
}

const workerLines = (taskArn: string, expected: number) => linesOf('/snapline/worker', `snapline/worker/${taskArn.split('/').at(-1)}`, expected);

const container = (task: Task, name: string) => task.containers!.find((c) => c.name === name)!;

/** Every ARN of `restores` with this desired status, page by page. */
async function listAll(desiredStatus: 'RUNNING' | 'STOPPED', more: { family?: string; maxResults?: number } = {}): Promise<string[]> {
  const arns: string[] = [];
  let nextToken: string | undefined;
  do {
    const out = await ecs.send(new ListTasksCommand({ cluster: 'restores', desiredStatus, ...more, ...(nextToken === undefined ? {} : { nextToken }) }));
    arns.push(...out.taskArns!);
    nextToken = out.nextToken;
  } while (nextToken !== undefined);
  return arns;
}

/** The tasks of `restores`, running or stopped, that DescribeTasks shows started by `startedBy` (ListTasks takes startedBy only alone, and then lists running tasks only). */
async function startedByOf(startedBy: string): Promise<string[]> {
  const arns = [...(await listAll('RUNNING')), ...(await listAll('STOPPED'))];
  const found: string[] = [];
  for (let start = 0; start < arns.length; start += 100) {
    const out = await ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: arns.slice(start, start + 100) }));
    found.push(...out.tasks!.filter((task) => task.startedBy === startedBy).map((task) => task.taskArn!));
  }
  return found;
}

/** A stand-in task that waits, stopped again by `stopAll`. */
async function waiting(extra: Partial<RunTaskCommandInput> = {}): Promise<string[]> {
  const out = await run(['wait'], extra);
  return out.tasks!.map((task) => task.taskArn!);
}

async function stopAll(arns: readonly string[]): Promise<void> {
  for (const task of arns) await ecs.send(new StopTaskCommand({ cluster: 'restores', task }));
  for (const task of arns) await stopped(task);
}

describe('RunTask and the task lifecycle', () => {
  it('runs the worker command as a process: its exit code on the worker, 0 on the sidecar, its output in the awslogs stream', async () => {
    const out = await run(['exit', '3', 'first line', 'last line'], {
      startedBy: 'snapline-lifecycle',
      tags: [{ key: 'snapline:shard', value: '2' }],
    });
    expect(out.failures).toEqual([]);
    const [started] = out.tasks!;
    expect(started!.lastStatus).toBe('PROVISIONING');
    expect(started!.desiredStatus).toBe('RUNNING');
    expect(started!.startedBy).toBe('snapline-lifecycle');

    const task = await stopped(started!.taskArn!);
    expect(task.stopCode).toBe('EssentialContainerExited');
    expect(task.stoppedReason).toBe('Essential container in task exited');
    expect(task.desiredStatus).toBe('STOPPED');
    expect(task.stoppedAt).toBeInstanceOf(Date);
    expect(task.tags).toEqual([{ key: 'snapline:shard', value: '2' }]);
    // The sidecar comes first and exits 0: only the worker's code tells the outcome.
    expect(task.containers!.map((c) => c.name)).toEqual(['log-router', 'worker']);
    expect(container(task, 'log-router').exitCode).toBe(0);
    expect(container(task, 'worker').exitCode).toBe(3);
    expect(await workerLines(task.taskArn!, 2)).toEqual(['first line', 'last line']);
  });

  it('gives the process the override environment and what it needs to reach the endpoint', async () => {
    const out = await run(['env', 'SHARD_NOTE'], {
      overrides: { containerOverrides: [{ name: 'worker', command: ['env', 'SHARD_NOTE'], environment: [{ name: 'SHARD_NOTE', value: 'hello' }] }] },
    });
    const task = await stopped(out.tasks![0]!.taskArn!);
    expect(container(task, 'worker').exitCode).toBe(0);
    expect(await workerLines(task.taskArn!, 1)).toEqual(['SHARD_NOTE=hello']);
    const endpoint = await run(['env', 'AWS_ENDPOINT_URL']);
    await stopped(endpoint.tasks![0]!.taskArn!);
    expect(await workerLines(endpoint.tasks![0]!.taskArn!, 1)).toEqual([`AWS_ENDPOINT_URL=${t.emulator.url}`]);
  });

  it('StopTask sends SIGTERM: stopCode UserInitiated with the reason, the worker killed by the signal', async () => {
    const out = await run(['wait']);
    const arn = out.tasks![0]!.taskArn!;
    expect(await workerLines(arn, 1)).toEqual(['waiting']);
    const answer = await ecs.send(new StopTaskCommand({ cluster: 'restores', task: arn, reason: 'snapline: interrupted' }));
    expect(answer.task!.desiredStatus).toBe('STOPPED');
    const task = await stopped(arn);
    expect(task.stopCode).toBe('UserInitiated');
    expect(task.stoppedReason).toBe('snapline: interrupted');
    expect(container(task, 'worker').exitCode).toBe(143);
  });

  it('refuses bad arguments as ECS does', async () => {
    await expectAwsError(run(['print'], { launchType: 'FARGATE', capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT' }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { launchType: 'FARGATE' }), 'InvalidParameterException');
    await expectAwsError(
      ecs.send(new RunTaskCommand({ taskDefinition: 'snapline-worker', overrides: { containerOverrides: [{ name: 'nope', command: ['x'] }] } })),
      'InvalidParameterException',
    );
  });

  it('runs a registered task definition, and fails to start when its log group is missing', async () => {
    await ecs.send(
      new RegisterTaskDefinitionCommand({
        family: 'custom',
        containerDefinitions: [
          { name: 'main', image: 'example/snapline:1', essential: true, logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': '/custom', 'awslogs-stream-prefix': 'p' } } },
        ],
        tags: [{ key: 'team', value: 'storage' }],
      }),
    );
    const described = await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'custom' }));
    expect(described.taskDefinition!.revision).toBe(1);
    expect(described.taskDefinition!.containerDefinitions!.map((c) => c.name)).toEqual(['main']);
    const input = { cluster: 'restores', taskDefinition: 'custom:1', overrides: { containerOverrides: [{ name: 'main', command: ['print', 'hi'] }] } };

    const noGroup = await ecs.send(new RunTaskCommand(input));
    const failed = await stopped(noGroup.tasks![0]!.taskArn!);
    expect(failed.stopCode).toBe('TaskFailedToStart');
    expect(failed.stoppedReason).toMatch(/log group \/custom does not exist/);

    await logs.send(new CreateLogGroupCommand({ logGroupName: '/custom' }));
    const ok = await ecs.send(new RunTaskCommand({ ...input, propagateTags: 'TASK_DEFINITION' }));
    const task = await stopped(ok.tasks![0]!.taskArn!);
    expect(task.tags).toEqual([{ key: 'team', value: 'storage' }]);
    expect(container(task, 'main').exitCode).toBe(0);
    expect(await linesOf('/custom', `p/main/${task.taskArn!.split('/').at(-1)}`, 1)).toEqual(['hi']);
  });
});

describe('ListTasks', () => {
  it('startedBy must be the only filter: with desiredStatus, family or launchType it is InvalidParameterException', async () => {
    for (const filter of [{ desiredStatus: 'STOPPED' as const }, { desiredStatus: 'RUNNING' as const }, { family: 'snapline-worker' }, { launchType: 'EC2' as const }]) {
      await expectAwsError(ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-only', ...filter })), 'InvalidParameterException');
    }
    // The cluster is not a filter, nor are the page parameters.
    expect((await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-only', maxResults: 10 }))).taskArns).toEqual([]);
  });

  it('lists RUNNING tasks when desiredStatus is not given, with startedBy alone too: a stopped task only with STOPPED; PENDING lists nothing', async () => {
    const running = await waiting({ startedBy: 'snapline-status' });
    const done = (await run(['print', 'x'], { startedBy: 'snapline-status' })).tasks![0]!.taskArn!;
    await stopped(done);
    const byStartedBy = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-status' }));
    expect(byStartedBy.taskArns).toEqual(running);
    const plain = await ecs.send(new ListTasksCommand({ cluster: 'restores' }));
    expect(plain.taskArns).toContain(running[0]);
    expect(plain.taskArns).not.toContain(done);
    expect(await listAll('STOPPED')).toContain(done);
    expect(await listAll('STOPPED')).not.toContain(running[0]);
    expect((await ecs.send(new ListTasksCommand({ cluster: 'restores', desiredStatus: 'PENDING' }))).taskArns).toEqual([]);
    await stopAll(running);
  });

  it('filters by family and launch type together with desiredStatus', async () => {
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'listed', containerDefinitions: [{ name: 'worker', image: 'snapline:1', essential: true }] }));
    const ours = await waiting({ taskDefinition: 'listed', overrides: { containerOverrides: [{ name: 'worker', command: ['wait'] }] }, launchType: 'EXTERNAL' });
    const other = await waiting();
    expect(await listAll('RUNNING', { family: 'listed' })).toEqual(ours);
    const external = await ecs.send(new ListTasksCommand({ cluster: 'restores', desiredStatus: 'RUNNING', launchType: 'EXTERNAL' }));
    expect(external.taskArns).toEqual(ours);
    await stopAll([...ours, ...other]);
    expect(await listAll('STOPPED', { family: 'listed' })).toEqual(ours);
    await expectAwsError(ecs.send(new ListTasksCommand({ cluster: 'restores', launchType: 'MOON' as never })), 'InvalidParameterException');
  });

  it('maxResults is 1 to 100; nextToken pages on where the last page ended, a task that stops in between shifts no other; a made-up token is refused', async () => {
    for (const maxResults of [0, 101]) await expectAwsError(ecs.send(new ListTasksCommand({ cluster: 'restores', maxResults })), 'InvalidParameterException');
    const arns = await waiting({ count: 3, startedBy: 'snapline-pages' });
    const first = await ecs.send(new ListTasksCommand({ cluster: 'restores', family: 'snapline-worker', desiredStatus: 'RUNNING', maxResults: 2 }));
    expect(first.taskArns).toHaveLength(2);
    expect(first.nextToken).toBeDefined();
    // The first task listed stops before the next page is asked for: the next page still starts after the last one listed.
    await stopAll([first.taskArns![0]!]);
    const rest = await listAll('RUNNING', { family: 'snapline-worker', maxResults: 2 });
    const next = await ecs.send(new ListTasksCommand({ cluster: 'restores', family: 'snapline-worker', desiredStatus: 'RUNNING', maxResults: 2, nextToken: first.nextToken }));
    expect(next.taskArns).toEqual(rest.slice(rest.indexOf(first.taskArns![1]!) + 1, rest.indexOf(first.taskArns![1]!) + 3));
    for (const arn of arns) expect([...first.taskArns!, ...rest]).toContain(arn);
    await expectAwsError(ecs.send(new ListTasksCommand({ cluster: 'restores', nextToken: 'bm90LWEtdG9rZW4' })), 'InvalidParameterException');
    await stopAll(arns.filter((arn) => arn !== first.taskArns![0]));
  });
});

describe('RunTask', () => {
  it('count is 1 to 10', async () => {
    for (const count of [0, 11]) await expectAwsError(run(['print'], { count }), 'InvalidParameterException');
  });

  it('startedBy: up to 128 letters, digits, hyphens, slashes and underscores', async () => {
    const long = `snapline/${'a_b-c'.repeat(24)}`.slice(0, 128);
    expect(long).toHaveLength(128);
    const out = await run(['print', 'x'], { startedBy: long });
    expect(out.tasks![0]!.startedBy).toBe(long);
    await stopped(out.tasks![0]!.taskArn!);
    await expectAwsError(run(['print'], { startedBy: `${long}y` }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { startedBy: 'snapline job' }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { startedBy: 'snapline:job' }), 'InvalidParameterException');
  });

  it('clientToken: up to 64 ASCII characters from 33 to 126', async () => {
    const token = `!~${'t'.repeat(62)}`;
    const out = await run(['print', 'x'], { clientToken: token });
    await stopped(out.tasks![0]!.taskArn!);
    await expectAwsError(run(['print'], { clientToken: `${token}x` }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { clientToken: 'with space' }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { clientToken: 'caf\u00e9' }), 'InvalidParameterException');
  });

  it('clientToken: the same token and request return the same tasks and start nothing; another request is ConflictException naming them; tokens are per cluster', async () => {
    const first = await run(['print', 'once'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' });
    const again = await run(['print', 'once'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' });
    expect(again.tasks!.map((task) => task.taskArn)).toEqual(first.tasks!.map((task) => task.taskArn));
    const arn = first.tasks![0]!.taskArn!;
    await stopped(arn);
    // Still the same task once it has stopped, as it is now.
    const later = await run(['print', 'once'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' });
    expect(later.tasks!.map((task) => [task.taskArn, task.lastStatus])).toEqual([[arn, 'STOPPED']]);
    const conflict = await expectAwsError(run(['print', 'other'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' }), 'ConflictException');
    expect((conflict as Error & { resourceIds?: string[] }).resourceIds).toEqual([arn]);
    expect(await startedByOf('snapline-token')).toEqual([arn]);
    const elsewhere = await ecs.send(
      new RunTaskCommand({ cluster: 'elsewhere', taskDefinition: 'snapline-worker', clientToken: 'job-1-shard-0-a1', overrides: { containerOverrides: [{ name: 'worker', command: ['print', 'other'] }] } }),
    );
    expect(elsewhere.tasks![0]!.taskArn).not.toBe(arn);
    await ecs.send(new StopTaskCommand({ cluster: 'elsewhere', task: elsewhere.tasks![0]!.taskArn! }));
  });

  it('overrides: at most 8192 characters of JSON, formatting included', async () => {
    const overridesOf = (n: number) => ({ containerOverrides: [{ name: 'worker', command: ['print', 'x'.repeat(n)] }] });
    const fill = 8192 - JSON.stringify(overridesOf(0)).length;
    const fits = await run([], { overrides: overridesOf(fill) });
    await stopped(fits.tasks![0]!.taskArn!);
    await expectAwsError(run([], { overrides: overridesOf(fill + 1) }), 'InvalidParameterException');
    const environment = Array.from({ length: 200 }, (_, i) => ({ name: `VARIABLE_${i}`, value: 'v'.repeat(20) }));
    await expectAwsError(run([], { overrides: { containerOverrides: [{ name: 'worker', command: ['print'], environment }] } }), 'InvalidParameterException');
  });

  it('tags: at most 50, keys 1 to 128 characters, values up to 256, each key once, aws: reserved in keys and values', async () => {
    const tags = (n: number) => Array.from({ length: n }, (_, i) => ({ key: `k${i}`, value: 'v' }));
    const fifty = await run(['print', 'x'], { tags: tags(50) });
    expect((await stopped(fifty.tasks![0]!.taskArn!)).tags).toHaveLength(50);
    await expectAwsError(run(['print'], { tags: tags(51) }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { tags: [{ key: 'k'.repeat(129), value: 'v' }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { tags: [{ key: 'k', value: 'v'.repeat(257) }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { tags: [{ key: 'k', value: 'a' }, { key: 'k', value: 'b' }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { tags: [{ key: 'AWS:owner', value: 'v' }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { tags: [{ key: 'owner', value: 'aws:me' }] }), 'InvalidParameterException');
  });

  it('networkConfiguration: required by a task definition in network mode awsvpc, refused for any other; Fargate needs awsvpc', async () => {
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'vpc', networkMode: 'awsvpc', containerDefinitions: [{ name: 'worker', image: 'snapline:1' }] }));
    const network = { awsvpcConfiguration: { subnets: ['subnet-1'] } };
    const vpc = { taskDefinition: 'vpc', overrides: { containerOverrides: [{ name: 'worker', command: ['print', 'x'] }] } };
    await expectAwsError(run(['print'], vpc), 'InvalidParameterException');
    const placed = await run(['print'], { ...vpc, networkConfiguration: network, launchType: 'FARGATE' });
    await stopped(placed.tasks![0]!.taskArn!);
    // The default definition is in network mode bridge.
    await expectAwsError(run(['print'], { networkConfiguration: network }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { launchType: 'FARGATE' }), 'InvalidParameterException');
    await expectAwsError(ecs.send(new RegisterTaskDefinitionCommand({ family: 'odd', networkMode: 'mesh' as never, containerDefinitions: [{ name: 'worker', image: 'snapline:1' }] })), 'ClientException');
  });

  it('propagateTags SERVICE is refused for a task run alone', async () => {
    await expectAwsError(run(['print'], { propagateTags: 'SERVICE' }), 'InvalidParameterException');
  });
});

describe('DescribeTasks, StopTask, DescribeTaskDefinition', () => {
  it('DescribeTasks takes 1 to 100 tasks; unknown ones and those of another cluster come back as failures MISSING', async () => {
    await expectAwsError(ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: [] })), 'InvalidParameterException');
    await expectAwsError(ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: Array.from({ length: 101 }, (_, i) => `t${i}`) })), 'InvalidParameterException');
    const [arn] = await waiting();
    const out = await ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: [arn!, '0123456789abcdef0123456789abcdef'] }));
    expect(out.tasks!.map((task) => task.taskArn)).toEqual([arn]);
    expect(out.failures).toEqual([{ arn: '0123456789abcdef0123456789abcdef', reason: 'MISSING' }]);
    const other = await ecs.send(new DescribeTasksCommand({ cluster: 'elsewhere', tasks: [arn!] }));
    expect([other.tasks, other.failures]).toEqual([[], [{ arn, reason: 'MISSING' }]]);
    await stopAll([arn!]);
  });

  it('StopTask: a reason of at most 255 characters; an unknown task is InvalidParameterException', async () => {
    const [arn] = await waiting();
    await expectAwsError(ecs.send(new StopTaskCommand({ cluster: 'restores', task: arn!, reason: 'r'.repeat(256) })), 'InvalidParameterException');
    await ecs.send(new StopTaskCommand({ cluster: 'restores', task: arn!, reason: 'r'.repeat(255) }));
    expect((await stopped(arn!)).stoppedReason).toBe('r'.repeat(255));
    await expectAwsError(ecs.send(new StopTaskCommand({ cluster: 'restores', task: 'f'.repeat(32) })), 'InvalidParameterException');
  });

  it('DescribeTaskDefinition answers the tags only with include TAGS', async () => {
    await ecs.send(new RegisterTaskDefinitionCommand({ family: 'tagged', containerDefinitions: [{ name: 'worker', image: 'snapline:1' }], tags: [{ key: 'team', value: 'storage' }] }));
    expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tagged' }))).tags).toBeUndefined();
    expect((await ecs.send(new DescribeTaskDefinitionCommand({ taskDefinition: 'tagged', include: ['TAGS'] }))).tags).toEqual([{ key: 'team', value: 'storage' }]);
  });
});

describe('ECS faults', () => {
  it('ecsCapacityFailures: failures[] with RESOURCE:MEMORY and no task, then placements succeed again', async () => {
    t.emulator.setFaults({ ecsCapacityFailures: 1 });
    const out = await run(['print', 'x'], { startedBy: 'snapline-capacity', count: 2 });
    expect(out.failures!.map((f) => f.reason)).toEqual(['RESOURCE:MEMORY']);
    expect(out.tasks).toHaveLength(1);
    const next = await run(['print', 'x'], { startedBy: 'snapline-capacity' });
    expect(next.failures).toEqual([]);
    await stopped(next.tasks![0]!.taskArn!);
  });

  it('ecsLostResponses: the task starts though the answer is lost; the SDK retry with the same clientToken gets the same task', async () => {
    t.emulator.setFaults({ ecsLostResponses: 1 });
    const retrying = new ECSClient({ endpoint: t.emulator.url, region: REGION, credentials: CREDENTIALS, maxAttempts: 3 });
    try {
      const out = await retrying.send(
        new RunTaskCommand({
          cluster: 'restores',
          taskDefinition: 'snapline-worker',
          startedBy: 'snapline-lost',
          clientToken: 'lost-answer-token',
          overrides: { containerOverrides: [{ name: 'worker', command: ['print', 'x'] }] },
        }),
      );
      expect(out.$metadata.attempts).toBe(2);
      await stopped(out.tasks![0]!.taskArn!);
      expect(await startedByOf('snapline-lost')).toEqual([out.tasks![0]!.taskArn]);
    } finally {
      retrying.destroy();
    }
  });

  it('ecsStartFailures: stopCode TaskFailedToStart and no exit codes', async () => {
    t.emulator.setFaults({ ecsStartFailures: 1 });
    const task = await stopped((await run(['print', 'x'])).tasks![0]!.taskArn!);
    expect(task.stopCode).toBe('TaskFailedToStart');
    expect(task.stoppedReason).toMatch(/CannotPullContainerError/);
    expect(task.containers!.map((c) => c.exitCode)).toEqual([undefined, undefined]);
  });

  it('ecsExitFailures: the worker exits with ecsExitCode, its line in the log', async () => {
    t.emulator.setFaults({ ecsExitFailures: 1, ecsExitCode: 42 });
    const task = await stopped((await run(['print', 'never'])).tasks![0]!.taskArn!);
    expect(container(task, 'worker').exitCode).toBe(42);
    expect(await workerLines(task.taskArn!, 1)).toEqual(['the local endpoint makes this container exit with code 42']);
  });

  it('ecsHostStops: SpotInterruption on Fargate, TerminationNotice on EC2, no exit code on any container', async () => {
    await ecs.send(
      new RegisterTaskDefinitionCommand({ family: 'spot', networkMode: 'awsvpc', requiresCompatibilities: ['FARGATE'], containerDefinitions: [{ name: 'log-router', image: 'fluent-bit', essential: false }, { name: 'worker', image: 'snapline:1' }] }),
    );
    t.emulator.setFaults({ ecsHostStops: 2 });
    const network = { awsvpcConfiguration: { subnets: ['subnet-1'], assignPublicIp: 'DISABLED' as const } };
    const spot = await run(['wait'], { taskDefinition: 'spot', capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }], networkConfiguration: network });
    const ec2 = await run(['wait'], { launchType: 'EC2' });
    const [a, b] = [await stopped(spot.tasks![0]!.taskArn!), await stopped(ec2.tasks![0]!.taskArn!)];
    expect(a.stopCode).toBe('SpotInterruption');
    expect(a.capacityProviderName).toBe('FARGATE_SPOT');
    expect(b.stopCode).toBe('TerminationNotice');
    for (const task of [a, b]) expect(task.containers!.map((c) => c.exitCode)).toEqual([undefined, undefined]);
  });
});

describe('CloudWatch Logs', () => {
  it('streams, events and forward tokens: the same token again when nothing is new', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/tokens' }));
    await expectAwsError(logs.send(new CreateLogGroupCommand({ logGroupName: '/tokens' })), 'ResourceAlreadyExistsException');
    await expectAwsError(logs.send(new CreateLogStreamCommand({ logGroupName: '/missing', logStreamName: 's' })), 'ResourceNotFoundException');
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1' }));
    await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'nope' })), 'ResourceNotFoundException');
    const put = (messages: string[]) =>
      logs.send(new PutLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', logEvents: messages.map((message) => ({ timestamp: Date.now(), message })) }));
    await put(['one', 'two', 'three']);

    const first = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, limit: 2 }));
    expect(first.events!.map((e) => e.message)).toEqual(['one', 'two']);
    const second = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: first.nextForwardToken }));
    expect(second.events!.map((e) => e.message)).toEqual(['three']);
    const end = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: second.nextForwardToken }));
    expect(end.events).toEqual([]);
    expect(end.nextForwardToken).toBe(second.nextForwardToken);

    await put(['four']);
    const more = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: end.nextForwardToken }));
    expect(more.events!.map((e) => e.message)).toEqual(['four']);
    const back = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', nextToken: more.nextBackwardToken, limit: 2 }));
    expect(back.events!.map((e) => e.message)).toEqual(['two', 'three']);
    const tail = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', limit: 1 }));
    expect(tail.events!.map((e) => e.message)).toEqual(['four']);
    await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: 'f/99' })), 'InvalidParameterException');
  });

  it('GetLogEvents: limit is 1 to 10,000', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/limit' }));
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/limit', logStreamName: 's' }));
    for (const limit of [0, 10_001]) {
      await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/limit', logStreamName: 's', limit })), 'InvalidParameterException');
    }
    expect((await logs.send(new GetLogEventsCommand({ logGroupName: '/limit', logStreamName: 's', limit: 10_000 }))).events).toEqual([]);
  });

  it('GetLogEvents: a forward token is taken only with startFromHead true', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/head' }));
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/head', logStreamName: 's' }));
    await logs.send(new PutLogEventsCommand({ logGroupName: '/head', logStreamName: 's', logEvents: [{ timestamp: Date.now(), message: 'one' }] }));
    const first = await logs.send(new GetLogEventsCommand({ logGroupName: '/head', logStreamName: 's', startFromHead: true }));
    for (const startFromHead of [false, undefined]) {
      await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/head', logStreamName: 's', startFromHead, nextToken: first.nextForwardToken })), 'InvalidParameterException');
    }
    const back = await logs.send(new GetLogEventsCommand({ logGroupName: '/head', logStreamName: 's', nextToken: first.nextBackwardToken }));
    expect(back.events).toEqual([]);
    expect(back.nextBackwardToken).toBe(first.nextBackwardToken);
  });

  it('GetLogEvents: the log group by logGroupName or logGroupIdentifier, exactly one of them', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/either' }));
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/either', logStreamName: 's' }));
    const arn = `arn:aws:logs:${REGION}:123456789012:log-group:/either:*`;
    expect((await logs.send(new GetLogEventsCommand({ logGroupIdentifier: arn, logStreamName: 's' }))).events).toEqual([]);
    await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/either', logGroupIdentifier: '/either', logStreamName: 's' })), 'InvalidParameterException');
    await expectAwsError(logs.send(new GetLogEventsCommand({ logStreamName: 's' })), 'InvalidParameterException');
  });

  it('PutLogEvents: in time order, at most 1 MiB a batch with 26 bytes counted an event', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/batch' }));
    await logs.send(new CreateLogStreamCommand({ logGroupName: '/batch', logStreamName: 's' }));
    const now = Date.now();
    const put = (logEvents: Array<{ timestamp: number; message: string }>) => logs.send(new PutLogEventsCommand({ logGroupName: '/batch', logStreamName: 's', logEvents }));
    await expectAwsError(put([{ timestamp: now, message: 'b' }, { timestamp: now - 1, message: 'a' }]), 'InvalidParameterException');
    const fits = [{ timestamp: now, message: 'x'.repeat(524_288 - 26) }, { timestamp: now, message: 'y'.repeat(524_288 - 26) }];
    await put(fits);
    await expectAwsError(put([fits[0]!, { ...fits[1]!, message: `${fits[1]!.message}z` }]), 'InvalidParameterException');
  });

  it('DescribeLogStreams by prefix, with event times', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/describe' }));
    for (const name of ['p/worker/b', 'p/worker/a', 'q/other/c']) await logs.send(new CreateLogStreamCommand({ logGroupName: '/describe', logStreamName: name }));
    const at = Date.now();
    await logs.send(new PutLogEventsCommand({ logGroupName: '/describe', logStreamName: 'p/worker/a', logEvents: [{ timestamp: at, message: 'x' }] }));
    const out = await logs.send(new DescribeLogStreamsCommand({ logGroupName: '/describe', logStreamNamePrefix: 'p/' }));
    expect(out.logStreams!.map((s) => [s.logStreamName, s.lastEventTimestamp])).toEqual([
      ['p/worker/a', at],
      ['p/worker/b', undefined],
    ]);
  });
});

describe('on a clock the test turns', () => {
  const clock = new TestClock(Date.now());
  const HOUR = 60 * 60 * 1000;
  let c: TestEndpoint;
  let ecs2: ECSClient;
  let logs2: CloudWatchLogsClient;
  beforeAll(async () => {
    c = await startTestEndpoint({ now: clock.now, tasks: { entrypoint: [process.execPath, '-e', IMAGE], logLagMs: 0 } });
    const config = { endpoint: c.emulator.url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 };
    ecs2 = new ECSClient(config);
    logs2 = new CloudWatchLogsClient(config);
  });
  afterAll(async () => {
    ecs2.destroy();
    logs2.destroy();
    await c.stop();
  });

  it('RunTask: a clientToken is remembered for 24 hours, then starts new tasks', async () => {
    const input = { cluster: 'restores', taskDefinition: 'snapline-worker', clientToken: 'kept-a-day', overrides: { containerOverrides: [{ name: 'worker', command: ['print', 'x'] }] } };
    const first = await ecs2.send(new RunTaskCommand(input));
    clock.advance(24 * HOUR - 1);
    expect((await ecs2.send(new RunTaskCommand(input))).tasks![0]!.taskArn).toBe(first.tasks![0]!.taskArn);
    clock.advance(1);
    expect((await ecs2.send(new RunTaskCommand(input))).tasks![0]!.taskArn).not.toBe(first.tasks![0]!.taskArn);
  });

  it('a stopped task is kept for an hour after it stopped, then DescribeTasks answers MISSING and ListTasks and StopTask know it no more; a running one is kept', async () => {
    const base = { cluster: 'forgetting', taskDefinition: 'snapline-worker' };
    const runOn = async (command: string[]) => (await ecs2.send(new RunTaskCommand({ ...base, overrides: { containerOverrides: [{ name: 'worker', command }] } }))).tasks![0]!.taskArn!;
    const describeOn = (arn: string) => ecs2.send(new DescribeTasksCommand({ cluster: base.cluster, tasks: [arn] }));
    const listOn = async (desiredStatus: 'RUNNING' | 'STOPPED') => (await ecs2.send(new ListTasksCommand({ cluster: base.cluster, desiredStatus }))).taskArns;
    const done = await runOn(['print', 'done']);
    const running = await runOn(['wait']);
    for (let i = 0; (await describeOn(done)).tasks![0]!.lastStatus !== 'STOPPED'; i += 1) {
      if (i > 1500) throw new Error(`task ${done} did not stop`);
      await sleep(20);
    }
    clock.advance(HOUR - 1);
    expect((await describeOn(done)).tasks!.map((task) => [task.lastStatus, task.containers!.find((c) => c.name === 'worker')!.exitCode])).toEqual([['STOPPED', 0]]);
    expect(await listOn('STOPPED')).toEqual([done]);
    clock.advance(1);
    expect(await describeOn(done)).toMatchObject({ tasks: [], failures: [{ arn: done, reason: 'MISSING' }] });
    expect(await listOn('STOPPED')).toEqual([]);
    await expectAwsError(ecs2.send(new StopTaskCommand({ cluster: base.cluster, task: done })), 'InvalidParameterException');
    clock.advance(2 * HOUR);
    expect((await describeOn(running)).tasks!.map((task) => task.lastStatus)).toEqual(['RUNNING']);
    expect(await listOn('RUNNING')).toEqual([running]);
    await ecs2.send(new StopTaskCommand({ cluster: base.cluster, task: running }));
  });

  it('GetLogEvents: a token expires 24 hours after it was given out, the unchanged one of a quiet stream too', async () => {
    await logs2.send(new CreateLogGroupCommand({ logGroupName: '/expiry' }));
    await logs2.send(new CreateLogStreamCommand({ logGroupName: '/expiry', logStreamName: 's' }));
    await logs2.send(new PutLogEventsCommand({ logGroupName: '/expiry', logStreamName: 's', logEvents: [{ timestamp: clock.ms, message: 'one' }] }));
    const read = (nextToken?: string) => logs2.send(new GetLogEventsCommand({ logGroupName: '/expiry', logStreamName: 's', startFromHead: true, ...(nextToken === undefined ? {} : { nextToken }) }));
    const first = await read();
    clock.advance(24 * HOUR - 1);
    const quiet = await read(first.nextForwardToken);
    expect([quiet.events, quiet.nextForwardToken]).toEqual([[], first.nextForwardToken]);
    clock.advance(1);
    await expectAwsError(read(first.nextForwardToken), 'InvalidParameterException');
    expect((await read()).events!.map((e) => e.message)).toEqual(['one']);
  });

  it('PutLogEvents: events over 2 hours ahead or 14 days old are rejected and the rest kept; a batch spans at most 24 hours', async () => {
    await logs2.send(new CreateLogGroupCommand({ logGroupName: '/window' }));
    await logs2.send(new CreateLogStreamCommand({ logGroupName: '/window', logStreamName: 's' }));
    const now = clock.ms;
    const out = await logs2.send(
      new PutLogEventsCommand({
        logGroupName: '/window',
        logStreamName: 's',
        logEvents: [
          { timestamp: now - 14 * 24 * HOUR - 1, message: 'too old' },
          { timestamp: now - HOUR, message: 'kept 1' },
          { timestamp: now + 2 * HOUR, message: 'kept 2' },
          { timestamp: now + 2 * HOUR + 1, message: 'too new' },
        ],
      }),
    );
    expect(out.rejectedLogEventsInfo).toEqual({ tooOldLogEventEndIndex: 1, tooNewLogEventStartIndex: 3 });
    const read = await logs2.send(new GetLogEventsCommand({ logGroupName: '/window', logStreamName: 's', startFromHead: true }));
    expect(read.events!.map((e) => e.message)).toEqual(['kept 1', 'kept 2']);
    await expectAwsError(
      logs2.send(new PutLogEventsCommand({ logGroupName: '/window', logStreamName: 's', logEvents: [{ timestamp: now - 23 * HOUR, message: 'a' }, { timestamp: now + HOUR + 1, message: 'b' }] })),
      'InvalidParameterException',
    );
  });
});
