import { createHash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import { AwsError } from '../protocol/aws-error.js';
import { checksumHeaderOf, checksumOfBytes, CHECKSUM_ALGORITHMS } from '../protocol/flexible-checksums.js';
import { ClientGone, headerOf, readBody, send, type Exchange } from '../protocol/http.js';
import { receiveObjectBody } from './body.js';
import { S3Error, S3Errors } from './errors.js';
import { S3Multipart } from './multipart.js';
import type { S3Route } from './routes.js';
import {
  ARCHIVED_CLASSES,
  checkCustomerKey,
  checkKey,
  checksumHeadersOf,
  encodingOf,
  encryptionHeadersOf,
  etagOf,
  GIB,
  integerParam,
  isoTime,
  objectAttributesOf,
  OWNER,
  parseS3Xml,
  requireBucket,
  S3_NAMESPACE,
  sendS3Empty,
  sendS3Xml,
  storageClassOf,
} from './shared.js';
import type { BlobFiles } from '../store/blob-files.js';
import type { S3Catalog, S3Object } from '../store/s3-catalog.js';
import { isTier, type Tier, type TierDelays } from '../tiers.js';
import { element, escapeXml, textElement, xmlDocument } from '../protocol/xml.js';
import { childOf, childrenOf, childText } from '../../core/xml-read.js';

const MAX_PUT_SIZE = 5 * GIB;
/** Restore tiers from slowest to fastest: an in-progress restore may be upgraded to a faster one. */
const TIER_SPEED: Readonly<Record<Tier, number>> = { Bulk: 0, Standard: 1, Expedited: 2 };
const DAY_MS = 24 * 60 * 60 * 1000;
const LEGACY_REGION = 'us-east-1';
/** Keys read from the catalog per query while listing. */
const LIST_BATCH = 1000;

export interface S3Config {
  catalog: S3Catalog;
  blobs: BlobFiles;
  /** Epoch ms: object times, restore progress and expiry. */
  now: () => number;
  /** How long a restore of each tier takes. */
  restoreDelays: TierDelays;
}

/**
 * The S3 subset over REST-XML: buckets, objects in the STANDARD, GLACIER,
 * DEEP_ARCHIVE and GLACIER_IR storage classes with restores, listings and
 * multipart uploads (s3-multipart.ts). Errors are S3's `<Error>` documents
 * (no body for HEAD). Bytes live in files, metadata in the catalog.
 */
export class S3Api {
  readonly #config: S3Config;
  readonly #multipart: S3Multipart;

  constructor(config: S3Config) {
    this.#config = config;
    this.#multipart = new S3Multipart(config.catalog, config.blobs, config.now);
  }

  /** Answers one S3 request. Rethrows only unexpected failures, after answering 500. */
  async handle(route: S3Route, exchange: Exchange): Promise<void> {
    try {
      await this.#dispatch(route, exchange);
    } catch (err) {
      if (err instanceof ClientGone) return;
      sendS3Failure(exchange, err instanceof AwsError ? err : S3Errors.internal());
      if (!(err instanceof AwsError)) throw err;
    }
  }

  async #dispatch(route: S3Route, exchange: Exchange): Promise<void> {
    const { bucket, key, query } = route;
    switch (route.operation) {
      case 'S3MethodNotAllowed':
        throw S3Errors.methodNotAllowed(route.what);
      case 'S3NotImplemented':
        throw S3Errors.notImplemented(route.what);
      case 'ListBuckets':
        return this.#listBuckets(query, exchange);
      case 'CreateBucket':
        return this.#createBucket(bucket, exchange);
      case 'HeadBucket': {
        const found = requireBucket(this.#config.catalog, bucket);
        return sendS3Empty(exchange, 200, { 'x-amz-bucket-region': found.region, 'x-amz-access-point-alias': 'false' });
      }
      case 'DeleteBucket':
        return this.#deleteBucket(bucket, exchange);
      case 'GetBucketLocation': {
        const found = requireBucket(this.#config.catalog, bucket);
        const constraint = found.region === LEGACY_REGION ? '' : found.region;
        return send(exchange, 200, { 'content-type': 'application/xml', 'x-amz-request-id': exchange.requestId }, xmlDocument('LocationConstraint', S3_NAMESPACE, escapeXml(constraint)));
      }
      case 'ListObjects':
      case 'ListObjectsV2':
        return this.#listObjects(bucket, query, exchange, route.operation === 'ListObjectsV2');
      case 'DeleteObjects':
        return this.#deleteObjects(bucket, exchange);
      case 'PutObject':
        return this.#putObject(bucket, key, exchange);
      case 'GetObject':
      case 'HeadObject':
        return this.#getObject(bucket, key, query, exchange, route.operation === 'HeadObject');
      case 'DeleteObject':
        requireBucket(this.#config.catalog, bucket);
        this.#config.blobs.remove(this.#config.catalog.deleteObject(bucket, key));
        return sendS3Empty(exchange, 204);
      case 'RestoreObject':
        return this.#restoreObject(bucket, key, exchange);
      case 'CreateMultipartUpload':
      case 'UploadPart':
      case 'CompleteMultipartUpload':
      case 'AbortMultipartUpload':
      case 'ListParts':
      case 'ListMultipartUploads':
        return this.#multipart.handle(route.operation, bucket, key, query, exchange);
    }
  }

  // ---- buckets --------------------------------------------------------------

  #listBuckets(query: Map<string, string>, exchange: Exchange): void {
    const prefix = query.get('prefix') ?? '';
    const max = integerParam(query, 'max-buckets', 10_000, 1, 10_000);
    const after = query.has('continuation-token') ? decodeToken(query.get('continuation-token')!).after : '';
    const matching = this.#config.catalog.buckets().filter((b) => b.name.startsWith(prefix) && b.name > after);
    const page = matching.slice(0, max);
    const buckets = page.map((b) => element('Bucket', textElement('Name', b.name) + textElement('CreationDate', isoTime(b.createdAt)) + textElement('BucketRegion', b.region)));
    const next = matching.length > max ? encodeToken({ after: page[page.length - 1]!.name }) : undefined;
    const inner = OWNER + element('Buckets', buckets.join('')) + textElement('ContinuationToken', next) + (query.has('prefix') ? textElement('Prefix', prefix) : '');
    sendS3Xml(exchange, 200, 'ListAllMyBucketsResult', inner);
  }

  async #createBucket(name: string, exchange: Exchange): Promise<void> {
    checkBucketName(name);
    const body = await readBody(exchange.req, exchange.stats);
    let constraint: string | undefined;
    if (body.length > 0) constraint = childText(parseS3Xml(body, 'CreateBucketConfiguration'), 'LocationConstraint') || undefined;
    const region = constraint ?? LEGACY_REGION;
    if (region !== exchange.region) {
      const message =
        constraint === undefined
          ? 'The unspecified location constraint is incompatible for the region specific endpoint this request was sent to.'
          : `The ${constraint} location constraint is incompatible for the region specific endpoint this request was sent to.`;
      throw new S3Error(400, 'IllegalLocationConstraintException', message);
    }
    const { catalog, now } = this.#config;
    if (!catalog.createBucket(name, region, now())) {
      // For compatibility, S3 in us-east-1 answers success to the owner re-creating a bucket there.
      if (region !== LEGACY_REGION || requireBucket(catalog, name).region !== LEGACY_REGION) throw S3Errors.bucketAlreadyOwnedByYou(name);
    }
    sendS3Empty(exchange, 200, { location: `/${name}` });
  }

  #deleteBucket(name: string, exchange: Exchange): void {
    requireBucket(this.#config.catalog, name);
    const { outcome, files } = this.#config.catalog.deleteBucket(name);
    if (outcome === 'not-empty') throw S3Errors.bucketNotEmpty(name);
    this.#config.blobs.remove(files);
    sendS3Empty(exchange, 204);
  }

  // ---- objects --------------------------------------------------------------

  async #putObject(bucket: string, key: string, exchange: Exchange): Promise<void> {
    const { catalog, blobs, now } = this.#config;
    requireBucket(catalog, bucket);
    checkKey(key);
    const headers = exchange.req.headers;
    const storageClass = storageClassOf(headers);
    const attributes = objectAttributesOf(headers);
    const body = await receiveObjectBody(exchange, blobs, { maxBytes: MAX_PUT_SIZE });
    if (body.checksum !== undefined) {
      attributes.checksumAlgorithm = body.checksum.algorithm;
      attributes.checksumType = 'FULL_OBJECT';
      attributes.checksum = body.checksum.value;
    }
    const etag = etagOf(body.blob.md5);
    const replaced = catalog.putObject({ bucket, key, size: body.blob.size, etag, storageClass, lastModified: now(), attributes }, body.blob);
    if (replaced === undefined) {
      blobs.remove([body.blob.name]);
      throw S3Errors.noSuchBucket(bucket);
    }
    blobs.remove(replaced);
    sendS3Empty(exchange, 200, { etag, ...encryptionHeadersOf(attributes), ...checksumHeadersOf(attributes) });
  }

  async #getObject(bucket: string, key: string, query: Map<string, string>, exchange: Exchange, head: boolean): Promise<void> {
    const { catalog, blobs, now } = this.#config;
    requireBucket(catalog, bucket);
    const object = catalog.object(bucket, key);
    if (object === undefined) throw S3Errors.noSuchKey(key);
    const headers = exchange.req.headers;
    checkCustomerKey(headers, object.attributes.ssecKeyMd5, 'read');
    const restore = restoreStateOf(object, now());
    if (!head && ARCHIVED_CLASSES.has(object.storageClass) && restore.state !== 'restored') throw S3Errors.invalidObjectState(object.storageClass);

    const rangeHeader = headerOf(headers, 'range');
    const range = parseRange(rangeHeader, object.size);
    if (range === 'unsatisfiable') throw S3Errors.invalidRange(rangeHeader!, object.size);
    const start = range?.start ?? 0;
    const end = range?.end ?? object.size - 1;
    const out: OutgoingHttpHeaders = {
      'x-amz-request-id': exchange.requestId,
      'last-modified': new Date(object.lastModified).toUTCString(),
      etag: object.etag,
      'accept-ranges': 'bytes',
      ...object.attributes.headers,
      ...encryptionHeadersOf(object.attributes),
      ...responseOverrides(query),
      'content-length': end - start + 1,
    };
    if (object.storageClass !== 'STANDARD') out['x-amz-storage-class'] = object.storageClass;
    if (restore.header !== undefined) out['x-amz-restore'] = restore.header;
    if (range !== undefined) out['content-range'] = `bytes ${start}-${end}/${object.size}`;
    if (range === undefined && headerOf(headers, 'x-amz-checksum-mode') === 'ENABLED') Object.assign(out, checksumHeadersOf(object.attributes));
    if (object.attributes.partsCount !== undefined) out['x-amz-mp-parts-count'] = object.attributes.partsCount;
    const status = range === undefined ? 200 : 206;
    if (head) {
      exchange.res.writeHead(status, out);
      exchange.res.end();
      return;
    }
    exchange.res.writeHead(status, out);
    try {
      exchange.stats.bytesOut += await blobs.copyRange(catalog.files(object.content), start, end, exchange.res);
    } catch {
      // The object went away under the read, or the client did: nothing more to say.
      exchange.stats.errors += 1;
      exchange.res.destroy();
    }
  }

  async #deleteObjects(bucket: string, exchange: Exchange): Promise<void> {
    const { catalog, blobs } = this.#config;
    requireBucket(catalog, bucket);
    const headers = exchange.req.headers;
    const body = await readBody(exchange.req, exchange.stats);
    checkBodyIntegrity(headers, body);
    const root = parseS3Xml(body, 'Delete');
    const objects = childrenOf(root, 'Object');
    if (objects.length === 0 || objects.length > 1000) throw S3Errors.malformedXml();
    const quiet = childText(root, 'Quiet') === 'true';
    let results = '';
    const keys = objects.map((object) => {
      const key = childOf(object, 'Key');
      if (key === undefined) throw S3Errors.malformedXml();
      return key.text;
    });
    for (const key of keys) {
      blobs.remove(catalog.deleteObject(bucket, key));
      if (!quiet) results += element('Deleted', textElement('Key', key));
    }
    sendS3Xml(exchange, 200, 'DeleteResult', results);
  }

  async #restoreObject(bucket: string, key: string, exchange: Exchange): Promise<void> {
    const { catalog, now, restoreDelays } = this.#config;
    requireBucket(catalog, bucket);
    const body = await readBody(exchange.req, exchange.stats);
    const object = catalog.object(bucket, key);
    if (object === undefined) throw S3Errors.noSuchKey(key);
    const request = parseS3Xml(body, 'RestoreRequest');
    if (childText(request, 'Type') === 'SELECT') throw S3Errors.notImplemented('RestoreObject of type SELECT');
    // Intelligent-Tiering objects sit in an access tier read at once (this endpoint has no archive tiers configured).
    if (object.storageClass === 'INTELLIGENT_TIERING') throw S3Errors.alreadyInActiveTier();
    if (!ARCHIVED_CLASSES.has(object.storageClass)) throw S3Errors.restoreNotAllowed(object.storageClass);
    const daysText = childText(request, 'Days');
    const days = Number(daysText);
    if (daysText === undefined || !/^\d+$/.test(daysText)) throw S3Errors.malformedXml();
    if (days < 1) throw S3Errors.invalidArgument('Days must be 1 or more.', 'Days', daysText);
    const jobParameters = childOf(request, 'GlacierJobParameters');
    const tierText = (jobParameters === undefined ? childText(request, 'Tier') : childText(jobParameters, 'Tier')) ?? 'Standard';
    if (!isTier(tierText)) throw S3Errors.malformedXml();
    const tier: Tier = tierText;
    if (tier === 'Expedited' && object.storageClass === 'DEEP_ARCHIVE') {
      throw S3Errors.invalidArgument('Expedited retrieval is not available for the DEEP_ARCHIVE storage class.', 'Tier', tier);
    }

    const at = now();
    const state = restoreStateOf(object, at);
    if (state.state === 'ongoing') {
      // A faster tier upgrades the restore under way (it finishes by the faster tier's time); the same or a slower one is refused.
      if (TIER_SPEED[tier] <= TIER_SPEED[object.restore!.tier]) throw S3Errors.restoreInProgress();
      const doneAt = Math.min(object.restore!.doneAt, at + restoreDelays[tier]);
      catalog.setRestore(bucket, key, { tier, doneAt, expiresAt: expiryAfter(doneAt, days) });
      return sendS3Empty(exchange, 202);
    }
    if (state.state === 'restored') {
      // A restored copy gets a new expiry counted from now.
      catalog.setRestore(bucket, key, { ...object.restore!, expiresAt: expiryAfter(at, days) });
      return sendS3Empty(exchange, 200);
    }
    const doneAt = at + restoreDelays[tier];
    catalog.setRestore(bucket, key, { tier, doneAt, expiresAt: expiryAfter(doneAt, days) });
    sendS3Empty(exchange, 202);
  }

  // ---- listings -------------------------------------------------------------

  #listObjects(bucket: string, query: Map<string, string>, exchange: Exchange, v2: boolean): void {
    const { catalog, now } = this.#config;
    requireBucket(catalog, bucket);
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const maxKeys = integerParam(query, 'max-keys', 1000, 0, 1000);
    const encode = encodingOf(query);
    const show = (text: string) => (encode === undefined ? text : encode(text));
    const token = v2 ? query.get('continuation-token') : undefined;
    const startAfter = v2 ? query.get('start-after') : query.get('marker');
    let cursor: ListCursor;
    if (token !== undefined) {
      const decoded = decodeToken(token);
      cursor = decoded.prefix === true ? { from: successorOf(decoded.after), inclusive: true } : { from: decoded.after, inclusive: false };
    } else {
      cursor = startAfter ? { from: startAfter, inclusive: false } : { from: prefix, inclusive: true };
    }
    const page = listPage(catalog, bucket, prefix, delimiter, maxKeys, cursor);

    const withOwner = !v2 || query.get('fetch-owner') === 'true';
    const wantsRestore = (headerOf(exchange.req.headers, 'x-amz-optional-object-attributes') ?? '').includes('RestoreStatus');
    const at = now();
    const contents = page.objects.map((object) => {
      const restore = wantsRestore ? restoreStatusElement(object, at) : '';
      const checksum = object.attributes.checksumAlgorithm === undefined ? '' : textElement('ChecksumAlgorithm', object.attributes.checksumAlgorithm) + textElement('ChecksumType', object.attributes.checksumType);
      return element(
        'Contents',
        textElement('Key', show(object.key)) +
          textElement('LastModified', isoTime(object.lastModified)) +
          textElement('ETag', object.etag) +
          checksum +
          textElement('Size', object.size) +
          textElement('StorageClass', object.storageClass) +
          (withOwner ? OWNER : '') +
          restore,
      );
    });
    const prefixes = page.commonPrefixes.map((p) => element('CommonPrefixes', textElement('Prefix', show(p))));
    const last = page.last;
    let inner = textElement('Name', bucket) + textElement('Prefix', show(prefix));
    if (v2) {
      inner += textElement('KeyCount', page.objects.length + page.commonPrefixes.length) + (token === undefined ? '' : textElement('ContinuationToken', token));
      if (page.truncated && last !== undefined) inner += textElement('NextContinuationToken', encodeToken(last));
      if (startAfter !== undefined && token === undefined) inner += textElement('StartAfter', show(startAfter));
    } else {
      inner += textElement('Marker', show(startAfter ?? ''));
      if (page.truncated && delimiter !== undefined && last !== undefined) inner += textElement('NextMarker', show(last.after));
    }
    inner +=
      textElement('MaxKeys', maxKeys) +
      (delimiter === undefined ? '' : textElement('Delimiter', show(delimiter))) +
      (encode === undefined ? '' : textElement('EncodingType', 'url')) +
      textElement('IsTruncated', page.truncated) +
      contents.join('') +
      prefixes.join('');
    sendS3Xml(exchange, 200, 'ListBucketResult', inner);
  }
}

