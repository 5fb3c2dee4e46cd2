import { randomBytes } from 'node:crypto';
import { BLOCKS_PER_GIB } from '../core/constants.js';
import { LinearAggregate } from '../core/checksum.js';
import { EbsErrors } from './protocol/aws-error.js';
import type { FaultInjector } from './faults.js';
import type { StatsRecorder } from './stats.js';
import type { Catalog, SnapshotRecord, SnapshotStatus, Tag } from './store/catalog.js';
import type { BlobLocation, PackStore } from './store/packs.js';
import { BLOCK_TOKEN_LIFETIME_MS, PAGE_TOKEN_LIFETIME_MS, type PagePosition, type TokenSigner } from './ebs/tokens.js';

/** The one account the endpoint serves: snapshot owner, STS caller, KMS key owner. */
export const ACCOUNT_ID = '123456789012';

/** Quotas the endpoint enforces, with AWS's defaults. */
export interface EndpointLimits {
  /** Pending snapshots at once in a Region; one more StartSnapshot gets ConcurrentLimitExceededException. */
  maxPendingSnapshots: number;
  /** Snapshots kept (not deleted) in a Region; one more StartSnapshot gets ServiceQuotaExceededException. */
  maxSnapshots: number;
  /** Copies in progress into one Region; one more CopySnapshot gets ResourceLimitExceeded (default 20). */
  maxConcurrentCopies?: number;
}

export const DEFAULT_LIMITS: EndpointLimits = { maxPendingSnapshots: 100, maxSnapshots: 100_000, maxConcurrentCopies: 20 };

/** How the endpoint imitates AWS's time and account settings. */
export interface SnapshotClock {
  /** Every AWS duration (snapshot Timeout, token lifetimes) runs this many times faster. 1: real time. */
  timeScale: number;
  /** Milliseconds EC2 DescribeSnapshots lags behind: a new snapshot is missing, a state change shows late. */
  ec2LagMs: number;
}

/** StartSnapshot's arguments, checked for form by the protocol layer. */
export interface StartSnapshotInput {
  volumeSize: number;
  parentSnapshotId?: string;
  tags: Tag[];
  description?: string;
  clientToken?: string;
  encrypted?: boolean;
  kmsKeyArn?: string;
  timeoutMinutes: number;
}

export interface BlockEntry {
  index: number;
  token: string;
}

export interface ChangedEntry {
  index: number;
  firstToken?: string;
  secondToken?: string;
}

export interface Page<T> {
  entries: T[];
  volumeSize: number;
  /** Epoch milliseconds when the block tokens of this page expire. */
  expiresAt: number;
  nextToken?: string;
}

/** A pending snapshot's live state, kept in memory (bounded by the pending quota). */
interface PendingSnapshot {
  record: SnapshotRecord;
  lastActivity: number;
  progress: number | null;
  /** False once CompleteSnapshot was accepted: no write may land after that. */
  accepting: boolean;
  /** Block indexes with a write under way. */
  writing: Set<number>;
}

/** A snapshot that may be read: completed and not deleted. */
interface ReadableSnapshot {
  id: number;
  snapshotId: string;
  volumeSize: number;
  region: string;
}

/** What a new copy is to be (see SnapshotService.startCopy); the caller has checked the request. */
export interface CopySpec {
  description: string | null;
  encrypted: boolean;
  kmsKeyArn: string | null;
  tags: Tag[];
  /** How long the copy stays pending, in AWS time (the endpoint divides it by the time scale). */
  durationMs: number;
  /** A copy whose key cannot be used still starts and ends in error with this message, as AWS checks the key later. */
  failure: string | null;
}

const READABLE_CACHE_LIMIT = 4096;

/**
 * The rules of EBS snapshots: lifecycle (pending -> completed | error),
 * lineage, block writes and reads, listings with tokens, completion checks,
 * idle timeout. Methods throw AwsError with the EBS direct exception to
 * answer. Synchronous parts run to completion before any other request is
 * looked at, which is what keeps the state checks and writes consistent.
 */
