import { randomBytes, randomUUID } from 'node:crypto';
import { AwsError } from '../protocol/aws-error.js';
import { definitionView, taskView, type Container, type ContainerDefinition, type KeyValue, type Tag, type Task, type TaskDefinition } from './model.js';
import type { TaskHost } from './runner.js';
import type { FaultInjector } from '../faults.js';
import { dropConnection, type Exchange } from '../protocol/http.js';
import { InputReader, JsonMembersError, readJsonInput, sendJsonResult } from '../protocol/json-rpc.js';
import { ACCOUNT_ID } from '../snapshots.js';

/** X-Amz-Target prefix of ECS. */
export const ECS_TARGET_PREFIX = 'AmazonEC2ContainerServiceV20141113';

/**
 * The task definition any unregistered family stands for: a log-router
 * sidecar, then the snapline worker, in network mode bridge (so it runs
 * without a networkConfiguration, and not on Fargate, which needs awsvpc).
 */
export const DEFAULT_LOG_GROUP = '/snapline/worker';
export const DEFAULT_STREAM_PREFIX = 'snapline';
function defaultContainers(): ContainerDefinition[] {
  return [
    { name: 'log-router', image: 'public.ecr.aws/aws-observability/aws-for-fluent-bit:stable', essential: false, environment: [] },
    {
      name: 'worker',
      image: 'snapline:latest',
      essential: true,
      environment: [],
      logConfiguration: {
        logDriver: 'awslogs',
        options: { 'awslogs-group': DEFAULT_LOG_GROUP, 'awslogs-stream-prefix': DEFAULT_STREAM_PREFIX, 'awslogs-create-group': 'true' },
      },
    },
  ];
}

const LAUNCH_TYPES = new Set(['EC2', 'FARGATE', 'EXTERNAL']);
const PROPAGATE = new Set(['TASK_DEFINITION', 'SERVICE', 'NONE']);
const NAME = /^[A-Za-z0-9_-]{1,255}$/;
/** RunTask's startedBy: up to 128 letters, digits, hyphens, slashes and underscores (StartTask's is 36). */
const STARTED_BY = /^[A-Za-z0-9/_-]{1,128}$/;
/** RunTask's clientToken: up to 64 ASCII characters from 33 to 126. */
const CLIENT_TOKEN = /^[\x21-\x7e]{1,64}$/;
/** How long ECS remembers a RunTask clientToken. */
const CLIENT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** How long DescribeTasks and ListTasks still show a stopped task ("at least one hour"), before the time scale. */
const STOPPED_TASK_TTL_MS = 60 * 60 * 1000;
/** The overrides' JSON, formatting included, is at most this long. */
const MAX_OVERRIDES_CHARS = 8192;
const MAX_TAGS = 50;
/** The ListTasks parameters that filter; startedBy must be used alone. */
const LIST_FILTERS = ['containerInstance', 'family', 'serviceName', 'desiredStatus', 'launchType', 'daemonName'] as const;
const DESIRED_STATUSES = new Set(['RUNNING', 'PENDING', 'STOPPED']);

const invalid = (message: string) => new AwsError(400, 'InvalidParameterException', message);
const client = (message: string) => new AwsError(400, 'ClientException', message);

/**
 * The subset of ECS that snapline's restore driver uses, over JSON 1.1:
 * RunTask (with clientToken idempotency and capacity failures), DescribeTasks,
 * ListTasks, StopTask, RegisterTaskDefinition and DescribeTaskDefinition. Any
 * cluster name is accepted; an unregistered task definition family stands
 * for the default one (a sidecar and a snapline worker logging to
 * /snapline/worker). Tasks run on the TaskHost and live in memory.
 */
export class EcsApi {
  readonly #definitions = new Map<string, TaskDefinition[]>();
  readonly #tasks = new Map<string, Task>();
  /** clientToken (per cluster) -> the request it came with (canonical JSON), the tasks it started, and when. */
  readonly #tokens = new Map<string, { request: string; tasks: Task[]; at: number }>();
  #serial = 0;

