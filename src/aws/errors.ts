import { ErrorCodes, SnaplineError, type ErrorCode } from '../errors.js';

/**
 * The one place that sorts AWS SDK and network errors into snapline's codes,
 * as AWS-FACTS.md ("Errors") sorts them. It reads errors by their shape (name,
 * $fault, $metadata, Reason, Node's `code`), so it imports no SDK and the
 * in-memory fakes can feed it AWS-shaped errors too.
 */

interface Sort {
  code: ErrorCode;
  retryable: boolean;
  hint?: string;
}

const THROTTLED: Sort = { code: ErrorCodes.THROTTLED, retryable: true };
const UNAVAILABLE: Sort = { code: ErrorCodes.UNAVAILABLE, retryable: true };
const NOT_FOUND: Sort = { code: ErrorCodes.NOT_FOUND, retryable: false };
const CONFLICT: Sort = { code: ErrorCodes.CONFLICT, retryable: false };
const REJECTED: Sort = { code: ErrorCodes.REMOTE_REJECTED, retryable: false };

const BAD_STATE: Sort = { code: ErrorCodes.BAD_STATE, retryable: false };

/** Error names (EBS, EC2, STS, S3, Glacier) and how they sort. */
const BY_NAME: Readonly<Record<string, Sort>> = {
  // Throttling: retry with backoff; the limiter lowers the concurrency on THROTTLED.
  ThrottlingException: THROTTLED,
  RequestThrottledException: THROTTLED,
  RequestLimitExceeded: THROTTLED,
  Throttling: THROTTLED,
  SlowDown: THROTTLED,
  // Transient service failures.
  InternalServerException: UNAVAILABLE,
  InternalError: UNAVAILABLE,
  InternalFailure: UNAVAILABLE,
  ServiceUnavailable: UNAVAILABLE,
  ServiceUnavailableException: UNAVAILABLE,
  Unavailable: UNAVAILABLE,
  RequestTimeout: UNAVAILABLE,
  RequestTimeoutException: UNAVAILABLE,
  InsufficientCapacityException: {
    code: ErrorCodes.UNAVAILABLE,
    retryable: true,
    hint: 'Glacier has no Expedited capacity now: try again later or use the Standard tier',
  },
  // Missing things. ResourceNotFound right after StartSnapshot is retried by retry.ts, not here.
  ResourceNotFoundException: NOT_FOUND,
  'InvalidSnapshot.NotFound': NOT_FOUND,
  'InvalidVolume.NotFound': NOT_FOUND,
  'InvalidInstanceID.NotFound': NOT_FOUND,
  NoSuchBucket: NOT_FOUND,
  NoSuchKey: NOT_FOUND,
  NoSuchUpload: NOT_FOUND,
  NotFound: NOT_FOUND,
  // An archived S3 object whose bytes are asked for before it is restored (HTTP 403, yet not a permission problem).
  InvalidObjectState: BAD_STATE,
  // A volume (or snapshot) not in the state the call needs.
  IncorrectState: BAD_STATE,
  // Idempotency and state conflicts.
  ConflictException: CONFLICT,
  IdempotentParameterMismatch: CONFLICT,
  'InvalidSnapshot.InUse': CONFLICT,
  VolumeInUse: CONFLICT,
  RestoreAlreadyInProgress: CONFLICT,
  // Quotas.
  ServiceQuotaExceededException: { code: ErrorCodes.QUOTA_EXCEEDED, retryable: false },
  SnapshotLimitExceeded: { code: ErrorCodes.QUOTA_EXCEEDED, retryable: false },
  ResourceLimitExceeded: {
    code: ErrorCodes.QUOTA_EXCEEDED,
    retryable: false,
    hint: 'a Region quota is reached: too many snapshot copies are in progress into it (20 by default), or too many snapshots have fast snapshot restore (5); try again once some have completed, or ask AWS to raise it',
  },
  LimitExceededException: { code: ErrorCodes.QUOTA_EXCEEDED, retryable: false },
  PolicyEnforcedException: {
    code: ErrorCodes.QUOTA_EXCEEDED,
    retryable: false,
    hint: "the vault's data retrieval policy refuses this retrieval now: try later, or a slower tier",
  },
  ConcurrentLimitExceededException: {
    code: ErrorCodes.QUOTA_EXCEEDED,
    retryable: false,
    hint: 'too many snapshots are pending in this account and Region; try again once some have completed',
  },
  // Refused arguments.
  'InvalidSnapshotID.Malformed': REJECTED,
  InvalidParameterValue: REJECTED,
  InvalidParameterCombination: REJECTED,
  MissingParameter: REJECTED,
  InvalidParameterDependency: REJECTED,
  'InvalidVolume.ZoneMismatch': REJECTED,
  InvalidParameterValueException: REJECTED,
  MissingParameterValueException: REJECTED,
  InvalidStorageClass: REJECTED,
  InvalidPart: REJECTED,
  InvalidPartOrder: REJECTED,
  EntityTooSmall: REJECTED,
};

