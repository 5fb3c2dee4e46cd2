import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import { blockOf, checksum, startTestEndpoint, tempDir, type TestEndpoint } from './helpers.js';

/** The AWS CLI on PATH, or undefined. */
function findAws(): string | undefined {
  try {
    return execFileSync('which', ['aws'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

const aws = findAws();
const NOT_FOUND = 'the AWS CLI (`aws`) is not on PATH: the AWS CLI lifecycle test DID NOT RUN';
if (aws === undefined) console.warn(`WARNING: ${NOT_FOUND}`);

let t: TestEndpoint;
const work = tempDir('snapline-aws-cli-');

beforeAll(async () => {
  t = await startTestEndpoint();
});
afterAll(async () => {
  await t.stop();
  work.cleanup();
});

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `aws <args> --endpoint-url URL` with dummy credentials and no user configuration. */
function cli(args: string[]): Promise<CliResult> {
  const env = {
    PATH: process.env.PATH,
    HOME: work.path,
    AWS_ACCESS_KEY_ID: 'AKIDSNAPLINECLI',
    AWS_SECRET_ACCESS_KEY: 'cli-secret',
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(work.path, 'no-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(work.path, 'no-credentials'),
    AWS_PAGER: '',
  };
  return new Promise((resolve) => {
    execFile(aws!, [...args, '--endpoint-url', t.emulator.url, '--output', 'json'], { env, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function cliJson<T = Record<string, unknown>>(args: string[]): Promise<T> {
  const result = await cli(args);
  if (result.code !== 0) throw new Error(`aws ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

it('runs a full snapshot lifecycle with the AWS CLI', async (ctx) => {
  if (aws === undefined) ctx.skip(NOT_FOUND);

  const ones = blockOf(1);
  const twos = blockOf(2);
  writeFileSync(join(work.path, 'ones.bin'), ones);
  writeFileSync(join(work.path, 'twos.bin'), twos);
  const putBlock = (snapshotId: string, index: number, file: string, data: Buffer) =>
    cliJson([
      'ebs', 'put-snapshot-block', '--snapshot-id', snapshotId, '--block-index', String(index),
      // AWS CLI v1 takes a streaming blob as a plain path (v2 as fileb://).
      '--block-data', join(work.path, file), '--data-length', String(data.length),
      '--checksum', checksum(data), '--checksum-algorithm', 'SHA256', '--progress', '50',
    ]);
  const completeWith = (snapshotId: string, blocks: [number, Buffer][]) =>
    cliJson<{ Status: string }>([
      'ebs', 'complete-snapshot', '--snapshot-id', snapshotId, '--changed-blocks-count', String(blocks.length),
      '--checksum', linearAggregateOf(blocks.map(([index, data]) => ({ index, digest: sha256(data) }))),
      '--checksum-algorithm', 'SHA256', '--checksum-aggregation-method', 'LINEAR',
    ]);

  const parent = await cliJson<{ SnapshotId: string; Status: string; BlockSize: number }>([
    'ebs', 'start-snapshot', '--volume-size', '1', '--tags', 'Key=volume,Value=cli', '--description', 'from the AWS CLI',
  ]);
  expect(parent).toMatchObject({ Status: 'pending', BlockSize: 524288 });
  expect(await putBlock(parent.SnapshotId, 0, 'ones.bin', ones)).toMatchObject({ Checksum: checksum(ones), ChecksumAlgorithm: 'SHA256' });
  await putBlock(parent.SnapshotId, 1, 'twos.bin', twos);
  expect((await completeWith(parent.SnapshotId, [[0, ones], [1, twos]])).Status).toBe('completed');

  const listed = await cliJson<{ Blocks: { BlockIndex: number; BlockToken: string }[]; VolumeSize: number }>([
    'ebs', 'list-snapshot-blocks', '--snapshot-id', parent.SnapshotId,
  ]);
  expect(listed.Blocks.map((b) => b.BlockIndex)).toEqual([0, 1]);
  expect(listed.VolumeSize).toBe(1);

  const child = await cliJson<{ SnapshotId: string }>(['ebs', 'start-snapshot', '--volume-size', '1', '--parent-snapshot-id', parent.SnapshotId]);
  await putBlock(child.SnapshotId, 1, 'ones.bin', ones);
  expect((await completeWith(child.SnapshotId, [[1, ones]])).Status).toBe('completed');

  const changed = await cliJson<{ ChangedBlocks: { BlockIndex: number; FirstBlockToken?: string; SecondBlockToken?: string }[] }>([
    'ebs', 'list-changed-blocks', '--first-snapshot-id', parent.SnapshotId, '--second-snapshot-id', child.SnapshotId,
  ]);
  expect(changed.ChangedBlocks.map((c) => c.BlockIndex)).toEqual([1]);
  const [one] = changed.ChangedBlocks;

  const outFile = join(work.path, 'got.bin');
  const got = await cliJson<{ DataLength: number; Checksum: string; ChecksumAlgorithm: string }>([
    'ebs', 'get-snapshot-block', '--snapshot-id', child.SnapshotId, '--block-index', '1', '--block-token', one!.SecondBlockToken!, outFile,
  ]);
  expect(got).toEqual({ DataLength: 524288, Checksum: checksum(ones), ChecksumAlgorithm: 'SHA256' });
  expect(readFileSync(outFile).equals(ones)).toBe(true);
  await cliJson(['ebs', 'get-snapshot-block', '--snapshot-id', parent.SnapshotId, '--block-index', '1', '--block-token', one!.FirstBlockToken!, outFile]);
  expect(readFileSync(outFile).equals(twos)).toBe(true);

  // Errors reach the CLI as the AWS exceptions.
  const refused = await cli(['ebs', 'put-snapshot-block', '--snapshot-id', child.SnapshotId, '--block-index', '2', '--block-data', join(work.path, 'ones.bin'), '--data-length', '524288', '--checksum', checksum(ones), '--checksum-algorithm', 'SHA256']);
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toMatch(/\(ValidationException\) when calling the PutSnapshotBlock operation/);
  const missing = await cli(['ec2', 'describe-snapshots', '--snapshot-ids', 'snap-0123456789abcdef0']);
  expect(missing.stderr).toMatch(/InvalidSnapshot\.NotFound/);
  const described = await cliJson<{ Snapshots: { State: string; Tags: unknown[] }[] }>(['ec2', 'describe-snapshots', '--snapshot-ids', parent.SnapshotId]);
  expect(described.Snapshots[0]).toMatchObject({ State: 'completed', Tags: [{ Key: 'volume', Value: 'cli' }] });
});
