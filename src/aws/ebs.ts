import type { EBSClient } from '@aws-sdk/client-ebs';
import { BLOCK_SIZE } from '../core/constants.js';
import type {
  BlockPage,
  BlockRef,
  ChangedBlockRef,
  ListOptions,
  SnapshotReader,
  SnapshotStatus,
  SnapshotWriter,
  StartSnapshotInput,
  StartedSnapshot,
} from '../core/ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { DirectBlockRequests } from './block-requests.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { ebsSdk } from './sdk.js';

const UNSIGNED_PAYLOAD_MIDDLEWARE = 'snaplineUnsignedBlockPayload';

/**
 * EBS direct APIs over the SDK. One attempt per call: wrap it with
 * resilientWriter / resilientReader (retry.ts) for retries and throttling.
 * Every failure is a SnaplineError from fromAwsError. With `direct`, the two
 * block calls go as direct requests signed by the same client's signer
 * (block-requests.ts), the rest through the SDK. With `signal`, an abort
 * ends the block transfers and listings in flight: their calls fail
 * INTERRUPTED; StartSnapshot and CompleteSnapshot run to their end (see
 * InFlightRequests; calls made after the abort go out). Every outcome marks
 * `contact` (see EndpointContact).
 */
export class EbsSnapshotStore implements SnapshotWriter, SnapshotReader {
  readonly #client: EBSClient;
  readonly #direct: DirectBlockRequests | undefined;
  readonly #requests: InFlightRequests;

