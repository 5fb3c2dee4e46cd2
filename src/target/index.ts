import { constants, type BigIntStats } from 'node:fs';
import { open, readFile, readdir, realpath, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { deviceSizeFromSysfs } from '../source/device-size.js';
import { mountsOf } from '../source/mounts.js';
import { readSignature, signatureRefusal } from './signatures.js';
import { ZERO_CHUNK } from './zeros.js';
import { isNbdUrl, parseNbdUrl } from '../source/nbd/url.js';
import { openNbdTarget } from './nbd.js';
import type { OpenTargetOptions, RestoreTarget } from './restore-target.js';

export type { OpenTargetOptions, RestoreTarget } from './restore-target.js';

/**
 * Opens a restore target after checking it may be written: not a directory;
 * an existing non-empty file only with `force` (or `keepContent`, which needs
 * the target to exist); a device only when neither it nor a partition of it
 * is mounted, it holds `sizeBytes`, and (unless `force` or `keepContent`) its
 * start carries no partition table or file system signature; an NBD URL when
 * the export is writable and holds `sizeBytes` (it is written like a device,
 * under the same signature rule). A new file is
 * created readable by the owner only.
 */
export async function openTarget(path: string, options: OpenTargetOptions): Promise<RestoreTarget> {
  if (isNbdUrl(path)) return openNbdTarget(parseNbdUrl(path), options);
  const info = await stat(path, { bigint: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw targetError(path, err);
  });
  await refuseReserved(path, info, options.reserved);
  if (info?.isDirectory()) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} is a directory; give an image file or a block device`);
  }
  if (!info && options.keepContent) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} does not exist: there is nothing to restore onto incrementally`, {
      hint: 'restore in full, without --incremental',
    });
  }
  if (info?.isBlockDevice()) return openDevice(path, info.rdev, options);
  if (info && !info.isFile()) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} is neither a regular file nor a block device`);
  }
  if (info) await refuseMountedLoop(path, info);
  if (info && info.size > 0n && !options.force && !options.keepContent) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} exists and is not empty`, {
      hint: 'pass --force to overwrite it, or --incremental if it holds an earlier restore of this lineage',
    });
  }
  if (info && info.size > 0n && !options.keepContent) options.beforeTruncate?.();
  const flags = options.keepContent ? constants.O_RDWR : constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC;
  const handle = await open(path, flags, 0o600).catch((err: NodeJS.ErrnoException) => {
    throw targetError(path, err);
  });
  return new FileTarget(path, handle);
}

/** TARGET_UNUSABLE when `path` (of stat `info`, undefined when it does not exist) is one of the `reserved` files or the same file as one. */
async function refuseReserved(path: string, info: BigIntStats | undefined, reserved: readonly string[]): Promise<void> {
  const name = await realName(path);
  for (const file of reserved) {
    const own = info === undefined ? undefined : await stat(file, { bigint: true }).catch(() => undefined);
    const sameFile = own !== undefined && own.dev === info!.dev && own.ino === info!.ino;
    if (sameFile || (await realName(file)) === name) {
      throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} is a file of the index snapline is using (${file}): restoring onto it would destroy the index`, {
        hint: 'give another target',
        details: { path, indexFile: file },
      });
    }
  }
}

/** The path with every symbolic link resolved: the file's, else its folder's (a file yet to be made). */
async function realName(path: string): Promise<string> {
  const absolute = resolve(path);
  const real = await realpath(absolute).catch(() => undefined);
  if (real !== undefined) return real;
  const folder = await realpath(dirname(absolute)).catch(() => dirname(absolute));
  return join(folder, basename(absolute));
}

async function openDevice(path: string, rdev: bigint, options: OpenTargetOptions): Promise<RestoreTarget> {
  const mountedAs = await mountPointOf(rdev);
  if (mountedAs) {
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} is mounted (on ${mountedAs}); unmount it before restoring onto it`);
  }
  const size = await deviceSizeFromSysfs(rdev);
  if (size !== undefined && size < options.sizeBytes) {
    throw new SnaplineError(
      ErrorCodes.TARGET_UNUSABLE,
      `${path} holds ${size} bytes, less than the ${options.sizeBytes} bytes of the snapshot`,
    );
  }
  const handle = await open(path, constants.O_RDWR | constants.O_EXCL).catch((err: NodeJS.ErrnoException) => {
    throw targetError(path, err);
  });
  if (!options.force && !options.keepContent) {
    const signature = await readSignature(handle).catch(async (err: unknown) => {
      await handle.close();
      throw new SnaplineError(ErrorCodes.IO_FAILED, `reading the start of ${path} failed: ${(err as Error).message}`, { cause: err });
    });
    if (signature) {
      await handle.close();
      throw signatureRefusal(path, signature);
    }
  }
  return new DeviceTarget(path, handle);
}

