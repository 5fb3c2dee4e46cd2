import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { fromAwsError } from '../../src/aws/errors.js';
import { BLOCK_SIZE, BLOCKS_PER_GIB, MAX_VOLUME_SIZE_GIB } from '../../src/core/constants.js';
import { checksumOf, linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import type {
  BlockPage,
  BlockRef,
  ChangedBlockRef,
  ListOptions,
  RemoteSnapshot,
  SnapshotCatalog,
  SnapshotReader,
  SnapshotStatus,
  SnapshotWriter,
  StartSnapshotInput,
  StartedSnapshot,
} from '../../src/core/ports.js';
import type { SnaplineError } from '../../src/errors.js';

/**
 * An in-memory EBS (direct APIs + the EC2 snapshot calls) for the engine's
 * unit tests. It keeps the AWS rules the engine relies on: per-block
 * checksums, DataLength, index inside VolumeSize, writes only while pending,
 * ChangedBlocksCount and the LINEAR aggregate checked at completion (a wrong
 * one turns the snapshot to error), completion that may stay pending for a
 * few polls, parent inheritance, ListChangedBlocks with First/Second tokens,
 * pagination with NextToken, block tokens checked on read, ClientToken
 * idempotency, a child taking its parent's encryption (Encrypted or
 * KmsKeyArn with a parent refused). Its errors are AWS-shaped errors passed through the adapter's
 * own fromAwsError, so codes, reasons and retryable flags match the real
 * adapter. Failures can be injected per call.
 */

export type MemoryOperation =
  | 'startSnapshot'
  | 'putBlock'
  | 'completeSnapshot'
  | 'listBlocks'
  | 'listChangedBlocks'
  | 'getBlock'
  | 'describeSnapshots'
  | 'taggedSnapshots'
  | 'deleteSnapshot'
  | 'createTags'
  | 'encryptionByDefault';

const ACTIONS: Record<MemoryOperation, string> = {
  startSnapshot: 'ebs:StartSnapshot',
  putBlock: 'ebs:PutSnapshotBlock',
  completeSnapshot: 'ebs:CompleteSnapshot',
  listBlocks: 'ebs:ListSnapshotBlocks',
  listChangedBlocks: 'ebs:ListChangedBlocks',
  getBlock: 'ebs:GetSnapshotBlock',
  describeSnapshots: 'ec2:DescribeSnapshots',
  taggedSnapshots: 'ec2:DescribeSnapshots',
  deleteSnapshot: 'ec2:DeleteSnapshot',
  createTags: 'ec2:CreateTags',
  encryptionByDefault: 'ec2:GetEbsEncryptionByDefault',
};

const STATUS_OF_ERROR: Record<string, number> = {
  ValidationException: 400,
  ResourceNotFoundException: 404,
  ConflictException: 409,
  AccessDeniedException: 403,
  RequestThrottledException: 400,
  ThrottlingException: 400,
  InternalServerException: 500,
  ServiceQuotaExceededException: 402,
  ConcurrentLimitExceededException: 400,
};

/**
 * The SnaplineError the real adapter makes of the AWS error `name` for
 * `action` (e.g. awsFailure('ebs:PutSnapshotBlock', 'RequestThrottledException',
 * { reason: 'RESOURCE_LEVEL_THROTTLE' })). For injecting failures.
 */
export function awsFailure(action: string, name: string, options: { reason?: string; message?: string; status?: number } = {}): SnaplineError {
  const status = options.status ?? STATUS_OF_ERROR[name] ?? 400;
  return fromAwsError(
    {
      name,
      message: options.message ?? `${name} (injected)`,
      ...(options.reason === undefined ? {} : { Reason: options.reason }),
      $fault: status >= 500 ? 'server' : 'client',
      $metadata: { httpStatusCode: status },
    },
    action,
  );
}

export interface MemoryEbsOptions {
  /**
   * describeSnapshots calls during which a completed-to-be snapshot still
   * shows pending. 0 (default): CompleteSnapshot answers the final status at
   * once; more: it answers pending.
   */
  pendingPolls?: number;
  /** Largest listing page the fake returns, whatever page size is asked (AWS: 10000). Small values force pagination. */
  maxPageSize?: number;
  /** Every page with blocks is preceded by an empty page that carries a NextToken (AWS may do that). */
  emptyPages?: boolean;
  /** GetEbsEncryptionByDefault; new snapshots are encrypted when it is on. */
  encryptionByDefault?: boolean;
  /** Each call waits this long before it runs, so concurrency is observable. */
  latencyMs?: number;
}

interface StoredBlock {
  data: Buffer;
  checksum: string;
  digest: Buffer;
  /** Unique per write: ListChangedBlocks compares writes, not contents. */
  version: number;
}

interface MemorySnapshot {
  id: string;
  status: SnapshotStatus;
  /** The status completion will reach once the pending polls are used up. */
  settlesTo?: SnapshotStatus;
  pollsLeft: number;
  volumeSizeGiB: number;
  parentId?: string;
  /** The first snapshot of the lineage; ListChangedBlocks needs the same root. */
  rootId: string;
  description?: string;
  tags: Record<string, string>;
  encrypted: boolean;
  kmsKeyArn?: string;
  timeoutMinutes: number;
  clientToken?: string;
  startTime: Date;
  stateMessage?: string;
  deleted: boolean;
  written: Map<number, StoredBlock>;
  /** The arguments behind clientToken, to detect a reuse with others. */
  startArguments: string;
}

interface InjectedFailure {
  operation: MemoryOperation;
  error: SnaplineError | (() => SnaplineError);
  times: number;
  when?: (args: readonly unknown[]) => boolean;
}

const TOKEN_LIFETIME_MS = 7 * 24 * 3600 * 1000;
/** The account's default EBS key that an encrypted snapshot without KmsKeyArn gets. */
const DEFAULT_KMS_KEY = 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-4000-8000-000000000000';
const DEFAULT_PAGE_SIZE = 10_000;

export class MemoryEbs implements SnapshotWriter, SnapshotReader, SnapshotCatalog {
  readonly options: Readonly<MemoryEbsOptions>;
  /** Calls per operation, failed ones included. */
  readonly calls: Record<MemoryOperation, number>;
  /** Calls running now, and the most ever running at once, per operation. */
  readonly inFlight: Record<MemoryOperation, number>;
  readonly maxInFlight: Record<MemoryOperation, number>;
  readonly #snapshots = new Map<string, MemorySnapshot>();
  #failures: InjectedFailure[] = [];
  #nextVersion = 1;
  #corruptReads = 0;

  constructor(options: MemoryEbsOptions = {}) {
    this.options = { ...options };
    const zeros = () => Object.fromEntries(Object.keys(ACTIONS).map((op) => [op, 0])) as Record<MemoryOperation, number>;
    this.calls = zeros();
    this.inFlight = zeros();
    this.maxInFlight = zeros();
  }

  // ---- test controls ----

  /**
   * The next `times` calls of `operation` (those for which `when` holds, if
   * given) fail with `error` before they have any effect.
   */
  failNext(
    operation: MemoryOperation,
    error: SnaplineError | (() => SnaplineError),
    options: { times?: number; when?: (args: readonly unknown[]) => boolean } = {},
  ): void {
    this.#failures.push({ operation, error, times: options.times ?? 1, ...(options.when === undefined ? {} : { when: options.when }) });
  }

  /** The next `count` getBlock answers carry a flipped byte (the checksum stays the stored one). */
  corruptNextReads(count = 1): void {
    this.#corruptReads += count;
  }

  /** A pending snapshot idle past its Timeout: AWS cancels it into error. */
  expirePending(snapshotId: string): void {
    const snapshot = this.#snapshots.get(snapshotId);
    if (snapshot?.status !== 'pending') throw new Error(`fake: ${snapshotId} is not pending`);
    snapshot.status = 'error';
    snapshot.stateMessage = 'the snapshot timed out before it was completed';
  }

  /** What the fake holds about a snapshot (deleted ones too), for assertions. */
  inspect(snapshotId: string): { status: SnapshotStatus; deleted: boolean; parentId?: string; encrypted: boolean; writtenIndexes: number[] } | undefined {
    const s = this.#snapshots.get(snapshotId);
    if (s === undefined) return undefined;
    return {
      status: s.status,
      deleted: s.deleted,
      ...(s.parentId === undefined ? {} : { parentId: s.parentId }),
      encrypted: s.encrypted,
      writtenIndexes: [...s.written.keys()].sort((a, b) => a - b),
    };
  }

  /** The snapshot's content (inherited and written blocks) by index, copies. */
  contentOf(snapshotId: string): Map<number, Buffer> {
    const content = new Map<number, Buffer>();
    for (const [index, block] of this.#resolve(this.#existing(snapshotId, 'listBlocks'))) content.set(index, Buffer.from(block.data));
    return content;
  }

  // ---- SnapshotWriter ----

  async startSnapshot(input: StartSnapshotInput): Promise<StartedSnapshot> {
    return this.#call('startSnapshot', [input], () => {
      const fail = (name: string, reason: string | undefined, message: string) => this.#fail('startSnapshot', name, message, reason);
      const size = input.volumeSizeGiB;
      if (!Number.isInteger(size) || size < 1 || size > MAX_VOLUME_SIZE_GIB) {
        throw fail('ValidationException', 'INVALID_VOLUME_SIZE', `VolumeSize must be from 1 to ${MAX_VOLUME_SIZE_GIB}, got ${size}`);
      }
      const timeout = input.timeoutMinutes ?? 60;
      if (!Number.isInteger(timeout) || timeout < 10 || timeout > 4320) {
        throw fail('ValidationException', 'INVALID_PARAMETER_VALUE', `Timeout must be from 10 to 4320 minutes, got ${timeout}`);
      }
      const startArguments = JSON.stringify([size, input.parentSnapshotId, input.description, input.tags, input.encrypted, input.kmsKeyArn, timeout]);
      if (input.clientToken !== undefined) {
        const earlier = [...this.#snapshots.values()].find((s) => s.clientToken === input.clientToken);
        if (earlier !== undefined) {
          if (earlier.startArguments !== startArguments) throw fail('ConflictException', undefined, 'ClientToken was used with other arguments');
          return this.#started(earlier);
        }
      }
      let parent: MemorySnapshot | undefined;
      if (input.parentSnapshotId !== undefined) {
        parent = this.#snapshots.get(input.parentSnapshotId);
        if (parent === undefined || parent.deleted) {
          throw fail('ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND', `The parent snapshot ${input.parentSnapshotId} does not exist`);
        }
        if (parent.status !== 'completed') {
          throw fail('ValidationException', 'INVALID_SNAPSHOT_ID', `The parent snapshot ${parent.id} is not completed`);
        }
        if (size < parent.volumeSizeGiB) {
          throw fail('ValidationException', 'INVALID_VOLUME_SIZE', `VolumeSize ${size} is smaller than the parent's ${parent.volumeSizeGiB}`);
        }
        // A child takes its parent's encryption and key; AWS refuses either argument with a parent.
        if (input.encrypted !== undefined || input.kmsKeyArn !== undefined) {
          throw fail('ValidationException', 'INVALID_PARAMETER_VALUE', 'ParentSnapshotId cannot be given with Encrypted or KmsKeyArn');
        }
        if (!parent.encrypted && this.options.encryptionByDefault === true) {
          throw fail('ValidationException', 'INVALID_PARAMETER_VALUE', 'With encryption by default an unencrypted snapshot cannot be a parent');
        }
      } else if (input.encrypted === false && (input.kmsKeyArn !== undefined || this.options.encryptionByDefault === true)) {
        throw fail('ValidationException', 'INVALID_PARAMETER_VALUE', 'Encrypted false is refused with KmsKeyArn or with encryption by default');
      }
      const encrypted = parent?.encrypted ?? (input.encrypted === true || input.kmsKeyArn !== undefined || this.options.encryptionByDefault === true);
      const kmsKeyArn = parent?.kmsKeyArn ?? (encrypted ? (input.kmsKeyArn ?? DEFAULT_KMS_KEY) : undefined);
      const id = `snap-${randomBytes(9).toString('hex').slice(0, 17)}`;
      const snapshot: MemorySnapshot = {
        id,
        status: 'pending',
        pollsLeft: 0,
        volumeSizeGiB: size,
        rootId: parent?.rootId ?? id,
        tags: { ...input.tags },
        encrypted,
        timeoutMinutes: timeout,
        startTime: new Date(),
        deleted: false,
        written: new Map(),
        startArguments,
        ...(parent === undefined ? {} : { parentId: parent.id }),
        ...(input.description === undefined ? {} : { description: input.description }),
        ...(kmsKeyArn === undefined ? {} : { kmsKeyArn }),
        ...(input.clientToken === undefined ? {} : { clientToken: input.clientToken }),
      };
      this.#snapshots.set(id, snapshot);
      return this.#started(snapshot);
    });
  }

  /** Keeps a copy of `data`: the caller's buffer is not retained. */
  async putBlock(snapshotId: string, blockIndex: number, data: Uint8Array, checksum: string, progress?: number): Promise<void> {
    return this.#call('putBlock', [snapshotId, blockIndex, data, checksum, progress], () => {
      const fail = (reason: string, message: string) => this.#fail('putBlock', 'ValidationException', message, reason);
      const snapshot = this.#existing(snapshotId, 'putBlock');
      if (snapshot.status !== 'pending' || snapshot.settlesTo !== undefined) {
        const state = snapshot.status === 'pending' ? 'being completed' : snapshot.status;
        throw fail('INVALID_SNAPSHOT_ID', `The snapshot ${snapshotId} is ${state}; blocks can be written only to a pending snapshot`);
      }
      if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= snapshot.volumeSizeGiB * BLOCKS_PER_GIB) {
        throw fail('INVALID_BLOCK', `Block index ${blockIndex} is outside the volume of ${snapshot.volumeSizeGiB} GiB`);
      }
      if (data.byteLength !== BLOCK_SIZE) throw fail('INVALID_PARAMETER_VALUE', `DataLength must be ${BLOCK_SIZE}, got ${data.byteLength}`);
      if (progress !== undefined && !(progress >= 0 && progress <= 100)) throw fail('INVALID_PARAMETER_VALUE', `Progress must be from 0 to 100, got ${progress}`);
      const copy = Buffer.from(data);
      const digest = sha256(copy);
      if (checksumOf(digest) !== checksum) throw fail('INVALID_PARAMETER_VALUE', `The checksum ${checksum} does not match the block data`);
      snapshot.written.set(blockIndex, { data: copy, checksum, digest, version: this.#nextVersion++ });
    });
  }

  /**
   * Completing a snapshot again (pending completion, completed or error)
   * answers its status and changes nothing: the lenient answer, where the
   * local endpoint refuses (AWS documents neither); the engine copes with both.
   */
  async completeSnapshot(snapshotId: string, changedBlocksCount: number, aggregateChecksum: string): Promise<SnapshotStatus> {
    return this.#call('completeSnapshot', [snapshotId, changedBlocksCount, aggregateChecksum], () => {
      const snapshot = this.#existing(snapshotId, 'completeSnapshot');
      if (snapshot.status !== 'pending' || snapshot.settlesTo !== undefined) return snapshot.status;
      const written = [...snapshot.written].map(([index, block]) => ({ index, digest: block.digest }));
      let outcome: SnapshotStatus = 'completed';
      if (changedBlocksCount !== written.length) {
        outcome = 'error';
        snapshot.stateMessage = `ChangedBlocksCount ${changedBlocksCount} does not match the ${written.length} blocks written`;
      } else if (linearAggregateOf(written) !== aggregateChecksum) {
        outcome = 'error';
        snapshot.stateMessage = 'The aggregate checksum does not match the blocks written';
      }
      const polls = this.options.pendingPolls ?? 0;
      if (polls > 0) {
        snapshot.settlesTo = outcome;
        snapshot.pollsLeft = polls;
        return 'pending';
      }
      snapshot.status = outcome;
      return outcome;
    });
  }

  // ---- SnapshotReader ----

  listBlocks(snapshotId: string, options: ListOptions = {}): AsyncIterable<BlockPage<BlockRef>> {
    return this.#pages('listBlocks', [snapshotId, options], options, () => {
      const snapshot = this.#readable(snapshotId, 'listBlocks');
      const blocks = [...this.#resolve(snapshot)].map(([index, block]): BlockRef => ({ index, token: blockToken(snapshot.id, index, block) }));
      return { snapshot, blocks };
    });
  }

  listChangedBlocks(firstSnapshotId: string, secondSnapshotId: string, options: ListOptions = {}): AsyncIterable<BlockPage<ChangedBlockRef>> {
    return this.#pages('listChangedBlocks', [firstSnapshotId, secondSnapshotId, options], options, () => {
      const second = this.#readable(secondSnapshotId, 'listChangedBlocks');
      const secondBlocks = this.#resolve(second);
      if (firstSnapshotId === '') {
        return { snapshot: second, blocks: [...secondBlocks].map(([index, block]): ChangedBlockRef => ({ index, secondToken: blockToken(second.id, index, block) })) };
      }
      const first = this.#readable(firstSnapshotId, 'listChangedBlocks');
      if (first.rootId !== second.rootId) {
        throw this.#fail('listChangedBlocks', 'ValidationException', 'The snapshots are not of one lineage', 'UNRELATED_SNAPSHOTS');
      }
      const firstBlocks = this.#resolve(first);
      const indexes = [...new Set([...firstBlocks.keys(), ...secondBlocks.keys()])].sort((a, b) => a - b);
      const blocks: ChangedBlockRef[] = [];
      for (const index of indexes) {
        const a = firstBlocks.get(index);
        const b = secondBlocks.get(index);
        if (a?.version === b?.version) continue;
        blocks.push({
          index,
          ...(a === undefined ? {} : { firstToken: blockToken(first.id, index, a) }),
          ...(b === undefined ? {} : { secondToken: blockToken(second.id, index, b) }),
        });
      }
      return { snapshot: second, blocks };
    });
  }

  async getBlock(snapshotId: string, blockIndex: number, token: string): Promise<{ data: Buffer; checksum: string }> {
    return this.#call('getBlock', [snapshotId, blockIndex, token], () => {
      const snapshot = this.#readable(snapshotId, 'getBlock');
      const block = this.#resolve(snapshot).get(blockIndex);
      if (block === undefined || token !== blockToken(snapshot.id, blockIndex, block)) {
        throw this.#fail('getBlock', 'ValidationException', `The block token for block ${blockIndex} is not valid`, 'INVALID_BLOCK_TOKEN');
      }
      const data = Buffer.from(block.data);
      if (this.#corruptReads > 0) {
        this.#corruptReads -= 1;
        data[0] = data[0]! ^ 0xff;
      }
      return { data, checksum: block.checksum };
    });
  }

  // ---- SnapshotCatalog ----

  /** Each call is one poll: snapshots completing in the background move one step toward their final status. */
  async describeSnapshots(snapshotIds: readonly string[]): Promise<RemoteSnapshot[]> {
    return this.#call('describeSnapshots', [snapshotIds], () => {
      const found: RemoteSnapshot[] = [];
      for (const id of new Set(snapshotIds)) {
        const s = this.#snapshots.get(id);
        if (s === undefined || s.deleted) continue;
        if (s.settlesTo !== undefined) {
          s.pollsLeft -= 1;
          if (s.pollsLeft <= 0) {
            s.status = s.settlesTo;
            delete s.settlesTo;
          }
        }
        found.push(remoteOf(s));
      }
      return found;
    });
  }

  /** The snapshots not deleted with each of the tags; values are matched exactly (no wildcards). No poll: nothing settles. */
  async taggedSnapshots(tags: Record<string, string>): Promise<RemoteSnapshot[]> {
    return this.#call('taggedSnapshots', [tags], () =>
      [...this.#snapshots.values()].filter((s) => !s.deleted && Object.entries(tags).every(([key, value]) => s.tags[key] === value)).map(remoteOf),
    );
  }

  /** Idempotent. Children keep the blocks they inherited, as in AWS. */
  async deleteSnapshot(snapshotId: string): Promise<void> {
    return this.#call('deleteSnapshot', [snapshotId], () => {
      const s = this.#snapshots.get(snapshotId);
      if (s !== undefined) s.deleted = true;
    });
  }

  async createTags(snapshotId: string, tags: Record<string, string>): Promise<void> {
    return this.#call('createTags', [snapshotId, tags], () => {
      const s = this.#snapshots.get(snapshotId);
      if (s === undefined || s.deleted) throw this.#fail('createTags', 'InvalidSnapshot.NotFound', `The snapshot '${snapshotId}' does not exist.`);
      Object.assign(s.tags, tags);
    });
  }

  async encryptionByDefault(): Promise<boolean> {
    return this.#call('encryptionByDefault', [], () => this.options.encryptionByDefault === true);
  }

  // ---- internals ----

  /** Counts the call, waits the latency, applies an injected failure, then runs `body`. */
  async #call<T>(operation: MemoryOperation, args: readonly unknown[], body: () => T): Promise<T> {
    this.calls[operation] += 1;
    this.inFlight[operation] += 1;
    this.maxInFlight[operation] = Math.max(this.maxInFlight[operation], this.inFlight[operation]);
    try {
      if (this.options.latencyMs !== undefined) await sleep(this.options.latencyMs);
      else await Promise.resolve();
      const injected = this.#takeFailure(operation, args);
      if (injected !== undefined) throw injected;
      return body();
    } finally {
      this.inFlight[operation] -= 1;
    }
  }

  #takeFailure(operation: MemoryOperation, args: readonly unknown[]): SnaplineError | undefined {
    const failure = this.#failures.find((f) => f.operation === operation && (f.when === undefined || f.when(args)));
    if (failure === undefined) return undefined;
    failure.times -= 1;
    if (failure.times <= 0) this.#failures = this.#failures.filter((f) => f !== failure);
    return typeof failure.error === 'function' ? failure.error() : failure.error;
  }

  #fail(operation: MemoryOperation, name: string, message: string, reason?: string): SnaplineError {
    return awsFailure(ACTIONS[operation], name, { message, ...(reason === undefined ? {} : { reason }) });
  }

  #existing(snapshotId: string, operation: MemoryOperation): MemorySnapshot {
    const s = this.#snapshots.get(snapshotId);
    if (s === undefined || s.deleted) {
      throw this.#fail(operation, 'ResourceNotFoundException', `The snapshot ${snapshotId} does not exist`, 'SNAPSHOT_NOT_FOUND');
    }
    return s;
  }

  /** Reads need a completed snapshot. */
  #readable(snapshotId: string, operation: MemoryOperation): MemorySnapshot {
    const s = this.#existing(snapshotId, operation);
    if (s.status !== 'completed') {
      throw this.#fail(operation, 'ValidationException', `The snapshot ${snapshotId} is ${s.status}; only a completed snapshot can be read`, 'INVALID_SNAPSHOT_ID');
    }
    return s;
  }

  /** Every block of the snapshot (ancestors' overlaid by its own), ascending. Deleted ancestors still count. */
  #resolve(snapshot: MemorySnapshot): Map<number, StoredBlock> {
    const chain: MemorySnapshot[] = [];
    for (let s: MemorySnapshot | undefined = snapshot; s !== undefined; s = s.parentId === undefined ? undefined : this.#snapshots.get(s.parentId)) {
      chain.unshift(s);
    }
    const merged = new Map<number, StoredBlock>();
    for (const s of chain) for (const [index, block] of s.written) merged.set(index, block);
    return new Map([...merged].sort((a, b) => a[0] - b[0]));
  }

  #started(s: MemorySnapshot): StartedSnapshot {
    return {
      snapshotId: s.id,
      status: s.status,
      volumeSizeGiB: s.volumeSizeGiB,
      blockSize: BLOCK_SIZE,
      ...(s.parentId === undefined ? {} : { parentSnapshotId: s.parentId }),
      ...(s.kmsKeyArn === undefined ? {} : { kmsKeyArn: s.kmsKeyArn }),
    };
  }

  /**
   * A listing as pages. The whole list is computed per page request (the
   * snapshot is completed, so it cannot change); NextToken carries the next
   * index and wins over StartingBlockIndex.
   */
  async *#pages<T extends { index: number }>(
    operation: 'listBlocks' | 'listChangedBlocks',
    args: readonly unknown[],
    options: ListOptions,
    list: () => { snapshot: MemorySnapshot; blocks: T[] },
  ): AsyncGenerator<BlockPage<T>> {
    const asked = options.pageSize ?? DEFAULT_PAGE_SIZE;
    let cursor: PageCursor = { next: options.startingBlockIndex ?? 0, empty: this.options.emptyPages === true };
    while (true) {
      const page = await this.#call(operation, args, () => {
        if (!Number.isInteger(asked) || asked < 100 || asked > 10_000) {
          throw this.#fail(operation, 'ValidationException', `MaxResults must be from 100 to 10000, got ${asked}`, 'INVALID_PARAMETER_VALUE');
        }
        const { snapshot, blocks } = list();
        if (cursor.empty) {
          const more = blocks.some((b) => b.index >= cursor.next);
          return { page: { blocks: [], snapshot }, nextCursor: more ? { next: cursor.next, empty: false } : undefined };
        }
        const size = Math.min(asked, this.options.maxPageSize ?? asked);
        const from = blocks.filter((b) => b.index >= cursor.next);
        const taken = from.slice(0, size);
        const nextCursor = from.length > size ? { next: taken.at(-1)!.index + 1, empty: this.options.emptyPages === true } : undefined;
        return { page: { blocks: taken, snapshot }, nextCursor };
      });
      yield { blocks: page.page.blocks, volumeSizeGiB: page.page.snapshot.volumeSizeGiB, expiresAt: new Date(Date.now() + TOKEN_LIFETIME_MS) };
      if (page.nextCursor === undefined) return;
      cursor = page.nextCursor;
    }
  }
}

/** A snapshot as DescribeSnapshots shows it. */
function remoteOf(s: MemorySnapshot): RemoteSnapshot {
  return {
    snapshotId: s.id,
    state: s.status,
    progress: s.status === 'completed' ? '100%' : '0%',
    volumeSizeGiB: s.volumeSizeGiB,
    startTime: s.startTime,
    encrypted: s.encrypted,
    ...(s.kmsKeyArn === undefined ? {} : { kmsKeyId: s.kmsKeyArn }),
    tags: { ...s.tags },
    ...(s.description === undefined ? {} : { description: s.description }),
    ...(s.stateMessage === undefined || s.status !== 'error' ? {} : { stateMessage: s.stateMessage }),
  };
}

interface PageCursor {
  next: number;
  /** Answer an empty page (with a NextToken) before the next real one. */
  empty: boolean;
}

/** A block token names the snapshot it was listed for, the index and the write it stands for. */
function blockToken(snapshotId: string, index: number, block: StoredBlock): string {
  return Buffer.from(`${snapshotId}:${index}:${block.version}`).toString('base64url');
}
