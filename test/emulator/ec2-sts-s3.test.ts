import {
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DescribeRegionsCommand,
  DescribeSnapshotsCommand,
  GetEbsEncryptionByDefaultCommand,
  waitUntilSnapshotCompleted,
} from '@aws-sdk/client-ec2';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ACCOUNT_ID } from '../../src/emulator/index.js';
import { blockOf, complete, expectAwsError, listAll, put, rejection, snapshotWith, start, startTestEndpoint, type TestEndpoint } from './helpers.js';

let t: TestEndpoint;
beforeAll(async () => {
  t = await startTestEndpoint();
});
afterAll(async () => {
  await t.stop();
});

describe('EC2 DescribeSnapshots', () => {
  it('describes a snapshot by id with state, progress, size, time, description, encryption, tags, volume and owner', async () => {
    const id = await start(t.ebs, { VolumeSize: 3, Description: 'db volume', Tags: [{ Key: 'volume', Value: 'db' }] });
    await put(t.ebs, id, 0, blockOf(1), { Progress: 40 });
    const pending = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
    const snapshot = pending.Snapshots?.[0];
    expect(snapshot).toMatchObject({
      SnapshotId: id,
      State: 'pending',
      Progress: '40%',
      VolumeSize: 3,
      VolumeId: 'vol-ffffffff',
      OwnerId: ACCOUNT_ID,
      Description: 'db volume',
      Encrypted: false,
      Tags: [{ Key: 'volume', Value: 'db' }],
    });
    expect(snapshot?.StartTime).toBeInstanceOf(Date);
    expect(await complete(t.ebs, id, new Map([[0, blockOf(1)]]))).toBe('completed');
    const done = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
    expect(done.Snapshots?.[0]).toMatchObject({ State: 'completed', Progress: '100%' });
  });

  it('filters by tag:KEY, tag-key and status, with wildcards', async () => {
    const a = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]), { Tags: [{ Key: 'team', Value: 'blue-1' }] });
    const b = await start(t.ebs, { Tags: [{ Key: 'team', Value: 'red' }, { Key: 'owner', Value: 'x' }] });
    const ids = async (filters: { Name: string; Values: string[] }[]) =>
      ((await t.ec2.send(new DescribeSnapshotsCommand({ Filters: filters }))).Snapshots ?? []).map((s) => s.SnapshotId);
    expect(await ids([{ Name: 'tag:team', Values: ['blue-*'] }])).toEqual([a]);
    expect(await ids([{ Name: 'tag:team', Values: ['red', 'blue-1'] }])).toEqual([a, b]);
    expect(await ids([{ Name: 'tag-key', Values: ['owner'] }])).toEqual([b]);
    expect(await ids([{ Name: 'tag:team', Values: ['*'] }, { Name: 'status', Values: ['pending'] }])).toEqual([b]);
    await expectAwsError(t.ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: 'colour', Values: ['x'] }] })), 'InvalidParameterValue');
  });

  it('answers InvalidSnapshot.NotFound and InvalidSnapshotID.Malformed', async () => {
    const missing = await rejection(t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['snap-0123456789abcdef0'] })));
    expect(missing.name).toBe('InvalidSnapshot.NotFound');
    expect(missing.$metadata?.httpStatusCode).toBe(400);
    expect((await rejection(t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ['bogus'] })))).name).toBe('InvalidSnapshotID.Malformed');
  });

  it('pages with MaxResults and NextToken', async () => {
    for (let i = 0; i < 6; i += 1) await start(t.ebs, { Tags: [{ Key: 'paged', Value: 'yes' }] });
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await t.ec2.send(new DescribeSnapshotsCommand({ MaxResults: 5, NextToken: token, Filters: [{ Name: 'tag:paged', Values: ['yes'] }] }));
      seen.push(...(page.Snapshots ?? []).map((s) => s.SnapshotId!));
      token = page.NextToken;
    } while (token);
    expect(new Set(seen).size).toBe(6);
  });
});

