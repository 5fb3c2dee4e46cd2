import {
  ConflictException,
  DescribeTaskDefinitionCommand,
  DescribeTasksCommand,
  ECSClient,
  ECSServiceException,
  ListTasksCommand,
  RunTaskCommand,
  StopTaskCommand,
} from '@aws-sdk/client-ecs';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { EcsContainerTasks } from './ecs.js';
import { rejection } from '../../test/support/rejection.js';

const client = new ECSClient({ region: 'eu-west-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
const ecs = mockClient(client);
const tasks = new EcsContainerTasks(client);
beforeEach(() => ecs.reset());
afterAll(() => client.destroy());

function ecsError(name: string, message: string): ECSServiceException {
  return new ECSServiceException({ name, $fault: 'client', message, $metadata: { httpStatusCode: 400 } });
}


const launch = {
  cluster: 'restores',
  taskDefinition: 'snapline-worker:3',
  launchType: 'FARGATE' as const,
  network: { subnets: ['subnet-1', 'subnet-2'], securityGroups: ['sg-1'], assignPublicIp: false },
  container: 'worker',
  command: ['worker', 'shard', '--shard', '2'],
  environment: { AWS_REGION: 'eu-west-1' },
  tags: { 'snapline:job': 'j-1', 'snapline:shard': '2' },
  propagateTags: true,
  startedBy: 'snapline-j-1',
  clientToken: 'j-1-2-1-0',
};

describe('EcsContainerTasks', () => {
  it('launch: one RunTask with the placement, network, command override, tags, startedBy and clientToken', async () => {
    ecs.on(RunTaskCommand).resolves({
      tasks: [
        {
          taskArn: 'arn:task/restores/abc',
          lastStatus: 'PROVISIONING',
          desiredStatus: 'RUNNING',
          startedBy: 'snapline-j-1',
          containers: [{ name: 'log-router' }, { name: 'worker', lastStatus: 'PENDING' }],
        },
      ],
      failures: [],
    });
    const outcome = await tasks.launch(launch);
    expect(ecs.commandCalls(RunTaskCommand)[0]!.args[0].input).toEqual({
      cluster: 'restores',
      taskDefinition: 'snapline-worker:3',
      count: 1,
      startedBy: 'snapline-j-1',
      clientToken: 'j-1-2-1-0',
      launchType: 'FARGATE',
      networkConfiguration: { awsvpcConfiguration: { subnets: ['subnet-1', 'subnet-2'], securityGroups: ['sg-1'], assignPublicIp: 'DISABLED' } },
      overrides: { containerOverrides: [{ name: 'worker', command: ['worker', 'shard', '--shard', '2'], environment: [{ name: 'AWS_REGION', value: 'eu-west-1' }] }] },
      tags: [
        { key: 'snapline:job', value: 'j-1' },
        { key: 'snapline:shard', value: '2' },
      ],
      propagateTags: 'TASK_DEFINITION',
    });
    expect(outcome).toEqual({
      task: {
        taskArn: 'arn:task/restores/abc',
        lastStatus: 'PROVISIONING',
        desiredStatus: 'RUNNING',
        startedBy: 'snapline-j-1',
        tags: {},
        containers: [{ name: 'log-router' }, { name: 'worker', lastStatus: 'PENDING' }],
      },
      failures: [],
    });
  });

  it('launch: a capacity provider strategy instead of a launch type; failures come back with their reasons', async () => {
    ecs.on(RunTaskCommand).resolves({ tasks: [], failures: [{ arn: 'arn:ci/1', reason: 'RESOURCE:MEMORY' }] });
    const { launchType: _, network: __, ...rest } = launch;
    const outcome = await tasks.launch({ ...rest, capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 1 }] });
    const input = ecs.commandCalls(RunTaskCommand)[0]!.args[0].input;
    expect(input.capacityProviderStrategy).toEqual([{ capacityProvider: 'FARGATE_SPOT', weight: 1 }]);
    expect(input.launchType).toBeUndefined();
    expect(input.networkConfiguration).toBeUndefined();
    expect(outcome).toEqual({ failures: [{ reason: 'RESOURCE:MEMORY' }] });
  });

  it('describe: batches of 100 with tags; stop codes, reasons, exit codes and times mapped', async () => {
    const stoppedAt = new Date('2026-01-02T03:04:05Z');
    ecs.on(DescribeTasksCommand).callsFake((input: { tasks: string[] }) => ({
      tasks: input.tasks.map((arn) => ({
        taskArn: arn,
        lastStatus: 'STOPPED',
        desiredStatus: 'STOPPED',
        stopCode: 'EssentialContainerExited',
        stoppedReason: 'Essential container in task exited',
        stoppedAt,
        tags: [{ key: 'snapline:shard', value: '1' }],
        containers: [
          { name: 'log-router', exitCode: 0 },
          { name: 'worker', exitCode: 3, reason: 'exited' },
        ],
      })),
    }));
    const arns = Array.from({ length: 130 }, (_, i) => `arn:task/${i}`);
    const found = await tasks.describe('restores', arns);
    expect(ecs.commandCalls(DescribeTasksCommand).map((c) => [c.args[0].input.tasks?.length, c.args[0].input.include, c.args[0].input.cluster])).toEqual([
      [100, ['TAGS'], 'restores'],
      [30, ['TAGS'], 'restores'],
    ]);
    expect(found).toHaveLength(130);
    expect(found[0]).toEqual({
      taskArn: 'arn:task/0',
      lastStatus: 'STOPPED',
      desiredStatus: 'STOPPED',
      stopCode: 'EssentialContainerExited',
      stoppedReason: 'Essential container in task exited',
      tags: { 'snapline:shard': '1' },
      containers: [
        { name: 'log-router', exitCode: 0 },
        { name: 'worker', exitCode: 3, reason: 'exited' },
      ],
      stoppedAt,
    });
  });

  it('list: every page, by desired status and family, never with startedBy (ECS takes it only alone)', async () => {
    ecs
      .on(ListTasksCommand)
      .resolvesOnce({ taskArns: ['a', 'b'], nextToken: 't1' })
      .resolvesOnce({ taskArns: [], nextToken: 't2' })
      .resolvesOnce({ taskArns: ['c'] });
    expect(await tasks.list('restores', { desiredStatus: 'STOPPED', family: 'snapline-worker' })).toEqual(['a', 'b', 'c']);
    expect(ecs.commandCalls(ListTasksCommand).map((c) => c.args[0].input)).toEqual([
      { cluster: 'restores', desiredStatus: 'STOPPED', family: 'snapline-worker' },
      { cluster: 'restores', desiredStatus: 'STOPPED', family: 'snapline-worker', nextToken: 't1' },
      { cluster: 'restores', desiredStatus: 'STOPPED', family: 'snapline-worker', nextToken: 't2' },
    ]);
    ecs.reset();
    ecs.on(ListTasksCommand).resolves({ taskArns: ['d'] });
    expect(await tasks.list('restores', { desiredStatus: 'RUNNING' })).toEqual(['d']);
    expect(ecs.commandCalls(ListTasksCommand)[0]!.args[0].input).toEqual({ cluster: 'restores', desiredStatus: 'RUNNING' });
  });

  it('stop: StopTask with the reason cut to 255 characters', async () => {
    ecs.on(StopTaskCommand).resolves({});
    await tasks.stop('restores', 'arn:task/1', `snapline: ${'x'.repeat(300)}`);
    const input = ecs.commandCalls(StopTaskCommand)[0]!.args[0].input;
    expect(input.task).toBe('arn:task/1');
    expect(input.reason).toHaveLength(255);
  });

  it('describeTaskDefinition: the network mode, containers with their awslogs group and stream prefix', async () => {
    ecs.on(DescribeTaskDefinitionCommand).resolves({
      taskDefinition: {
        taskDefinitionArn: 'arn:td/snapline-worker:3',
        networkMode: 'awsvpc',
        containerDefinitions: [
          { name: 'log-router', essential: false },
          { name: 'worker', logConfiguration: { logDriver: 'awslogs', options: { 'awslogs-group': '/snapline', 'awslogs-stream-prefix': 'restore' } } },
          { name: 'other', logConfiguration: { logDriver: 'splunk', options: { 'awslogs-group': 'ignored' } } },
        ],
      },
    });
    expect(await tasks.describeTaskDefinition('snapline-worker')).toEqual({
      arn: 'arn:td/snapline-worker:3',
      networkMode: 'awsvpc',
      containers: [
        { name: 'log-router', essential: false },
        { name: 'worker', essential: true, logGroup: '/snapline', logStreamPrefix: 'restore' },
        { name: 'other', essential: true },
      ],
    });
  });

  it('errors: an unknown cluster is NOT_FOUND naming it; others are sorted and name the action', async () => {
    ecs.on(RunTaskCommand).rejects(ecsError('ClusterNotFoundException', 'Cluster not found.'));
    const missing = await rejection(tasks.launch(launch));
    expect(missing.code).toBe(ErrorCodes.NOT_FOUND);
    expect(missing.message).toBe('ECS cluster restores does not exist');
    expect(missing.hint).toMatch(/ecs\.cluster/);
    ecs.on(ListTasksCommand).rejects(ecsError('AccessDeniedException', 'not authorized'));
    const denied = await rejection(tasks.list('restores', { desiredStatus: 'RUNNING' }));
    expect(denied.code).toBe(ErrorCodes.ACCESS_DENIED);
    expect(denied.message).toMatch(/ecs:ListTasks/);
    ecs.on(RunTaskCommand).rejects(ecsError('ConflictException', 'The clientToken was already used with a different RunTask request.'));
    expect((await rejection(tasks.launch(launch))).code).toBe(ErrorCodes.CONFLICT);
    // The tasks the token started before come with the error, for the caller to look up.
    const earlier = ['arn:aws:ecs:eu-west-1:1:task/restores/a', 'arn:aws:ecs:eu-west-1:1:task/restores/b'];
    ecs.on(RunTaskCommand).rejects(new ConflictException({ message: 'The clientToken was already used.', $metadata: { httpStatusCode: 400 }, resourceIds: earlier }));
    expect(await rejection(tasks.launch(launch))).toMatchObject({ code: ErrorCodes.CONFLICT, details: { awsError: 'ConflictException', resourceIds: earlier } });
    ecs.on(StopTaskCommand).rejects(ecsError('InvalidParameterException', 'The referenced task was not found.'));
    expect((await rejection(tasks.stop('restores', 'arn:x', 'why'))).code).toBe(ErrorCodes.REMOTE_REJECTED);
  });
});
