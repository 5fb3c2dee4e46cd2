import {
  CompleteSnapshotCommand,
  GetSnapshotBlockCommand,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
} from '@aws-sdk/client-ebs';
import {
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  DisableEbsEncryptionByDefaultCommand,
  EnableEbsEncryptionByDefaultCommand,
  GetEbsEncryptionByDefaultCommand,
  type EC2Client,
} from '@aws-sdk/client-ec2';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, RestoreObjectCommand } from '@aws-sdk/client-s3';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { ACCOUNT_ID, startEmulator } from '../../src/emulator/index.js';
import { ErrorCodes } from '../../src/errors.js';
import { rejection as snaplineRejection } from '../support/rejection.js';
import {
  blockOf,
  checksum,
  clientsFor,
  complete,
  expectAwsError,
  listAll,
  put,
  rejection,
  snapshotWith,
  start,
  startTestEndpoint,
  tempDir,
  TestClock,
  type TestEndpoint,
} from './helpers.js';

/**
 * The rules of AWS's reference pages that the endpoint enforces beyond the
 * wire format, one test per rule (docs/aws-rules.md names them): each fails
 * if the endpoint stops enforcing its rule. Time rules run on a scaled
 * clock: a TestClock drives the endpoint's now() and timeScale divides every
 * AWS duration, so at SCALE 600 one second of the clock is ten AWS minutes.
 */

const SCALE = 600;
/** Milliseconds of the endpoint's clock that `minutes` of AWS time take at SCALE. */
const awsMinutes = (minutes: number) => (minutes * 60_000) / SCALE;

const ONES = blockOf(0x01);
const TWOS = blockOf(0x02);
const KEY = `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555`;
const OTHER_KEY = `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/99999999-2222-3333-4444-555555555555`;

let t: TestEndpoint;
const clock = new TestClock();

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now, timeScale: SCALE });
});
afterAll(async () => {
  await t.stop();
});

const blocks = (entries: [number, Buffer][]) => new Map(entries);

async function stateOf(ec2: EC2Client, snapshotId: string): Promise<string | undefined> {
  const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
  return out.Snapshots?.[0]?.State;
}

async function encryptionOf(snapshotId: string): Promise<[boolean | undefined, string | undefined]> {
  const out = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }));
  return [out.Snapshots?.[0]?.Encrypted, out.Snapshots?.[0]?.KmsKeyId];
}

