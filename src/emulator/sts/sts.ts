import { createHash } from 'node:crypto';
import { AwsError } from '../protocol/aws-error.js';
import { headerOf, sendXml, type Exchange } from '../protocol/http.js';
import { SessionCredentials, type RoleSession } from './session-credentials.js';
import { credentialScopeOf } from '../protocol/sigv4.js';
import { ACCOUNT_ID } from '../snapshots.js';
import { element, textElement, xmlDocument } from '../protocol/xml.js';

const STS_NAMESPACE = 'https://sts.amazonaws.com/doc/2011-06-15/';

/** The STS API version, which tells an unsigned STS query request from an EC2 one. */
export const STS_VERSION = '2011-06-15';

/** AssumeRole's DurationSeconds: the API allows 900 to 43200 (12 hours). */
const MIN_DURATION_SECONDS = 900;
const MAX_DURATION_SECONDS = 43_200;
/** DurationSeconds when the request leaves it out. */
const DEFAULT_DURATION_SECONDS = 3600;
/**
 * The MaxSessionDuration of the endpoint's roles: one hour, what IAM gives a
 * role created without one. A longer DurationSeconds is refused, as AWS
 * refuses it for such a role.
 */
export const ROLE_MAX_SESSION_SECONDS = 3600;

/** AssumeRole's member constraints (STS API reference, AssumeRole, Request Parameters). */
const ROLE_SESSION_NAME = /^[\w+=,.@-]*$/;
const EXTERNAL_ID = /^[\w+=,.@:/-]*$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;

export interface StsOptions {
  /** Epoch ms: credential expiry. */
  now: () => number;
  /** The credentials issued are those the authenticator accepts (its own SessionCredentials); without auth, any. */
  sessions?: SessionCredentials;
}

/**
 * STS over the query protocol (XML answers nested in `<ActionResult>`):
 * GetCallerIdentity (the endpoint's one account, or the assumed role of
 * temporary credentials it issued) and AssumeRole (every role of the
 * request's ARN exists and trusts the caller; its MaxSessionDuration is
 * ROLE_MAX_SESSION_SECONDS). Never throws.
 */
export class StsApi {
  readonly #now: () => number;
  readonly #sessions: SessionCredentials;

  constructor(options: StsOptions) {
    this.#now = options.now;
    this.#sessions = options.sessions ?? new SessionCredentials();
  }

  handle(action: string, params: URLSearchParams, exchange: Exchange): void {
    try {
      if (action === 'GetCallerIdentity') return this.#getCallerIdentity(exchange);
      if (action === 'AssumeRole') return this.#assumeRole(params, exchange);
      throw new AwsError(400, 'InvalidAction', `Could not find operation ${action} for version ${STS_VERSION}`);
    } catch (err) {
      if (!(err instanceof AwsError)) throw err;
      sendStsError(exchange, err);
    }
  }

