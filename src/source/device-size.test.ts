import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deviceSizeFromSysfs, sizeByProbing, splitDeviceNumber } from './device-size.js';
import { openSource } from './open.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-device-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** glibc's makedev, to build device numbers the way the kernel reports them. */
function makeDevice(major: number, minor: number): bigint {
  const M = BigInt(major);
  const m = BigInt(minor);
  return ((M & 0xfffn) << 8n) | ((M & 0xfffff000n) << 32n) | (m & 0xffn) | ((m & 0xffffff00n) << 12n);
}

describe('device numbers', () => {
  it('splits small and large major and minor numbers', () => {
    expect(splitDeviceNumber(makeDevice(7, 3))).toEqual({ major: 7, minor: 3 });
    expect(splitDeviceNumber(makeDevice(259, 65_537))).toEqual({ major: 259, minor: 65_537 });
    expect(splitDeviceNumber(makeDevice(4_100, 1_048_575))).toEqual({ major: 4_100, minor: 1_048_575 });
    // /dev/loop1 on Linux: st_rdev 0x701.
    expect(splitDeviceNumber(0x701n)).toEqual({ major: 7, minor: 1 });
  });
});

describe('deviceSizeFromSysfs', () => {
  it('reads MAJOR:MINOR/size in 512-byte sectors under the given root', async () => {
    const root = join(dir, 'sys');
    await mkdir(join(root, 'dev', 'block', '259:65537'), { recursive: true });
    await writeFile(join(root, 'dev', 'block', '259:65537', 'size'), '33554432000\n');
    expect(await deviceSizeFromSysfs(makeDevice(259, 65_537), root)).toBe(33_554_432_000 * 512);
  });

  it('gives undefined without an entry or with a content that is not a number', async () => {
    const root = join(dir, 'sys-bad');
    await mkdir(join(root, 'dev', 'block', '8:0'), { recursive: true });
    await writeFile(join(root, 'dev', 'block', '8:0', 'size'), 'garbage\n');
    expect(await deviceSizeFromSysfs(makeDevice(8, 0), root)).toBeUndefined();
    expect(await deviceSizeFromSysfs(makeDevice(8, 16), root)).toBeUndefined();
  });
});

describe('sizeByProbing', () => {
  it.each([1, 2, 511, 512, 4096, 1_000_003, 3 * 1024 * 1024])('finds the size of a %i-byte object', async (size) => {
    const path = join(dir, `probe-${size}`);
    await writeFile(path, Buffer.alloc(size, 1));
    const handle = await open(path, 'r');
    try {
      const probe = new Uint8Array(1);
      const found = await sizeByProbing(async (position) => (await handle.read(probe, 0, 1, position)).bytesRead === 1);
      expect(found).toBe(size);
    } finally {
      await handle.close();
    }
  });

  it('gives 0 for an empty object', async () => {
    expect(await sizeByProbing(async () => false)).toBe(0);
  });
});

/** Attaches `file` to a free loop device read-only; undefined where the machine does not allow it. */
function attachLoop(file: string): string | undefined {
  try {
    return execFileSync('losetup', ['--find', '--show', '--read-only', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return undefined;
  }
}

describe('openSource on a block device', () => {
  it('opens a loop device as a device with the size the kernel reports, and reads it', async (context) => {
    const data = randomBytes(3 * 1024 * 1024 + 7 * 512);
    const file = join(dir, 'loop-backing.raw');
    await writeFile(file, data);
    const device = attachLoop(file);
    if (device === undefined) {
      context.skip('loop devices are not available here');
      return;
    }
    try {
      const source = await openSource(device);
      try {
        expect(source).toMatchObject({ path: device, kind: 'device', sizeBytes: data.byteLength });
        const tail = new Uint8Array(8192);
        expect(await source.read(tail, data.byteLength - 4096)).toBe(4096);
        expect(Buffer.from(tail.subarray(0, 4096)).equals(data.subarray(-4096))).toBe(true);
      } finally {
        await source.close();
      }
    } finally {
      execFileSync('losetup', ['--detach', device]);
    }
  });
});
