import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateVaultCommand,
  DeleteArchiveCommand,
  DeleteVaultCommand,
  DescribeJobCommand,
  DescribeVaultCommand,
  GetJobOutputCommand,
  GlacierClient,
  InitiateJobCommand,
  InitiateMultipartUploadCommand,
  ListJobsCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  ListVaultsCommand,
  UploadArchiveCommand,
  UploadMultipartPartCommand,
  type JobParameters,
} from '@aws-sdk/client-glacier';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { treeHash } from '../../src/core/checksum.js';
import { ACCOUNT_ID } from '../../src/emulator/index.js';
import { awsCliJson, findAwsCli } from './aws-cli-runner.js';
import { CREDENTIALS, expectAwsError, expectBytes, REGION, rejection, startTestEndpoint, tempDir, TestClock, type TestEndpoint } from './helpers.js';

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
/** Jobs take these on the endpoint's clock, which the tests move by hand. */
const JOB_DELAYS = { Expedited: 60_000, Standard: 4 * HOUR, Bulk: 10 * HOUR };

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();

/**
 * The tree hash, computed here independently of the code under test: SHA-256
 * of each 1 MiB chunk, then adjacent pairs hashed level by level, an odd last
 * node carried up as it is.
 */
function independentTreeHash(data: Buffer): string {
  let level: Buffer[] = [];
  for (let at = 0; at < data.length; at += MIB) level.push(sha256(data.subarray(at, at + MIB)));
  while (level.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? sha256(Buffer.concat([level[i]!, level[i + 1]!])) : level[i]!);
    level = next;
  }
  return level[0]!.toString('hex');
}

const clock = new TestClock();
let t: TestEndpoint;
let glacier: GlacierClient;

function glacierFor(url: string): GlacierClient {
  return new GlacierClient({ endpoint: url, region: REGION, credentials: CREDENTIALS, maxAttempts: 1 });
}

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now, jobDelayMs: JOB_DELAYS });
  glacier = glacierFor(t.emulator.url);
});
afterAll(async () => {
  glacier.destroy();
  await t.stop();
});

const account = { accountId: '-' };

async function createVault(vaultName: string): Promise<string> {
  await glacier.send(new CreateVaultCommand({ ...account, vaultName }));
  return vaultName;
}

async function uploadArchive(vaultName: string, body: Buffer, archiveDescription?: string) {
  const out = await glacier.send(new UploadArchiveCommand({ ...account, vaultName, body, archiveDescription }));
  return { archiveId: out.archiveId!, checksum: out.checksum! };
}

async function initiateJob(vaultName: string, jobParameters: JobParameters): Promise<string> {
  return (await glacier.send(new InitiateJobCommand({ ...account, vaultName, jobParameters }))).jobId!;
}

const describeJob = (vaultName: string, jobId: string) => glacier.send(new DescribeJobCommand({ ...account, vaultName, jobId }));

async function jobOutput(vaultName: string, jobId: string, range?: string) {
  const out = await glacier.send(new GetJobOutputCommand({ ...account, vaultName, jobId, range }));
  return { out, bytes: Buffer.from(await out.body!.transformToByteArray()) };
}

/** A raw request to the endpoint (unsigned: routed to Glacier by its path), with the API version header unless `headers` says otherwise. */
async function raw(method: string, path: string, headers: Record<string, string>, body?: Buffer) {
  const all = { 'x-amz-glacier-version': '2012-06-01', ...headers };
  const res = await fetch(`${t.emulator.url}${path}`, { method, headers: all, ...(body === undefined ? {} : { body }) });
  return { status: res.status, json: (await res.json().catch(() => ({}))) as { code?: string; message?: string; type?: string } };
}

