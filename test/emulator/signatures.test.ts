import { EBSClient, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { CreateVaultCommand, GlacierClient } from '@aws-sdk/client-glacier';
import { CreateBucketCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { AssumeRoleCommand, GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { afterEach, describe, expect, it } from 'vitest';
import { CREDENTIALS, REGION, rejection, startTestEndpoint, type TestEndpoint } from './helpers.js';

const MINUTE = 60_000;

/**
 * Signing time against the endpoint's clock (its `now`), with --auth: the
 * SigV4 rule that a request must reach the service within five minutes of its
 * x-amz-date (fifteen for S3, STS and EC2), refused with each protocol's own
 * error, and the Date header from the same clock, from which the SDKs correct
 * their offset.
 */

let endpoint: TestEndpoint | undefined;
const clients: Array<{ destroy(): void }> = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.destroy();
  await endpoint?.stop();
  endpoint = undefined;
});

/** An endpoint with --auth whose clock runs `aheadMs` ahead of this host's. */
async function endpointAhead(aheadMs: number): Promise<TestEndpoint> {
  endpoint = await startTestEndpoint({ auth: [CREDENTIALS], now: () => Date.now() + aheadMs });
  return endpoint;
}

/** SDK clients of every archive-tier service, one attempt each, with `credentials` and the host's clock (no offset yet). */
function clientsFor(url: string, credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } = CREDENTIALS) {
  const config = { endpoint: url, region: REGION, credentials, maxAttempts: 1 };
  const made = {
    ebs: new EBSClient(config),
    ec2: new EC2Client(config),
    sts: new STSClient(config),
    s3: new S3Client({ ...config, forcePathStyle: true }),
    glacier: new GlacierClient(config),
  };
  clients.push(...Object.values(made));
  return made;
}

