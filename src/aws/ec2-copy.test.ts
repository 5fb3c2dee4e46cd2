import { CopySnapshotCommand, EC2Client, EC2ServiceException } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { Ec2SnapshotCopier } from './ec2-copy.js';
import { rejection } from '../../test/support/rejection.js';

const client = new EC2Client({ region: 'eu-west-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
const ec2 = mockClient(client);
const copier = new Ec2SnapshotCopier(() => client);
beforeEach(() => ec2.reset());
afterAll(() => client.destroy());

describe('Ec2SnapshotCopier.copySnapshot', () => {
  it('sends SourceRegion, SourceSnapshotId, Description and the tags as one TagSpecification for snapshot; no Encrypted unless asked', async () => {
    ec2.on(CopySnapshotCommand).resolves({ SnapshotId: 'snap-0c' });
    const id = await copier.copySnapshot({ sourceRegion: 'us-east-1', sourceSnapshotId: 'snap-0a', description: 'd', tags: { 'snapline:volume': 'db', team: 'x' } });
    expect(id).toBe('snap-0c');
    expect(ec2.commandCalls(CopySnapshotCommand)[0]!.args[0].input).toEqual({
      SourceRegion: 'us-east-1',
      SourceSnapshotId: 'snap-0a',
      Description: 'd',
      TagSpecifications: [{ ResourceType: 'snapshot', Tags: [{ Key: 'snapline:volume', Value: 'db' }, { Key: 'team', Value: 'x' }] }],
    });
  });

  it('sends Encrypted true with KmsKeyId, and no TagSpecifications without tags', async () => {
    ec2.on(CopySnapshotCommand).resolves({ SnapshotId: 'snap-0c' });
    await copier.copySnapshot({ sourceRegion: 'us-east-1', sourceSnapshotId: 'snap-0a', encrypted: true, kmsKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/k' });
    expect(ec2.commandCalls(CopySnapshotCommand)[0]!.args[0].input).toEqual({
      SourceRegion: 'us-east-1',
      SourceSnapshotId: 'snap-0a',
      Encrypted: true,
      KmsKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/k',
    });
  });

  it('maps ResourceLimitExceeded to QUOTA_EXCEEDED with a hint, and an answer without SnapshotId to REMOTE_REJECTED', async () => {
    ec2.on(CopySnapshotCommand).rejects(
      new EC2ServiceException({ name: 'ResourceLimitExceeded', $fault: 'client', message: 'Too many snapshot copies in progress. The limit is 20 for this destination region.', $metadata: { httpStatusCode: 400 } }),
    );
    const limited = await rejection(copier.copySnapshot({ sourceRegion: 'us-east-1', sourceSnapshotId: 'snap-0a' }));
    expect(limited).toMatchObject({ code: ErrorCodes.QUOTA_EXCEEDED });
    expect(limited.hint).toContain('copies are in progress');
    ec2.reset();
    ec2.on(CopySnapshotCommand).resolves({});
    expect(await rejection(copier.copySnapshot({ sourceRegion: 'us-east-1', sourceSnapshotId: 'snap-0a' }))).toMatchObject({ code: ErrorCodes.REMOTE_REJECTED });
  });
});
