import { EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand, CompleteSnapshotCommand, ListSnapshotBlocksCommand, ListChangedBlocksCommand, GetSnapshotBlockCommand } from '@aws-sdk/client-ebs';
import type { StartSnapshotCommandInput, ChangedBlock, Block } from '@aws-sdk/client-ebs';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { STSClient } from '@aws-sdk/client-sts';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { mkdtempSync, rmSync } from 'node:fs';
import { expect } from 'vitest';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { checksumOf, linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import { startEmulator, type EmulatorOptions, type RunningEmulator } from '../../src/emulator/index.js';

export const CREDENTIALS = { accessKeyId: 'AKIDSNAPLINETEST', secretAccessKey: 'test-secret' };
export const REGION = 'us-east-1';

/** A controllable clock for state decisions (token expiry, timeouts, delays, rate limits). */
export class TestClock {
  constructor(public ms = Date.UTC(2030, 0, 1)) {}
  readonly now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

/** A temporary data directory removed by cleanup(). */
export function tempDir(prefix = 'snapline-emulator-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface TestEndpoint {
  emulator: RunningEmulator;
  dataDir: string;
  ebs: EBSClient;
  ec2: EC2Client;
  sts: STSClient;
  s3: S3Client;
  /** Stops the endpoint and removes its data. */
  stop(): Promise<void>;
}

/** Starts an endpoint on a free loopback port in a fresh directory, with SDK clients that do not retry. */
export async function startTestEndpoint(options: Partial<EmulatorOptions> = {}, dataDir?: string): Promise<TestEndpoint> {
  const dir = dataDir === undefined ? tempDir() : { path: dataDir, cleanup: () => undefined };
  const emulator = await startEmulator({ dataDir: dir.path, ...options });
  const clients = clientsFor(emulator.url);
  return {
    emulator,
    dataDir: dir.path,
    ...clients,
    async stop() {
      for (const client of Object.values(clients)) client.destroy();
      await emulator.close();
      dir.cleanup();
    },
  };
}

/** SDK clients for the endpoint at `url`, signing for `region`. */
export function clientsFor(url: string, maxSockets = 32, region = REGION) {
  const config = {
    endpoint: url,
    region,
    credentials: CREDENTIALS,
    maxAttempts: 1,
    requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ keepAlive: true, maxSockets }) }),
  };
  return { ebs: new EBSClient(config), ec2: new EC2Client(config), sts: new STSClient(config), s3: new S3Client({ ...config, forcePathStyle: true }) };
}

/** A block of BLOCK_SIZE bytes, all `byte`, or the given bytes padded. */
export function blockOf(byte: number): Buffer {
  return Buffer.alloc(BLOCK_SIZE, byte);
}

/** A block whose bytes are distinct for every seed. */
export function distinctBlock(seed: number): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.writeUInt32BE(seed, 0);
  block.writeUInt32BE(seed ^ 0x5bd1e995, BLOCK_SIZE - 4);
  return block;
}

export function checksum(data: Buffer): string {
  return checksumOf(sha256(data));
}

export async function start(ebs: EBSClient, input: Partial<StartSnapshotCommandInput> = {}): Promise<string> {
  const out = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ...input }));
  return out.SnapshotId!;
}

export async function put(ebs: EBSClient, snapshotId: string, index: number, data: Buffer, extra: { Progress?: number } = {}) {
  return ebs.send(
    new PutSnapshotBlockCommand({
      SnapshotId: snapshotId,
      BlockIndex: index,
      BlockData: data,
      DataLength: BLOCK_SIZE,
      Checksum: checksum(data),
      ChecksumAlgorithm: 'SHA256',
      ...extra,
    }),
  );
}

/** CompleteSnapshot with the right count and LINEAR aggregate for `written` (index -> data). */
export async function complete(ebs: EBSClient, snapshotId: string, written: Map<number, Buffer>): Promise<string> {
  const aggregate = linearAggregateOf([...written].map(([index, data]) => ({ index, digest: sha256(data) })));
  const out = await ebs.send(
    new CompleteSnapshotCommand({
      SnapshotId: snapshotId,
      ChangedBlocksCount: written.size,
      Checksum: aggregate,
      ChecksumAlgorithm: 'SHA256',
      ChecksumAggregationMethod: 'LINEAR',
    }),
  );
  return out.Status!;
}

/** Starts, writes the blocks, completes; returns the snapshot id. */
export async function snapshotWith(ebs: EBSClient, blocks: Map<number, Buffer>, input: Partial<StartSnapshotCommandInput> = {}): Promise<string> {
  const id = await start(ebs, input);
  for (const [index, data] of blocks) await put(ebs, id, index, data);
  expect(await complete(ebs, id, blocks)).toBe('completed');
  return id;
}

export async function listAll(ebs: EBSClient, snapshotId: string, maxResults?: number): Promise<Block[]> {
  const blocks: Block[] = [];
  let token: string | undefined;
  do {
    const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, NextToken: token, MaxResults: maxResults }));
    blocks.push(...(page.Blocks ?? []));
    token = page.NextToken;
  } while (token);
  return blocks;
}

export async function changedAll(ebs: EBSClient, first: string | undefined, second: string, maxResults?: number): Promise<ChangedBlock[]> {
  const blocks: ChangedBlock[] = [];
  let token: string | undefined;
  do {
    const page = await ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: first, SecondSnapshotId: second, NextToken: token, MaxResults: maxResults }));
    blocks.push(...(page.ChangedBlocks ?? []));
    token = page.NextToken;
  } while (token);
  return blocks;
}

export async function get(ebs: EBSClient, snapshotId: string, index: number, token: string) {
  const out = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockToken: token }));
  const data = Buffer.from(await out.BlockData!.transformToByteArray());
  return { data, checksum: out.Checksum, algorithm: out.ChecksumAlgorithm, dataLength: out.DataLength };
}

/** Reads a block through its listing token. */
export async function readBack(ebs: EBSClient, snapshotId: string, index: number): Promise<Buffer> {
  const block = (await listAll(ebs, snapshotId)).find((b) => b.BlockIndex === index);
  if (block === undefined) throw new Error(`block ${index} not listed in ${snapshotId}`);
  return (await get(ebs, snapshotId, index, block.BlockToken!)).data;
}

/** Asserts equal bytes (vitest's deep equality is far too slow for 512 KiB buffers). */
export function expectBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length, 'length').toBe(expected.length);
  expect(actual.equals(expected), 'bytes equal').toBe(true);
}

/** The rejection of `promise`, which must reject. */
export async function rejection(promise: Promise<unknown>): Promise<Error & { Reason?: string; $metadata?: { httpStatusCode?: number }; Code?: string }> {
  try {
    await promise;
  } catch (err) {
    return err as Error & { Reason?: string };
  }
  throw new Error('expected the call to fail, it succeeded');
}

/** Asserts the SDK exception name, and the Reason when given. */
export async function expectAwsError(promise: Promise<unknown>, name: string, reason?: string): Promise<Error & { Reason?: string }> {
  const err = await rejection(promise);
  expect(err.name).toBe(name);
  if (reason !== undefined) expect(err.Reason).toBe(reason);
  return err;
}
