import {
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  EC2Client,
  EC2ServiceException,
  GetEbsEncryptionByDefaultCommand,
} from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { Ec2SnapshotCatalog } from './ec2.js';
import { rejection } from '../../test/support/rejection.js';

const client = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
const ec2 = mockClient(client);
const catalog = new Ec2SnapshotCatalog(client);
beforeEach(() => ec2.reset());
afterAll(() => client.destroy());

function ec2Error(name: string, message: string): EC2ServiceException {
  return new EC2ServiceException({ name, $fault: 'client', message, $metadata: { httpStatusCode: 400 } });
}

function snapshot(id: string, extra: Record<string, unknown> = {}) {
  return { SnapshotId: id, State: 'completed' as const, VolumeSize: 1, Encrypted: false, ...extra };
}


const describedIds = () => ec2.commandCalls(DescribeSnapshotsCommand).map((call) => call.args[0].input.SnapshotIds);

describe('Ec2SnapshotCatalog.describeSnapshots', () => {
  it('maps state, progress, size, time, description, encryption, tags and the state message', async () => {
    const startTime = new Date('2026-01-02T03:04:05Z');
    ec2.on(DescribeSnapshotsCommand).resolves({
      Snapshots: [
        snapshot('snap-01', {
          State: 'error',
          Progress: '37%',
          VolumeSize: 8,
          StartTime: startTime,
          Description: 'nightly',
          Encrypted: true,
          Tags: [
            { Key: 'volume', Value: 'db' },
            { Key: 'empty', Value: undefined },
          ],
          StateMessage: 'checksum mismatch',
        }),
      ],
    });
    expect(await catalog.describeSnapshots(['snap-01'])).toEqual([
      {
        snapshotId: 'snap-01',
        state: 'error',
        progress: '37%',
        volumeSizeGiB: 8,
        startTime,
        description: 'nightly',
        encrypted: true,
        tags: { volume: 'db', empty: '' },
        stateMessage: 'checksum mismatch',
      },
    ]);
  });

  it('makes no call for no ids and sends each id once', async () => {
    expect(await catalog.describeSnapshots([])).toEqual([]);
    expect(ec2.commandCalls(DescribeSnapshotsCommand)).toHaveLength(0);
    ec2.on(DescribeSnapshotsCommand).resolves({ Snapshots: [snapshot('snap-01')] });
    await catalog.describeSnapshots(['snap-01', 'snap-01']);
    expect(describedIds()).toEqual([['snap-01']]);
  });

  it('drops the ids EC2 names as unknown and asks again for the rest', async () => {
    ec2
      .on(DescribeSnapshotsCommand)
      .rejectsOnce(ec2Error('InvalidSnapshot.NotFound', "The snapshot 'snap-0bad' does not exist."))
      .resolves({ Snapshots: [snapshot('snap-01'), snapshot('snap-02')] });
    const found = await catalog.describeSnapshots(['snap-01', 'snap-0bad', 'snap-02']);
    expect(found.map((s) => s.snapshotId)).toEqual(['snap-01', 'snap-02']);
    expect(describedIds()).toEqual([
      ['snap-01', 'snap-0bad', 'snap-02'],
      ['snap-01', 'snap-02'],
    ]);
  });

  it('answers nothing when every id is unknown', async () => {
    ec2.on(DescribeSnapshotsCommand).rejects(ec2Error('InvalidSnapshot.NotFound', "The snapshots 'snap-0a', 'snap-0b' do not exist."));
    expect(await catalog.describeSnapshots(['snap-0a', 'snap-0b'])).toEqual([]);
    expect(describedIds()).toEqual([['snap-0a', 'snap-0b']]);
  });

  it('describes one by one when the message names none of the ids (a malformed one)', async () => {
    ec2
      .on(DescribeSnapshotsCommand)
      .rejects(ec2Error('InvalidSnapshotID.Malformed', 'Invalid id: "garbage"'))
      .on(DescribeSnapshotsCommand, { SnapshotIds: ['snap-01'] })
      .resolves({ Snapshots: [snapshot('snap-01')] });
    const found = await catalog.describeSnapshots(['snap-01', 'garbage']);
    expect(found.map((s) => s.snapshotId)).toEqual(['snap-01']);
    expect(describedIds()).toEqual([['snap-01', 'garbage'], ['snap-01'], ['garbage']]);
  });

  it('asks in batches of 200 ids', async () => {
    ec2.on(DescribeSnapshotsCommand).resolves({ Snapshots: [] });
    await catalog.describeSnapshots(Array.from({ length: 450 }, (_, i) => `snap-${i.toString(16).padStart(8, '0')}`));
    expect(describedIds().map((ids) => ids?.length)).toEqual([200, 200, 50]);
  });

  it('other errors fail the call, named by action', async () => {
    ec2.on(DescribeSnapshotsCommand).rejects(ec2Error('UnauthorizedOperation', 'You are not authorized to perform this operation.'));
    const error = await rejection(catalog.describeSnapshots(['snap-01']));
    expect(error).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: false });
    expect(error.message).toContain('ec2:DescribeSnapshots');
  });

  it('throttling (RequestLimitExceeded) is THROTTLED', async () => {
    ec2.on(DescribeSnapshotsCommand).rejects(ec2Error('RequestLimitExceeded', 'Request limit exceeded.'));
    expect(await rejection(catalog.describeSnapshots(['snap-01']))).toMatchObject({ code: ErrorCodes.THROTTLED, retryable: true });
  });
});