/** Serializes an S3 error: `<Error><Code/><Message/>extra fields<RequestId/></Error>`, no body for HEAD. */
export function sendS3Failure(exchange: Exchange, error: AwsError): void {
  let extra = '';
  if (error instanceof S3Error) for (const [name, value] of Object.entries(error.fields)) extra += textElement(name, value);
  sendS3Error(exchange, error.status, error.code, error.message, extra);
}

export function sendS3Error(exchange: Exchange, status: number, code: string, message: string, extra = ''): void {
  const inner = textElement('Code', code) + textElement('Message', message) + extra + textElement('RequestId', exchange.requestId);
  const headers: OutgoingHttpHeaders = { 'content-type': 'application/xml', 'x-amz-request-id': exchange.requestId };
  if (exchange.req.method === 'HEAD') send(exchange, status, headers);
  else send(exchange, status, headers, xmlDocument('Error', undefined, inner));
}

/**
 * Bodies that S3 requires an integrity header for (DeleteObjects): Content-MD5
 * or an x-amz-checksum-* header, checked against the body.
 */
function checkBodyIntegrity(headers: Exchange['req']['headers'], body: Buffer): void {
  const md5 = headerOf(headers, 'content-md5');
  const algorithm = CHECKSUM_ALGORITHMS.find((a) => headers[checksumHeaderOf(a)] !== undefined);
  if (md5 === undefined && algorithm === undefined) throw S3Errors.invalidRequest('Missing required header for this request: Content-MD5');
  if (md5 !== undefined && createHash('md5').update(body).digest('base64') !== md5) {
    throw S3Errors.badDigest('The Content-MD5 you specified did not match what we received.');
  }
  if (algorithm !== undefined && checksumOfBytes(algorithm, body) !== headerOf(headers, checksumHeaderOf(algorithm))) {
    throw S3Errors.badDigest(`The ${algorithm} you specified did not match the calculated checksum.`);
  }
}

