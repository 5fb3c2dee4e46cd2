import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { AccessKey } from '../protocol/access-keys.js';

/** Temporary credentials as STS AssumeRole hands them out. */
export interface IssuedCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** Epoch ms on the endpoint's clock. */
  expiresAt: number;
}

/** Who a session token stands for. */
export interface RoleSession {
  roleArn: string;
  sessionName: string;
  expiresAt: number;
  secretAccessKey: string;
}

interface TokenPayload {
  /** The session's access key id. */
  k: string;
  r: string;
  s: string;
  e: number;
}

/**
 * The temporary credentials of STS AssumeRole, kept by nobody: the session
 * token carries the access key id, role, session name and expiry, sealed
 * with an HMAC of the endpoint's key, and the secret key is derived from the
 * access key id with the same key. So any endpoint with the same key checks
 * them, across restarts, without a table. The key is derived from the
 * configured access keys (--auth), or random when there are none (nothing is
 * checked then).
 */
export class SessionCredentials {
  readonly #key: Buffer;

  constructor(keys: readonly AccessKey[] = []) {
    if (keys.length === 0) {
      this.#key = randomBytes(32);
    } else {
      const lines = keys.map((key) => `${key.accessKeyId}:${key.secretAccessKey}`).sort();
      this.#key = createHash('sha256').update(`snapline session credentials\n${lines.join('\n')}`).digest();
    }
  }

  issue(roleArn: string, sessionName: string, expiresAt: number): IssuedCredentials {
    const accessKeyId = `ASIA${randomBytes(10).toString('hex').toUpperCase()}`;
    const payload = Buffer.from(JSON.stringify({ k: accessKeyId, r: roleArn, s: sessionName, e: expiresAt } satisfies TokenPayload)).toString('base64url');
    return { accessKeyId, secretAccessKey: this.#secretOf(accessKeyId), sessionToken: `${payload}.${this.#seal(payload)}`, expiresAt };
  }

  /** The session of a token this key issued for `accessKeyId`; undefined for any other token. Expiry is the caller's to check. */
  open(accessKeyId: string, token: string): RoleSession | undefined {
    const dot = token.indexOf('.');
    if (dot < 0) return undefined;
    const payload = token.slice(0, dot);
    const seal = Buffer.from(token.slice(dot + 1), 'base64url');
    const expected = Buffer.from(this.#seal(payload), 'base64url');
    if (seal.length !== expected.length || !timingSafeEqual(seal, expected)) return undefined;
    const parsed = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as TokenPayload;
    if (parsed.k !== accessKeyId) return undefined;
    return { roleArn: parsed.r, sessionName: parsed.s, expiresAt: parsed.e, secretAccessKey: this.#secretOf(accessKeyId) };
  }

  #seal(payload: string): string {
    return createHmac('sha256', this.#key).update(`token\n${payload}`).digest('base64url');
  }

  #secretOf(accessKeyId: string): string {
    return createHmac('sha256', this.#key).update(`secret\n${accessKeyId}`).digest('base64').slice(0, 40);
  }
}