export class SnapshotService {
  readonly #pending = new Map<string, PendingSnapshot>();
  readonly #readable = new Map<string, ReadableSnapshot>();
  /** Block bytes being written, by base64 digest: a second writer of the same bytes waits instead of writing again. */
  readonly #storing = new Map<string, Promise<BlobLocation>>();
  readonly #writes = new Set<Promise<unknown>>();
  /** When each snapshot left pending (endpoint clock), for the EC2 lag; kept for as long as the lag. */
  readonly #settledAt = new Map<string, number>();
  /** Whether EBS encryption by default is on, by Region (EC2 Enable/DisableEbsEncryptionByDefault); absent: the endpoint's default. */
  readonly #encryptionByDefault = new Map<string, boolean>();

  constructor(
    private readonly catalog: Catalog,
    private readonly packs: PackStore,
    private readonly tokens: TokenSigner,
    private readonly faults: FaultInjector,
    private readonly stats: StatsRecorder,
    private readonly now: () => number,
    private readonly limits: EndpointLimits,
    private readonly clock: SnapshotClock = { timeScale: 1, ec2LagMs: 0 },
    private readonly encryptedByDefault = false,
  ) {
    // A restart gives every pending snapshot a fresh idle period: the endpoint was away, not the client.
    const at = now();
    for (const record of catalog.pendingSnapshots()) this.#pending.set(record.snapshotId, this.#live(record, at));
  }

  // ---- lifecycle ---------------------------------------------------------

  /**
   * StartSnapshot. Idempotent by ClientToken: the same token and arguments
   * give the same snapshot, in whatever state it is now; the token with
   * other arguments is a ConflictException. The encryption outcome follows
   * AWS's tables (see #encryptionOf).
   */
  start(input: StartSnapshotInput, region: string): SnapshotRecord {
    const fingerprint = JSON.stringify([
      input.volumeSize,
      input.parentSnapshotId ?? null,
      input.tags,
      input.description ?? null,
      input.encrypted ?? null,
      input.kmsKeyArn ?? null,
      input.timeoutMinutes,
    ]);
    if (input.clientToken !== undefined) {
      const earlier = this.catalog.byClientToken(region, input.clientToken);
      if (earlier !== undefined) {
        if (earlier.fingerprint !== fingerprint) {
          throw EbsErrors.conflict('The request uses the same client token as a previous, but non-identical request.');
        }
        return this.#current(earlier);
      }
    }

    let parent: SnapshotRecord | undefined;
    if (input.parentSnapshotId !== undefined) {
      parent = this.#current(this.#visible(input.parentSnapshotId, region));
      if (parent.status !== 'completed') {
        throw EbsErrors.validation('INVALID_SNAPSHOT_ID', `The parent snapshot ${parent.snapshotId} is in state ${parent.status}, not completed.`);
      }
      if (input.volumeSize < parent.volumeSize) {
        throw EbsErrors.validation(
          'INVALID_VOLUME_SIZE',
          `The volume size ${input.volumeSize} GiB is smaller than the parent snapshot's ${parent.volumeSize} GiB.`,
        );
      }
    }
    const { encrypted, kmsKeyArn } = this.#encryptionOf(input, parent, region);

    if (this.catalog.countPending(region) >= this.limits.maxPendingSnapshots) {
      throw EbsErrors.concurrentLimit(`You have reached the limit of ${this.limits.maxPendingSnapshots} pending snapshots in ${region}.`);
    }
    if (this.catalog.countVisible(region) >= this.limits.maxSnapshots) {
      throw EbsErrors.quotaExceeded('DEPENDENCY_SERVICE_QUOTA_EXCEEDED', `You have reached the quota of ${this.limits.maxSnapshots} snapshots in ${region}.`);
    }

    const startTime = this.now();
    const record = this.catalog.createSnapshot({
      snapshotId: newSnapshotId(),
      parent: parent?.id ?? null,
      volumeSize: input.volumeSize,
      startTime,
      timeoutMinutes: input.timeoutMinutes,
      description: input.description ?? null,
      encrypted,
      kmsKeyArn,
      tags: input.tags,
      clientToken: input.clientToken ?? null,
      fingerprint,
      region,
      copySource: null,
    });
    this.#pending.set(record.snapshotId, this.#live(record, startTime));
    return record;
  }