const CREDENTIALS_HINT = 'check the credentials of the connection (environment, profile or role) and the system clock';

/** Error names that mean "who you are" is wrong, as opposed to "what you may do". */
const IDENTITY_ERRORS = new Set([
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'InvalidClientTokenId',
  'UnrecognizedClientException',
  'InvalidAccessKeyId',
  'ExpiredToken',
  'ExpiredTokenException',
  'AuthFailure',
  'RequestExpired',
]);

/** Error names of a signing time too far from the service's clock (besides the signature errors above). */
const CLOCK_SKEW_ERRORS = new Set(['RequestTimeTooSkewed', 'RequestInTheFuture']);

/** Error names that mean a permission is missing. */
const PERMISSION_ERRORS = new Set(['AccessDeniedException', 'AccessDenied', 'UnauthorizedOperation']);

/** Node network error codes: the endpoint cannot be reached at all (no connection was made). */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
/**
 * Of those, the ones a wrong endpoint URL gets: nothing listens on the port,
 * or the host name does not exist. The others (a DNS server that does not
 * answer yet, no route, no local address) are often passing, at a
 * container's start for one.
 */
const NO_ENDPOINT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND']);

/** Node network error codes: a connection that broke or stalled (retry). */
const BROKEN_CONNECTION_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

/** TLS verification failures: retrying cannot help, the trust settings must change. */
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Each service by the prefix of its IAM actions: its name in messages, and where its endpoint is set (AWS_ENDPOINT_URL_<env>, endpoint_urls.<key>). */
const SERVICES: Readonly<Record<string, { name: string; env: string; key: string }>> = {
  ebs: { name: 'EBS direct API', env: 'EBS', key: 'ebs' },
  ec2: { name: 'EC2', env: 'EC2', key: 'ec2' },
  s3: { name: 'S3', env: 'S3', key: 's3' },
  sts: { name: 'STS', env: 'STS', key: 'sts' },
  glacier: { name: 'S3 Glacier', env: 'GLACIER', key: 'glacier' },
  ecs: { name: 'ECS', env: 'ECS', key: 'ecs' },
  logs: { name: 'CloudWatch Logs', env: 'CLOUDWATCH_LOGS', key: 'logs' },
};

/** The service an IAM action (ebs:PutSnapshotBlock) belongs to, for messages about its endpoint. */
function serviceOf(action: string): { name: string; env: string; key: string } {
  const prefix = action.split(':')[0]!;
  return SERVICES[prefix] ?? { name: prefix, env: prefix.toUpperCase(), key: prefix };
}

/** Where the endpoint of the action's service comes from, for a hint. */
function endpointHint(action: string): string {
  const { name, env, key } = serviceOf(action);
  return `check the ${name} endpoint URL (--endpoint-url, AWS_ENDPOINT_URL_${env}, or endpoint_url / endpoint_urls.${key} of the connection) and that the service runs there`;
}

/**
 * The Region in a host name that the SDK's endpoint rules made
 * (ebs.eu-west-1.amazonaws.com, bucket.s3.dualstack.eu-west-1.amazonaws.com):
 * the label before amazonaws.com when it looks like a Region; else undefined.
 */
function regionOfAwsHost(host: string | undefined): string | undefined {
  const labels = (host ?? '').toLowerCase().split('.');
  const at = labels.indexOf('amazonaws');
  const candidate = at >= 1 ? labels[at - 1]! : '';
  return /^[a-z]+(-[a-z]+)+-\d+$/.test(candidate) ? candidate : undefined;
}

/** The names of AWS's Regions, by partition (the patterns of the SDK's endpoint rules). */
const REGION_NAME = /^(us|eu|ap|sa|ca|me|af|il|mx|cn|us-gov|us-iso[bef]?|eu-isoe|eusc-de)-[a-z]+-\d+$/;

