import { EBSClient, PutSnapshotBlockCommand, RequestThrottledException } from '@aws-sdk/client-ebs';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import { awsFailure, MemoryEbs } from '../../test/fakes/memory-ebs.js';
import { BLOCK_SIZE } from '../core/constants.js';
import { checksumOf, linearAggregateOf, sha256 } from '../core/checksum.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { EbsSnapshotStore } from './ebs.js';
import { AdaptiveLimiter, resilientReader, resilientWriter, ThrottleWatch, type RetryClock, type RetryPolicy } from './retry.js';
import { rejection } from '../../test/support/rejection.js';

/** Retries without real waiting. */
const FAST: Partial<RetryPolicy> = { baseDelayMs: 0, maxDelayMs: 0 };
const BLOCK = Buffer.alloc(BLOCK_SIZE, 1);
const CHECKSUM = checksumOf(sha256(BLOCK));

const throttled = () => awsFailure('ebs:PutSnapshotBlock', 'RequestThrottledException', { reason: 'RESOURCE_LEVEL_THROTTLE' });
const unavailable = () => awsFailure('ebs:PutSnapshotBlock', 'InternalServerException');
const notFound = () => awsFailure('ebs:PutSnapshotBlock', 'ResourceNotFoundException', { reason: 'SNAPSHOT_NOT_FOUND' });


