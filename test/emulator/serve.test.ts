import { CompleteSnapshotCommand, EBSClient, ListSnapshotBlocksCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand, EC2Client, DescribeInstancesCommand, GetEbsEncryptionByDefaultCommand } from '@aws-sdk/client-ec2';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, RestoreObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateVaultCommand, DescribeJobCommand, GlacierClient, InitiateJobCommand, UploadArchiveCommand } from '@aws-sdk/client-glacier';
import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { registerServe } from '../../src/cli/commands/serve.js';
import type { CommandContext, Wrap } from '../../src/cli/context.js';
import { Output, type GlobalOptions } from '../../src/cli/output.js';
import { exitCodeFor, ExitCodes, toSnaplineError } from '../../src/errors.js';
import { CREDENTIALS, REGION, tempDir } from './helpers.js';

class Capture extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

interface ServeRun {
  stdout: Capture;
  stderr: Capture;
  /** Resolves with the exit code once the command returns. */
  exit: Promise<number>;
  stop: () => void;
}

/** Runs `snapline serve ARGS` in-process the way the CLI shell does; stop() aborts it like SIGINT. */
function serve(args: string[], globals: Partial<GlobalOptions> = {}): ServeRun {
  const stdout = new Capture();
  const stderr = new Capture();
  const abort = new AbortController();
  const options: GlobalOptions = { json: false, progress: false, verbose: false, ...globals };
  const ctx: CommandContext = { globals: () => options, output: () => new Output(options, stdout, stderr), signal: abort.signal };
  let code: number = ExitCodes.OK;
  const wrap: Wrap =
    (action) =>
    async (...actionArgs) => {
      try {
        code = (await action(ctx, ...actionArgs)) ?? ExitCodes.OK;
      } catch (err) {
        const error = toSnaplineError(err);
        ctx.output().error(error);
        code = exitCodeFor(error.code);
      }
    };
  const program = new Command('snapline').exitOverride();
  registerServe(program, wrap);
  const exit = program.parseAsync(['node', 'snapline', 'serve', ...args]).then(() => code);
  return { stdout, stderr, exit, stop: () => abort.abort() };
}

async function listeningUrl(run: ServeRun): Promise<string> {
  for (let i = 0; i < 500; i += 1) {
    const m = /listening on (http:\/\/\S+)/.exec(run.stdout.text);
    if (m) return m[1]!;
    const early = await Promise.race([run.exit, new Promise((r) => setTimeout(() => r(undefined), 10))]);
    if (early !== undefined) throw new Error(`serve exited with ${String(early)}: ${run.stderr.text}`);
  }
  throw new Error('serve did not say where it listens');
}

const dirs: { cleanup: () => void }[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.cleanup();
});

