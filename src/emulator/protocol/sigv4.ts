import type { IncomingHttpHeaders } from 'node:http';

/**
 * The credential scope of a SigV4-signed request: who signed it, for which
 * Region and service. This is the one place that reads the Authorization
 * header (or the presigned-URL query). Signatures are parsed, not verified.
 */
export interface CredentialScope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';

/**
 * The scope from `Authorization: AWS4-HMAC-SHA256 Credential=AK/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`,
 * or from the `X-Amz-Credential` query parameter of a presigned URL.
 * Undefined when the request is not SigV4-signed or the header is malformed.
 */
export function credentialScopeOf(headers: IncomingHttpHeaders, query?: URLSearchParams): CredentialScope | undefined {
  const authorization = headers.authorization;
  if (authorization !== undefined) return parseAuthorization(authorization);
  const credential = query?.get('X-Amz-Credential');
  if (credential === null || credential === undefined) return undefined;
  return scopeFrom(credential, (query?.get('X-Amz-SignedHeaders') ?? '').split(';'), query?.get('X-Amz-Signature') ?? '');
}

export function parseAuthorization(header: string): CredentialScope | undefined {
  if (!header.startsWith(ALGORITHM)) return undefined;
  let credential: string | undefined;
  let signedHeaders: string[] = [];
  let signature = '';
  for (const part of header.slice(ALGORITHM.length).split(',')) {
    const trimmed = part.trim();
    const eq = trimmed.indexOf('=');
    if (eq < 0) continue;
    const key = trimmed.slice(0, eq);
    const value = trimmed.slice(eq + 1);
    if (key === 'Credential') credential = value;
    else if (key === 'SignedHeaders') signedHeaders = value.split(';');
    else if (key === 'Signature') signature = value;
  }
  return credential === undefined ? undefined : scopeFrom(credential, signedHeaders, signature);
}

function scopeFrom(credential: string, signedHeaders: string[], signature: string): CredentialScope | undefined {
  // The access key id itself never contains '/', so the last four parts are the scope.
  const parts = credential.split('/');
  if (parts.length < 5 || parts[parts.length - 1] !== 'aws4_request') return undefined;
  const [service, region, date] = [parts[parts.length - 2]!, parts[parts.length - 3]!, parts[parts.length - 4]!];
  const accessKeyId = parts.slice(0, parts.length - 4).join('/');
  if (!accessKeyId || !service || !region || !date) return undefined;
  return { accessKeyId, date, region, service, signedHeaders, signature };
}
