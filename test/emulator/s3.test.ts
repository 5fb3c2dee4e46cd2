import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  RestoreObjectCommand,
  S3Client,
  UploadPartCommand,
  type ChecksumAlgorithm,
  type StorageClass,
  type Tier,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { awsCliJson, findAwsCli, runAwsCli } from './aws-cli-runner.js';
import { CREDENTIALS, expectAwsError, expectBytes, rejection, startTestEndpoint, tempDir, TestClock, type TestEndpoint } from './helpers.js';

const MIB = 1024 * 1024;
const DAY = 24 * 60 * 60 * 1000;
/** Restores take these on the endpoint's clock, which the tests move by hand. */
const RESTORE_DELAYS = { Expedited: 60_000, Standard: 4 * 3_600_000, Bulk: 10 * 3_600_000 };

const clock = new TestClock();
let t: TestEndpoint;

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now, restoreDelayMs: RESTORE_DELAYS });
});
afterAll(async () => {
  await t.stop();
});

function s3In(region: string, url = t.emulator.url): S3Client {
  return new S3Client({ endpoint: url, region, credentials: CREDENTIALS, maxAttempts: 1, forcePathStyle: true });
}

async function createBucket(bucket: string): Promise<string> {
  await t.s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

async function getBytes(bucket: string, key: string, extra: { Range?: string; SSECustomerAlgorithm?: string; SSECustomerKey?: string } = {}) {
  const out = await t.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...extra }));
  return { out, bytes: Buffer.from(await out.Body!.transformToByteArray()) };
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest();

/** What the endpoint answers a raw HTTP request (for headers and bodies the SDK would not send). */
function raw(method: string, path: string, headers: Record<string, string | number>, body?: Buffer | string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const url = new URL(t.emulator.url);
  return new Promise((resolve, reject) => {
    const req = request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function expectMissing(bucket: string, key: string): Promise<void> {
  expect((await rejection(t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })))).$metadata?.httpStatusCode).toBe(404);
}

describe('buckets', () => {
  it('creates, heads, lists, locates and deletes buckets', async () => {
    await createBucket('list-me');
    const head = await t.s3.send(new HeadBucketCommand({ Bucket: 'list-me' }));
    expect(head.BucketRegion).toBe('us-east-1');
    const listed = await t.s3.send(new ListBucketsCommand({}));
    const mine = listed.Buckets?.find((b) => b.Name === 'list-me');
    expect(mine?.CreationDate?.getTime()).toBe(clock.ms);
    expect(listed.Owner?.DisplayName).toBe('snapline');
    expect((await t.s3.send(new GetBucketLocationCommand({ Bucket: 'list-me' }))).LocationConstraint).toBeUndefined();
    await t.s3.send(new DeleteBucketCommand({ Bucket: 'list-me' }));
    expect((await rejection(t.s3.send(new HeadBucketCommand({ Bucket: 'list-me' })))).$metadata?.httpStatusCode).toBe(404);
    await expectAwsError(t.s3.send(new DeleteBucketCommand({ Bucket: 'list-me' })), 'NoSuchBucket');
    await expectAwsError(t.s3.send(new ListObjectsV2Command({ Bucket: 'list-me' })), 'NoSuchBucket');
    await expectAwsError(t.s3.send(new PutObjectCommand({ Bucket: 'list-me', Key: 'k', Body: 'x' })), 'NoSuchBucket');
  });

  it('answers BucketAlreadyOwnedByYou (409) outside us-east-1, success there (legacy), and checks names and location constraints', async () => {
    const europe = s3In('eu-west-1');
    try {
      await europe.send(new CreateBucketCommand({ Bucket: 'in-ireland', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } }));
      expect((await europe.send(new GetBucketLocationCommand({ Bucket: 'in-ireland' }))).LocationConstraint).toBe('eu-west-1');
      const again = await rejection(europe.send(new CreateBucketCommand({ Bucket: 'in-ireland', CreateBucketConfiguration: { LocationConstraint: 'eu-west-1' } })));
      expect(again.name).toBe('BucketAlreadyOwnedByYou');
      expect(again.$metadata?.httpStatusCode).toBe(409);
      // The SDK adds the client's Region as LocationConstraint outside us-east-1; a request without one is refused there.
      await europe.send(new CreateBucketCommand({ Bucket: 'sdk-adds-constraint' }));
      expect((await t.s3.send(new HeadBucketCommand({ Bucket: 'sdk-adds-constraint' }))).BucketRegion).toBe('eu-west-1');
    } finally {
      europe.destroy();
    }
    const signedInIreland = { authorization: 'AWS4-HMAC-SHA256 Credential=AK/20300101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=00' };
    const noConstraint = await raw('PUT', '/no-constraint', signedInIreland);
    expect([noConstraint.status, noConstraint.body]).toEqual([400, expect.stringContaining('<Code>IllegalLocationConstraintException</Code>')]);
    await createBucket('twice-in-virginia');
    expect((await t.s3.send(new CreateBucketCommand({ Bucket: 'twice-in-virginia' }))).$metadata.httpStatusCode).toBe(200);
    const reserved = ['xn--punycode', 'sthree-bucket', 'amzn-s3-demo-bucket', 'alias-s3alias', 'point--ol-s3', 'region.mrap', 'tables--table-s3'];
    for (const bad of ['UPPER', 'ab', 'a'.repeat(64), 'a..b', '192.168.1.1', '-dash', 'dash-', 'under_score', ...reserved]) {
      await expectAwsError(t.s3.send(new CreateBucketCommand({ Bucket: bad })), 'InvalidBucketName');
    }
    // The SDK sends a --x-s3 name to a directory-bucket endpoint of its own: by hand.
    const directoryName = await raw('PUT', '/zone--x-s3', {});
    expect([directoryName.status, directoryName.body]).toEqual([400, expect.stringContaining('<Code>InvalidBucketName</Code>')]);
  });

  it('refuses to delete a bucket that holds objects (BucketNotEmpty, 409)', async () => {
    const bucket = await createBucket('not-empty');
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k', Body: 'x' }));
    const refused = await rejection(t.s3.send(new DeleteBucketCommand({ Bucket: bucket })));
    expect(refused.name).toBe('BucketNotEmpty');
    expect(refused.$metadata?.httpStatusCode).toBe(409);
    await t.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'k' }));
    expect((await t.s3.send(new DeleteBucketCommand({ Bucket: bucket }))).$metadata.httpStatusCode).toBe(204);
  });
});