describe('snapline serve', () => {
  it('prints where it listens, applies the fault flags, and stops cleanly when interrupted', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--port', '0', '--data-dir', dir.path, '--seed', '9', '--throttle-rate', '0.25', '--completion-delay-ms', '100']);
    const url = await listeningUrl(run);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(run.stdout.text).toBe(`listening on ${url}\n`);
    expect(await (await fetch(`${url}/_snapline/faults`)).json()).toEqual({ seed: 9, throttleRate: 0.25, completionDelayMs: 100 });
    run.stop();
    expect(await run.exit).toBe(0);
    await expect(fetch(`${url}/_snapline/stats`)).rejects.toThrow();
    expect(existsSync(join(dir.path, 'catalog.sqlite'))).toBe(true);
  });

  it('applies the archive tier flags: --restore-delay-ms and --job-delay-ms per tier, --job-failure-rate', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--port', '0', '--data-dir', dir.path, '--restore-delay-ms', 'bulk=0', '--job-delay-ms', 'Bulk=0', '--job-failure-rate', '1']);
    const url = await listeningUrl(run);
    try {
      expect(await (await fetch(`${url}/_snapline/faults`)).json()).toEqual({ jobFailureRate: 1 });
      const s3 = new S3Client({ endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1, forcePathStyle: true });
      const glacier = new GlacierClient({ endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
      try {
        await s3.send(new CreateBucketCommand({ Bucket: 'flags' }));
        await s3.send(new PutObjectCommand({ Bucket: 'flags', Key: 'k', Body: 'x', StorageClass: 'GLACIER' }));
        await s3.send(new RestoreObjectCommand({ Bucket: 'flags', Key: 'k', RestoreRequest: { Days: 1, GlacierJobParameters: { Tier: 'Bulk' } } }));
        expect((await s3.send(new HeadObjectCommand({ Bucket: 'flags', Key: 'k' }))).Restore).toMatch(/^ongoing-request="false"/);
        await glacier.send(new CreateVaultCommand({ accountId: '-', vaultName: 'flags' }));
        const { archiveId } = await glacier.send(new UploadArchiveCommand({ accountId: '-', vaultName: 'flags', body: Buffer.from('x') }));
        const { jobId } = await glacier.send(new InitiateJobCommand({ accountId: '-', vaultName: 'flags', jobParameters: { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Bulk' } }));
        expect((await glacier.send(new DescribeJobCommand({ accountId: '-', vaultName: 'flags', jobId }))).StatusCode).toBe('Failed');
      } finally {
        s3.destroy();
        glacier.destroy();
      }
    } finally {
      run.stop();
    }
    expect(await run.exit).toBe(0);
  });

  it('applies the clock flags: --time-scale, --ec2-lag-ms, --clock-skew-s, and --encryption-by-default', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--port', '0', '--data-dir', dir.path, '--time-scale', '600', '--ec2-lag-ms', '600000', '--clock-skew-s', '-7200', '--encryption-by-default']);
    const url = await listeningUrl(run);
    const config = { endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 };
    const ebs = new EBSClient(config);
    const ec2 = new EC2Client(config);
    try {
      expect((await ec2.send(new GetEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(true);
      const before = Date.now();
      const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
      expect(started.KmsKeyArn).toBeDefined();
      // Two hours behind the wall clock, give or take a minute.
      expect(Math.abs(started.StartTime!.getTime() - (before - 7_200_000))).toBeLessThan(60_000);
      // Ten minutes of EC2 lag: not listed yet.
      expect((await ec2.send(new DescribeSnapshotsCommand({}))).Snapshots ?? []).toEqual([]);
      await ebs.send(new CompleteSnapshotCommand({ SnapshotId: started.SnapshotId!, ChangedBlocksCount: 0 }));
      const listing = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: started.SnapshotId! }));
      // Block tokens live 7 days / 600 = 1008 s.
      expect(Math.abs(listing.ExpiryTime!.getTime() - (started.StartTime!.getTime() + 1_008_000))).toBeLessThan(60_000);
    } finally {
      ebs.destroy();
      ec2.destroy();
      run.stop();
    }
    expect(await run.exit).toBe(0);
  });

  it('--instances ZONE=N makes running instances and prints their ids; a zone the endpoint does not serve is named', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--port', '0', '--data-dir', dir.path, '--instances', 'us-east-1a=2', '--instances', 'us-east-1b=1']);
    const url = await listeningUrl(run);
    const ec2 = new EC2Client({ endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
    try {
      for (let i = 0; i < 500 && (run.stdout.text.match(/instance i-/g) ?? []).length < 3; i += 1) await new Promise((r) => setTimeout(r, 10));
      const printed = [...run.stdout.text.matchAll(/instance (i-[0-9a-f]+) running in (\S+)/g)].map((m) => [m[1], m[2]]);
      expect(printed.map(([, zone]) => zone)).toEqual(['us-east-1a', 'us-east-1a', 'us-east-1b']);
      const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: printed.map(([id]) => id!) }));
      expect(described.Reservations?.flatMap((r) => r.Instances!.map((i) => i.State?.Name))).toEqual(['running', 'running', 'running']);
    } finally {
      ec2.destroy();
      run.stop();
    }
    expect(await run.exit).toBe(0);

    const bad = serve(['--port', '0', '--data-dir', dir.path, '--instances', 'us-east-1z=1']);
    expect(await bad.exit).toBe(ExitCodes.USAGE);
    expect(bad.stderr.text).toContain("--instances must be ZONE=COUNT with a zone such as us-east-1a and a count from 1 to 100, got 'us-east-1z=1'");
  });

  it('prints a JSON document with --json', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--port', '0', '--data-dir', dir.path], { json: true });
    for (let i = 0; i < 500 && !run.stdout.text.includes('}'); i += 1) await new Promise((r) => setTimeout(r, 10));
    const doc = JSON.parse(run.stdout.text) as { url: string; port: number; dataDir: string };
    expect(doc.url).toBe(`http://127.0.0.1:${doc.port}`);
    expect(doc.dataDir).toBe(dir.path);
    run.stop();
    expect(await run.exit).toBe(0);
  });

  it('keeps its data under SNAPLINE_DATA_DIR/endpoint by default', async () => {
    const dir = tempDir();
    dirs.push(dir);
    const saved = process.env.SNAPLINE_DATA_DIR;
    process.env.SNAPLINE_DATA_DIR = dir.path;
    try {
      const run = serve(['--port', '0']);
      await listeningUrl(run);
      run.stop();
      expect(await run.exit).toBe(0);
      expect(existsSync(join(dir.path, 'endpoint', 'catalog.sqlite'))).toBe(true);
    } finally {
      if (saved === undefined) delete process.env.SNAPLINE_DATA_DIR;
      else process.env.SNAPLINE_DATA_DIR = saved;
    }
  });

  it('defaults to 127.0.0.1:4577', () => {
    const program = new Command('snapline');
    registerServe(program, (action) => async () => void action);
    const options = program.commands[0]!.options;
    expect(options.find((o) => o.long === '--port')?.defaultValue).toBe('4577');
    expect(options.find((o) => o.long === '--host')?.defaultValue).toBe('127.0.0.1');
  });

  it.each([
    [['--throttle-rate', '1.5'], '--throttle-rate'],
    [['--error-rate', '-0.1'], '--error-rate'],
    [['--reset-rate', 'lots'], '--reset-rate'],
    [['--corrupt-rate', '2'], '--corrupt-rate'],
    [['--completion-error-rate', '1.01'], '--completion-error-rate'],
    [['--latency-ms', '-5'], '--latency-ms'],
    [['--rate-limit', 'fast'], '--rate-limit'],
    [['--not-found-after-start', '-1'], '--not-found-after-start'],
    [['--completion-delay-ms', ''], '--completion-delay-ms'],
    [['--seed', '1.5'], '--seed'],
    [['--job-failure-rate', '2'], '--job-failure-rate'],
    [['--restore-delay-ms', 'Slow=5'], '--restore-delay-ms'],
    [['--job-delay-ms', 'Bulk=-1'], '--job-delay-ms'],
    [['--completion-lost-responses', '1.5'], '--completion-lost-responses'],
    [['--time-scale', '0'], '--time-scale'],
    [['--time-scale', 'fast'], '--time-scale'],
    [['--time-scale', '2000000'], '--time-scale'],
    [['--ec2-lag-ms', '-1'], '--ec2-lag-ms'],
    [['--clock-skew-s', 'ahead'], '--clock-skew-s'],
    [['--clock-skew-s', '1e12'], '--clock-skew-s'],
    [['--port', '70000'], '--port'],
    [['--host', '0.0.0.0'], '--host'],
    [['--host', '10.1.2.3'], '--host'],
  ])('refuses %j, naming %s', async (args, flag) => {
    const dir = tempDir();
    dirs.push(dir);
    const run = serve(['--data-dir', dir.path, '--port', '0', ...args]);
    expect(await run.exit).toBe(ExitCodes.USAGE);
    expect(run.stderr.text).toContain(flag);
    expect(run.stdout.text).toBe('');
  });

  it('says how to allow a non-loopback address', async () => {
    const run = serve(['--host', '0.0.0.0', '--port', '0']);
    expect(await run.exit).toBe(ExitCodes.USAGE);
    expect(run.stderr.text).toContain('--allow-remote');
  });
});