describe('a request signed further from the endpoint clock than the service allows', () => {
  it('20 minutes behind: each service refuses it with its own error, and the answer carries the endpoint time', async () => {
    const { emulator } = await endpointAhead(20 * MINUTE);
    const c = clientsFor(emulator.url);

    const ebs = await rejection(c.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })));
    expect([ebs.name, ebs.$metadata?.httpStatusCode]).toEqual(['InvalidSignatureException', 403]);
    expect(ebs.message).toMatch(/^Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)$/);

    const glacier = await rejection(c.glacier.send(new CreateVaultCommand({ accountId: '-', vaultName: 'v' })));
    expect([glacier.name, glacier.$metadata?.httpStatusCode]).toEqual(['InvalidSignatureException', 403]);
    expect(glacier.message).toMatch(/^Signature expired: .* - 5 min\.\)$/);

    const sts = await rejection(c.sts.send(new GetCallerIdentityCommand({})));
    expect([sts.name, sts.$metadata?.httpStatusCode]).toEqual(['SignatureDoesNotMatch', 403]);
    expect(sts.message).toMatch(/^Signature expired: .* - 15 min\.\)$/);

    const ec2 = await rejection(c.ec2.send(new DescribeSnapshotsCommand({})));
    expect([ec2.name, ec2.$metadata?.httpStatusCode]).toEqual(['RequestExpired', 400]);

    const s3 = await rejection(c.s3.send(new CreateBucketCommand({ Bucket: 'skewed' })));
    expect([s3.name, s3.$metadata?.httpStatusCode]).toEqual(['RequestTimeTooSkewed', 403]);
    expect((s3 as unknown as { MaxAllowedSkewMilliseconds?: string }).MaxAllowedSkewMilliseconds).toBe('900000');

    // Each refusal's Date header moved the client's clock offset to the endpoint's: the next call goes through.
    for (const client of [c.ebs, c.glacier, c.sts, c.ec2, c.s3]) {
      const offset = (client.config as { systemClockOffset?: number }).systemClockOffset ?? 0;
      expect(Math.abs(offset - 20 * MINUTE)).toBeLessThan(MINUTE);
    }
    expect((await c.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }))).Status).toBe('pending');
    await c.s3.send(new CreateBucketCommand({ Bucket: 'skewed' }));
    expect((await c.sts.send(new GetCallerIdentityCommand({}))).Account).toBeTruthy();
  });

  it('20 minutes ahead: "Signature not yet current"', async () => {
    const { emulator } = await endpointAhead(-20 * MINUTE);
    const c = clientsFor(emulator.url);
    const ebs = await rejection(c.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })));
    expect([ebs.name, ebs.$metadata?.httpStatusCode]).toEqual(['InvalidSignatureException', 403]);
    expect(ebs.message).toMatch(/^Signature not yet current: .* is still later than .* \+ 5 min\.\)$/);
    const s3 = await rejection(c.s3.send(new CreateBucketCommand({ Bucket: 'skewed' })));
    expect(s3.name).toBe('RequestTimeTooSkewed');
  });

  it('the window is five minutes for EBS and Glacier, fifteen for S3, STS and EC2', async () => {
    const { emulator } = await endpointAhead(7 * MINUTE);
    const c = clientsFor(emulator.url);
    expect((await rejection(c.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })))).name).toBe('InvalidSignatureException');
    expect((await rejection(c.glacier.send(new CreateVaultCommand({ accountId: '-', vaultName: 'v' })))).name).toBe('InvalidSignatureException');
    await c.s3.send(new CreateBucketCommand({ Bucket: 'seven-minutes' }));
    expect((await c.sts.send(new GetCallerIdentityCommand({}))).Account).toBeTruthy();
    await c.ec2.send(new DescribeSnapshotsCommand({}));
  });

  it('within the window (four minutes) every service takes it', async () => {
    const { emulator } = await endpointAhead(4 * MINUTE);
    const c = clientsFor(emulator.url);
    expect((await c.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }))).Status).toBe('pending');
    await c.glacier.send(new CreateVaultCommand({ accountId: '-', vaultName: 'v' }));
  });

  it('without --auth nothing is checked, yet the Date header still tells the endpoint time', async () => {
    endpoint = await startTestEndpoint({ now: () => Date.now() + 20 * MINUTE });
    const response = await fetch(`${endpoint.emulator.url}/`, { headers: { authorization: 'none' } });
    await response.arrayBuffer();
    expect(Math.abs(Date.parse(response.headers.get('date')!) - (Date.now() + 20 * MINUTE))).toBeLessThan(MINUTE);
    await endpoint.s3.send(new CreateBucketCommand({ Bucket: 'unchecked' }));
  });
});