describe('objects', () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = await createBucket('objects');
  });

  it('round-trips bytes with metadata and content headers; the ETag is the MD5; SSE-S3 by default', async () => {
    const data = randomBytes(100_000);
    const put = await t.s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: 'dir/file name+plus.bin',
        Body: data,
        Metadata: { snapshot: 'snap-1', part: 'one' },
        ContentType: 'application/x-snapline',
        CacheControl: 'no-cache',
      }),
    );
    expect(put.ETag).toBe(`"${md5(data).toString('hex')}"`);
    expect(put.ServerSideEncryption).toBe('AES256');
    const { out, bytes } = await getBytes(bucket, 'dir/file name+plus.bin');
    expectBytes(bytes, data);
    expect(out).toMatchObject({ ETag: put.ETag, ContentLength: data.length, ContentType: 'application/x-snapline', CacheControl: 'no-cache', Metadata: { snapshot: 'snap-1', part: 'one' } });
    expect(out.LastModified?.getTime()).toBe(Math.floor(clock.ms / 1000) * 1000);
    expect(out.StorageClass).toBeUndefined();
    const head = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'dir/file name+plus.bin' }));
    expect(head).toMatchObject({ ContentLength: data.length, ETag: put.ETag, Metadata: { snapshot: 'snap-1', part: 'one' }, AcceptRanges: 'bytes' });
    await expectAwsError(t.s3.send(new GetObjectCommand({ Bucket: bucket, Key: 'nothing' })), 'NoSuchKey');
  });

  it('serves ranges: 206 with Content-Range, suffix and open ranges, InvalidRange (416) past the end', async () => {
    const data = Buffer.from('0123456789abcdefghij');
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'ranged', Body: data }));
    const middle = await getBytes(bucket, 'ranged', { Range: 'bytes=2-5' });
    expect(middle.bytes.toString()).toBe('2345');
    expect(middle.out.$metadata.httpStatusCode).toBe(206);
    expect(middle.out.ContentRange).toBe('bytes 2-5/20');
    expect((await getBytes(bucket, 'ranged', { Range: 'bytes=-3' })).bytes.toString()).toBe('hij');
    expect((await getBytes(bucket, 'ranged', { Range: 'bytes=15-' })).bytes.toString()).toBe('fghij');
    expect((await getBytes(bucket, 'ranged', { Range: 'bytes=18-100' })).out.ContentRange).toBe('bytes 18-19/20');
    const past = await rejection(getBytes(bucket, 'ranged', { Range: 'bytes=20-30' }));
    expect(past.name).toBe('InvalidRange');
    expect(past.$metadata?.httpStatusCode).toBe(416);
    const ignored = await getBytes(bucket, 'ranged', { Range: 'bytes=5-2' });
    expect(ignored.out.$metadata.httpStatusCode).toBe(200);
    expect(ignored.bytes.length).toBe(20);
  });

  it('checks Content-MD5, x-amz-checksum-* and x-amz-content-sha256, and keeps nothing that fails', async () => {
    const data = Buffer.from('the bytes that were sent');
    const wrongMd5 = md5(Buffer.from('other bytes')).toString('base64');
    await expectAwsError(t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'md5', Body: data, ContentMD5: wrongMd5 })), 'BadDigest');
    await expectMissing(bucket, 'md5');
    expect((await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'md5', Body: data, ContentMD5: md5(data).toString('base64') }))).ETag).toBeDefined();
    const badMd5 = await raw('PUT', `/${bucket}/bad-md5`, { 'content-md5': 'not-base64!' }, data);
    expect(badMd5.status).toBe(400);
    expect(badMd5.body).toContain('<Code>InvalidDigest</Code>');

    await expectAwsError(t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'crc', Body: data, ChecksumCRC32: 'AAAAAA==' })), 'BadDigest');
    await expectMissing(bucket, 'crc');

    const wrongSha = createHash('sha256').update('something else').digest('hex');
    const mismatch = await raw('PUT', `/${bucket}/sha`, { 'x-amz-content-sha256': wrongSha }, data);
    expect(mismatch.status).toBe(400);
    expect(mismatch.body).toContain('<Code>XAmzContentSHA256Mismatch</Code>');
    expect(mismatch.body).toContain(`<ClientComputedContentSHA256>${wrongSha}</ClientComputedContentSHA256>`);
    await expectMissing(bucket, 'sha');
    const rightSha = createHash('sha256').update(data).digest('hex');
    expect((await raw('PUT', `/${bucket}/sha`, { 'x-amz-content-sha256': rightSha }, data)).status).toBe(200);
  });

  it('verifies and gives back every additional checksum algorithm, sent as a header or as an aws-chunked trailer', async () => {
    const data = randomBytes(3 * MIB + 17);
    const independent: Partial<Record<ChecksumAlgorithm, string>> = {
      SHA256: createHash('sha256').update(data).digest('base64'),
      SHA1: createHash('sha1').update(data).digest('base64'),
      CRC32: Buffer.from(crc32(data).toString(16).padStart(8, '0'), 'hex').toString('base64'),
    };
    const members = { CRC32: 'ChecksumCRC32', CRC32C: 'ChecksumCRC32C', CRC64NVME: 'ChecksumCRC64NVME', SHA1: 'ChecksumSHA1', SHA256: 'ChecksumSHA256' } as const;
    for (const algorithm of ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] as const) {
      const key = `checksum-${algorithm}`;
      const put = await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data, ChecksumAlgorithm: algorithm }));
      const value = put[members[algorithm]];
      expect(value, algorithm).toBeDefined();
      if (independent[algorithm] !== undefined) expect(value, algorithm).toBe(independent[algorithm]);
      const head = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: 'ENABLED' }));
      expect(head[members[algorithm]], algorithm).toBe(value);
      expect(head.ChecksumType).toBe('FULL_OBJECT');
      // Streamed bodies go aws-chunked with the checksum in a trailer; the SDK checks the checksum GetObject gives back.
      await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${key}-streamed`, Body: Readable.from([data.subarray(0, MIB), data.subarray(MIB)]), ContentLength: data.length, ChecksumAlgorithm: algorithm }));
      const got = await t.s3.send(new GetObjectCommand({ Bucket: bucket, Key: `${key}-streamed`, ChecksumMode: 'ENABLED' }));
      expect(got[members[algorithm]], algorithm).toBe(value);
      expectBytes(Buffer.from(await got.Body!.transformToByteArray()), data);
    }
  });

  it('refuses an aws-chunked body whose trailer checksum is wrong (BadDigest) or that ends early (IncompleteBody)', async () => {
    const chunked = {
      'content-encoding': 'aws-chunked',
      'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER',
      'x-amz-trailer': 'x-amz-checksum-crc32',
      'x-amz-decoded-content-length': 5,
    };
    const bad = await raw('PUT', `/${bucket}/trailer`, chunked, '5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n');
    expect(bad.status).toBe(400);
    expect(bad.body).toContain('<Code>BadDigest</Code>');
    const good = await raw('PUT', `/${bucket}/trailer`, chunked, '5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n');
    expect(good.status).toBe(200);
    const short = await raw('PUT', `/${bucket}/short`, chunked, '5\r\nhel');
    expect(short.status).toBe(400);
    expect(short.body).toContain('<Code>IncompleteBody</Code>');
    await expectMissing(bucket, 'short');
  });

  it('keeps SSE-C: echoes the key MD5, refuses reads without the key (400) or with another key (403)', async () => {
    const key = randomBytes(32).toString('base64');
    const other = randomBytes(32).toString('base64');
    const sse = { SSECustomerAlgorithm: 'AES256', SSECustomerKey: key };
    const put = await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'secret', Body: 'classified', ...sse }));
    const keyMd5 = md5(Buffer.from(key, 'base64')).toString('base64');
    expect(put).toMatchObject({ SSECustomerAlgorithm: 'AES256', SSECustomerKeyMD5: keyMd5 });
    expect(put.ServerSideEncryption).toBeUndefined();
    const { out, bytes } = await getBytes(bucket, 'secret', sse);
    expect(bytes.toString()).toBe('classified');
    expect(out.SSECustomerKeyMD5).toBe(keyMd5);
    const withoutKey = await rejection(getBytes(bucket, 'secret'));
    expect([withoutKey.name, withoutKey.$metadata?.httpStatusCode]).toEqual(['InvalidRequest', 400]);
    const wrongKey = await rejection(getBytes(bucket, 'secret', { SSECustomerAlgorithm: 'AES256', SSECustomerKey: other }));
    expect([wrongKey.name, wrongKey.$metadata?.httpStatusCode]).toEqual(['AccessDenied', 403]);
    const badMd5 = await raw('PUT', `/${bucket}/secret2`, {
      'x-amz-server-side-encryption-customer-algorithm': 'AES256',
      'x-amz-server-side-encryption-customer-key': key,
      'x-amz-server-side-encryption-customer-key-md5': md5(Buffer.from('x')).toString('base64'),
    }, 'x');
    expect(badMd5.status).toBe(400);
    expect(badMd5.body).toContain('<Code>InvalidArgument</Code>');
  });

  it('takes every storage class of a general purpose bucket; those of other buckets (directory, Outposts, Snow) and anything else are InvalidStorageClass', async () => {
    const classes = ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR'] as const;
    for (const storageClass of classes) {
      await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `class-${storageClass}`, Body: 'x', StorageClass: storageClass }));
      const head = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: `class-${storageClass}` }));
      expect(head.StorageClass).toBe(storageClass === 'STANDARD' ? undefined : storageClass);
    }
    for (const wrong of ['FROZEN', 'EXPRESS_ONEZONE', 'OUTPOSTS', 'SNOW']) {
      const refused = await rejection(t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'class-wrong', Body: 'x', StorageClass: wrong as StorageClass })));
      expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['InvalidStorageClass', 400]);
    }
    await expectMissing(bucket, 'class-wrong');
  });

  it('refuses a PutObject body declared over 5 GiB (EntityTooLarge) before reading it, and a key over 1024 bytes (KeyTooLongError)', async () => {
    // The body is never sent: the connection is not to be reused.
    const huge = await raw('PUT', `/${bucket}/huge`, { 'content-length': 5 * 1024 * MIB + 1, connection: 'close' });
    expect([huge.status, huge.body]).toEqual([400, expect.stringContaining('<Code>EntityTooLarge</Code>')]);
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k'.repeat(1024), Body: 'x' }));
    const long = await rejection(t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'k'.repeat(1025), Body: 'x' })));
    expect([long.name, long.$metadata?.httpStatusCode]).toEqual(['KeyTooLongError', 400]);
  });

  it('DeleteObject is idempotent; DeleteObjects reports each key, or only errors when quiet', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'gone', Body: 'x' }));
    expect((await t.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'gone' }))).$metadata.httpStatusCode).toBe(204);
    expect((await t.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'gone' }))).$metadata.httpStatusCode).toBe(204);
    for (const key of ['many/1', 'many/2', 'many/3']) await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
    const loud = await t.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'many/1' }, { Key: 'many/never' }] } }));
    expect(loud.Deleted?.map((d) => d.Key)).toEqual(['many/1', 'many/never']);
    const quiet = await t.s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: 'many/2' }, { Key: 'many/3' }], Quiet: true } }));
    expect(quiet.Deleted ?? []).toEqual([]);
    expect((await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'many/' }))).KeyCount).toBe(0);
    const noDigest = await raw('POST', `/${bucket}?delete`, {}, '<Delete><Object><Key>x</Key></Object></Delete>');
    expect(noDigest.status).toBe(400);
    expect(noDigest.body).toContain('<Code>InvalidRequest</Code>');
  });

  it('answers virtual-hosted-style requests: the SDK on http://localhost, and Host: BUCKET.127.0.0.1 by hand', async () => {
    const port = t.emulator.port;
    const toLoopback = ((_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
      if (options.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
      else callback(null, '127.0.0.1', 4);
    }) as unknown as LookupFunction;
    const virtual = new S3Client({
      endpoint: `http://localhost:${port}`,
      region: 'us-east-1',
      credentials: CREDENTIALS,
      maxAttempts: 1,
      forcePathStyle: false,
      requestHandler: new NodeHttpHandler({ httpAgent: new Agent({ lookup: toLoopback }) }),
    });
    const seenHosts: string[] = [];
    virtual.middlewareStack.add((next) => async (args) => {
      seenHosts.push((args.request as { hostname: string }).hostname);
      return next(args);
    }, { step: 'finalizeRequest' });
    try {
      await virtual.send(new PutObjectCommand({ Bucket: bucket, Key: 'virtual/key', Body: 'by host name' }));
      const got = await virtual.send(new GetObjectCommand({ Bucket: bucket, Key: 'virtual/key' }));
      expect(await got.Body!.transformToString()).toBe('by host name');
      expect(seenHosts).toContain(`${bucket}.localhost`);
    } finally {
      virtual.destroy();
    }
    const byHand = await raw('GET', '/virtual/key', { host: `${bucket}.127.0.0.1:${port}` });
    expect([byHand.status, byHand.body]).toEqual([200, 'by host name']);
  });
});

