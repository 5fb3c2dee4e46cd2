import { createHash, randomBytes } from 'node:crypto';
import { checksumElementOf, checksumHeaderOf, checksummerOf, isChecksumAlgorithm, type ChecksumAlgorithm } from '../protocol/flexible-checksums.js';
import { headerOf, readBody, type Exchange } from '../protocol/http.js';
import { receiveObjectBody } from './body.js';
import { S3Errors } from './errors.js';
import type { S3Operation } from './routes.js';
import {
  checkCustomerKey,
  checkKey,
  checksumHeadersOf,
  encodingOf,
  encryptionHeadersOf,
  etagOf,
  GIB,
  integerParam,
  isoTime,
  MIB,
  objectAttributesOf,
  OWNER,
  OWNER_INNER,
  parseS3Xml,
  requireBucket,
  sendS3Empty,
  sendS3Xml,
  storageClassOf,
} from './shared.js';
import type { BlobFiles } from '../store/blob-files.js';
import type { ChecksumType, ObjectAttributes, S3Catalog, S3Part, S3Upload } from '../store/s3-catalog.js';
import { element, textElement } from '../protocol/xml.js';
import { childOf, childrenOf, childText } from '../../core/xml-read.js';

const MIN_PART_SIZE = 5 * MIB;
const MAX_PART_SIZE = 5 * GIB;
const MAX_PARTS = 10_000;
const MAX_OBJECT_SIZE = 5 * 1024 * GIB;

/** Checksum types each algorithm allows on a multipart upload; the first is the default. */
const CHECKSUM_TYPES: Record<ChecksumAlgorithm, ChecksumType[]> = {
  CRC32: ['COMPOSITE', 'FULL_OBJECT'],
  CRC32C: ['COMPOSITE', 'FULL_OBJECT'],
  CRC64NVME: ['FULL_OBJECT'],
  SHA1: ['COMPOSITE'],
  SHA256: ['COMPOSITE'],
};

/**
 * S3 multipart uploads: CreateMultipartUpload, UploadPart,
 * CompleteMultipartUpload (parts ascending, ETags and checksums matching,
 * each part's checksum listed for a COMPOSITE upload, every part but the
 * last at least 5 MiB; ETag = MD5 of the parts' MD5s
 * with "-N"), AbortMultipartUpload, ListParts, ListMultipartUploads.
 * Completion moves the parts' files into the object without copying.
 * Handlers throw S3 errors; S3Api answers them.
 */
export class S3Multipart {
  constructor(
    private readonly catalog: S3Catalog,
    private readonly blobs: BlobFiles,
    private readonly now: () => number,
  ) {}

  async handle(operation: S3Operation, bucket: string, key: string, query: Map<string, string>, exchange: Exchange): Promise<void> {
    requireBucket(this.catalog, bucket);
    switch (operation) {
      case 'CreateMultipartUpload':
        return this.#create(bucket, key, exchange);
      case 'UploadPart':
        return this.#uploadPart(bucket, key, query, exchange);
      case 'CompleteMultipartUpload':
        return this.#complete(bucket, key, query, exchange);
      case 'AbortMultipartUpload': {
        const files = this.catalog.abortUpload(this.#upload(bucket, key, query).uploadId);
        this.blobs.remove(files ?? []);
        return sendS3Empty(exchange, 204);
      }
      case 'ListParts':
        return this.#listParts(bucket, key, query, exchange);
      case 'ListMultipartUploads':
        return this.#listUploads(bucket, query, exchange);
      default:
        throw new Error(`${operation} is not a multipart operation`);
    }
  }

  async #create(bucket: string, key: string, exchange: Exchange): Promise<void> {
    checkKey(key);
    const headers = exchange.req.headers;
    await readBody(exchange.req, exchange.stats);
    const storageClass = storageClassOf(headers);
    const attributes = objectAttributesOf(headers);
    const algorithm = headerOf(headers, 'x-amz-checksum-algorithm')?.toUpperCase();
    const type = headerOf(headers, 'x-amz-checksum-type')?.toUpperCase();
    if (algorithm !== undefined) {
      if (!isChecksumAlgorithm(algorithm)) throw S3Errors.invalidRequest('Checksum algorithm provided is unsupported.');
      const allowed = CHECKSUM_TYPES[algorithm];
      const chosen = (type ?? allowed[0]) as ChecksumType;
      if (!allowed.includes(chosen)) throw S3Errors.invalidRequest(`The ${type} checksum type cannot be used with the ${algorithm.toLowerCase()} checksum algorithm.`);
      attributes.checksumAlgorithm = algorithm;
      attributes.checksumType = chosen;
    } else if (type !== undefined) {
      throw S3Errors.invalidRequest('The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.');
    }
    const upload: S3Upload = { uploadId: randomBytes(48).toString('base64url'), bucket, key, storageClass, initiated: this.now(), attributes };
    this.catalog.createUpload(upload);
    const checksumHeaders: Record<string, string> =
      attributes.checksumAlgorithm === undefined ? {} : { 'x-amz-checksum-algorithm': attributes.checksumAlgorithm, 'x-amz-checksum-type': attributes.checksumType! };
    sendS3Xml(
      exchange,
      200,
      'InitiateMultipartUploadResult',
      textElement('Bucket', bucket) + textElement('Key', key) + textElement('UploadId', upload.uploadId),
      { ...encryptionHeadersOf(attributes), ...checksumHeaders },
    );
  }