/** Prefixes and suffixes the general purpose bucket naming rules reserve (S3 User Guide, "General purpose bucket naming rules"). */
const RESERVED_BUCKET_PREFIXES = ['xn--', 'sthree-', 'amzn-s3-demo-'];
const RESERVED_BUCKET_SUFFIXES = ['-s3alias', '--ol-s3', '.mrap', '--x-s3', '--table-s3'];

/** Bucket names: 3-63 of a-z 0-9 . -, starting and ending with a letter or digit, no '..', not an IP address, no reserved prefix or suffix. */
function checkBucketName(name: string): void {
  const valid =
    /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) &&
    !name.includes('..') &&
    !/^\d+\.\d+\.\d+\.\d+$/.test(name) &&
    !RESERVED_BUCKET_PREFIXES.some((prefix) => name.startsWith(prefix)) &&
    !RESERVED_BUCKET_SUFFIXES.some((suffix) => name.endsWith(suffix));
  if (!valid) throw S3Errors.invalidBucketName(name);
}

/** GetObject's response-* query parameters, which override the stored headers of that name. */
function responseOverrides(query: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of ['content-type', 'content-language', 'expires', 'cache-control', 'content-disposition', 'content-encoding']) {
    const value = query.get(`response-${name}`);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

// ---- restores -----------------------------------------------------------------

type RestoreState = { state: 'none' | 'ongoing' | 'restored'; header?: string };

/** Where an object's restore stands at `now`; an expired restore is none (the copy is gone). */
export function restoreStateOf(object: S3Object, now: number): RestoreState {
  const restore = object.restore;
  if (restore === null || now >= restore.expiresAt) return { state: 'none' };
  if (now < restore.doneAt) return { state: 'ongoing', header: 'ongoing-request="true"' };
  return { state: 'restored', header: `ongoing-request="false", expiry-date="${new Date(restore.expiresAt).toUTCString()}"` };
}

function restoreStatusElement(object: S3Object, now: number): string {
  const restore = restoreStateOf(object, now);
  if (restore.state === 'none') return '';
  return element(
    'RestoreStatus',
    textElement('IsRestoreInProgress', restore.state === 'ongoing') + (restore.state === 'restored' ? textElement('RestoreExpiryDate', isoTime(object.restore!.expiresAt)) : ''),
  );
}

/** S3 rounds a restored copy's expiry up to the next midnight UTC after `days` days. */
function expiryAfter(from: number, days: number): number {
  const end = from + days * DAY_MS;
  return Math.ceil(end / DAY_MS) * DAY_MS;
}

// ---- ranges -------------------------------------------------------------------

/**
 * One `bytes=` range resolved against the size. Undefined when absent or not
 * a single well-formed range (S3 then sends the whole object);
 * 'unsatisfiable' when it starts past the end.
 */
export function parseRange(text: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  const match = text === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(text.trim());
  if (match === null) return undefined;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end: last === '' ? size - 1 : Math.min(Number(last), size - 1) };
}

