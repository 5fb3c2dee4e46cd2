/**
 * The CLI's main() run inside the test process: the same program as
 * bin/snapline.js without a node start-up and module loading per run, which
 * makes trying dozens of refusals cheap. Runs go one at a time, since stdout,
 * stderr and the environment are this process's. Only for runs that end by
 * themselves: signals, other users and SIGKILL need a child (cli.js).
 */
import { main } from '../../src/cli/main.js';
import { hermeticEnv, recordRun } from './cli.js';

export interface InProcessResult {
  code: number;
  stdout: string;
  stderr: string;
}

let queue: Promise<unknown> = Promise.resolve();

/**
 * `snapline ...args` with the environment of cli.js's hermeticEnv(dataDir, env):
 * no AWS_ or SNAPLINE_ setting nor config file from outside. Resolves with the exit code main() returns.
 */
export function runInProcess(args: string[], options: { dataDir: string; env?: NodeJS.ProcessEnv }): Promise<InProcessResult> {
  const run = queue.then(() => runNow(args, options));
  queue = run.catch(() => undefined);
  return run;
}

async function runNow(args: string[], options: { dataDir: string; env?: NodeJS.ProcessEnv }): Promise<InProcessResult> {
  const savedEnv = { ...process.env };
  const out = { stdout: '', stderr: '' };
  const writes = { stdout: process.stdout.write, stderr: process.stderr.write };
  const capture = (stream: 'stdout' | 'stderr') =>
    ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      out[stream] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
      callback?.();
      return true;
    }) as typeof process.stdout.write;
  const env = hermeticEnv(options.dataDir, options.env);
  for (const key of Object.keys(process.env)) if (!(key in env)) delete process.env[key];
  Object.assign(process.env, env);
  process.stdout.write = capture('stdout');
  process.stderr.write = capture('stderr');
  try {
    const code = await main(['node', 'snapline', ...args]);
    return { code, ...out };
  } finally {
    process.stdout.write = writes.stdout;
    process.stderr.write = writes.stderr;
    for (const key of Object.keys(process.env)) if (!(key in savedEnv)) delete process.env[key];
    Object.assign(process.env, savedEnv);
    recordRun(args, options.env ?? {}, out.stdout, out.stderr);
  }
}