/** A clock that only moves when the code under test sleeps: minutes of backoff take no real time. */
class ScaledClock implements RetryClock {
  ms = 0;
  readonly now = (): number => this.ms;
  readonly sleep = (ms: number): Promise<void> => {
    this.ms += ms;
    return Promise.resolve();
  };
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('AdaptiveLimiter', () => {
  it('refuses a maximum below 1', () => {
    expect(() => new AdaptiveLimiter(0)).toThrow(SnaplineError);
    expect(() => new AdaptiveLimiter(1.5)).toThrow(/whole number/);
  });

  it('never runs more than the limit at once', async () => {
    const limiter = new AdaptiveLimiter(2);
    const gates = Array.from({ length: 5 }, deferred);
    let running = 0;
    let most = 0;
    const runs = gates.map((gate) =>
      limiter.run(async () => {
        running += 1;
        most = Math.max(most, running);
        await gate.promise;
        running -= 1;
      }),
    );
    await Promise.resolve();
    await Promise.resolve();
    expect(limiter.active).toBe(2);
    expect(limiter.pending).toBe(3);
    for (const gate of gates) gate.resolve();
    await Promise.all(runs);
    expect(most).toBe(2);
    expect(limiter.active + limiter.pending).toBe(0);
  });

  it('halves on THROTTLED once per window, not below 1', async () => {
    const limiter = new AdaptiveLimiter(8);
    // Four calls start together and are all throttled: one cut, not four.
    const failures = Array.from({ length: 4 }, () => limiter.run(() => Promise.reject(throttled())).catch(() => undefined));
    await Promise.all(failures);
    expect(limiter.limit).toBe(4);
    for (let i = 0; i < 5; i++) await limiter.run(() => Promise.reject(throttled())).catch(() => undefined);
    expect(limiter.limit).toBe(1);
  });

  it('other failures leave the limit alone', async () => {
    const limiter = new AdaptiveLimiter(8);
    await limiter.run(() => Promise.reject(unavailable())).catch(() => undefined);
    await limiter.run(() => Promise.reject(new Error('bug'))).catch(() => undefined);
    expect(limiter.limit).toBe(8);
  });

  it('a run of successes as long as the limit raises it by one, up to the maximum', async () => {
    const limiter = new AdaptiveLimiter(4);
    await limiter.run(() => Promise.reject(throttled())).catch(() => undefined);
    expect(limiter.limit).toBe(2);
    await limiter.run(async () => undefined);
    expect(limiter.limit).toBe(2);
    await limiter.run(async () => undefined);
    expect(limiter.limit).toBe(3);
    for (let i = 0; i < 3; i++) await limiter.run(async () => undefined);
    expect(limiter.limit).toBe(4);
    for (let i = 0; i < 20; i++) await limiter.run(async () => undefined);
    expect(limiter.limit).toBe(4);
  });
});

describe('resilientWriter', () => {
  async function startedOn(ebs: MemoryEbs, limiter = new AdaptiveLimiter(4), policy: Partial<RetryPolicy> = FAST) {
    const retries: Array<{ code: string; attempt: number; operation: string }> = [];
    const writer = resilientWriter(ebs, { limiter, policy, onRetry: (e, attempt, operation) => retries.push({ code: e.code, attempt, operation }) });
    const { snapshotId } = await writer.startSnapshot({ volumeSizeGiB: 1 });
    return { writer, snapshotId, retries, limiter };
  }

  it('retries retryable errors and reports each retry', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId, retries } = await startedOn(ebs);
    ebs.failNext('putBlock', unavailable(), { times: 2 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(ebs.calls.putBlock).toBe(3);
    expect(retries).toEqual([
      { code: ErrorCodes.UNAVAILABLE, attempt: 1, operation: 'uploading blocks' },
      { code: ErrorCodes.UNAVAILABLE, attempt: 2, operation: 'uploading blocks' },
    ]);
    expect(ebs.inspect(snapshotId)?.writtenIndexes).toEqual([0]);
  });

  it('fails at once on a permanent error', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId, retries } = await startedOn(ebs);
    const error = await rejection(writer.putBlock(snapshotId, 0, BLOCK, 'wrong-checksum'));
    expect(error.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    expect(ebs.calls.putBlock).toBe(1);
    expect(retries).toEqual([]);
  });

  it('gives up after maxAttempts; the last error then says it is not retryable', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId } = await startedOn(ebs, new AdaptiveLimiter(4), { ...FAST, maxAttempts: 3 });
    ebs.failNext('putBlock', unavailable, { times: 10 });
    const error = await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM));
    expect(error).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: false, details: { attempts: 3 } });
    expect(ebs.calls.putBlock).toBe(3);
  });

  it('throttling lowers the limiter it shares with other calls', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId, limiter } = await startedOn(ebs, new AdaptiveLimiter(16));
    ebs.failNext('putBlock', throttled);
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(limiter.limit).toBe(8);
  });

  it('holds the number of calls in flight to the limiter', async () => {
    const ebs = new MemoryEbs({ latencyMs: 2 });
    const { writer, snapshotId } = await startedOn(ebs, new AdaptiveLimiter(3));
    await Promise.all(Array.from({ length: 24 }, (_, i) => writer.putBlock(snapshotId, i, BLOCK, CHECKSUM)));
    expect(ebs.maxInFlight.putBlock).toBeLessThanOrEqual(3);
    expect(ebs.inspect(snapshotId)?.writtenIndexes).toHaveLength(24);
  });

  it('retries NOT_FOUND for a snapshot it just started, beyond maxAttempts, while the window lasts', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId, retries } = await startedOn(ebs, new AdaptiveLimiter(4), { ...FAST, maxAttempts: 2 });
    ebs.failNext('putBlock', notFound, { times: 5 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(ebs.calls.putBlock).toBe(6);
    expect(retries.every((r) => r.code === ErrorCodes.NOT_FOUND)).toBe(true);
  });

  it('retries NOT_FOUND on completion of a snapshot it just started', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId } = await startedOn(ebs);
    ebs.failNext('completeSnapshot', notFound, { times: 2 });
    expect(await writer.completeSnapshot(snapshotId, 0, checksumOf(sha256(Buffer.alloc(0))))).toBe('completed');
  });

  it('does not retry NOT_FOUND for a snapshot it did not see start', async () => {
    const ebs = new MemoryEbs();
    const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1 });
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), policy: FAST });
    ebs.failNext('putBlock', notFound);
    expect((await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM))).code).toBe(ErrorCodes.NOT_FOUND);
    expect(ebs.calls.putBlock).toBe(1);
  });

  it('retries NOT_FOUND for a snapshot the caller says is new (a resumed run)', async () => {
    const ebs = new MemoryEbs();
    const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1 });
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), policy: FAST, newSnapshotIds: [snapshotId] });
    ebs.failNext('putBlock', notFound, { times: 2 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(ebs.calls.putBlock).toBe(3);
  });

  it('does not retry NOT_FOUND once the window has passed', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId } = await startedOn(ebs, new AdaptiveLimiter(4), { ...FAST, notFoundWindowMs: 0 });
    ebs.failNext('putBlock', notFound);
    expect((await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM))).code).toBe(ErrorCodes.NOT_FOUND);
  });

  it('gives startSnapshot one client token for all its attempts', async () => {
    const ebs = new MemoryEbs();
    const tokens: Array<string | undefined> = [];
    ebs.failNext('startSnapshot', unavailable, {
      times: 2,
      when: ([input]) => {
        tokens.push((input as { clientToken?: string }).clientToken);
        return true;
      },
    });
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), policy: FAST });
    await writer.startSnapshot({ volumeSizeGiB: 1 });
    expect(tokens).toHaveLength(2);
    expect(tokens[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(tokens[1]).toBe(tokens[0]);
  });

  it('an aborted signal stops before any call: INTERRUPTED', async () => {
    const ebs = new MemoryEbs();
    const controller = new AbortController();
    controller.abort();
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), signal: controller.signal });
    expect((await rejection(writer.startSnapshot({ volumeSizeGiB: 1 }))).code).toBe(ErrorCodes.INTERRUPTED);
    expect(ebs.calls.startSnapshot).toBe(0);
  });

  it('aborting during a backoff sleep ends it with INTERRUPTED and no further attempt', async () => {
    const ebs = new MemoryEbs();
    const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1 });
    const controller = new AbortController();
    const writer = resilientWriter(ebs, {
      limiter: new AdaptiveLimiter(4),
      signal: controller.signal,
      // A backoff that would outlast the test run if the abort were ignored.
      policy: { baseDelayMs: 3_600_000, maxDelayMs: 3_600_000 },
      onRetry: () => controller.abort(),
    });
    ebs.failNext('putBlock', unavailable);
    expect((await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM))).code).toBe(ErrorCodes.INTERRUPTED);
    expect(ebs.calls.putBlock).toBe(1);
  });

  it('an interruption says why and during what, in the terms of the user: no internal function name', async () => {
    const ebs = new MemoryEbs();
    const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1 });
    const controller = new AbortController();
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), signal: controller.signal, policy: FAST, onRetry: () => controller.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by SIGINT')) });
    ebs.failNext('putBlock', unavailable);
    const error = await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM));
    expect(error).toMatchObject({ code: ErrorCodes.INTERRUPTED, message: 'interrupted by SIGINT while uploading blocks' });
  });

  it('validates its policy', () => {
    expect(() => resilientWriter(new MemoryEbs(), { limiter: new AdaptiveLimiter(1), policy: { maxAttempts: 0 } })).toThrow(/maxAttempts/);
  });
});