describe('tree hashes', () => {
  it('match independent vectors: the plain SHA-256 up to 1 MiB, pairs hashed by hand above, an odd chunk carried up', async () => {
    const vault = await createVault('tree-hashes');
    const data = randomBytes(5 * MIB);
    const chunk = (n: number) => sha256(data.subarray(n * MIB, (n + 1) * MIB));
    const pair = (a: Buffer, b: Buffer) => sha256(Buffer.concat([a, b]));
    const vectors: [string, Buffer, string][] = [
      ['1 byte', data.subarray(0, 1), sha256(data.subarray(0, 1)).toString('hex')],
      ['1 MiB', data.subarray(0, MIB), chunk(0).toString('hex')],
      ['1 MiB + 1', data.subarray(0, MIB + 1), pair(chunk(0), sha256(data.subarray(MIB, MIB + 1))).toString('hex')],
      ['3 MiB', data.subarray(0, 3 * MIB), pair(pair(chunk(0), chunk(1)), chunk(2)).toString('hex')],
      ['5 MiB', data, pair(pair(pair(chunk(0), chunk(1)), pair(chunk(2), chunk(3))), chunk(4)).toString('hex')],
    ];
    for (const [name, body, expected] of vectors) {
      expect(independentTreeHash(body), name).toBe(expected);
      expect(treeHash(body).toString('hex'), `core, ${name}`).toBe(expected);
      expect((await uploadArchive(vault, body)).checksum, `endpoint, ${name}`).toBe(expected);
    }
  });
});

describe('vaults', () => {
  it('creates (idempotently), describes with archive counts and bytes, lists in pages, and deletes only empty vaults', async () => {
    const created = await glacier.send(new CreateVaultCommand({ ...account, vaultName: 'vault-a' }));
    expect([created.$metadata.httpStatusCode, created.location]).toEqual([201, `/${ACCOUNT_ID}/vaults/vault-a`]);
    await glacier.send(new CreateVaultCommand({ ...account, vaultName: 'vault-a' }));
    await createVault('vault-b');
    const { archiveId } = await uploadArchive('vault-a', randomBytes(1234));
    await uploadArchive('vault-a', randomBytes(100));
    const described = await glacier.send(new DescribeVaultCommand({ ...account, vaultName: 'vault-a' }));
    expect(described).toMatchObject({ VaultName: 'vault-a', VaultARN: `arn:aws:glacier:${REGION}:${ACCOUNT_ID}:vaults/vault-a`, NumberOfArchives: 2, SizeInBytes: 1334 });
    expect(described.CreationDate).toBe(new Date(clock.ms).toISOString());

    const names: string[] = [];
    let marker: string | undefined;
    do {
      const page = await glacier.send(new ListVaultsCommand({ ...account, limit: 1, marker }));
      expect(page.VaultList?.length).toBeLessThanOrEqual(1);
      names.push(...(page.VaultList ?? []).map((v) => v.VaultName!));
      marker = page.Marker;
    } while (marker);
    expect(names).toEqual(expect.arrayContaining(['vault-a', 'vault-b']));

    const refused = await rejection(glacier.send(new DeleteVaultCommand({ ...account, vaultName: 'vault-a' })));
    expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['InvalidParameterValueException', 400]);
    await glacier.send(new DeleteVaultCommand({ ...account, vaultName: 'vault-b' }));
    await expectAwsError(glacier.send(new DescribeVaultCommand({ ...account, vaultName: 'vault-b' })), 'ResourceNotFoundException');
    await glacier.send(new DeleteArchiveCommand({ ...account, vaultName: 'vault-a', archiveId }));
    expect((await glacier.send(new DescribeVaultCommand({ ...account, vaultName: 'vault-a' }))).NumberOfArchives).toBe(1);
  });

  it('every request names the API version (x-amz-glacier-version: 2012-06-01)', async () => {
    const missing = await raw('GET', '/-/vaults', { 'x-amz-glacier-version': '' });
    expect([missing.status, missing.json.code]).toEqual([400, 'InvalidParameterValueException']);
    const res = await fetch(`${t.emulator.url}/-/vaults`);
    expect([res.status, ((await res.json()) as { code: string }).code]).toEqual([400, 'MissingParameterValueException']);
    const other = await raw('GET', '/-/vaults', { 'x-amz-glacier-version': '2011-01-01' });
    expect([other.status, other.json.code]).toEqual([400, 'InvalidParameterValueException']);
    expect((await raw('GET', '/-/vaults', {})).status).toBe(200);
  });

  it('answers ResourceNotFoundException (404) for a missing vault, AccessDeniedException for another account, InvalidParameterValueException for a bad name', async () => {
    const missing = await rejection(glacier.send(new DescribeVaultCommand({ ...account, vaultName: 'nowhere' })));
    expect([missing.name, missing.$metadata?.httpStatusCode, missing.message]).toEqual([
      'ResourceNotFoundException',
      404,
      `Vault not found for ARN: arn:aws:glacier:${REGION}:${ACCOUNT_ID}:vaults/nowhere`,
    ]);
    await expectAwsError(uploadArchive('nowhere', Buffer.from('x')), 'ResourceNotFoundException');
    await glacier.send(new DescribeVaultCommand({ accountId: ACCOUNT_ID, vaultName: 'vault-a' }));
    await expectAwsError(glacier.send(new DescribeVaultCommand({ accountId: '999999999999', vaultName: 'vault-a' })), 'AccessDeniedException');
    await expectAwsError(glacier.send(new CreateVaultCommand({ ...account, vaultName: 'bad name!' })), 'InvalidParameterValueException');
  });
});