describe('temporary credentials from STS AssumeRole', () => {
  const ROLE = 'arn:aws:iam::111122223333:role/backup-writer';

  it('are accepted with their session token, name the assumed role, and are refused once expired (on the endpoint clock)', async () => {
    let ahead = 0;
    endpoint = await startTestEndpoint({ auth: [CREDENTIALS], now: () => Date.now() + ahead });
    const base = clientsFor(endpoint.emulator.url);
    const out = await base.sts.send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'nightly', DurationSeconds: 900, ExternalId: 'ext-7f3c' }));
    const issued = out.Credentials!;
    expect(issued.AccessKeyId).toMatch(/^ASIA/);
    expect(issued.Expiration!.getTime() - Date.now()).toBeGreaterThan(14 * MINUTE);
    expect(issued.Expiration!.getTime() - Date.now()).toBeLessThanOrEqual(15 * MINUTE);
    expect(out.AssumedRoleUser?.Arn).toBe('arn:aws:sts::111122223333:assumed-role/backup-writer/nightly');

    const role = clientsFor(endpoint.emulator.url, { accessKeyId: issued.AccessKeyId!, secretAccessKey: issued.SecretAccessKey!, sessionToken: issued.SessionToken! });
    const me = await role.sts.send(new GetCallerIdentityCommand({}));
    expect([me.Arn, me.Account]).toEqual(['arn:aws:sts::111122223333:assumed-role/backup-writer/nightly', '111122223333']);
    await role.s3.send(new CreateBucketCommand({ Bucket: 'by-role' }));
    expect((await role.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }))).Status).toBe('pending');

    // Without its token, the key is unknown; with another key's token, too.
    const tokenless = clientsFor(endpoint.emulator.url, { accessKeyId: issued.AccessKeyId!, secretAccessKey: issued.SecretAccessKey! });
    expect((await rejection(tokenless.sts.send(new GetCallerIdentityCommand({})))).name).toBe('InvalidClientTokenId');
    expect((await rejection(tokenless.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })))).name).toBe('UnrecognizedClientException');

    // Sixteen minutes later on the endpoint clock (the signing time stays within the window: the SDK follows the Date header).
    ahead = 16 * MINUTE;
    const expired = clientsFor(endpoint.emulator.url, { accessKeyId: issued.AccessKeyId!, secretAccessKey: issued.SecretAccessKey!, sessionToken: issued.SessionToken! });
    for (const client of Object.values(expired)) (client.config as { systemClockOffset?: number }).systemClockOffset = ahead;
    expect((await rejection(expired.sts.send(new GetCallerIdentityCommand({})))).name).toBe('ExpiredToken');
    const s3 = await rejection(expired.s3.send(new HeadObjectCommand({ Bucket: 'by-role', Key: 'k' })));
    expect(s3.$metadata?.httpStatusCode).toBe(400);
    const put = await rejection(expired.s3.send(new PutObjectCommand({ Bucket: 'by-role', Key: 'k', Body: 'x' })));
    expect([put.name, put.$metadata?.httpStatusCode]).toEqual(['ExpiredToken', 400]);
    expect((await rejection(expired.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })))).name).toBe('ExpiredTokenException');
  });

  it('refuses what the API reference refuses: DurationSeconds outside 900..43200 or past the role maximum, bad session names and external ids, a non-role ARN', async () => {
    endpoint = await startTestEndpoint({ auth: [CREDENTIALS] });
    const { sts } = clientsFor(endpoint.emulator.url);
    const refused = async (input: Partial<ConstructorParameters<typeof AssumeRoleCommand>[0]>) => {
      const err = await rejection(sts.send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'snapline', ...input })));
      expect([err.name, err.$metadata?.httpStatusCode]).toEqual(['ValidationError', 400]);
      return err.message;
    };
    expect(await refused({ DurationSeconds: 899 })).toMatch(/at 'durationSeconds' failed to satisfy constraint: Member must have value greater than or equal to 900/);
    expect(await refused({ DurationSeconds: 43_201 })).toMatch(/less than or equal to 43200/);
    expect(await refused({ DurationSeconds: 7200 })).toBe('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');
    expect(await refused({ RoleSessionName: 'a' })).toMatch(/at 'roleSessionName' .* length between 2 and 64/);
    expect(await refused({ RoleSessionName: 'x'.repeat(65) })).toMatch(/length between 2 and 64/);
    expect(await refused({ RoleSessionName: 'night ly' })).toMatch(/regular expression pattern/);
    expect(await refused({ ExternalId: 'x' })).toMatch(/at 'externalId' .* length between 2 and 1224/);
    expect(await refused({ ExternalId: 'bad id!' })).toMatch(/at 'externalId' .* regular expression pattern/);
    expect(await refused({ RoleSessionName: 'a', ExternalId: 'x' })).toMatch(/^2 validation errors detected: /);
    expect(await refused({ RoleArn: 'arn:aws:iam::111122223333:user/someone' })).toMatch(/not the ARN of an IAM role/);
    // The limits themselves pass.
    await sts.send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'ab', DurationSeconds: 900, ExternalId: 'e1' }));
    await sts.send(new AssumeRoleCommand({ RoleArn: ROLE, RoleSessionName: 'x'.repeat(64), DurationSeconds: 3600 }));
  });
});