  constructor(client: EBSClient, options: { direct?: DirectBlockRequests; signal?: AbortSignal; contact?: EndpointContact } = {}) {
    this.#client = client;
    this.#direct = options.direct;
    this.#requests = new InFlightRequests(options.signal, options.contact);
    // PutSnapshotBlock's body is not part of the signature (its checksum header is): without this the SDK
    // would hash every 512 KiB body a second time just to sign it.
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string> };
        if (context.commandName === 'PutSnapshotBlockCommand' && request.headers !== undefined) {
          request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
        }
        return next(args);
      },
      { step: 'build', name: UNSIGNED_PAYLOAD_MIDDLEWARE, override: true },
    );
  }

  /** Not idempotent unless `clientToken` is given. Not cut by an abort (it creates a snapshot). */
  async startSnapshot(input: StartSnapshotInput): Promise<StartedSnapshot> {
    try {
      const out = await this.#requests.run('ebs:StartSnapshot', (abortSignal) =>
        this.#client.send(
          new (ebsSdk().StartSnapshotCommand)({
            VolumeSize: input.volumeSizeGiB,
            ParentSnapshotId: input.parentSnapshotId,
            Description: input.description,
            Tags: input.tags === undefined ? undefined : Object.entries(input.tags).map(([Key, Value]) => ({ Key, Value })),
            Encrypted: input.encrypted,
            KmsKeyArn: input.kmsKeyArn,
            Timeout: input.timeoutMinutes,
            ClientToken: input.clientToken,
          }),
          { abortSignal },
        ),
        { cutOnAbort: false },
      );
      if (out.SnapshotId === undefined) throw incomplete('ebs:StartSnapshot', 'SnapshotId');
      return {
        snapshotId: out.SnapshotId,
        status: statusOf(out.Status, 'ebs:StartSnapshot'),
        volumeSizeGiB: out.VolumeSize ?? input.volumeSizeGiB,
        blockSize: out.BlockSize ?? BLOCK_SIZE,
        ...(out.ParentSnapshotId ? { parentSnapshotId: out.ParentSnapshotId } : {}),
        ...(out.KmsKeyArn ? { kmsKeyArn: out.KmsKeyArn } : {}),
      };
    } catch (err) {
      throw fromAwsError(err, 'ebs:StartSnapshot');
    }
  }

  /** Idempotent while the snapshot is pending. `data` is sent as is (a view over a SharedArrayBuffer works), never copied. */
  async putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number): Promise<void> {
    if (data.byteLength !== BLOCK_SIZE) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `a block has ${BLOCK_SIZE} bytes, got ${data.byteLength} for block ${blockIndex}`);
    }
    const direct = this.#direct;
    if (direct !== undefined) return this.#requests.run('ebs:PutSnapshotBlock', (signal) => direct.putBlock(snapshotId, blockIndex, data, checksum, progress, { signal }));
    try {
      await this.#requests.run('ebs:PutSnapshotBlock', (abortSignal) =>
        this.#client.send(
          new (ebsSdk().PutSnapshotBlockCommand)({
            SnapshotId: snapshotId,
            BlockIndex: blockIndex,
            BlockData: data,
            DataLength: BLOCK_SIZE,
            Checksum: checksum,
            ChecksumAlgorithm: 'SHA256',
            Progress: progress === undefined ? undefined : Math.max(0, Math.min(100, Math.floor(progress))),
          }),
          { abortSignal },
        ),
      );
    } catch (err) {
      throw fromAwsError(err, 'ebs:PutSnapshotBlock');
    }
  }

  /** Asks AWS to seal the snapshot; calling it again for a snapshot already sealed is up to AWS. Not cut by an abort. */
  async completeSnapshot(snapshotId: string, changedBlocksCount: number, aggregateChecksum: string): Promise<SnapshotStatus> {
    try {
      const out = await this.#requests.run('ebs:CompleteSnapshot', (abortSignal) =>
        this.#client.send(
          new (ebsSdk().CompleteSnapshotCommand)({
            SnapshotId: snapshotId,
            ChangedBlocksCount: changedBlocksCount,
            Checksum: aggregateChecksum,
            ChecksumAlgorithm: 'SHA256',
            ChecksumAggregationMethod: 'LINEAR',
          }),
          { abortSignal },
        ),
        { cutOnAbort: false },
      );
      return statusOf(out.Status, 'ebs:CompleteSnapshot');
    } catch (err) {
      throw fromAwsError(err, 'ebs:CompleteSnapshot');
    }
  }

  listBlocks(snapshotId: string, options: ListOptions = {}): AsyncIterable<BlockPage<BlockRef>> {
    return pages('ebs:ListSnapshotBlocks', async (pageToken) => {
      const out = await this.#requests.run('ebs:ListSnapshotBlocks', (abortSignal) =>
        this.#client.send(
          new (ebsSdk().ListSnapshotBlocksCommand)({
            SnapshotId: snapshotId,
            NextToken: pageToken,
            MaxResults: options.pageSize,
            StartingBlockIndex: pageToken === undefined ? options.startingBlockIndex : undefined,
          }),
          { abortSignal },
        ),
      );
      const blocks = (out.Blocks ?? []).map((block): BlockRef => {
        if (block.BlockIndex === undefined || block.BlockToken === undefined) throw incomplete('ebs:ListSnapshotBlocks', 'BlockIndex/BlockToken');
        return { index: block.BlockIndex, token: block.BlockToken };
      });
      return { blocks, volumeSize: out.VolumeSize, expiry: out.ExpiryTime, nextToken: out.NextToken };
    });
  }

  /** An empty `firstSnapshotId` lists every block of the second snapshot. */
  listChangedBlocks(firstSnapshotId: string, secondSnapshotId: string, options: ListOptions = {}): AsyncIterable<BlockPage<ChangedBlockRef>> {
    return pages('ebs:ListChangedBlocks', async (pageToken) => {
      const out = await this.#requests.run('ebs:ListChangedBlocks', (abortSignal) =>
        this.#client.send(
          new (ebsSdk().ListChangedBlocksCommand)({
            FirstSnapshotId: firstSnapshotId === '' ? undefined : firstSnapshotId,
            SecondSnapshotId: secondSnapshotId,
            NextToken: pageToken,
            MaxResults: options.pageSize,
            StartingBlockIndex: pageToken === undefined ? options.startingBlockIndex : undefined,
          }),
          { abortSignal },
        ),
      );
      const blocks = (out.ChangedBlocks ?? []).map((block): ChangedBlockRef => {
        if (block.BlockIndex === undefined) throw incomplete('ebs:ListChangedBlocks', 'BlockIndex');
        return {
          index: block.BlockIndex,
          ...(block.FirstBlockToken ? { firstToken: block.FirstBlockToken } : {}),
          ...(block.SecondBlockToken ? { secondToken: block.SecondBlockToken } : {}),
        };
      });
      return { blocks, volumeSize: out.VolumeSize, expiry: out.ExpiryTime, nextToken: out.NextToken };
    });
  }

  /** Reads the body into one buffer of BLOCK_SIZE; a body of another length is UNAVAILABLE (retryable). */
  async getBlock(snapshotId: string, blockIndex: number, blockToken: string): Promise<{ data: Buffer; checksum: string }> {
    const direct = this.#direct;
    if (direct !== undefined) return this.#requests.run('ebs:GetSnapshotBlock', (signal) => direct.getBlock(snapshotId, blockIndex, blockToken, { signal }));
    try {
      return await this.#requests.run('ebs:GetSnapshotBlock', (abortSignal) => this.#sdkGetBlock(snapshotId, blockIndex, blockToken, abortSignal));
    } catch (err) {
      throw fromAwsError(err, 'ebs:GetSnapshotBlock');
    }
  }

  /** GetSnapshotBlock through the SDK, the body read whole (its reading is part of the request). */
  async #sdkGetBlock(snapshotId: string, blockIndex: number, blockToken: string, abortSignal: AbortSignal | undefined): Promise<{ data: Buffer; checksum: string }> {
    const out = await this.#client.send(new (ebsSdk().GetSnapshotBlockCommand)({ SnapshotId: snapshotId, BlockIndex: blockIndex, BlockToken: blockToken }), { abortSignal });
    const body = out.BlockData as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    if (body === undefined) throw incomplete('ebs:GetSnapshotBlock', 'BlockData');
    if (out.Checksum === undefined || (out.DataLength !== undefined && out.DataLength !== BLOCK_SIZE)) {
      // Free the connection: an unread body would hold its socket.
      body.destroy?.();
      if (out.Checksum === undefined) throw incomplete('ebs:GetSnapshotBlock', 'x-amz-Checksum');
      throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `ebs:GetSnapshotBlock: block ${blockIndex} has DataLength ${out.DataLength}, expected ${BLOCK_SIZE}`);
    }
    return { data: await readBlock(body, blockIndex), checksum: out.Checksum };
  }
}

