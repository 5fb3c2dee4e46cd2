import type { ByteRange, ChangedRanges } from '../../core/changed-ranges.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import { abortError } from '../../core/abort.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { BlockSource, DataRegion } from '../block-source.js';
import { connectNbd, type NbdClient, type NbdConnectOptions, type NbdExtent } from './client.js';
import { BASE_ALLOCATION, STATE_DIRTY, STATE_ZERO, dirtyBitmapContext } from './protocol.js';
import type { NbdAddress } from './url.js';

/**
 * How far one dataRegionAt call looks for the end of a hole or of data
 * before it reports the part it has seen (the reader asks again from there).
 */
const REGION_LOOKAHEAD_BYTES = 8 * 1024 ** 3;

export interface NbdSourceOptions extends NbdConnectOptions {
  /** Select the export's qemu:dirty-bitmap:NAME too: the source then answers changedRanges from it. */
  dirtyBitmap?: string;
  /**
   * Aborting it gives up the handshake, or drops the connection, at once:
   * every read and block status request waiting for the server fails with
   * the abort error (NBD cannot cancel a request, and a server that stopped
   * answering would hold them for the reply timeout).
   */
  signal?: AbortSignal;
}

/**
 * Opens an NBD export as a backup source. Reads go out as NBD_CMD_READ,
 * several at once; where the server offers base:allocation, extents it
 * reports as zeros (holes and zero clusters alike) are skipped without
 * being read. With `dirtyBitmap`, the export must offer that bitmap (else
 * SOURCE_UNUSABLE) and the source's changedRanges are its dirty extents.
 * Refusals are SOURCE_UNUSABLE naming the URL, like a file's.
 */
export async function openNbdSource(address: NbdAddress, options: NbdSourceOptions = {}): Promise<BlockSource> {
  const { dirtyBitmap, ...connect } = options;
  const { signal } = options;
  const bitmap = dirtyBitmap === undefined ? undefined : dirtyBitmapContext(dirtyBitmap);
  const client = await connectNbd(address, bitmap === undefined ? connect : { ...connect, metaContexts: [BASE_ALLOCATION, bitmap] });
  if (client.info.sizeBytes === 0) {
    await client.close();
    throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `NBD export ${address.url} is empty (0 bytes): there is nothing to back up`, {
      details: { url: address.url },
    });
  }
  if (bitmap !== undefined && !client.info.metaContexts.includes(bitmap)) {
    await client.close();
    throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `NBD export ${address.url} offers no dirty bitmap "${dirtyBitmap}" (no metadata context ${bitmap})`, {
      hint: 'export the bitmap with it (qemu-nbd -B NAME, or the bitmap of a libvirt pull-mode backup job), or leave --dirty-bitmap out for a full scan',
      details: { option: 'dirtyBitmap', url: address.url },
    });
  }
  const source = new NbdSource(client, true, dirtyBitmap);
  if (signal !== undefined) source.endOnAbort(signal);
  return source;
}

/**
 * A source over an open connection that stays its owner's: reads go out on
 * `client` beside whatever else the owner sends, and close() ends only the
 * source (later reads are refused), never the connection.
 */
export function nbdClientSource(client: NbdClient): BlockSource {
  return new NbdSource(client, false);
}

class NbdSource implements BlockSource {
  readonly path: string;
  readonly kind = 'nbd' as const;
  readonly sizeBytes: number;
  /** Worker threads cannot read a socket: the scan reads into the slab here. */
  readonly fd = undefined;
  readonly #client: NbdClient;
  readonly #allocation: boolean;
  /** The last block status answer, reused while the reader walks through it. */
  #extents: NbdExtent[] = [];
  #cursor = 0;
  /**
   * base:allocation extents the dirty bitmap walk was told of along with the
   * bitmap (one request answers both contexts), kept where they cover a
   * block holding a dirty extent: the tracked scan reads those blocks and
   * asks no block status again. Ascending, not overlapping.
   */
  readonly #known: NbdExtent[] = [];
  #closing: Promise<void> | undefined;
  #stopListening: () => void = () => undefined;
  readonly changedRanges: ChangedRanges | undefined;

  constructor(
    client: NbdClient,
    private readonly ownsClient = true,
    dirtyBitmap?: string,
  ) {
    this.#client = client;
    this.path = client.address.url;
    this.sizeBytes = client.info.sizeBytes;
    this.#allocation = client.info.metaContexts.includes(BASE_ALLOCATION);
    this.changedRanges =
      dirtyBitmap === undefined
        ? undefined
        : {
            kind: 'dirty-bitmap',
            name: dirtyBitmap,
            description: `the dirty bitmap "${dirtyBitmap}" of ${this.path}`,
            ranges: () => this.#dirtyExtents(dirtyBitmapContext(dirtyBitmap)),
          };
  }