describe('StartSnapshot: encryption outcomes', () => {
  it('refuses ParentSnapshotId with Encrypted, true or false (ValidationException)', async () => {
    const encrypted = await snapshotWith(t.ebs, blocks([[0, ONES]]), { Encrypted: true });
    const plain = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    for (const parent of [encrypted, plain]) {
      await expectAwsError(start(t.ebs, { ParentSnapshotId: parent, Encrypted: true }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
      await expectAwsError(start(t.ebs, { ParentSnapshotId: parent, Encrypted: false }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    }
  });

  it('refuses ParentSnapshotId with KmsKeyArn, whatever the parent (ValidationException)', async () => {
    const encrypted = await snapshotWith(t.ebs, blocks([[0, ONES]]), { KmsKeyArn: KEY });
    const plain = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    await expectAwsError(start(t.ebs, { ParentSnapshotId: encrypted, KmsKeyArn: KEY }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { ParentSnapshotId: plain, KmsKeyArn: KEY }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
  });

  it("a child takes its parent's encryption and KMS key; a child of an unencrypted parent is unencrypted", async () => {
    const parent = await snapshotWith(t.ebs, blocks([[0, ONES]]), { Encrypted: true, KmsKeyArn: KEY });
    const child = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: parent }));
    expect(child.KmsKeyArn).toBe(KEY);
    expect(await encryptionOf(child.SnapshotId!)).toEqual([true, KEY]);
    const plain = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const plainChild = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: plain }));
    expect(plainChild.KmsKeyArn).toBeUndefined();
    expect((await encryptionOf(plainChild.SnapshotId!))[0]).toBe(false);
  });

  it('without a parent: KmsKeyArn picks the key, Encrypted alone the default key; Encrypted false with KmsKeyArn and a key alias are refused', async () => {
    const keyOnly = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, KmsKeyArn: OTHER_KEY }));
    expect(keyOnly.KmsKeyArn).toBe(OTHER_KEY);
    const both = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Encrypted: true, KmsKeyArn: KEY }));
    expect(both.KmsKeyArn).toBe(KEY);
    const byDefaultKey = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Encrypted: true }));
    expect(byDefaultKey.KmsKeyArn).toMatch(new RegExp(`^arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/`));
    const plain = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Encrypted: false }));
    expect(plain.KmsKeyArn).toBeUndefined();
    await expectAwsError(start(t.ebs, { Encrypted: false, KmsKeyArn: KEY }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { KmsKeyArn: `arn:aws:kms:us-east-1:${ACCOUNT_ID}:alias/aws/ebs` }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
  });

  it('with encryption by default: new snapshots are encrypted, Encrypted false and an unencrypted parent are refused, an encrypted parent still has children', async () => {
    const plainParent = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const encryptedParent = await snapshotWith(t.ebs, blocks([[0, ONES]]), { KmsKeyArn: KEY });
    expect((await t.ec2.send(new GetEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(false);
    expect((await t.ec2.send(new EnableEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(true);
    try {
      expect((await t.ec2.send(new GetEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(true);
      const fresh = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
      expect(fresh.KmsKeyArn).toMatch(/:key\//);
      await expectAwsError(start(t.ebs, { Encrypted: false }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
      await expectAwsError(start(t.ebs, { ParentSnapshotId: plainParent }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
      const child = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: encryptedParent }));
      expect(child.KmsKeyArn).toBe(KEY);
    } finally {
      expect((await t.ec2.send(new DisableEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(false);
    }
    await start(t.ebs, { ParentSnapshotId: plainParent });
  });
});

describe('StartSnapshot: Timeout, on a scaled clock', () => {
  it('without Timeout, a snapshot that gets no block is cancelled 60 minutes after StartSnapshot', async () => {
    const id = await start(t.ebs);
    clock.advance(awsMinutes(59));
    expect(await stateOf(t.ec2, id)).toBe('pending');
    clock.advance(awsMinutes(2));
    expect(await stateOf(t.ec2, id)).toBe('error');
    await expectAwsError(put(t.ebs, id, 0, ONES), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(complete(t.ebs, id, new Map()), 'ValidationException', 'INVALID_SNAPSHOT_ID');
  });

  it('counts from the last block written: a snapshot not completed Timeout minutes after its last block is cancelled', async () => {
    const id = await start(t.ebs, { Timeout: 10 });
    clock.advance(awsMinutes(9));
    await put(t.ebs, id, 0, ONES);
    clock.advance(awsMinutes(9));
    await put(t.ebs, id, 1, TWOS);
    clock.advance(awsMinutes(9));
    expect(await stateOf(t.ec2, id)).toBe('pending');
    clock.advance(awsMinutes(2));
    expect(await stateOf(t.ec2, id)).toBe('error');
  });

  it('a block write that is refused does not restart the wait', async () => {
    const id = await start(t.ebs, { Timeout: 10 });
    clock.advance(awsMinutes(9));
    await expectAwsError(
      t.ebs.send(new PutSnapshotBlockCommand({ SnapshotId: id, BlockIndex: 0, BlockData: ONES, DataLength: BLOCK_SIZE, Checksum: checksum(TWOS), ChecksumAlgorithm: 'SHA256' })),
      'ValidationException',
    );
    clock.advance(awsMinutes(2));
    expect(await stateOf(t.ec2, id)).toBe('error');
  });
});

describe('StartSnapshot: ClientToken and arguments', () => {
  it('the same token and arguments give the same snapshot, completed ones too; other arguments are ConflictException (409)', async () => {
    const id = await snapshotWith(t.ebs, blocks([[0, ONES]]), { ClientToken: 'rules-token-1', Timeout: 30 });
    const again = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ClientToken: 'rules-token-1', Timeout: 30 }));
    expect(again).toMatchObject({ SnapshotId: id, Status: 'completed' });
    const conflict = await expectAwsError(start(t.ebs, { ClientToken: 'rules-token-1', Timeout: 31 }), 'ConflictException');
    expect((conflict as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(409);
  });

  it('tokens are per Region: a token used in one Region starts a new snapshot in another, whose own use then decides replays and conflicts', async () => {
    const west = clientsFor(t.emulator.url, 4, 'eu-west-1');
    try {
      const east = await start(t.ebs, { ClientToken: 'rules-token-regions', Description: 'east' });
      const westId = await start(west.ebs, { ClientToken: 'rules-token-regions', Description: 'west' });
      expect(westId).not.toBe(east);
      expect(await start(west.ebs, { ClientToken: 'rules-token-regions', Description: 'west' })).toBe(westId);
      expect(await start(t.ebs, { ClientToken: 'rules-token-regions', Description: 'east' })).toBe(east);
      await expectAwsError(start(west.ebs, { ClientToken: 'rules-token-regions', Description: 'east' }), 'ConflictException');
    } finally {
      for (const client of Object.values(west)) client.destroy();
    }
  });

  it('Description is 1 to 255 characters; Tags at most 50, keys 1 to 127 characters, values up to 255', async () => {
    const tags = (count: number) => Array.from({ length: count }, (_, i) => ({ Key: `k${i}`, Value: 'v' }));
    await start(t.ebs, { Description: 'd'.repeat(255), Tags: [...tags(49), { Key: 'k'.repeat(127), Value: 'v'.repeat(255) }] });
    await expectAwsError(start(t.ebs, { Description: 'd'.repeat(256) }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { Tags: tags(51) }), 'ValidationException', 'INVALID_TAG');
    await expectAwsError(start(t.ebs, { Tags: [{ Key: 'k'.repeat(128), Value: 'v' }] }), 'ValidationException', 'INVALID_TAG');
    await expectAwsError(start(t.ebs, { Tags: [{ Key: '', Value: 'v' }] }), 'ValidationException', 'INVALID_TAG');
    await expectAwsError(start(t.ebs, { Tags: [{ Key: 'k', Value: 'v'.repeat(256) }] }), 'ValidationException', 'INVALID_TAG');
  });

  it('refuses a token with white space or of more than 255 characters, and an empty Description', async () => {
    await expectAwsError(start(t.ebs, { ClientToken: 'two words' }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { ClientToken: 'x'.repeat(256) }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { Description: '' }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
  });
});

describe('snapshot ids', () => {
  it('a snapshot id is at most 64 characters: a longer one is ValidationException in every operation, one of 64 is looked up', async () => {
    const long = `snap-${'a'.repeat(60)}`;
    const longest = `snap-${'a'.repeat(59)}`;
    const done = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const calls = (id: string) => [
      () => start(t.ebs, { ParentSnapshotId: id }),
      () => put(t.ebs, id, 0, ONES),
      () => complete(t.ebs, id, new Map()),
      () => t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id })),
      () => t.ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: id })),
      () => t.ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: id, SecondSnapshotId: done })),
      () => t.ebs.send(new GetSnapshotBlockCommand({ SnapshotId: id, BlockIndex: 0, BlockToken: 'AAAA' })),
    ];
    for (const call of calls(long)) await expectAwsError(call(), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    for (const call of calls(longest)) await expectAwsError(call(), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
  });
});

describe('StartSnapshot: quotas', () => {
  it('the pending snapshots and snapshots quotas count the snapshots of the Region asked, not those of other Regions', async () => {
    const small = await startTestEndpoint({ limits: { maxPendingSnapshots: 1, maxSnapshots: 1 } });
    const west = clientsFor(small.emulator.url, 4, 'eu-west-1');
    try {
      const east = await start(small.ebs);
      const westId = await start(west.ebs);
      await expectAwsError(start(small.ebs), 'ConcurrentLimitExceededException');
      expect(await complete(west.ebs, westId, new Map())).toBe('completed');
      await expectAwsError(start(west.ebs), 'ServiceQuotaExceededException', 'DEPENDENCY_SERVICE_QUOTA_EXCEEDED');
      expect(await complete(small.ebs, east, new Map())).toBe('completed');
      await expectAwsError(start(small.ebs), 'ServiceQuotaExceededException', 'DEPENDENCY_SERVICE_QUOTA_EXCEEDED');
    } finally {
      for (const client of Object.values(west)) client.destroy();
      await small.stop();
    }
  });
});

describe('CompleteSnapshot', () => {
  it('a second CompleteSnapshot is refused while the first is under way and once the snapshot is completed or in error; no block lands meanwhile', async () => {
    t.emulator.setFaults({ completionDelayMs: 1000 });
    let id: string;
    try {
      id = await start(t.ebs);
      await put(t.ebs, id, 0, ONES);
      expect(await complete(t.ebs, id, blocks([[0, ONES]]))).toBe('pending');
    } finally {
      t.emulator.setFaults({});
    }
    await expectAwsError(complete(t.ebs, id, blocks([[0, ONES]])), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(put(t.ebs, id, 1, TWOS), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    clock.advance(1000);
    expect(await stateOf(t.ec2, id)).toBe('completed');
    await expectAwsError(complete(t.ebs, id, blocks([[0, ONES]])), 'ValidationException', 'INVALID_SNAPSHOT_ID');

    const wrong = await start(t.ebs);
    await put(t.ebs, wrong, 0, ONES);
    expect(await complete(t.ebs, wrong, new Map())).toBe('error');
    await expectAwsError(complete(t.ebs, wrong, blocks([[0, ONES]])), 'ValidationException', 'INVALID_SNAPSHOT_ID');
  });

  it('ChangedBlocksCount is the number of distinct blocks written in the snapshot: one more or one less ends in error', async () => {
    for (const count of [1, 3]) {
      const id = await start(t.ebs);
      await put(t.ebs, id, 0, ONES);
      await put(t.ebs, id, 1, TWOS);
      await put(t.ebs, id, 1, TWOS);
      const out = await t.ebs.send(new CompleteSnapshotCommand({ SnapshotId: id, ChangedBlocksCount: count }));
      expect(out.Status).toBe('error');
    }
  });

  it('a completion whose answer is lost (completionLostResponses) still happens: EC2 shows it completed', async () => {
    const id = await start(t.ebs);
    await put(t.ebs, id, 0, ONES);
    const before = t.emulator.stats().faults.lostCompletions;
    t.emulator.setFaults({ completionLostResponses: 1 });
    try {
      await rejection(complete(t.ebs, id, blocks([[0, ONES]])));
    } finally {
      t.emulator.setFaults({});
    }
    expect(t.emulator.stats().faults.lostCompletions).toBe(before + 1);
    expect(await stateOf(t.ec2, id)).toBe('completed');
  });
});

describe('listings: token lifetimes on a scaled clock', () => {
  let big: string;
  beforeAll(async () => {
    const written = new Map<number, Buffer>();
    for (let i = 0; i < 150; i += 1) written.set(i, ONES);
    big = await start(t.ebs);
    await Promise.all([...written].map(([index, data]) => put(t.ebs, big, index, data)));
    expect(await complete(t.ebs, big, written)).toBe('completed');
  });

  it('a NextToken lives 60 minutes, then is refused with INVALID_PAGE_TOKEN', async () => {
    const page = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100 }));
    clock.advance(awsMinutes(59));
    await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100, NextToken: page.NextToken }));
    clock.advance(awsMinutes(2));
    await expectAwsError(t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, NextToken: page.NextToken })), 'ValidationException', 'INVALID_PAGE_TOKEN');
  });

  it('a block token lives 7 days (ExpiryTime), then is refused with INVALID_BLOCK_TOKEN', async () => {
    const listing = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100 }));
    expect(listing.ExpiryTime?.getTime()).toBe(clock.ms + awsMinutes(7 * 24 * 60));
    const token = listing.Blocks![0]!.BlockToken!;
    const { get } = await import('./helpers.js');
    clock.advance(awsMinutes(7 * 24 * 60 - 1));
    expect((await get(t.ebs, big, 0, token)).data.equals(ONES)).toBe(true);
    clock.advance(awsMinutes(2));
    await expectAwsError(get(t.ebs, big, 0, token), 'ValidationException', 'INVALID_BLOCK_TOKEN');
  });
});

