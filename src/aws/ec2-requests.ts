import type http from 'node:http';
import type { EBSClient } from '@aws-sdk/client-ebs';
import { childOf, childText, parseXml, type XmlNode } from '../core/xml-read.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { AdaptiveLimiter, retried, type RetryClock } from './retry.js';
import { answerText, type BlockTransport, type ClientConfig, type Endpoint, endpointOfUrl, header, SignedRequests } from './signed-requests.js';

/** The EC2 API version the query requests speak. */
const EC2_VERSION = '2016-11-15';
/** Bytes of an answer kept (a DescribeSnapshots answer of 200 snapshots with tags is well under this). */
const ANSWER_LIMIT = 16 * 1024 * 1024;
/** The SDK's standard attempts, the first included: what the EC2 client made when the connection names none. */
const SDK_DEFAULT_ATTEMPTS = 3;

export interface Ec2RetrySettings {
  /** Attempts per call for retryable errors, the first included (the connection's retries.max_attempts); default the SDK's 3. */
  maxAttempts?: number | undefined;
  /** How long one call may go on being throttled. */
  throttleBudgetMs: number;
  /** Where the backoff is waited; default the system's. */
  clock?: RetryClock | undefined;
  /** Calls in flight at once. */
  concurrency: number;
}

export interface Ec2CallOptions {
  /** Ends the request in flight and the retries when it aborts (the call fails INTERRUPTED). */
  signal?: AbortSignal | undefined;
}

/** What the EC2 stores ask of DirectEc2Requests. */
export type Ec2Calls = Pick<DirectEc2Requests, 'call'>;

/**
 * EC2 query-protocol calls (form-encoded Action=...&Version=2016-11-15, XML
 * answers) as direct signed requests on the SDK clients' sockets, so that a
 * run never loads the EC2 SDK package (about half a second of CPU) for its
 * few snapshot bookkeeping calls. Signed by the EBS client's signer for the
 * service `ec2`: the same credentials (the role's, when one is assumed),
 * Region and clock offset as every other request of the connection.
 * Endpoint: the connection's EC2 endpoint, else AWS's for the Region (the EBS
 * client's endpoint rules with EC2's host name). Each call is retried as the
 * SDK client retried it: retryable errors (5xx, timeouts, broken
 * connections) up to maxAttempts, throttling for the throttle budget, a
 * signing-time refusal once after the clock is corrected; errors are mapped
 * by fromAwsError as on the SDK path.
 */
export class DirectEc2Requests {
  readonly #requests: SignedRequests;
  readonly #limiter: AdaptiveLimiter;
  readonly #retries: Ec2RetrySettings;

  constructor(ebs: EBSClient, transport: BlockTransport, endpointUrl: string | undefined, retries: Ec2RetrySettings) {
    const config = ebs.config as unknown as ClientConfig;
    const endpoint = endpointUrl === undefined ? () => awsEc2Endpoint(config) : async () => endpointOfUrl(new URL(endpointUrl));
    this.#requests = new SignedRequests(config, transport, endpoint, 'ec2');
    this.#limiter = new AdaptiveLimiter(retries.concurrency);
    this.#retries = retries;
  }

  /**
   * Calls `action` with `params` (query-protocol names: SnapshotId.1,
   * Tag.1.Key...) and answers the root element of its XML answer. Whether a
   * call may be repeated is the caller's to know: every retryable failure is
   * retried.
   */
  call(action: string, params: Record<string, string>, options: Ec2CallOptions = {}): Promise<XmlNode> {
    const iamAction = `ec2:${action}`;
    const body = Buffer.from(new URLSearchParams({ Action: action, Version: EC2_VERSION, ...params }).toString(), 'utf8');
    const headers = { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', 'content-length': String(body.byteLength) };
    const policy = {
      maxAttempts: this.#retries.maxAttempts ?? SDK_DEFAULT_ATTEMPTS,
      throttleBudgetMs: this.#retries.throttleBudgetMs,
    };
    const attempt = () =>
      this.#requests.send(iamAction, `${action}Command`, { method: 'POST', path: '/', headers, body }, options, async (response) => {
        const text = await answerText(response, ANSWER_LIMIT);
        if (response.statusCode !== 200) throw ec2ErrorOf(response, text, iamAction);
        return answerOf(text, iamAction);
      });
    return retried(iamAction, attempt, {
      limiter: this.#limiter,
      policy,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      ...(this.#retries.clock === undefined ? {} : { clock: this.#retries.clock }),
    });
  }
}

/**
 * AWS's EC2 endpoint for the EBS client's Region and FIPS and dual-stack
 * settings. EC2's endpoint rules give the host EBS's give, with `ec2` for
 * `ebs`, except FIPS in the aws-us-gov partition without dual-stack, where
 * EC2's FIPS endpoint is its usual one (ec2.us-gov-west-1.amazonaws.com).
 */
export async function awsEc2Endpoint(config: ClientConfig): Promise<Endpoint> {
  const region = await config.region();
  const fips = await config.useFipsEndpoint();
  const dualStack = await config.useDualstackEndpoint();
  const { url } = config.endpointProvider({ Region: region, UseFIPS: fips, UseDualStack: dualStack });
  const match = /^ebs(-fips)?\.(.+)$/.exec(url.hostname);
  if (match === null) throw new SnaplineError(ErrorCodes.INTERNAL, `no EC2 endpoint follows from the EBS endpoint ${url.href}`);
  const fipsLabel = match[1] !== undefined && !(region.startsWith('us-gov-') && !dualStack);
  const ec2 = new URL(url.href);
  ec2.hostname = `${fipsLabel ? 'ec2-fips' : 'ec2'}.${match[2]}`;
  return endpointOfUrl(ec2);
}

/** The answer's root element; an answer that is not XML is REMOTE_REJECTED. */
function answerOf(text: string, action: string): XmlNode {
  try {
    return parseXml(text);
  } catch (err) {
    throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${action}: the answer is not XML`, { cause: err });
  }
}

/**
 * An EC2 error answer (<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>)
 * as the SDK shapes it for fromAwsError: the name from Code, the message,
 * the status, the request id and the fault side. A body that says nothing
 * (a proxy's page, empty) leaves the status to speak.
 */
function ec2ErrorOf(response: http.IncomingMessage, text: string, action: string): Error {
  let error: XmlNode | undefined;
  let requestId: string | undefined;
  try {
    const root = parseXml(text);
    error = childOf(childOf(root, 'Errors') ?? root, 'Error');
    requestId = childText(root, 'RequestID') ?? childText(root, 'RequestId');
  } catch {
    // Not XML: the status speaks.
  }
  const status = response.statusCode ?? 0;
  const code = error === undefined ? undefined : childText(error, 'Code');
  const message = (error === undefined ? undefined : childText(error, 'Message')) || `${action} answered HTTP ${status}`;
  return Object.assign(new Error(message), {
    name: code || 'UnknownError',
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: requestId ?? header(response, 'x-amzn-requestid'), attempts: 1 },
  });
}