describe('throttling: a budget in time, not in attempts', () => {
  const MINUTE = 60_000;
  /** AWS-like backoff (100 ms doubling to 10 s) on a clock of its own, a 10-minute budget, and only 3 attempts for other errors. */
  const POLICY: Partial<RetryPolicy> = { baseDelayMs: 100, maxDelayMs: 10_000, maxAttempts: 3, throttleBudgetMs: 10 * MINUTE };

  async function throttledWriter(ebs: MemoryEbs, clock: ScaledClock, watch = new ThrottleWatch(clock)) {
    const throttledFor: number[] = [];
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), policy: POLICY, throttleWatch: watch, onThrottled: (ms) => throttledFor.push(ms) });
    const { snapshotId } = await writer.startSnapshot({ volumeSizeGiB: 1 });
    return { writer, snapshotId, throttledFor, watch };
  }

  it('a call throttled for minutes, far more times than maxAttempts, waits it out and lands', async () => {
    const ebs = new MemoryEbs();
    const clock = new ScaledClock();
    const { writer, snapshotId, throttledFor } = await throttledWriter(ebs, clock);
    ebs.failNext('putBlock', throttled, { times: 50 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(ebs.calls.putBlock).toBe(51);
    expect(ebs.inspect(snapshotId)?.writtenIndexes).toEqual([0]);
    expect(throttledFor).toHaveLength(50);
    expect(throttledFor.at(-1)).toBeGreaterThan(3 * MINUTE);
    expect(throttledFor.at(-1)).toBeLessThan(10 * MINUTE);
  });

  it('a call throttled for its whole budget fails THROTTLED, no longer retryable, saying for how long', async () => {
    const ebs = new MemoryEbs();
    const clock = new ScaledClock();
    const { writer, snapshotId, throttledFor } = await throttledWriter(ebs, clock);
    ebs.failNext('putBlock', throttled, { times: 10_000 });
    const error = await rejection(writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM));
    expect(error).toMatchObject({ code: ErrorCodes.THROTTLED, retryable: false, details: { reason: 'RESOURCE_LEVEL_THROTTLE' } });
    expect(error.message).toMatch(/gave up after \d+ attempts: throttled for 10 min\)$/);
    expect(clock.ms).toBeGreaterThanOrEqual(10 * MINUTE);
    expect(clock.ms).toBeLessThan(11 * MINUTE);
    expect(ebs.calls.putBlock).toBe(throttledFor.length + 1);
  });

  it('other retryable errors still count against maxAttempts, also after throttling', async () => {
    const ebs = new MemoryEbs();
    const { writer, snapshotId } = await throttledWriter(ebs, new ScaledClock());
    ebs.failNext('putBlock', throttled, { times: 20 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    ebs.failNext('putBlock', unavailable, { times: 3 });
    expect(await rejection(writer.putBlock(snapshotId, 1, BLOCK, CHECKSUM))).toMatchObject({ code: ErrorCodes.UNAVAILABLE, retryable: false });
  });

  it('the watch tells how long the call throttled longest has been retrying, and nothing once it lands', async () => {
    const ebs = new MemoryEbs();
    const clock = new ScaledClock();
    const watch = new ThrottleWatch(clock);
    const seen: Array<number | undefined> = [];
    const writer = resilientWriter(ebs, { limiter: new AdaptiveLimiter(4), policy: POLICY, throttleWatch: watch, onThrottled: () => seen.push(watch.throttledForMs()) });
    const { snapshotId } = await writer.startSnapshot({ volumeSizeGiB: 1 });
    expect(watch.throttledForMs()).toBeUndefined();
    ebs.failNext('putBlock', throttled, { times: 30 });
    await writer.putBlock(snapshotId, 0, BLOCK, CHECKSUM);
    expect(seen).toHaveLength(30);
    expect(seen[0]).toBe(0);
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeGreaterThan(seen[i - 1]!);
    expect(watch.throttledForMs()).toBeUndefined();
    // A call that fails for good leaves the watch too.
    ebs.failNext('putBlock', throttled, { times: 10_000 });
    await rejection(writer.putBlock(snapshotId, 1, BLOCK, CHECKSUM));
    expect(watch.throttledForMs()).toBeUndefined();
  });

  it('validates the budget', () => {
    expect(() => resilientWriter(new MemoryEbs(), { limiter: new AdaptiveLimiter(1), policy: { throttleBudgetMs: -1 } })).toThrow(/throttleBudgetMs/);
  });
});

