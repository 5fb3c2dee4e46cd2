import { createHash, randomBytes } from 'node:crypto';
import { treeHash } from '../../src/core/checksum.js';
import type {
  ArchiveStore,
  ArchiveTarget,
  Inventory,
  ListedObject,
  ObjectOptions,
  RestoreStatus,
  RetrievalTier,
  StoredObject,
  UploadedPart,
} from '../../src/core/ports.js';
import { partSizeFor } from '../../src/aws/part-size.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { awsFailure } from './memory-ebs.js';

const S3_MAX_OBJECT_BYTES = 5 * 1024 ** 4;

/**
 * An in-memory archive store for the engine's tests, S3-like or
 * Glacier-like. It keeps the rules the engine relies on: S3 objects of
 * GLACIER and DEEP_ARCHIVE refuse reads until restored; Glacier archives are
 * read through Succeeded retrieval jobs; Glacier checks tree hashes of parts
 * and archives and sends the tree hash of megabyte-aligned ranges; parts are
 * numbered and listed; uploads can vanish. Restores and jobs finish when the
 * test says so (finishRestores), or fail (failRestores); restored copies
 * and job outputs say when they expire; a vault's inventory job lists the
 * archives as they were when it began, and none is started without `start`.
 * Failures can be injected per call; corruptReads flips a byte of what
 * getRange returns.
 */
export type ArchiveOperation =
  | 'putObject'
  | 'startUpload'
  | 'putPart'
  | 'listParts'
  | 'completeUpload'
  | 'abortUpload'
  | 'getRange'
  | 'requestRestore'
  | 'restoreStatus'
  | 'inventory'
  | 'deleteObject'
  | 'locationExists'
  | 'createLocation';

interface StoredEntry {
  name: string;
  data: Buffer;
  storageClass: string;
  /** 'none' until a restore is asked; S3 copies and Glacier jobs alike. */
  restore: 'none' | 'ongoing' | 'done' | 'failed';
  job?: string;
  /** Days the restored S3 copy is kept, as asked. */
  days?: number;
  /** When the restored copy or the job's output goes away. */
  expiresAt?: Date;
  createdAt: Date;
}

interface Upload {
  name: string;
  partSize: number;
  storageClass: string;
  parts: Map<number, { data: Buffer; checksum: string }>;
}

const MIB = 1024 * 1024;
const ARCHIVED = new Set(['GLACIER', 'DEEP_ARCHIVE']);
const DAY = 86_400_000;

export class MemoryArchiveStore implements ArchiveStore {
  readonly target: ArchiveTarget;
  readonly location: string;
  readonly objects = new Map<string, StoredEntry>();
  readonly uploads = new Map<string, Upload>();
  readonly calls = new Map<ArchiveOperation, number>();
  /** False for a bucket or vault that does not exist (createLocation makes it, S3 only). */
  exists = true;
  /** Flip one byte of every ranged read of the objects whose name this accepts. */
  corruptReads: ((name: string) => boolean) | undefined;
  readonly #minPartSize: number;
  readonly #failures: Array<{ operation: ArchiveOperation; error: SnaplineError; times: number; after: number }> = [];
  /** A vault's inventory job: the archives as they were when it began. */
  #inventoryJob: { state: 'ongoing' | 'done'; objects: ListedObject[] } | undefined;
  /** An S3-like store's only, as the port says. */
  readonly createLocation: (() => Promise<void>) | undefined;

  constructor(options: { target: ArchiveTarget; location?: string; minPartSize?: number }) {
    this.target = options.target;
    this.createLocation = this.target === 's3' ? () => this.#createLocation() : undefined;
    this.location = options.location ?? (options.target === 's3' ? 'bucket' : 'vault');
    this.#minPartSize = options.minPartSize ?? MIB;
  }

  /** After `after` more calls of `operation` succeed, the next `times` fail with `error`. */
  failOn(operation: ArchiveOperation, error: SnaplineError, options: { times?: number; after?: number } = {}): void {
    this.#failures.push({ operation, error, times: options.times ?? 1, after: options.after ?? 0 });
  }

