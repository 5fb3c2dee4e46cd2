import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Container, StopCode, Task } from './model.js';
import type { FaultInjector } from '../faults.js';
import type { LogStore } from '../logs/logs.js';

/** What a task's processes need from the endpoint around them. */
export interface TaskHostConfig {
  logs: LogStore;
  faults: FaultInjector;
  /** The endpoint's URL, given to the processes as AWS_ENDPOINT_URL. */
  endpointUrl: () => string;
  /** The credentials the processes sign with (the "task role"). */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** argv that stands for the snapline image's ENTRYPOINT; default: this Node and bin/snapline.js of this package. */
  entrypoint?: readonly string[];
  /** More environment for every process (e.g. AWS_CA_BUNDLE). */
  env?: Readonly<Record<string, string>>;
  /** Pause between lifecycle steps (PROVISIONING to PENDING to RUNNING, DEPROVISIONING to STOPPED). */
  stepMs?: number;
  /** Log lines become readable this long after they were written (the awslogs driver ships in batches). */
  logLagMs?: number;
  /** Time between SIGTERM and SIGKILL when a task is stopped (ECS's stopTimeout). */
  stopTimeoutMs?: number;
  /** Reports internal failures. */
  log: (line: string) => void;
  /** The endpoint's clock (epoch ms): the tasks' timestamps, createdAt to stoppedAt; default Date.now. */
  now?: () => number;
}

const DEFAULT_STEP_MS = 20;
const DEFAULT_LOG_LAG_MS = 150;
const DEFAULT_STOP_TIMEOUT_MS = 2000;

/** A container whose image is snapline's runs the entrypoint with its command; any other is a stand-in (a sidecar). */
export function runsSnapline(container: { image: string }): boolean {
  return /snapline/i.test(container.image);
}

interface Running {
  task: Task;
  dir: string;
  processes: Map<Container, ChildProcess>;
  timers: Set<NodeJS.Timeout>;
  /** Set when the host is to be lost at the first line of output (fault). */
  hostStopPending: boolean;
  /** The host was lost: containers report no exit code. */
  hostLost: boolean;
}

/**
 * Runs ECS tasks on this machine: each snapline container is a child
 * process (`node bin/snapline.js <command...>`) in a scratch directory with
 * an environment that reaches this endpoint, its stdout and stderr going to
 * its awslogs stream `prefix/container/taskId`; other containers are
 * stand-ins that run until the task stops and exit 0. A task stops when an
 * essential container exits, when StopTask asks (SIGTERM, then SIGKILL after
 * the stop timeout), or when a fault takes its host away. Tasks live in
 * memory: close() kills what runs.
 */
export class TaskHost {
  readonly #config: TaskHostConfig;
  readonly #entrypoint: readonly string[];
  readonly #running = new Map<string, Running>();
  #closed = false;

  constructor(config: TaskHostConfig) {
    this.#config = config;
    this.#entrypoint = config.entrypoint ?? [process.execPath, snaplineBin()];
  }

  #now(): number {
    return (this.#config.now ?? Date.now)();
  }