describe('archives', () => {
  let vault: string;
  beforeAll(async () => {
    vault = await createVault('archives');
  });

  it('verifies x-amz-sha256-tree-hash and x-amz-content-sha256 (both required, no unsigned payload), refuses empty bodies, and keeps nothing that fails', async () => {
    const body = randomBytes(2 * MIB + 3);
    const wrong = await rejection(glacier.send(new UploadArchiveCommand({ ...account, vaultName: vault, body, checksum: '0'.repeat(64) })));
    expect([wrong.name, wrong.$metadata?.httpStatusCode]).toEqual(['InvalidParameterValueException', 400]);
    expect(wrong.message).toContain('Checksum mismatch');

    const path = `/-/vaults/${vault}/archives`;
    const tree = independentTreeHash(body);
    const badContent = await raw('POST', path, { 'x-amz-sha256-tree-hash': tree, 'x-amz-content-sha256': sha256(Buffer.from('other')).toString('hex') }, body);
    expect([badContent.status, badContent.json.code, badContent.json.type]).toEqual([400, 'InvalidParameterValueException', 'Client']);
    const noTree = await raw('POST', path, { 'x-amz-content-sha256': sha256(body).toString('hex') }, body);
    expect([noTree.status, noTree.json.code]).toEqual([400, 'MissingParameterValueException']);
    const noContent = await raw('POST', path, { 'x-amz-sha256-tree-hash': tree }, body);
    expect([noContent.status, noContent.json.code, noContent.json.message]).toEqual([400, 'MissingParameterValueException', 'Missing required header: x-amz-content-sha256']);
    // The linear hash of the payload is required: Glacier takes no unsigned payload.
    const unsigned = await raw('POST', path, { 'x-amz-sha256-tree-hash': tree, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }, body);
    expect([unsigned.status, unsigned.json.code]).toEqual([400, 'InvalidParameterValueException']);
    const empty = await raw('POST', path, { 'x-amz-sha256-tree-hash': sha256(Buffer.alloc(0)).toString('hex') }, Buffer.alloc(0));
    expect([empty.status, empty.json.code]).toEqual([400, 'InvalidParameterValueException']);
    expect((await glacier.send(new DescribeVaultCommand({ ...account, vaultName: vault }))).NumberOfArchives).toBe(0);

    const good = await raw('POST', path, { 'x-amz-sha256-tree-hash': tree, 'x-amz-content-sha256': sha256(body).toString('hex') }, body);
    expect(good.status).toBe(201);
  });

  it('takes descriptions of up to 1024 printable ASCII characters', async () => {
    await uploadArchive(vault, Buffer.from('x'), 'd'.repeat(1024));
    await expectAwsError(uploadArchive(vault, Buffer.from('x'), 'd'.repeat(1025)), 'InvalidParameterValueException');
    await expectAwsError(uploadArchive(vault, Buffer.from('x'), 'tab\there'), 'InvalidParameterValueException');
  });

  it('DeleteArchive answers 204, then ResourceNotFoundException', async () => {
    const { archiveId } = await uploadArchive(vault, Buffer.from('short-lived'));
    expect((await glacier.send(new DeleteArchiveCommand({ ...account, vaultName: vault, archiveId }))).$metadata.httpStatusCode).toBe(204);
    await expectAwsError(glacier.send(new DeleteArchiveCommand({ ...account, vaultName: vault, archiveId })), 'ResourceNotFoundException');
  });
});

