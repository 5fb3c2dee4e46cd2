/**
 * The Glacier adapter against the local endpoint over loopback HTTP, and the
 * tree hash: vectors from an independent (recursive) formulation compared
 * with core's, the worker pool's and the endpoint's.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateVaultCommand } from '@aws-sdk/client-glacier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { combineTreeHashes, treeHash } from '../core/checksum.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { ErrorCodes } from '../errors.js';
import { HashPool } from '../hashing/index.js';
import { AwsClients } from './clients.js';
import { GlacierArchiveStore, glacierBodyChecksums } from './glacier-archive.js';
import { rejection } from '../../test/support/rejection.js';

const MIB = 1024 * 1024;
const VAULT = 'adapter-vault';

/**
 * The tree hash by its recursive definition: up to 1 MiB, the SHA-256; else
 * the SHA-256 of the roots of the first 2^k MiB (the largest power of two
 * below the chunk count) and of the rest. Independent of the level-by-level
 * code under test.
 */
function referenceTreeHash(data: Buffer): string {
  const sha = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
  const root = (bytes: Buffer): Buffer => {
    const chunks = Math.ceil(bytes.byteLength / MIB);
    if (chunks <= 1) return sha(bytes);
    let left = 1;
    while (left * 2 < chunks) left *= 2;
    return sha(root(bytes.subarray(0, left * MIB)), root(bytes.subarray(left * MIB)));
  };
  return root(data).toString('hex');
}

let emulator: RunningEmulator;
let work: string;
let clients: AwsClients;
let store: GlacierArchiveStore;
let hashPool: HashPool;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-glacier-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), jobDelayMs: { Expedited: 0, Standard: 30, Bulk: 60 } });
  clients = new AwsClients({ name: 'test', region: 'us-east-1', endpointUrl: emulator.url, credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  await clients.glacier().send(new CreateVaultCommand({ accountId: '-', vaultName: VAULT }));
  store = new GlacierArchiveStore(clients.glacier(), VAULT, { minPartSize: MIB });
  hashPool = new HashPool({ threads: 2 });
});

