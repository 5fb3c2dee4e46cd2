import { EBSClient } from '@aws-sdk/client-ebs';
import { CopySnapshotCommand, CreateTagsCommand, DeleteSnapshotCommand, DescribeSnapshotsCommand, EC2Client, EnableEbsEncryptionByDefaultCommand, type CopySnapshotCommandInput } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT_ID } from '../../src/emulator/index.js';
import { DEFAULT_COPY_MINUTES } from '../../src/emulator/ec2/copy-snapshot.js';
import {
  blockOf,
  changedAll,
  clientsFor,
  complete,
  distinctBlock,
  expectAwsError,
  expectBytes,
  listAll,
  put,
  readBack,
  snapshotWith,
  start,
  startTestEndpoint,
  TestClock,
  type TestEndpoint,
} from './helpers.js';

/**
 * EC2 CopySnapshot across Regions of one endpoint: snapshots belong to the
 * Region their requests are signed for; a copy is made in the Region the
 * CopySnapshot request is signed for, stays pending for its duration on the
 * scaled clock (the TestClock moves it), and is then readable through the
 * EBS direct APIs of that Region only.
 */
const SCALE = 1000;
const COPY_MS = (DEFAULT_COPY_MINUTES * 60_000) / SCALE;
const clock = new TestClock();
let t: TestEndpoint;
let west: { ebs: EBSClient; ec2: EC2Client };
let third: { ebs: EBSClient; ec2: EC2Client };

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now, timeScale: SCALE, limits: { maxConcurrentCopies: 3 } });
  west = clientsFor(t.emulator.url, 8, 'eu-west-1');
  third = clientsFor(t.emulator.url, 8, 'ap-south-1');
});
afterAll(async () => {
  for (const c of [west, third]) {
    c.ebs.destroy();
    c.ec2.destroy();
  }
  await t.stop();
});

const copy = (ec2: EC2Client, input: Partial<CopySnapshotCommandInput> & { SourceSnapshotId: string }) =>
  ec2.send(new CopySnapshotCommand({ SourceRegion: 'us-east-1', ...input }));

async function describeOne(ec2: EC2Client, id: string) {
  return (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots![0]!;
}

/** Moves the clock past a copy's duration. */
function copyTimePasses(): void {
  clock.advance(COPY_MS + 1);
}

describe('snapshots belong to a Region', () => {
  it('a snapshot of us-east-1 is not seen, read, tagged or deleted through eu-west-1', async () => {
    const id = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]));
    await expectAwsError(west.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })), 'InvalidSnapshot.NotFound');
    expect((await west.ec2.send(new DescribeSnapshotsCommand({}))).Snapshots?.map((s) => s.SnapshotId)).not.toContain(id);
    await expectAwsError(listAll(west.ebs, id), 'ResourceNotFoundException');
    await expectAwsError(west.ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'a', Value: 'b' }] })), 'InvalidSnapshot.NotFound');
    await expectAwsError(west.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })), 'InvalidSnapshot.NotFound');
    await expectAwsError(start(west.ebs, { ParentSnapshotId: id }), 'ResourceNotFoundException');
    expectBytes(await readBack(t.ebs, id, 0), blockOf(1));
  });

  it('a pending snapshot of one Region takes no block or completion through another', async () => {
    const id = await start(t.ebs);
    await expectAwsError(put(west.ebs, id, 0, blockOf(1)), 'ResourceNotFoundException');
    await expectAwsError(complete(west.ebs, id, new Map()), 'ResourceNotFoundException');
  });
});

