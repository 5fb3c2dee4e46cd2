/**
 * Writes one archive object as a stream of bytes: in one request when it fits
 * in a part, else as a multipart upload whose parts go out several at a time.
 * Each part's tree hash is computed in the worker pool; the object's tree hash
 * combines them (parts are power-of-two MiB, so they are subtrees). The upload
 * id and every acknowledged part are journaled in the index: a rerun that
 * feeds the same bytes again resumes the upload and sends only the parts the
 * service lacks.
 */
import { combineTreeHashes } from '../../core/checksum.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { ArchiveStore, ObjectOptions, StoredObject, UploadedPart } from '../../core/ports.js';
import { TaskWindow } from '../../core/task-window.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import type { HashPool } from '../../hashing/index.js';
import type { IndexPorts } from '../../core/index-ports.js';
import { SlabPool, type Slab } from '../../source/index.js';
import { hex } from './format.js';

export interface ObjectUploadOptions {
  index: Pick<IndexPorts, 'archives'>;
  store: ArchiveStore;
  hashPool: HashPool;
  archiveId: string;
  /** The object's name in the archive (the journal's key). */
  name: string;
  /** Its name in the store: S3 key or Glacier description. */
  remoteName: string;
  /** From store.partSizeFor(most bytes the object can have); a multiple of 1 MiB. */
  partSize: number;
  objectOptions?: ObjectOptions;
  /** Parts uploading at once (memory: this many parts plus one). */
  partsInFlight: number;
  signal?: AbortSignal;
  /** Told of the bytes of every part sent (not of parts skipped on resume). */
  onUploaded?: (bytes: number) => void;
}

/** What happened to the parts of a resumed upload. */
export interface UploadCounts {
  partsSent: number;
  partsSkipped: number;
  bytesSent: number;
}

/**
 * Feed it with write() in order, then finish(). Not reusable. After a failure
 * the journal keeps the upload for the next run; abort() is never called
 * implicitly (the parts are what a rerun saves).
 */
export class ObjectUpload {
  readonly counts: UploadCounts = { partsSent: 0, partsSkipped: 0, bytesSent: 0 };
  readonly #o: ObjectUploadOptions;
  readonly #buffers: SlabPool;
  readonly #tasks: TaskWindow;
  readonly #treeHashes: Buffer[] = [];
  #current: Slab | undefined;
  #filled = 0;
  #partNumber = 0;
  #bytes = 0;
  #upload: Promise<{ uploadId: string; done: Map<number, UploadedPart> }> | undefined;
  readonly #parts = new Map<number, UploadedPart>();