afterAll(async () => {
  await hashPool?.destroy();
  clients?.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

async function untilAvailable(ref: string, job: string): Promise<void> {
  for (let i = 0; i < 2000; i += 1) {
    const status = await store.restoreStatus(ref, job);
    if (status.state === 'available') return;
    expect(status.state).toBe('in-progress');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('the job did not finish');
}

describe('tree hash vectors', () => {
  const sizes = [0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB, 5 * MIB + 7, 8 * MIB, 9 * MIB - 3];

  it.each(sizes)('%i bytes: core, the worker pool and the recursive definition agree', async (size) => {
    const data = randomBytes(size);
    const expected = referenceTreeHash(data);
    expect(treeHash(data).toString('hex')).toBe(expected);
    const shared = new SharedArrayBuffer(Math.max(size, 1));
    new Uint8Array(shared).set(data);
    expect(Buffer.from(await hashPool.treeHash(shared, 0, size)).toString('hex')).toBe(expected);
  });

  it('known values: one chunk is its SHA-256; three chunks of zeros pair the first two and carry the third', () => {
    const zeroChunk = createHash('sha256').update(Buffer.alloc(MIB)).digest();
    expect(treeHash(Buffer.alloc(MIB))).toEqual(zeroChunk);
    const pair = createHash('sha256').update(Buffer.concat([zeroChunk, zeroChunk])).digest();
    expect(treeHash(Buffer.alloc(3 * MIB)).toString('hex')).toBe(createHash('sha256').update(Buffer.concat([pair, zeroChunk])).digest('hex'));
    expect(treeHash(Buffer.alloc(0)).toString('hex')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('power-of-two MiB parts combine into the whole tree hash, the last part shorter', () => {
    const data = randomBytes(9 * MIB + 5);
    for (const part of [MIB, 2 * MIB, 4 * MIB]) {
      const parts: Buffer[] = [];
      for (let at = 0; at < data.byteLength; at += part) parts.push(treeHash(data.subarray(at, at + part)));
      expect(combineTreeHashes(parts).toString('hex')).toBe(referenceTreeHash(data));
    }
  });

  it('the endpoint computes the same tree hash of what it stores', async () => {
    const data = randomBytes(3 * MIB + 11);
    const stored = await store.putObject('tree hash check', data, referenceTreeHash(data));
    expect(stored.treeHash).toBe(referenceTreeHash(data));
  });

  it('the body-checksum hook hashes the content and takes the tree hash the request carries', async () => {
    const body = randomBytes(2 * MIB);
    const [content, tree] = await glacierBodyChecksums({ headers: { 'x-amz-sha256-tree-hash': 'given' }, body });
    expect(content).toBe(createHash('sha256').update(body).digest('hex'));
    expect(tree).toBe('given');
    expect((await glacierBodyChecksums({ headers: {}, body }))[1]).toBe(referenceTreeHash(body));
  });
});

describe('GlacierArchiveStore on the endpoint', () => {
  it('multipart: parts with their tree hashes, listed, completed into one archive; read through a retrieval job with range tree hashes', async () => {
    const data = randomBytes(3 * MIB + 100);
    const uploadId = await store.startUpload('multipart test', MIB);
    const hashes: Buffer[] = [];
    const parts = [];
    for (let n = 0; n * MIB < data.byteLength; n += 1) {
      const piece = data.subarray(n * MIB, (n + 1) * MIB);
      hashes.push(treeHash(piece));
      parts.push(await store.putPart('multipart test', uploadId, n + 1, n * MIB, piece, treeHash(piece).toString('hex')));
    }
    expect(await store.listParts('multipart test', uploadId)).toEqual(parts);
    const whole = combineTreeHashes(hashes).toString('hex');
    const stored = await store.completeUpload('multipart test', uploadId, parts, data.byteLength, whole);
    expect(stored).toMatchObject({ sizeBytes: data.byteLength, treeHash: referenceTreeHash(data) });
    expect((await rejection(store.listParts('multipart test', uploadId))).code).toBe(ErrorCodes.NOT_FOUND);

    const early = await rejection(store.getRange(stored.ref, 0, MIB));
    expect(early.code).toBe(ErrorCodes.BAD_STATE);
    expect(early.hint).toMatch(/archive restore/);
    expect(await store.restoreStatus(stored.ref)).toEqual({ state: 'archived' });

    const asked = await store.requestRestore(stored.ref, { tier: 'Standard', days: 1, description: 'adapter test' });
    expect(asked.state).toBe('in-progress');
    await untilAvailable(stored.ref, asked.job!);
    const aligned = await store.getRange(stored.ref, 0, 2 * MIB, asked.job);
    expect(aligned.data.equals(data.subarray(0, 2 * MIB))).toBe(true);
    expect(aligned.treeHash).toBe(referenceTreeHash(data.subarray(0, 2 * MIB)));
    // Not one subtree of the archive's tree: no tree hash comes with it.
    const across = await store.getRange(stored.ref, MIB, 3 * MIB, asked.job);
    expect(across.data.equals(data.subarray(MIB, 3 * MIB))).toBe(true);
    expect(across.treeHash).toBeUndefined();
    // Without a job id the adapter finds the Succeeded job itself; to the end of the archive is aligned too.
    const tail = await store.getRange(stored.ref, 3 * MIB, undefined);
    expect(tail.data.equals(data.subarray(3 * MIB))).toBe(true);
    expect(tail.treeHash).toBe(referenceTreeHash(data.subarray(3 * MIB)));

    await store.deleteObject(stored.ref);
    await store.deleteObject(stored.ref);
  });

  it('a part whose tree hash is wrong is refused by the service', async () => {
    const uploadId = await store.startUpload('bad part', MIB);
    const error = await rejection(store.putPart('bad part', uploadId, 1, 0, randomBytes(MIB), '00'.repeat(32)));
    expect(error.code).toBe(ErrorCodes.REMOTE_REJECTED);
    await store.abortUpload('bad part', uploadId);
    await store.abortUpload('bad part', uploadId);
  });

  it('descriptions are at most 1024 printable ASCII characters', async () => {
    const data = randomBytes(10);
    const hash = treeHash(data).toString('hex');
    await store.putObject('x'.repeat(1024), data, hash);
    expect((await rejection(store.putObject('x'.repeat(1025), data, hash))).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect((await rejection(store.putObject('caf\u00e9', data, hash))).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect((await rejection(store.startUpload('tab\there', MIB))).code).toBe(ErrorCodes.INVALID_ARGUMENT);
  });

  it('a failed job (jobFailureRate) reads as failed with the reason; the inventory is a job too', async () => {
    const data = randomBytes(100);
    const stored = await store.putObject('fails', data, treeHash(data).toString('hex'));
    emulator.setFaults({ jobFailureRate: 1 });
    try {
      const asked = await store.requestRestore(stored.ref, { tier: 'Expedited', days: 1 });
      let status = await store.restoreStatus(stored.ref, asked.job);
      for (let i = 0; i < 200 && status.state === 'in-progress'; i += 1) status = await store.restoreStatus(stored.ref, asked.job);
      expect(status.state).toBe('failed');
    } finally {
      emulator.setFaults({});
    }
    const first = await store.inventory({ start: true });
    expect(first.state).toBe('in-progress');
    let inventory = first;
    for (let i = 0; i < 2000 && inventory.state !== 'ready'; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      inventory = await store.inventory({ start: true });
    }
    expect(inventory.state).toBe('ready');
    if (inventory.state === 'ready') expect(inventory.objects.map((o) => o.ref)).toContain(stored.ref);
  });

  it('a vault that does not exist is named', async () => {
    const missing = new GlacierArchiveStore(clients.glacier(), 'missing-vault');
    const error = await rejection(missing.putObject('x', Buffer.from('x'), treeHash(Buffer.from('x')).toString('hex')));
    expect(error.code).toBe(ErrorCodes.NOT_FOUND);
    expect(error.message).toMatch(/vault missing-vault does not exist/);
  });
});