describe('archive storage classes and restores', () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = await createBucket('cold');
  });

  const restore = (key: string, days: number, tier?: Tier) =>
    t.s3.send(new RestoreObjectCommand({ Bucket: bucket, Key: key, RestoreRequest: { Days: days, ...(tier === undefined ? {} : { GlacierJobParameters: { Tier: tier } }) } }));

  it('GLACIER: InvalidObjectState until restored; x-amz-restore ongoing, then with its expiry; a new request extends it; expiry makes it unreadable again', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'g', Body: 'frozen bytes', StorageClass: 'GLACIER' }));
    const refused = await rejection(getBytes(bucket, 'g'));
    expect([refused.name, refused.$metadata?.httpStatusCode, (refused as { StorageClass?: string }).StorageClass]).toEqual(['InvalidObjectState', 403, 'GLACIER']);
    const before = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'g' }));
    expect([before.StorageClass, before.Restore]).toEqual(['GLACIER', undefined]);

    expect((await restore('g', 2, 'Expedited')).$metadata.httpStatusCode).toBe(202);
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'g' }))).Restore).toBe('ongoing-request="true"');
    const busy = await rejection(restore('g', 2, 'Expedited'));
    expect([busy.name, busy.$metadata?.httpStatusCode]).toEqual(['RestoreAlreadyInProgress', 409]);
    await expectAwsError(getBytes(bucket, 'g'), 'InvalidObjectState');

    clock.advance(RESTORE_DELAYS.Expedited);
    const done = clock.ms;
    const expiry = Math.ceil((done + 2 * DAY) / DAY) * DAY;
    const restored = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'g' }));
    expect(restored.Restore).toBe(`ongoing-request="false", expiry-date="${new Date(expiry).toUTCString()}"`);
    expect((await getBytes(bucket, 'g')).bytes.toString()).toBe('frozen bytes');
    expect((await getBytes(bucket, 'g', { Range: 'bytes=7-' })).bytes.toString()).toBe('bytes');

    clock.advance(DAY);
    expect((await restore('g', 5)).$metadata.httpStatusCode).toBe(200);
    const extended = Math.ceil((clock.ms + 5 * DAY) / DAY) * DAY;
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'g' }))).Restore).toContain(new Date(extended).toUTCString());
    clock.ms = extended;
    await expectAwsError(getBytes(bucket, 'g'), 'InvalidObjectState');
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'g' }))).Restore).toBeUndefined();
  });

  it('DEEP_ARCHIVE: no Expedited tier; Standard (the default) and Bulk take their delays', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'd', Body: 'deep', StorageClass: 'DEEP_ARCHIVE' }));
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'd-bulk', Body: 'deeper', StorageClass: 'DEEP_ARCHIVE' }));
    const expedited = await rejection(restore('d', 1, 'Expedited'));
    expect([expedited.name, expedited.$metadata?.httpStatusCode]).toEqual(['InvalidArgument', 400]);
    expect((await restore('d', 1)).$metadata.httpStatusCode).toBe(202);
    expect((await restore('d-bulk', 1, 'Bulk')).$metadata.httpStatusCode).toBe(202);
    clock.advance(RESTORE_DELAYS.Standard - 1);
    await expectAwsError(getBytes(bucket, 'd'), 'InvalidObjectState');
    clock.advance(1);
    expect((await getBytes(bucket, 'd')).bytes.toString()).toBe('deep');
    await expectAwsError(getBytes(bucket, 'd-bulk'), 'InvalidObjectState');
    clock.advance(RESTORE_DELAYS.Bulk - RESTORE_DELAYS.Standard);
    expect((await getBytes(bucket, 'd-bulk')).bytes.toString()).toBe('deeper');
  });

  it('GLACIER_IR, STANDARD and the infrequent-access classes are readable at once and refuse RestoreObject (InvalidObjectState, 403); a missing key is NoSuchKey', async () => {
    for (const storageClass of ['GLACIER_IR', 'STANDARD', 'STANDARD_IA', 'ONEZONE_IA'] as const) {
      await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `now-${storageClass}`, Body: storageClass, StorageClass: storageClass }));
      expect((await getBytes(bucket, `now-${storageClass}`)).bytes.toString()).toBe(storageClass);
      const refused = await rejection(restore(`now-${storageClass}`, 1));
      expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['InvalidObjectState', 403]);
    }
    await expectAwsError(restore('never-written', 1), 'NoSuchKey');
  });

  it('a restore of an archived object needs Days, 1 or more (MalformedXML without, InvalidArgument below), and a known tier', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'days', Body: 'x', StorageClass: 'GLACIER' }));
    const noDays = await rejection(t.s3.send(new RestoreObjectCommand({ Bucket: bucket, Key: 'days', RestoreRequest: { GlacierJobParameters: { Tier: 'Bulk' } } })));
    expect([noDays.name, noDays.$metadata?.httpStatusCode]).toEqual(['MalformedXML', 400]);
    const zero = await rejection(restore('days', 0));
    expect([zero.name, zero.$metadata?.httpStatusCode]).toEqual(['InvalidArgument', 400]);
    await expectAwsError(restore('days', 1, 'Instant' as Tier), 'MalformedXML');
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'days' }))).Restore).toBeUndefined();
  });

  it('INTELLIGENT_TIERING objects in an access tier are readable, and RestoreObject is ObjectAlreadyInActiveTierError (403)', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'tiered', Body: 'tiered', StorageClass: 'INTELLIGENT_TIERING' }));
    expect((await getBytes(bucket, 'tiered')).bytes.toString()).toBe('tiered');
    const refused = await rejection(restore('tiered', 1));
    expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['ObjectAlreadyInActiveTierError', 403]);
  });

  it('a restore under way can be upgraded to a faster tier (202), not to the same or a slower one (RestoreAlreadyInProgress)', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'upgrade', Body: 'sooner', StorageClass: 'GLACIER' }));
    expect((await restore('upgrade', 3, 'Bulk')).$metadata.httpStatusCode).toBe(202);
    expect((await rejection(restore('upgrade', 3, 'Bulk'))).name).toBe('RestoreAlreadyInProgress');
    expect((await restore('upgrade', 3, 'Standard')).$metadata.httpStatusCode).toBe(202);
    for (const slower of ['Standard', 'Bulk'] as const) expect((await rejection(restore('upgrade', 3, slower))).name).toBe('RestoreAlreadyInProgress');
    clock.advance(RESTORE_DELAYS.Standard);
    expect((await getBytes(bucket, 'upgrade')).bytes.toString()).toBe('sooner');
    const expiry = Math.ceil((clock.ms + 3 * DAY) / DAY) * DAY;
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'upgrade' }))).Restore).toBe(`ongoing-request="false", expiry-date="${new Date(expiry).toUTCString()}"`);
  });

  it('lists storage classes and, when asked for, the restore status', async () => {
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'list/frozen', Body: 'x', StorageClass: 'GLACIER' }));
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'list/thawing', Body: 'x', StorageClass: 'GLACIER' }));
    await restore('list/thawing', 1, 'Bulk');
    const listed = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'list/', OptionalObjectAttributes: ['RestoreStatus'] }));
    expect(listed.Contents?.map((c) => [c.Key, c.StorageClass, c.RestoreStatus?.IsRestoreInProgress])).toEqual([
      ['list/frozen', 'GLACIER', undefined],
      ['list/thawing', 'GLACIER', true],
    ]);
  });
});

