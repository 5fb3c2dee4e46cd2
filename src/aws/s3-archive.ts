import { createHash } from 'node:crypto';
import type { BucketLocationConstraint, S3Client, StorageClass, Tier } from '@aws-sdk/client-s3';
import type {
  ArchiveStore,
  Inventory,
  ListedObject,
  ObjectOptions,
  RestoreStatus,
  RetrievalTier,
  StoredObject,
  UploadedPart,
} from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import { readBody } from './body.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { partSizeFor } from './part-size.js';
import { s3Sdk } from './sdk.js';

const MIB = 1024 * 1024;
/** S3 parts are at least 5 MiB (but the last); 16 MiB keeps requests few. */
const DEFAULT_MIN_PART = 16 * MIB;
/** The largest power-of-two part S3 takes (its limit is 5 GiB). */
const MAX_PART = 4096 * MIB;
/** S3's smallest part but the last (CompleteMultipartUpload answers EntityTooSmall below it), and its largest object. */
const S3_MIN_PART = 5 * MIB;
const MAX_OBJECT_BYTES = 5 * 1024 * 1024 * MIB;
/** Storage classes whose objects are read only after RestoreObject. */
const ARCHIVED_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);
const SSE_C = 'x-amz-server-side-encryption-customer-';
/** Calls that create or delete remote state: an abort does not cut them (see InFlightRequests). */
const RUN_TO_END = new Set(['s3:PutObject', 's3:CreateMultipartUpload', 's3:CompleteMultipartUpload', 's3:AbortMultipartUpload', 's3:RestoreObject', 's3:DeleteObject', 's3:CreateBucket']);
/** The Region whose buckets are made without a location constraint (S3 refuses one naming it). */
const NO_CONSTRAINT_REGION = 'us-east-1';

export interface S3ArchiveOptions {
  /**
   * Extra request headers (the connection's archive.attributes). SSE-C
   * headers go with every request that writes or reads an object's bytes
   * (the key's MD5 is added when missing); the others with the requests that
   * create an object.
   */
  attributes?: Record<string, string>;
  /** Smallest part size used (1 MiB x 2^n, so 8 MiB or more: S3 takes no part below 5 MiB but the last); default 16 MiB. */
  minPartSize?: number;
  /** A run's interruption: ends the transfers, reads and listings in flight when it aborts (see InFlightRequests). */
  signal?: AbortSignal;
  /** The session's record of contact with the endpoint, marked by every outcome (see EndpointContact). */
  contact?: EndpointContact;
}

type Headers = Record<string, string>;

/**
 * Archive objects in one S3 bucket, in a storage class. Path-style addressing
 * comes with the client (the connection's s3_uri_style). S3 keeps no tree
 * hash: the one the caller computed is handed back as the object's.
 */
export class S3ArchiveStore implements ArchiveStore {
  readonly target = 's3' as const;
  readonly location: string;
  readonly #client: S3Client;
  readonly #minPartSize: number;
  readonly #requests: InFlightRequests;
  /** Headers for requests that create objects, and for those that move their bytes (SSE-C). */
  readonly #createHeaders: Headers;
  readonly #dataHeaders: Headers;

  constructor(client: S3Client, bucket: string, options: S3ArchiveOptions = {}) {
    this.#client = client;
    this.location = bucket;
    this.#minPartSize = options.minPartSize ?? DEFAULT_MIN_PART;
    if (this.#minPartSize < S3_MIN_PART) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `S3 parts are at least 5 MiB (all but the last), got a minimum part size of ${this.#minPartSize} bytes`);
    }
    this.#requests = new InFlightRequests(options.signal, options.contact);
    const attributes = Object.fromEntries(Object.entries(options.attributes ?? {}).map(([name, value]) => [name.toLowerCase(), value]));
    const key = attributes[`${SSE_C}key`];
    if (key !== undefined && attributes[`${SSE_C}key-md5`] === undefined) {
      attributes[`${SSE_C}key-md5`] = createHash('md5').update(Buffer.from(key, 'base64')).digest('base64');
    }
    this.#createHeaders = attributes;
    this.#dataHeaders = Object.fromEntries(Object.entries(attributes).filter(([name]) => name.startsWith(SSE_C)));
  }

  partSizeFor(maxBytes: number): number {
    if (maxBytes > MAX_OBJECT_BYTES) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `an S3 object holds at most 5 TiB, not ${maxBytes} bytes`);
    return partSizeFor(maxBytes, this.#minPartSize, MAX_PART);
  }

