import type { ChangedRanges } from '../core/changed-ranges.js';
/** Where data may be, from a position on: [position, start) is a hole (reads as zeros), [start, end) data. */
export interface DataRegion {
  /** First byte that may hold data; sizeBytes when only a hole follows. */
  start: number;
  /** First hole byte after start, or sizeBytes. */
  end: number;
}

/** A file, block device or NBD export read at explicit offsets, with a size fixed at open. */
export interface BlockSource {
  /** The file or device path; for an NBD export its canonical URL. */
  readonly path: string;
  readonly kind: 'file' | 'device' | 'nbd';
  /** Exact byte size, taken when the source was opened. */
  readonly sizeBytes: number;
  /**
   * The open descriptor, for positioned reads from worker threads (valid
   * until close); undefined where only read() can read the source (an NBD
   * export).
   */
  readonly fd: number | undefined;
  /**
   * Reads up to `target.byteLength` bytes at `position` into `target` (a view
   * into a slab); returns the bytes read, short only at sizeBytes. Several
   * reads may be in flight at once.
   */
  read(target: Uint8Array, position: number): Promise<number>;
  /**
   * The data region at or after `position` (0 <= position < sizeBytes), so
   * that holes can be skipped without reading them. A source that cannot
   * tell holes apart (a device, a filesystem without SEEK_DATA, a build
   * without the native addon) answers { start: position, end: sizeBytes }:
   * everything is data. A source may answer with a region cut short (a hole
   * or data that goes on past `end`); the reader asks again from there.
   * Synchronous and cheap for files; an NBD export asks its server.
   */
  dataRegionAt(position: number): DataRegion | Promise<DataRegion>;
  /** The source's own change tracker, when it was opened with one (an NBD export's dirty bitmap). */
  readonly changedRanges?: ChangedRanges;
  /** Closes the handle; idempotent. */
  close(): Promise<void>;
}
