import { describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { failedToConnect, foundNoEndpoint, fromAwsError } from './errors.js';

/** A Node network error as the http module raises it. */
function networkError(code: string, message = `connect ${code} 127.0.0.1:1`): Error {
  return Object.assign(new Error(message), { code });
}

describe('fromAwsError: errors that are not service answers', () => {
  it('passes a SnaplineError through unchanged', () => {
    const original = new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, 'x');
    expect(fromAwsError(original, 'ebs:GetSnapshotBlock')).toBe(original);
  });

  it('ECONNREFUSED and DNS failures are ENDPOINT_UNREACHABLE: retryable after one attempt, final after the SDK retried', () => {
    expect(fromAwsError(networkError('ECONNREFUSED'), 'ebs:PutSnapshotBlock')).toMatchObject({
      code: ErrorCodes.ENDPOINT_UNREACHABLE,
      retryable: true,
      details: { networkCode: 'ECONNREFUSED', action: 'ebs:PutSnapshotBlock' },
    });
    const retried = Object.assign(networkError('ENOTFOUND', 'getaddrinfo ENOTFOUND ec2.example'), { $metadata: { attempts: 3 } });
    expect(fromAwsError(retried, 'ec2:DescribeSnapshots')).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
  });

  it('a host the endpoint rules made from a Region that does not resolve names the Region', () => {
    const dns = (host: string) => Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: host });
    const unknown = fromAwsError(dns('ebs.mars-north-7.amazonaws.com'), 'ebs:StartSnapshot');
    expect(unknown).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, message: 'ebs:StartSnapshot: mars-north-7 is not an AWS Region (ebs.mars-north-7.amazonaws.com does not exist)' });
    expect(unknown.hint).toMatch(/^check the Region: --region, AWS_REGION or the connection's region/);
    // A name shaped like a Region: it may be one this machine cannot resolve, so DNS and the network are named too.
    const shaped = fromAwsError(dns('bucket.s3.dualstack.eu-west-9.amazonaws.com'), 's3:ListBucket');
    expect(shaped.message).toBe('s3:ListBucket: cannot resolve bucket.s3.dualstack.eu-west-9.amazonaws.com (ENOTFOUND): is eu-west-9 the right Region?');
    expect(shaped.hint).toMatch(/then DNS and the network$/);
    // A host the user chose is not about the Region.
    expect(fromAwsError(dns('minio.lan'), 's3:ListBucket').message).toMatch(/cannot reach the endpoint \(ENOTFOUND\)/);
  });

  it('reads the code of an AggregateError from a multi-address connect', () => {
    const aggregate = new AggregateError([networkError('ECONNREFUSED'), networkError('ECONNREFUSED')], 'connect failed');
    expect(fromAwsError(aggregate, 'sts:GetCallerIdentity').code).toBe(ErrorCodes.ENDPOINT_UNREACHABLE);
  });

  it('a broken or stalled connection is UNAVAILABLE and retryable', () => {
    for (const code of ['ECONNRESET', 'EPIPE', 'ETIMEDOUT']) {
      expect(fromAwsError(networkError(code), 'ebs:GetSnapshotBlock')).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: true });
    }
    const timeout = Object.assign(new Error('socket timed out'), { name: 'TimeoutError' });
    expect(fromAwsError(timeout, 'ebs:GetSnapshotBlock')).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: true });
  });

  it('an untrusted certificate is ENDPOINT_UNREACHABLE, not retryable, with a hint naming verify and tls_ca_chain', () => {
    const error = fromAwsError(networkError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain'), 's3:ListBuckets');
    expect(error).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    expect(error.hint).toContain('verify: CA-BUNDLE-PATH');
    expect(error.hint).toContain('tls_ca_chain');
  });

  it('an aborted request is INTERRUPTED', () => {
    const abort = Object.assign(new Error('Request aborted'), { name: 'AbortError' });
    expect(fromAwsError(abort, 'ebs:PutSnapshotBlock')).toMatchObject({ code: ErrorCodes.INTERRUPTED, retryable: false });
  });

  it('a refusal for the signing time is ACCESS_DENIED, retryable only once the client corrected its clock from the answer', () => {
    for (const name of ['InvalidSignatureException', 'SignatureDoesNotMatch', 'RequestTimeTooSkewed', 'RequestExpired']) {
      const refused = (corrected?: boolean) =>
        Object.assign(new Error('Signature expired: 20300101T000000Z is now earlier than ...'), { name, $metadata: { httpStatusCode: 403, clockSkewCorrected: corrected } });
      expect(fromAwsError(refused(), 'ebs:StartSnapshot')).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: false });
      expect(fromAwsError(refused(true), 'ebs:StartSnapshot')).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: true, details: { clockSkewCorrected: true } });
    }
  });

  it('no credentials anywhere in the chain is ACCESS_DENIED with a hint', () => {
    const missing = Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' });
    const error = fromAwsError(missing, 'ebs:StartSnapshot');
    expect(error.code).toBe(ErrorCodes.ACCESS_DENIED);
    expect(error.hint).toMatch(/credentials/);
  });

  it('anything else is INTERNAL, keeping the cause', () => {
    const bug = new TypeError('x is not a function');
    const error = fromAwsError(bug, 'ebs:StartSnapshot');
    expect(error).toMatchObject({ code: ErrorCodes.INTERNAL, retryable: false });
    expect(error.cause).toBe(bug);
  });
});