describe('multipart uploads', () => {
  let vault: string;
  beforeAll(async () => {
    vault = await createVault('multipart');
  });

  const initiate = async (partSize: string, archiveDescription?: string) =>
    (await glacier.send(new InitiateMultipartUploadCommand({ ...account, vaultName: vault, partSize, archiveDescription }))).uploadId!;

  const uploadPart = (uploadId: string, first: number, body: Buffer, checksum?: string) =>
    glacier.send(new UploadMultipartPartCommand({ ...account, vaultName: vault, uploadId, range: `bytes ${first}-${first + body.length - 1}/*`, body, checksum }));

  const completeUpload = (uploadId: string, archiveSize: number, checksum: string) =>
    glacier.send(new CompleteMultipartUploadCommand({ ...account, vaultName: vault, uploadId, archiveSize: String(archiveSize), checksum }));

  it('takes part sizes of 1 MiB x 2^n up to 4 GiB and refuses others', async () => {
    for (const ok of [MIB, 2 * MIB, 64 * MIB, 4096 * MIB]) {
      const uploadId = await initiate(String(ok));
      await glacier.send(new AbortMultipartUploadCommand({ ...account, vaultName: vault, uploadId }));
    }
    for (const bad of [MIB / 2, 3 * MIB, 8192 * MIB, MIB + 1]) {
      await expectAwsError(initiate(String(bad)), 'InvalidParameterValueException');
    }
  });

  it('joins equal parts and a shorter last one; the archive tree hash combines the part hashes', async () => {
    for (const [partSize, size] of [
      [MIB, 3 * MIB + 100],
      [2 * MIB, 5 * MIB],
      [4 * MIB, 4 * MIB],
    ] as const) {
      const data = randomBytes(size);
      const uploadId = await initiate(String(partSize), `parts of ${partSize}`);
      for (let first = 0; first < size; first += partSize) {
        const part = data.subarray(first, first + partSize);
        expect((await uploadPart(uploadId, first, part)).checksum).toBe(independentTreeHash(part));
      }
      const done = await completeUpload(uploadId, size, independentTreeHash(data));
      expect(done.checksum).toBe(independentTreeHash(data));
      expect(done.location).toBe(`/${ACCOUNT_ID}/vaults/${vault}/archives/${done.archiveId}`);
      const jobId = await initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: done.archiveId, Tier: 'Expedited' });
      clock.advance(JOB_DELAYS.Expedited);
      const { out, bytes } = await jobOutput(vault, jobId);
      expectBytes(bytes, data);
      expect(out.archiveDescription).toBe(`parts of ${partSize}`);
    }
  });

  it('lists parts and uploads in pages', async () => {
    const uploadId = await initiate(String(MIB), 'listed');
    for (let n = 0; n < 3; n += 1) await uploadPart(uploadId, n * MIB, Buffer.alloc(MIB, n));
    const first = await glacier.send(new ListPartsCommand({ ...account, vaultName: vault, uploadId, limit: 2 }));
    expect(first).toMatchObject({ ArchiveDescription: 'listed', MultipartUploadId: uploadId, PartSizeInBytes: MIB, VaultARN: `arn:aws:glacier:${REGION}:${ACCOUNT_ID}:vaults/${vault}` });
    expect(first.Parts?.map((p) => p.RangeInBytes)).toEqual(['0-1048575', '1048576-2097151']);
    expect(first.Parts?.[0]?.SHA256TreeHash).toBe(independentTreeHash(Buffer.alloc(MIB, 0)));
    const rest = await glacier.send(new ListPartsCommand({ ...account, vaultName: vault, uploadId, marker: first.Marker }));
    expect([rest.Parts?.map((p) => p.RangeInBytes), rest.Marker]).toEqual([['2097152-3145727'], undefined]);
    const uploads = await glacier.send(new ListMultipartUploadsCommand({ ...account, vaultName: vault }));
    expect(uploads.UploadsList?.find((u) => u.MultipartUploadId === uploadId)).toMatchObject({ ArchiveDescription: 'listed', PartSizeInBytes: MIB });
    await glacier.send(new AbortMultipartUploadCommand({ ...account, vaultName: vault, uploadId }));
    await expectAwsError(glacier.send(new ListPartsCommand({ ...account, vaultName: vault, uploadId })), 'ResourceNotFoundException');
  });

  it('refuses misaligned or oversized ranges, a wrong part hash, a short middle part, a wrong size or tree hash at completion', async () => {
    const uploadId = await initiate(String(MIB));
    const part = randomBytes(MIB);
    await expectAwsError(uploadPart(uploadId, 1000, part.subarray(0, 1000)), 'InvalidParameterValueException');
    await expectAwsError(uploadPart(uploadId, 0, Buffer.concat([part, Buffer.from('x')])), 'InvalidParameterValueException');
    await expectAwsError(uploadPart(uploadId, 0, part, '0'.repeat(64)), 'InvalidParameterValueException');
    await uploadPart(uploadId, 0, part.subarray(0, 1000));
    await uploadPart(uploadId, MIB, part);
    const whole = Buffer.concat([part.subarray(0, 1000), part]);
    await expectAwsError(completeUpload(uploadId, whole.length, independentTreeHash(whole)), 'InvalidParameterValueException');
    await uploadPart(uploadId, 0, part);
    const joined = Buffer.concat([part, part]);
    await expectAwsError(completeUpload(uploadId, joined.length + 1, independentTreeHash(joined)), 'InvalidParameterValueException');
    await expectAwsError(completeUpload(uploadId, joined.length, independentTreeHash(part)), 'InvalidParameterValueException');
    expect((await completeUpload(uploadId, joined.length, independentTreeHash(joined))).checksum).toBe(independentTreeHash(joined));
    await expectAwsError(completeUpload(uploadId, joined.length, independentTreeHash(joined)), 'ResourceNotFoundException');
  });
});

