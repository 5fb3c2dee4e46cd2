import type { FileHandle } from 'node:fs/promises';
import { ErrorCodes, SnaplineError } from '../errors.js';

/** What the start of a device holds, as found by detectSignature. */
export interface Signature {
  /** What was found, as a phrase: "an ext2/3/4 file system". */
  what: string;
  /** The magic that gave it away, as a phrase: "magic 0xEF53". */
  magic: string;
  /** The byte offset of that magic. */
  offset: number;
}

/** The bytes detectSignature looks at: the ZFS uberblocks of the first label end before 256 KiB. */
export const SIGNATURE_BYTES = 256 * 1024;

const ascii = (text: string) => Buffer.from(text, 'latin1');

/** Bytes `magic` at `offset` of `head` (false when the head is too short). */
function has(head: Buffer, offset: number, magic: Buffer): boolean {
  return offset + magic.byteLength <= head.byteLength && head.subarray(offset, offset + magic.byteLength).equals(magic);
}

interface Probe {
  what: string;
  magic: string;
  /** The offset of the magic when `head` carries it. */
  find(head: Buffer): number | undefined;
}

/** A fixed magic at one of `offsets`. */
function at(what: string, magic: string, bytes: Buffer, offsets: number[]): Probe {
  return { what, magic, find: (head) => offsets.find((offset) => has(head, offset, bytes)) };
}

const BOOT_SIGNATURE = Buffer.from([0x55, 0xaa]);
const ZFS_UBERBLOCK_LE = Buffer.from([0x0c, 0xb1, 0xba, 0, 0, 0, 0, 0]);
const ZFS_UBERBLOCK_BE = Buffer.from([0, 0, 0, 0, 0, 0xba, 0xb1, 0x0c]);

/**
 * The signatures looked for, most specific first: a FAT or NTFS boot sector
 * and a GPT disk's protective MBR also end in the MBR boot signature, so that
 * one comes last. Offsets are those the formats define (util-linux's libblkid
 * looks at the same places).
 */
const PROBES: Probe[] = [
  at('a LUKS encrypted volume', '"LUKS\\xba\\xbe"', Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]), [0]),
  at('an LVM2 physical volume', '"LABELONE"', ascii('LABELONE'), [0, 512, 1024, 1536]),
  at('a Linux RAID (md) member', 'magic 0xA92B4EFC', Buffer.from([0xfc, 0x4e, 0x2b, 0xa9]), [0, 4096]),
  at('a GPT partition table', '"EFI PART"', ascii('EFI PART'), [512, 4096]),
  at('an XFS file system', '"XFSB"', ascii('XFSB'), [0]),
  at('a btrfs file system', '"_BHRfS_M"', ascii('_BHRfS_M'), [65_600]),
  at('an ext2/3/4 file system', 'magic 0xEF53', Buffer.from([0x53, 0xef]), [1080]),
  ...['SWAPSPACE2', 'SWAP-SPACE'].map((magic) => at('Linux swap space', `"${magic}"`, ascii(magic), [4096, 8192, 16_384, 65_536].map((page) => page - 10))),
  {
    what: 'a ZFS pool member',
    magic: 'uberblock magic 0x00BAB10C',
    find: (head) => {
      for (let offset = 128 * 1024; offset < 256 * 1024; offset += 1024) {
        if (has(head, offset, ZFS_UBERBLOCK_LE) || has(head, offset, ZFS_UBERBLOCK_BE)) return offset;
      }
      return undefined;
    },
  },
  at('an NTFS file system', '"NTFS    "', ascii('NTFS    '), [3]),
  at('an exFAT file system', '"EXFAT   "', ascii('EXFAT   '), [3]),
  {
    what: 'a FAT file system',
    magic: 'a FAT type label',
    find: (head) => {
      if (!has(head, 510, BOOT_SIGNATURE)) return undefined;
      if (['FAT12   ', 'FAT16   ', 'FAT     '].some((label) => has(head, 54, ascii(label)))) return 54;
      return has(head, 82, ascii('FAT32   ')) ? 82 : undefined;
    },
  },
  at('an ISO 9660 file system', '"CD001"', ascii('CD001'), [32_769]),
  at('an MBR partition table or boot sector', 'boot signature 0x55AA', BOOT_SIGNATURE, [510]),
];

/** The first partition table, file system or volume signature the start of a device carries, if any. Pure. */
export function detectSignature(head: Buffer): Signature | undefined {
  for (const probe of PROBES) {
    const offset = probe.find(head);
    if (offset !== undefined) return { what: probe.what, magic: probe.magic, offset };
  }
  return undefined;
}

/** Reads the first SIGNATURE_BYTES of an open device or file (fewer when it is shorter) and looks for a signature. */
export async function readSignature(handle: FileHandle): Promise<Signature | undefined> {
  const head = Buffer.alloc(SIGNATURE_BYTES);
  let filled = 0;
  while (filled < head.byteLength) {
    const { bytesRead } = await handle.read(head, filled, head.byteLength - filled, filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return detectSignature(head.subarray(0, filled));
}

/** A device or export that holds `signature` may be overwritten only with --force. */
export function signatureRefusal(path: string, signature: Signature, lookWith = `lsblk -f ${path} and blkid ${path}`): SnaplineError {
  return new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `${path} holds ${signature.what} (${signature.magic} at byte ${signature.offset})`, {
    hint: `pass --force to overwrite it and everything on it (${lookWith} show what it holds)`,
    details: { path, found: signature.what, offset: signature.offset },
  });
}
