import { childOf, childrenOf, XmlSyntaxError } from '../core/xml-read.js';
import { ErrorCodes, SnaplineError, type ErrorCode } from '../errors.js';
import type { AwsClients } from './clients.js';
import { fromAwsError } from './errors.js';
import { ebsSdk, s3Sdk, stsSdk } from './sdk.js';

export type ProbeOutcome = 'reachable' | 'permission denied' | 'wrong endpoint' | 'unreachable' | 'failed';

export interface ProbeResult {
  service: 'sts' | 'ec2' | 'ebs' | 's3';
  /** The IAM action of the call, e.g. "sts:GetCallerIdentity". */
  action: string;
  /** The endpoint called; "AWS" for the service's public endpoint. */
  endpoint: string;
  outcome: ProbeOutcome;
  /** What was learnt (the account, the error), in one line; never a secret. */
  detail: string;
  /** The snapline error code when the outcome is not reachable. */
  code?: ErrorCode;
}

/** A snapshot id in the right format that no account holds. */
export const PROBE_SNAPSHOT_ID = 'snap-00000000000000000';

/** Error names of a server that does not speak the service's API: another service, or no AWS API at all. */
const FOREIGN_NAMES = new Set(['UnknownOperationException', 'UnknownServiceException', 'InvalidAction', 'SyntaxError', 'ForeignEndpoint']);
/** Names the SDK gives an error answer that names no error code: AWS always names one. */
const UNNAMED = new Set(['Unknown', 'UnknownError']);
/** Names the SDK makes up from the HTTP status (S3 HEAD answers have no body); AWS sends a request id with them. */
const STATUS_NAMES = new Set(['Error', 'NotFound', 'Forbidden', 'BadRequest']);

/**
 * One cheap call per service, all at once, each classified: reachable (the
 * service answered as itself, including the expected "no such snapshot" from
 * EBS), permission denied, wrong endpoint (something answered, but not that
 * service's API), unreachable (refused, no route, TLS failure) or failed.
 * `bucket`: HeadBucket on it instead of ListBuckets. Never throws for a
 * failed call; the results come in the order of `services`.
 */
export async function probeServices(clients: AwsClients, services: readonly ProbeResult['service'][], bucket?: string): Promise<ProbeResult[]> {
  return Promise.all(services.map((service) => PROBES[service](clients, bucket)));
}

type Probe = (clients: AwsClients, bucket?: string) => Promise<ProbeResult>;

const PROBES: Record<ProbeResult['service'], Probe> = {
  sts: (clients) =>
    probe(clients, 'sts', 'sts:GetCallerIdentity', async () => {
      const out = await clients.sts().send(new (stsSdk().GetCallerIdentityCommand)({}));
      return out.Account === undefined ? undefined : `account ${out.Account}, ${out.Arn ?? 'no ARN'}`;
    }),
  ec2: (clients) =>
    probe(clients, 'ec2', 'ec2:DescribeSnapshots', async () => {
      const answer = await clients.ec2Requests().call('DescribeSnapshots', { 'Owner.1': 'self', MaxResults: '5' });
      const snapshots = answer.name === 'DescribeSnapshotsResponse' ? childOf(answer, 'snapshotSet') : undefined;
      return snapshots === undefined ? undefined : `DescribeSnapshots answered (${childrenOf(snapshots, 'item').length} on the first page)`;
    }),
  ebs: (clients) =>
    probe(
      clients,
      'ebs',
      'ebs:ListSnapshotBlocks',
      async () => {
        await clients.ebs().send(new (ebsSdk().ListSnapshotBlocksCommand)({ SnapshotId: PROBE_SNAPSHOT_ID, MaxResults: 100 }));
        return `ListSnapshotBlocks answered for ${PROBE_SNAPSHOT_ID}`;
      },
      // The expected answer: the service knows the call, and the snapshot does not exist.
      (name) => name === 'ResourceNotFoundException' || name === 'ValidationException',
    ),
  s3: (clients, bucket) =>
    bucket === undefined
      ? probe(clients, 's3', 's3:ListAllMyBuckets', async () => {
          const out = await clients.s3().send(new (s3Sdk().ListBucketsCommand)({}));
          return out.Buckets === undefined && out.Owner === undefined ? undefined : `ListBuckets answered (${out.Buckets?.length ?? 0} buckets)`;
        })
      : probe(
          clients,
          's3',
          's3:ListBucket',
          async () => {
            const out = await clients.s3().send(new (s3Sdk().HeadBucketCommand)({ Bucket: bucket }));
            return out.$metadata.requestId === undefined ? undefined : `bucket ${bucket} exists`;
          },
          () => false,
          (code) => (code === ErrorCodes.NOT_FOUND ? `bucket ${bucket} does not exist` : undefined),
        ),
};

/**
 * Runs `call` and classifies the outcome. `call` returns what it learnt, or
 * undefined when the answer was a success in HTTP terms but not that
 * service's answer. `expected(name)` marks AWS errors that still prove the
 * service answered; `explain(code)` may say a failure in the probe's terms.
 */
async function probe(
  clients: AwsClients,
  service: ProbeResult['service'],
  action: string,
  call: () => Promise<string | undefined>,
  expected: (name: string) => boolean = () => false,
  explain: (code: ErrorCode) => string | undefined = () => undefined,
): Promise<ProbeResult> {
  const base = { service, action, endpoint: clients.endpointFor(service) ?? 'AWS' };
  try {
    const learnt = await call();
    if (learnt === undefined) return { ...base, outcome: 'wrong endpoint', detail: `a success, but not an answer of the ${service} API`, code: ErrorCodes.ENDPOINT_UNREACHABLE };
    return { ...base, outcome: 'reachable', detail: learnt };
  } catch (err) {
    const shaped = (answerErrorOf(err) ?? {}) as { name?: unknown; message?: unknown; $metadata?: { requestId?: unknown; httpStatusCode?: unknown } };
    const name = typeof shaped.name === 'string' ? shaped.name : 'Error';
    const status = typeof shaped.$metadata?.httpStatusCode === 'number' ? shaped.$metadata.httpStatusCode : undefined;
    if (expected(name)) return { ...base, outcome: 'reachable', detail: `${name}, as expected for ${PROBE_SNAPSHOT_ID}` };
    const error = fromAwsError(err, action);
    const deserialization = (typeof shaped.message === 'string' && shaped.message.includes('Deserialization error')) || answerErrorOf(err) instanceof XmlSyntaxError;
    if (FOREIGN_NAMES.has(name) || UNNAMED.has(name) || deserialization || (STATUS_NAMES.has(name) && status !== undefined && shaped.$metadata?.requestId === undefined)) {
      const seen = name === 'ForeignEndpoint' && typeof shaped.message === 'string' ? shaped.message : `HTTP ${status ?? '?'} ${name}`;
      return { ...base, outcome: 'wrong endpoint', detail: `${seen}: not an answer of the ${service} API`, code: ErrorCodes.ENDPOINT_UNREACHABLE };
    }
    const outcome: ProbeOutcome =
      error.code === ErrorCodes.ACCESS_DENIED ? 'permission denied' : error.code === ErrorCodes.ENDPOINT_UNREACHABLE ? 'unreachable' : 'failed';
    return { ...base, outcome, detail: explain(error.code) ?? error.message, code: error.code };
  }
}

/** The service's error answer behind `err`: the SDK's error itself, or the one a direct request's SnaplineError was made from. */
function answerErrorOf(err: unknown): unknown {
  let inner = err;
  while (inner instanceof SnaplineError && inner.cause !== undefined) inner = inner.cause;
  return inner;
}