  async putObject(key: string, data: Uint8Array, treeHash: string, options: ObjectOptions = {}): Promise<StoredObject> {
    await this.#call('s3:PutObject', key, (abortSignal) => this.#client.send(withHeaders(new (s3Sdk().PutObjectCommand)({
      Bucket: this.location,
      Key: key,
      Body: data,
      ContentLength: data.byteLength,
      ...storageClassOf(options),
    }), this.#createHeaders), { abortSignal }));
    return { ref: key, sizeBytes: data.byteLength, treeHash };
  }

  async startUpload(key: string, _partSize: number, options: ObjectOptions = {}): Promise<string> {
    const out = await this.#call('s3:CreateMultipartUpload', key, (abortSignal) => this.#client.send(withHeaders(new (s3Sdk().CreateMultipartUploadCommand)({
      Bucket: this.location,
      Key: key,
      ...storageClassOf(options),
    }), this.#createHeaders), { abortSignal }));
    if (!out.UploadId) throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `s3:CreateMultipartUpload answered without an upload id for ${key}`);
    return out.UploadId;
  }

  async putPart(key: string, uploadId: string, partNumber: number, _offset: number, data: Uint8Array): Promise<UploadedPart> {
    const out = await this.#call('s3:UploadPart', key, (abortSignal) => this.#client.send(withHeaders(new (s3Sdk().UploadPartCommand)({
      Bucket: this.location,
      Key: key,
      UploadId: uploadId,
      PartNumber: partNumber,
      Body: data,
      ContentLength: data.byteLength,
    }), this.#dataHeaders), { abortSignal }));
    if (!out.ETag) throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `s3:UploadPart answered without an ETag for part ${partNumber} of ${key}`);
    return { partNumber, sizeBytes: data.byteLength, checksum: out.ETag };
  }

  async listParts(key: string, uploadId: string): Promise<UploadedPart[]> {
    const parts: UploadedPart[] = [];
    let marker: string | undefined;
    for (;;) {
      const out = await this.#call('s3:ListParts', key, (abortSignal) => this.#client.send(new (s3Sdk().ListPartsCommand)({
        Bucket: this.location,
        Key: key,
        UploadId: uploadId,
        ...(marker ? { PartNumberMarker: marker } : {}),
      }), { abortSignal }));
      for (const part of out.Parts ?? []) {
        if (part.PartNumber !== undefined && part.ETag !== undefined) parts.push({ partNumber: part.PartNumber, sizeBytes: part.Size ?? 0, checksum: part.ETag });
      }
      if (!out.IsTruncated || !out.NextPartNumberMarker) return parts;
      marker = out.NextPartNumberMarker;
    }
  }

  async completeUpload(key: string, uploadId: string, parts: readonly UploadedPart[], sizeBytes: number, treeHash: string): Promise<StoredObject> {
    await this.#call('s3:CompleteMultipartUpload', key, (abortSignal) => this.#client.send(withHeaders(new (s3Sdk().CompleteMultipartUploadCommand)({
      Bucket: this.location,
      Key: key,
      UploadId: uploadId,
      MultipartUpload: { Parts: parts.map((p) => ({ PartNumber: p.partNumber, ETag: p.checksum })) },
    }), this.#dataHeaders), { abortSignal }));
    return { ref: key, sizeBytes, treeHash };
  }

  async abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await this.#call('s3:AbortMultipartUpload', key, (abortSignal) => this.#client.send(new (s3Sdk().AbortMultipartUploadCommand)({ Bucket: this.location, Key: key, UploadId: uploadId }), { abortSignal }));
    } catch (err) {
      if (!isSnaplineError(err, ErrorCodes.NOT_FOUND)) throw err;
    }
  }

  async getRange(key: string, start: number, end: number | undefined): Promise<{ data: Buffer }> {
    const range = `bytes=${start}-${end === undefined ? '' : end - 1}`;
    // The body is read inside the call: an interruption ends its reading too.
    const data = await this.#call('s3:GetObject', key, async (abortSignal) => {
      const out = await this.#client.send(withHeaders(new (s3Sdk().GetObjectCommand)({ Bucket: this.location, Key: key, Range: range }), this.#dataHeaders), { abortSignal });
      return readBody(out.Body, 's3:GetObject');
    });
    if (end !== undefined && data.byteLength !== end - start) {
      throw new SnaplineError(ErrorCodes.UNAVAILABLE, `s3:GetObject returned ${data.byteLength} bytes of ${key}, not ${end - start}`, { retryable: true });
    }
    return { data };
  }

  async requestRestore(key: string, options: { tier: RetrievalTier; days: number }): Promise<RestoreStatus> {
    try {
      const out = await this.#call('s3:RestoreObject', key, (abortSignal) => this.#client.send(new (s3Sdk().RestoreObjectCommand)({
        Bucket: this.location,
        Key: key,
        RestoreRequest: { Days: options.days, GlacierJobParameters: { Tier: options.tier as Tier } },
      }), { abortSignal }));
      // 200: a restored copy exists already (its expiry moves); 202: the restore began.
      return out.$metadata.httpStatusCode === 200 ? this.restoreStatus(key) : { state: 'in-progress' };
    } catch (err) {
      const awsError = isSnaplineError(err) ? err.details?.awsError : undefined;
      if (awsError === 'RestoreAlreadyInProgress') return { state: 'in-progress' };
      // Objects of a storage class read at once (GLACIER_IR, STANDARD...) cannot be restored: they need not be.
      if (awsError === 'InvalidObjectState') return this.restoreStatus(key);
      throw err;
    }
  }

  async restoreStatus(key: string): Promise<RestoreStatus> {
    const out = await this.#call('s3:HeadObject', key, (abortSignal) => this.#client.send(withHeaders(new (s3Sdk().HeadObjectCommand)({ Bucket: this.location, Key: key }), this.#dataHeaders), { abortSignal }));
    if (!ARCHIVED_CLASSES.has(out.StorageClass ?? 'STANDARD')) return { state: 'available' };
    return restoreStatusOf(out.Restore);
  }

  async inventory(options: { prefix?: string }): Promise<Inventory> {
    const objects: ListedObject[] = [];
    let token: string | undefined;
    do {
      const out = await this.#call('s3:ListObjectsV2', options.prefix ?? '', (abortSignal) => this.#client.send(new (s3Sdk().ListObjectsV2Command)({
        Bucket: this.location,
        ...(options.prefix ? { Prefix: options.prefix } : {}),
        ...(token ? { ContinuationToken: token } : {}),
      }), { abortSignal }));
      for (const object of out.Contents ?? []) {
        if (object.Key === undefined) continue;
        objects.push({
          ref: object.Key,
          name: object.Key,
          sizeBytes: object.Size ?? 0,
          ...(object.LastModified ? { createdAt: object.LastModified } : {}),
          storageClass: object.StorageClass ?? 'STANDARD',
        });
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return { state: 'ready', objects, takenAt: new Date() };
  }

  async deleteObject(key: string): Promise<void> {
    await this.#call('s3:DeleteObject', key, (abortSignal) => this.#client.send(new (s3Sdk().DeleteObjectCommand)({ Bucket: this.location, Key: key }), { abortSignal }));
  }

  /** HeadBucket (IAM s3:ListBucket): 404 is false; 403 is a bucket of another account or a missing permission; 301 a bucket in another Region. */
  async locationExists(): Promise<boolean> {
    const action = 's3:ListBucket';
    try {
      await this.#requests.run(action, (abortSignal) => this.#client.send(new (s3Sdk().HeadBucketCommand)({ Bucket: this.location }), { abortSignal }));
      return true;
    } catch (err) {
      const error = s3Error(err, action, this.location, '');
      if (error.code === ErrorCodes.NOT_FOUND) return false;
      const status = error.details?.httpStatus;
      if (status === 403) {
        throw new SnaplineError(ErrorCodes.ACCESS_DENIED, `bucket ${this.location} belongs to another account, or ${action} on it is not granted`, {
          cause: err,
          details: error.details,
          hint: 'name a bucket of this account with --bucket, or grant s3:ListBucket on it',
        });
      }
      if (status === 301) {
        const region = bucketRegionOf(err);
        throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `bucket ${this.location} is in another Region${region === undefined ? '' : ` (${region})`} than the connection's`, {
          cause: err,
          details: error.details,
          hint: `use the bucket's Region${region === undefined ? '' : ` (--region ${region})`}, or a bucket in this one`,
        });
      }
      throw error;
    }
  }

  /** CreateBucket in the client's Region; BucketAlreadyOwnedByYou is success (made by an earlier try), BucketAlreadyExists a CONFLICT. */
  async createLocation(): Promise<void> {
    const region = await this.#client.config.region();
    const input = {
      Bucket: this.location,
      ...(region === NO_CONSTRAINT_REGION ? {} : { CreateBucketConfiguration: { LocationConstraint: region as BucketLocationConstraint } }),
    };
    try {
      await this.#call('s3:CreateBucket', '', (abortSignal) => this.#client.send(new (s3Sdk().CreateBucketCommand)(input), { abortSignal }));
    } catch (err) {
      const awsError = isSnaplineError(err) ? err.details?.awsError : undefined;
      if (awsError === 'BucketAlreadyOwnedByYou') return;
      if (awsError === 'BucketAlreadyExists') {
        throw new SnaplineError(ErrorCodes.CONFLICT, `the bucket name ${this.location} is taken by another account (bucket names are shared by all of S3)`, {
          cause: err,
          hint: 'choose another name with --bucket',
        });
      }
      throw err;
    }
  }

  /** Runs one SDK call with the signal of its request (see InFlightRequests, RUN_TO_END), mapping its failure to a SnaplineError. */
  async #call<O>(action: string, key: string, send: (abortSignal: AbortSignal | undefined) => Promise<O>): Promise<O> {
    try {
      return await this.#requests.run(action, send, { cutOnAbort: !RUN_TO_END.has(action) });
    } catch (err) {
      throw s3Error(err, action, this.location, key);
    }
  }
}