describe('multipart uploads', () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = await createBucket('multipart');
  });

  async function upload(key: string, parts: Buffer[], create: { StorageClass?: StorageClass; Metadata?: Record<string, string> } = {}) {
    const { UploadId } = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...create }));
    const etags: string[] = [];
    for (const [n, body] of parts.entries()) {
      etags.push((await t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n + 1, Body: body }))).ETag!);
    }
    return { uploadId: UploadId!, etags };
  }

  const complete = (key: string, uploadId: string, parts: { PartNumber: number; ETag: string }[]) =>
    t.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: parts } }));

  it('joins parts into one object: ETag = MD5 of the part MD5s with -N, bytes across part boundaries, class and metadata kept', async () => {
    const parts = [randomBytes(5 * MIB), randomBytes(5 * MIB), randomBytes(1)];
    const { uploadId, etags } = await upload('joined', parts, { StorageClass: 'GLACIER_IR', Metadata: { snapshot: 'snap-9' } });
    expect(etags).toEqual(parts.map((p) => `"${md5(p).toString('hex')}"`));
    const done = await complete('joined', uploadId, etags.map((ETag, n) => ({ PartNumber: n + 1, ETag })));
    const expected = `"${createHash('md5').update(Buffer.concat(parts.map(md5))).digest('hex')}-3"`;
    expect(done).toMatchObject({ Bucket: bucket, Key: 'joined', ETag: expected });
    const head = await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'joined' }));
    expect(head).toMatchObject({ ContentLength: 10 * MIB + 1, ETag: expected, StorageClass: 'GLACIER_IR', Metadata: { snapshot: 'snap-9' } });
    const across = await getBytes(bucket, 'joined', { Range: `bytes=${5 * MIB - 2}-${10 * MIB}` });
    expectBytes(across.bytes, Buffer.concat(parts).subarray(5 * MIB - 2));
    expectBytes((await getBytes(bucket, 'joined')).bytes, Buffer.concat(parts));
    await expectAwsError(t.s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'joined', UploadId: uploadId })), 'NoSuchUpload');
  });

  it('part sizes: every part but the last at least 5 MiB (EntityTooSmall below); parts left out of the list are dropped', async () => {
    const short = await upload('short', [randomBytes(5 * MIB - 1), randomBytes(10)]);
    const tooSmall = await rejection(complete('short', short.uploadId, short.etags.map((ETag, n) => ({ PartNumber: n + 1, ETag }))));
    expect([tooSmall.name, tooSmall.$metadata?.httpStatusCode]).toEqual(['EntityTooSmall', 400]);
    // The same upload completes with the short part alone (it is then the last one).
    await complete('short', short.uploadId, [{ PartNumber: 1, ETag: short.etags[0]! }]);
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'short' }))).ContentLength).toBe(5 * MIB - 1);

    const exact = await upload('exact', [Buffer.alloc(5 * MIB, 1), Buffer.alloc(1, 2)]);
    await complete('exact', exact.uploadId, exact.etags.map((ETag, n) => ({ PartNumber: n + 1, ETag })));
    expect((await t.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: 'exact' }))).ContentLength).toBe(5 * MIB + 1);
  });

  it('InvalidPart (wrong ETag, part never uploaded), InvalidPartOrder, NoSuchUpload (aborted, other key), part numbers 1..10000', async () => {
    const { uploadId, etags } = await upload('checked', [randomBytes(5 * MIB), randomBytes(100)]);
    const wrongTag = await rejection(complete('checked', uploadId, [{ PartNumber: 1, ETag: '"00000000000000000000000000000000"' }, { PartNumber: 2, ETag: etags[1]! }]));
    expect([wrongTag.name, wrongTag.$metadata?.httpStatusCode]).toEqual(['InvalidPart', 400]);
    await expectAwsError(complete('checked', uploadId, [{ PartNumber: 1, ETag: etags[0]! }, { PartNumber: 3, ETag: etags[1]! }]), 'InvalidPart');
    await expectAwsError(complete('checked', uploadId, [{ PartNumber: 2, ETag: etags[1]! }, { PartNumber: 1, ETag: etags[0]! }]), 'InvalidPartOrder');
    await expectAwsError(complete('other-key', uploadId, [{ PartNumber: 1, ETag: etags[0]! }]), 'NoSuchUpload');
    for (const partNumber of [0, 10_001]) {
      await expectAwsError(t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'checked', UploadId: uploadId, PartNumber: partNumber, Body: 'x' })), 'InvalidArgument');
    }
    await t.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'checked', UploadId: uploadId }));
    await expectAwsError(t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'checked', UploadId: uploadId, PartNumber: 1, Body: 'x' })), 'NoSuchUpload');
    await expectAwsError(complete('checked', uploadId, [{ PartNumber: 1, ETag: etags[0]! }]), 'NoSuchUpload');
    await expectAwsError(t.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'checked', UploadId: uploadId })), 'NoSuchUpload');
    await expectMissing(bucket, 'checked');
  });

  it('UploadPart: a part declared over 5 GiB is EntityTooLarge before a byte is read', async () => {
    const { UploadId } = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'large-part' }));
    const path = `/${bucket}/large-part?partNumber=1&uploadId=${encodeURIComponent(UploadId!)}`;
    const huge = await raw('PUT', path, { 'content-length': 5 * 1024 * MIB + 1, connection: 'close' });
    expect([huge.status, huge.body]).toEqual([400, expect.stringContaining('<Code>EntityTooLarge</Code>')]);
    await t.s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: 'large-part', UploadId }));
  });

  it('ListParts and ListMultipartUploads page through what is under way', async () => {
    const { uploadId } = await upload('listed/a', [Buffer.from('1'), Buffer.from('22'), Buffer.from('333')], { StorageClass: 'DEEP_ARCHIVE' });
    const second = await upload('listed/b', []);
    const first = await t.s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'listed/a', UploadId: uploadId, MaxParts: 2 }));
    expect(first.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect([first.IsTruncated, first.NextPartNumberMarker, first.StorageClass]).toEqual([true, '2', 'DEEP_ARCHIVE']);
    const rest = await t.s3.send(new ListPartsCommand({ Bucket: bucket, Key: 'listed/a', UploadId: uploadId, PartNumberMarker: '2' }));
    expect(rest.Parts?.map((p) => p.PartNumber)).toEqual([3]);
    expect(rest.IsTruncated).toBe(false);

    const uploads = await t.s3.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'listed/', MaxUploads: 1 }));
    expect(uploads.Uploads?.map((u) => [u.Key, u.UploadId, u.StorageClass])).toEqual([['listed/a', uploadId, 'DEEP_ARCHIVE']]);
    expect([uploads.IsTruncated, uploads.NextKeyMarker]).toEqual([true, 'listed/a']);
    const next = await t.s3.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: 'listed/', KeyMarker: uploads.NextKeyMarker, UploadIdMarker: uploads.NextUploadIdMarker }),
    );
    expect(next.Uploads?.map((u) => u.UploadId)).toEqual([second.uploadId]);
  });

  it('with a checksum algorithm: every part must carry it; a COMPOSITE upload completes only with every part\'s checksum listed; COMPOSITE gives the checksum of the part checksums with -N, FULL_OBJECT the whole object\'s', async () => {
    const parts = [randomBytes(5 * MIB), randomBytes(1000)];
    const { UploadId } = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'sha', ChecksumAlgorithm: 'SHA256' }));
    const refused = await rejection(t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'sha', UploadId, PartNumber: 1, Body: parts[0], ChecksumAlgorithm: 'CRC32' })));
    expect(refused.name).toBe('InvalidRequest');
    const sent = [];
    for (const [n, body] of parts.entries()) {
      const out = await t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'sha', UploadId, PartNumber: n + 1, Body: body, ChecksumAlgorithm: 'SHA256' }));
      expect(out.ChecksumSHA256).toBe(createHash('sha256').update(body).digest('base64'));
      sent.push({ PartNumber: n + 1, ETag: out.ETag!, ChecksumSHA256: out.ChecksumSHA256! });
    }
    await expectAwsError(
      t.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'sha', UploadId, MultipartUpload: { Parts: [{ ...sent[0]!, ChecksumSHA256: sent[1]!.ChecksumSHA256 }, sent[1]!] } })),
      'InvalidPart',
    );
    // A COMPOSITE upload is completed only with every part's checksum listed.
    const unlisted = await rejection(
      t.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'sha', UploadId, MultipartUpload: { Parts: [sent[0]!, { PartNumber: 2, ETag: sent[1]!.ETag }] } })),
    );
    expect([unlisted.name, unlisted.$metadata?.httpStatusCode, unlisted.message]).toEqual([
      'InvalidRequest',
      400,
      'The upload was created using a sha256 checksum. The complete request must include the checksum for each part. It was missing for part 2 in the request.',
    ]);
    const done = await t.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'sha', UploadId, MultipartUpload: { Parts: sent } }));
    const composite = createHash('sha256').update(Buffer.concat(parts.map((p) => createHash('sha256').update(p).digest()))).digest('base64');
    expect([done.ChecksumSHA256, done.ChecksumType]).toEqual([`${composite}-2`, 'COMPOSITE']);

    const whole = await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'crc64-whole', Body: Buffer.concat(parts), ChecksumAlgorithm: 'CRC64NVME' }));
    const full = await t.s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'crc64', ChecksumAlgorithm: 'CRC64NVME', ChecksumType: 'FULL_OBJECT' }));
    const fullParts = [];
    for (const [n, body] of parts.entries()) {
      const out = await t.s3.send(new UploadPartCommand({ Bucket: bucket, Key: 'crc64', UploadId: full.UploadId, PartNumber: n + 1, Body: body, ChecksumAlgorithm: 'CRC64NVME' }));
      fullParts.push({ PartNumber: n + 1, ETag: out.ETag! });
    }
    const fullDone = await t.s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: 'crc64', UploadId: full.UploadId, MultipartUpload: { Parts: fullParts } }));
    expect([fullDone.ChecksumCRC64NVME, fullDone.ChecksumType]).toEqual([whole.ChecksumCRC64NVME, 'FULL_OBJECT']);
  });
});

