/** The S3 archive adapter against the local endpoint over loopback HTTP (path-style addressing). */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, HeadBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { treeHash } from '../core/checksum.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { ErrorCodes } from '../errors.js';
import { AwsClients } from './clients.js';
import { S3ArchiveStore, restoreStatusOf } from './s3-archive.js';
import { rejection } from '../../test/support/rejection.js';

const MIB = 1024 * 1024;
const BUCKET = 'adapter-bucket';
const SSE_KEY = randomBytes(32).toString('base64');

const HOUR = 3_600_000;
/** How far the endpoint's clock has been moved ahead (restores take hours on it). */
let clockShift = 0;
let emulator: RunningEmulator;
let work: string;
let clients: AwsClients;
let store: S3ArchiveStore;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-s3-archive-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), restoreDelayMs: { Expedited: 0, Standard: HOUR, Bulk: 2 * HOUR }, now: () => Date.now() + clockShift });
  clients = new AwsClients({ name: 'test', region: 'us-east-1', endpointUrl: emulator.url, credentials: { accessKeyId: 'k', secretAccessKey: 's' }, forcePathStyle: true });
  await clients.s3().send(new CreateBucketCommand({ Bucket: BUCKET }));
  store = new S3ArchiveStore(clients.s3(), BUCKET, { minPartSize: 8 * MIB });
});

