/** EBS direct APIs use one fixed block size. Block index = byte offset / BLOCK_SIZE. */
export const BLOCK_SIZE = 524_288;
export const GIB = 1024 ** 3;
export const BLOCKS_PER_GIB = GIB / BLOCK_SIZE;
/** StartSnapshot accepts VolumeSize from 1 to 65536 GiB. */
export const MAX_VOLUME_SIZE_GIB = 65_536;

/** VolumeSize in whole GiB that holds `bytes` (at least 1). */
export function volumeSizeGiBFor(bytes: number): number {
  return Math.max(1, Math.ceil(bytes / GIB));
}

/** Number of blocks that hold `bytes`; the last one may be partial. */
export function blockCountFor(bytes: number): number {
  return Math.ceil(bytes / BLOCK_SIZE);
}

/** Requests in flight per direction when the caller does not say, and the most a run takes. */
export const DEFAULT_CONCURRENCY = 64;
export const MAX_CONCURRENCY = 1024;