  #getCallerIdentity(exchange: Exchange): void {
    const session = this.#sessionOf(exchange);
    const [arn, userId, account] =
      session === undefined
        ? [`arn:aws:iam::${ACCOUNT_ID}:user/snapline`, 'AIDASNAPLINELOCALUSER', ACCOUNT_ID]
        : [assumedRoleArn(session.roleArn, session.sessionName), `${roleIdOf(session.roleArn)}:${session.sessionName}`, ROLE_ARN.exec(session.roleArn)![1]!];
    const result = element('GetCallerIdentityResult', textElement('Arn', arn) + textElement('UserId', userId) + textElement('Account', account));
    sendStsResult(exchange, 'GetCallerIdentity', result);
  }

  #assumeRole(params: URLSearchParams, exchange: Exchange): void {
    const roleArn = params.get('RoleArn');
    const sessionName = params.get('RoleSessionName');
    const durationText = params.get('DurationSeconds');
    const externalId = params.get('ExternalId');
    const problems: string[] = [];
    const constraint = (value: string | null, member: string, rule: string) =>
      problems.push(`Value ${value === null ? 'null' : `'${value}'`} at '${member}' failed to satisfy constraint: Member must ${rule}`);
    if (roleArn === null) constraint(null, 'roleArn', 'not be null');
    else if (roleArn.length < 20 || roleArn.length > 2048) constraint(roleArn, 'roleArn', 'have length between 20 and 2048');
    if (sessionName === null) constraint(null, 'roleSessionName', 'not be null');
    else if (sessionName.length < 2 || sessionName.length > 64) constraint(sessionName, 'roleSessionName', 'have length between 2 and 64');
    else if (!ROLE_SESSION_NAME.test(sessionName)) constraint(sessionName, 'roleSessionName', 'satisfy regular expression pattern: [\\w+=,.@-]*');
    const duration = durationText === null ? DEFAULT_DURATION_SECONDS : Number(durationText);
    if (durationText !== null && (!/^\d+$/.test(durationText) || duration < MIN_DURATION_SECONDS)) {
      constraint(durationText, 'durationSeconds', `have value greater than or equal to ${MIN_DURATION_SECONDS}`);
    } else if (duration > MAX_DURATION_SECONDS) {
      constraint(durationText, 'durationSeconds', `have value less than or equal to ${MAX_DURATION_SECONDS}`);
    }
    if (externalId !== null) {
      if (externalId.length < 2 || externalId.length > 1224) constraint(externalId, 'externalId', 'have length between 2 and 1224');
      else if (!EXTERNAL_ID.test(externalId)) constraint(externalId, 'externalId', 'satisfy regular expression pattern: [\\w+=,.@:\\/-]*');
    }
    if (problems.length > 0) {
      throw validationError(`${problems.length} validation error${problems.length === 1 ? '' : 's'} detected: ${problems.join('; ')}`);
    }
    if (!ROLE_ARN.test(roleArn!)) throw validationError(`${roleArn} is not the ARN of an IAM role (arn:aws:iam::ACCOUNT:role/NAME).`);
    if (duration > ROLE_MAX_SESSION_SECONDS) throw validationError('The requested DurationSeconds exceeds the MaxSessionDuration set for this role.');

    const issued = this.#sessions.issue(roleArn!, sessionName!, this.#now() + duration * 1000);
    const credentials = element(
      'Credentials',
      textElement('AccessKeyId', issued.accessKeyId) +
        textElement('SecretAccessKey', issued.secretAccessKey) +
        textElement('SessionToken', issued.sessionToken) +
        textElement('Expiration', new Date(issued.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z')),
    );
    const user = element('AssumedRoleUser', textElement('AssumedRoleId', `${roleIdOf(roleArn!)}:${sessionName!}`) + textElement('Arn', assumedRoleArn(roleArn!, sessionName!)));
    sendStsResult(exchange, 'AssumeRole', element('AssumeRoleResult', credentials + user));
  }

  /** The role session of the request's temporary credentials, when this endpoint issued them. */
  #sessionOf(exchange: Exchange): RoleSession | undefined {
    const token = headerOf(exchange.req.headers, 'x-amz-security-token');
    const scope = credentialScopeOf(exchange.req.headers);
    return token === undefined || scope === undefined ? undefined : this.#sessions.open(scope.accessKeyId, token);
  }
}

function validationError(message: string): AwsError {
  return new AwsError(400, 'ValidationError', message);
}

/** arn:aws:sts::ACCOUNT:assumed-role/ROLE-NAME/SESSION of a role ARN already checked. */
function assumedRoleArn(roleArn: string, sessionName: string): string {
  const [, account, name] = ROLE_ARN.exec(roleArn)!;
  return `arn:aws:sts::${account}:assumed-role/${name}/${sessionName}`;
}

/** A stable role id (AROA...) for a role ARN. */
function roleIdOf(roleArn: string): string {
  return `AROA${createHash('sha256').update(roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
}

function sendStsResult(exchange: Exchange, action: string, result: string): void {
  const metadata = element('ResponseMetadata', textElement('RequestId', exchange.requestId));
  sendXml(exchange, 200, xmlDocument(`${action}Response`, STS_NAMESPACE, result + metadata));
}

export function sendStsError(exchange: Exchange, error: AwsError): void {
  const type = error.status >= 500 ? 'Receiver' : 'Sender';
  const inner = element('Error', textElement('Type', type) + textElement('Code', error.code) + textElement('Message', error.message));
  sendXml(exchange, error.status, xmlDocument('ErrorResponse', STS_NAMESPACE, inner + textElement('RequestId', exchange.requestId)));
}
