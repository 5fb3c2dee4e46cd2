/**
 * `snapline bench`: PutSnapshotBlock and GetSnapshotBlock throughput and
 * latency at fixed concurrency levels, measured on a scratch snapshot that is
 * deleted afterwards (also after a failure or an abort).
 *
 * The requests measured go through the store as it is (one attempt each, no
 * limiter, no retries), so that throttling and failures show instead of being
 * absorbed. Setting up and tearing down (start, the first write, repairs,
 * completion, listing) go through the retrying writer and reader.
 */
import { createHash, randomBytes, randomUUID, type Hash } from 'node:crypto';
import { abortError, throwIfAborted, untilAborted } from '../../core/abort.js';
import { LinearAggregate } from '../../core/checksum.js';
import { MAX_BENCH_CONCURRENCY, MAX_BENCH_LEVELS } from '../../core/bench-options.js';
import { BLOCK_SIZE, BLOCKS_PER_GIB, MAX_VOLUME_SIZE_GIB } from '../../core/constants.js';
import type { BlockRef, SnapshotCatalog, SnapshotReader, SnapshotWriter, StartSnapshotInput } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, toSnaplineError } from '../../errors.js';
import { deleteStartedSnapshot, waitForSnapshot } from '../blocks/committer.js';

/** Tag that marks a scratch snapshot of the bench (value "true"). */
export const BENCH_TAG = 'snapline:bench';
/** Idle minutes after which AWS cancels a scratch snapshot left pending (the least StartSnapshot takes). */
export const SCRATCH_TIMEOUT_MINUTES = 10;
/** How to find scratch snapshots left behind. */
export const LEFTOVER_QUERY = `aws ec2 describe-snapshots --owner-ids self --filters Name=tag:${BENCH_TAG},Values=true`;

const MIB = 1024 * 1024;
/** Bytes at the end of each block that hold its index; the rest is the run's random pattern. */
const STAMP_BYTES = 6;
const PREFIX_BYTES = BLOCK_SIZE - STAMP_BYTES;
/** The recommendation rule's thresholds. */
const NEAR_BEST = 0.9;
const MAX_FAILED_SHARE = 0.01;
const MAX_P99_MS = 1000;
/** AWS's default per-snapshot (and per-account) request rate of each block call. */
const AWS_BLOCK_RATE = 1000;

export const RECOMMENDATION_RULE =
  `the smallest level within ${NEAR_BEST * 100} % of the best MiB/s, among levels with under ${MAX_FAILED_SHARE * 100} % of requests ` +
  `throttled or failed and p99 under ${MAX_P99_MS / 1000} s`;

/** What the bench needs: the remote side of a run (RemoteSession fits). */
export interface BenchPorts {
  /**
   * The request path measured: one attempt per call, no limiter, no retries.
   * Its startSnapshot also finds the scratch snapshot of a start the abort
   * cut (the same clientToken again, sent after the abort).
   */
  store: Pick<SnapshotWriter, 'putBlock' | 'startSnapshot'> & Pick<SnapshotReader, 'getBlock'>;
  /** With retries: starts the scratch snapshot, writes what the measured requests left unwritten, completes it. */
  writer: SnapshotWriter;
  /** With retries: lists the scratch snapshot's blocks. */
  reader: Pick<SnapshotReader, 'listBlocks'>;
  catalog: SnapshotCatalog;
}