describe('EC2 DescribeSnapshots is eventually consistent (ec2LagMs)', () => {
  const LAG = 5000;
  const lagClock = new TestClock();
  let lagged: TestEndpoint;
  beforeAll(async () => {
    lagged = await startTestEndpoint({ now: lagClock.now, ec2LagMs: LAG });
  });
  afterAll(async () => {
    await lagged.stop();
  });

  it('a new snapshot is missing for the lag after StartSnapshot (by id: InvalidSnapshot.NotFound), then listed pending', async () => {
    const id = await start(lagged.ebs);
    const byId = await rejection(lagged.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })));
    expect(byId.name).toBe('InvalidSnapshot.NotFound');
    const all = await lagged.ec2.send(new DescribeSnapshotsCommand({}));
    expect(all.Snapshots?.map((s) => s.SnapshotId)).not.toContain(id);
    lagClock.advance(LAG);
    expect(await stateOf(lagged.ec2, id)).toBe('pending');
  });

  it('CreateTags and DeleteSnapshot do not find a snapshot started less than the lag ago either (InvalidSnapshot.NotFound), then do', async () => {
    const id = await start(lagged.ebs);
    const tagging = new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'k', Value: 'v' }] });
    expect((await rejection(lagged.ec2.send(tagging))).name).toBe('InvalidSnapshot.NotFound');
    expect((await rejection(lagged.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })))).name).toBe('InvalidSnapshot.NotFound');
    lagClock.advance(LAG);
    await lagged.ec2.send(tagging);
    expect(await stateOf(lagged.ec2, id)).toBe('pending');
    await lagged.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    expect((await rejection(lagged.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })))).name).toBe('InvalidSnapshot.NotFound');
  });

  it('the state shown follows CompleteSnapshot by the lag', async () => {
    const id = await start(lagged.ebs);
    lagClock.advance(LAG);
    await put(lagged.ebs, id, 0, ONES);
    expect(await complete(lagged.ebs, id, blocks([[0, ONES]]))).toBe('completed');
    expect(await stateOf(lagged.ec2, id)).toBe('pending');
    // The EBS direct APIs see it completed at once.
    expect(await listAll(lagged.ebs, id)).toHaveLength(1);
    lagClock.advance(LAG - 1);
    expect(await stateOf(lagged.ec2, id)).toBe('pending');
    lagClock.advance(1);
    expect(await stateOf(lagged.ec2, id)).toBe('completed');
  });
});

