import { createHash } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { checksumHeaderOf } from '../protocol/flexible-checksums.js';
import { headerOf, send, type Exchange } from '../protocol/http.js';
import { S3Errors } from './errors.js';
import { ACCOUNT_ID } from '../snapshots.js';
import type { ObjectAttributes, S3Bucket, S3Catalog } from '../store/s3-catalog.js';
import { element, textElement, xmlDocument } from '../protocol/xml.js';
import { parseXml, type XmlNode } from '../../core/xml-read.js';

export const S3_NAMESPACE = 'http://s3.amazonaws.com/doc/2006-03-01/';
export const OWNER_INNER = textElement('ID', ACCOUNT_ID.padStart(64, '0')) + textElement('DisplayName', 'snapline');
export const OWNER = element('Owner', OWNER_INNER);

/**
 * The storage classes a general purpose bucket takes (PutObject,
 * x-amz-storage-class); GLACIER and DEEP_ARCHIVE need a restore before
 * reads. EXPRESS_ONEZONE (directory buckets), OUTPOSTS, SNOW and the FSX
 * classes belong to other kinds of bucket and are refused here.
 */
export const STORAGE_CLASSES = ['STANDARD', 'REDUCED_REDUNDANCY', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER', 'DEEP_ARCHIVE', 'GLACIER_IR'] as const;
export const ARCHIVED_CLASSES: ReadonlySet<string> = new Set(['GLACIER', 'DEEP_ARCHIVE']);

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;

/** Answers an S3 XML document with the request id headers. */
export function sendS3Xml(exchange: Exchange, status: number, root: string, inner: string, headers: OutgoingHttpHeaders = {}): void {
  send(exchange, status, { 'content-type': 'application/xml', 'x-amz-request-id': exchange.requestId, ...headers }, xmlDocument(root, S3_NAMESPACE, inner));
}

/** Answers without a body (204, or 200 for HEAD and PUT). */
export function sendS3Empty(exchange: Exchange, status: number, headers: OutgoingHttpHeaders = {}): void {
  send(exchange, status, { 'x-amz-request-id': exchange.requestId, ...headers });
}

/** The bucket, or NoSuchBucket. */
export function requireBucket(catalog: S3Catalog, name: string): S3Bucket {
  const bucket = catalog.bucket(name);
  if (bucket === undefined) throw S3Errors.noSuchBucket(name);
  return bucket;
}

/** Keys are 1 to 1024 bytes of UTF-8. */
export function checkKey(key: string): void {
  const size = Buffer.byteLength(key);
  if (size > 1024) throw S3Errors.keyTooLong(size);
}

/** x-amz-storage-class of a write, STANDARD when absent; InvalidStorageClass for anything else this endpoint does not serve. */
export function storageClassOf(headers: IncomingHttpHeaders): string {
  const value = headerOf(headers, 'x-amz-storage-class');
  if (value === undefined) return 'STANDARD';
  if (!(STORAGE_CLASSES as readonly string[]).includes(value)) throw S3Errors.invalidStorageClass(value);
  return value;
}

/** Headers stored with an object and given back as they were sent on GetObject and HeadObject. */
const ECHOED = ['content-type', 'content-disposition', 'content-language', 'cache-control', 'expires', 'x-amz-website-redirect-location'];

/**
 * What a write (PutObject, CreateMultipartUpload) asks to keep with the
 * object: content headers, x-amz-meta-* (at most 2 KB), and server-side
 * encryption: SSE-S3 (the default), SSE-KMS as named, or SSE-C, whose key
 * is checked against its MD5 and then only its MD5 kept. Bytes are stored
 * unencrypted whatever is asked. Content-Encoding loses aws-chunked, which
 * only describes the transfer.
 */
export function objectAttributesOf(headers: IncomingHttpHeaders): ObjectAttributes {
  const kept: Record<string, string> = {};
  for (const name of ECHOED) {
    const value = headerOf(headers, name);
    if (value !== undefined) kept[name] = value;
  }
  kept['content-type'] ??= 'binary/octet-stream';
  const encoding = (headerOf(headers, 'content-encoding') ?? '')
    .split(',')
    .map((coding) => coding.trim())
    .filter((coding) => coding !== '' && coding !== 'aws-chunked');
  if (encoding.length > 0) kept['content-encoding'] = encoding.join(',');
  let metadataSize = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('x-amz-meta-') || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(',') : value;
    kept[name] = text;
    metadataSize += Buffer.byteLength(name.slice('x-amz-meta-'.length)) + Buffer.byteLength(text);
  }
  if (metadataSize > 2048) throw S3Errors.metadataTooLarge(metadataSize);

  const attributes: ObjectAttributes = { headers: kept };
  const ssecKeyMd5 = customerKeyMd5Of(headers);
  const sse = headerOf(headers, 'x-amz-server-side-encryption');
  if (ssecKeyMd5 !== undefined) {
    if (sse !== undefined) throw S3Errors.invalidArgument('Server Side Encryption with Customer provided key is incompatible with the encryption method specified', 'x-amz-server-side-encryption', sse);
    attributes.ssecKeyMd5 = ssecKeyMd5;
    return attributes;
  }
  if (sse !== undefined && !['AES256', 'aws:kms', 'aws:kms:dsse'].includes(sse)) {
    throw S3Errors.invalidArgument('The encryption method specified is not supported', 'x-amz-server-side-encryption', sse);
  }
  kept['x-amz-server-side-encryption'] = sse ?? 'AES256';
  const kmsKey = headerOf(headers, 'x-amz-server-side-encryption-aws-kms-key-id');
  if (kmsKey !== undefined) {
    if (!sse?.startsWith('aws:kms')) throw S3Errors.invalidArgument('Specifying a KMS key id requires aws:kms encryption', 'x-amz-server-side-encryption-aws-kms-key-id', kmsKey);
    kept['x-amz-server-side-encryption-aws-kms-key-id'] = kmsKey;
  }
  return attributes;
}