export interface BenchOptions {
  /** Requests in flight at each level, all different; each level runs once per direction, in this order. */
  levels: readonly number[];
  /** Measured time per level and direction, in ms; a level ends at this or at `blocksPerLevel`, whichever comes first. */
  durationMs: number;
  /** Measured requests per level and direction at most; the scratch volume is sized for them. */
  blocksPerLevel: number;
  /** Leave the scratch snapshot in place (also after an abort). */
  keep?: boolean;
  /**
   * Aborting stops new requests at once and goes on to the cleanup; the run
   * then ends INTERRUPTED, with the cleanup's outcome in the error's details.
   * Requests in flight are the store's to end (a session's store ends them on
   * the same abort).
   */
  signal?: AbortSignal;
  /**
   * Time each cleanup call may take (default 30 s): finding the snapshot of an
   * interrupted start, deleting the scratch snapshot. The bench does not stop
   * its cleanup on `signal`, and the calls it makes after the abort go out
   * through a session's stores; a DeleteSnapshot already in flight at the
   * abort is not cut by a session's catalog either (it never cuts calls that
   * change state).
   */
  cleanupTimeoutMs?: number;
  /** Time to wait for the scratch snapshot to complete (default 10 min). */
  completionTimeoutMs?: number;
  onEvent?: (event: BenchEvent) => void;
}

export type BenchOperation = 'put' | 'get';

export type BenchEvent =
  | { type: 'started'; snapshotId: string; volumeSizeGiB: number }
  | { type: 'level-started'; operation: BenchOperation; concurrency: number }
  | { type: 'level-done'; result: LevelResult }
  | { type: 'completing'; snapshotId: string; blocks: number }
  | { type: 'cleanup-started'; snapshotId: string }
  | { type: 'cleanup-done'; snapshotId: string; cleanup: CleanupOutcome; message?: string };

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface LevelResult {
  operation: BenchOperation;
  concurrency: number;
  /** Measured requests (the warm-up round of one request per slot is not counted). */
  requests: number;
  succeeded: number;
  /** Answered ThrottlingException / RequestThrottledException. */
  throttled: number;
  /** Failed otherwise (server errors, resets, timeouts, refusals). */
  failed: number;
  /** Reads whose bytes or checksum were not those written. */
  mismatched: number;
  seconds: number;
  mibPerSecond: number;
  blocksPerSecond: number;
  /** Of the successful requests, in ms; null when none succeeded. */
  latencyMs: Latency | null;
  /** What ended the level: its time or its block count. */
  endedBy: 'time' | 'blocks';
  /** `failed` when most requests failed: the figures then say nothing about the service's speed. */
  status: 'ok' | 'errors' | 'failed';
  /** Failures by error code, with the first message of each. */
  errors: Array<{ code: string; count: number; message: string }>;
}

export interface Recommendation {
  concurrency: number;
  mibPerSecond: number;
}

export type CleanupOutcome = 'deleted' | 'kept' | 'failed';

export interface BenchResult {
  snapshotId: string;
  volumeSizeGiB: number;
  /** Blocks in the scratch snapshot (every block a put tried, written again where it failed). */
  blocksWritten: number;
  put: LevelResult[];
  get: LevelResult[];
  /** For backups (puts) and restores (gets); null when no level qualifies. */
  recommended: { put: Recommendation | null; get: Recommendation | null };
  rule: string;
  /** Reads checked against the bytes and checksum written, warm-up included. */
  readsVerified: number;
  /** Reads that did not match, warm-up included (the levels' `mismatched` count only measured reads): any makes the run a failure. */
  mismatches: number;
  notes: string[];
  cleanup: CleanupOutcome;
}

/** The scratch volume, in GiB, that holds every block a bench with these levels may write. */
export function scratchVolumeSizeGiB(levels: readonly number[], blocksPerLevel: number): number {
  // One block for the first (retried) write, then per level a warm-up round and the measured requests.
  const blocks = 1 + levels.reduce((sum, level) => sum + level + blocksPerLevel, 0);
  return Math.max(1, Math.ceil(blocks / BLOCKS_PER_GIB));
}

/**
 * Runs the bench: starts a scratch snapshot (tagged snapline:bench=true),
 * puts blocks at each level, writes again through the retrying writer what
 * failed, completes the snapshot with the LINEAR aggregate, then gets blocks
 * at each level and checks every one against the bytes written. Deletes the
 * snapshot at the end unless `keep`, also when it fails or is aborted; a
 * failure then carries `scratchSnapshotId` and `cleanup` in its details.
 * Once `signal` has aborted, the run ends INTERRUPTED after the cleanup,
 * whatever stage the abort reached.
 */