/**
 * TARGET_UNUSABLE when the file `path` backs a loop device that (or a
 * partition of which) is mounted: the file system on it would be written
 * under its feet, and would go on writing into the restored image.
 */
async function refuseMountedLoop(path: string, info: BigIntStats, sysfsRoot = '/sys'): Promise<void> {
  const blocks = join(sysfsRoot, 'block');
  for (const name of (await readdir(blocks).catch(() => [] as string[])).filter((entry) => entry.startsWith('loop'))) {
    const backing = await readFile(join(blocks, name, 'loop', 'backing_file'), 'utf8').catch(() => undefined);
    if (backing === undefined) continue;
    const backingInfo = await stat(backing.trim(), { bigint: true }).catch(() => undefined);
    if (backingInfo?.dev !== info.dev || backingInfo.ino !== info.ino) continue;
    const number = await readFile(join(blocks, name, 'dev'), 'utf8').catch(() => '');
    const [major, minor] = number.trim().split(':').map(BigInt) as [bigint?, bigint?];
    if (major === undefined || minor === undefined) continue;
    const rdev = (minor & 0xffn) | ((major & 0xfffn) << 8n) | ((minor & ~0xffn) << 12n) | ((major & ~0xfffn) << 32n);
    const mountedAs = await mountPointOf(rdev, '/proc', sysfsRoot);
    if (mountedAs) {
      throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} backs /dev/${name}, which is mounted (on ${mountedAs}); unmount it before restoring onto ${path}`);
    }
  }
}

/** The mount point of the device or of one of its partitions, if any is mounted. */
export async function mountPointOf(rdev: bigint, procRoot = '/proc', sysfsRoot = '/sys'): Promise<string | undefined> {
  return (await mountsOf(rdev, { proc: procRoot, sys: sysfsRoot }))[0]?.mountPoint;
}

function targetError(path: string, err: NodeJS.ErrnoException): SnaplineError {
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `no permission to write ${path}`, { cause: err });
    case 'EBUSY':
      return new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} is in use by another program`, { cause: err });
    case 'ENOENT':
      return new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `the folder of ${path} does not exist`, { cause: err });
    default:
      return ioError(path, err);
  }
}

/** A write failure: disk full is said plainly. */
export function ioError(path: string, err: unknown): SnaplineError {
  const code = (err as NodeJS.ErrnoException).code;
  const message =
    code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT'
      ? `no space left to write ${path}`
      : `writing ${path} failed: ${(err as Error).message}`;
  return new SnaplineError(ErrorCodes.IO_FAILED, message, { cause: err });
}

abstract class HandleTarget implements RestoreTarget {
  abstract readonly kind: 'file' | 'device';

  constructor(
    readonly path: string,
    protected readonly handle: FileHandle,
  ) {}

  async write(data: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < data.byteLength) {
        const { bytesWritten } = await this.handle.write(data, done, data.byteLength - done, position + done);
        done += bytesWritten;
      }
    } catch (err) {
      throw ioError(this.path, err);
    }
  }

  abstract zero(position: number, length: number): Promise<void>;
  abstract finish(sizeBytes: number): Promise<void>;

  async close(): Promise<void> {
    await this.handle.close();
  }

  protected async writeZeros(position: number, length: number): Promise<void> {
    for (let done = 0; done < length; done += ZERO_CHUNK.byteLength) {
      await this.write(ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.byteLength, length - done)), position + done);
    }
  }

  protected async sync(): Promise<void> {
    try {
      await this.handle.sync();
    } catch (err) {
      throw ioError(this.path, err);
    }
  }
}

class FileTarget extends HandleTarget {
  readonly kind = 'file' as const;

  /** Zeros are written (not a hole punched): Node has no portable punch-hole call. Past the end they are left to truncate. */
  async zero(position: number, length: number): Promise<void> {
    const { size } = await this.handle.stat();
    const end = Math.min(position + length, size);
    if (end > position) await this.writeZeros(position, end - position);
  }

  async finish(sizeBytes: number): Promise<void> {
    try {
      await this.handle.truncate(sizeBytes);
    } catch (err) {
      throw ioError(this.path, err);
    }
    await this.sync();
  }
}

class DeviceTarget extends HandleTarget {
  readonly kind = 'device' as const;

  async zero(position: number, length: number): Promise<void> {
    await this.writeZeros(position, length);
  }

  async finish(): Promise<void> {
    await this.sync();
  }
}