  constructor(
    private readonly host: TaskHost,
    private readonly faults: FaultInjector,
    /** The clock of clientToken expiry and of forgetting stopped tasks (epoch ms). */
    private readonly now: () => number = Date.now,
    /** Durations of the endpoint (how long a stopped task is kept) are divided by this. */
    private readonly timeScale = 1,
  ) {}

  async handle(operation: string, exchange: Exchange): Promise<void> {
    const input = new InputReader(await readJsonInput(exchange));
    this.#forgetStopped();
    switch (operation) {
      case 'RunTask':
        return this.#runTask(input, exchange);
      case 'DescribeTasks':
        return sendJsonResult(exchange, this.#describeTasks(input, exchange.region));
      case 'ListTasks':
        return sendJsonResult(exchange, this.#listTasks(input, exchange.region));
      case 'StopTask':
        return sendJsonResult(exchange, this.#stopTask(input, exchange.region));
      case 'RegisterTaskDefinition':
        return sendJsonResult(exchange, this.#register(input, exchange.region));
      case 'DescribeTaskDefinition': {
        const definition = this.#definition(input.requiredString('taskDefinition'), exchange.region);
        const withTags = input.stringList('include').includes('TAGS');
        return sendJsonResult(exchange, { taskDefinition: definitionView(definition), ...(withTags ? { tags: definition.tags } : {}) });
      }
      default:
        throw new AwsError(400, 'UnknownOperationException', `The local endpoint does not implement ECS ${operation || '(no X-Amz-Target)'}.`);
    }
  }

  /**
   * Validates everything first. A clientToken seen in this cluster within
   * 24 hours with the same request answers the tasks it started (as they
   * are now) and starts nothing; with another request it is refused
   * (ConflictException naming those tasks).
   */
  #runTask(input: InputReader, exchange: Exchange): void {
    const region = exchange.region;
    const cluster = clusterName(input);
    const definition = this.#definition(input.requiredString('taskDefinition'), region);
    const count = input.integer('count', 1, 10) ?? 1;
    const launchType = input.string('launchType');
    if (launchType !== undefined && !LAUNCH_TYPES.has(launchType)) throw invalid(`launchType must be one of ${[...LAUNCH_TYPES].join(', ')}`);
    const strategy = input.objectList('capacityProviderStrategy', 20).map((item) => {
      const reader = input.nested(item);
      return { capacityProvider: reader.requiredString('capacityProvider'), weight: reader.integer('weight', 0, 1000), base: reader.integer('base', 0, 100_000) };
    });
    if (launchType !== undefined && strategy.length > 0) throw invalid('Specifying both a launch type and capacity provider strategy is not supported.');
    const onFargate = launchType === 'FARGATE' || strategy.some((s) => s.capacityProvider.startsWith('FARGATE'));
    const subnets = this.#subnets(input);
    const awsvpc = definition.networkMode === 'awsvpc';
    if (onFargate && !awsvpc) throw invalid(`Tasks on Fargate need network mode awsvpc; task definition ${definition.family}:${definition.revision} uses ${definition.networkMode}.`);
    if (awsvpc && subnets === undefined) throw invalid("Network Configuration must be provided when networkMode 'awsvpc' is specified.");
    if (!awsvpc && subnets !== undefined) throw invalid(`Network Configuration is only supported for network mode awsvpc; task definition ${definition.family}:${definition.revision} uses ${definition.networkMode}.`);
    const overrides = input.object('overrides') ?? {};
    if (JSON.stringify(overrides).length > MAX_OVERRIDES_CHARS) throw invalid(`Container Overrides length must be at most ${MAX_OVERRIDES_CHARS}`);
    const containerOverrides = this.#containerOverrides(input.nested(overrides), definition);
    const propagate = input.string('propagateTags');
    if (propagate !== undefined && !PROPAGATE.has(propagate)) throw invalid('propagateTags must be TASK_DEFINITION, SERVICE or NONE');
    if (propagate === 'SERVICE') throw invalid('propagateTags SERVICE is not supported when running a task: a task run alone belongs to no service.');
    const given = tagsOf(input);
    const tags = propagate === 'TASK_DEFINITION' ? [...definition.tags.filter((t) => !given.some((g) => g.key === t.key)), ...given] : given;
    const startedBy = input.string('startedBy', { pattern: STARTED_BY });
    const clientToken = input.string('clientToken', { pattern: CLIENT_TOKEN });
    const group = input.string('group', { max: 255 }) ?? `family:${definition.family}`;

    const tokenKey = clientToken === undefined ? undefined : `${cluster} ${clientToken}`;
    const request = canonicalJson(input.without('clientToken'));
    const earlier = tokenKey === undefined ? undefined : this.#tokens.get(tokenKey);
    if (earlier !== undefined && earlier.at + CLIENT_TOKEN_TTL_MS > this.now()) {
      if (earlier.request !== request) {
        const resourceIds = earlier.tasks.map((t) => t.arn);
        throw new JsonMembersError(400, 'ConflictException', `The clientToken ${clientToken} was already used with a different RunTask request.`, { resourceIds });
      }
      return sendJsonResult(exchange, { tasks: earlier.tasks.map((t) => taskView(t, false)), failures: [] });
    }

    const tasks: Task[] = [];
    const failures: Array<{ arn: string; reason: string; detail?: string }> = [];
    for (let n = 0; n < count; n += 1) {
      if (this.faults.take('ecsCapacityFailures')) {
        failures.push(
          onFargate
            ? { arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:cluster/${cluster}`, reason: 'Capacity is unavailable at this time. Please try again later or in a different availability zone' }
            : { arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:container-instance/${cluster}/${randomBytes(16).toString('hex')}`, reason: 'RESOURCE:MEMORY' },
        );
        continue;
      }
      const id = randomBytes(16).toString('hex');
      const task: Task = {
        serial: (this.#serial += 1),
        arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:task/${cluster}/${id}`,
        id,
        cluster,
        clusterArn: clusterArn(region, cluster),
        definition,
        launchType: launchType ?? (strategy.length === 0 ? 'EC2' : onFargate ? 'FARGATE' : 'EC2'),
        ...(strategy.length === 0 ? {} : { capacityProviderName: strategy[0]!.capacityProvider }),
        ...(startedBy === undefined ? {} : { startedBy }),
        group,
        tags,
        overrides,
        lastStatus: 'PROVISIONING',
        desiredStatus: 'RUNNING',
        createdAt: this.now(),
        containers: definition.containers.map((c) => containerOf(c, containerOverrides.get(c.name), region, cluster, id)),
        version: 1,
      };
      this.#tasks.set(task.arn, task);
      tasks.push(task);
      this.host.start(task, region);
    }
    if (tokenKey !== undefined && tasks.length > 0) this.#tokens.set(tokenKey, { request, tasks, at: this.now() });
    if (tasks.length > 0 && this.faults.take('ecsLostResponses')) return dropConnection(exchange);
    sendJsonResult(exchange, { tasks: tasks.map((t) => taskView(t, false)), failures });
  }

  #describeTasks(input: InputReader, region: string) {
    const cluster = clusterName(input);
    const refs = input.stringList('tasks', 100);
    if (refs.length === 0) throw invalid('Tasks cannot be empty.');
    const withTags = input.stringList('include').includes('TAGS');
    const tasks: Record<string, unknown>[] = [];
    const failures: Array<{ arn: string; reason: string }> = [];
    for (const ref of refs) {
      const task = this.#find(cluster, ref, region);
      if (task === undefined) failures.push({ arn: ref, reason: 'MISSING' });
      else tasks.push(taskView(task, withTags));
    }
    return { tasks, failures };
  }

  /**
   * Tasks of a cluster by desired status (RUNNING when not given, as ECS
   * does: a stopped task is listed only when STOPPED is asked for), oldest
   * first, in pages of maxResults (1 to 100). startedBy must be the only
   * filter. The endpoint runs no services, container instances or daemons:
   * filtering by one lists nothing.
   */
  #listTasks(input: InputReader, region: string) {
    const cluster = clusterName(input);
    const startedBy = input.string('startedBy');
    const filters = LIST_FILTERS.filter((field) => input.string(field) !== undefined);
    if (startedBy !== undefined && filters.length > 0) {
      throw invalid(`startedBy must be the only filter of ListTasks, but ${filters.join(' and ')} ${filters.length === 1 ? 'was' : 'were'} given too.`);
    }
    const family = input.string('family');
    const desired = input.string('desiredStatus') ?? 'RUNNING';
    if (!DESIRED_STATUSES.has(desired)) throw invalid('desiredStatus must be RUNNING, PENDING or STOPPED');
    const launchType = input.string('launchType');
    if (launchType !== undefined && !LAUNCH_TYPES.has(launchType)) throw invalid(`launchType must be one of ${[...LAUNCH_TYPES].join(', ')}`);
    const elsewhere = ['containerInstance', 'serviceName', 'daemonName'].some((field) => input.string(field) !== undefined);
    const maxResults = input.integer('maxResults', 1, 100) ?? 100;
    const after = pageStart(input.string('nextToken'));
    const matching = elsewhere
      ? []
      : [...this.#tasks.values()].filter(
          (t) =>
            t.serial > after &&
            t.clusterArn === clusterArn(region, cluster) &&
            t.desiredStatus === desired &&
            (startedBy === undefined || t.startedBy === startedBy) &&
            (family === undefined || t.definition.family === family) &&
            (launchType === undefined || t.launchType === launchType),
        );
    const page = matching.slice(0, maxResults);
    const more = matching.length > maxResults;
    return { taskArns: page.map((t) => t.arn), ...(more ? { nextToken: Buffer.from(`after:${page.at(-1)!.serial}`).toString('base64url') } : {}) };
  }

  #stopTask(input: InputReader, region: string) {
    const cluster = clusterName(input);
    const task = this.#find(cluster, input.requiredString('task'), region);
    if (task === undefined) throw invalid('The referenced task was not found.');
    this.host.stop(task, input.string('reason', { max: 255 }) ?? 'Task stopped by user');
    return { task: taskView(task, false) };
  }

  #register(input: InputReader, region: string) {
    const family = input.requiredString('family', { pattern: NAME });
    const containers = input.objectList('containerDefinitions', 10).map((raw) => containerDefinitionOf(input.nested(raw)));
    if (containers.length === 0) throw client('Container definitions cannot be empty.');
    if (!containers.some((c) => c.essential)) throw client(`Invalid setting for container '${containers[0]!.name}'. At least one container in a task definition must be essential.`);
    const revisions = this.#definitions.get(family) ?? [];
    const revision = revisions.length + 1;
    const definition: TaskDefinition = {
      arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:task-definition/${family}:${revision}`,
      family,
      revision,
      containers,
      networkMode: networkModeOf(input),
      ...(input.string('cpu') === undefined ? {} : { cpu: input.string('cpu')! }),
      ...(input.string('memory') === undefined ? {} : { memory: input.string('memory')! }),
      requiresCompatibilities: input.stringList('requiresCompatibilities'),
      tags: tagsOf(input),
      registeredAt: Date.now(),
    };
    this.#definitions.set(family, [...revisions, definition]);
    return { taskDefinition: definitionView(definition), tags: definition.tags };
  }

  /** "family", "family:revision" or an ARN; the latest revision when none is given. */
  #definition(ref: string, region: string): TaskDefinition {
    const name = ref.startsWith('arn:') ? (ref.split(':task-definition/')[1] ?? '') : ref;
    const [family = '', revisionText] = name.split(':');
    if (!NAME.test(family) || (revisionText !== undefined && !/^\d+$/.test(revisionText))) throw client('Unable to describe task definition.');
    const revisions = this.#definitions.get(family);
    if (revisions === undefined) {
      return {
        arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:task-definition/${family}:${revisionText ?? 1}`,
        family,
        revision: Number(revisionText ?? 1),
        containers: defaultContainers(),
        networkMode: 'bridge',
        cpu: '1024',
        memory: '2048',
        requiresCompatibilities: ['EC2', 'EXTERNAL'],
        tags: [],
        registeredAt: 0,
      };
    }
    const found = revisionText === undefined ? revisions.at(-1) : revisions[Number(revisionText) - 1];
    if (found === undefined) throw client('Unable to describe task definition.');
    return found;
  }

  /**
   * ECS keeps a stopped task for about an hour (DescribeTasks: "at least
   * one hour"): after STOPPED_TASK_TTL_MS (scaled) on the endpoint's clock it
   * is gone from DescribeTasks (MISSING), ListTasks and StopTask. A RunTask
   * repeated with its clientToken still answers it.
   */
  #forgetStopped(): void {
    const keptSince = this.now() - STOPPED_TASK_TTL_MS / this.timeScale;
    for (const [arn, task] of this.#tasks) {
      if (task.lastStatus === 'STOPPED' && task.stoppedAt !== undefined && task.stoppedAt <= keptSince) this.#tasks.delete(arn);
    }
  }

  #find(cluster: string, ref: string, region: string): Task | undefined {
    const arn = ref.startsWith('arn:') ? ref : `arn:aws:ecs:${region}:${ACCOUNT_ID}:task/${cluster}/${ref}`;
    const task = this.#tasks.get(arn);
    return task?.cluster === cluster ? task : undefined;
  }

  /** The subnets of networkConfiguration, undefined without one. */
  #subnets(input: InputReader): string[] | undefined {
    const network = input.object('networkConfiguration');
    if (network === undefined) return undefined;
    const vpc = input.nested(network).object('awsvpcConfiguration');
    if (vpc === undefined) throw invalid('networkConfiguration.awsvpcConfiguration is required');
    const reader = input.nested(vpc);
    const subnets = reader.stringList('subnets', 16);
    reader.stringList('securityGroups', 5);
    const publicIp = reader.string('assignPublicIp');
    if (publicIp !== undefined && publicIp !== 'ENABLED' && publicIp !== 'DISABLED') throw invalid('assignPublicIp must be ENABLED or DISABLED');
    if (subnets.length === 0) throw invalid('subnets can not be empty.');
    return subnets;
  }

  #containerOverrides(overrides: InputReader, definition: TaskDefinition): Map<string, { command?: string[]; environment: KeyValue[] }> {
    const byName = new Map<string, { command?: string[]; environment: KeyValue[] }>();
    for (const raw of overrides.objectList('containerOverrides')) {
      const reader = overrides.nested(raw);
      const name = reader.requiredString('name');
      if (!definition.containers.some((c) => c.name === name)) throw invalid(`Override for container named ${name} is not a container in the TaskDefinition.`);
      const command = raw.command === undefined ? undefined : reader.stringList('command');
      byName.set(name, { ...(command === undefined ? {} : { command }), environment: keyValues(reader, 'environment') });
    }
    return byName;
  }
}

/** none, bridge, awsvpc or host; bridge when not given. */
function networkModeOf(input: InputReader): string {
  const mode = input.string('networkMode') ?? 'bridge';
  if (!['none', 'bridge', 'awsvpc', 'host'].includes(mode)) throw client('networkMode must be none, bridge, awsvpc or host.');
  return mode;
}

function clusterName(input: InputReader): string {
  const ref = input.string('cluster') ?? 'default';
  const name = ref.startsWith('arn:') ? (ref.split(':cluster/')[1] ?? '') : ref;
  if (!NAME.test(name)) throw new AwsError(400, 'ClusterNotFoundException', 'Cluster not found.');
  return name;
}

function clusterArn(region: string, cluster: string): string {
  return `arn:aws:ecs:${region}:${ACCOUNT_ID}:cluster/${cluster}`;
}

/** The serial a ListTasks page starts after (0 without a token); InvalidParameterException for a token this endpoint did not give. */
function pageStart(token: string | undefined): number {
  if (token === undefined) return 0;
  const parsed = /^after:(\d{1,15})$/.exec(Buffer.from(token, 'base64url').toString());
  if (parsed === null) throw invalid('Invalid nextToken: it does not come from a ListTasks answer.');
  return Number(parsed[1]);
}

/**
 * Up to 50 tags, keys of 1 to 128 characters, values up to 256, each key
 * once; a key or value starting with aws: (any case) is reserved for AWS.
 */
function tagsOf(input: InputReader): Tag[] {
  const tags = input.objectList('tags', MAX_TAGS).map((raw) => {
    const reader = input.nested(raw);
    const key = reader.requiredString('key', { max: 128 });
    const value = reader.string('value', { max: 256 }) ?? '';
    if (key.toLowerCase().startsWith('aws:') || value.toLowerCase().startsWith('aws:')) throw invalid('Tag keys and values starting with aws: are reserved for AWS use.');
    return { key, value };
  });
  const keys = new Set(tags.map((t) => t.key));
  if (keys.size < tags.length) throw invalid('Each tag key must be unique: a key may have only one value.');
  return tags;
}

/** JSON with object keys in sorted order, so that two requests with the same members compare equal. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    return `{${entries
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function keyValues(reader: InputReader, field: string): KeyValue[] {
  return reader.objectList(field).map((raw) => {
    const pair = reader.nested(raw);
    return { name: pair.requiredString('name'), value: pair.string('value') ?? '' };
  });
}

function containerDefinitionOf(reader: InputReader): ContainerDefinition {
  const name = reader.requiredString('name', { pattern: NAME });
  const image = reader.requiredString('image');
  const log = reader.object('logConfiguration');
  let logConfiguration: ContainerDefinition['logConfiguration'];
  if (log !== undefined) {
    const logReader = reader.nested(log);
    const logDriver = logReader.requiredString('logDriver');
    const options = logReader.object('options') ?? {};
    if (!Object.values(options).every((v) => typeof v === 'string')) throw client(`Invalid setting for container '${name}': log options must be strings.`);
    if (logDriver === 'awslogs' && typeof options['awslogs-group'] !== 'string') throw client(`Invalid setting for container '${name}': awslogs needs awslogs-group.`);
    logConfiguration = { logDriver, options: options as Record<string, string> };
  }
  const command = reader.stringList('command');
  return {
    name,
    image,
    essential: reader.boolean('essential') ?? true,
    ...(command.length === 0 ? {} : { command }),
    environment: keyValues(reader, 'environment'),
    ...(logConfiguration === undefined ? {} : { logConfiguration }),
  };
}

function containerOf(
  definition: ContainerDefinition,
  override: { command?: string[]; environment: KeyValue[] } | undefined,
  region: string,
  cluster: string,
  taskId: string,
): Container {
  const environment = [...definition.environment.filter((e) => !override?.environment.some((o) => o.name === e.name)), ...(override?.environment ?? [])];
  const command = override?.command ?? definition.command;
  const options = definition.logConfiguration?.logDriver === 'awslogs' ? definition.logConfiguration.options : undefined;
  const prefix = options?.['awslogs-stream-prefix'];
  return {
    arn: `arn:aws:ecs:${region}:${ACCOUNT_ID}:container/${cluster}/${taskId}/${randomUUID()}`,
    name: definition.name,
    image: definition.image,
    essential: definition.essential,
    lastStatus: 'PENDING',
    ...(command === undefined ? {} : { command }),
    environment,
    ...(options === undefined
      ? {}
      : {
          log: {
            group: options['awslogs-group']!,
            stream: prefix === undefined ? taskId : `${prefix}/${definition.name}/${taskId}`,
            createGroup: options['awslogs-create-group'] === 'true',
          },
        }),
  };
}
