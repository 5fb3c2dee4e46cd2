import { open, stat, type FileHandle } from 'node:fs/promises';
import { fstatSync, type BigIntStats } from 'node:fs';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { BlockSource, DataRegion } from './block-source.js';
import { deviceSizeFromSysfs, sizeByProbing } from './device-size.js';
import { nativeHoleSeeker, type HoleSeeker } from './holes.js';
import { openNbdSource } from './nbd/source.js';
import { isNbdUrl, parseNbdUrl } from './nbd/url.js';

export type { BlockSource, DataRegion } from './block-source.js';

export interface OpenSourceOptions {
  /** An NBD export's dirty bitmap to answer changedRanges from; refused (INVALID_ARGUMENT) for any other source. */
  dirtyBitmap?: string;
  /** For an NBD export: aborting it fails the requests waiting for the server at once (see NbdSourceOptions.signal). */
  signal?: AbortSignal;
}

/**
 * Opens a regular file, a block device or an NBD export (an nbd:// or
 * nbd+unix:// URL, see nbd/url.ts) for reading, an export with its dirty
 * bitmap when asked. Anything else, and an empty
 * source, is refused with SOURCE_UNUSABLE naming the path.
 */
export async function openSource(path: string, options: OpenSourceOptions = {}): Promise<BlockSource> {
  if (typeof path !== 'string' || path === '') {
    throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, 'no source path given');
  }
  if (isNbdUrl(path)) return openNbdSource(parseNbdUrl(path), { dirtyBitmap: options.dirtyBitmap, signal: options.signal });
  if (options.dirtyBitmap !== undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `dirtyBitmap reads an NBD export's dirty bitmap: ${path} is not an NBD URL`, {
      hint: 'export the disk with qemu-nbd -B NAME and back up its nbd:// URL, or give another tracker\'s changes with --changed-blocks FILE',
      details: { option: 'dirtyBitmap' },
    });
  }
  // Look before opening: opening a FIFO for reading would wait for a writer.
  let kind: HandleSource['kind'];
  try {
    kind = kindOf(path, await stat(path, { bigint: true }));
  } catch (err) {
    throw sourceError(path, err);
  }
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw sourceError(path, err);
  }
  try {
    const stats = await handle.stat({ bigint: true });
    if (kindOf(path, stats) !== kind) {
      throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} changed while it was being opened`);
    }
    const sizeBytes = kind === 'file' ? Number(stats.size) : await deviceSize(handle, stats.rdev);
    if (sizeBytes === 0) {
      throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} is empty (0 bytes): there is nothing to back up`, {
        details: { path },
      });
    }
    return new HandleSource(path, kind, sizeBytes, handle, kind === 'file' ? nativeHoleSeeker() : undefined);
  } catch (err) {
    await handle.close();
    throw sourceError(path, err);
  }
}

class HandleSource implements BlockSource {
  readonly path: string;
  readonly kind: 'file' | 'device';
  readonly sizeBytes: number;
  readonly fd: number;
  readonly #handle: FileHandle;
  /** Undefined when holes cannot be found: no addon, a device, or the filesystem refused once. */
  #holes: HoleSeeker | undefined;
  #closing: Promise<void> | undefined;

  constructor(path: string, kind: HandleSource['kind'], sizeBytes: number, handle: FileHandle, holes: HoleSeeker | undefined) {
    this.path = path;
    this.kind = kind;
    this.sizeBytes = sizeBytes;
    this.#handle = handle;
    this.fd = handle.fd;
    this.#holes = holes;
  }

  dataRegionAt(position: number): DataRegion {
    const everything = { start: position, end: this.sizeBytes };
    if (this.#holes === undefined || this.#closing !== undefined) return everything;
    const fd = this.#handle.fd;
    try {
      const start = this.#holes.nextData(fd, position);
      if (start < 0 || start >= this.sizeBytes) {
        // Only a hole up to the end, or a file cut short since it was opened:
        // then let the reads see the short end and report it.
        return fstatSync(fd).size < this.sizeBytes ? everything : { start: this.sizeBytes, end: this.sizeBytes };
      }
      const end = this.#holes.nextHole(fd, start);
      return { start, end: end < 0 ? this.sizeBytes : Math.min(end, this.sizeBytes) };
    } catch {
      // EINVAL (no SEEK_DATA here) or anything odd: read everything from now on.
      this.#holes = undefined;
      return everything;
    }
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `read position must be a byte offset of at least 0, got ${String(position)}`);
    }
    if (this.#closing !== undefined) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `source ${this.path} was read after it was closed`);
    }
    const wanted = Math.max(0, Math.min(target.byteLength, this.sizeBytes - position));
    let filled = 0;
    try {
      while (filled < wanted) {
        const { bytesRead } = await this.#handle.read(target, filled, wanted - filled, position + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new SnaplineError(ErrorCodes.IO_FAILED, `reading source ${this.path} at byte ${position + filled} failed: ${code}`, {
        cause: err,
        details: { path: this.path, position: position + filled },
      });
    }
    return filled;
  }

  close(): Promise<void> {
    this.#closing ??= this.#handle.close();
    return this.#closing;
  }
}

function kindOf(path: string, stats: BigIntStats): HandleSource['kind'] {
  if (stats.isFile()) return 'file';
  if (stats.isBlockDevice()) return 'device';
  const what = stats.isDirectory()
    ? 'a directory'
    : stats.isFIFO()
      ? 'a FIFO (named pipe)'
      : stats.isSocket()
        ? 'a socket'
        : stats.isCharacterDevice()
          ? 'a character device'
          : 'neither a regular file nor a block device';
  throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} is ${what}; snapline backs up a disk image file or a block device`, {
    details: { path },
  });
}

/** The kernel's size of a block device: sysfs, else probing reads. */
async function deviceSize(handle: FileHandle, rdev: bigint): Promise<number> {
  const fromSysfs = await deviceSizeFromSysfs(rdev);
  if (fromSysfs !== undefined) return fromSysfs;
  const probe = new Uint8Array(1);
  return sizeByProbing(async (position) => (await handle.read(probe, 0, 1, position)).bytesRead === 1);
}

/** Maps a failure to open or inspect `path` to SOURCE_UNUSABLE (a SnaplineError passes unchanged). */
function sourceError(path: string, err: unknown): SnaplineError {
  if (err instanceof SnaplineError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const details = { path, errno: code };
  switch (code) {
    case 'ENOENT':
      return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} does not exist`, { cause: err, details });
    case 'ENOTDIR':
      return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} does not exist (a part of the path is not a directory)`, {
        cause: err,
        details,
      });
    case 'EACCES':
    case 'EPERM':
      return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `permission denied reading source ${path}`, {
        cause: err,
        details,
        hint: 'run snapline as a user allowed to read it (for a block device: root, or a member of its group, often "disk")',
      });
    default: {
      const reason = err instanceof Error ? err.message : String(err);
      return new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `source ${path} cannot be opened: ${reason}`, { cause: err, details });
    }
  }
}