  get #step(): number {
    return this.#config.stepMs ?? DEFAULT_STEP_MS;
  }

  /** Takes a new task (PROVISIONING) through its lifecycle. Never throws. */
  start(task: Task, region: string): void {
    const run: Running = {
      task,
      dir: mkdtempSync(join(tmpdir(), 'snapline-task-')),
      processes: new Map(),
      timers: new Set(),
      hostStopPending: false,
      hostLost: false,
    };
    this.#running.set(task.arn, run);
    this.#after(run, () => {
      if (task.desiredStatus === 'STOPPED') return this.#finish(run);
      this.#change(task, { lastStatus: 'PENDING', pullStartedAt: this.#now() });
      this.#after(run, () => this.#launch(run, region));
    });
  }

  /** StopTask: SIGTERM to every process, SIGKILL after the stop timeout. Idempotent. */
  stop(task: Task, reason: string): void {
    const run = this.#running.get(task.arn);
    if (task.lastStatus === 'STOPPED' || task.desiredStatus === 'STOPPED') return;
    this.#change(task, { desiredStatus: 'STOPPED', stoppingAt: this.#now(), stopCode: 'UserInitiated', stoppedReason: reason });
    if (run === undefined || task.lastStatus !== 'RUNNING') return;
    this.#signalAll(run, 'SIGTERM');
    this.#after(run, () => this.#signalAll(run, 'SIGKILL'), this.#config.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
    if (run.processes.size === 0) this.#deprovision(run);
  }

  /** Kills every process and waits for them; tasks under way stay as they are. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    const exits: Promise<void>[] = [];
    for (const run of this.#running.values()) {
      for (const timer of run.timers) clearTimeout(timer);
      for (const child of run.processes.values()) {
        if (child.exitCode === null && child.signalCode === null) {
          exits.push(new Promise((resolve) => child.once('close', () => resolve())));
          child.kill('SIGKILL');
        }
      }
    }
    await Promise.all(exits);
    for (const run of this.#running.values()) rmSync(run.dir, { recursive: true, force: true });
    this.#running.clear();
  }

  #launch(run: Running, region: string): void {
    const { task } = run;
    if (task.desiredStatus === 'STOPPED') return this.#finish(run);
    const faults = this.#config.faults;
    if (faults.take('ecsStartFailures')) {
      return this.#failStart(run, 'CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref (injected by the local endpoint)');
    }
    for (const container of task.containers) {
      if (container.log === undefined) continue;
      const { group, stream, createGroup } = container.log;
      if (!this.#config.logs.hasGroup(group)) {
        if (!createGroup) {
          return this.#failStart(
            run,
            `CannotStartContainerError: failed to initialize logging driver: failed to create Cloudwatch log stream: ResourceNotFoundException: The specified log group ${group} does not exist.`,
          );
        }
        this.#config.logs.createGroup(group);
      }
      this.#config.logs.createStream(group, stream);
    }
    const failWith = faults.take('ecsExitFailures') ? faults.ecsExitCode : undefined;
    run.hostStopPending = faults.take('ecsHostStops');
    this.#change(task, { lastStatus: 'RUNNING', startedAt: this.#now(), pullStoppedAt: this.#now() });
    for (const container of task.containers) {
      container.lastStatus = 'RUNNING';
      if (!runsSnapline(container)) continue;
      const argv =
        failWith === undefined
          ? [...this.#entrypoint, ...(container.command ?? [])]
          : [process.execPath, '-e', `process.stderr.write('the local endpoint makes this container exit with code ${failWith}\\n'); process.exit(${failWith})`];
      this.#spawn(run, container, argv, region);
    }
  }

  #spawn(run: Running, container: Container, argv: readonly string[], region: string): void {
    const env = this.#environment(run, container, region);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: run.dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    run.processes.set(container, child);
    const write = (line: string) => {
      if (container.log !== undefined) {
        this.#config.logs.append(container.log.group, container.log.stream, [{ timestamp: Date.now(), message: line }], this.#config.logLagMs ?? DEFAULT_LOG_LAG_MS);
      }
      if (run.hostStopPending) {
        run.hostStopPending = false;
        this.#loseHost(run);
      }
    };
    forEachLine(child.stdout!, write);
    forEachLine(child.stderr!, write);
    child.on('error', (err) => {
      container.reason = `CannotStartContainerError: ${err.message}`;
    });
    child.on('close', (code, signal) => {
      run.processes.delete(container);
      this.#containerStopped(run, container, code, signal);
    });
  }

  #environment(run: Running, container: Container, region: string): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH,
      HOME: run.dir,
      TMPDIR: run.dir,
      SNAPLINE_DATA_DIR: join(run.dir, 'data'),
      XDG_CONFIG_HOME: join(run.dir, 'config'),
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_ENDPOINT_URL: this.#config.endpointUrl(),
      AWS_ACCESS_KEY_ID: this.#config.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: this.#config.credentials.secretAccessKey,
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...this.#config.env,
    };
    for (const { name, value } of container.environment) env[name] = value;
    return env;
  }

  #containerStopped(run: Running, container: Container, code: number | null, signal: NodeJS.Signals | null): void {
    const { task } = run;
    container.lastStatus = 'STOPPED';
    if (!run.hostLost && container.reason === undefined) container.exitCode = code ?? 128 + (signal === null ? 0 : (osConstants.signals[signal] ?? 0));
    task.version += 1;
    if (container.essential && task.desiredStatus !== 'STOPPED') {
      this.#change(task, {
        desiredStatus: 'STOPPED',
        stoppingAt: this.#now(),
        stopCode: container.reason === undefined ? 'EssentialContainerExited' : 'TaskFailedToStart',
        stoppedReason: container.reason ?? 'Essential container in task exited',
      });
      this.#signalAll(run, 'SIGTERM');
      this.#after(run, () => this.#signalAll(run, 'SIGKILL'), this.#config.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
    }
    if (run.processes.size === 0 && task.desiredStatus === 'STOPPED') this.#deprovision(run);
  }

  /** The host goes away: every process is killed, no container reports an exit code. */
  #loseHost(run: Running): void {
    const { task } = run;
    const onEc2 = task.launchType === 'EC2';
    const stopCode: StopCode = onEc2 ? 'TerminationNotice' : 'SpotInterruption';
    run.hostLost = true;
    this.#change(task, {
      desiredStatus: 'STOPPED',
      stoppingAt: this.#now(),
      stopCode,
      stoppedReason: onEc2 ? `Host EC2 (instance i-0${task.id.slice(0, 16)}) terminated.` : 'Your Spot Task was interrupted.',
    });
    this.#signalAll(run, 'SIGKILL');
  }

  #failStart(run: Running, reason: string): void {
    for (const container of run.task.containers) container.reason = reason;
    this.#change(run.task, { desiredStatus: 'STOPPED', stoppingAt: this.#now(), stopCode: 'TaskFailedToStart', stoppedReason: reason });
    this.#finish(run);
  }

  #deprovision(run: Running): void {
    if (run.task.lastStatus === 'DEPROVISIONING' || run.task.lastStatus === 'STOPPED') return;
    this.#change(run.task, { lastStatus: 'DEPROVISIONING', executionStoppedAt: this.#now() });
    this.#after(run, () => this.#finish(run));
  }

  #finish(run: Running): void {
    const { task } = run;
    for (const container of task.containers) {
      if (container.lastStatus === 'RUNNING' && !runsSnapline(container) && !run.hostLost) container.exitCode = 0;
      container.lastStatus = 'STOPPED';
    }
    const now = this.#now();
    this.#change(task, { lastStatus: 'STOPPED', desiredStatus: 'STOPPED', executionStoppedAt: task.executionStoppedAt ?? now, stoppedAt: now });
    for (const timer of run.timers) clearTimeout(timer);
    rmSync(run.dir, { recursive: true, force: true });
    this.#running.delete(task.arn);
  }

  #signalAll(run: Running, signal: NodeJS.Signals): void {
    for (const child of run.processes.values()) child.kill(signal);
  }

  #change(task: Task, fields: Partial<Task>): void {
    Object.assign(task, fields);
    task.version += 1;
  }

  #after(run: Running, fn: () => void, ms = this.#step): void {
    if (this.#closed) return;
    const timer = setTimeout(() => {
      run.timers.delete(timer);
      if (this.#closed) return;
      try {
        fn();
      } catch (err) {
        this.#config.log(`snapline endpoint: internal error in the ECS task runner: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
    }, ms);
    run.timers.add(timer);
  }
}

/** Calls `onLine` for every line of a stream, the last one included when it lacks a newline. */
function forEachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\n');
    rest = lines.pop()!;
    for (const line of lines) onLine(line.replace(/\r$/, ''));
  });
  stream.on('end', () => {
    if (rest !== '') onLine(rest);
    rest = '';
  });
}

/** bin/snapline.js of the package this module belongs to (from src/emulator or dist/src/emulator). */
function snaplineBin(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'bin', 'snapline.js');
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return 'snapline';
    dir = parent;
  }
}