interface AwsShapedError {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  hostname?: unknown;
  errors?: unknown;
  Reason?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown; attempts?: unknown; clockSkewCorrected?: unknown };
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

/** Node's error code; a failed multi-address connect is an AggregateError whose members carry it. */
function networkCodeOf(err: AwsShapedError): string | undefined {
  const own = stringOrUndefined(err.code);
  if (own !== undefined) return own;
  if (Array.isArray(err.errors)) {
    for (const inner of err.errors) {
      const code = inner !== null && typeof inner === 'object' ? stringOrUndefined((inner as AwsShapedError).code) : undefined;
      if (code !== undefined) return code;
    }
  }
  return undefined;
}

/** Node's error code of a failed request: its own, or that of the SnaplineError fromAwsError made of it. */
function networkCodeOfAny(err: unknown): string | undefined {
  if (err instanceof SnaplineError) return stringOrUndefined(err.details?.networkCode);
  return err !== null && typeof err === 'object' ? networkCodeOf(err as AwsShapedError) : undefined;
}

/** Whether a request failed without a connection to the endpoint (refused, no such host, no route...): the endpoint cannot have seen it. */
export function failedToConnect(err: unknown): boolean {
  const code = networkCodeOfAny(err);
  return code !== undefined && UNREACHABLE_CODES.has(code);
}

/** Whether a request found no endpoint where it was sent: the connection was refused or the host name does not exist. */
export function foundNoEndpoint(err: unknown): boolean {
  const code = networkCodeOfAny(err);
  return code !== undefined && NO_ENDPOINT_CODES.has(code);
}

/**
 * Maps an SDK or network error to a SnaplineError with the code and retryable
 * flag AWS-FACTS.md gives it. `action` is the IAM action of the call (for
 * example "ebs:PutSnapshotBlock"); access errors name it. The AWS error name,
 * its Reason, the HTTP status and the request id are kept in `details`.
 * A SnaplineError passes through unchanged.
 */