export async function runBench(ports: BenchPorts, options: BenchOptions): Promise<BenchResult> {
  checkBenchOptions(options);
  const { signal, onEvent } = options;
  throwIfAborted(signal);
  const volumeSizeGiB = scratchVolumeSizeGiB(options.levels, options.blocksPerLevel);
  const startedAt = Date.now();
  const started = await startScratch(ports, options, {
    volumeSizeGiB,
    description: 'snapline bench scratch snapshot: safe to delete',
    tags: { [BENCH_TAG]: 'true' },
    timeoutMinutes: SCRATCH_TIMEOUT_MINUTES,
    clientToken: `snapline-bench-${randomUUID()}`,
  });
  const { snapshotId } = started;
  onEvent?.({ type: 'started', snapshotId, volumeSizeGiB });
  let measured: Omit<BenchResult, 'cleanup'> | undefined;
  let failure: unknown = started.interruption;
  if (started.interruption === undefined) {
    try {
      measured = await new BenchRun(ports, options, snapshotId, volumeSizeGiB).run();
    } catch (err) {
      failure = err;
    }
  }
  const cleanup = await cleanUp(ports.catalog, snapshotId, startedAt, options);
  if (measured === undefined || signal?.aborted) {
    // After an abort the run ends INTERRUPTED, whatever the abort made the step in flight fail with.
    const error = signal?.aborted ? abortError(signal) : toSnaplineError(failure);
    throw new SnaplineError(error.code, error.message, {
      retryable: error.retryable,
      hint: error.hint,
      cause: failure ?? error,
      details: { ...error.details, scratchSnapshotId: snapshotId, cleanup },
    });
  }
  const notes = cleanup === 'failed' ? [...measured.notes, `the scratch snapshot ${snapshotId} could not be deleted: find left-overs with ${LEFTOVER_QUERY}`] : measured.notes;
  return { ...measured, notes, cleanup };
}

/**
 * Starts the scratch snapshot through the retrying writer. When the abort
 * interrupts the start, the service may have made the snapshot all the same:
 * the store is asked again with the same clientToken (idempotent: the same
 * snapshot, or a new one when the first request never arrived), a call
 * begun after the abort and so not cut, to learn the id the cleanup deletes.
 * `interruption` is then the start's error. Throws INTERRUPTED, saying that a
 * snapshot may be left, when that call fails too.
 */
async function startScratch(ports: BenchPorts, options: BenchOptions, input: StartSnapshotInput): Promise<{ snapshotId: string; interruption?: unknown }> {
  try {
    return { snapshotId: (await ports.writer.startSnapshot(input)).snapshotId };
  } catch (err) {
    const { signal } = options;
    if (!signal?.aborted) throw err;
    try {
      const found = await withDeadline(ports.store.startSnapshot(input), cleanupTimeoutMs(options), 'finding the scratch snapshot of the interrupted start');
      return { snapshotId: found.snapshotId, interruption: err };
    } catch (lookup) {
      const error = abortError(signal);
      throw new SnaplineError(error.code, error.message, {
        cause: err,
        hint: `the interrupted StartSnapshot may have left a scratch snapshot (${toSnaplineError(lookup).message}): find left-overs with ${LEFTOVER_QUERY}`,
        details: { ...error.details, cleanup: 'failed' satisfies CleanupOutcome },
      });
    }
  }
}