  async #uploadPart(bucket: string, key: string, query: Map<string, string>, exchange: Exchange): Promise<void> {
    const partText = query.get('partNumber') ?? '';
    const partNumber = Number(partText);
    if (!/^\d+$/.test(partText) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw S3Errors.invalidArgument('Part number must be an integer between 1 and 10000, inclusive', 'partNumber', partText);
    }
    const upload = this.#upload(bucket, key, query);
    const headers = exchange.req.headers;
    checkCustomerKey(headers, upload.attributes.ssecKeyMd5, 'part');
    const body = await receiveObjectBody(exchange, this.blobs, {
      maxBytes: MAX_PART_SIZE,
      ...(upload.attributes.checksumAlgorithm === undefined ? {} : { requiredChecksum: upload.attributes.checksumAlgorithm }),
    });
    const etag = etagOf(body.blob.md5);
    const checksum = upload.attributes.checksumAlgorithm === undefined ? null : body.checksum!.value;
    const replaced = this.catalog.putPart(upload.uploadId, { partNumber, size: body.blob.size, etag, checksum, lastModified: this.now() }, body.blob);
    if (replaced === undefined) {
      this.blobs.remove([body.blob.name]);
      throw S3Errors.noSuchUpload(upload.uploadId);
    }
    this.blobs.remove(replaced);
    const echoed = body.checksum === undefined ? {} : { [checksumHeaderOf(body.checksum.algorithm)]: body.checksum.value };
    sendS3Empty(exchange, 200, { etag, ...encryptionHeadersOf(upload.attributes), ...echoed });
  }

  async #complete(bucket: string, key: string, query: Map<string, string>, exchange: Exchange): Promise<void> {
    const upload = this.#upload(bucket, key, query);
    const body = await readBody(exchange.req, exchange.stats, 16 * MIB);
    const listed = childrenOf(parseS3Xml(body, 'CompleteMultipartUpload'), 'Part');
    if (listed.length === 0 || listed.length > MAX_PARTS) throw S3Errors.malformedXml();
    const stored = new Map(this.catalog.parts(upload.uploadId).map((part) => [part.partNumber, part]));
    const algorithm = upload.attributes.checksumAlgorithm;
    const chosen: S3Part[] = [];
    let previous = 0;
    for (const node of listed) {
      const numberText = childText(node, 'PartNumber') ?? '';
      const partNumber = Number(numberText);
      const etag = childText(node, 'ETag') ?? '';
      if (!/^\d+$/.test(numberText)) throw S3Errors.malformedXml();
      if (partNumber <= previous) throw S3Errors.invalidPartOrder();
      previous = partNumber;
      const part = stored.get(partNumber);
      if (part === undefined || part.etag !== `"${etag.replace(/^"|"$/g, '')}"`) {
        throw S3Errors.invalidPart(
          "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
          partNumber,
          etag,
        );
      }
      const listedChecksum = algorithm === undefined ? undefined : childOf(node, checksumElementOf(algorithm))?.text.trim();
      if (listedChecksum === undefined && upload.attributes.checksumType === 'COMPOSITE') {
        throw S3Errors.invalidRequest(
          `The upload was created using a ${algorithm!.toLowerCase()} checksum. The complete request must include the checksum for each part. It was missing for part ${partNumber} in the request.`,
        );
      }
      if (listedChecksum !== undefined && listedChecksum !== part.checksum) {
        throw S3Errors.invalidPart(`The ${algorithm} checksum of part ${partNumber} does not match the part's checksum.`, partNumber, etag);
      }
      chosen.push(part);
    }
    for (const part of chosen.slice(0, -1)) {
      if (part.size < MIN_PART_SIZE) throw S3Errors.entityTooSmall(part.size, MIN_PART_SIZE);
    }
    const size = chosen.reduce((sum, part) => sum + part.size, 0);
    if (size > MAX_OBJECT_SIZE) throw S3Errors.entityTooLarge(MAX_OBJECT_SIZE);

    const attributes: ObjectAttributes = { ...upload.attributes, partsCount: chosen.length };
    if (algorithm !== undefined) attributes.checksum = await this.#objectChecksum(algorithm, upload.attributes.checksumType!, chosen, exchange);
    const md5s = Buffer.concat(chosen.map((part) => Buffer.from(part.etag.slice(1, -1), 'hex')));
    const etag = `"${createHash('md5').update(md5s).digest('hex')}-${chosen.length}"`;
    const unused = this.catalog.completeUpload(upload.uploadId, chosen, {
      bucket,
      key,
      size,
      etag,
      storageClass: upload.storageClass,
      lastModified: this.now(),
      attributes,
    });
    if (unused === undefined) throw S3Errors.noSuchUpload(upload.uploadId);
    this.blobs.remove(unused);
    const checksum = algorithm === undefined ? '' : textElement(checksumElementOf(algorithm), attributes.checksum) + textElement('ChecksumType', attributes.checksumType);
    const location = `http://${exchange.req.headers.host ?? 'localhost'}/${bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
    sendS3Xml(
      exchange,
      200,
      'CompleteMultipartUploadResult',
      textElement('Location', location) + textElement('Bucket', bucket) + textElement('Key', key) + textElement('ETag', etag) + checksum,
      { ...encryptionHeadersOf(attributes), ...checksumHeadersOf(attributes) },
    );
  }

  /**
   * The object's checksum: COMPOSITE is the checksum of the parts' raw
   * checksums with "-N"; FULL_OBJECT is computed over the whole object (and
   * checked against x-amz-checksum-ALGORITHM when the request gives it).
   */
  async #objectChecksum(algorithm: ChecksumAlgorithm, type: ChecksumType, parts: S3Part[], exchange: Exchange): Promise<string> {
    if (type === 'COMPOSITE') {
      const summer = checksummerOf(algorithm);
      for (const part of parts) summer.update(Buffer.from(part.checksum!, 'base64'));
      return `${summer.digest().toString('base64')}-${parts.length}`;
    }
    const files = parts.flatMap((part) => this.catalog.files(part.content));
    const whole = (await this.blobs.checksumOf(files, algorithm)).toString('base64');
    const given = headerOf(exchange.req.headers, checksumHeaderOf(algorithm));
    if (given !== undefined && given !== whole) throw S3Errors.badDigest(`The ${algorithm} you specified did not match the calculated checksum.`);
    return whole;
  }

  #listParts(bucket: string, key: string, query: Map<string, string>, exchange: Exchange): void {
    const upload = this.#upload(bucket, key, query);
    const marker = integerParam(query, 'part-number-marker', 0, 0, MAX_PARTS);
    const maxParts = integerParam(query, 'max-parts', 1000, 0, 1000);
    const after = this.catalog.parts(upload.uploadId).filter((part) => part.partNumber > marker);
    const page = after.slice(0, maxParts);
    const truncated = after.length > page.length;
    const algorithm = upload.attributes.checksumAlgorithm;
    const parts = page.map((part) =>
      element(
        'Part',
        textElement('PartNumber', part.partNumber) +
          textElement('LastModified', isoTime(part.lastModified)) +
          textElement('ETag', part.etag) +
          textElement('Size', part.size) +
          (algorithm === undefined ? '' : textElement(checksumElementOf(algorithm), part.checksum)),
      ),
    );
    const inner =
      textElement('Bucket', bucket) +
      textElement('Key', key) +
      textElement('UploadId', upload.uploadId) +
      textElement('PartNumberMarker', marker) +
      textElement('NextPartNumberMarker', page.length > 0 ? page[page.length - 1]!.partNumber : marker) +
      textElement('MaxParts', maxParts) +
      textElement('IsTruncated', truncated) +
      parts.join('') +
      element('Initiator', OWNER_INNER) +
      OWNER +
      textElement('StorageClass', upload.storageClass) +
      textElement('ChecksumAlgorithm', algorithm) +
      textElement('ChecksumType', upload.attributes.checksumType);
    sendS3Xml(exchange, 200, 'ListPartsResult', inner);
  }

  #listUploads(bucket: string, query: Map<string, string>, exchange: Exchange): void {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') || undefined;
    const keyMarker = query.get('key-marker') ?? '';
    const uploadIdMarker = query.get('upload-id-marker') ?? '';
    const maxUploads = integerParam(query, 'max-uploads', 1000, 0, 1000);
    const encode = encodingOf(query);
    const show = (text: string) => (encode === undefined ? text : encode(text));
    // Uploads come ordered by key, then initiation; the markers resume after a key, or after one upload of that key.
    const all = this.catalog.uploadsOf(bucket).filter((upload) => upload.key.startsWith(prefix));
    const marked = uploadIdMarker === '' ? -1 : all.findIndex((upload) => upload.key === keyMarker && upload.uploadId === uploadIdMarker);
    const pastKey = all.findIndex((upload) => Buffer.compare(Buffer.from(upload.key), Buffer.from(keyMarker)) > 0);
    const after = keyMarker === '' ? all : all.slice(marked >= 0 ? marked + 1 : pastKey < 0 ? all.length : pastKey);
    const uploads: S3Upload[] = [];
    const commonPrefixes: string[] = [];
    let truncated = false;
    for (const upload of after) {
      const at = delimiter === undefined ? -1 : upload.key.indexOf(delimiter, prefix.length);
      const common = at < 0 ? undefined : upload.key.slice(0, at + delimiter!.length);
      if (common !== undefined && commonPrefixes.includes(common)) continue;
      if (uploads.length + commonPrefixes.length === maxUploads) {
        truncated = true;
        break;
      }
      if (common !== undefined) commonPrefixes.push(common);
      else uploads.push(upload);
    }
    const last = uploads[uploads.length - 1];
    const entries = uploads.map((upload) =>
      element(
        'Upload',
        textElement('Key', show(upload.key)) +
          textElement('UploadId', upload.uploadId) +
          element('Initiator', OWNER_INNER) +
          OWNER +
          textElement('StorageClass', upload.storageClass) +
          textElement('Initiated', isoTime(upload.initiated)) +
          textElement('ChecksumAlgorithm', upload.attributes.checksumAlgorithm) +
          textElement('ChecksumType', upload.attributes.checksumType),
      ),
    );
    const inner =
      textElement('Bucket', bucket) +
      textElement('KeyMarker', show(keyMarker)) +
      textElement('UploadIdMarker', uploadIdMarker) +
      (truncated && last !== undefined ? textElement('NextKeyMarker', show(last.key)) + textElement('NextUploadIdMarker', last.uploadId) : '') +
      textElement('Prefix', show(prefix)) +
      (delimiter === undefined ? '' : textElement('Delimiter', show(delimiter))) +
      textElement('MaxUploads', maxUploads) +
      (encode === undefined ? '' : textElement('EncodingType', 'url')) +
      textElement('IsTruncated', truncated) +
      entries.join('') +
      commonPrefixes.map((p) => element('CommonPrefixes', textElement('Prefix', show(p)))).join('');
    sendS3Xml(exchange, 200, 'ListMultipartUploadsResult', inner);
  }

  /** The upload named by ?uploadId, which must be of this bucket and key; NoSuchUpload otherwise. */
  #upload(bucket: string, key: string, query: Map<string, string>): S3Upload {
    const uploadId = query.get('uploadId') ?? '';
    const upload = this.catalog.upload(uploadId);
    if (upload === undefined || upload.bucket !== bucket || upload.key !== key) throw S3Errors.noSuchUpload(uploadId);
    return upload;
  }
}