describe('listings', () => {
  let bucket: string;
  const keys = ['a/1', 'a/2', 'a/b/3', 'b/1', 'c', 'd', 'e e+f', 'ü/1'];
  beforeAll(async () => {
    bucket = await createBucket('listing');
    for (const key of keys) await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
  });

  it('ListObjectsV2: keys in UTF-8 order, prefix, delimiter and common prefixes, StartAfter', async () => {
    const all = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(all.Contents?.map((c) => c.Key)).toEqual(keys);
    expect([all.KeyCount, all.IsTruncated, all.MaxKeys]).toEqual([keys.length, false, 1000]);
    expect(all.Contents?.[0]).toMatchObject({ Size: 3, StorageClass: 'STANDARD', ETag: `"${md5(Buffer.from('a/1')).toString('hex')}"` });
    const top = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: '/' }));
    expect(top.Contents?.map((c) => c.Key)).toEqual(['c', 'd', 'e e+f']);
    expect(top.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['a/', 'b/', 'ü/']);
    const underA = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'a/', Delimiter: '/' }));
    expect([underA.Contents?.map((c) => c.Key), underA.CommonPrefixes?.map((p) => p.Prefix)]).toEqual([['a/1', 'a/2'], ['a/b/']]);
    const after = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, StartAfter: 'b/1' }));
    expect(after.Contents?.map((c) => c.Key)).toEqual(['c', 'd', 'e e+f', 'ü/1']);
  });

  it('pages with MaxKeys and continuation tokens, a common prefix counting as one entry', async () => {
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: '/', MaxKeys: 2, ContinuationToken: token }));
      expect(page.KeyCount).toBeLessThanOrEqual(2);
      seen.push(...(page.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
      expect(page.IsTruncated).toBe(token !== undefined);
      pages += 1;
    } while (token);
    expect(seen.sort()).toEqual(['a/', 'b/', 'c', 'd', 'e e+f', 'ü/'].sort());
    expect(pages).toBe(3);
    await expectAwsError(t.s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: 'bogus' })), 'InvalidArgument');
    expect((await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 0 }))).KeyCount).toBe(0);
  });

  it('encodes keys with encoding-type=url, and serves ListObjects version 1 with markers', async () => {
    const encoded = await t.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'e', EncodingType: 'url' }));
    expect(encoded.Contents?.map((c) => c.Key)).toEqual(['e%20e%2Bf']);
    const v1 = await t.s3.send(new ListObjectsCommand({ Bucket: bucket, Delimiter: '/', MaxKeys: 2 }));
    expect([v1.CommonPrefixes?.map((p) => p.Prefix), v1.IsTruncated, v1.NextMarker]).toEqual([['a/', 'b/'], true, 'b/']);
    const v1second = await t.s3.send(new ListObjectsCommand({ Bucket: bucket, Delimiter: '/', Marker: v1.NextMarker }));
    expect([v1second.Contents?.map((c) => c.Key), v1second.CommonPrefixes?.map((p) => p.Prefix), v1second.IsTruncated]).toEqual([['c', 'd', 'e e+f'], ['ü/'], false]);
    const v1next = await t.s3.send(new ListObjectsCommand({ Bucket: bucket, Marker: 'd' }));
    expect(v1next.Contents?.map((c) => c.Key)).toEqual(['e e+f', 'ü/1']);
  });
});

