import type { IncomingHttpHeaders } from 'node:http';
import { AwsError } from '../protocol/aws-error.js';
import { EcsApi, ECS_TARGET_PREFIX } from './ecs.js';
import { TaskHost } from './runner.js';
import type { FaultInjector } from '../faults.js';
import type { Exchange } from '../protocol/http.js';
import { sendJsonError, targetOperation, targetPrefix } from '../protocol/json-rpc.js';
import { LogsApi, LogStore, LOGS_TARGET_PREFIX } from '../logs/logs.js';

/** How the endpoint runs ECS tasks (see TaskHostConfig). */
export interface TaskOptions {
  /** argv standing for the snapline image's ENTRYPOINT; default this Node and this package's bin/snapline.js. */
  entrypoint?: readonly string[];
  /** More environment for every task process (e.g. AWS_CA_BUNDLE when the endpoint speaks HTTPS). */
  env?: Readonly<Record<string, string>>;
  /** Log lines become readable this long after they were written (default 150 ms). */
  logLagMs?: number;
  /** Time between SIGTERM and SIGKILL when a task is stopped (default 2 s). */
  stopTimeoutMs?: number;
}

export type ContainerService = 'ecs' | 'logs';

/** Credentials of task processes when the endpoint checks no signatures. */
const TASK_CREDENTIALS = { accessKeyId: 'snapline-task', secretAccessKey: 'snapline-task-secret' };

/**
 * ECS and CloudWatch Logs (both AWS JSON 1.1) as the endpoint serves them:
 * tasks run as local processes whose output feeds the logs. In memory: they
 * end with the endpoint.
 */
export class ContainerServices {
  readonly #host: TaskHost;
  readonly #ecs: EcsApi;
  readonly #logs: LogsApi;

  constructor(config: {
    faults: FaultInjector;
    log: (line: string) => void;
    endpointUrl: () => string;
    /** The access key task processes sign with; the built-in one when the endpoint checks no signatures. */
    credentials?: { accessKeyId: string; secretAccessKey: string };
    tasks?: TaskOptions;
    /** The clock (epoch ms) of the tasks' timestamps, of clientToken and log token expiry, and of forgetting stopped tasks; default Date.now. */
    now?: () => number;
    /** The endpoint's time scale: how long a stopped task is kept is divided by it (default 1). */
    timeScale?: number;
  }) {
    const store = new LogStore();
    this.#host = new TaskHost({
      ...config.tasks,
      logs: store,
      faults: config.faults,
      endpointUrl: config.endpointUrl,
      credentials: config.credentials ?? TASK_CREDENTIALS,
      log: config.log,
      ...(config.now === undefined ? {} : { now: config.now }),
    });
    this.#ecs = new EcsApi(this.#host, config.faults, config.now, config.timeScale);
    this.#logs = new LogsApi(store, config.now);
  }

  /** The service an unsigned request is for, by its X-Amz-Target. */
  static serviceOf(headers: IncomingHttpHeaders): ContainerService | undefined {
    const prefix = targetPrefix(headers);
    if (prefix === ECS_TARGET_PREFIX) return 'ecs';
    if (prefix === LOGS_TARGET_PREFIX) return 'logs';
    return undefined;
  }

  /** The operation named by X-Amz-Target ('' when absent or for another service). */
  static operationOf(service: ContainerService, headers: IncomingHttpHeaders): string {
    return targetOperation(headers, service === 'ecs' ? ECS_TARGET_PREFIX : LOGS_TARGET_PREFIX) ?? '';
  }

  /** Answers one request; AWS errors go back in the JSON 1.1 shape. */
  async handle(service: ContainerService, operation: string, exchange: Exchange): Promise<void> {
    try {
      await (service === 'ecs' ? this.#ecs : this.#logs).handle(operation, exchange);
    } catch (err) {
      if (!(err instanceof AwsError)) throw err;
      sendJsonError(exchange, err);
    }
  }

  /** Kills every task process. Idempotent. */
  close(): Promise<void> {
    return this.#host.close();
  }
}
