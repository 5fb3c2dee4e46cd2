import { epochSeconds } from '../protocol/json-rpc.js';

/** What the local endpoint keeps of ECS task definitions and tasks, and how they look on the wire. */

export interface KeyValue {
  name: string;
  value: string;
}

export interface Tag {
  key: string;
  value: string;
}

export interface ContainerDefinition {
  name: string;
  image: string;
  essential: boolean;
  command?: string[];
  environment: KeyValue[];
  logConfiguration?: { logDriver: string; options: Record<string, string> };
}

export interface TaskDefinition {
  arn: string;
  family: string;
  revision: number;
  containers: ContainerDefinition[];
  networkMode: string;
  cpu?: string;
  memory?: string;
  requiresCompatibilities: string[];
  tags: Tag[];
  registeredAt: number;
}

export type TaskStatus = 'PROVISIONING' | 'PENDING' | 'RUNNING' | 'DEPROVISIONING' | 'STOPPED';

export type StopCode = 'TaskFailedToStart' | 'EssentialContainerExited' | 'UserInitiated' | 'SpotInterruption' | 'TerminationNotice';

export interface Container {
  arn: string;
  name: string;
  image: string;
  essential: boolean;
  lastStatus: 'PENDING' | 'RUNNING' | 'STOPPED';
  exitCode?: number;
  reason?: string;
  /** The command it runs (override, else the definition's); a stand-in container runs none. */
  command?: string[];
  environment: KeyValue[];
  /** Where its output goes (awslogs). */
  log?: { group: string; stream: string; createGroup: boolean };
}

export interface Task {
  /** Order of creation: ListTasks pages by it, so a task changing state between pages moves no other. */
  serial: number;
  arn: string;
  id: string;
  cluster: string;
  clusterArn: string;
  definition: TaskDefinition;
  launchType?: string;
  capacityProviderName?: string;
  startedBy?: string;
  group: string;
  tags: Tag[];
  /** The overrides as given, echoed by DescribeTasks. */
  overrides: Record<string, unknown>;
  lastStatus: TaskStatus;
  desiredStatus: 'RUNNING' | 'STOPPED';
  createdAt: number;
  pullStartedAt?: number;
  pullStoppedAt?: number;
  startedAt?: number;
  stoppingAt?: number;
  executionStoppedAt?: number;
  stoppedAt?: number;
  stopCode?: StopCode;
  stoppedReason?: string;
  containers: Container[];
  /** Bumped on every change, as ECS does. */
  version: number;
}

const seconds = (ms: number | undefined) => (ms === undefined ? undefined : epochSeconds(ms));

/** The Task shape of DescribeTasks, RunTask and StopTask; tags only when asked for. */
export function taskView(task: Task, withTags: boolean): Record<string, unknown> {
  const view: Record<string, unknown> = {
    taskArn: task.arn,
    clusterArn: task.clusterArn,
    taskDefinitionArn: task.definition.arn,
    lastStatus: task.lastStatus,
    desiredStatus: task.desiredStatus,
    launchType: task.launchType,
    capacityProviderName: task.capacityProviderName,
    startedBy: task.startedBy,
    group: task.group,
    cpu: task.definition.cpu,
    memory: task.definition.memory,
    overrides: task.overrides,
    createdAt: seconds(task.createdAt),
    pullStartedAt: seconds(task.pullStartedAt),
    pullStoppedAt: seconds(task.pullStoppedAt),
    startedAt: seconds(task.startedAt),
    stoppingAt: seconds(task.stoppingAt),
    executionStoppedAt: seconds(task.executionStoppedAt),
    stoppedAt: seconds(task.stoppedAt),
    stopCode: task.stopCode,
    stoppedReason: task.stoppedReason,
    version: task.version,
    containers: task.containers.map((c) => ({
      containerArn: c.arn,
      taskArn: task.arn,
      name: c.name,
      image: c.image,
      lastStatus: c.lastStatus,
      exitCode: c.exitCode,
      reason: c.reason,
    })),
  };
  if (withTags) view.tags = task.tags;
  return view;
}

export function definitionView(definition: TaskDefinition): Record<string, unknown> {
  return {
    taskDefinitionArn: definition.arn,
    family: definition.family,
    revision: definition.revision,
    status: 'ACTIVE',
    networkMode: definition.networkMode,
    cpu: definition.cpu,
    memory: definition.memory,
    requiresCompatibilities: definition.requiresCompatibilities,
    registeredAt: epochSeconds(definition.registeredAt),
    containerDefinitions: definition.containers.map((c) => ({
      name: c.name,
      image: c.image,
      essential: c.essential,
      command: c.command,
      environment: c.environment,
      logConfiguration: c.logConfiguration,
    })),
  };
}
