import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Linux major and minor numbers of a device number (glibc's encoding of dev_t). */
export function splitDeviceNumber(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * Byte size of the block device `rdev` as the kernel reports it in
 * <sysfsRoot>/dev/block/MAJOR:MINOR/size (always in 512-byte sectors,
 * whatever the device's own sector size). Undefined when sysfs has no such
 * entry or its content is not a number (sysfs not mounted, for example).
 */
export async function deviceSizeFromSysfs(rdev: bigint, sysfsRoot = '/sys'): Promise<number | undefined> {
  const { major, minor } = splitDeviceNumber(rdev);
  let text: string;
  try {
    text = await readFile(join(sysfsRoot, 'dev', 'block', `${major}:${minor}`, 'size'), 'utf8');
  } catch {
    return undefined;
  }
  const trimmed = text.trim();
  if (!/^\d+$/.test(trimmed)) return undefined;
  const bytes = Number(trimmed) * 512;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/**
 * Byte size of a readable object whose reads return nothing at and past its
 * end (a block device), found with about 2 * log2(size) one-byte reads:
 * doubling, then bisection. For when sysfs cannot tell.
 */
export async function sizeByProbing(readsByteAt: (position: number) => Promise<boolean>): Promise<number> {
  if (!(await readsByteAt(0))) return 0;
  let readable = 0;
  let unreadable = 1;
  while (await readsByteAt(unreadable)) {
    readable = unreadable;
    unreadable *= 2;
  }
  while (unreadable - readable > 1) {
    const middle = readable + Math.floor((unreadable - readable) / 2);
    if (await readsByteAt(middle)) readable = middle;
    else unreadable = middle;
  }
  return readable + 1;
}