describe('jobs', () => {
  let vault: string;
  let data: Buffer;
  let archiveId: string;
  beforeAll(async () => {
    vault = await createVault('jobs');
    data = randomBytes(5 * MIB + 300);
    archiveId = (await uploadArchive(vault, data, 'snapshot archive')).archiveId;
  });

  it('archive retrieval: InProgress for its tier, output refused; then Succeeded with the tree hash, and output whole or in ranges', async () => {
    const jobId = await initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Bulk', Description: 'nightly' });
    const running = await describeJob(vault, jobId);
    expect(running).toMatchObject({ JobId: jobId, Action: 'ArchiveRetrieval', ArchiveId: archiveId, StatusCode: 'InProgress', Completed: false, Tier: 'Bulk', JobDescription: 'nightly' });
    expect(running.CompletionDate).toBeUndefined();
    const early = await rejection(jobOutput(vault, jobId));
    expect([early.name, early.$metadata?.httpStatusCode]).toEqual(['InvalidParameterValueException', 400]);
    clock.advance(JOB_DELAYS.Bulk - 1);
    expect((await describeJob(vault, jobId)).StatusCode).toBe('InProgress');
    clock.advance(1);
    const done = await describeJob(vault, jobId);
    expect(done).toMatchObject({
      StatusCode: 'Succeeded',
      Completed: true,
      ArchiveSizeInBytes: data.length,
      SHA256TreeHash: independentTreeHash(data),
      ArchiveSHA256TreeHash: independentTreeHash(data),
      RetrievalByteRange: `0-${data.length - 1}`,
      CompletionDate: new Date(clock.ms).toISOString(),
    });

    const whole = await jobOutput(vault, jobId);
    expectBytes(whole.bytes, data);
    expect([whole.out.status, whole.out.checksum, whole.out.acceptRanges, whole.out.archiveDescription]).toEqual([200, independentTreeHash(data), 'bytes', 'snapshot archive']);
    const ranges: [number, number, boolean][] = [
      [0, MIB - 1, true],
      [2 * MIB, 4 * MIB - 1, true],
      [4 * MIB, data.length - 1, true],
      [MIB, 3 * MIB - 1, false],
      [10, 99, false],
    ];
    for (const [start, end, aligned] of ranges) {
      const part = await jobOutput(vault, jobId, `bytes=${start}-${end}`);
      const expected = data.subarray(start, end + 1);
      expectBytes(part.bytes, expected);
      expect([part.out.status, part.out.contentRange]).toEqual([206, `bytes ${start}-${end}/${data.length}`]);
      expect(part.out.checksum, `${start}-${end}`).toBe(aligned ? independentTreeHash(expected) : undefined);
    }
    await expectAwsError(jobOutput(vault, jobId, `bytes=0-${data.length}`), 'InvalidParameterValueException');
  });

  it('RetrievalByteRange: megabyte-aligned only; the job tree hash when tree-hash aligned; output is the range', async () => {
    for (const [range, aligned] of [
      [`${2 * MIB}-${4 * MIB - 1}`, true],
      [`${MIB}-${3 * MIB - 1}`, false],
      [`${4 * MIB}-${data.length - 1}`, true],
    ] as const) {
      const jobId = await initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Expedited', RetrievalByteRange: range });
      clock.advance(JOB_DELAYS.Expedited);
      const [start, end] = range.split('-').map(Number) as [number, number];
      const expected = data.subarray(start, end + 1);
      const described = await describeJob(vault, jobId);
      expect(described.RetrievalByteRange).toBe(range);
      expect(described.SHA256TreeHash, range).toBe(aligned ? independentTreeHash(expected) : undefined);
      const { out, bytes } = await jobOutput(vault, jobId);
      expectBytes(bytes, expected);
      expect(out.checksum).toBe(aligned ? independentTreeHash(expected) : undefined);
      // The first MiB of the output is tree-hash aligned within the archive.
      expect((await jobOutput(vault, jobId, `bytes=0-${MIB - 1}`)).out.checksum).toBe(independentTreeHash(expected.subarray(0, MIB)));
    }
    for (const bad of ['100-200', `0-${MIB}`, `0-${data.length}`, `${MIB}-0`]) {
      await expectAwsError(initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, RetrievalByteRange: bad }), 'InvalidParameterValueException');
    }
  });

  it('inventory retrieval: JSON as Glacier gives it (and CSV), taken when the job starts', async () => {
    const other = await createVault('inventory');
    const first = await uploadArchive(other, Buffer.from('one'), 'first archive');
    const second = await uploadArchive(other, randomBytes(2 * MIB), 'second, "quoted"');
    const jobId = await initiateJob(other, { Type: 'inventory-retrieval' });
    const csvJob = await initiateJob(other, { Type: 'inventory-retrieval', Format: 'CSV' });
    await glacier.send(new DeleteArchiveCommand({ ...account, vaultName: other, archiveId: first.archiveId }));
    clock.advance(JOB_DELAYS.Standard);
    const described = await describeJob(other, jobId);
    expect(described).toMatchObject({ Action: 'InventoryRetrieval', StatusCode: 'Succeeded', InventoryRetrievalParameters: { Format: 'JSON' } });
    const { out, bytes } = await jobOutput(other, jobId);
    expect(out.contentType).toBe('application/json');
    expect(described.InventorySizeInBytes).toBe(bytes.length);
    const inventory = JSON.parse(bytes.toString('utf8')) as { VaultARN: string; InventoryDate: string; ArchiveList: Record<string, unknown>[] };
    expect(inventory.VaultARN).toBe(`arn:aws:glacier:${REGION}:${ACCOUNT_ID}:vaults/${other}`);
    expect(Number.isNaN(Date.parse(inventory.InventoryDate))).toBe(false);
    expect(inventory.ArchiveList).toEqual([
      { ArchiveId: first.archiveId, ArchiveDescription: 'first archive', CreationDate: expect.any(String), Size: 3, SHA256TreeHash: first.checksum },
      { ArchiveId: second.archiveId, ArchiveDescription: 'second, "quoted"', CreationDate: expect.any(String), Size: 2 * MIB, SHA256TreeHash: second.checksum },
    ]);
    const csv = (await jobOutput(other, csvJob)).bytes.toString('utf8').trim().split('\n');
    expect(csv[0]).toBe('ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash');
    expect(csv[2]).toContain('"second, ""quoted"""');

    const after = await initiateJob(other, { Type: 'inventory-retrieval' });
    clock.advance(JOB_DELAYS.Standard);
    const later = JSON.parse((await jobOutput(other, after)).bytes.toString('utf8')) as { ArchiveList: { ArchiveId: string }[] };
    expect(later.ArchiveList.map((a) => a.ArchiveId)).toEqual([second.archiveId]);
  });

  it('a job picked by jobFailureRate ends Failed: completed, output refused, counted', async () => {
    t.emulator.setFaults({ jobFailureRate: 1 });
    let jobId: string;
    try {
      jobId = await initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Expedited' });
    } finally {
      t.emulator.setFaults({});
    }
    expect((await describeJob(vault, jobId)).StatusCode).toBe('InProgress');
    clock.advance(JOB_DELAYS.Expedited);
    const failed = await describeJob(vault, jobId);
    expect(failed).toMatchObject({ StatusCode: 'Failed', Completed: true });
    expect(failed.StatusMessage).toMatch(/failed/);
    await expectAwsError(jobOutput(vault, jobId), 'InvalidParameterValueException');
    expect(t.emulator.stats().faults.jobFailures).toBeGreaterThanOrEqual(1);
    const failedList = await glacier.send(new ListJobsCommand({ ...account, vaultName: vault, statuscode: 'Failed' }));
    expect(failedList.JobList?.map((j) => j.JobId)).toContain(jobId);
  });

  it('ListJobs filters by status and completion, in pages; jobs are gone 24 hours after they complete', async () => {
    const listVault = await createVault('listed-jobs');
    const { archiveId: id } = await uploadArchive(listVault, Buffer.from('listed'));
    const quick = await initiateJob(listVault, { Type: 'archive-retrieval', ArchiveId: id, Tier: 'Expedited' });
    const slow = await initiateJob(listVault, { Type: 'archive-retrieval', ArchiveId: id, Tier: 'Bulk' });
    clock.advance(JOB_DELAYS.Expedited);
    const ids = async (filter: { statuscode?: string; completed?: string; limit?: number; marker?: string }) => {
      const page = await glacier.send(new ListJobsCommand({ ...account, vaultName: listVault, ...filter }));
      return { ids: (page.JobList ?? []).map((j) => j.JobId), marker: page.Marker };
    };
    expect((await ids({})).ids).toEqual([quick, slow]);
    expect((await ids({ statuscode: 'InProgress' })).ids).toEqual([slow]);
    expect((await ids({ completed: 'true' })).ids).toEqual([quick]);
    const page = await ids({ limit: 1 });
    expect(page.ids).toEqual([quick]);
    expect((await ids({ limit: 1, marker: page.marker })).ids).toEqual([slow]);
    await expectAwsError(glacier.send(new ListJobsCommand({ ...account, vaultName: listVault, statuscode: 'Lost' })), 'InvalidParameterValueException');

    clock.advance(24 * HOUR);
    await expectAwsError(describeJob(listVault, quick), 'ResourceNotFoundException');
    await expectAwsError(jobOutput(listVault, quick), 'ResourceNotFoundException');
    expect((await ids({})).ids).toEqual([slow]);
  });

  it('refuses unknown archives and jobs, bad types, tiers and formats, and descriptions past 1024 printable ASCII characters', async () => {
    await expectAwsError(initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: 'no-such-archive' }), 'ResourceNotFoundException');
    await expectAwsError(describeJob(vault, 'no-such-job'), 'ResourceNotFoundException');
    await expectAwsError(initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Instant' }), 'InvalidParameterValueException');
    await expectAwsError(initiateJob(vault, { Type: 'select' }), 'InvalidParameterValueException');
    await expectAwsError(initiateJob(vault, { Type: 'inventory-retrieval', Format: 'XML' }), 'InvalidParameterValueException');
    await expectAwsError(initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Description: 'd'.repeat(1025) }), 'InvalidParameterValueException');
    await expectAwsError(initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Description: 'tab\there' }), 'InvalidParameterValueException');
    await initiateJob(vault, { Type: 'archive-retrieval', ArchiveId: archiveId, Description: 'd'.repeat(1024) });
  });
});

