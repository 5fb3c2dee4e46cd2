import type { ECSClient, RunTaskCommandInput, Task } from '@aws-sdk/client-ecs';
import type { ContainerTasks, LaunchOutcome, TaskDefinitionInfo, TaskLaunch, TaskState } from '../core/ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { fromAwsError } from './errors.js';
import { ecsSdk } from './sdk.js';

/** Task ARNs per DescribeTasks call (ECS's limit). */
const DESCRIBE_BATCH = 100;
/** StopTask's reason is at most this long. */
const MAX_REASON = 255;

/** ECS over the SDK (its standard retry applies; RunTask retries keep their clientToken). */
export class EcsContainerTasks implements ContainerTasks {
  constructor(private readonly client: ECSClient) {}

  async describeTaskDefinition(taskDefinition: string): Promise<TaskDefinitionInfo> {
    const out = await this.#call('ecs:DescribeTaskDefinition', () => this.client.send(new (ecsSdk().DescribeTaskDefinitionCommand)({ taskDefinition })));
    const definition = out.taskDefinition;
    if (definition === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `task definition ${taskDefinition} does not exist`);
    return {
      arn: definition.taskDefinitionArn ?? taskDefinition,
      ...(definition.networkMode === undefined ? {} : { networkMode: definition.networkMode }),
      containers: (definition.containerDefinitions ?? []).map((c) => {
        const options = c.logConfiguration?.logDriver === 'awslogs' ? (c.logConfiguration.options ?? {}) : {};
        return {
          name: c.name ?? '',
          essential: c.essential ?? true,
          ...(options['awslogs-group'] === undefined ? {} : { logGroup: options['awslogs-group'] }),
          ...(options['awslogs-stream-prefix'] === undefined ? {} : { logStreamPrefix: options['awslogs-stream-prefix'] }),
        };
      }),
    };
  }

  async launch(launch: TaskLaunch): Promise<LaunchOutcome> {
    const out = await this.#call('ecs:RunTask', () => this.client.send(new (ecsSdk().RunTaskCommand)(runTaskInput(launch))), launch.cluster);
    const task = out.tasks?.[0];
    return {
      ...(task === undefined ? {} : { task: stateOf(task) }),
      failures: (out.failures ?? []).map((f) => ({ reason: f.reason ?? 'unknown', ...(f.detail === undefined ? {} : { detail: f.detail }) })),
    };
  }

  async describe(cluster: string, taskArns: readonly string[]): Promise<TaskState[]> {
    const found: TaskState[] = [];
    for (let start = 0; start < taskArns.length; start += DESCRIBE_BATCH) {
      const out = await this.#call(
        'ecs:DescribeTasks',
        () => this.client.send(new (ecsSdk().DescribeTasksCommand)({ cluster, tasks: taskArns.slice(start, start + DESCRIBE_BATCH), include: ['TAGS'] })),
        cluster,
      );
      for (const task of out.tasks ?? []) found.push(stateOf(task));
    }
    return found;
  }

  async list(cluster: string, filter: { desiredStatus: 'RUNNING' | 'STOPPED'; family?: string }): Promise<string[]> {
    const arns: string[] = [];
    let nextToken: string | undefined;
    do {
      const page = { cluster, desiredStatus: filter.desiredStatus, ...(filter.family === undefined ? {} : { family: filter.family }), ...(nextToken ? { nextToken } : {}) };
      const out = await this.#call('ecs:ListTasks', () => this.client.send(new (ecsSdk().ListTasksCommand)(page)), cluster);
      arns.push(...(out.taskArns ?? []));
      nextToken = out.nextToken;
    } while (nextToken);
    return arns;
  }

  async stop(cluster: string, taskArn: string, reason: string): Promise<void> {
    await this.#call('ecs:StopTask', () => this.client.send(new (ecsSdk().StopTaskCommand)({ cluster, task: taskArn, reason: reason.slice(0, MAX_REASON) })), cluster);
  }

  /** Runs one SDK call, its failure mapped to a SnaplineError naming `action`. */
  async #call<T>(action: string, call: () => Promise<T>, cluster?: string): Promise<T> {
    try {
      return await call();
    } catch (err) {
      const error = fromAwsError(err, action);
      if (error.details?.awsError === 'ClusterNotFoundException') {
        throw new SnaplineError(ErrorCodes.NOT_FOUND, `ECS cluster ${cluster ?? 'default'} does not exist`, {
          hint: 'set ecs.cluster of the connection to an existing cluster',
          cause: err,
          details: error.details,
        });
      }
      const resourceIds = (err as { resourceIds?: unknown }).resourceIds;
      if (error.details?.awsError === 'ConflictException' && Array.isArray(resourceIds)) {
        // RunTask's ConflictException names the tasks started with the client token before: the caller looks them up.
        throw new SnaplineError(error.code, error.message, { retryable: error.retryable, hint: error.hint, cause: err, details: { ...error.details, resourceIds } });
      }
      throw error;
    }
  }
}

function runTaskInput(launch: TaskLaunch): RunTaskCommandInput {
  const network = launch.network;
  return {
    cluster: launch.cluster,
    taskDefinition: launch.taskDefinition,
    count: 1,
    startedBy: launch.startedBy,
    clientToken: launch.clientToken,
    ...(launch.launchType === undefined ? {} : { launchType: launch.launchType }),
    ...(launch.capacityProviderStrategy === undefined ? {} : { capacityProviderStrategy: launch.capacityProviderStrategy }),
    ...(network === undefined
      ? {}
      : {
          networkConfiguration: {
            awsvpcConfiguration: {
              subnets: network.subnets,
              ...(network.securityGroups === undefined ? {} : { securityGroups: network.securityGroups }),
              ...(network.assignPublicIp === undefined ? {} : { assignPublicIp: network.assignPublicIp ? 'ENABLED' : 'DISABLED' }),
            },
          },
        }),
    overrides: {
      containerOverrides: [
        {
          name: launch.container,
          command: launch.command,
          ...(launch.environment === undefined ? {} : { environment: Object.entries(launch.environment).map(([name, value]) => ({ name, value })) }),
        },
      ],
    },
    tags: Object.entries(launch.tags).map(([key, value]) => ({ key, value })),
    ...(launch.propagateTags ? { propagateTags: 'TASK_DEFINITION' } : {}),
  };
}

function stateOf(task: Task): TaskState {
  return {
    taskArn: task.taskArn ?? '',
    lastStatus: task.lastStatus ?? 'UNKNOWN',
    desiredStatus: task.desiredStatus ?? 'UNKNOWN',
    ...(task.stopCode === undefined ? {} : { stopCode: task.stopCode }),
    ...(task.stoppedReason === undefined ? {} : { stoppedReason: task.stoppedReason }),
    ...(task.startedBy === undefined ? {} : { startedBy: task.startedBy }),
    tags: Object.fromEntries((task.tags ?? []).map((t) => [t.key ?? '', t.value ?? ''])),
    containers: (task.containers ?? []).map((c) => ({
      name: c.name ?? '',
      ...(c.lastStatus === undefined ? {} : { lastStatus: c.lastStatus }),
      ...(c.exitCode === undefined ? {} : { exitCode: c.exitCode }),
      ...(c.reason === undefined ? {} : { reason: c.reason }),
    })),
    ...(task.createdAt === undefined ? {} : { createdAt: task.createdAt }),
    ...(task.stoppedAt === undefined ? {} : { stoppedAt: task.stoppedAt }),
  };
}