describe('EC2 CreateTags and DeleteSnapshot', () => {
  it('adds and overwrites tags', async () => {
    const id = await start(t.ebs, { Tags: [{ Key: 'a', Value: '1' }] });
    const out = await t.ec2.send(new CreateTagsCommand({ Resources: [id], Tags: [{ Key: 'a', Value: '2' }, { Key: 'b', Value: '3' }] }));
    expect(out.$metadata.httpStatusCode).toBe(200);
    const described = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
    expect(described.Snapshots?.[0]?.Tags).toEqual([
      { Key: 'a', Value: '2' },
      { Key: 'b', Value: '3' },
    ]);
    expect((await rejection(t.ec2.send(new CreateTagsCommand({ Resources: ['snap-0123456789abcdef0'], Tags: [{ Key: 'a', Value: '1' }] })))).name).toBe(
      'InvalidSnapshot.NotFound',
    );
  });

  it('deletes a snapshot: gone from EC2 and from the EBS direct APIs', async () => {
    const id = await snapshotWith(t.ebs, new Map([[0, blockOf(3)]]));
    await t.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    expect((await rejection(t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] })))).name).toBe('InvalidSnapshot.NotFound');
    expect((await rejection(t.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id })))).name).toBe('InvalidSnapshot.NotFound');
    await expectAwsError(listAll(t.ebs, id), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
  });

  it('honours DryRun', async () => {
    const id = await start(t.ebs);
    expect((await rejection(t.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id, DryRun: true })))).name).toBe('DryRunOperation');
    expect((await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots).toHaveLength(1);
  });
});

describe('EC2 waiter, account settings, regions', () => {
  it('waitUntilSnapshotCompleted sees a delayed completion, and fails on error', async () => {
    t.emulator.setFaults({ completionDelayMs: 300 });
    try {
      const id = await start(t.ebs);
      await put(t.ebs, id, 0, blockOf(9));
      expect(await complete(t.ebs, id, new Map([[0, blockOf(9)]]))).toBe('pending');
      const waited = await waitUntilSnapshotCompleted({ client: t.ec2, minDelay: 0.2, maxDelay: 0.2, maxWaitTime: 30 }, { SnapshotIds: [id] });
      expect(waited.state).toBe('SUCCESS');

      const broken = await start(t.ebs);
      await complete(t.ebs, broken, new Map([[0, blockOf(1)]]));
      await expect(waitUntilSnapshotCompleted({ client: t.ec2, minDelay: 0.2, maxDelay: 0.2, maxWaitTime: 30 }, { SnapshotIds: [broken] })).rejects.toThrow(/FAILURE/);
    } finally {
      t.emulator.setFaults({});
    }
  });

  it('GetEbsEncryptionByDefault and DescribeRegions', async () => {
    expect((await t.ec2.send(new GetEbsEncryptionByDefaultCommand({}))).EbsEncryptionByDefault).toBe(false);
    const regions = await t.ec2.send(new DescribeRegionsCommand({}));
    expect(regions.Regions?.map((r) => r.RegionName)).toContain('us-east-1');
    const one = await t.ec2.send(new DescribeRegionsCommand({ RegionNames: ['eu-west-1'] }));
    expect(one.Regions).toEqual([{ RegionName: 'eu-west-1', Endpoint: 'ec2.eu-west-1.amazonaws.com', OptInStatus: 'opt-in-not-required' }]);
  });

  it('answers an unknown action with InvalidAction', async () => {
    const res = await fetch(t.emulator.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'Action=RunInstances&Version=2016-11-15',
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('<Code>InvalidAction</Code>');
  });
});

describe('STS and S3', () => {
  it('GetCallerIdentity names the account that owns the snapshots', async () => {
    const me = await t.sts.send(new GetCallerIdentityCommand({}));
    expect(me.Account).toBe(ACCOUNT_ID);
    expect(me.Arn).toMatch(new RegExp(`^arn:aws:iam::${ACCOUNT_ID}:`));
    expect(me.UserId).toBeTruthy();
  });

  it('ListBuckets answers an empty list, and a bucket is NoSuchBucket', async () => {
    const buckets = await t.s3.send(new ListBucketsCommand({}));
    expect(buckets.$metadata.httpStatusCode).toBe(200);
    expect(buckets.Buckets ?? []).toEqual([]);
    expect(buckets.Owner?.DisplayName).toBe('snapline');
    const { HeadBucketCommand } = await import('@aws-sdk/client-s3');
    expect((await rejection(t.s3.send(new HeadBucketCommand({ Bucket: 'nothing-here' })))).$metadata?.httpStatusCode).toBe(404);
  });
});