  constructor(options: ObjectUploadOptions) {
    if (!Number.isSafeInteger(options.partSize) || options.partSize % BLOCK_SIZE !== 0 || options.partSize <= 0) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `part size ${options.partSize} is not a whole number of blocks`);
    }
    this.#o = options;
    this.#buffers = new SlabPool({ slabCount: options.partsInFlight + 1, blocksPerSlab: options.partSize / BLOCK_SIZE });
    this.#tasks = new TaskWindow(options.partsInFlight);
  }

  /** Appends bytes (copied). Resolves once they are buffered; parts that fill up are sent meanwhile. */
  async write(bytes: Uint8Array): Promise<void> {
    let at = 0;
    while (at < bytes.byteLength) {
      if (this.#current === undefined) this.#current = await this.#buffers.acquire(this.#o.signal);
      if (this.#filled === this.#o.partSize) {
        // The part is full and more bytes follow: it goes out as a part of a multipart upload.
        await this.#sendPart();
        continue;
      }
      const take = Math.min(bytes.byteLength - at, this.#o.partSize - this.#filled);
      this.#current.bytes.set(bytes.subarray(at, at + take), this.#filled);
      this.#filled += take;
      this.#bytes += take;
      at += take;
    }
  }

  /** Sends what remains and seals the object. */
  async finish(): Promise<StoredObject> {
    const slab = this.#current ?? (await this.#buffers.acquire(this.#o.signal));
    this.#current = slab;
    if (this.#partNumber === 0) {
      // Everything fits in one request.
      const treeHash = hex(await this.#o.hashPool.treeHash(slab.buffer, 0, this.#filled));
      try {
        const stored = await this.#o.store.putObject(this.#o.remoteName, slab.bytes.subarray(0, this.#filled), treeHash, this.#o.objectOptions);
        this.counts.partsSent += 1;
        this.counts.bytesSent += this.#filled;
        this.#o.onUploaded?.(this.#filled);
        return checked(stored, this.#bytes, treeHash, this.#o.remoteName);
      } finally {
        slab.release();
        this.#current = undefined;
      }
    }
    await this.#sendPart();
    await this.#tasks.drain();
    const { uploadId } = await this.#upload!;
    const parts = [...this.#parts.values()].sort((a, b) => a.partNumber - b.partNumber);
    const treeHash = hex(combineTreeHashes(this.#treeHashes));
    const stored = await this.#o.store.completeUpload(this.#o.remoteName, uploadId, parts, this.#bytes, treeHash);
    return checked(stored, this.#bytes, treeHash, this.#o.remoteName);
  }

  /** Releases the buffers of a failed upload once its parts in flight settle. */
  async discard(): Promise<void> {
    await this.#tasks.drain().catch(() => undefined);
    this.#current?.release();
    this.#current = undefined;
  }

  async #sendPart(): Promise<void> {
    const slab = this.#current!;
    const length = this.#filled;
    const partNumber = ++this.#partNumber;
    const offset = (partNumber - 1) * this.#o.partSize;
    this.#current = undefined;
    this.#filled = 0;
    if (partNumber > 10_000) throw new SnaplineError(ErrorCodes.INTERNAL, `${this.#o.remoteName} needs more than 10,000 parts`);
    const slot = this.#treeHashes.length;
    this.#treeHashes.push(Buffer.alloc(0));
    if (this.#upload === undefined) {
      this.#upload = this.#openUpload();
      // Observed by every part task; this keeps a failure from counting as unhandled before the first one looks.
      this.#upload.catch(() => undefined);
    }
    await this.#tasks.add(async () => {
      try {
        const treeHash = await this.#o.hashPool.treeHash(slab.buffer, 0, length);
        this.#treeHashes[slot] = Buffer.from(treeHash);
        const { uploadId, done } = await this.#upload!;
        const known = done.get(partNumber);
        if (known !== undefined && known.sizeBytes === length && (this.#o.store.target !== 'glacier' || known.checksum === hex(treeHash))) {
          this.#parts.set(partNumber, known);
          this.counts.partsSkipped += 1;
          return;
        }
        const part = await this.#o.store.putPart(this.#o.remoteName, uploadId, partNumber, offset, slab.bytes.subarray(0, length), hex(treeHash));
        this.#o.index.archives.recordPart(this.#o.archiveId, this.#o.name, part);
        this.#parts.set(partNumber, part);
        this.counts.partsSent += 1;
        this.counts.bytesSent += length;
        this.#o.onUploaded?.(length);
      } finally {
        slab.release();
      }
    });
  }

  /**
   * The journaled upload when the service still holds it (its parts that
   * both the journal and the service know count as done), else a new one.
   */
  async #openUpload(): Promise<{ uploadId: string; done: Map<number, UploadedPart> }> {
    const { index, store, archiveId, name, remoteName, partSize } = this.#o;
    const journal = index.archives.upload(archiveId, name);
    if (journal !== undefined && journal.partSize === partSize) {
      try {
        const held = new Map((await store.listParts(remoteName, journal.uploadId)).map((p) => [p.partNumber, p]));
        const done = new Map<number, UploadedPart>();
        for (const part of journal.parts) {
          const remote = held.get(part.partNumber);
          if (remote !== undefined && remote.sizeBytes === part.sizeBytes && remote.checksum === part.checksum) done.set(part.partNumber, part);
        }
        return { uploadId: journal.uploadId, done };
      } catch (err) {
        if (!isSnaplineError(err, ErrorCodes.NOT_FOUND)) throw err;
        // The upload is gone (expired, aborted): start again.
      }
    } else if (journal !== undefined) {
      await store.abortUpload(remoteName, journal.uploadId);
    }
    const uploadId = await store.startUpload(remoteName, partSize, this.#o.objectOptions);
    index.archives.beginUpload(archiveId, name, uploadId, partSize);
    return { uploadId, done: new Map() };
  }
}

function checked(stored: StoredObject, sizeBytes: number, treeHash: string, name: string): StoredObject {
  if (stored.sizeBytes !== sizeBytes || stored.treeHash !== treeHash) {
    throw new SnaplineError(
      ErrorCodes.CHECKSUM_MISMATCH,
      `the store holds ${name} as ${stored.sizeBytes} bytes with tree hash ${stored.treeHash}; snapline sent ${sizeBytes} bytes with ${treeHash}`,
    );
  }
  return stored;
}