describe('restart', () => {
  it('keeps archives, unfinished uploads and jobs in progress across a restart', async () => {
    const dir = tempDir();
    const restartClock = new TestClock();
    let endpoint = await startTestEndpoint({ now: restartClock.now, jobDelayMs: JOB_DELAYS }, dir.path);
    let client = glacierFor(endpoint.emulator.url);
    try {
      await client.send(new CreateVaultCommand({ ...account, vaultName: 'kept' }));
      const data = randomBytes(MIB + 10);
      const { archiveId } = await client.send(new UploadArchiveCommand({ ...account, vaultName: 'kept', body: data }));
      const { jobId } = await client.send(new InitiateJobCommand({ ...account, vaultName: 'kept', jobParameters: { Type: 'archive-retrieval', ArchiveId: archiveId, Tier: 'Standard' } }));
      const { uploadId } = await client.send(new InitiateMultipartUploadCommand({ ...account, vaultName: 'kept', partSize: String(MIB) }));
      const part = randomBytes(MIB);
      await client.send(new UploadMultipartPartCommand({ ...account, vaultName: 'kept', uploadId, range: `bytes 0-${MIB - 1}/*`, body: part }));
      client.destroy();
      await endpoint.stop();

      endpoint = await startTestEndpoint({ now: restartClock.now, jobDelayMs: JOB_DELAYS }, dir.path);
      client = glacierFor(endpoint.emulator.url);
      expect((await client.send(new DescribeJobCommand({ ...account, vaultName: 'kept', jobId }))).StatusCode).toBe('InProgress');
      restartClock.advance(JOB_DELAYS.Standard);
      const out = await client.send(new GetJobOutputCommand({ ...account, vaultName: 'kept', jobId }));
      expectBytes(Buffer.from(await out.body!.transformToByteArray()), data);
      await client.send(new UploadMultipartPartCommand({ ...account, vaultName: 'kept', uploadId, range: `bytes ${MIB}-${MIB + 4}/*`, body: Buffer.from('tail!') }));
      const whole = Buffer.concat([part, Buffer.from('tail!')]);
      const done = await client.send(
        new CompleteMultipartUploadCommand({ ...account, vaultName: 'kept', uploadId, archiveSize: String(whole.length), checksum: independentTreeHash(whole) }),
      );
      expect(done.checksum).toBe(independentTreeHash(whole));
      expect((await client.send(new DescribeVaultCommand({ ...account, vaultName: 'kept' }))).NumberOfArchives).toBe(2);
    } finally {
      client.destroy();
      await endpoint.stop();
      dir.cleanup();
    }
  });
});