describe('storage and restarts', () => {
  it('keeps object bytes in files under blobs/ (a 12 MiB body streamed in), not in the catalog', async () => {
    const bucket = await createBucket('on-disk');
    const data = randomBytes(12 * MIB);
    const chunks = Array.from({ length: 12 }, (_, n) => data.subarray(n * MIB, (n + 1) * MIB));
    await t.s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'big', Body: Readable.from(chunks), ContentLength: data.length }));
    const sizes = readdirSync(join(t.dataDir, 'blobs')).map((name) => statSync(join(t.dataDir, 'blobs', name)).size);
    expect(sizes).toContain(data.length);
    expect(statSync(join(t.dataDir, 'catalog.sqlite')).size).toBeLessThan(4 * MIB);
    expectBytes((await getBytes(bucket, 'big')).bytes, data);
    const stats = t.emulator.stats().operations;
    expect(stats.PutObject?.bytesIn).toBeGreaterThanOrEqual(data.length);
    expect(stats.GetObject?.bytesOut).toBeGreaterThanOrEqual(data.length);
  });

  it('survives a restart: buckets, objects, restore state and unfinished uploads; files a crash left behind are removed', async () => {
    const dir = tempDir();
    const restartClock = new TestClock();
    let endpoint = await startTestEndpoint({ now: restartClock.now, restoreDelayMs: RESTORE_DELAYS }, dir.path);
    try {
      await endpoint.s3.send(new CreateBucketCommand({ Bucket: 'kept' }));
      await endpoint.s3.send(new PutObjectCommand({ Bucket: 'kept', Key: 'plain', Body: 'still here' }));
      await endpoint.s3.send(new PutObjectCommand({ Bucket: 'kept', Key: 'cold', Body: 'thawed', StorageClass: 'GLACIER' }));
      await endpoint.s3.send(new RestoreObjectCommand({ Bucket: 'kept', Key: 'cold', RestoreRequest: { Days: 1, GlacierJobParameters: { Tier: 'Bulk' } } }));
      const { UploadId } = await endpoint.s3.send(new CreateMultipartUploadCommand({ Bucket: 'kept', Key: 'resumed' }));
      const part1 = randomBytes(5 * MIB);
      const first = await endpoint.s3.send(new UploadPartCommand({ Bucket: 'kept', Key: 'resumed', UploadId, PartNumber: 1, Body: part1 }));
      await endpoint.stop();
      writeFileSync(join(dir.path, 'blobs', 'left-by-a-crash'), 'orphan');

      endpoint = await startTestEndpoint({ now: restartClock.now, restoreDelayMs: RESTORE_DELAYS }, dir.path);
      expect(readdirSync(join(dir.path, 'blobs'))).not.toContain('left-by-a-crash');
      expect((await endpoint.s3.send(new ListBucketsCommand({}))).Buckets?.map((b) => b.Name)).toEqual(['kept']);
      expect(await (await endpoint.s3.send(new GetObjectCommand({ Bucket: 'kept', Key: 'plain' }))).Body!.transformToString()).toBe('still here');
      expect((await endpoint.s3.send(new HeadObjectCommand({ Bucket: 'kept', Key: 'cold' }))).Restore).toBe('ongoing-request="true"');
      restartClock.advance(RESTORE_DELAYS.Bulk);
      expect(await (await endpoint.s3.send(new GetObjectCommand({ Bucket: 'kept', Key: 'cold' }))).Body!.transformToString()).toBe('thawed');
      const second = await endpoint.s3.send(new UploadPartCommand({ Bucket: 'kept', Key: 'resumed', UploadId, PartNumber: 2, Body: 'tail' }));
      const parts = await endpoint.s3.send(new ListPartsCommand({ Bucket: 'kept', Key: 'resumed', UploadId }));
      expect(parts.Parts?.map((p) => p.ETag)).toEqual([first.ETag, second.ETag]);
      await endpoint.s3.send(
        new CompleteMultipartUploadCommand({ Bucket: 'kept', Key: 'resumed', UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: first.ETag }, { PartNumber: 2, ETag: second.ETag }] } }),
      );
      const resumed = Buffer.from(await (await endpoint.s3.send(new GetObjectCommand({ Bucket: 'kept', Key: 'resumed' }))).Body!.transformToByteArray());
      expectBytes(resumed, Buffer.concat([part1, Buffer.from('tail')]));
    } finally {
      await endpoint.stop();
      dir.cleanup();
    }
  });
});

