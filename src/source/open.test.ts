import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, isSnaplineError } from '../errors.js';
import { nativeHoleSeeker } from './holes.js';
import { openSource } from './open.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-source-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function refusal(path: string): Promise<{ code: string; message: string }> {
  const err: unknown = await openSource(path).then(
    async (source) => {
      await source.close();
      throw new Error(`openSource accepted ${path}`);
    },
    (error: unknown) => error,
  );
  if (!isSnaplineError(err)) throw err;
  return { code: err.code, message: err.message };
}

describe('openSource on a file', () => {
  it('gives the exact size and reads at explicit positions, short only at the end', async () => {
    const data = randomBytes(1_000_003);
    const path = join(dir, 'image.raw');
    await writeFile(path, data);
    const source = await openSource(path);
    try {
      expect(source).toMatchObject({ path, kind: 'file', sizeBytes: data.byteLength });
      const middle = new Uint8Array(4096);
      expect(await source.read(middle, 12_345)).toBe(4096);
      expect(Buffer.from(middle).equals(data.subarray(12_345, 12_345 + 4096))).toBe(true);
      const tail = new Uint8Array(4096);
      expect(await source.read(tail, data.byteLength - 100)).toBe(100);
      expect(Buffer.from(tail.subarray(0, 100)).equals(data.subarray(-100))).toBe(true);
      expect(await source.read(tail, data.byteLength)).toBe(0);
      expect(await source.read(tail, data.byteLength + 10)).toBe(0);
    } finally {
      await source.close();
      await source.close();
    }
  });

  it('reads into a view of a SharedArrayBuffer', async () => {
    const data = randomBytes(3 * 65_536);
    const path = join(dir, 'shared.raw');
    await writeFile(path, data);
    const source = await openSource(path);
    try {
      const shared = new Uint8Array(new SharedArrayBuffer(data.byteLength + 10));
      expect(await source.read(shared.subarray(10), 0)).toBe(data.byteLength);
      expect(Buffer.from(shared.buffer, 10).equals(data)).toBe(true);
    } finally {
      await source.close();
    }
  });

  it('stops at the size it had when opened even if the file grows', async () => {
    const path = join(dir, 'growing.raw');
    await writeFile(path, Buffer.alloc(1000, 1));
    const source = await openSource(path);
    try {
      await writeFile(path, Buffer.alloc(3000, 2));
      expect(await source.read(new Uint8Array(5000), 0)).toBe(1000);
    } finally {
      await source.close();
    }
  });
});

describe('openSource refuses unusable sources with SOURCE_UNUSABLE naming the path', () => {
  it('missing', async () => {
    const path = join(dir, 'no-such-image.raw');
    const { code, message } = await refusal(path);
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain(path);
    expect(message).toMatch(/does not exist/);
  });

  it('a path through a regular file', async () => {
    const file = join(dir, 'plain.txt');
    await writeFile(file, 'x');
    const path = join(file, 'inside');
    const { code, message } = await refusal(path);
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain(path);
  });

  it('directory', async () => {
    const path = join(dir, 'a-directory');
    await mkdir(path);
    const { code, message } = await refusal(path);
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain(path);
    expect(message).toMatch(/directory/);
  });

  it('FIFO, without waiting for a writer', async () => {
    const path = join(dir, 'a-fifo');
    execFileSync('mkfifo', [path]);
    const { code, message } = await refusal(path);
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain(path);
    expect(message).toMatch(/FIFO/);
  });

  it('socket', async () => {
    const path = join(dir, 'a-socket');
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const { code, message } = await refusal(path);
      expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
      expect(message).toContain(path);
      expect(message).toMatch(/socket/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('character device', async () => {
    const { code, message } = await refusal('/dev/null');
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain('/dev/null');
    expect(message).toMatch(/character device/);
  });

  it('zero length', async () => {
    const path = join(dir, 'empty.raw');
    await writeFile(path, '');
    const { code, message } = await refusal(path);
    expect(code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(message).toContain(path);
    expect(message).toMatch(/empty/);
  });

  it('empty path', async () => {
    expect((await refusal('')).code).toBe(ErrorCodes.SOURCE_UNUSABLE);
  });

  it('permission denied (as root: with the effective uid of nobody for the open)', async () => {
    // A readable directory holding a file only its owner (root) may read.
    const parent = join(dir, 'locked');
    await mkdir(parent);
    await chmod(parent, 0o755);
    const path = join(parent, 'secret.raw');
    await writeFile(path, Buffer.alloc(4096, 7));
    await chmod(path, 0o600);
    const asRoot = process.geteuid?.() === 0;
    if (!asRoot) await chmod(path, 0o000);
    // glibc applies seteuid to every thread, so libuv's pool opens as nobody too.
    if (asRoot) process.seteuid!(65_534);
    let result: { code: string; message: string };
    try {
      result = await refusal(path);
    } finally {
      if (asRoot) process.seteuid!(0);
    }
    expect(result.code).toBe(ErrorCodes.SOURCE_UNUSABLE);
    expect(result.message).toContain(path);
    expect(result.message).toMatch(/permission denied/);
  });
});

describe('dataRegionAt', () => {
  it('finds the data regions of a sparse file with the native addon, and says everything is data without it', async () => {
    const path = join(dir, 'regions.raw');
    const mib = 1024 * 1024;
    const handle = await open(path, 'w');
    await handle.truncate(64 * mib + 5);
    await handle.write(Buffer.alloc(mib, 1), 0, mib, 8 * mib);
    await handle.write(Buffer.alloc(4096, 2), 0, 4096, 40 * mib);
    await handle.close();
    const source = await openSource(path);
    try {
      if (nativeHoleSeeker() === undefined) {
        expect(source.dataRegionAt(0)).toEqual({ start: 0, end: source.sizeBytes });
        return;
      }
      expect(source.dataRegionAt(0)).toEqual({ start: 8 * mib, end: 9 * mib });
      expect(source.dataRegionAt(8 * mib + 100)).toEqual({ start: 8 * mib + 100, end: 9 * mib });
      expect(source.dataRegionAt(9 * mib)).toEqual({ start: 40 * mib, end: 40 * mib + 4096 });
      expect(source.dataRegionAt(41 * mib)).toEqual({ start: source.sizeBytes, end: source.sizeBytes });
    } finally {
      await source.close();
    }
  });

  it('treats a file cut short since it was opened as data, so that the read reports it', async () => {
    const path = join(dir, 'cut.raw');
    const handle = await open(path, 'w');
    await handle.truncate(8 * 1024 * 1024);
    await handle.write(Buffer.alloc(4096, 1), 0, 4096, 0);
    await handle.close();
    const source = await openSource(path);
    try {
      await writeFile(path, Buffer.alloc(4096, 1));
      expect(source.dataRegionAt(1024 * 1024)).toEqual({ start: 1024 * 1024, end: source.sizeBytes });
    } finally {
      await source.close();
    }
  });

  it('finds no holes in a block device', async (context) => {
    const file = join(dir, 'loop-regions.raw');
    const handle = await open(file, 'w');
    await handle.truncate(4 * 1024 * 1024);
    await handle.close();
    let device: string;
    try {
      device = execFileSync('losetup', ['--find', '--show', '--read-only', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      context.skip('loop devices are not available here');
      return;
    }
    try {
      const source = await openSource(device);
      try {
        expect(source.dataRegionAt(0)).toEqual({ start: 0, end: source.sizeBytes });
      } finally {
        await source.close();
      }
    } finally {
      execFileSync('losetup', ['--detach', device]);
    }
  });
});