describe('Ec2SnapshotCatalog bookkeeping', () => {
  it('deleteSnapshot is idempotent: NotFound counts as deleted', async () => {
    ec2.on(DeleteSnapshotCommand).rejects(ec2Error('InvalidSnapshot.NotFound', "The snapshot 'snap-01' does not exist."));
    await catalog.deleteSnapshot('snap-01');
    expect(ec2.commandCalls(DeleteSnapshotCommand)[0]!.args[0].input).toEqual({ SnapshotId: 'snap-01' });
  });

  it('deleteSnapshot of a snapshot in use is CONFLICT', async () => {
    ec2.on(DeleteSnapshotCommand).rejects(ec2Error('InvalidSnapshot.InUse', 'The snapshot snap-01 is currently in use by ami-1'));
    expect(await rejection(catalog.deleteSnapshot('snap-01'))).toMatchObject({ code: ErrorCodes.CONFLICT });
  });

  it('createTags sends the tags as a list; no tags, no call', async () => {
    ec2.on(CreateTagsCommand).resolves({});
    await catalog.createTags('snap-01', { volume: 'db', run: '3' });
    await catalog.createTags('snap-01', {});
    expect(ec2.commandCalls(CreateTagsCommand).map((c) => c.args[0].input)).toEqual([
      {
        Resources: ['snap-01'],
        Tags: [
          { Key: 'volume', Value: 'db' },
          { Key: 'run', Value: '3' },
        ],
      },
    ]);
  });

  it('createTags on an unknown snapshot is NOT_FOUND', async () => {
    ec2.on(CreateTagsCommand).rejects(ec2Error('InvalidSnapshot.NotFound', "The snapshot 'snap-01' does not exist."));
    expect(await rejection(catalog.createTags('snap-01', { a: 'b' }))).toMatchObject({ code: ErrorCodes.NOT_FOUND });
  });

  it('encryptionByDefault reads GetEbsEncryptionByDefault', async () => {
    ec2.on(GetEbsEncryptionByDefaultCommand).resolvesOnce({ EbsEncryptionByDefault: true }).resolvesOnce({});
    expect(await catalog.encryptionByDefault()).toBe(true);
    expect(await catalog.encryptionByDefault()).toBe(false);
  });
});

describe('Ec2SnapshotCatalog with a client made on first use', () => {
  it('makes no client until a request is made', async () => {
    let made = 0;
    const lazy = new Ec2SnapshotCatalog(() => {
      made += 1;
      return client;
    });
    expect(made).toBe(0);
    ec2.on(GetEbsEncryptionByDefaultCommand).resolves({ EbsEncryptionByDefault: true });
    expect(await lazy.encryptionByDefault()).toBe(true);
    expect(made).toBeGreaterThan(0);
  });
});