/** Adds `headers` to the command's request before it is signed. */
function withHeaders<C extends { middlewareStack: object }>(command: C, headers: Headers): C {
  if (Object.keys(headers).length === 0) return command;
  const stack = command.middlewareStack as { add(middleware: unknown, options: unknown): void };
  stack.add(
    (next: (args: { request: unknown }) => Promise<unknown>) => async (args: { request: unknown }) => {
      const request = args.request as { headers?: Headers } | null;
      if (request !== null && typeof request === 'object' && typeof request.headers === 'object') Object.assign(request.headers, headers);
      return next(args);
    },
    { step: 'build', name: 'snaplineArchiveAttributes' },
  );
  return command;
}

/** The Region S3 says a bucket is in, from the headers of its answer (x-amz-bucket-region). */
function bucketRegionOf(err: unknown): string | undefined {
  const headers = (err as { $response?: { headers?: Record<string, string | undefined> } } | null)?.$response?.headers;
  const region = headers?.['x-amz-bucket-region'];
  return typeof region === 'string' && region !== '' ? region : undefined;
}

function storageClassOf(options: ObjectOptions): { StorageClass?: StorageClass } {
  return options.storageClass === undefined ? {} : { StorageClass: options.storageClass as StorageClass };
}

/** The x-amz-restore header: absent (archived), ongoing-request="true", or ="false" with the expiry date. */
export function restoreStatusOf(header: string | undefined): RestoreStatus {
  if (header === undefined || header === '') return { state: 'archived' };
  if (/ongoing-request\s*=\s*"true"/i.test(header)) return { state: 'in-progress' };
  const expiry = /expiry-date\s*=\s*"([^"]+)"/i.exec(header)?.[1];
  const expiresAt = expiry === undefined ? undefined : new Date(expiry);
  return { state: 'available', ...(expiresAt && !Number.isNaN(expiresAt.getTime()) ? { expiresAt } : {}) };
}

/** S3's answers as snapline's codes: an archived object's bytes are BAD_STATE until restored; a missing bucket says so. */
function s3Error(err: unknown, action: string, bucket: string, key: string): SnaplineError {
  const error = fromAwsError(err, action);
  const awsError = error.details?.awsError;
  if (awsError === 'InvalidObjectState') {
    return new SnaplineError(ErrorCodes.BAD_STATE, `${key} in bucket ${bucket} is archived and not restored`, {
      cause: err,
      details: { ...error.details, object: key },
      hint: 'ask for it with `snapline archive restore`, then wait with `snapline archive status --wait`',
    });
  }
  if (awsError === 'NoSuchBucket') {
    return new SnaplineError(ErrorCodes.NOT_FOUND, `bucket ${bucket} does not exist`, {
      cause: err,
      details: error.details,
      hint: 'check the bucket name: --bucket, or archive.bucket of the connection (`snapline connections show`)',
    });
  }
  return error;
}