describe('signatures', () => {
  it('with --auth, takes uploads signed with the key and refuses a wrong secret with InvalidSignatureException', async () => {
    const endpoint = await startTestEndpoint({ auth: [CREDENTIALS] });
    const client = glacierFor(endpoint.emulator.url);
    const wrong = new GlacierClient({ endpoint: endpoint.emulator.url, region: REGION, credentials: { ...CREDENTIALS, secretAccessKey: 'wrong' }, maxAttempts: 1 });
    try {
      await client.send(new CreateVaultCommand({ ...account, vaultName: 'signed' }));
      const body = randomBytes(MIB + 1);
      expect((await client.send(new UploadArchiveCommand({ ...account, vaultName: 'signed', body }))).checksum).toBe(independentTreeHash(body));
      const refused = await rejection(wrong.send(new UploadArchiveCommand({ ...account, vaultName: 'signed', body })));
      expect([refused.name, refused.$metadata?.httpStatusCode]).toEqual(['InvalidSignatureException', 403]);
    } finally {
      client.destroy();
      wrong.destroy();
      await endpoint.stop();
    }
  });
});

const aws = findAwsCli();
const NO_CLI = 'the AWS CLI (`aws`) is not on PATH: the Glacier AWS CLI test DID NOT RUN';
if (aws === undefined) console.warn(`WARNING: ${NO_CLI}`);