describe('a refusal for the signing time after which the client corrected its clock', () => {
  const skewed = () =>
    new SnaplineError(ErrorCodes.ACCESS_DENIED, 'credentials refused for ebs:PutSnapshotBlock: InvalidSignatureException: Signature expired', {
      retryable: true,
      details: { clockSkewCorrected: true },
    });

  function failing(times: number) {
    const calls = { put: 0 };
    const writer = {
      startSnapshot: () => Promise.reject(new Error('not used')),
      completeSnapshot: () => Promise.reject(new Error('not used')),
      putBlock: async () => {
        if (calls.put++ < times) throw skewed();
      },
    };
    return { writer, calls };
  }

  it('is retried once, outside maxAttempts', async () => {
    const { writer, calls } = failing(1);
    await resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: { ...FAST, maxAttempts: 1 } }).putBlock('snap-1', 0, BLOCK, CHECKSUM);
    expect(calls.put).toBe(2);
  });

  it('refused again, it fails for good: the clock was not the problem', async () => {
    const { writer, calls } = failing(5);
    const error = await rejection(resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST }).putBlock('snap-1', 0, BLOCK, CHECKSUM));
    expect(error).toMatchObject({ code: ErrorCodes.ACCESS_DENIED, retryable: false });
    expect(error.message).toMatch(/still refused after the clock was corrected/);
    expect(calls.put).toBe(2);
  });
});