export function fromAwsError(err: unknown, action: string): SnaplineError {
  if (err instanceof SnaplineError) return err;
  const shaped: AwsShapedError = err !== null && typeof err === 'object' ? (err as AwsShapedError) : {};
  const name = stringOrUndefined(shaped.name) ?? 'Error';
  const awsMessage = stringOrUndefined(shaped.message) ?? (err instanceof Error ? err.message : String(err));
  const reason = stringOrUndefined(shaped.Reason);
  const httpStatus = numberOrUndefined(shaped.$metadata?.httpStatusCode);
  const attempts = numberOrUndefined(shaped.$metadata?.attempts);
  const networkCode = networkCodeOf(shaped);
  const details: Record<string, unknown> = { action, awsError: name };
  if (reason !== undefined) details.reason = reason;
  if (httpStatus !== undefined) details.httpStatus = httpStatus;
  const requestId = stringOrUndefined(shaped.$metadata?.requestId);
  if (requestId !== undefined) details.requestId = requestId;
  if (attempts !== undefined) details.attempts = attempts;
  if (networkCode !== undefined) details.networkCode = networkCode;

  const make = (sort: Sort, message: string): SnaplineError =>
    new SnaplineError(sort.code, message, { retryable: sort.retryable, hint: sort.hint, cause: err, details });
  const described = `${action} failed: ${name}${reason === undefined ? '' : ` (${reason})`}: ${awsMessage}`;

  if (name === 'AbortError') {
    return make({ code: ErrorCodes.INTERRUPTED, retryable: false }, `${action} was interrupted`);
  }
  if (PERMISSION_ERRORS.has(name)) {
    return make(
      { code: ErrorCodes.ACCESS_DENIED, retryable: false, hint: `grant ${action} to the identity in use, or use other credentials` },
      `access denied: ${action} is not allowed: ${awsMessage}`,
    );
  }
  if (IDENTITY_ERRORS.has(name) || CLOCK_SKEW_ERRORS.has(name)) {
    // Refused for the signing time, and the client has since taken the service's clock from the answer: the next attempt is signed right.
    const skewCorrected = shaped.$metadata?.clockSkewCorrected === true;
    if (skewCorrected) details.clockSkewCorrected = true;
    return make({ code: ErrorCodes.ACCESS_DENIED, retryable: skewCorrected, hint: CREDENTIALS_HINT }, `credentials refused for ${action}: ${name}: ${awsMessage}`);
  }
  if (name === 'CredentialsProviderError') {
    return make({ code: ErrorCodes.ACCESS_DENIED, retryable: false, hint: CREDENTIALS_HINT }, `no usable credentials for ${action}: ${awsMessage}`);
  }
  if (name === 'ValidationException') return make(sortValidation(awsMessage), described);
  if (name === 'ForeignEndpoint') {
    return make(
      { code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false, hint: endpointHint(action) },
      `${action}: ${awsMessage}: it is not the ${serviceOf(action).name} endpoint`,
    );
  }
  if (name === 'SilentEndpoint') {
    return make({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false, hint: endpointHint(action) }, `${action}: ${awsMessage}: it is not a working ${serviceOf(action).name} endpoint`);
  }

  const known = BY_NAME[name];
  if (known !== undefined) return make(known, described);

  const region = networkCode === 'ENOTFOUND' ? regionOfAwsHost(stringOrUndefined(shaped.hostname)) : undefined;
  if (region !== undefined) {
    // A host name made from the Region that does not exist: most often a Region that does not.
    const host = stringOrUndefined(shaped.hostname)!;
    return make(
      {
        code: ErrorCodes.ENDPOINT_UNREACHABLE,
        retryable: attempts === undefined || attempts <= 1,
        hint: `check the Region: --region, AWS_REGION or the connection's region (Region names look like eu-west-1)${REGION_NAME.test(region) ? ', then DNS and the network' : ''}`,
      },
      REGION_NAME.test(region)
        ? `${action}: cannot resolve ${host} (ENOTFOUND): is ${region} the right Region?`
        : `${action}: ${region} is not an AWS Region (${host} does not exist)`,
    );
  }
  if (networkCode !== undefined && UNREACHABLE_CODES.has(networkCode)) {
    // The SDK already retried when it reports more than one attempt: then it is final.
    return make(
      {
        code: ErrorCodes.ENDPOINT_UNREACHABLE,
        retryable: attempts === undefined || attempts <= 1,
        hint: 'check the endpoint URL, the network and that the service is running',
      },
      `${action}: cannot reach the endpoint (${networkCode}): ${awsMessage}`,
    );
  }
  if (networkCode !== undefined && TLS_CODES.has(networkCode)) {
    return make(
      { code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false, hint: 'trust the endpoint certificate with the connection setting verify: CA-BUNDLE-PATH or tls_ca_chain' },
      `${action}: TLS verification of the endpoint failed (${networkCode}): ${awsMessage}`,
    );
  }
  if (name === 'TimeoutError' || (networkCode !== undefined && BROKEN_CONNECTION_CODES.has(networkCode))) {
    return make(UNAVAILABLE, `${action}: the connection failed (${networkCode ?? name}): ${awsMessage}`);
  }

  if (httpStatus !== undefined || shaped.$fault !== undefined) return make(sortByStatus(httpStatus, shaped.$fault), described);
  return make({ code: ErrorCodes.INTERNAL, retryable: false }, `${action} failed: ${awsMessage}`);
}

/**
 * ValidationException: "Failed to read block data" is a body that did not
 * arrive whole (retry); a checksum that does not match is CHECKSUM_MISMATCH; any other
 * reason (INVALID_BLOCK_TOKEN, UNRELATED_SNAPSHOTS, ...) is permanent.
 */
function sortValidation(message: string): Sort {
  if (/failed to read block data/i.test(message)) return UNAVAILABLE;
  if (/checksum/i.test(message) && /match/i.test(message)) return { code: ErrorCodes.CHECKSUM_MISMATCH, retryable: false };
  return REJECTED;
}

function sortByStatus(httpStatus: number | undefined, fault: unknown): Sort {
  if (httpStatus === 429) return THROTTLED;
  if ((httpStatus !== undefined && httpStatus >= 500) || fault === 'server') return UNAVAILABLE;
  if (httpStatus === 401 || httpStatus === 403) return { code: ErrorCodes.ACCESS_DENIED, retryable: false, hint: CREDENTIALS_HINT };
  if (httpStatus === 404) return NOT_FOUND;
  if (httpStatus === 409) return CONFLICT;
  return REJECTED;
}
