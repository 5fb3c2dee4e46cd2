/**
 * Watching one ECS task from the driver: following its worker's log stream
 * with forward tokens, and judging how it ended by the worker container
 * alone (a sidecar's exit code 0 says nothing about the work).
 */
import type { ContainerTasks, LogReader, TaskDefinitionInfo, TaskPlacement, TaskState } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { parseShardResult, type ShardResult } from './worker.js';

/** The container that does the work, and where its awslogs output goes. */
export interface WorkerContainer {
  name: string;
  logGroup?: string;
  logStreamPrefix?: string;
}

/** Lines kept per task for the report of a failure. */
const KEPT_LINES = 20;
/** GetLogEvents pages read per task and poll, so one chatty task cannot hold up the others. */
const PAGES_PER_POLL = 20;

/**
 * The worker container of a task definition: the one named `worker`, else
 * the only essential container. Log settings given win over the container's
 * awslogs options. INVALID_ARGUMENT when it cannot be told, and when the
 * placement given cannot run the definition: ECS runs a definition in
 * network mode awsvpc only with subnets, and any other only without.
 */
export async function workerContainerOf(
  tasks: ContainerTasks,
  taskDefinition: string,
  settings: { logGroup?: string; logStreamPrefix?: string; placement?: Pick<TaskPlacement, 'network'> },
): Promise<WorkerContainer> {
  const definition: TaskDefinitionInfo = await tasks.describeTaskDefinition(taskDefinition);
  if (settings.placement !== undefined) checkNetworking(definition, settings.placement);
  const named = definition.containers.find((c) => c.name === 'worker');
  const essential = definition.containers.filter((c) => c.essential);
  const container = named ?? (essential.length === 1 ? essential[0] : undefined);
  if (container === undefined) {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `task definition ${definition.arn} has no container named "worker" and ${essential.length} essential containers (${essential.map((c) => c.name).join(', ')}): cannot tell which one runs snapline`,
      { hint: 'name the snapline container "worker" in the task definition' },
    );
  }
  const logGroup = settings.logGroup ?? container.logGroup;
  const logStreamPrefix = settings.logStreamPrefix ?? container.logStreamPrefix;
  return { name: container.name, ...(logGroup === undefined ? {} : { logGroup }), ...(logStreamPrefix === undefined ? {} : { logStreamPrefix }) };
}

function checkNetworking(definition: TaskDefinitionInfo, placement: Pick<TaskPlacement, 'network'>): void {
  const mode = definition.networkMode ?? 'bridge';
  if (mode === 'awsvpc' && placement.network === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `task definition ${definition.arn} uses network mode awsvpc: ECS runs it only with subnets, and the connection names none`, {
      hint: 'set ecs.subnets (and ecs.security_groups) of the connection',
    });
  }
  if (mode !== 'awsvpc' && placement.network !== undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `task definition ${definition.arn} uses network mode ${mode}: ECS takes subnets only for network mode awsvpc`, {
      hint: 'remove ecs.subnets from the connection, or use a task definition in network mode awsvpc',
    });
  }
}

/** The task id: the last part of its ARN. */
export function taskIdOf(taskArn: string): string {
  return taskArn.slice(taskArn.lastIndexOf('/') + 1);
}

/**
 * Follows the worker's awslogs stream `prefix/container/taskId` of one task.
 * Keeps the last lines and the shard result line when one passes by.
 */
export class TaskLog {
  readonly lastLines: string[] = [];
  result: ShardResult | undefined;
  /** When a new line last arrived (epoch ms), or when following began. */
  lastNewAt = Date.now();
  #token: string | undefined;
  /** Lines passed on so far, and how many of those a read from the start again has yet to pass over. */
  #delivered = 0;
  #skip = 0;
  readonly #stream: { group: string; name: string } | undefined;

  constructor(
    private readonly reader: LogReader,
    worker: WorkerContainer,
    taskArn: string,
    private readonly onLine: (line: string) => void,
  ) {
    this.#stream =
      worker.logGroup === undefined || worker.logStreamPrefix === undefined
        ? undefined
        : { group: worker.logGroup, name: `${worker.logStreamPrefix}/${worker.name}/${taskIdOf(taskArn)}` };
  }

  /** False when the worker's logs cannot be read (no awslogs group or stream prefix). */
  get readable(): boolean {
    return this.#stream !== undefined;
  }

  /**
   * Reads what is new, page by page until the token stops moving (a page may
   * be empty and still not be the end); true when lines arrived. After the
   * reader started the stream again (its token was refused) the lines
   * already passed on are skipped.
   */
  async pump(): Promise<boolean> {
    if (this.#stream === undefined) return false;
    let any = false;
    for (let page = 0; page < PAGES_PER_POLL; page += 1) {
      const { lines, token, restarted } = await this.reader.readForward(this.#stream.group, this.#stream.name, this.#token);
      const moved = token !== this.#token;
      this.#token = token;
      if (restarted) this.#skip = this.#delivered;
      const fresh = lines.slice(Math.min(this.#skip, lines.length));
      this.#skip -= lines.length - fresh.length;
      this.#delivered += fresh.length;
      for (const { message } of fresh) {
        const line = message.replace(/\n$/, '');
        this.onLine(line);
        this.lastLines.push(line);
        if (this.lastLines.length > KEPT_LINES) this.lastLines.shift();
        this.result = parseShardResult(line) ?? this.result;
      }
      if (fresh.length > 0) {
        any = true;
        this.lastNewAt = Date.now();
      }
      if (!moved) break;
    }
    return any;
  }
}

/** How a stopped task ended, judged by its worker container. */
export type Verdict = { ok: true } | { ok: false; reason: string; exitCode?: number };

export function judgeStoppedTask(task: TaskState, workerName: string): Verdict {
  const worker = task.containers.find((c) => c.name === workerName);
  const stopped = `${task.stopCode ?? 'stopped'}${task.stoppedReason ? `: ${task.stoppedReason}` : ''}`;
  if (task.stopCode === 'TaskFailedToStart') return { ok: false, reason: `the task failed to start (${stopped})` };
  if (worker === undefined) return { ok: false, reason: `the task has no container ${workerName} (${stopped})` };
  if (worker.exitCode === undefined) {
    return { ok: false, reason: `the ${workerName} container ended without an exit code (${stopped}${worker.reason ? `; ${worker.reason}` : ''})` };
  }
  if (worker.exitCode !== 0) {
    return { ok: false, reason: `the ${workerName} container exited with code ${worker.exitCode} (${stopped})`, exitCode: worker.exitCode };
  }
  return { ok: true };
}
