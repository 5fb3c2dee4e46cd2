import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { AwsError } from './aws-error.js';
import type { OperationStats } from '../stats.js';

/** One request being answered, with the counters of its operation. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Path without the query string. */
  path: string;
  /** The raw query string (without '?'), possibly empty. */
  query: string;
  region: string;
  requestId: string;
  stats: OperationStats;
}

export function newRequestId(): string {
  return randomUUID();
}

/** Largest non-block body accepted (JSON and form requests). */
const SMALL_BODY_LIMIT = 1024 * 1024;

/** Bodies read before their handler ran (to check a signature), kept for the handler's readBody. */
const keptBodies = new WeakMap<IncomingMessage, Buffer>();

/** Keeps a body already read from `req`, so that the next readBody of `req` answers it. */
export function keepReadBody(req: IncomingMessage, body: Buffer): void {
  keptBodies.set(req, body);
}

/**
 * Reads a whole small body. Rejects with AwsError 413 past `limit` bytes, and
 * with an Error when the client goes away before the end.
 */
export function readBody(req: IncomingMessage, stats: OperationStats, limit = SMALL_BODY_LIMIT): Promise<Buffer> {
  const kept = keptBodies.get(req);
  if (kept !== undefined) {
    keptBodies.delete(req);
    stats.bytesIn += kept.length;
    return Promise.resolve(kept);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      stats.bytesIn += chunk.length;
      if (length <= limit) chunks.push(chunk);
    });
    req.on('end', () => {
      if (length > limit) reject(new AwsError(413, 'RequestEntityTooLarge', `the request body is larger than ${limit} bytes`));
      else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length));
    });
    req.on('close', () => {
      if (!req.complete) reject(new ClientGone());
    });
  });
}

/** The client closed the connection before its request was read: nobody to answer. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection');
  }
}

/**
 * Query parameters of a REST request. Values are percent-decoded without
 * turning '+' into a space: the SDKs percent-encode '+', and base64 tokens
 * contain it. A malformed escape keeps the raw text.
 */
export function restQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  if (query === '') return params;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    params.set(safeDecode(key), safeDecode(value));
  }
  return params;
}

/** The value of a request header, the first one when it is repeated. */
export function headerOf(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** decodeURIComponent that keeps the raw text when the escapes are malformed. */
export function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Sends a complete answer and counts it. */
export function send(exchange: Exchange, status: number, headers: OutgoingHttpHeaders, body?: Buffer | string): void {
  const { res, stats } = exchange;
  if (res.headersSent || res.destroyed) return;
  const length = body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length;
  stats.bytesOut += length;
  if (status >= 400) stats.errors += 1;
  headers['content-length'] = length;
  res.writeHead(status, headers);
  res.end(body);
}

export function sendJson(exchange: Exchange, status: number, value: unknown, headers: OutgoingHttpHeaders = {}): void {
  send(exchange, status, { 'content-type': 'application/json', 'x-amzn-requestid': exchange.requestId, ...headers }, JSON.stringify(value));
}

export function sendXml(exchange: Exchange, status: number, xml: string): void {
  send(exchange, status, { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': exchange.requestId }, xml);
}

/** Destroys the connection without an answer (a fault, or nothing left to say). */
export function dropConnection(exchange: Exchange): void {
  exchange.stats.errors += 1;
  exchange.req.socket.destroy();
}