// ---- listing ------------------------------------------------------------------

interface ListCursor {
  from: string;
  inclusive: boolean;
}

/** Where the next page starts: after a key, or after every key under a common prefix. */
interface ListToken {
  after: string;
  prefix?: boolean;
}

interface ListPage {
  objects: S3Object[];
  commonPrefixes: string[];
  truncated: boolean;
  /** The last entry given, for the next page's token. */
  last?: ListToken;
}

/**
 * One page of a listing: keys under `prefix` from the cursor on, keys that
 * contain the delimiter after the prefix rolled up into common prefixes
 * (each counting as one entry), at most maxKeys entries.
 */
function listPage(catalog: S3Catalog, bucket: string, prefix: string, delimiter: string | undefined, maxKeys: number, start: ListCursor): ListPage {
  const page: ListPage = { objects: [], commonPrefixes: [], truncated: false };
  if (maxKeys === 0) return page;
  let cursor = Buffer.compare(Buffer.from(start.from), Buffer.from(prefix)) < 0 ? { from: prefix, inclusive: true } : start;
  for (;;) {
    const batch = catalog.objectsFrom(bucket, cursor.from, cursor.inclusive, LIST_BATCH);
    if (batch.length === 0) return page;
    let reseek = false;
    for (const object of batch) {
      if (!object.key.startsWith(prefix)) return page;
      const at = delimiter === undefined ? -1 : object.key.indexOf(delimiter, prefix.length);
      const common = at < 0 ? undefined : object.key.slice(0, at + delimiter!.length);
      // A common prefix up to an exclusive start (a marker that names it) belongs to an earlier page.
      const given = common !== undefined && !start.inclusive && Buffer.compare(Buffer.from(common), Buffer.from(start.from)) <= 0;
      if (!given && page.objects.length + page.commonPrefixes.length === maxKeys) {
        page.truncated = true;
        return page;
      }
      if (common !== undefined) {
        if (!given) {
          page.commonPrefixes.push(common);
          page.last = { after: common, prefix: true };
        }
        cursor = { from: successorOf(common), inclusive: true };
        reseek = true;
        break;
      }
      page.objects.push(object);
      page.last = { after: object.key };
      cursor = { from: object.key, inclusive: false };
    }
    if (!reseek && batch.length < LIST_BATCH) return page;
  }
}

/** The least string that sorts after every string starting with `prefix`. */
function successorOf(prefix: string): string {
  const chars = [...prefix];
  while (chars.length > 0) {
    const last = chars.pop()!.codePointAt(0)!;
    if (last < 0x10ffff) return chars.join('') + String.fromCodePoint(last === 0xd7ff ? 0xe000 : last + 1);
  }
  return '\u{10ffff}'.repeat(prefix.length + 1);
}

function encodeToken(token: ListToken): string {
  return Buffer.from(JSON.stringify(token)).toString('base64');
}

function decodeToken(text: string): ListToken {
  try {
    const token = JSON.parse(Buffer.from(text, 'base64').toString('utf8')) as ListToken;
    if (typeof token.after === 'string') return token;
  } catch {
    // answered below
  }
  throw S3Errors.invalidArgument('The continuation token provided is incorrect', 'continuation-token', text);
}