function checkBenchOptions(options: BenchOptions): void {
  const bad = (message: string) => new SnaplineError(ErrorCodes.INVALID_ARGUMENT, message);
  if (options.levels.length === 0 || options.levels.length > MAX_BENCH_LEVELS) throw bad(`levels must name 1 to ${MAX_BENCH_LEVELS} concurrencies, got ${options.levels.length}`);
  for (const level of options.levels) {
    if (!Number.isInteger(level) || level < 1 || level > MAX_BENCH_CONCURRENCY) {
      throw bad(`each level must be a whole number from 1 to ${MAX_BENCH_CONCURRENCY}, got ${level}`);
    }
  }
  const repeated = options.levels.find((level, i) => options.levels.indexOf(level) !== i);
  if (repeated !== undefined) throw bad(`each level may be given once, got ${repeated} twice or more`);
  if (!(Number.isFinite(options.durationMs) && options.durationMs > 0)) throw bad(`durationMs must be a positive number, got ${options.durationMs}`);
  if (!Number.isSafeInteger(options.blocksPerLevel) || options.blocksPerLevel < 1) {
    throw bad(`blocksPerLevel must be a whole number of at least 1, got ${options.blocksPerLevel}`);
  }
  if (scratchVolumeSizeGiB(options.levels, options.blocksPerLevel) > MAX_VOLUME_SIZE_GIB) {
    throw bad(`levels x blocksPerLevel need a scratch volume over ${MAX_VOLUME_SIZE_GIB} GiB: use fewer levels or blocks`);
  }
}

/** Deletes the scratch snapshot started at `startedAt` (unless kept; see deleteStartedSnapshot) within its own deadline; never throws. */
async function cleanUp(catalog: SnapshotCatalog, snapshotId: string, startedAt: number, options: BenchOptions): Promise<CleanupOutcome> {
  if (options.keep) {
    options.onEvent?.({ type: 'cleanup-done', snapshotId, cleanup: 'kept' });
    return 'kept';
  }
  options.onEvent?.({ type: 'cleanup-started', snapshotId });
  try {
    await withDeadline(deleteStartedSnapshot(catalog, snapshotId, startedAt), cleanupTimeoutMs(options), `deleting ${snapshotId}`);
    options.onEvent?.({ type: 'cleanup-done', snapshotId, cleanup: 'deleted' });
    return 'deleted';
  } catch (err) {
    options.onEvent?.({ type: 'cleanup-done', snapshotId, cleanup: 'failed', message: toSnaplineError(err).message });
    return 'failed';
  }
}

function cleanupTimeoutMs(options: BenchOptions): number {
  return options.cleanupTimeoutMs ?? 30_000;
}

