import { createHash, type Hash } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * S3's additional checksums (x-amz-checksum-ALGORITHM): the value is the
 * base64 of the big-endian CRC, or of the raw SHA digest.
 */
export const CHECKSUM_ALGORITHMS = ['CRC32', 'CRC32C', 'CRC64NVME', 'SHA1', 'SHA256'] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** An incremental checksum over the chunks of a body. */
export interface Checksummer {
  update(chunk: Buffer): void;
  /** The raw checksum; the checksummer cannot be used afterwards. */
  digest(): Buffer;
}

export function isChecksumAlgorithm(value: string): value is ChecksumAlgorithm {
  return (CHECKSUM_ALGORITHMS as readonly string[]).includes(value);
}

/** The request and response header carrying a checksum of this algorithm. */
export function checksumHeaderOf(algorithm: ChecksumAlgorithm): string {
  return `x-amz-checksum-${algorithm.toLowerCase()}`;
}

/** The XML element (and SDK member) of this algorithm: ChecksumCRC32, ... */
export function checksumElementOf(algorithm: ChecksumAlgorithm): string {
  return `Checksum${algorithm}`;
}

/** Bytes of the raw checksum of each algorithm. */
export function checksumLengthOf(algorithm: ChecksumAlgorithm): number {
  return { CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32 }[algorithm];
}

export function checksummerOf(algorithm: ChecksumAlgorithm): Checksummer {
  switch (algorithm) {
    case 'SHA1':
    case 'SHA256':
      return hashChecksummer(createHash(algorithm.toLowerCase()));
    case 'CRC32':
      return crc32Checksummer();
    case 'CRC32C':
      return crc32cChecksummer();
    case 'CRC64NVME':
      return crc64NvmeChecksummer();
  }
}

/** The base64 checksum of the whole of `data`. */
export function checksumOfBytes(algorithm: ChecksumAlgorithm, data: Buffer): string {
  const summer = checksummerOf(algorithm);
  summer.update(data);
  return summer.digest().toString('base64');
}

function hashChecksummer(hash: Hash): Checksummer {
  return { update: (chunk) => void hash.update(chunk), digest: () => hash.digest() };
}

function uint32Be(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

function crc32Checksummer(): Checksummer {
  let crc = 0;
  return { update: (chunk) => void (crc = crc32(chunk, crc)), digest: () => uint32Be(crc) };
}

/** Table of the reflected CRC-32C (Castagnoli) polynomial 0x82F63B78. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32cChecksummer(): Checksummer {
  let crc = 0xffffffff;
  return {
    update(chunk) {
      let c = crc;
      for (let i = 0; i < chunk.length; i += 1) c = CRC32C_TABLE[(c ^ chunk[i]!) & 0xff]! ^ (c >>> 8);
      crc = c;
    },
    digest: () => uint32Be(crc ^ 0xffffffff),
  };
}

/**
 * Tables of the reflected CRC-64/NVME polynomial 0x9A6C9329AC4BC9B5, split in
 * high and low 32-bit halves so that the hot loop stays in small integers.
 */
const CRC64_TABLES = (() => {
  const high = new Uint32Array(256);
  const low = new Uint32Array(256);
  const polyHigh = 0x9a6c9329;
  const polyLow = 0xac4bc9b5;
  for (let n = 0; n < 256; n += 1) {
    let h = 0;
    let l = n;
    for (let k = 0; k < 8; k += 1) {
      const odd = l & 1;
      l = ((l >>> 1) | ((h & 1) << 31)) >>> 0;
      h = h >>> 1;
      if (odd) {
        h = (h ^ polyHigh) >>> 0;
        l = (l ^ polyLow) >>> 0;
      }
    }
    high[n] = h;
    low[n] = l;
  }
  return { high, low };
})();

function crc64NvmeChecksummer(): Checksummer {
  let h = 0xffffffff;
  let l = 0xffffffff;
  const { high, low } = CRC64_TABLES;
  return {
    update(chunk) {
      let ch = h;
      let cl = l;
      for (let i = 0; i < chunk.length; i += 1) {
        const index = (cl ^ chunk[i]!) & 0xff;
        cl = ((cl >>> 8) | ((ch & 0xff) << 24)) ^ low[index]!;
        ch = (ch >>> 8) ^ high[index]!;
      }
      h = ch >>> 0;
      l = cl >>> 0;
    },
    digest() {
      const out = Buffer.alloc(8);
      out.writeUInt32BE((h ^ 0xffffffff) >>> 0, 0);
      out.writeUInt32BE((l ^ 0xffffffff) >>> 0, 4);
      return out;
    },
  };
}
