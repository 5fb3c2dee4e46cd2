import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../index.js';
import type { CredentialScope } from './sigv4.js';
import { expectedSignature, type SignedRequest } from './sigv4-verify.js';

const EMPTY_HASH = createHash('sha256').update('').digest('hex');

describe('SigV4 signatures (the AWS signature test suite)', () => {
  const secret = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
  const scope: CredentialScope = {
    accessKeyId: 'AKIDEXAMPLE',
    date: '20150830',
    region: 'us-east-1',
    service: 'service',
    signedHeaders: ['host', 'x-amz-date'],
    signature: '',
  };
  const request = (rawQuery: string): SignedRequest => ({
    method: 'GET',
    rawPath: '/',
    rawQuery,
    rawHeaders: ['Host', 'example.amazonaws.com', 'X-Amz-Date', '20150830T123600Z'],
  });

  it('get-vanilla', () => {
    expect(expectedSignature(request(''), scope, EMPTY_HASH, '20150830T123600Z', secret)).toBe('5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31');
  });

  it('get-vanilla-query-order-key: parameters sorted by name', () => {
    expect(expectedSignature(request('Param2=value2&Param1=value1'), scope, EMPTY_HASH, '20150830T123600Z', secret)).toBe(
      'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
    );
  });
});

describe('the endpoint with auth: requests signed the way other SDKs do', () => {
  const key = { accessKeyId: 'AKIDUNITTEST', secretAccessKey: 'unit-test-secret-value' };
  let dir: string;
  let emulator: RunningEmulator;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-sigv4-'));
    // The endpoint's clock at the signing time below: requests signed too far from it are refused.
    emulator = await startEmulator({ dataDir: dir, auth: [key], log: () => undefined, now: () => Date.UTC(2030, 0, 1) });
  });
  afterAll(async () => {
    await emulator?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Signs like botocore does for a JSON service: no x-amz-content-sha256 header, the payload hash of the body (or UNSIGNED-PAYLOAD). */
  function signed(method: string, path: string, body: Buffer, payloadHash: string, secretAccessKey = key.secretAccessKey): RequestInit & { url: string } {
    const amzDate = '20300101T000000Z';
    const host = new URL(emulator.url).host;
    const headers: Record<string, string> = { host, 'x-amz-date': amzDate, 'content-type': 'application/json' };
    const scope: CredentialScope = {
      accessKeyId: key.accessKeyId,
      date: '20300101',
      region: 'us-east-1',
      service: 'ebs',
      signedHeaders: ['content-type', 'host', 'x-amz-date'],
      signature: '',
    };
    const rawHeaders = Object.entries(headers).flat();
    const signature = expectedSignature({ method, rawPath: path, rawQuery: '', rawHeaders }, scope, payloadHash, amzDate, secretAccessKey);
    const authorization = `AWS4-HMAC-SHA256 Credential=${key.accessKeyId}/20300101/us-east-1/ebs/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=${signature}`;
    return { url: `${emulator.url}${path}`, method, headers: { 'x-amz-date': amzDate, 'content-type': 'application/json', authorization }, body: method === 'GET' ? undefined : body };
  }

  it('without x-amz-content-sha256 the endpoint hashes the body itself; the handler still reads it', async () => {
    const body = Buffer.from('{"VolumeSize":1}');
    const { url, ...init } = signed('POST', '/snapshots', body, createHash('sha256').update(body).digest('hex'));
    const answer = await fetch(url, init);
    expect(answer.status).toBe(201);
    expect(await answer.json()).toMatchObject({ Status: 'pending', VolumeSize: 1 });
  });

  it('a body that is not the one signed, or a wrong secret: InvalidSignatureException', async () => {
    const { url, ...init } = signed('POST', '/snapshots', Buffer.from('{"VolumeSize":2}'), createHash('sha256').update('{"VolumeSize":1}').digest('hex'));
    const tampered = await fetch(url, init);
    expect([tampered.status, tampered.headers.get('x-amzn-errortype')]).toEqual([403, 'InvalidSignatureException']);
    const body = Buffer.from('{"VolumeSize":1}');
    const wrong = signed('POST', '/snapshots', body, createHash('sha256').update(body).digest('hex'), 'not-the-secret');
    expect((await fetch(wrong.url, wrong)).headers.get('x-amzn-errortype')).toBe('InvalidSignatureException');
  });

  it('PutSnapshotBlock without the header is checked as UNSIGNED-PAYLOAD (its API model says so): the signature passes', async () => {
    const { url, ...init } = signed('PUT', '/snapshots/snap-0123456789abcdef0/blocks/0', Buffer.alloc(16), 'UNSIGNED-PAYLOAD');
    const answer = await fetch(url, init);
    // Past the signature check: refused for its missing block headers, not for who sent it.
    expect(answer.headers.get('x-amzn-errortype')).toBe('ValidationException');
  });

  it('an Authorization header that is not SigV4, or a signature without x-amz-date: IncompleteSignatureException', async () => {
    const notSigV4 = await fetch(`${emulator.url}/snapshots`, { method: 'POST', headers: { authorization: 'AWS AKID:abc' }, body: '{}' });
    expect([notSigV4.status, notSigV4.headers.get('x-amzn-errortype')]).toEqual([403, 'IncompleteSignatureException']);
    const body = Buffer.from('{}');
    const { url, ...init } = signed('POST', '/snapshots', body, createHash('sha256').update(body).digest('hex'));
    delete (init.headers as Record<string, string>)['x-amz-date'];
    const undated = await fetch(url, init);
    expect(undated.headers.get('x-amzn-errortype')).toBe('IncompleteSignatureException');
  });
});
