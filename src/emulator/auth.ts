import type { IncomingMessage } from 'node:http';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AwsError } from './aws-error.js';
import { sendEbsError } from './ebs.js';
import { sendEc2Error } from './ec2.js';
import { keepReadBody, readBody, type Exchange } from './http.js';
import { sendS3Error } from './s3.js';
import { sendStsError } from './sts.js';
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

/** An access key the endpoint accepts: requests must be signed with its secret. */
export interface AccessKey {
  accessKeyId: string;
  secretAccessKey: string;
}

const ACCESS_KEY_ID = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Parses `KEYID:SECRET`. `origin` names where it came from in the message
 * (a flag, a file and line); the message never repeats the secret. Throws
 * SnaplineError INVALID_ARGUMENT.
 */
export function parseAccessKey(text: string, origin: string): AccessKey {
  const colon = text.indexOf(':');
  const accessKeyId = colon < 0 ? '' : text.slice(0, colon).trim();
  const secretAccessKey = colon < 0 ? '' : text.slice(colon + 1).trim();
  if (!ACCESS_KEY_ID.test(accessKeyId) || secretAccessKey === '') {
    throw new SnaplineError(
      ErrorCodes.INVALID_ARGUMENT,
      `${origin} must look like KEYID:SECRET (a key id of letters, digits, '_', '.' or '-', then a non-empty secret)`,
    );
  }
  return { accessKeyId, secretAccessKey };
}

/** Access keys from a file: one KEYID:SECRET a line; blank lines and lines starting with '#' are skipped. */
export function parseAccessKeyFile(text: string, path: string): AccessKey[] {
  const keys: AccessKey[] = [];
  for (const [n, line] of text.split('\n').entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    keys.push(parseAccessKey(trimmed, `line ${n + 1} of ${path}`));
  }
  return keys;
}

/** Checks a key list: not empty, no key id twice. Returns a map by key id. */
export function accessKeyMap(keys: readonly AccessKey[]): Map<string, string> {
  const byId = new Map<string, string>();
  for (const key of keys) {
    if (byId.has(key.accessKeyId)) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `access key ${key.accessKeyId} is given twice`);
    }
    byId.set(key.accessKeyId, key.secretAccessKey);
  }
  return byId;
}

type Refusal = 'missing' | 'malformed' | 'unknown-key' | 'bad-signature';

/** The answer AWS gives for each refusal, per service and protocol. */
function refusalError(service: string, refusal: Refusal, accessKeyId: string | undefined): AwsError {
  const badSignature =
    'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.';
  const invalidToken = 'The security token included in the request is invalid.';
  switch (service) {
    case 'ec2':
      return new AwsError(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    case 'sts':
    case 'query':
      if (refusal === 'missing') return new AwsError(403, 'MissingAuthenticationToken', 'Request is missing Authentication Token');
      if (refusal === 'malformed') return new AwsError(400, 'IncompleteSignature', 'The request signature does not conform to AWS standards.');
      if (refusal === 'unknown-key') return new AwsError(403, 'InvalidClientTokenId', invalidToken);
      return new AwsError(403, 'SignatureDoesNotMatch', badSignature);
    case 's3':
      if (refusal === 'missing') return new AwsError(403, 'AccessDenied', 'Access Denied');
      if (refusal === 'malformed') return new AwsError(400, 'AuthorizationHeaderMalformed', 'The authorization header is malformed.');
      if (refusal === 'unknown-key') {
        return new AwsError(403, 'InvalidAccessKeyId', `The AWS Access Key Id you provided does not exist in our records. (${accessKeyId})`);
      }
      return new AwsError(403, 'SignatureDoesNotMatch', badSignature);
    default:
      // EBS direct and anything else JSON.
      if (refusal === 'missing') return new AwsError(403, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      if (refusal === 'malformed') return new AwsError(403, 'IncompleteSignatureException', 'The request signature does not conform to AWS standards.');
      if (refusal === 'unknown-key') return new AwsError(403, 'UnrecognizedClientException', invalidToken);
      return new AwsError(403, 'InvalidSignatureException', badSignature);
  }
}

/**
 * Checks the SigV4 signature of every request against the configured keys.
 * The payload hash is the one the client declared in x-amz-content-sha256
 * (a hex digest, UNSIGNED-PAYLOAD, or a STREAMING-... value whose seed
 * signature is checked and whose chunk signatures are not); without that
 * header, PutSnapshotBlock is unsigned-payload (as its API model says) and
 * any other request's body is read and hashed here, then handed to its
 * handler through keepReadBody. Presigned (query) authentication is refused.
 */
export class RequestAuthenticator {
  readonly #secrets: Map<string, string>;

  constructor(keys: readonly AccessKey[]) {
    if (keys.length === 0) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'auth needs at least one access key');
    this.#secrets = accessKeyMap(keys);
  }

  /** Undefined when the request is signed with a configured key, else the AWS error to answer. Rejects only when the client goes away. */
  async check(req: IncomingMessage, rawPath: string, rawQuery: string, service: string, unsignedPayload: boolean): Promise<AwsError | undefined> {
    const scope = credentialScopeOf(req.headers);
    if (scope === undefined) return refusalError(service, req.headers.authorization === undefined ? 'missing' : 'malformed', undefined);
    const secret = this.#secrets.get(scope.accessKeyId);
    if (secret === undefined) return refusalError(scope.service, 'unknown-key', scope.accessKeyId);
    const amzDate = amzDateOf(req.rawHeaders);
    if (amzDate === undefined || !amzDate.startsWith(scope.date) || !scope.signedHeaders.includes('host')) {
      return refusalError(scope.service, 'malformed', scope.accessKeyId);
    }
    const payloadHash = declaredPayloadHash(req.rawHeaders) ?? (unsignedPayload ? UNSIGNED_PAYLOAD : await this.#hashBody(req));
    const expected = expectedSignature(signedRequestOf(req, rawPath, rawQuery), scope, payloadHash, amzDate, secret);
    return signaturesMatch(expected, scope.signature) ? undefined : refusalError(scope.service, 'bad-signature', scope.accessKeyId);
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
  else if (service === 's3') sendS3Error(exchange, error.status, error.code, error.message);
  else sendEbsError(exchange, error);
}
