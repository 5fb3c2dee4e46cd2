import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';

/** The AWS CLI on PATH, or undefined. */
export function findAwsCli(): string | undefined {
  try {
    return execFileSync('which', ['aws'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `aws <args> --endpoint-url URL --output json` with dummy credentials,
 * no user configuration (HOME and the config files point into `workDir`) and
 * the working directory `workDir`, so that file:// and plain paths are
 * relative to it.
 */
export function runAwsCli(aws: string, endpointUrl: string, workDir: string, args: string[]): Promise<CliResult> {
  const env = {
    PATH: process.env.PATH,
    HOME: workDir,
    AWS_ACCESS_KEY_ID: 'AKIDSNAPLINECLI',
    AWS_SECRET_ACCESS_KEY: 'cli-secret',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(workDir, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(workDir, 'no-credentials'),
    AWS_PAGER: '',
  };
  return new Promise((resolve) => {
    execFile(aws, [...args, '--endpoint-url', endpointUrl, '--output', 'json'], { env, cwd: workDir, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** runAwsCli that must succeed; its JSON output parsed ({} when it prints nothing). */
export async function awsCliJson<T = Record<string, unknown>>(aws: string, endpointUrl: string, workDir: string, args: string[]): Promise<T> {
  const result = await runAwsCli(aws, endpointUrl, workDir, args);
  if (result.code !== 0) throw new Error(`aws ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return (result.stdout.trim() === '' ? {} : JSON.parse(result.stdout)) as T;
}
