import type { IncomingMessage } from 'node:http';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import { AwsError } from './aws-error.js';
import { sendEbsError } from '../ebs/ebs.js';
import { sendEc2Error } from '../ec2/ec2.js';
import { headerOf, keepReadBody, readBody, type Exchange } from './http.js';
import { sendS3Failure } from '../s3/s3.js';
import { S3Error } from '../s3/errors.js';
import { SessionCredentials } from '../sts/session-credentials.js';
import { sendStsError } from '../sts/sts.js';
import { accessKeyMap, type AccessKey } from './access-keys.js';
import { credentialScopeOf } from './sigv4.js';
import {
  amzDateOf,
  declaredPayloadHash,
  expectedSignature,
  sha256Hex,
  signaturesMatch,
  signedRequestOf,
  UNSIGNED_PAYLOAD,
} from './sigv4-verify.js';

type Refusal =
  | { kind: 'missing' | 'malformed' | 'unknown-key' | 'bad-signature' | 'expired-token' }
  /** The signing time (x-amz-date) is further from the endpoint's clock than the service allows. */
  | { kind: 'skewed'; amzDate: string; now: number; windowMs: number };

const MINUTE_MS = 60_000;

/**
 * How far a request's signing time may be from the service's clock. SigV4 in
 * general: five minutes (IAM User Guide, "AWS Signature Version 4 for API
 * requests"); S3, STS and EC2 allow fifteen.
 */
function skewWindowMs(service: string): number {
  return service === 's3' || service === 'sts' || service === 'query' || service === 'ec2' ? 15 * MINUTE_MS : 5 * MINUTE_MS;
}

/** `20300101T000000Z` of an epoch ms. */
function amzDateText(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
}

/** The message STS, EBS, Glacier and the other JSON services give a request signed too long ago, or too far ahead. */
function skewMessage(refusal: { amzDate: string; now: number; windowMs: number }): string {
  const minutes = refusal.windowMs / MINUTE_MS;
  if (epochOfAmzDate(refusal.amzDate) < refusal.now) {
    return `Signature expired: ${refusal.amzDate} is now earlier than ${amzDateText(refusal.now - refusal.windowMs)} (${amzDateText(refusal.now)} - ${minutes} min.)`;
  }
  return `Signature not yet current: ${refusal.amzDate} is still later than ${amzDateText(refusal.now + refusal.windowMs)} (${amzDateText(refusal.now)} + ${minutes} min.)`;
}

