import type { STSClient } from '@aws-sdk/client-sts';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { fromAwsError } from './errors.js';
import { stsSdk } from './sdk.js';

export interface AssumeRoleSettings {
  roleArn: string;
  /** The external id the role's trust policy asks for. */
  externalId?: string;
  /** Default "snapline". */
  sessionName?: string;
  /** Default 3600 (STS allows 900 up to the role's maximum). */
  durationSeconds?: number;
}

/** Temporary credentials as the SDK takes them. */
export interface TemporaryCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
}

export type TemporaryCredentialsProvider = () => Promise<TemporaryCredentials>;

export const DEFAULT_ROLE_SESSION_NAME = 'snapline';
const DEFAULT_DURATION_SECONDS = 3600;
/** Credentials are renewed this long before they expire. */
const RENEW_BEFORE_MS = 5 * 60_000;

/**
 * A credentials provider for the SDK clients: the role's credentials from STS
 * AssumeRole, called through `sts` (a client holding the base credentials).
 * They are kept until five minutes before they expire; callers that ask at
 * the same time share one AssumeRole call; a failed call is not kept, so the
 * next request tries again. The expiry handed out is on this host's clock
 * (STS's, less the STS client's clock offset), so a host whose clock is off
 * still renews in time. Failures are SnaplineErrors naming the role (never
 * the credentials).
 */
export function assumedRoleCredentials(sts: STSClient, role: AssumeRoleSettings, now: () => number = Date.now): TemporaryCredentialsProvider {
  let current: TemporaryCredentials | undefined;
  let pending: Promise<TemporaryCredentials> | undefined;
  const assume = async (): Promise<TemporaryCredentials> => {
    let out;
    try {
      out = await sts.send(
        new (stsSdk().AssumeRoleCommand)({
          RoleArn: role.roleArn,
          RoleSessionName: role.sessionName ?? DEFAULT_ROLE_SESSION_NAME,
          DurationSeconds: role.durationSeconds ?? DEFAULT_DURATION_SECONDS,
          ...(role.externalId === undefined ? {} : { ExternalId: role.externalId }),
        }),
      );
    } catch (err) {
      const error = fromAwsError(err, 'sts:AssumeRole');
      throw new SnaplineError(error.code, `cannot assume role ${role.roleArn}: ${error.message}`, {
        retryable: error.retryable,
        hint: error.hint,
        details: { ...error.details, roleArn: role.roleArn },
        cause: err,
      });
    }
    const c = out.Credentials;
    if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !(c.Expiration instanceof Date)) {
      throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `cannot assume role ${role.roleArn}: STS answered without credentials`);
    }
    // STS states the expiry on its own clock; the SDK (and the renewal below) judge it on this host's. The STS client's
    // clock offset, taken from the Date header of this very answer, turns one into the other.
    const offset = (sts.config as { systemClockOffset?: number } | undefined)?.systemClockOffset ?? 0;
    return { accessKeyId: c.AccessKeyId, secretAccessKey: c.SecretAccessKey, sessionToken: c.SessionToken, expiration: new Date(c.Expiration.getTime() - offset) };
  };
  return () => {
    if (current !== undefined && current.expiration.getTime() - RENEW_BEFORE_MS > now()) return Promise.resolve(current);
    pending ??= assume().then(
      (credentials) => {
        current = credentials;
        pending = undefined;
        return credentials;
      },
      (err: unknown) => {
        pending = undefined;
        throw err;
      },
    );
    return pending;
  };
}
