import { createHash, randomBytes, type Hash } from 'node:crypto';
import { close, createReadStream, createWriteStream, fdatasync, mkdirSync, open, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { promisify } from 'node:util';
import { finished, pipeline } from 'node:stream/promises';
import { AwsError } from '../protocol/aws-error.js';
import { checksummerOf, type Checksummer, type ChecksumAlgorithm } from '../protocol/flexible-checksums.js';

const MIB = 1024 * 1024;

/** A stored file of an object, archive or part: its name under the blob directory and its size. */
export interface BlobFile {
  name: string;
  size: number;
}

/** What to compute while a body is received. */
export interface ReceiveOptions {
  /** Largest body accepted; a longer one fails with tooLarge(). */
  maxBytes: number;
  tooLarge: () => AwsError;
  md5?: boolean;
  sha256?: boolean;
  /** SHA-256 of every 1 MiB chunk, for Glacier tree hashes. */
  treeChunks?: boolean;
  checksum?: ChecksumAlgorithm;
}

/** A body written to its own file, with the digests asked for. */
export interface ReceivedBlob extends BlobFile {
  md5?: Buffer;
  sha256?: Buffer;
  /** 32-byte SHA-256 digests of each 1 MiB chunk, concatenated (one zero-length chunk's digest for an empty body). */
  chunkHashes?: Buffer;
  checksum?: Buffer;
}

/**
 * Object and archive bytes, one file per stored body under `<dataDir>/blobs`.
 * Bodies are streamed to disk (never held whole in memory), flushed to
 * stable storage before receive() resolves, and named at random; the catalog
 * records a name only after its file is complete, and files no catalog row
 * names (left by a crash) are removed by collectGarbage().
 */
export class BlobFiles {
  readonly #dir: string;

  constructor(dataDir: string) {
    this.#dir = join(dataDir, 'blobs');
    mkdirSync(this.#dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Streams `source` (through `decoder` when given) into a new file,
   * computing the digests asked for over the decoded bytes. Rejects with the
   * first error (the source's, the decoder's AwsError, or tooLarge()) and
   * removes the partial file; the caller keeps nothing on failure.
   */
  async receive(source: Readable, options: ReceiveOptions, decoder?: Transform): Promise<ReceivedBlob> {
    const name = randomBytes(16).toString('hex');
    const path = join(this.#dir, name);
    const digests = new DigestingStream(options);
    // A numeric descriptor: a FileHandle given to a write stream can make its close() wait forever.
    const fd = await promisify(open)(path, 'wx', 0o600);
    try {
      const sink = createWriteStream('', { fd, autoClose: false });
      await pipeFrom(source, decoder === undefined ? [digests, sink] : [decoder, digests, sink]);
      await promisify(fdatasync)(fd);
    } catch (err) {
      rmSync(path, { force: true });
      throw err;
    } finally {
      await promisify(close)(fd);
    }
    return { name, size: digests.length, ...digests.results() };
  }

  /** Removes files; names already gone are ignored. */
  remove(names: Iterable<string>): void {
    for (const name of names) rmSync(join(this.#dir, name), { force: true });
  }

  /** Removes every file not in `referenced` (bodies a crash left behind). Returns how many. */
  collectGarbage(referenced: ReadonlySet<string>): number {
    let removed = 0;
    for (const name of readdirSync(this.#dir)) {
      if (referenced.has(name)) continue;
      rmSync(join(this.#dir, name), { force: true });
      removed += 1;
    }
    return removed;
  }

  /** The checksum of the concatenated files, read one after the other. */
  async checksumOf(files: readonly BlobFile[], algorithm: ChecksumAlgorithm): Promise<Buffer> {
    const summer = checksummerOf(algorithm);
    for (const file of files) {
      for await (const chunk of createReadStream(join(this.#dir, file.name))) summer.update(chunk as Buffer);
    }
    return summer.digest();
  }

  /**
   * Writes bytes `start..end` (inclusive) of the concatenated files to `out`
   * and ends it. Reads one file at a time and waits for `out` to drain.
   * Returns the number of bytes written; rejects when a file cannot be read
   * or `out` closes first (the client went away).
   */
  async copyRange(files: readonly BlobFile[], start: number, end: number, out: Writable): Promise<number> {
    let offset = 0;
    let written = 0;
    for (const file of files) {
      const fileEnd = offset + file.size - 1;
      if (fileEnd >= start && offset <= end && file.size > 0) {
        const from = Math.max(start, offset) - offset;
        const to = Math.min(end, fileEnd) - offset;
        for await (const chunk of createReadStream(join(this.#dir, file.name), { start: from, end: to })) {
          written += (chunk as Buffer).length;
          if (!out.write(chunk)) await drained(out);
        }
      }
      offset += file.size;
      if (offset > end) break;
    }
    out.end();
    await finished(out);
    return written;
  }

}

/** Resolves when `out` can take more; rejects when it closes or fails first. */
function drained(out: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    if (out.destroyed) return reject(new Error('the destination closed before the end'));
    const settle = (err?: Error) => {
      out.off('drain', onDrain);
      out.off('close', onClose);
      out.off('error', settle);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onDrain = () => settle();
    const onClose = () => settle(new Error('the destination closed before the end'));
    out.on('drain', onDrain);
    out.on('close', onClose);
    out.on('error', settle);
  });
}

/**
 * Pipes `source` through `chain` and resolves once the last stream finished.
 * Unlike pipeline(), a failure inside the chain does not destroy the source
 * (an HTTP request whose response is still to be sent): the source is
 * unpiped and the rest of it discarded. A source that closes before its end
 * fails the chain.
 */
async function pipeFrom(source: Readable, chain: [Transform, ...(Transform | Writable)[]]): Promise<void> {
  const first = chain[0];
  const onClose = () => {
    if (!source.readableEnded) first.destroy(new Error('the body ended before it was complete'));
  };
  source.on('close', onClose);
  const done = pipeline(chain);
  source.pipe(first);
  try {
    await done;
  } catch (err) {
    source.unpipe(first);
    source.resume();
    throw err;
  } finally {
    source.off('close', onClose);
  }
}

/** Passes bytes through, counting them, enforcing the size limit and updating the digests. */
class DigestingStream extends Transform {
  length = 0;
  readonly #options: ReceiveOptions;
  readonly #md5: Hash | undefined;
  readonly #sha256: Hash | undefined;
  readonly #checksum: Checksummer | undefined;
  readonly #chunkHashes: Buffer[] | undefined;
  #chunk: Hash | undefined;
  #chunkFill = 0;

  constructor(options: ReceiveOptions) {
    super();
    this.#options = options;
    this.#md5 = options.md5 ? createHash('md5') : undefined;
    this.#sha256 = options.sha256 ? createHash('sha256') : undefined;
    this.#checksum = options.checksum === undefined ? undefined : checksummerOf(options.checksum);
    this.#chunkHashes = options.treeChunks ? [] : undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.length += chunk.length;
    if (this.length > this.#options.maxBytes) {
      callback(this.#options.tooLarge());
      return;
    }
    this.#md5?.update(chunk);
    this.#sha256?.update(chunk);
    this.#checksum?.update(chunk);
    if (this.#chunkHashes !== undefined) this.#addToChunks(chunk);
    callback(null, chunk);
  }

  #addToChunks(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      this.#chunk ??= createHash('sha256');
      const take = Math.min(MIB - this.#chunkFill, data.length - at);
      this.#chunk.update(data.subarray(at, at + take));
      this.#chunkFill += take;
      at += take;
      if (this.#chunkFill === MIB) {
        this.#chunkHashes!.push(this.#chunk.digest());
        this.#chunk = undefined;
        this.#chunkFill = 0;
      }
    }
  }

  results(): Omit<ReceivedBlob, 'name' | 'size'> {
    const results: Omit<ReceivedBlob, 'name' | 'size'> = {};
    if (this.#md5 !== undefined) results.md5 = this.#md5.digest();
    if (this.#sha256 !== undefined) results.sha256 = this.#sha256.digest();
    if (this.#checksum !== undefined) results.checksum = this.#checksum.digest();
    if (this.#chunkHashes !== undefined) {
      if (this.#chunk !== undefined || this.#chunkHashes.length === 0) this.#chunkHashes.push((this.#chunk ?? createHash('sha256')).digest());
      results.chunkHashes = Buffer.concat(this.#chunkHashes);
    }
    return results;
  }
}