describe('EC2 arguments', () => {
  it('DescribeSnapshots: MaxResults is 5 or more, one over 1000 answering 1000 a page ("only 1,000 results are returned"), and cannot go with SnapshotIds', async () => {
    const id = await start(t.ebs);
    expect((await rejection(t.ec2.send(new DescribeSnapshotsCommand({ MaxResults: 4 })))).name).toBe('InvalidParameterValue');
    const page = await t.ec2.send(new DescribeSnapshotsCommand({ MaxResults: 1001, Filters: [{ Name: 'snapshot-id', Values: [id] }] }));
    expect((page.Snapshots ?? []).map((s) => s.SnapshotId)).toEqual([id]);
    expect((await rejection(t.ec2.send(new DescribeSnapshotsCommand({ MaxResults: 5, SnapshotIds: [id] })))).name).toBe('InvalidParameterCombination');
  });

  it('CreateTags: at most 50 tags a snapshot, keys of up to 128 characters, no aws: keys', async () => {
    const id = await start(t.ebs);
    const tags = (count: number, prefix: string) => Array.from({ length: count }, (_, i) => ({ Key: `${prefix}${i}`, Value: 'v' }));
    await t.ec2.send(new CreateTagsCommand({ Resources: [id], Tags: tags(50, 'k') }));
    expect((await rejection(t.ec2.send(new CreateTagsCommand({ Resources: [id], Tags: tags(1, 'more') })))).name).toBe('TagLimitExceeded');
    const other = await start(t.ebs);
    expect((await rejection(t.ec2.send(new CreateTagsCommand({ Resources: [other], Tags: [{ Key: 'x'.repeat(129), Value: 'v' }] })))).name).toBe('InvalidParameterValue');
    expect((await rejection(t.ec2.send(new CreateTagsCommand({ Resources: [other], Tags: [{ Key: 'aws:owner', Value: 'v' }] })))).name).toBe('InvalidParameterValue');
  });
});