describe('signatures', () => {
  it('with --auth, takes requests signed with the key (streamed aws-chunked bodies too) and refuses a wrong secret with SignatureDoesNotMatch', async () => {
    const endpoint = await startTestEndpoint({ auth: [CREDENTIALS] });
    const wrong = new S3Client({ endpoint: endpoint.emulator.url, region: 'us-east-1', credentials: { ...CREDENTIALS, secretAccessKey: 'wrong' }, maxAttempts: 1, forcePathStyle: true });
    try {
      await endpoint.s3.send(new CreateBucketCommand({ Bucket: 'signed' }));
      const data = randomBytes(2 * MIB + 5);
      await endpoint.s3.send(new PutObjectCommand({ Bucket: 'signed', Key: 'k', Body: Readable.from([data.subarray(0, MIB), data.subarray(MIB)]), ContentLength: data.length }));
      expectBytes(Buffer.from(await (await endpoint.s3.send(new GetObjectCommand({ Bucket: 'signed', Key: 'k' }))).Body!.transformToByteArray()), data);
      const refused = await rejection(wrong.send(new PutObjectCommand({ Bucket: 'signed', Key: 'k2', Body: 'x' })));
      expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['SignatureDoesNotMatch', 403]);
    } finally {
      wrong.destroy();
      await endpoint.stop();
    }
  });
});

