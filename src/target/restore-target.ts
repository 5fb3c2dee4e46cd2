import type { BlockSource } from '../source/block-source.js';

/** Where a restore writes: an image file, a block device or an NBD export (written like a device). */
export interface RestoreTarget {
  readonly path: string;
  readonly kind: 'file' | 'device';
  /** Writes all of `data` at `position`. */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Makes [position, position+length) read as zeros (a hole in a file, zeros written on a device). */
  zero(position: number, length: number): Promise<void>;
  /**
   * A source reading the target through the target's own handle, for a
   * target that cannot be opened a second time while it is open (an NBD
   * export: qemu-nbd serves one client unless started with --shared).
   * Undefined where the target is read by opening its path. Contract: the
   * caller reads each block before it writes it, so no read races a write
   * of the same bytes; closing the source leaves the target open.
   */
  ownSource?(): BlockSource;
  /** Durably finishes the target: a file gets exactly `sizeBytes`; then fsync. */
  finish(sizeBytes: number): Promise<void>;
  close(): Promise<void>;
}

export interface OpenTargetOptions {
  /** Bytes the restored volume needs. */
  sizeBytes: number;
  /** Overwrite an existing non-empty file, or a device that holds a partition table or a file system. */
  force?: boolean;
  /** Keep the target's content (an incremental restore writes only changed blocks). */
  keepContent?: boolean;
  /**
   * Files that must never be written (the index's own, targets.ownFiles()):
   * a target that is one of them, by its path or as the same file under
   * another name, is refused. Required, so that no writer of targets can
   * leave the index out.
   */
  reserved: readonly string[];
  /** Called once every check has passed, right before an existing file is truncated as it opens (nothing else is changed by opening). */
  beforeTruncate?: () => void;
  /** For an NBD export: aborting it drops the connection at once, failing every request waiting for the server with the abort error. */
  signal?: AbortSignal;
}