describe('EC2 CopySnapshot', () => {
  it('copies into the Region the request is made in: pending, then completed after its duration, with the same bytes', async () => {
    const blocks = new Map([
      [0, distinctBlock(1)],
      [5, distinctBlock(2)],
    ]);
    const source = await snapshotWith(t.ebs, blocks, { VolumeSize: 2, Description: 'source', Tags: [{ Key: 'volume', Value: 'db' }] });
    const out = await copy(west.ec2, { SourceSnapshotId: source, Description: 'dr copy', TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'role', Value: 'dr' }] }] });
    const copyId = out.SnapshotId!;
    expect(copyId).toMatch(/^snap-/);
    expect(copyId).not.toBe(source);
    expect(out.Tags).toEqual([{ Key: 'role', Value: 'dr' }]);

    clock.advance(COPY_MS / 2);
    const pending = await describeOne(west.ec2, copyId);
    expect(pending).toMatchObject({ State: 'pending', VolumeSize: 2, Description: 'dr copy', Encrypted: false, OwnerId: ACCOUNT_ID, Tags: [{ Key: 'role', Value: 'dr' }] });
    expect(pending.Progress).toBe('50%');
    await expectAwsError(listAll(west.ebs, copyId), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copyId] })), 'InvalidSnapshot.NotFound');

    copyTimePasses();
    expect(await describeOne(west.ec2, copyId)).toMatchObject({ State: 'completed', Progress: '100%' });
    expect((await listAll(west.ebs, copyId)).map((b) => b.BlockIndex)).toEqual([0, 5]);
    for (const [index, data] of blocks) expectBytes(await readBack(west.ebs, copyId, index), data);
    // The source is untouched, and the copy has no tag of the source's.
    expect((await describeOne(t.ec2, source)).Tags).toEqual([{ Key: 'volume', Value: 'db' }]);
  });

  it('takes CompletionDurationMinutes as its duration, in steps of 15 from 15 to 2880', async () => {
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(3)]]));
    const id = (await copy(west.ec2, { SourceSnapshotId: source, CompletionDurationMinutes: 60 })).SnapshotId!;
    clock.advance(COPY_MS * 3);
    expect((await describeOne(west.ec2, id)).State).toBe('pending');
    clock.advance(COPY_MS + 1);
    expect((await describeOne(west.ec2, id)).State).toBe('completed');
    for (const bad of [0, 10, 2895]) await expectAwsError(copy(west.ec2, { SourceSnapshotId: source, CompletionDurationMinutes: bad }), 'InvalidParameterValue');
  });

  it('needs SourceRegion and SourceSnapshotId; an unknown, malformed or not completed source is refused', async () => {
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(4)]]));
    await expectAwsError(west.ec2.send(new CopySnapshotCommand({ SourceRegion: '', SourceSnapshotId: source })), 'MissingParameter');
    await expectAwsError(west.ec2.send(new CopySnapshotCommand({ SourceRegion: 'us-east-1', SourceSnapshotId: '' })), 'MissingParameter');
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: 'snap-0123456789abcdef0' }), 'InvalidSnapshot.NotFound');
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: 'bogus' }), 'InvalidSnapshotID.Malformed');
    // The source is looked for in SourceRegion, not in the Region the request is made in.
    await expectAwsError(copy(t.ec2, { SourceRegion: 'eu-west-1', SourceSnapshotId: source }), 'InvalidSnapshot.NotFound');
    await expectAwsError(copy(west.ec2, { SourceRegion: 'mars-north-1', SourceSnapshotId: source }), 'InvalidParameterValue');
    const pending = await start(t.ebs);
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: pending }), 'IncorrectState');
  });

  it('refuses TagSpecifications for another resource type, and tag keys reserved for AWS', async () => {
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(5)]]));
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: source, TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'a', Value: 'b' }] }] }), 'InvalidParameterValue');
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: source, TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'aws:x', Value: 'b' }] }] }), 'InvalidParameterValue');
  });

  it('encryption: an encrypted source gives an encrypted copy; Encrypted encrypts an unencrypted one; Encrypted cannot be false; KmsKeyId needs Encrypted', async () => {
    const plain = await snapshotWith(t.ebs, new Map([[0, blockOf(6)]]));
    const key = `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/11111111-2222-4333-8444-555555555555`;
    const encrypted = await snapshotWith(t.ebs, new Map([[0, blockOf(7)]]), { Encrypted: true, KmsKeyArn: key });

    const kept = (await copy(west.ec2, { SourceSnapshotId: encrypted })).SnapshotId!;
    expect(await describeOne(west.ec2, kept)).toMatchObject({ Encrypted: true, KmsKeyId: `arn:aws:kms:eu-west-1:${ACCOUNT_ID}:key/5e1f0ebc-0000-4000-8000-000000000000` });
    const stillPlain = (await copy(west.ec2, { SourceSnapshotId: plain })).SnapshotId!;
    expect((await describeOne(west.ec2, stillPlain)).Encrypted).toBe(false);
    const westKey = `arn:aws:kms:eu-west-1:${ACCOUNT_ID}:key/99999999-2222-4333-8444-555555555555`;
    const nowEncrypted = (await copy(west.ec2, { SourceSnapshotId: plain, Encrypted: true, KmsKeyId: westKey })).SnapshotId!;
    expect(await describeOne(west.ec2, nowEncrypted)).toMatchObject({ Encrypted: true, KmsKeyId: westKey });
    copyTimePasses();
    expectBytes(await readBack(west.ebs, nowEncrypted, 0), blockOf(6));

    await expectAwsError(copy(west.ec2, { SourceSnapshotId: encrypted, Encrypted: false }), 'InvalidParameterValue');
    await expectAwsError(copy(west.ec2, { SourceSnapshotId: plain, KmsKeyId: westKey }), 'InvalidParameterDependency');
  });

  it('a KMS key of another Region or account is accepted and the copy ends in error, as AWS checks the key later', async () => {
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(8)]]));
    const wrongRegion = `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/11111111-2222-4333-8444-555555555555`;
    const id = (await copy(west.ec2, { SourceSnapshotId: source, Encrypted: true, KmsKeyId: wrongRegion })).SnapshotId!;
    expect((await describeOne(west.ec2, id)).State).toBe('pending');
    copyTimePasses();
    const failed = await describeOne(west.ec2, id);
    expect(failed.State).toBe('error');
    expect(failed.StateMessage).toContain('KMS key');
  });

  it('with encryption by default on in the destination, a copy of an unencrypted snapshot is encrypted with the default key', async () => {
    await third.ec2.send(new EnableEbsEncryptionByDefaultCommand({}));
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(9)]]));
    const id = (await copy(third.ec2, { SourceSnapshotId: source })).SnapshotId!;
    expect(await describeOne(third.ec2, id)).toMatchObject({ Encrypted: true, KmsKeyId: `arn:aws:kms:ap-south-1:${ACCOUNT_ID}:key/5e1f0ebc-0000-4000-8000-000000000000` });
    copyTimePasses();
  });

  it('at most maxConcurrentCopies copies in progress per destination Region: ResourceLimitExceeded, another Region is not counted', async () => {
    copyTimePasses();
    const source = await snapshotWith(t.ebs, new Map([[0, blockOf(10)]]));
    for (let i = 0; i < 3; i += 1) await copy(west.ec2, { SourceSnapshotId: source });
    const refused = await expectAwsError(copy(west.ec2, { SourceSnapshotId: source }), 'ResourceLimitExceeded');
    expect(refused.message).toContain('The limit is 3 for this destination region');
    await copy(third.ec2, { SourceSnapshotId: source });
    copyTimePasses();
    await copy(west.ec2, { SourceSnapshotId: source });
    copyTimePasses();
  });

  it('a copy of a later snapshot of a lineage whose earlier copy is still in the destination is incremental: its own blocks are the changed ones', async () => {
    const first = await snapshotWith(t.ebs, new Map([[0, distinctBlock(20)], [1, distinctBlock(21)], [2, distinctBlock(22)]]));
    const second = await snapshotWith(t.ebs, new Map([[1, distinctBlock(31)]]), { ParentSnapshotId: first });
    const firstCopy = (await copy(west.ec2, { SourceSnapshotId: first })).SnapshotId!;
    copyTimePasses();
    const secondCopy = (await copy(west.ec2, { SourceSnapshotId: second })).SnapshotId!;
    copyTimePasses();
    // Copies of one lineage are one lineage in the destination: ListChangedBlocks between them lists the block that changed.
    expect((await changedAll(west.ebs, firstCopy, secondCopy)).map((b) => b.BlockIndex)).toEqual([1]);
    expectBytes(await readBack(west.ebs, secondCopy, 1), distinctBlock(31));
    expectBytes(await readBack(west.ebs, secondCopy, 2), distinctBlock(22));

    // Once the earlier copy is deleted, the next copy is a full one: unrelated to the copies before it.
    await west.ec2.send(new DeleteSnapshotCommand({ SnapshotId: secondCopy }));
    await west.ec2.send(new DeleteSnapshotCommand({ SnapshotId: firstCopy }));
    const full = (await copy(west.ec2, { SourceSnapshotId: second })).SnapshotId!;
    const other = (await copy(west.ec2, { SourceSnapshotId: first })).SnapshotId!;
    copyTimePasses();
    await expectAwsError(changedAll(west.ebs, other, full), 'ValidationException', 'UNRELATED_SNAPSHOTS');
  });

  it('a copy under another key than the earlier copy is a full copy', async () => {
    const first = await snapshotWith(t.ebs, new Map([[0, distinctBlock(40)]]));
    const second = await snapshotWith(t.ebs, new Map([[0, distinctBlock(41)]]), { ParentSnapshotId: first });
    const plainCopy = (await copy(west.ec2, { SourceSnapshotId: first })).SnapshotId!;
    copyTimePasses();
    const encryptedCopy = (await copy(west.ec2, { SourceSnapshotId: second, Encrypted: true })).SnapshotId!;
    copyTimePasses();
    await expectAwsError(changedAll(west.ebs, plainCopy, encryptedCopy), 'ValidationException', 'UNRELATED_SNAPSHOTS');
  });

  it('a copy in the destination can be the parent of a new snapshot there, as any snapshot of that Region', async () => {
    const source = await snapshotWith(t.ebs, new Map([[0, distinctBlock(50)]]));
    const id = (await copy(west.ec2, { SourceSnapshotId: source })).SnapshotId!;
    copyTimePasses();
    const child = await snapshotWith(west.ebs, new Map([[1, distinctBlock(51)]]), { ParentSnapshotId: id });
    expectBytes(await readBack(west.ebs, child, 0), distinctBlock(50));
  });
});
