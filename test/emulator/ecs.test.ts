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
import { CREDENTIALS, expectAwsError, REGION, startTestEndpoint, type TestEndpoint } from './helpers.js';

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

  it('clientToken: the same token returns the same task and starts nothing more', async () => {
    const first = await run(['print', 'once'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' });
    const again = await run(['print', 'once'], { startedBy: 'snapline-token', clientToken: 'job-1-shard-0-a1' });
    expect(again.tasks!.map((task) => task.taskArn)).toEqual(first.tasks!.map((task) => task.taskArn));
    await stopped(first.tasks![0]!.taskArn!);
    const listed = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-token', desiredStatus: 'STOPPED' }));
    expect(listed.taskArns).toEqual([first.tasks![0]!.taskArn]);
  });

  it('ListTasks filters by startedBy and desired status (RUNNING when not given), in pages', async () => {
    const waiting = await run(['wait'], { startedBy: 'snapline-list', count: 2 });
    const done = await run(['print', 'x'], { startedBy: 'snapline-list' });
    await run(['print', 'x'], { startedBy: 'snapline-other' });
    await stopped(done.tasks![0]!.taskArn!);
    const running = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-list' }));
    expect(new Set(running.taskArns)).toEqual(new Set(waiting.tasks!.map((task) => task.taskArn)));
    const finished = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-list', desiredStatus: 'STOPPED' }));
    expect(finished.taskArns).toEqual([done.tasks![0]!.taskArn]);
    const page = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-list', maxResults: 1 }));
    expect(page.taskArns).toHaveLength(1);
    const rest = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-list', maxResults: 1, nextToken: page.nextToken }));
    expect(new Set([...page.taskArns!, ...rest.taskArns!])).toEqual(new Set(running.taskArns));
    expect(rest.nextToken).toBeUndefined();
    for (const task of waiting.tasks!) await ecs.send(new StopTaskCommand({ cluster: 'restores', task: task.taskArn! }));
    for (const task of waiting.tasks!) await stopped(task.taskArn!);
  });

  it('DescribeTasks reports unknown tasks as failures MISSING', async () => {
    const out = await ecs.send(new DescribeTasksCommand({ cluster: 'restores', tasks: ['0123456789abcdef0123456789abcdef'] }));
    expect(out.tasks).toEqual([]);
    expect(out.failures).toEqual([{ arn: '0123456789abcdef0123456789abcdef', reason: 'MISSING' }]);
  });

  it('refuses bad arguments as ECS does', async () => {
    await expectAwsError(run(['print'], { launchType: 'FARGATE', capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT' }] }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { launchType: 'FARGATE' }), 'InvalidParameterException');
    await expectAwsError(
      ecs.send(new RunTaskCommand({ taskDefinition: 'snapline-worker', overrides: { containerOverrides: [{ name: 'nope', command: ['x'] }] } })),
      'InvalidParameterException',
    );
    await expectAwsError(run(['print'], { startedBy: 'x'.repeat(37) }), 'InvalidParameterException');
    await expectAwsError(run(['print'], { overrides: { containerOverrides: [{ name: 'worker', command: ['x'.repeat(9000)] }] } }), 'InvalidParameterException');
    await expectAwsError(ecs.send(new StopTaskCommand({ cluster: 'restores', task: 'f'.repeat(32) })), 'InvalidParameterException');
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
      const listed = await ecs.send(new ListTasksCommand({ cluster: 'restores', startedBy: 'snapline-lost', desiredStatus: 'STOPPED' }));
      expect(listed.taskArns).toEqual([out.tasks![0]!.taskArn]);
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
    t.emulator.setFaults({ ecsHostStops: 2 });
    const network = { awsvpcConfiguration: { subnets: ['subnet-1'], assignPublicIp: 'DISABLED' as const } };
    const spot = await run(['wait'], { capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }], networkConfiguration: network });
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
      logs.send(new PutLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', logEvents: messages.map((message, n) => ({ timestamp: 1000 + n, message })) }));
    await put(['one', 'two', 'three']);

    const first = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, limit: 2 }));
    expect(first.events!.map((e) => e.message)).toEqual(['one', 'two']);
    const second = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: first.nextForwardToken }));
    expect(second.events!.map((e) => e.message)).toEqual(['three']);
    const end = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', startFromHead: true, nextToken: second.nextForwardToken }));
    expect(end.events).toEqual([]);
    expect(end.nextForwardToken).toBe(second.nextForwardToken);

    await put(['four']);
    const more = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', nextToken: end.nextForwardToken }));
    expect(more.events!.map((e) => e.message)).toEqual(['four']);
    const back = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', nextToken: more.nextBackwardToken, limit: 2 }));
    expect(back.events!.map((e) => e.message)).toEqual(['two', 'three']);
    const tail = await logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', limit: 1 }));
    expect(tail.events!.map((e) => e.message)).toEqual(['four']);
    await expectAwsError(logs.send(new GetLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', nextToken: 'f/99' })), 'InvalidParameterException');
    await expectAwsError(
      logs.send(new PutLogEventsCommand({ logGroupName: '/tokens', logStreamName: 'a/worker/1', logEvents: [{ timestamp: 5, message: 'b' }, { timestamp: 4, message: 'a' }] })),
      'InvalidParameterException',
    );
  });

  it('DescribeLogStreams by prefix, with event times', async () => {
    await logs.send(new CreateLogGroupCommand({ logGroupName: '/describe' }));
    for (const name of ['p/worker/b', 'p/worker/a', 'q/other/c']) await logs.send(new CreateLogStreamCommand({ logGroupName: '/describe', logStreamName: name }));
    await logs.send(new PutLogEventsCommand({ logGroupName: '/describe', logStreamName: 'p/worker/a', logEvents: [{ timestamp: 7, message: 'x' }] }));
    const out = await logs.send(new DescribeLogStreamsCommand({ logGroupName: '/describe', logStreamNamePrefix: 'p/' }));
    expect(out.logStreams!.map((s) => [s.logStreamName, s.lastEventTimestamp])).toEqual([
      ['p/worker/a', 7],
      ['p/worker/b', undefined],
    ]);
  });
});
