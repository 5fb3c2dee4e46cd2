import type { ByteRange, ChangedRanges } from '../../core/changed-ranges.js';
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
  return new NbdSource(client, true, dirtyBitmap);
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
  #closing: Promise<void> | undefined;
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

  /** The extents the bitmap context marks dirty, ascending, clipped to the export, walking it with block status requests. */
  async *#dirtyExtents(context: string): AsyncGenerator<ByteRange> {
    let at = 0;
    while (at < this.sizeBytes) {
      const extents = (await this.#client.blockStatus(at, this.sizeBytes - at)).get(context)!;
      for (const extent of extents) {
        const end = Math.min(extent.offset + extent.length, this.sizeBytes);
        if ((extent.flags & STATE_DIRTY) !== 0 && end > extent.offset) yield { offset: extent.offset, length: end - extent.offset };
        at = end;
      }
    }
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
   * REGION_LOOKAHEAD_BYTES ahead and may report a region cut there.
   */
  async dataRegionAt(position: number): Promise<DataRegion> {
    if (!this.#allocation || this.#closing !== undefined) return { start: position, end: this.sizeBytes };
    const limit = Math.min(this.sizeBytes, position + REGION_LOOKAHEAD_BYTES);
    let start: number | undefined;
    let at = position;
    while (at < limit) {
      const extent = await this.#extentAt(at);
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

  close(): Promise<void> {
    this.#closing ??= this.ownsClient ? this.#client.close() : Promise.resolve();
    return this.#closing;
  }
}