  /**
   * The encryption of a new snapshot, by the tables of "Encryption outcomes
   * for EBS direct APIs": a child takes its parent's encryption and key and
   * may name neither Encrypted nor KmsKeyArn; with encryption by default on,
   * nothing unencrypted can be made (Encrypted false, or an unencrypted
   * parent, is refused); without a parent, KmsKeyArn (Encrypted true or
   * omitted) picks the key and Encrypted true alone the account's default key.
   */
  #encryptionOf(input: StartSnapshotInput, parent: SnapshotRecord | undefined, region: string): { encrypted: boolean; kmsKeyArn: string | null } {
    const byDefault = this.encryptionByDefault(region);
    if (parent !== undefined) {
      if (input.encrypted !== undefined) {
        throw EbsErrors.validation('INVALID_PARAMETER_VALUE', "ParentSnapshotId and Encrypted cannot be given in the same request: a child snapshot takes its parent's encryption.");
      }
      if (input.kmsKeyArn !== undefined) {
        throw EbsErrors.validation('INVALID_PARAMETER_VALUE', "KmsKeyArn cannot be given with ParentSnapshotId: a child snapshot is encrypted with its parent's KMS key.");
      }
      if (!parent.encrypted && byDefault) {
        throw EbsErrors.validation(
          'INVALID_PARAMETER_VALUE',
          `EBS encryption by default is enabled, so the unencrypted snapshot ${parent.snapshotId} cannot be a parent; copy it encrypted first.`,
        );
      }
      return { encrypted: parent.encrypted, kmsKeyArn: parent.kmsKeyArn };
    }
    if (input.encrypted === false) {
      if (input.kmsKeyArn !== undefined) throw EbsErrors.validation('INVALID_PARAMETER_VALUE', 'KmsKeyArn cannot be given with Encrypted false.');
      if (byDefault) throw EbsErrors.validation('INVALID_PARAMETER_VALUE', 'EBS encryption by default is enabled: unencrypted snapshots cannot be created.');
      return { encrypted: false, kmsKeyArn: null };
    }
    if (input.kmsKeyArn !== undefined) {
      const owner = /^arn:aws[a-z-]*:kms:[^:]*:(\d{12}):key\/.*$/.exec(input.kmsKeyArn)?.[1];
      if (owner === undefined) throw EbsErrors.validation('INVALID_PARAMETER_VALUE', `KmsKeyArn ${input.kmsKeyArn} is not the ARN of a KMS key.`);
      if (owner !== ACCOUNT_ID) {
        throw EbsErrors.accessDenied('DEPENDENCY_ACCESS_DENIED', `You do not have access to the KMS key ${input.kmsKeyArn}.`);
      }
      return { encrypted: true, kmsKeyArn: input.kmsKeyArn };
    }
    if (input.encrypted === true || byDefault) return { encrypted: true, kmsKeyArn: defaultKmsKeyArn(region) };
    return { encrypted: false, kmsKeyArn: null };
  }

  /** EC2 GetEbsEncryptionByDefault for a Region. */
  encryptionByDefault(region: string): boolean {
    return this.#encryptionByDefault.get(region) ?? this.encryptedByDefault;
  }

  /** EC2 Enable/DisableEbsEncryptionByDefault for a Region. Kept in memory: a restart goes back to the endpoint's setting. */
  setEncryptionByDefault(region: string, on: boolean): void {
    this.#encryptionByDefault.set(region, on);
  }

  /**
   * Checks that a block may be written now and claims its index; the caller
   * then reads the body, calls commitWrite if it is sound, and in every case
   * releaseWrite at the end. Synchronous.
   */
  beginWrite(snapshotId: string, index: number, region: string): PendingSnapshot {
    const live = this.#writable(snapshotId, region);
    const now = this.now();
    if (now - live.record.startTime < this.faults.notFoundWindowMs()) {
      this.stats.fault('notFound');
      throw EbsErrors.notFound(`The snapshot '${snapshotId}' does not exist.`);
    }
    const blocks = live.record.volumeSize * BLOCKS_PER_GIB;
    if (index >= blocks) {
      throw EbsErrors.validation('INVALID_BLOCK', `Block index ${index} is outside the volume of ${live.record.volumeSize} GiB (${blocks} blocks).`);
    }
    if (live.writing.has(index)) {
      throw EbsErrors.validation('CONFLICTING_BLOCK_UPDATE', `Block ${index} of ${snapshotId} is being written by another request.`);
    }
    live.writing.add(index);
    return live;
  }

  /** Gives up the claim of beginWrite. Idempotent. */
  releaseWrite(live: PendingSnapshot, index: number): void {
    live.writing.delete(index);
  }

  /**
   * Stores a checked block (its bytes as received, its SHA-256) and points
   * the snapshot's block at it. Identical bytes are stored once. The block
   * lands only if the snapshot still accepts writes when the bytes are on
   * disk; otherwise this throws and nothing changes.
   */
  async commitWrite(live: PendingSnapshot, index: number, digest: Buffer, chunks: Buffer[], progress: number | undefined): Promise<void> {
    const work = this.#store(digest, chunks);
    this.#writes.add(work);
    try {
      const stored = await work;
      if (!live.accepting || this.#pending.get(live.record.snapshotId) !== live) throw this.#notWritable(live.record.snapshotId, live.record.region);
      this.catalog.putBlock(live.record.id, index, digest, stored);
      live.lastActivity = this.now();
      if (progress !== undefined) live.progress = progress;
    } finally {
      this.#writes.delete(work);
    }
  }

  #store(digest: Buffer, chunks: Buffer[]): Promise<BlobLocation | number> {
    const existing = this.catalog.blobByDigest(digest);
    if (existing !== undefined) return Promise.resolve(existing);
    const key = digest.toString('base64');
    let storing = this.#storing.get(key);
    if (storing === undefined) {
      storing = this.packs.write(chunks);
      this.#storing.set(key, storing);
      const forget = () => this.#storing.delete(key);
      storing.then(forget, forget);
    }
    return storing;
  }

  /**
   * CompleteSnapshot. Checks ChangedBlocksCount and, when given, the LINEAR
   * aggregate over the blocks written in this snapshot; a mismatch turns the
   * snapshot to error. With a completion delay the answer is pending and the
   * snapshot leaves pending later. Only a pending snapshot whose completion
   * was not yet accepted can be completed: AWS documents no answer for a
   * second CompleteSnapshot, so the endpoint takes the strict one and refuses
   * it (ValidationException), whatever state the snapshot is in.
   */
  async complete(snapshotId: string, changedBlocksCount: number, checksum: string | undefined, region: string): Promise<SnapshotStatus> {
    const live = this.#pending.get(snapshotId);
    if (live !== undefined && live.accepting) this.#expireIfIdle(live, this.now());
    if (live === undefined || !live.accepting || live.record.region !== region) throw this.#notCompletable(snapshotId, region);
    live.accepting = false;

    const aggregate = new LinearAggregate();
    for (const { idx, digest } of this.catalog.writtenDigests(live.record.id)) aggregate.add(idx, digest);
    let outcome: 'completed' | 'error' = 'completed';
    let message: string | null = null;
    if (aggregate.count !== changedBlocksCount) {
      outcome = 'error';
      message = `ChangedBlocksCount ${changedBlocksCount} does not match the ${aggregate.count} blocks written.`;
    } else if (checksum !== undefined && aggregate.digest() !== checksum) {
      outcome = 'error';
      message = 'The aggregate checksum does not match the blocks written.';
    } else if (this.faults.completionFails()) {
      this.stats.fault('completionErrors');
      outcome = 'error';
      message = 'The snapshot failed to complete (injected fault).';
    }

    // A completed snapshot's bytes are on stable storage. If that fails, the snapshot takes writes and completions again.
    if (outcome === 'completed') {
      try {
        await this.packs.sync();
      } catch (err) {
        live.accepting = true;
        throw err;
      }
    }
    if (this.#pending.get(snapshotId) !== live) return this.#current(this.#visible(snapshotId, region)).status;

    const delay = this.faults.completionDelayMs();
    if (delay === 0) {
      this.#finish(live, outcome, message);
      return outcome;
    }
    const completesAt = this.now() + delay;
    this.catalog.setCompletion(live.record.id, completesAt, outcome, message);
    live.record = { ...live.record, completesAt, completionOutcome: outcome, completionMessage: message };
    return 'pending';
  }

  /** Moves due completions out of pending and cancels idle snapshots. Called periodically and before reads. */
  sweep(): void {
    const now = this.now();
    for (const live of this.#pending.values()) this.#expireIfIdle(live, now);
    for (const [snapshotId, at] of this.#settledAt) if (now - at > this.clock.ec2LagMs) this.#settledAt.delete(snapshotId);
  }

  /**
   * Applies a due completion, or cancels a snapshot that got no block for
   * Timeout minutes after StartSnapshot, or no CompleteSnapshot for Timeout
   * minutes after its last block ("automatically cancelled if no blocks are
   * written ... or the snapshot is not completed after writing the last
   * block"): the wait restarts with every block written.
   */
  #expireIfIdle(live: PendingSnapshot, now: number): void {
    const { completesAt, completionOutcome, completionMessage, timeoutMinutes } = live.record;
    if (completesAt !== null) {
      if (now >= completesAt) this.#finish(live, completionOutcome ?? 'completed', completionMessage);
    } else if (live.accepting && now - live.lastActivity >= this.#scaled(timeoutMinutes * 60_000)) {
      live.accepting = false;
      this.#finish(live, 'error', `The snapshot was cancelled after ${timeoutMinutes} minutes without activity.`);
    }
  }

  #finish(live: PendingSnapshot, status: 'completed' | 'error', message: string | null): void {
    live.accepting = false;
    this.catalog.setStatus(live.record.id, status, message, status === 'completed' ? 100 : live.progress);
    this.#pending.delete(live.record.snapshotId);
    if (this.clock.ec2LagMs > 0) this.#settledAt.set(live.record.snapshotId, this.now());
  }

  /** An AWS duration on the endpoint's clock (divided by the time scale). */
  #scaled(ms: number): number {
    return ms / this.clock.timeScale;
  }

  // ---- reads -------------------------------------------------------------

  /** ListSnapshotBlocks: inherited and written blocks, ascending. */
  listBlocks(snapshotId: string, region: string, start: number | undefined, maxResults: number, nextToken: string | undefined): Page<BlockEntry> {
    const snapshot = this.#readableSnapshot(snapshotId, region);
    const now = this.now();
    const position = this.#startOf('blocks', snapshotId, start, nextToken, now);
    const indexes = this.catalog.listBlocks(snapshot.id, position, maxResults + 1);
    const expiresAt = now + this.#scaled(BLOCK_TOKEN_LIFETIME_MS);
    const page = this.#paged(indexes, maxResults, { listing: 'blocks', subject: snapshotId }, now);
    return {
      entries: page.indexes.map((index) => ({ index, token: this.tokens.blockToken(snapshotId, index, expiresAt) })),
      volumeSize: snapshot.volumeSize,
      expiresAt,
      nextToken: page.nextToken,
    };
  }

  /**
   * ListChangedBlocks. Without a first snapshot: every block of the second.
   * With one: the blocks written on the path between the two (in either
   * order, siblings too), each token present where that snapshot holds the
   * block. A block rewritten with the same bytes still counts as changed.
   */
  changedBlocks(
    firstSnapshotId: string | undefined,
    secondSnapshotId: string,
    region: string,
    start: number | undefined,
    maxResults: number,
    nextToken: string | undefined,
  ): Page<ChangedEntry> {
    const second = this.#readableSnapshot(secondSnapshotId, region);
    const first = firstSnapshotId === undefined ? undefined : this.#readableSnapshot(firstSnapshotId, region);
    const now = this.now();
    const subject = `${firstSnapshotId ?? ''}..${secondSnapshotId}`;
    const position = this.#startOf('changed', subject, start, nextToken, now);
    const expiresAt = now + this.#scaled(BLOCK_TOKEN_LIFETIME_MS);
    const token = (snapshotId: string, index: number) => this.tokens.blockToken(snapshotId, index, expiresAt);

    let rows: { index: number; inFirst: boolean; inSecond: boolean }[];
    if (first === undefined) {
      rows = this.catalog.listBlocks(second.id, position, maxResults + 1).map((index) => ({ index, inFirst: false, inSecond: true }));
    } else {
      const [firstChain, secondChain] = this.#pathsToCommonAncestor(first, second);
      rows = this.catalog.changedBlocks(first.id, second.id, firstChain, secondChain, position, maxResults + 1);
    }
    const page = this.#paged(
      rows.map((row) => row.index),
      maxResults,
      { listing: 'changed', subject },
      now,
    );
    return {
      entries: rows.slice(0, page.indexes.length).map((row) => ({
        index: row.index,
        ...(row.inFirst && first !== undefined ? { firstToken: token(first.snapshotId, row.index) } : {}),
        ...(row.inSecond ? { secondToken: token(second.snapshotId, row.index) } : {}),
      })),
      volumeSize: second.volumeSize,
      expiresAt,
      nextToken: page.nextToken,
    };
  }

  /** GetSnapshotBlock: the block's bytes and SHA-256, if the token is this block's and still valid. */
  async readBlock(snapshotId: string, region: string, index: number, blockToken: string | undefined): Promise<{ data: Buffer; digest: Buffer }> {
    const snapshot = this.#readableSnapshot(snapshotId, region);
    if (blockToken === undefined || !this.tokens.checkBlockToken(blockToken, snapshotId, index, this.now())) {
      throw EbsErrors.validation('INVALID_BLOCK_TOKEN', 'The block token is not valid for this block, or has expired.');
    }
    const block = this.catalog.block(snapshot.id, index);
    if (block === undefined) throw EbsErrors.validation('INVALID_BLOCK_TOKEN', `Block ${index} is not in snapshot ${snapshotId}.`);
    const data = await this.packs.read(block);
    return { data, digest: block.digest };
  }

  /** The bytes of block `index` of a snapshot by catalog id (for volumes made from it), or undefined when it has none there. */
  async blockOf(snapshot: number, index: number): Promise<Buffer | undefined> {
    const block = this.catalog.block(snapshot, index);
    return block === undefined ? undefined : this.packs.read(block);
  }

  // ---- bookkeeping (EC2) -----------------------------------------------

  /**
   * Every snapshot of the Region not deleted, with live progress for pending
   * ones (a copy's grows with the time it has run), as EC2 DescribeSnapshots
   * sees it: with an EC2 lag, a snapshot started less than the lag ago is
   * missing and one that left pending less than the lag ago still shows
   * pending.
   */
  describe(region: string): SnapshotRecord[] {
    this.sweep();
    const now = this.now();
    const lag = this.clock.ec2LagMs;
    const seen: SnapshotRecord[] = [];
    for (const record of this.catalog.visibleSnapshots()) {
      if (record.region !== region || now - record.startTime < lag) continue;
      const live = this.#pending.get(record.snapshotId);
      if (live !== undefined) {
        seen.push({ ...record, progress: record.copySource === null ? live.progress : copyProgress(record, now) });
        continue;
      }
      const settledAt = this.#settledAt.get(record.snapshotId);
      seen.push(settledAt !== undefined && now - settledAt < lag ? { ...record, status: 'pending', statusMessage: null } : record);
    }
    return seen;
  }

  /** The snapshot, or undefined when it does not exist in the Region or was deleted. */
  find(snapshotId: string, region: string): SnapshotRecord | undefined {
    this.sweep();
    const record = this.catalog.bySnapshotId(snapshotId);
    return record === undefined || record.deletedAt !== null || record.region !== region ? undefined : record;
  }

  /**
   * The snapshot as the EC2 calls that change it (CreateTags, DeleteSnapshot)
   * find it: with an EC2 lag, one started less than the lag ago is not found
   * yet, as DescribeSnapshots does not list it (EC2 is eventually consistent).
   */
  findForEc2(snapshotId: string, region: string): SnapshotRecord | undefined {
    const record = this.find(snapshotId, region);
    return record === undefined || this.now() - record.startTime < this.clock.ec2LagMs ? undefined : record;
  }

  // ---- copies (EC2 CopySnapshot) -----------------------------------------

  /** How many copies may be in progress into one Region. */
  get maxConcurrentCopies(): number {
    return this.limits.maxConcurrentCopies ?? DEFAULT_LIMITS.maxConcurrentCopies!;
  }

  /** Copies into `region` still pending. */
  pendingCopies(region: string): number {
    this.sweep();
    let count = 0;
    for (const live of this.#pending.values()) if (live.record.region === region && live.record.copySource !== null) count += 1;
    return count;
  }

  /**
   * Starts a copy of a completed `source` in `region`; it stays pending for
   * the spec's duration (scaled), then completes, or ends in error with the
   * spec's failure. When an earlier copy of the source's lineage (a copy of
   * the source or of one of its ancestors) is still in the Region, completed
   * and under the same key, the newest such copy becomes the new one's
   * parent: the copy is incremental ("Incremental snapshot copying").
   */
  startCopy(source: SnapshotRecord, region: string, spec: CopySpec): SnapshotRecord {
    const previous = this.#previousCopy(source, region, spec);
    const startTime = this.now();
    const record = this.catalog.createCopy(
      {
        snapshotId: newSnapshotId(),
        parent: previous?.id ?? null,
        volumeSize: source.volumeSize,
        startTime,
        timeoutMinutes: source.timeoutMinutes,
        description: spec.description,
        encrypted: spec.encrypted,
        kmsKeyArn: spec.kmsKeyArn,
        tags: spec.tags,
        clientToken: null,
        fingerprint: null,
        region,
        copySource: source.snapshotId,
      },
      source.id,
      startTime + this.#scaled(spec.durationMs),
      spec.failure === null ? 'completed' : 'error',
      spec.failure,
    );
    this.#pending.set(record.snapshotId, this.#live(record, startTime));
    return record;
  }

  #previousCopy(source: SnapshotRecord, region: string, spec: CopySpec): SnapshotRecord | undefined {
    const lineage = new Map<string, number>();
    for (const [distance, id] of this.#lineOf(source.id).entries()) {
      const snapshotId = this.catalog.byId(id)?.snapshotId;
      if (snapshotId !== undefined) lineage.set(snapshotId, distance);
    }
    let best: { record: SnapshotRecord; distance: number } | undefined;
    for (const record of this.catalog.visibleSnapshots()) {
      if (record.region !== region || record.status !== 'completed' || record.copySource === null) continue;
      if (record.encrypted !== spec.encrypted || record.kmsKeyArn !== spec.kmsKeyArn) continue;
      const distance = lineage.get(record.copySource);
      if (distance === undefined) continue;
      if (best === undefined || distance < best.distance || (distance === best.distance && record.id > best.record.id)) best = { record, distance };
    }
    return best?.record;
  }

  /** Adds or overwrites tags by key. */
  tag(record: SnapshotRecord, tags: Tag[]): void {
    const merged = new Map(record.tags.map((t) => [t.Key, t.Value]));
    for (const t of tags) merged.set(t.Key, t.Value);
    this.catalog.setTags(
      record.id,
      [...merged].map(([Key, Value]) => ({ Key, Value })),
    );
  }

  /** Deletes a snapshot. Its children keep every block they inherited. A pending one is cancelled. */
  delete(record: SnapshotRecord): void {
    const live = this.#pending.get(record.snapshotId);
    if (live !== undefined) live.accepting = false;
    this.#pending.delete(record.snapshotId);
    this.#readable.delete(record.snapshotId);
    this.catalog.deleteSnapshot(record.id, this.now());
  }

  /** Resolves when every block write under way has settled. */
  async drain(): Promise<void> {
    while (this.#writes.size > 0) await Promise.allSettled([...this.#writes]);
  }

  // ---- helpers -----------------------------------------------------------

  #live(record: SnapshotRecord, at: number): PendingSnapshot {
    return { record, lastActivity: at, progress: record.progress, accepting: record.completesAt === null, writing: new Set() };
  }

  /** The record with any due completion or timeout applied. */
  #current(record: SnapshotRecord): SnapshotRecord {
    const live = this.#pending.get(record.snapshotId);
    if (live === undefined) return record;
    this.#expireIfIdle(live, this.now());
    return this.catalog.byId(record.id) ?? record;
  }

  /** The snapshot, if it exists in the Region and is not deleted; ResourceNotFoundException otherwise. */
  #visible(snapshotId: string, region: string): SnapshotRecord {
    const record = this.catalog.bySnapshotId(snapshotId);
    if (record === undefined || record.deletedAt !== null || record.region !== region) throw EbsErrors.notFound(`The snapshot '${snapshotId}' does not exist.`);
    return record;
  }

  #writable(snapshotId: string, region: string): PendingSnapshot {
    const live = this.#pending.get(snapshotId);
    if (live !== undefined && live.record.region === region) {
      this.#expireIfIdle(live, this.now());
      if (live.accepting) return live;
    }
    throw this.#notWritable(snapshotId, region);
  }

  #notCompletable(snapshotId: string, region: string) {
    const record = this.#current(this.#visible(snapshotId, region));
    const state = record.status === 'pending' ? 'already being completed' : `${record.status}`;
    return EbsErrors.validation('INVALID_SNAPSHOT_ID', `The snapshot ${snapshotId} is ${state}; only a pending snapshot not yet completed can be completed.`);
  }

  #notWritable(snapshotId: string, region: string) {
    const record = this.#current(this.#visible(snapshotId, region));
    const state = record.status === 'pending' ? 'being completed' : `in state ${record.status}`;
    return EbsErrors.validation('INVALID_SNAPSHOT_ID', `The snapshot ${snapshotId} is ${state}; blocks can be written only to a pending snapshot.`);
  }

  #readableSnapshot(snapshotId: string, region: string): ReadableSnapshot {
    const cached = this.#readable.get(snapshotId);
    if (cached !== undefined && cached.region === region) return cached;
    const record = this.#current(this.#visible(snapshotId, region));
    if (record.status !== 'completed') {
      throw EbsErrors.validation('INVALID_SNAPSHOT_ID', `The snapshot ${snapshotId} is in state ${record.status}; only a completed snapshot can be read.`);
    }
    const readable = { id: record.id, snapshotId, volumeSize: record.volumeSize, region };
    if (this.#readable.size >= READABLE_CACHE_LIMIT) this.#readable.clear();
    this.#readable.set(snapshotId, readable);
    return readable;
  }

  /** Where a listing starts: the NextToken's position (which wins), else StartingBlockIndex, else 0. */
  #startOf(listing: PagePosition['listing'], subject: string, start: number | undefined, nextToken: string | undefined, now: number): number {
    if (nextToken === undefined) return start ?? 0;
    const resumed = this.tokens.resumeIndex(nextToken, listing, subject, now);
    if (resumed === undefined) throw EbsErrors.validation('INVALID_PAGE_TOKEN', 'The pagination token is not valid for this request, or has expired.');
    return resumed;
  }

  /** Cuts a listing fetched with one extra row to a page, with a NextToken when more follow. */
  #paged(indexes: number[], maxResults: number, position: Omit<PagePosition, 'nextIndex'>, now: number) {
    if (indexes.length <= maxResults) return { indexes, nextToken: undefined };
    const page = indexes.slice(0, maxResults);
    const nextToken = this.tokens.pageToken({ ...position, nextIndex: page[page.length - 1]! + 1 }, now + this.#scaled(PAGE_TOKEN_LIFETIME_MS));
    return { indexes: page, nextToken };
  }

  /**
   * For two snapshots of one lineage, the snapshots on the path from their
   * common ancestor (excluded) to each of them (included), as internal ids.
   * Snapshots of different lineages give UNRELATED_SNAPSHOTS.
   */
  #pathsToCommonAncestor(first: ReadableSnapshot, second: ReadableSnapshot): [number[], number[]] {
    const firstLine = this.#lineOf(first.id);
    const secondLine = this.#lineOf(second.id);
    const inFirst = new Set(firstLine);
    const common = secondLine.find((id) => inFirst.has(id));
    if (common === undefined) {
      throw EbsErrors.validation('UNRELATED_SNAPSHOTS', `The snapshots ${first.snapshotId} and ${second.snapshotId} are not of the same lineage.`);
    }
    return [firstLine.slice(0, firstLine.indexOf(common)), secondLine.slice(0, secondLine.indexOf(common))];
  }

  /** The snapshot and its ancestors, nearest first (deleted ancestors included). */
  #lineOf(id: number): number[] {
    const line: number[] = [];
    for (let at: number | null = id; at !== null; at = this.catalog.byId(at)?.parent ?? null) line.push(at);
    return line;
  }
}

/** A pending copy's progress: the share of its duration gone by, below 100 until it completes. */
function copyProgress(record: SnapshotRecord, now: number): number {
  const total = (record.completesAt ?? now) - record.startTime;
  return total <= 0 ? 99 : Math.min(99, Math.floor((100 * (now - record.startTime)) / total));
}

function newSnapshotId(): string {
  return `snap-${randomBytes(9).toString('hex').slice(0, 17)}`;
}

/** The account's default EBS KMS key in a Region (stands for alias/aws/ebs). */
export function defaultKmsKeyArn(region: string): string {
  return `arn:aws:kms:${region}:${ACCOUNT_ID}:key/5e1f0ebc-0000-4000-8000-${'0'.repeat(12)}`;
}