afterAll(async () => {
  clients?.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

const hashOf = (data: Buffer) => treeHash(data).toString('hex');

describe('S3ArchiveStore on the endpoint', () => {
  it('a DEEP_ARCHIVE object refuses reads until restored, then reads by range until its copy expires', async () => {
    const data = randomBytes(3 * MIB + 5);
    const stored = await store.putObject('deep/object', data, hashOf(data), { storageClass: 'DEEP_ARCHIVE' });
    expect(stored).toEqual({ ref: 'deep/object', sizeBytes: data.byteLength, treeHash: hashOf(data) });
    const refused = await rejection(store.getRange('deep/object', 0, MIB));
    expect(refused.code).toBe(ErrorCodes.BAD_STATE);
    expect(refused.message).toMatch(/not restored/);
    expect(await store.restoreStatus('deep/object')).toEqual({ state: 'archived' });

    expect(await store.requestRestore('deep/object', { tier: 'Standard', days: 3 })).toEqual({ state: 'in-progress' });
    expect(await store.requestRestore('deep/object', { tier: 'Standard', days: 3 })).toEqual({ state: 'in-progress' });
    expect(await store.restoreStatus('deep/object')).toEqual({ state: 'in-progress' });
    clockShift += HOUR;
    const status = await store.restoreStatus('deep/object');
    expect(status.state).toBe('available');
    expect(status.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    const range = await store.getRange('deep/object', MIB, 2 * MIB + 3);
    expect(range.data.equals(data.subarray(MIB, 2 * MIB + 3))).toBe(true);
    expect((await store.getRange('deep/object', 3 * MIB, undefined)).data.equals(data.subarray(3 * MIB))).toBe(true);
  });

  it('refuses part sizes and objects S3 would refuse: parts under 5 MiB (EntityTooSmall at completion), objects over 5 TiB', () => {
    expect(() => new S3ArchiveStore(clients.s3(), BUCKET, { minPartSize: 4 * MIB })).toThrow(/at least 5 MiB/);
    expect(store.partSizeFor(5 * 1024 * 1024 * MIB)).toBe(1024 * MIB);
    expect(() => store.partSizeFor(5 * 1024 * 1024 * MIB + 1)).toThrow(/at most 5 TiB/);
  });

  it('objects of a class read at once need no restore', async () => {
    const data = randomBytes(100);
    await store.putObject('instant/object', data, hashOf(data), { storageClass: 'GLACIER_IR' });
    expect(await store.restoreStatus('instant/object')).toEqual({ state: 'available' });
    expect(await store.requestRestore('instant/object', { tier: 'Bulk', days: 1 })).toEqual({ state: 'available' });
    expect((await store.getRange('instant/object', 0, 100)).data.equals(data)).toBe(true);
  });

  it('multipart: parts listed with their ETags, completed in the storage class; an upload gone is NOT_FOUND', async () => {
    const data = randomBytes(17 * MIB);
    const partSize = store.partSizeFor(data.byteLength);
    expect(partSize).toBe(8 * MIB);
    const uploadId = await store.startUpload('multi/object', partSize, { storageClass: 'GLACIER' });
    const parts = [];
    for (let n = 0; n * partSize < data.byteLength; n += 1) {
      parts.push(await store.putPart('multi/object', uploadId, n + 1, n * partSize, data.subarray(n * partSize, (n + 1) * partSize)));
    }
    expect(await store.listParts('multi/object', uploadId)).toEqual(parts);
    await store.completeUpload('multi/object', uploadId, parts, data.byteLength, hashOf(data));
    const head = await clients.s3().send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'multi/object' }));
    expect(head).toMatchObject({ StorageClass: 'GLACIER', ContentLength: data.byteLength });
    expect((await rejection(store.listParts('multi/object', uploadId))).code).toBe(ErrorCodes.NOT_FOUND);
    await store.abortUpload('multi/object', uploadId);
    const inventory = await store.inventory({ prefix: 'multi/' });
    expect(inventory).toMatchObject({ state: 'ready', objects: [{ ref: 'multi/object', sizeBytes: data.byteLength, storageClass: 'GLACIER' }] });
    await store.deleteObject('multi/object');
    await store.deleteObject('multi/object');
    expect(await store.inventory({ prefix: 'multi/' })).toMatchObject({ objects: [] });
  });

  it('attributes go out as signed headers: SSE-C objects read back only with the key (its MD5 added)', async () => {
    const sealed = new S3ArchiveStore(clients.s3(), BUCKET, {
      attributes: { 'x-amz-server-side-encryption-customer-algorithm': 'AES256', 'X-Amz-Server-Side-Encryption-Customer-Key': SSE_KEY },
    });
    const data = randomBytes(1000);
    await sealed.putObject('sealed/object', data, hashOf(data), { storageClass: 'STANDARD' });
    expect((await sealed.getRange('sealed/object', 0, 1000)).data.equals(data)).toBe(true);
    const withoutKey = await rejection(store.getRange('sealed/object', 0, 1000));
    expect(withoutKey.code).toBe(ErrorCodes.REMOTE_REJECTED);
    expect(withoutKey.message).toMatch(/Server Side Encryption/);
  });

  it('a bucket that does not exist is named', async () => {
    const missing = new S3ArchiveStore(clients.s3(), 'no-such-bucket');
    const error = await rejection(missing.putObject('k', Buffer.from('x'), hashOf(Buffer.from('x'))));
    expect(error.code).toBe(ErrorCodes.NOT_FOUND);
    expect(error.message).toMatch(/bucket no-such-bucket does not exist/);
  });

  it('tells whether the bucket exists, and makes it in the Region of the client: with its location constraint, none in us-east-1', async () => {
    expect(await store.locationExists()).toBe(true);
    const fresh = new S3ArchiveStore(clients.s3(), 'made-in-us-east-1');
    expect(await fresh.locationExists()).toBe(false);
    await fresh.createLocation();
    expect(await fresh.locationExists()).toBe(true);
    // Made already by this account (a second try after a lost answer): fine.
    await fresh.createLocation();

    // The endpoint refuses a constraint that differs from the Region the request is signed for, as S3 does.
    const europe = new AwsClients({ name: 'eu', region: 'eu-west-1', endpointUrl: emulator.url, credentials: { accessKeyId: 'k', secretAccessKey: 's' }, forcePathStyle: true });
    try {
      await new S3ArchiveStore(europe.s3(), 'made-in-eu-west-1').createLocation();
      const head = await europe.s3().send(new HeadBucketCommand({ Bucket: 'made-in-eu-west-1' }));
      expect(head.BucketRegion).toBe('eu-west-1');
    } finally {
      europe.destroy();
    }
  });
});

describe('restoreStatusOf (x-amz-restore)', () => {
  it('reads the three states', () => {
    expect(restoreStatusOf(undefined)).toEqual({ state: 'archived' });
    expect(restoreStatusOf('ongoing-request="true"')).toEqual({ state: 'in-progress' });
    expect(restoreStatusOf('ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"')).toEqual({
      state: 'available',
      expiresAt: new Date('2012-12-21T00:00:00Z'),
    });
  });
});
