import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialScopeOf, parseAuthorization } from '../../src/emulator/protocol/sigv4.js';
import { startTestEndpoint, type TestEndpoint } from './helpers.js';

describe('SigV4 credential scope', () => {
  it('reads access key, date, Region and service from the Authorization header', () => {
    const scope = parseAuthorization(
      'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/eu-west-1/ebs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcdef',
    );
    expect(scope).toEqual({ accessKeyId: 'AKIDEXAMPLE', date: '20240102', region: 'eu-west-1', service: 'ebs', signedHeaders: ['host', 'x-amz-date'], signature: 'abcdef' });
  });

  it('reads a presigned URL query, and refuses what is not SigV4', () => {
    const query = new URLSearchParams({ 'X-Amz-Credential': 'AK/20240102/us-east-1/s3/aws4_request', 'X-Amz-SignedHeaders': 'host', 'X-Amz-Signature': '00' });
    expect(credentialScopeOf({}, query)?.service).toBe('s3');
    expect(parseAuthorization('AWS AKID:signature')).toBeUndefined();
    expect(parseAuthorization('AWS4-HMAC-SHA256 Credential=AK/20240102/us-east-1/ebs')).toBeUndefined();
    expect(parseAuthorization('AWS4-HMAC-SHA256 SignedHeaders=host')).toBeUndefined();
    expect(credentialScopeOf({})).toBeUndefined();
  });
});

describe('routing by service', () => {
  let t: TestEndpoint;
  beforeAll(async () => {
    t = await startTestEndpoint();
  });
  afterAll(async () => {
    await t.stop();
  });

  const signedFor = (service: string) => ({ authorization: `AWS4-HMAC-SHA256 Credential=AK/20240102/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=00` });

  it('sends a request signed for ebs to EBS even off its paths, and one for s3 to S3 even on /snapshots', async () => {
    const ebs = await fetch(`${t.emulator.url}/`, { headers: signedFor('ebs') });
    expect(ebs.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
    const s3 = await fetch(`${t.emulator.url}/snapshots`, { headers: signedFor('s3') });
    expect(s3.status).toBe(404);
    expect(await s3.text()).toContain('<Code>NoSuchBucket</Code>');
  });

  it('tells STS from EC2 by the signature, or by Version when unsigned', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const sts = await fetch(t.emulator.url, { method: 'POST', headers: { ...form, ...signedFor('sts') }, body: 'Action=GetCallerIdentity&Version=2011-06-15' });
    expect(await sts.text()).toContain('<GetCallerIdentityResult>');
    const unsigned = await fetch(t.emulator.url, { method: 'POST', headers: form, body: 'Action=GetCallerIdentity&Version=2011-06-15' });
    expect(await unsigned.text()).toContain('<Account>');
    const ec2 = await fetch(`${t.emulator.url}/?Action=DescribeRegions&Version=2016-11-15`);
    expect(await ec2.text()).toContain('<regionInfo>');
  });

  it('refuses a service it does not serve', async () => {
    const res = await fetch(`${t.emulator.url}/`, { headers: signedFor('dynamodb') });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-amzn-errortype')).toBe('UnknownServiceException');
  });
});