  /**
   * The extents the bitmap context marks dirty, ascending, clipped to the
   * export, walking it with block status requests; keeps the base:allocation
   * extents of the blocks they touch (see #known).
   */
  async *#dirtyExtents(context: string): AsyncGenerator<ByteRange> {
    let at = 0;
    while (at < this.sizeBytes) {
      const status = await this.#client.blockStatus(at, this.sizeBytes - at);
      const allocation = this.#allocation ? status.get(BASE_ALLOCATION)! : [];
      for (const extent of status.get(context)!) {
        const end = Math.min(extent.offset + extent.length, this.sizeBytes);
        if ((extent.flags & STATE_DIRTY) !== 0 && end > extent.offset) {
          this.#keep(allocation, Math.floor(extent.offset / BLOCK_SIZE) * BLOCK_SIZE, Math.ceil(end / BLOCK_SIZE) * BLOCK_SIZE);
          yield { offset: extent.offset, length: end - extent.offset };
        }
        at = end;
      }
    }
  }

  /** Adds to #known the extents of `allocation` (ascending) that overlap bytes [from, to). */
  #keep(allocation: readonly NbdExtent[], from: number, to: number): void {
    for (const extent of allocation) {
      if (extent.offset >= to) break;
      if (extent.offset + extent.length <= from) continue;
      const last = this.#known[this.#known.length - 1];
      if (last === undefined || extent.offset >= last.offset + last.length) this.#known.push(extent);
    }
  }

  /** The kept extent holding byte `at`, if any. */
  #knownAt(at: number): NbdExtent | undefined {
    const known = this.#known;
    let low = 0;
    let high = known.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (known[middle]!.offset <= at) low = middle + 1;
      else high = middle;
    }
    const extent = known[low - 1];
    return extent !== undefined && at < extent.offset + extent.length ? extent : undefined;
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    if (this.#closing !== undefined) {
      throw new SnaplineError(ErrorCodes.INTERNAL, `source ${this.path} was read after it was closed`);
    }
    const wanted = Math.max(0, Math.min(target.byteLength, this.sizeBytes - position));
    await this.#client.read(target.subarray(0, wanted), position);
    return wanted;
  }

  /**
   * From base:allocation: bytes the server reports as reading as zeros are a
   * hole; anything else (allocated, or a hole of unknown content) is data.
   * Without the context everything is data. Looks at most
   * REGION_LOOKAHEAD_BYTES ahead and may report a region cut there; a
   * position the dirty bitmap walk has the extents of is answered from them
   * alone, the region cut where they stop.
   */
  async dataRegionAt(position: number): Promise<DataRegion> {
    if (!this.#allocation || this.#closing !== undefined) return { start: position, end: this.sizeBytes };
    const limit = Math.min(this.sizeBytes, position + REGION_LOOKAHEAD_BYTES);
    const known = this.#knownAt(position) !== undefined;
    let start: number | undefined;
    let at = position;
    while (at < limit) {
      const extent = known ? this.#knownAt(at) : await this.#extentAt(at);
      if (extent === undefined) break;
      const zero = (extent.flags & STATE_ZERO) !== 0;
      if (start === undefined && !zero) start = at;
      else if (start !== undefined && zero) return { start, end: at };
      at = Math.min(extent.offset + extent.length, this.sizeBytes);
    }
    return start === undefined ? { start: at, end: at } : { start, end: at };
  }

  /** The base:allocation extent holding byte `at`: from the last answer while the walk is inside it, else asked anew. */
  async #extentAt(at: number): Promise<NbdExtent> {
    const extents = this.#extents;
    // The reader walks forward: go on from where the last lookup ended.
    if (this.#cursor >= extents.length || extents[this.#cursor]!.offset > at) this.#cursor = 0;
    for (; this.#cursor < extents.length; this.#cursor += 1) {
      const extent = extents[this.#cursor]!;
      if (at < extent.offset) break;
      if (at < extent.offset + extent.length) return extent;
    }
    const status = await this.#client.blockStatus(at, this.sizeBytes - at);
    this.#extents = status.get(BASE_ALLOCATION)!;
    this.#cursor = 0;
    return this.#extents[0]!;
  }

  /** Ends the connection with the abort error once `signal` aborts (at once if it has); close() stops listening. */
  endOnAbort(signal: AbortSignal): void {
    const onAbort = (): void => void this.#client.close(abortError(signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.#stopListening = () => signal.removeEventListener('abort', onAbort);
  }

  close(): Promise<void> {
    this.#stopListening();
    this.#closing ??= this.ownsClient ? this.#client.close() : Promise.resolve();
    return this.#closing;
  }
}