/** Copies a block body into one buffer allocated up front, chunk by chunk. Leaving the loop early destroys the stream. */
async function readBlock(body: AsyncIterable<Uint8Array>, blockIndex: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(BLOCK_SIZE);
  let filled = 0;
  for await (const chunk of body) {
    if (filled + chunk.byteLength > BLOCK_SIZE) {
      throw new SnaplineError(ErrorCodes.UNAVAILABLE, `ebs:GetSnapshotBlock: block ${blockIndex} body is longer than ${BLOCK_SIZE} bytes`, {
        retryable: true,
      });
    }
    data.set(chunk, filled);
    filled += chunk.byteLength;
  }
  if (filled !== BLOCK_SIZE) {
    throw new SnaplineError(ErrorCodes.UNAVAILABLE, `ebs:GetSnapshotBlock: block ${blockIndex} body ended after ${filled} of ${BLOCK_SIZE} bytes`, {
      retryable: true,
    });
  }
  return data;
}

interface RawPage<T> {
  blocks: T[];
  volumeSize: number | undefined;
  expiry: Date | undefined;
  nextToken: string | undefined;
}

/** Follows NextToken until the service gives none; every page is yielded, empty ones too. */
async function* pages<T>(action: string, fetchPage: (pageToken: string | undefined) => Promise<RawPage<T>>): AsyncGenerator<BlockPage<T>> {
  let pageToken: string | undefined;
  do {
    let page: RawPage<T>;
    try {
      page = await fetchPage(pageToken);
    } catch (err) {
      throw fromAwsError(err, action);
    }
    if (page.volumeSize === undefined) throw incomplete(action, 'VolumeSize');
    yield { blocks: page.blocks, volumeSizeGiB: page.volumeSize, ...(page.expiry === undefined ? {} : { expiresAt: page.expiry }) };
    pageToken = page.nextToken || undefined;
  } while (pageToken !== undefined);
}

function statusOf(status: string | undefined, action: string): SnapshotStatus {
  if (status === 'pending' || status === 'completed' || status === 'error') return status;
  throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${action}: unexpected snapshot status ${String(status)}`);
}

function incomplete(action: string, field: string): SnaplineError {
  return new SnaplineError(ErrorCodes.REMOTE_REJECTED, `${action}: the response lacks ${field}`);
}