describe('fromAwsError: service answers of EC2, STS and S3', () => {
  const answer = (name: string, httpStatusCode: number) =>
    Object.assign(new Error(`${name} message`), { name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode } });

  it.each([
    ['RequestLimitExceeded', 503, ErrorCodes.THROTTLED, true],
    ['Throttling', 400, ErrorCodes.THROTTLED, true],
    ['SlowDown', 503, ErrorCodes.THROTTLED, true],
    ['InternalError', 500, ErrorCodes.UNAVAILABLE, true],
    ['Unavailable', 503, ErrorCodes.UNAVAILABLE, true],
    ['InvalidSnapshot.NotFound', 400, ErrorCodes.NOT_FOUND, false],
    ['NoSuchBucket', 404, ErrorCodes.NOT_FOUND, false],
    ['InvalidSnapshot.InUse', 400, ErrorCodes.CONFLICT, false],
    ['UnauthorizedOperation', 403, ErrorCodes.ACCESS_DENIED, false],
    ['AuthFailure', 401, ErrorCodes.ACCESS_DENIED, false],
    ['SignatureDoesNotMatch', 403, ErrorCodes.ACCESS_DENIED, false],
    ['InvalidClientTokenId', 403, ErrorCodes.ACCESS_DENIED, false],
    ['ExpiredToken', 400, ErrorCodes.ACCESS_DENIED, false],
    ['SnapshotLimitExceeded', 400, ErrorCodes.QUOTA_EXCEEDED, false],
    ['InvalidParameterValue', 400, ErrorCodes.REMOTE_REJECTED, false],
    ['SomethingUnheardOf', 429, ErrorCodes.THROTTLED, true],
    ['SomethingUnheardOf', 502, ErrorCodes.UNAVAILABLE, true],
  ] as const)('%s (%i) -> %s', (name, status, code, retryable) => {
    expect(fromAwsError(answer(name, status), 'ec2:DescribeSnapshots')).toMatchObject({ code, retryable, details: { awsError: name, httpStatus: status } });
  });

  it('a permission error names the action in the message and the hint', () => {
    const error = fromAwsError(answer('UnauthorizedOperation', 403), 'ec2:DeleteSnapshot');
    expect(error.message).toContain('ec2:DeleteSnapshot');
    expect(error.hint).toContain('ec2:DeleteSnapshot');
  });
});

describe('fromAwsError: service answers of the archive tier (S3 objects, Glacier vaults)', () => {
  const answer = (name: string, httpStatusCode: number) =>
    Object.assign(new Error(`${name} message`), { name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode } });

  it.each([
    ['InvalidObjectState', 403, ErrorCodes.BAD_STATE, false],
    ['NoSuchUpload', 404, ErrorCodes.NOT_FOUND, false],
    ['NotFound', 404, ErrorCodes.NOT_FOUND, false],
    ['RestoreAlreadyInProgress', 409, ErrorCodes.CONFLICT, false],
    ['InvalidStorageClass', 400, ErrorCodes.REMOTE_REJECTED, false],
    ['EntityTooSmall', 400, ErrorCodes.REMOTE_REJECTED, false],
    ['RequestTimeout', 400, ErrorCodes.UNAVAILABLE, true],
    ['RequestTimeoutException', 408, ErrorCodes.UNAVAILABLE, true],
    ['InsufficientCapacityException', 400, ErrorCodes.UNAVAILABLE, true],
    ['LimitExceededException', 400, ErrorCodes.QUOTA_EXCEEDED, false],
    ['PolicyEnforcedException', 400, ErrorCodes.QUOTA_EXCEEDED, false],
    ['InvalidParameterValueException', 400, ErrorCodes.REMOTE_REJECTED, false],
    ['MissingParameterValueException', 400, ErrorCodes.REMOTE_REJECTED, false],
  ])('%s (%i) is %s, retryable %s', (name, status, code, retryable) => {
    expect(fromAwsError(answer(name, status), 'glacier:InitiateJob')).toMatchObject({ code, retryable, details: { awsError: name, httpStatus: status } });
  });
});

describe('failedToConnect and foundNoEndpoint', () => {
  it('read the network code of a raw error, of an AggregateError and of the SnaplineError made of it', () => {
    for (const err of [networkError('ECONNREFUSED'), new AggregateError([networkError('ECONNREFUSED')], 'connect failed'), fromAwsError(networkError('ECONNREFUSED'), 'ebs:PutSnapshotBlock')]) {
      expect(failedToConnect(err)).toBe(true);
      expect(foundNoEndpoint(err)).toBe(true);
    }
  });

  it('failed to connect, yet maybe passing: EAI_AGAIN, EHOSTUNREACH, ENETUNREACH, EADDRNOTAVAIL are not "no endpoint"', () => {
    for (const code of ['EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']) {
      expect(failedToConnect(networkError(code))).toBe(true);
      expect(foundNoEndpoint(networkError(code))).toBe(false);
    }
    expect(foundNoEndpoint(networkError('ENOTFOUND'))).toBe(true);
  });

  it('a connection that broke, an answer or any other error is neither', () => {
    const answered = Object.assign(new Error('boom'), { name: 'InternalServerException', $metadata: { httpStatusCode: 500 } });
    for (const err of [networkError('ECONNRESET'), answered, new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, 'x'), 'text', undefined]) {
      expect(failedToConnect(err)).toBe(false);
      expect(foundNoEndpoint(err)).toBe(false);
    }
  });
});
