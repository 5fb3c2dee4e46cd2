import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SIGNATURE_BYTES, detectSignature, readSignature } from './signatures.js';

const dir = mkdtempSync(join(tmpdir(), 'snapline-signatures-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A head of `size` bytes of `fill` with `bytes` written at `offset`. */
function headWith(parts: Array<[offset: number, bytes: Buffer | string]>, size = SIGNATURE_BYTES, fill = 0): Buffer {
  const head = Buffer.alloc(size, fill);
  for (const [offset, bytes] of parts) (typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes).copy(head, offset);
  return head;
}

const BOOT = Buffer.from([0x55, 0xaa]);

/** What a made-up image of each kind holds at the offsets its format defines. */
const IMAGES: Array<[what: string, offset: number, parts: Array<[number, Buffer | string]>]> = [
  ['an MBR partition table or boot sector', 510, [[446, Buffer.from([0x80, 0, 0, 0, 0x83])], [510, BOOT]]],
  ['a GPT partition table', 512, [[510, BOOT], [512, 'EFI PART']]],
  ['a GPT partition table', 4096, [[510, BOOT], [4096, 'EFI PART']]],
  ['an ext2/3/4 file system', 1080, [[1080, Buffer.from([0x53, 0xef])]]],
  ['an XFS file system', 0, [[0, 'XFSB']]],
  ['a btrfs file system', 65_600, [[65_600, '_BHRfS_M']]],
  ['an LVM2 physical volume', 512, [[512, 'LABELONE']]],
  ['Linux swap space', 4086, [[4086, 'SWAPSPACE2']]],
  ['Linux swap space', 65_526, [[65_526, 'SWAP-SPACE']]],
  ['an NTFS file system', 3, [[3, 'NTFS    '], [510, BOOT]]],
  ['an exFAT file system', 3, [[3, 'EXFAT   '], [510, BOOT]]],
  ['a FAT file system', 82, [[82, 'FAT32   '], [510, BOOT]]],
  ['a FAT file system', 54, [[54, 'FAT16   '], [510, BOOT]]],
  ['a LUKS encrypted volume', 0, [[0, Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 2])]]],
  ['a Linux RAID (md) member', 4096, [[4096, Buffer.from([0xfc, 0x4e, 0x2b, 0xa9])]]],
  ['a ZFS pool member', 128 * 1024 + 3 * 1024, [[128 * 1024 + 3 * 1024, Buffer.from([0x0c, 0xb1, 0xba, 0, 0, 0, 0, 0])]]],
  ['an ISO 9660 file system', 32_769, [[32_769, 'CD001']]],
];

describe('detectSignature', () => {
  it.each(IMAGES)('finds %s (at byte %i)', (what, offset, parts) => {
    expect(detectSignature(headWith(parts))).toMatchObject({ what, offset });
  });

  it('finds nothing in zeros, in a repeated byte, or in a head too short to hold the magic', () => {
    expect(detectSignature(Buffer.alloc(SIGNATURE_BYTES))).toBeUndefined();
    expect(detectSignature(Buffer.alloc(SIGNATURE_BYTES, 0xa5))).toBeUndefined();
    expect(detectSignature(headWith([[65_600, '_BHRfS_M']]).subarray(0, 65_604))).toBeUndefined();
    expect(detectSignature(Buffer.alloc(0))).toBeUndefined();
  });

  it('a FAT type label without the boot signature is not taken for a file system', () => {
    expect(detectSignature(headWith([[82, 'FAT32   ']]))).toBeUndefined();
  });
});

/** Runs a formatting tool on a fresh sparse file of `size` bytes; undefined when the tool is not installed. */
function formatted(name: string, size: number, tool: string, args: string[]): string | undefined {
  const path = join(dir, name);
  closeSync(openSync(path, 'w'));
  truncateSync(path, size);
  try {
    execFileSync(tool, [...args, path], { stdio: 'ignore' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return path;
}

describe('readSignature on files the real tools formatted', () => {
  const MIB = 1024 * 1024;
  const cases: Array<[what: string, tool: string, args: string[], size: number]> = [
    ['an ext2/3/4 file system', 'mkfs.ext4', ['-q', '-F'], 8 * MIB],
    ['Linux swap space', 'mkswap', [], MIB],
    ['an XFS file system', 'mkfs.xfs', ['-q'], 320 * MIB],
    ['a btrfs file system', 'mkfs.btrfs', ['-q'], 128 * MIB],
    ['a FAT file system', 'mkfs.vfat', [], 8 * MIB],
  ];
  for (const [what, tool, args, size] of cases) {
    it(`${tool}: ${what}`, async (ctx) => {
      const path = formatted(`${tool}.img`, size, tool, args);
      if (path === undefined) return ctx.skip(`${tool} is not installed`);
      const handle = await open(path, 'r');
      try {
        expect(await readSignature(handle)).toMatchObject({ what });
      } finally {
        await handle.close();
      }
    });
  }

  it('a blank file, and one shorter than the bytes looked at, hold nothing', async () => {
    for (const [name, size] of [['blank.img', 1024 * 1024], ['short.img', 1000]] as const) {
      const path = join(dir, name);
      writeFileSync(path, Buffer.alloc(size));
      const handle = await open(path, 'r');
      try {
        expect(await readSignature(handle)).toBeUndefined();
      } finally {
        await handle.close();
      }
    }
  });
});
