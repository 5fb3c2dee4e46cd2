import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashConsistentWarning, mountsOf, writableMountsOf } from './mounts.js';

describe('mounts of a block device (fake /proc/self/mountinfo and /sys)', () => {
  let root: string;
  let roots: { proc: string; sys: string };
  const sdb = (8n << 8n) | 16n;
  const setMountinfo = (lines: string[]) => writeFile(join(roots.proc, 'self', 'mountinfo'), `${lines.join('\n')}\n`);
  const procLine = '22 1 0:21 / /proc rw,relatime - proc proc rw';

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'snapline-mounts-'));
    roots = { proc: join(root, 'proc'), sys: join(root, 'sys') };
    await mkdir(join(roots.proc, 'self'), { recursive: true });
    await mkdir(join(roots.sys, 'dev', 'block', '8:16', 'sdb1'), { recursive: true });
    await writeFile(join(roots.sys, 'dev', 'block', '8:16', 'sdb1', 'dev'), '8:17\n');
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it('finds a partition mounted read-write, with its escaped path decoded', async () => {
    await setMountinfo([procLine, '40 1 8:17 / /srv/my\\040data rw,relatime shared:5 - ext4 /dev/sdb1 rw,errors=remount-ro']);
    expect(await mountsOf(sdb, roots)).toEqual([{ mountPoint: '/srv/my data', device: '8:17', readOnly: false }]);
  });

  it('tells read-only mounts, by mount option or by filesystem option, from read-write ones', async () => {
    await setMountinfo([procLine, '41 1 8:16 / /mnt/ro ro,relatime - xfs /dev/sdb ro', '42 1 8:17 / /mnt/fsro rw - ext4 /dev/sdb1 ro', '43 1 8:17 / /mnt/rw rw - ext4 /dev/sdb1 rw']);
    expect((await mountsOf(sdb, roots)).map((m) => [m.mountPoint, m.readOnly])).toEqual([
      ['/mnt/ro', true],
      ['/mnt/fsro', true],
      ['/mnt/rw', false],
    ]);
  });

  it('finds nothing for another device, or when /proc cannot be read', async () => {
    await setMountinfo([procLine, '40 1 8:0 / / rw - ext4 /dev/sda rw']);
    expect(await mountsOf(sdb, roots)).toEqual([]);
    expect(await mountsOf(sdb, { proc: join(root, 'nowhere'), sys: roots.sys })).toEqual([]);
  });

  it('a regular file has no writable mounts; the warning says crash-consistent and how to freeze', async () => {
    const file = join(root, 'image.img');
    await writeFile(file, 'x');
    expect(await writableMountsOf(file, roots)).toEqual([]);
    const warning = crashConsistentWarning('/dev/sdb', [{ mountPoint: '/srv', device: '8:17', readOnly: false }]);
    expect(warning).toMatch(/^\/dev\/sdb is mounted read-write \(on \/srv\): the copy is only crash-consistent/);
    expect(warning).toContain('fsfreeze --freeze /srv');
    expect(warning).toContain('snapshot');
  });
});