describe('resilientReader', () => {
  async function completedSnapshot(ebs: MemoryEbs, indexes: number[]): Promise<string> {
    const { snapshotId } = await ebs.startSnapshot({ volumeSizeGiB: 1 });
    for (const index of indexes) await ebs.putBlock(snapshotId, index, BLOCK, CHECKSUM);
    await ebs.completeSnapshot(snapshotId, indexes.length, linearAggregateOf(indexes.map((index) => ({ index, digest: sha256(BLOCK) }))));
    return snapshotId;
  }

  it('retries a failed page and resumes after the last block handed out, without repeats', async () => {
    const ebs = new MemoryEbs({ maxPageSize: 2 });
    const snapshotId = await completedSnapshot(ebs, [0, 1, 2, 3, 4, 5, 6]);
    let pageRequests = 0;
    ebs.failNext('listBlocks', () => awsFailure('ebs:ListSnapshotBlocks', 'InternalServerException'), {
      times: 1,
      when: () => ++pageRequests === 3,
    });
    const reader = resilientReader(ebs, { limiter: new AdaptiveLimiter(2), policy: FAST });
    const indexes: number[] = [];
    for await (const page of reader.listBlocks(snapshotId)) indexes.push(...page.blocks.map((b) => b.index));
    expect(indexes).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('retries a changed-blocks page the same way', async () => {
    const ebs = new MemoryEbs({ maxPageSize: 2 });
    const snapshotId = await completedSnapshot(ebs, [0, 2, 4, 6, 8]);
    let pageRequests = 0;
    ebs.failNext('listChangedBlocks', () => awsFailure('ebs:ListChangedBlocks', 'ThrottlingException'), { when: () => ++pageRequests === 2 });
    const reader = resilientReader(ebs, { limiter: new AdaptiveLimiter(2), policy: FAST });
    const indexes: number[] = [];
    for await (const page of reader.listChangedBlocks('', snapshotId, { startingBlockIndex: 1 })) indexes.push(...page.blocks.map((b) => b.index));
    expect(indexes).toEqual([2, 4, 6, 8]);
  });

  it('never retries NOT_FOUND on reads', async () => {
    const ebs = new MemoryEbs();
    const reader = resilientReader(ebs, { limiter: new AdaptiveLimiter(2), policy: FAST });
    expect((await rejection(reader.getBlock('snap-0123456789abcdef0', 0, 't'))).code).toBe(ErrorCodes.NOT_FOUND);
    expect(ebs.calls.getBlock).toBe(1);
  });

  it('retries getBlock on a retryable error', async () => {
    const ebs = new MemoryEbs();
    const snapshotId = await completedSnapshot(ebs, [0]);
    let token = '';
    for await (const page of ebs.listBlocks(snapshotId)) token = page.blocks[0]!.token;
    ebs.failNext('getBlock', () => awsFailure('ebs:GetSnapshotBlock', 'InternalServerException'));
    const reader = resilientReader(ebs, { limiter: new AdaptiveLimiter(2), policy: FAST });
    expect((await reader.getBlock(snapshotId, 0, token)).data.equals(BLOCK)).toBe(true);
    expect(ebs.calls.getBlock).toBe(2);
  });

  it('a consumer that stops early releases the listing', async () => {
    const ebs = new MemoryEbs({ maxPageSize: 1 });
    const snapshotId = await completedSnapshot(ebs, [0, 1, 2]);
    const limiter = new AdaptiveLimiter(1);
    const reader = resilientReader(ebs, { limiter, policy: FAST });
    for await (const page of reader.listBlocks(snapshotId)) {
      expect(page.blocks).toHaveLength(1);
      break;
    }
    expect(ebs.calls.listBlocks).toBe(1);
    expect(limiter.active).toBe(0);
  });
});

describe('the whole chain: SDK error -> fromAwsError -> retry -> limiter', () => {
  it('RequestThrottledException from the SDK is retried, halves the limit, and the block lands', async () => {
    const client = new EBSClient({ region: 'us-east-1', credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
    const mock = mockClient(client);
    const throttle = new RequestThrottledException({ message: 'slow down', Reason: 'RESOURCE_LEVEL_THROTTLE', $metadata: { httpStatusCode: 400 } });
    mock.on(PutSnapshotBlockCommand).rejectsOnce(throttle).rejectsOnce(throttle).resolves({});
    const limiter = new AdaptiveLimiter(32);
    const codes: string[] = [];
    const writer = resilientWriter(new EbsSnapshotStore(client), { limiter, policy: FAST, onRetry: (e) => codes.push(e.code) });
    await writer.putBlock('snap-0abc', 1, BLOCK, CHECKSUM);
    expect(mock.commandCalls(PutSnapshotBlockCommand)).toHaveLength(3);
    expect(codes).toEqual([ErrorCodes.THROTTLED, ErrorCodes.THROTTLED]);
    expect(limiter.limit).toBe(8);
    client.destroy();
  });
});

describe('an unreachable endpoint', () => {
  const unreachable = (networkCode = 'ECONNREFUSED') => () =>
    new SnaplineError(ErrorCodes.ENDPOINT_UNREACHABLE, `ebs:PutSnapshotBlock: cannot reach the endpoint (${networkCode})`, { retryable: true, details: { networkCode } });

  /** A writer whose putBlock answers with `outcomes` in turn (an error is thrown), then succeeds; counts its calls. */
  function scripted(outcomes: Array<SnaplineError | 'ok'>) {
    const calls = { put: 0 };
    const writer = {
      startSnapshot: () => Promise.reject(new Error('not used')),
      completeSnapshot: () => Promise.reject(new Error('not used')),
      putBlock: async () => {
        const outcome = outcomes[calls.put++] ?? 'ok';
        if (outcome !== 'ok') throw outcome;
      },
    };
    return { writer, calls };
  }

  it.each(['ECONNREFUSED', 'ENOTFOUND'])('(%s) that no request of the run has reached fails after a few attempts, not retryable, saying so', async (code) => {
    const { writer, calls } = scripted(Array.from({ length: 10 }, unreachable(code)));
    const wrapped = resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST, contact: { reached: false } });
    const err = await rejection(wrapped.putBlock('snap-1', 0, BLOCK, CHECKSUM));
    expect(err).toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE, retryable: false });
    expect(err.message).toMatch(/gave up after 3 attempts: no request of this run has reached the endpoint yet/);
    expect(calls.put).toBe(3);
  });

  it('once a request of the run has reached it (the contact says so), is retried like any transient failure (an endpoint restart)', async () => {
    const { writer, calls } = scripted(Array.from({ length: 6 }, unreachable()));
    const wrapped = resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST, contact: { reached: true } });
    await wrapped.putBlock('snap-1', 0, BLOCK, CHECKSUM);
    expect(calls.put).toBe(7);
  });

  it('a success of the wrapped call does not stand for contact: the transport marks it', async () => {
    const contact = { reached: false };
    const { writer } = scripted(['ok']);
    await resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST, contact }).putBlock('snap-1', 0, BLOCK, CHECKSUM);
    expect(contact.reached).toBe(false);
  });

  it.each(['EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL'])('(%s, often passing) gets the full budget even before contact', async (code) => {
    const { writer, calls } = scripted(Array.from({ length: 6 }, unreachable(code)));
    const wrapped = resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST, contact: { reached: false } });
    await wrapped.putBlock('snap-1', 0, BLOCK, CHECKSUM);
    expect(calls.put).toBe(7);
  });

  it('without a contact, gets the full budget', async () => {
    const { writer, calls } = scripted(Array.from({ length: 6 }, unreachable()));
    await resilientWriter(writer, { limiter: new AdaptiveLimiter(1), policy: FAST }).putBlock('snap-1', 0, BLOCK, CHECKSUM);
    expect(calls.put).toBe(7);
  });
});