function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SnaplineError(ErrorCodes.TIMEOUT, `${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

/**
 * The blocks of one run: a random pattern with the block index in its last
 * bytes, so that every block differs (no store can deduplicate them) while
 * each checksum costs one SHA-256 compression: the state after the pattern's
 * prefix is computed once and copied.
 */
class BlockPattern {
  readonly #pattern = randomBytes(BLOCK_SIZE);
  readonly #prefix: Hash = createHash('sha256').update(this.#pattern.subarray(0, PREFIX_BYTES));
  readonly #stamp = Buffer.alloc(STAMP_BYTES);

  /** A block buffer of the pattern, to be stamped with stamp(). */
  newBlock(): Buffer {
    return Buffer.from(this.#pattern);
  }

  /** Makes `block` (from newBlock) the block of `index`. */
  stamp(block: Buffer, index: number): void {
    block.writeUIntBE(index, PREFIX_BYTES, STAMP_BYTES);
  }

  digest(index: number): Buffer {
    this.#stamp.writeUIntBE(index, 0, STAMP_BYTES);
    return this.#prefix.copy().update(this.#stamp).digest();
  }

  /** True when `data` is exactly the block of `index`: a byte comparison, no hashing. */
  holds(data: Buffer, index: number): boolean {
    return data.byteLength === BLOCK_SIZE && data.readUIntBE(PREFIX_BYTES, STAMP_BYTES) === index && data.compare(this.#pattern, 0, PREFIX_BYTES, 0, PREFIX_BYTES) === 0;
  }
}

/** One request of a level: resolves with its latency in ms (the request alone, not the checks after it). */
type Request = (slot: number) => Promise<number>;

class BenchRun {
  readonly #ports: BenchPorts;
  readonly #options: BenchOptions;
  readonly #snapshotId: string;
  readonly #volumeSizeGiB: number;
  readonly #pattern = new BlockPattern();
  /**
   * One block buffer per slot of the puts, reused by the slot's requests one
   * after the other (the store keeps no bytes once a put settles): a level of
   * N puts holds N x 512 KiB, as N gets hold their answers.
   */
  readonly #buffers: Buffer[] = [];
  /** Blocks 0..nextIndex-1 have been tried: each is written, or in #unwritten. */
  #nextIndex = 0;
  readonly #unwritten = new Set<number>();
  #readsVerified = 0;
  #mismatches = 0;

  constructor(ports: BenchPorts, options: BenchOptions, snapshotId: string, volumeSizeGiB: number) {
    this.#ports = ports;
    this.#options = options;
    this.#snapshotId = snapshotId;
    this.#volumeSizeGiB = volumeSizeGiB;
  }

  async run(): Promise<Omit<BenchResult, 'cleanup'>> {
    const { levels, signal } = this.#options;
    throwIfAborted(signal);
    // The first write goes through the retrying writer: it waits out the "not found" that may follow StartSnapshot.
    await this.#writeRetrying([this.#nextIndex++]);
    const put: LevelResult[] = [];
    for (const level of levels) {
      put.push(await this.#level('put', level, (slot) => this.#put(slot)));
      await this.#writeRetrying([...this.#unwritten]);
    }
    const blocks = await this.#complete();
    // The reads need no block buffers of their own: the puts' are let go, so that a level holds its requests' bytes once, not twice.
    this.#buffers.length = 0;
    const get: LevelResult[] = [];
    let cursor = 0;
    for (const level of levels) {
      get.push(await this.#level('get', level, () => this.#get(blocks[cursor++ % blocks.length]!)));
    }
    throwIfAborted(signal);
    return {
      snapshotId: this.#snapshotId,
      volumeSizeGiB: this.#volumeSizeGiB,
      blocksWritten: this.#nextIndex,
      put,
      get,
      recommended: { put: recommend(put), get: recommend(get) },
      rule: RECOMMENDATION_RULE,
      readsVerified: this.#readsVerified,
      mismatches: this.#mismatches,
      notes: notesOn(put, get),
    };
  }

  #buffer(slot: number): Buffer {
    while (this.#buffers.length <= slot) this.#buffers.push(this.#pattern.newBlock());
    return this.#buffers[slot]!;
  }

  async #put(slot: number): Promise<number> {
    const index = this.#nextIndex++;
    const block = this.#buffer(slot);
    this.#pattern.stamp(block, index);
    const checksum = this.#pattern.digest(index).toString('base64');
    this.#unwritten.add(index);
    const start = performance.now();
    await this.#ports.store.putBlock(this.#snapshotId, index, block, checksum);
    const latency = performance.now() - start;
    this.#unwritten.delete(index);
    return latency;
  }

  async #get(block: BlockRef): Promise<number> {
    const start = performance.now();
    const { data, checksum } = await this.#ports.store.getBlock(this.#snapshotId, block.index, block.token);
    const latency = performance.now() - start;
    this.#readsVerified += 1;
    if (!this.#pattern.holds(data, block.index) || checksum !== this.#pattern.digest(block.index).toString('base64')) {
      this.#mismatches += 1;
      throw new SnaplineError(ErrorCodes.CHECKSUM_MISMATCH, `block ${block.index} of ${this.#snapshotId} came back with other bytes or another checksum than written`);
    }
    return latency;
  }

  /**
   * One level: a warm-up round (one request per slot, not counted, so that
   * sockets are open), then `level` workers each issuing one request after
   * the other until the time or the block count is used up. Every request is
   * one attempt; its failure is counted, never retried. On abort it rejects
   * at once; requests in flight then settle unobserved.
   */
  async #level(operation: BenchOperation, level: number, request: Request): Promise<LevelResult> {
    const { durationMs, blocksPerLevel, signal, onEvent } = this.#options;
    throwIfAborted(signal);
    onEvent?.({ type: 'level-started', operation, concurrency: level });
    await untilAborted(Promise.all(Array.from({ length: level }, (_, slot) => request(slot).catch(() => undefined))), signal);

    const tally = new Tally();
    const started = performance.now();
    const deadline = started + durationMs;
    let issued = 0;
    const worker = async (slot: number) => {
      while (!signal?.aborted && issued < blocksPerLevel && performance.now() < deadline) {
        issued += 1;
        try {
          tally.succeeded(await request(slot));
        } catch (err) {
          tally.failed(toSnaplineError(err));
        }
      }
    };
    await untilAborted(Promise.all(Array.from({ length: level }, (_, slot) => worker(slot))), signal);
    const result = tally.result(operation, level, (performance.now() - started) / 1000, issued >= blocksPerLevel ? 'blocks' : 'time');
    onEvent?.({ type: 'level-done', result });
    return result;
  }

  /** Writes the given blocks through the retrying writer, as many at once as the slots allow; throws when one cannot be written. */
  async #writeRetrying(indexes: number[]): Promise<void> {
    const width = Math.max(1, Math.min(indexes.length, this.#buffers.length));
    let next = 0;
    const worker = async (slot: number) => {
      const block = this.#buffer(slot);
      while (next < indexes.length) {
        throwIfAborted(this.#options.signal);
        const index = indexes[next++]!;
        this.#pattern.stamp(block, index);
        await this.#ports.writer.putBlock(this.#snapshotId, index, block, this.#pattern.digest(index).toString('base64'));
        this.#unwritten.delete(index);
      }
    };
    await Promise.all(Array.from({ length: width }, (_, slot) => worker(slot)));
  }

  /** Completes the scratch snapshot with the LINEAR aggregate of blocks 0..n-1, waits for it, and lists its blocks. */
  async #complete(): Promise<BlockRef[]> {
    const { signal, completionTimeoutMs } = this.#options;
    throwIfAborted(signal);
    const count = this.#nextIndex;
    this.#options.onEvent?.({ type: 'completing', snapshotId: this.#snapshotId, blocks: count });
    const aggregate = new LinearAggregate();
    for (let index = 0; index < count; index++) aggregate.add(index, this.#pattern.digest(index));
    let status = await this.#ports.writer.completeSnapshot(this.#snapshotId, count, aggregate.digest());
    if (status !== 'completed') {
      status = await waitForSnapshot(this.#ports.catalog, this.#snapshotId, { signal, waitTimeoutMs: completionTimeoutMs ?? 600_000, pollMs: { first: 100, max: 5000 } });
    }
    if (status !== 'completed') {
      throw new SnaplineError(ErrorCodes.BAD_STATE, `the scratch snapshot ${this.#snapshotId} ended in state ${status}: the reads cannot be measured`);
    }
    const blocks: BlockRef[] = [];
    for await (const page of this.#ports.reader.listBlocks(this.#snapshotId)) blocks.push(...page.blocks);
    if (blocks.length !== count) {
      throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `the scratch snapshot ${this.#snapshotId} lists ${blocks.length} blocks, ${count} were written`);
    }
    return blocks;
  }
}

/** Counts of one level's requests. */
class Tally {
  readonly #latencies: number[] = [];
  #throttled = 0;
  #failed = 0;
  #mismatched = 0;
  readonly #errors = new Map<string, { count: number; message: string }>();

  succeeded(latencyMs: number): void {
    this.#latencies.push(latencyMs);
  }

  failed(error: SnaplineError): void {
    if (error.code === ErrorCodes.THROTTLED) this.#throttled += 1;
    else if (error.code === ErrorCodes.CHECKSUM_MISMATCH) this.#mismatched += 1;
    else this.#failed += 1;
    const seen = this.#errors.get(error.code);
    if (seen === undefined) this.#errors.set(error.code, { count: 1, message: error.message });
    else seen.count += 1;
  }

  result(operation: BenchOperation, concurrency: number, seconds: number, endedBy: LevelResult['endedBy']): LevelResult {
    const succeeded = this.#latencies.length;
    const unsuccessful = this.#throttled + this.#failed + this.#mismatched;
    const requests = succeeded + unsuccessful;
    const blocksPerSecond = seconds > 0 ? succeeded / seconds : 0;
    return {
      operation,
      concurrency,
      requests,
      succeeded,
      throttled: this.#throttled,
      failed: this.#failed,
      mismatched: this.#mismatched,
      seconds,
      mibPerSecond: (blocksPerSecond * BLOCK_SIZE) / MIB,
      blocksPerSecond,
      latencyMs: percentiles(this.#latencies),
      endedBy,
      status: requests === 0 || unsuccessful * 2 > requests ? 'failed' : unsuccessful > 0 ? 'errors' : 'ok',
      errors: [...this.#errors].map(([code, seen]) => ({ code, ...seen })),
    };
  }
}

/** Nearest-rank percentiles; null for no samples. */
export function percentiles(samples: readonly number[]): Latency | null {
  if (samples.length === 0) return null;
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted[sorted.length - 1]! };
}

/** The level RECOMMENDATION_RULE picks, or null when none qualifies. */
export function recommend(levels: readonly LevelResult[]): Recommendation | null {
  const healthy = levels.filter(
    (l) => l.requests > 0 && (l.throttled + l.failed + l.mismatched) / l.requests < MAX_FAILED_SHARE && l.latencyMs !== null && l.latencyMs.p99 < MAX_P99_MS,
  );
  if (healthy.length === 0) return null;
  const best = Math.max(...healthy.map((l) => l.mibPerSecond));
  const pick = [...healthy].sort((a, b) => a.concurrency - b.concurrency).find((l) => l.mibPerSecond >= NEAR_BEST * best)!;
  return { concurrency: pick.concurrency, mibPerSecond: pick.mibPerSecond };
}

/** What a reader of the figures should know: failed levels, throttling against AWS's quota. */
function notesOn(put: readonly LevelResult[], get: readonly LevelResult[]): string[] {
  const notes: string[] = [];
  const name = (l: LevelResult) => `${l.operation === 'put' ? 'PutSnapshotBlock' : 'GetSnapshotBlock'} at ${l.concurrency}`;
  for (const l of [...put, ...get].filter((r) => r.status === 'failed')) {
    const main = [...l.errors].sort((a, b) => b.count - a.count)[0];
    notes.push(`${name(l)}: most requests failed${main === undefined ? '' : ` (${main.count} x ${main.code}: ${main.message})`}; its figures do not measure the service`);
  }
  const throttled = [...put, ...get].reduce((n, l) => n + l.throttled, 0);
  const fastest = Math.max(0, ...[...put, ...get].map((l) => l.blocksPerSecond));
  if (throttled > 0 || fastest >= 0.8 * AWS_BLOCK_RATE) {
    notes.push(
      `${throttled > 0 ? `${throttled} requests were throttled. ` : ''}AWS allows by default ${AWS_BLOCK_RATE} PutSnapshotBlock and ${AWS_BLOCK_RATE} GetSnapshotBlock ` +
        `requests/s per snapshot and per account (about ${(AWS_BLOCK_RATE * BLOCK_SIZE) / MIB} MiB/s): beyond that, more concurrency only adds throttling, and concurrent backups share the account's rate`,
    );
  }
  return notes;
}