/**
 * The MD5 (base64) of the SSE-C key a request carries, after checking the
 * three x-amz-server-side-encryption-customer-* headers; undefined without
 * them. Throws InvalidArgument the way S3 does for bad ones.
 */
export function customerKeyMd5Of(headers: IncomingHttpHeaders): string | undefined {
  const algorithm = headerOf(headers, 'x-amz-server-side-encryption-customer-algorithm');
  const key = headerOf(headers, 'x-amz-server-side-encryption-customer-key');
  const keyMd5 = headerOf(headers, 'x-amz-server-side-encryption-customer-key-md5');
  if (algorithm === undefined && key === undefined && keyMd5 === undefined) return undefined;
  if (algorithm === undefined || key === undefined || keyMd5 === undefined) {
    throw S3Errors.invalidArgument(
      'Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key, its MD5 and the algorithm.',
    );
  }
  if (algorithm !== 'AES256') throw S3Errors.invalidArgument('The encryption algorithm specified is not supported', 'x-amz-server-side-encryption-customer-algorithm', algorithm);
  const raw = Buffer.from(key, 'base64');
  if (raw.length !== 32) throw S3Errors.invalidArgument('The secret key was invalid for the specified algorithm.', 'x-amz-server-side-encryption-customer-key', '');
  if (createHash('md5').update(raw).digest('base64') !== keyMd5) {
    throw S3Errors.invalidArgument('The calculated MD5 hash of the key did not match the hash that was provided.', 'x-amz-server-side-encryption-customer-key-md5', keyMd5);
  }
  return keyMd5;
}

/**
 * Checks the SSE-C key of a read or a part upload against the object's or
 * upload's: required when it has one (InvalidRequest), the same one (403
 * AccessDenied for a read, InvalidRequest for a part), refused when it has
 * none (InvalidRequest).
 */
export function checkCustomerKey(headers: IncomingHttpHeaders, stored: string | undefined, use: 'read' | 'part'): void {
  const given = customerKeyMd5Of(headers);
  if (stored === undefined) {
    if (given !== undefined) throw S3Errors.invalidRequest('The encryption parameters are not applicable to this object.');
    return;
  }
  if (given === undefined) {
    throw S3Errors.invalidRequest(
      use === 'read'
        ? 'The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.'
        : 'The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.',
    );
  }
  if (given !== stored) {
    if (use === 'read') throw S3Errors.accessDenied();
    throw S3Errors.invalidRequest('The provided encryption parameters did not match the ones used originally.');
  }
}

/** Encryption headers of an answer: the stored SSE ones, or the SSE-C algorithm and key MD5. */
export function encryptionHeadersOf(attributes: ObjectAttributes): Record<string, string> {
  if (attributes.ssecKeyMd5 !== undefined) {
    return {
      'x-amz-server-side-encryption-customer-algorithm': 'AES256',
      'x-amz-server-side-encryption-customer-key-md5': attributes.ssecKeyMd5,
    };
  }
  const out: Record<string, string> = {};
  for (const name of ['x-amz-server-side-encryption', 'x-amz-server-side-encryption-aws-kms-key-id']) {
    const value = attributes.headers[name];
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** x-amz-checksum-ALGORITHM and x-amz-checksum-type of an object that has a checksum. */
export function checksumHeadersOf(attributes: ObjectAttributes): Record<string, string> {
  if (attributes.checksumAlgorithm === undefined || attributes.checksum === undefined) return {};
  return { [checksumHeaderOf(attributes.checksumAlgorithm)]: attributes.checksum, 'x-amz-checksum-type': attributes.checksumType ?? 'FULL_OBJECT' };
}

/** S3's timestamps in XML: ISO 8601 with milliseconds. */
export function isoTime(ms: number): string {
  return new Date(ms).toISOString();
}

/** A quoted ETag from an MD5 digest. */
export function etagOf(md5: Buffer): string {
  return `"${md5.toString('hex')}"`;
}

/** An integer query parameter within bounds, the default when absent; InvalidArgument otherwise. */
export function integerParam(query: Map<string, string>, name: string, fallback: number, min: number, max: number): number {
  const text = query.get(name);
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || value < min) throw S3Errors.invalidArgument(`Provided ${name} not valid.`, name, text);
  return Math.min(value, max);
}

/** encoding-type=url: S3 percent-encodes keys and prefixes in the answer. */
export function encodingOf(query: Map<string, string>): ((text: string) => string) | undefined {
  const type = query.get('encoding-type');
  if (type === undefined) return undefined;
  if (type !== 'url') throw S3Errors.invalidArgument('Invalid Encoding Method specified in Request', 'encoding-type', type);
  return (text) => encodeURIComponent(text).replace(/%2F/g, '/');
}
/** Parses a request body as XML with the given root element; MalformedXML otherwise. */
export function parseS3Xml(body: Buffer, root: string): XmlNode {
  let node: XmlNode;
  try {
    node = parseXml(body.toString('utf8'));
  } catch {
    throw S3Errors.malformedXml();
  }
  if (node.name !== root) throw S3Errors.malformedXml();
  return node;
}