  /** Every restore asked for finishes (S3 copies available, Glacier jobs Succeeded); so does an inventory job. */
  finishRestores(): void {
    const now = Date.now();
    for (const entry of this.objects.values()) {
      if (entry.restore !== 'ongoing') continue;
      entry.restore = 'done';
      // An S3 copy is kept for the days asked; a Glacier job's output at least 24 hours.
      entry.expiresAt = new Date(now + (this.target === 's3' ? (entry.days ?? 1) : 1) * DAY);
    }
    if (this.#inventoryJob !== undefined) this.#inventoryJob.state = 'done';
  }

  /** Every restored copy (or job output) of the objects named expires: they read as archived again. */
  expireRestores(refs: readonly string[]): void {
    for (const ref of refs) {
      const entry = this.#object(ref);
      if (entry.restore !== 'done') continue;
      entry.restore = 'none';
      delete entry.expiresAt;
    }
  }

  /** Every restore asked for fails (Glacier job Failed). */
  failRestores(): void {
    for (const entry of this.objects.values()) if (entry.restore === 'ongoing') entry.restore = 'failed';
  }

  count(operation: ArchiveOperation): number {
    return this.calls.get(operation) ?? 0;
  }

  /** As the adapters: S3 takes objects of at most 5 TiB, a vault 10,000 parts of at most 4 GiB. */
  partSizeFor(maxBytes: number): number {
    if (this.target === 's3' && maxBytes > S3_MAX_OBJECT_BYTES) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `an S3 object holds at most 5 TiB, not ${maxBytes} bytes`);
    return partSizeFor(maxBytes, this.#minPartSize);
  }

  async putObject(name: string, data: Uint8Array, hash: string, options: ObjectOptions = {}): Promise<StoredObject> {
    this.#enter('putObject');
    const copy = Buffer.from(data);
    if (this.target === 'glacier' && treeHash(copy).toString('hex') !== hash) throw this.#fail('InvalidParameterValueException', 'tree hash mismatch');
    const ref = this.target === 's3' ? name : randomBytes(12).toString('hex');
    this.objects.set(ref, { name, data: copy, storageClass: this.#class(options), restore: 'none', createdAt: new Date() });
    return { ref, sizeBytes: copy.byteLength, treeHash: treeHash(copy).toString('hex') };
  }

  async startUpload(name: string, partSize: number, options: ObjectOptions = {}): Promise<string> {
    this.#enter('startUpload');
    const uploadId = randomBytes(8).toString('hex');
    this.uploads.set(uploadId, { name, partSize, storageClass: this.#class(options), parts: new Map() });
    return uploadId;
  }

  async putPart(_name: string, uploadId: string, partNumber: number, offset: number, data: Uint8Array, hash: string): Promise<UploadedPart> {
    this.#enter('putPart');
    const upload = this.#upload(uploadId);
    if (offset !== (partNumber - 1) * upload.partSize || data.byteLength > upload.partSize) throw this.#fail('InvalidParameterValueException', 'bad part range');
    const copy = Buffer.from(data);
    const checksum = this.target === 'glacier' ? treeHash(copy).toString('hex') : `"${createHash('md5').update(copy).digest('hex')}"`;
    if (this.target === 'glacier' && checksum !== hash) throw this.#fail('InvalidParameterValueException', 'part tree hash mismatch');
    upload.parts.set(partNumber, { data: copy, checksum });
    return { partNumber, sizeBytes: copy.byteLength, checksum };
  }

  async listParts(_name: string, uploadId: string): Promise<UploadedPart[]> {
    this.#enter('listParts');
    const upload = this.#upload(uploadId);
    return [...upload.parts].sort(([a], [b]) => a - b).map(([partNumber, part]) => ({ partNumber, sizeBytes: part.data.byteLength, checksum: part.checksum }));
  }

  async completeUpload(_name: string, uploadId: string, parts: readonly UploadedPart[], sizeBytes: number, hash: string): Promise<StoredObject> {
    this.#enter('completeUpload');
    const upload = this.#upload(uploadId);
    const numbers = [...upload.parts.keys()].sort((a, b) => a - b);
    if (parts.length !== numbers.length || parts.some((p, i) => p.partNumber !== numbers[i] || upload.parts.get(p.partNumber)!.checksum !== p.checksum)) {
      throw this.#fail('InvalidPart', 'the parts do not match');
    }
    const data = Buffer.concat(numbers.map((n) => upload.parts.get(n)!.data));
    if (data.byteLength !== sizeBytes) throw this.#fail('InvalidParameterValueException', 'size mismatch');
    const actual = treeHash(data).toString('hex');
    if (this.target === 'glacier' && actual !== hash) throw this.#fail('InvalidParameterValueException', 'archive tree hash mismatch');
    this.uploads.delete(uploadId);
    const ref = this.target === 's3' ? upload.name : randomBytes(12).toString('hex');
    this.objects.set(ref, { name: upload.name, data, storageClass: upload.storageClass, restore: 'none', createdAt: new Date() });
    return { ref, sizeBytes, treeHash: this.target === 'glacier' ? actual : hash };
  }

  async abortUpload(_name: string, uploadId: string): Promise<void> {
    this.#enter('abortUpload');
    this.uploads.delete(uploadId);
  }

  async getRange(ref: string, start: number, end: number | undefined, job?: string): Promise<{ data: Buffer; treeHash?: string }> {
    this.#enter('getRange');
    const entry = this.#object(ref);
    if (this.target === 's3' && ARCHIVED.has(entry.storageClass) && entry.restore !== 'done') {
      throw this.#fail('InvalidObjectState', 'The operation is not valid for the object storage class', 403);
    }
    if (this.target === 'glacier' && (entry.restore !== 'done' || (job !== undefined && job !== entry.job))) {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `archive ${ref} has no finished retrieval job`);
    }
    const stop = end ?? entry.data.byteLength;
    const data = Buffer.from(entry.data.subarray(start, stop));
    const aligned = treeHashAligned(start, stop, entry.data.byteLength);
    const rangeHash = this.target === 'glacier' && aligned ? treeHash(data).toString('hex') : undefined;
    if (this.corruptReads?.(entry.name) && data.byteLength > 0) data[data.byteLength >> 1]! ^= 0xff;
    return { data, ...(rangeHash === undefined ? {} : { treeHash: rangeHash }) };
  }

  async requestRestore(ref: string, options: { tier: RetrievalTier; days: number }): Promise<RestoreStatus> {
    this.#enter('requestRestore');
    const entry = this.#object(ref);
    if (this.target === 's3' && !ARCHIVED.has(entry.storageClass)) return { state: 'available' };
    if (this.target === 's3' && entry.restore === 'done') {
      entry.expiresAt = new Date(Date.now() + options.days * DAY);
      return { state: 'available', expiresAt: entry.expiresAt };
    }
    entry.restore = 'ongoing';
    entry.days = options.days;
    if (this.target === 'glacier') entry.job = randomBytes(6).toString('hex');
    return { state: 'in-progress', ...(entry.job ? { job: entry.job } : {}) };
  }

  async restoreStatus(ref: string, job?: string): Promise<RestoreStatus> {
    this.#enter('restoreStatus');
    const entry = this.#object(ref);
    if (this.target === 's3' && !ARCHIVED.has(entry.storageClass)) return { state: 'available' };
    if (this.target === 'glacier' && job !== undefined && job !== entry.job) return { state: 'archived' };
    const state = ({ none: 'archived', ongoing: 'in-progress', done: 'available', failed: 'failed' } as const)[entry.restore];
    return {
      state,
      ...(entry.job ? { job: entry.job } : {}),
      ...(state === 'available' && entry.expiresAt ? { expiresAt: entry.expiresAt } : {}),
      ...(state === 'failed' ? { message: 'the retrieval job failed (injected)' } : {}),
    };
  }

  async inventory(options: { prefix?: string; start: boolean }): Promise<Inventory> {
    this.#enter('inventory');
    const listed = (): ListedObject[] =>
      [...this.objects].map(([ref, entry]) => ({ ref, name: entry.name, sizeBytes: entry.data.byteLength, createdAt: entry.createdAt, storageClass: entry.storageClass }));
    if (this.target === 's3') return { state: 'ready', objects: listed().filter((o) => o.name.startsWith(options.prefix ?? '')) };
    if (this.#inventoryJob?.state === 'done') return { state: 'ready', objects: this.#inventoryJob.objects };
    if (this.#inventoryJob === undefined) {
      if (!options.start) throw new SnaplineError(ErrorCodes.NOT_FOUND, `vault ${this.location} has no inventory job`);
      this.#inventoryJob = { state: 'ongoing', objects: listed() };
    }
    return { state: 'in-progress', job: 'inventory-job' };
  }

  async deleteObject(ref: string): Promise<void> {
    this.#enter('deleteObject');
    this.objects.delete(ref);
  }

  async locationExists(): Promise<boolean> {
    this.#enter('locationExists');
    return this.exists;
  }

  async #createLocation(): Promise<void> {
    this.#enter('createLocation');
    this.exists = true;
  }

  #class(options: ObjectOptions): string {
    return this.target === 'glacier' ? 'GLACIER' : (options.storageClass ?? 'STANDARD');
  }

  #enter(operation: ArchiveOperation): void {
    this.calls.set(operation, this.count(operation) + 1);
    const failure = this.#failures.find((f) => f.operation === operation && f.times > 0);
    if (failure === undefined) return;
    if (failure.after > 0) {
      failure.after -= 1;
      return;
    }
    failure.times -= 1;
    throw failure.error;
  }

  #object(ref: string): StoredEntry {
    const entry = this.objects.get(ref);
    if (entry === undefined) throw this.#fail(this.target === 's3' ? 'NoSuchKey' : 'ResourceNotFoundException', `no object ${ref}`, 404);
    return entry;
  }

  #upload(uploadId: string): Upload {
    const upload = this.uploads.get(uploadId);
    if (upload === undefined) throw this.#fail(this.target === 's3' ? 'NoSuchUpload' : 'ResourceNotFoundException', `no upload ${uploadId}`, 404);
    return upload;
  }

  #fail(name: string, message: string, status?: number): SnaplineError {
    return awsFailure(`${this.target}:fake`, name, { message, ...(status === undefined ? {} : { status }) });
  }
}

/**
 * Glacier's "tree-hash aligned" range [start, end): it covers one subtree of
 * the object's tree: 2^k MiB starting at a multiple of that, or a range that
 * reaches the end of the object and starts at a multiple of the power of two
 * (in MiB) at or above its chunk count.
 */
function treeHashAligned(start: number, end: number, size: number): boolean {
  if (start % MIB !== 0 || end <= start) return false;
  const chunks = Math.ceil((end - start) / MIB);
  let span = 1;
  while (span < chunks) span *= 2;
  if ((start / MIB) % span !== 0) return false;
  return end === size || (end - start === span * MIB);
}