describe('the AWS CLI', () => {
  it('creates a vault, uploads an archive, retrieves it through a job with `aws glacier`', async (ctx) => {
    if (aws === undefined) ctx.skip(NO_CLI);
    const work = tempDir('snapline-glacier-cli-');
    const endpoint = await startTestEndpoint({ jobDelayMs: { Expedited: 0 } });
    const json = <T = Record<string, unknown>>(args: string[]) => awsCliJson<T>(aws!, endpoint.emulator.url, work.path, ['glacier', ...args, '--account-id', '-']);
    try {
      const data = randomBytes(3 * MIB + 7);
      writeFileSync(join(work.path, 'archive.bin'), data);
      await json(['create-vault', '--vault-name', 'cli-vault']);
      const uploaded = await json<{ archiveId: string; checksum: string }>(['upload-archive', '--vault-name', 'cli-vault', '--body', 'archive.bin', '--archive-description', 'from the CLI']);
      expect(uploaded.checksum).toBe(independentTreeHash(data));
      const jobParameters = JSON.stringify({ Type: 'archive-retrieval', ArchiveId: uploaded.archiveId, Tier: 'Expedited' });
      const { jobId } = await json<{ jobId: string }>(['initiate-job', '--vault-name', 'cli-vault', '--job-parameters', jobParameters]);
      const [described, output] = await Promise.all([
        json<{ StatusCode: string; SHA256TreeHash: string }>(['describe-job', '--vault-name', 'cli-vault', '--job-id', jobId]),
        json<{ checksum: string; status: number; archiveDescription: string }>(['get-job-output', '--vault-name', 'cli-vault', '--job-id', jobId, 'out.bin']),
      ]);
      expect(described).toMatchObject({ StatusCode: 'Succeeded', SHA256TreeHash: independentTreeHash(data) });
      expect(output).toMatchObject({ status: 200, checksum: independentTreeHash(data), archiveDescription: 'from the CLI' });
      expectBytes(readFileSync(join(work.path, 'out.bin')), data);
    } finally {
      await endpoint.stop();
      work.cleanup();
    }
  });
});