const aws = findAwsCli();
const NO_CLI = 'the AWS CLI (`aws`) is not on PATH: the S3 AWS CLI test DID NOT RUN';
if (aws === undefined) console.warn(`WARNING: ${NO_CLI}`);

describe('the AWS CLI', () => {
  it('puts, refuses, restores, reads, uploads in parts and lists with `aws s3api`', async (ctx) => {
    if (aws === undefined) ctx.skip(NO_CLI);
    const work = tempDir('snapline-s3-cli-');
    const endpoint = await startTestEndpoint({ restoreDelayMs: { Expedited: 0 } });
    const cli = (args: string[]) => runAwsCli(aws!, endpoint.emulator.url, work.path, args);
    const json = <T = Record<string, unknown>>(args: string[]) => awsCliJson<T>(aws!, endpoint.emulator.url, work.path, args);
    try {
      const small = randomBytes(1000);
      const parts = [randomBytes(5 * MIB), randomBytes(123)];
      writeFileSync(join(work.path, 'small.bin'), small);
      parts.forEach((part, n) => writeFileSync(join(work.path, `part${n + 1}.bin`), part));
      await json(['s3api', 'create-bucket', '--bucket', 'cli-bucket']);
      const [put, created] = await Promise.all([
        json<{ ETag: string }>(['s3api', 'put-object', '--bucket', 'cli-bucket', '--key', 'cold/small.bin', '--body', 'small.bin', '--storage-class', 'GLACIER', '--metadata', 'snapshot=snap-1']),
        json<{ UploadId: string }>(['s3api', 'create-multipart-upload', '--bucket', 'cli-bucket', '--key', 'cold/big.bin', '--storage-class', 'DEEP_ARCHIVE']),
      ]);
      expect(put.ETag).toBe(`"${md5(small).toString('hex')}"`);
      const [refused, ...uploaded] = await Promise.all([
        cli(['s3api', 'get-object', '--bucket', 'cli-bucket', '--key', 'cold/small.bin', 'out.bin']),
        ...parts.map((_, n) =>
          json<{ ETag: string }>(['s3api', 'upload-part', '--bucket', 'cli-bucket', '--key', 'cold/big.bin', '--upload-id', created.UploadId, '--part-number', String(n + 1), '--body', `part${n + 1}.bin`]),
        ),
      ]);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/\(InvalidObjectState\) when calling the GetObject operation/);
      writeFileSync(join(work.path, 'parts.json'), JSON.stringify({ Parts: uploaded.map((u, n) => ({ PartNumber: n + 1, ETag: u.ETag })) }));
      const [, completed] = await Promise.all([
        json(['s3api', 'restore-object', '--bucket', 'cli-bucket', '--key', 'cold/small.bin', '--restore-request', '{"Days":1,"GlacierJobParameters":{"Tier":"Expedited"}}']),
        json<{ ETag: string }>(['s3api', 'complete-multipart-upload', '--bucket', 'cli-bucket', '--key', 'cold/big.bin', '--upload-id', created.UploadId, '--multipart-upload', 'file://parts.json']),
      ]);
      expect(completed.ETag).toBe(`"${createHash('md5').update(Buffer.concat(parts.map(md5))).digest('hex')}-2"`);
      const [got, listed] = await Promise.all([
        json<{ Restore: string; StorageClass: string; Metadata: Record<string, string> }>(['s3api', 'get-object', '--bucket', 'cli-bucket', '--key', 'cold/small.bin', 'out.bin']),
        json<{ Contents: { Key: string; StorageClass: string; Size: number }[] }>(['s3api', 'list-objects-v2', '--bucket', 'cli-bucket', '--prefix', 'cold/']),
      ]);
      expect(got).toMatchObject({ StorageClass: 'GLACIER', Metadata: { snapshot: 'snap-1' } });
      expect(got.Restore).toMatch(/^ongoing-request="false", expiry-date=/);
      expectBytes(readFileSync(join(work.path, 'out.bin')), small);
      expect(listed.Contents.map((c) => [c.Key, c.StorageClass, c.Size])).toEqual([
        ['cold/big.bin', 'DEEP_ARCHIVE', 5 * MIB + 123],
        ['cold/small.bin', 'GLACIER', 1000],
      ]);
    } finally {
      await endpoint.stop();
      work.cleanup();
    }
  });
});
