import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { safeDecode } from './http.js';
import type { CredentialScope } from './sigv4.js';

/**
 * SigV4 signature checking (AWS Signature Version 4, header form) as the
 * AWS General Reference describes it: canonical request, string to sign,
 * derived signing key, HMAC-SHA256. Pure functions of the request as it
 * arrived on the wire; no state, no clock (RequestAuthenticator checks the
 * request date against the endpoint's clock).
 */

const ALGORITHM = 'AWS4-HMAC-SHA256';

/** Payload hash values that stand for a body left out of the signature. */
export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';

/** The parts of a request the signature covers. */
export interface SignedRequest {
  method: string;
  /** The path as sent, still percent-encoded. */
  rawPath: string;
  /** The query string as sent, without '?'. */
  rawQuery: string;
  /** Alternating names and values, as Node's IncomingMessage.rawHeaders. */
  rawHeaders: string[];
}

export function signedRequestOf(req: IncomingMessage, rawPath: string, rawQuery: string): SignedRequest {
  return { method: req.method ?? 'GET', rawPath, rawQuery, rawHeaders: req.rawHeaders };
}

/** RFC 3986 percent-encoding of everything but the unreserved characters, as SigV4 asks. */
function escapeUri(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The canonical URI. Every service but S3 normalizes the path (empty, '.'
 * and '..' segments) and encodes the already-encoded path once more; S3 uses
 * the path as sent.
 */
function canonicalUri(rawPath: string, service: string): string {
  if (service === 's3') return rawPath === '' ? '/' : rawPath;
  const segments: string[] = [];
  for (const segment of rawPath.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') segments.pop();
    else segments.push(segment);
  }
  const trailing = segments.length > 0 && rawPath.endsWith('/') ? '/' : '';
  return escapeUri(`/${segments.join('/')}${trailing}`).replace(/%2F/g, '/');
}

/** Parameters decoded and encoded again the SigV4 way, sorted by name then value. */
function canonicalQuery(rawQuery: string): string {
  if (rawQuery === '') return '';
  const pairs: Array<[string, string]> = [];
  for (const part of rawQuery.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = escapeUri(safeDecode(eq < 0 ? part : part.slice(0, eq)));
    const value = escapeUri(safeDecode(eq < 0 ? '' : part.slice(eq + 1)));
    pairs.push([name, value]);
  }
  pairs.sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return pairs.map(([name, value]) => `${name}=${value}`).join('&');
}

/** Values of one header in arrival order, each trimmed with inner runs of spaces collapsed, joined by ','. */
function headerValue(rawHeaders: string[], name: string): string | undefined {
  const values: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!.trim().replace(/\s+/g, ' '));
  }
  return values.length === 0 ? undefined : values.join(',');
}

export function canonicalRequestOf(request: SignedRequest, scope: CredentialScope, payloadHash: string): string {
  const names = [...scope.signedHeaders].map((name) => name.toLowerCase()).sort();
  const headers = names.map((name) => `${name}:${headerValue(request.rawHeaders, name) ?? ''}\n`).join('');
  return [request.method, canonicalUri(request.rawPath, scope.service), canonicalQuery(request.rawQuery), headers, names.join(';'), payloadHash].join('\n');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** The signature a holder of `secretAccessKey` computes for the request. */
export function expectedSignature(request: SignedRequest, scope: CredentialScope, payloadHash: string, amzDate: string, secretAccessKey: string): string {
  const credentialScope = `${scope.date}/${scope.region}/${scope.service}/aws4_request`;
  const canonicalHash = createHash('sha256').update(canonicalRequestOf(request, scope, payloadHash), 'utf8').digest('hex');
  const stringToSign = `${ALGORITHM}\n${amzDate}\n${credentialScope}\n${canonicalHash}`;
  const dateKey = hmac(`AWS4${secretAccessKey}`, scope.date);
  const signingKey = hmac(hmac(hmac(dateKey, scope.region), scope.service), 'aws4_request');
  return hmac(signingKey, stringToSign).toString('hex');
}

/** Constant-time comparison of two hex signatures. */
export function signaturesMatch(expected: string, given: string): boolean {
  const a = Buffer.from(expected, 'utf8');
  const b = Buffer.from(given.toLowerCase(), 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The request time the signature was made for: x-amz-date (ISO 8601 basic), undefined when absent or malformed. */
export function amzDateOf(rawHeaders: string[]): string | undefined {
  const value = headerValue(rawHeaders, 'x-amz-date');
  return value !== undefined && /^\d{8}T\d{6}Z$/.test(value) ? value : undefined;
}

/** The payload hash the client declared (x-amz-content-sha256), if any. */
export function declaredPayloadHash(rawHeaders: string[]): string | undefined {
  return headerValue(rawHeaders, 'x-amz-content-sha256');
}

export function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}
