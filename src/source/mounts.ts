import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { splitDeviceNumber } from './device-size.js';

/** A filesystem mounted from a block device or one of its partitions. */
export interface Mount {
  mountPoint: string;
  /** major:minor of the device mounted (the device itself or a partition). */
  device: string;
  /** False when the mount, or the filesystem under it, is read-write. */
  readOnly: boolean;
}

/** Where /proc and /sys are; tests point them at fake trees. */
export interface SystemRoots {
  proc?: string;
  sys?: string;
}

/**
 * Every mount of the block device numbered `rdev` or of one of its
 * partitions, from /proc/self/mountinfo (a bind mount appears once per mount
 * point). Empty when nothing is mounted or /proc cannot be read.
 */
export async function mountsOf(rdev: bigint, roots: SystemRoots = {}): Promise<Mount[]> {
  const { major, minor } = splitDeviceNumber(rdev);
  const numbers = new Set([`${major}:${minor}`]);
  const deviceDir = join(roots.sys ?? '/sys', 'dev', 'block', `${major}:${minor}`);
  for (const entry of await readdir(deviceDir).catch(() => [] as string[])) {
    const dev = await readFile(join(deviceDir, entry, 'dev'), 'utf8').catch(() => undefined);
    if (dev) numbers.add(dev.trim());
  }
  const mountinfo = await readFile(join(roots.proc ?? '/proc', 'self', 'mountinfo'), 'utf8').catch(() => '');
  const mounts: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    // id parent major:minor root mount-point mount-options [optional...] - fstype source super-options
    const fields = line.split(' ');
    const device = fields[2];
    if (device === undefined || !numbers.has(device) || fields[4] === undefined) continue;
    const separator = fields.indexOf('-', 6);
    const superOptions = separator < 0 ? [] : (fields[separator + 3] ?? '').split(',');
    const readOnly = (fields[5] ?? '').split(',').includes('ro') || superOptions.includes('ro');
    mounts.push({ mountPoint: unescapeMountPath(fields[4]), device, readOnly });
  }
  return mounts;
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** The mounts of the block device at `path` that can be written to while it is read; empty for anything else. */
export async function writableMountsOf(path: string, roots: SystemRoots = {}): Promise<Mount[]> {
  const info = await stat(path, { bigint: true }).catch(() => undefined);
  if (!info?.isBlockDevice()) return [];
  return (await mountsOf(info.rdev, roots)).filter((mount) => !mount.readOnly);
}

/** The warning for a source mounted read-write: what the copy is worth and how to make it consistent. */
export function crashConsistentWarning(path: string, mounts: readonly Mount[]): string {
  const points = mounts.map((m) => m.mountPoint);
  const first = points[0] ?? '<mount point>';
  return (
    `${path} is mounted read-write (on ${points.join(', ')}): the copy is only crash-consistent, ` +
    'like the disk after a power cut, and writes made while it is read may be torn across blocks. ' +
    `For a consistent copy, freeze it for the backup (fsfreeze --freeze ${first}, then fsfreeze --unfreeze ${first}), ` +
    'back up an LVM or filesystem snapshot of it instead, or unmount it or remount it read-only first'
  );
}
