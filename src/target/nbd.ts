import { abortError } from '../core/abort.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import type { BlockSource } from '../source/block-source.js';
import { connectNbd, type NbdClient } from '../source/nbd/client.js';
import { nbdClientSource } from '../source/nbd/source.js';
import type { NbdAddress } from '../source/nbd/url.js';
import type { OpenTargetOptions, RestoreTarget } from './restore-target.js';
import { detectSignature, signatureRefusal, SIGNATURE_BYTES } from './signatures.js';
import { ZERO_CHUNK } from './zeros.js';

/**
 * Opens a writable NBD export as a restore target. It is written like a
 * device (kind 'device'): its size is fixed, so it must hold `sizeBytes`,
 * and the blocks a snapshot lacks are zeroed rather than left as they were.
 * A read-only export, one too small, one whose start carries a partition
 * table or file system signature (unless `force` or `keepContent`), or a
 * server that refuses us is TARGET_UNUSABLE naming the URL.
 */
export async function openNbdTarget(address: NbdAddress, options: OpenTargetOptions): Promise<RestoreTarget> {
  const { sizeBytes } = options;
  let client: NbdClient;
  try {
    client = await connectNbd(address, { metaContexts: [], signal: options.signal });
  } catch (err) {
    if (!isSnaplineError(err, ErrorCodes.SOURCE_UNUSABLE)) throw err;
    throw new SnaplineError(ErrorCodes.TARGET_UNUSABLE, err.message, { cause: err, hint: err.hint, details: err.details });
  }
  const refuse = async (why: string, hint?: string) => {
    await client.close();
    return new SnaplineError(ErrorCodes.TARGET_UNUSABLE, `NBD export ${address.url} ${why}`, { hint, details: { url: address.url } });
  };
  if (client.info.readOnly) throw await refuse('is read-only', 'export it writable (qemu-nbd without -r)');
  if (client.info.sizeBytes < sizeBytes) {
    throw await refuse(`holds ${client.info.sizeBytes} bytes, less than the ${sizeBytes} bytes of the snapshot`);
  }
  if (!options.force && !options.keepContent) {
    const head = Buffer.alloc(Math.min(SIGNATURE_BYTES, client.info.sizeBytes));
    const signature = await client.read(head, 0).then(
      () => detectSignature(head),
      async (err: unknown) => {
        await client.close();
        throw err;
      },
    );
    if (signature) {
      await client.close();
      throw signatureRefusal(address.url, signature, `nbdinfo '${address.url}' and nbdinfo --map '${address.url}'`);
    }
  }
  return new NbdTarget(address.url, client, options.signal);
}

class NbdTarget implements RestoreTarget {
  readonly kind = 'device' as const;
  readonly #stopListening: () => void;

  constructor(
    readonly path: string,
    private readonly client: NbdClient,
    signal: AbortSignal | undefined,
  ) {
    // NBD cannot cancel a request: a server that stopped answering would hold the writes for the reply timeout.
    const onAbort = (): void => void client.close(abortError(signal!));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.#stopListening = () => signal?.removeEventListener('abort', onAbort);
  }

  /**
   * Reads go out on the connection the writes use: one connection for both,
   * so a server that takes one client at a time (qemu-nbd without --shared)
   * serves an incremental restore. canMultiConn does not matter here: it
   * says whether a flush on one connection covers writes made on another,
   * and there is no other connection.
   */
  ownSource(): BlockSource {
    return nbdClientSource(this.client);
  }

  write(data: Uint8Array, position: number): Promise<void> {
    return this.client.write(data, position);
  }

  /** NBD_CMD_WRITE_ZEROES where the server has it, else zero bytes written. */
  async zero(position: number, length: number): Promise<void> {
    if (this.client.info.canWriteZeroes) return this.client.writeZeroes(position, length);
    for (let done = 0; done < length; done += ZERO_CHUNK.byteLength) {
      await this.client.write(ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.byteLength, length - done)), position + done);
    }
  }

  /** NBD_CMD_FLUSH: every acknowledged write is durable on the server. */
  finish(): Promise<void> {
    return this.client.flush();
  }

  close(): Promise<void> {
    this.#stopListening();
    return this.client.close();
  }
}