/** The answer AWS gives for each refusal, per service and protocol. */
function refusalError(service: string, refusal: Refusal, accessKeyId: string | undefined): AwsError {
  const badSignature =
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
  const invalidToken = 'The security token included in the request is invalid.';
  const expiredToken = 'The security token included in the request is expired';
  const kind = refusal.kind;
  switch (service) {
    case 'ec2':
      // EC2 error codes: RequestExpired for a date stamp more than 15 minutes off.
      if (refusal.kind === 'skewed') return new AwsError(400, 'RequestExpired', 'Request has expired.');
      return new AwsError(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    case 'sts':
    case 'query':
      if (kind === 'missing') return new AwsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
      if (kind === 'malformed') return new AwsError(400, 'IncompleteSignature', 'The request signature does not conform to AWS standards.');
      if (kind === 'unknown-key') return new AwsError(403, 'InvalidClientTokenId', invalidToken);
      if (kind === 'expired-token') return new AwsError(403, 'ExpiredToken', expiredToken);
      if (refusal.kind === 'skewed') return new AwsError(403, 'SignatureDoesNotMatch', skewMessage(refusal));
      return new AwsError(403, 'SignatureDoesNotMatch', badSignature);
    case 's3':
      if (kind === 'missing') return new AwsError(403, 'AccessDenied', 'Access Denied');
      if (kind === 'malformed') return new AwsError(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
      if (kind === 'unknown-key') {
        return new AwsError(403, 'InvalidAccessKeyId', `The AWS Access Key Id you provided does not exist in our records. (${accessKeyId})`);
      }
      if (kind === 'expired-token') return new S3Error(400, 'ExpiredToken', 'The provided token has expired.');
      if (refusal.kind === 'skewed') {
        return new S3Error(403, 'RequestTimeTooSkewed', 'The difference between the request time and the current time is too large.', {
          RequestTime: refusal.amzDate,
          ServerTime: new Date(refusal.now).toISOString().replace(/\.\d{3}Z$/, 'Z'),
          MaxAllowedSkewMilliseconds: refusal.windowMs,
        });
      }
      return new AwsError(403, 'SignatureDoesNotMatch', badSignature);
    default:
      // EBS direct, Glacier and anything else JSON.
      if (kind === 'missing') return new AwsError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      if (kind === 'malformed') return new AwsError(403, 'IncompleteSignatureException', 'The request signature does not conform to AWS standards.');
      if (kind === 'unknown-key') return new AwsError(403, 'UnrecognizedClientException', invalidToken);
      if (kind === 'expired-token') return new AwsError(403, 'ExpiredTokenException', expiredToken);
      if (refusal.kind === 'skewed') return new AwsError(403, 'InvalidSignatureException', skewMessage(refusal));
      return new AwsError(403, 'InvalidSignatureException', badSignature);
  }
}

/** Epoch ms of an x-amz-date (ISO 8601 basic, already checked for form). */
function epochOfAmzDate(amzDate: string): number {
  return Date.parse(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
}

/**
 * Checks the SigV4 signature of every request against the configured keys,
 * and against the temporary credentials its own STS AssumeRole issued (the
 * x-amz-security-token names them; an expired one is refused as AWS does).
 * The signing time (x-amz-date) must be within the service's window of the
 * endpoint's clock `now` (five minutes, fifteen for S3, STS and EC2), else
 * the request is refused with the service's clock-skew error (the answer's
 * Date header, also from `now`, lets the SDKs correct their clock).
 * The payload hash is the one the client declared in x-amz-content-sha256
 * (a hex digest, UNSIGNED-PAYLOAD, or a STREAMING-... value whose seed
 * signature is checked and whose chunk signatures are not); without that
 * header, PutSnapshotBlock is unsigned-payload (as its API model says) and
 * any other request's body is read and hashed here, then handed to its
 * handler through keepReadBody. Presigned (query) authentication is refused.
 */
export class RequestAuthenticator {
  readonly #secrets: Map<string, string>;
  readonly #now: () => number;
  /** The temporary credentials STS AssumeRole issues and this authenticator accepts. */
  readonly sessions: SessionCredentials;

  constructor(keys: readonly AccessKey[], now: () => number = Date.now) {
    if (keys.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'auth needs at least one access key');
    this.#secrets = accessKeyMap(keys);
    this.#now = now;
    this.sessions = new SessionCredentials(keys);
  }

  /** Undefined when the request is signed with a configured key, else the AWS error to answer. Rejects only when the client goes away. */
  async check(req: IncomingMessage, rawPath: string, rawQuery: string, service: string, unsignedPayload: boolean): Promise<AwsError | undefined> {
    const scope = credentialScopeOf(req.headers);
    if (scope === undefined) return refusalError(service, { kind: req.headers.authorization === undefined ? 'missing' : 'malformed' }, undefined);
    const refuse = (refusal: Refusal) => refusalError(scope.service, refusal, scope.accessKeyId);
    const { secret, refusal } = this.#secretOf(scope.accessKeyId, headerOf(req.headers, 'x-amz-security-token'));
    if (secret === undefined) return refuse({ kind: refusal });
    const amzDate = amzDateOf(req.rawHeaders);
    if (amzDate === undefined || !amzDate.startsWith(scope.date) || !scope.signedHeaders.includes('host')) return refuse({ kind: 'malformed' });
    const now = this.#now();
    const windowMs = skewWindowMs(scope.service);
    if (Math.abs(epochOfAmzDate(amzDate) - now) > windowMs) return refuse({ kind: 'skewed', amzDate, now, windowMs });
    const payloadHash = declaredPayloadHash(req.rawHeaders) ?? (unsignedPayload ? UNSIGNED_PAYLOAD : await this.#hashBody(req));
    const expected = expectedSignature(signedRequestOf(req, rawPath, rawQuery), scope, payloadHash, amzDate, secret);
    return signaturesMatch(expected, scope.signature) ? undefined : refuse({ kind: 'bad-signature' });
  }

  /** The secret of a configured key, or of a session this endpoint issued that has not expired; else why not. */
  #secretOf(accessKeyId: string, sessionToken: string | undefined): { secret: string; refusal?: never } | { secret?: never; refusal: 'unknown-key' | 'expired-token' } {
    const configured = this.#secrets.get(accessKeyId);
    if (configured !== undefined) return { secret: configured };
    const session = sessionToken === undefined ? undefined : this.sessions.open(accessKeyId, sessionToken);
    if (session === undefined) return { refusal: 'unknown-key' };
    return session.expiresAt <= this.#now() ? { refusal: 'expired-token' } : { secret: session.secretAccessKey };
  }

  async #hashBody(req: IncomingMessage): Promise<string> {
    const body = await readBody(req, { requests: 0, errors: 0, bytesIn: 0, bytesOut: 0 });
    keepReadBody(req, body);
    return sha256Hex(body);
  }
}

/** Answers a refused request in the protocol of its service. */
export function sendRefusal(exchange: Exchange, service: string, error: AwsError): void {
  if (service === 'ec2') sendEc2Error(exchange, error);
  else if (service === 'sts' || service === 'query') sendStsError(exchange, error);
  else if (service === 's3') sendS3Failure(exchange, error);
  else sendEbsError(exchange, error);
}
