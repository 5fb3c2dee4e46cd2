import { closeSync, constants, fdatasync, fstatSync, openSync, read, readdirSync, writev } from 'node:fs';
import { join } from 'node:path';
import { BLOCK_SIZE } from '../../core/constants.js';

/** Where one stored block's bytes live. */
export interface BlobLocation {
  pack: number;
  offset: number;
}

/** Packs roll over at this size; every blob is exactly BLOCK_SIZE bytes. */
const PACK_LIMIT = 1024 * BLOCK_SIZE; // 512 MiB
const MAX_VECTORS = 64;

/**
 * Append-only pack files holding block bytes, each blob BLOCK_SIZE bytes at a
 * BLOCK_SIZE-aligned offset. Space is reserved synchronously (so concurrent
 * writes never overlap) and written asynchronously; the caller records the
 * location in the catalog only after write() resolves, so a catalog row never
 * points at bytes that are not on disk. Bytes of a failed or abandoned write
 * are never referenced and are simply left in the pack.
 */
export class PackStore {
  readonly #dir: string;
  readonly #fds = new Map<number, number>();
  readonly #dirty = new Set<number>();
  #current: number;
  #size: number;

  constructor(dir: string) {
    this.#dir = dir;
    const packs = readdirSync(dir)
      .map((name) => /^(\d{6})\.pack$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]));
    this.#current = packs.length === 0 ? 1 : Math.max(...packs);
    const fd = this.#fd(this.#current);
    // A crash may leave a partly written tail: start at the next aligned offset.
    this.#size = Math.ceil(fstatSync(fd).size / BLOCK_SIZE) * BLOCK_SIZE;
  }

  /** Writes one block (given as the chunks it arrived in) and says where it is. */
  write(chunks: readonly Buffer[]): Promise<BlobLocation> {
    if (this.#size + BLOCK_SIZE > PACK_LIMIT) {
      this.#current += 1;
      this.#size = 0;
    }
    const location = { pack: this.#current, offset: this.#size };
    this.#size += BLOCK_SIZE;
    const fd = this.#fd(location.pack);
    // A body that arrived in very many small pieces is joined first, to keep the write to a few vectors.
    const buffers = chunks.length > MAX_VECTORS ? [Buffer.concat(chunks)] : (chunks as Buffer[]);
    return new Promise((resolve, reject) => {
      writev(fd, buffers, location.offset, (err, written) => {
        if (err) return reject(err);
        if (written !== BLOCK_SIZE) return reject(new Error(`short write to pack ${location.pack}: ${written} bytes`));
        this.#dirty.add(location.pack);
        resolve(location);
      });
    });
  }

  /** Reads one block into a new buffer. */
  read(location: BlobLocation): Promise<Buffer> {
    const fd = this.#fd(location.pack);
    const buffer = Buffer.allocUnsafe(BLOCK_SIZE);
    return new Promise((resolve, reject) => {
      read(fd, buffer, 0, BLOCK_SIZE, location.offset, (err, bytesRead) => {
        if (err) return reject(err);
        if (bytesRead !== BLOCK_SIZE) return reject(new Error(`short read from pack ${location.pack} at ${location.offset}`));
        resolve(buffer);
      });
    });
  }

  /** Flushes every pack written since the last sync to stable storage. */
  async sync(): Promise<void> {
    const packs = [...this.#dirty];
    this.#dirty.clear();
    await Promise.all(
      packs.map(
        (pack) =>
          new Promise<void>((resolve, reject) => {
            fdatasync(this.#fd(pack), (err) => (err ? reject(err) : resolve()));
          }),
      ),
    );
  }

  close(): void {
    for (const fd of this.#fds.values()) closeSync(fd);
    this.#fds.clear();
  }

  #fd(pack: number): number {
    let fd = this.#fds.get(pack);
    if (fd === undefined) {
      // Not O_APPEND: writes go to reserved positions, which O_APPEND would ignore.
      fd = openSync(join(this.#dir, `${String(pack).padStart(6, '0')}.pack`), constants.O_RDWR | constants.O_CREAT, 0o600);
      this.#fds.set(pack, fd);
    }
    return fd;
  }
}