describe('startEmulator clock options, in real time', () => {
  it('refuses a time scale below 1, a negative EC2 lag and a skew that is not a number, naming the option', async () => {
    const dir = tempDir();
    try {
      for (const [options, name] of [
        [{ timeScale: 0.5 }, 'timeScale'],
        [{ ec2LagMs: -1 }, 'ec2LagMs'],
        [{ clockSkewS: Number.NaN }, 'clockSkewS'],
      ] as const) {
        const error = await snaplineRejection(startEmulator({ dataDir: dir.path, ...options }));
        expect(error.code).toBe(ErrorCodes.INVALID_ARGUMENT);
        expect(error.message).toContain(name);
      }
    } finally {
      dir.cleanup();
    }
  });

  it("clockSkewS moves the endpoint's clock: StartTime is that far from the wall clock", async () => {
    const skewed = await startTestEndpoint({ clockSkewS: -3 * 3600 });
    try {
      const before = Date.now();
      const out = await skewed.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
      const offset = out.StartTime!.getTime() - before;
      expect(offset).toBeLessThan(-3 * 3600_000 + 60_000);
      expect(offset).toBeGreaterThan(-3 * 3600_000 - 60_000);
    } finally {
      await skewed.stop();
    }
  });

  it('timeScale 36000: a 10-minute Timeout passes within a second, so does a NextToken; unset S3 restore delays shrink, set ones do not', async () => {
    const fast = await startTestEndpoint({ timeScale: 36_000, restoreDelayMs: { Bulk: 3_600_000 } });
    try {
      const idle = await start(fast.ebs, { Timeout: 10 });
      const written = new Map<number, Buffer>();
      for (let i = 0; i < 101; i += 1) written.set(i, ONES);
      // 4320 minutes: 7 s to write and complete it.
      const listed = await start(fast.ebs, { Timeout: 4320 });
      await Promise.all([...written].map(([index, data]) => put(fast.ebs, listed, index, data)));
      expect(await complete(fast.ebs, listed, written)).toBe('completed');
      const page = await fast.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: listed, MaxResults: 100 }));

      await fast.s3.send(new CreateBucketCommand({ Bucket: 'scaled' }));
      for (const key of ['standard', 'bulk']) await fast.s3.send(new PutObjectCommand({ Bucket: 'scaled', Key: key, Body: 'x', StorageClass: 'GLACIER' }));
      await fast.s3.send(new RestoreObjectCommand({ Bucket: 'scaled', Key: 'standard', RestoreRequest: { Days: 1, GlacierJobParameters: { Tier: 'Standard' } } }));
      await fast.s3.send(new RestoreObjectCommand({ Bucket: 'scaled', Key: 'bulk', RestoreRequest: { Days: 1, GlacierJobParameters: { Tier: 'Bulk' } } }));

      // 10 minutes and 60 minutes at 36000 times: 17 ms and 100 ms.
      await sleep(1000);
      expect(await stateOf(fast.ec2, idle)).toBe('error');
      await expectAwsError(fast.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: listed, NextToken: page.NextToken })), 'ValidationException', 'INVALID_PAGE_TOKEN');
      expect((await fast.s3.send(new HeadObjectCommand({ Bucket: 'scaled', Key: 'standard' }))).Restore).toMatch(/^ongoing-request="false"/);
      expect((await fast.s3.send(new HeadObjectCommand({ Bucket: 'scaled', Key: 'bulk' }))).Restore).toBe('ongoing-request="true"');
    } finally {
      await fast.stop();
    }
  });
});
