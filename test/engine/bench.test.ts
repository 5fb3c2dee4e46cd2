/**
 * runBench against the local endpoint in this process, over loopback HTTP
 * through the real adapters (openRemote): the figures it reports, that it
 * notices wrong reads, that throttling is counted and not hidden, and that
 * the scratch snapshot is gone afterwards, after an abort too, also when the
 * session is opened with the run's signal as the CLI opens it (its stores cut
 * the requests in flight at the abort).
 */
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { BENCH_TAG, percentiles, recommend, runBench, scratchVolumeSizeGiB, type BenchEvent, type BenchPorts, type LevelResult } from '../../src/engine/bench/bench.js';
import { ErrorCodes } from '../../src/errors.js';
import { openRemote, withRemote, type RemoteSession } from '../../src/session.js';
import { clientsFor } from '../emulator/helpers.js';
import { rejection } from '../support/rejection.js';

let work: string;
let emulator: RunningEmulator;
let remote: RemoteSession;
let clients: ReturnType<typeof clientsFor>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-bench-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
  remote = await openRemote({ connection: 'local', endpointUrl: emulator.url, concurrency: 8 });
  clients = clientsFor(emulator.url);
});

afterAll(async () => {
  for (const client of Object.values(clients ?? {})) client.destroy();
  await remote?.close();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

afterEach(() => emulator.setFaults({}));

/** Starts of snapshots the endpoint answered, and the snapshots it still has. */
function startsSoFar(): number {
  return emulator.stats().operations.StartSnapshot?.requests ?? 0;
}

async function exists(snapshotId: string): Promise<boolean> {
  return (await remote.catalog.describeSnapshots([snapshotId])).length > 0;
}

/** Scratch snapshots the endpoint holds, found by their tag as users are told to look for them. */
async function scratchSnapshots(): Promise<string[]> {
  const out = await clients.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: `tag:${BENCH_TAG}`, Values: ['true'] }] }));
  return (out.Snapshots ?? []).map((s) => s.SnapshotId!);
}

const SMALL = { levels: [1, 4], durationMs: 600_000, blocksPerLevel: 12 };

describe('runBench', () => {
  it('measures each level in both directions, recommends one, and deletes the scratch snapshot', async () => {
    const events: BenchEvent[] = [];
    const result = await runBench(remote, { ...SMALL, onEvent: (e) => events.push(e) });

    expect(result.put.map((l) => l.concurrency)).toEqual([1, 4]);
    expect(result.get.map((l) => l.concurrency)).toEqual([1, 4]);
    for (const level of [...result.put, ...result.get]) {
      expect(level).toMatchObject({ requests: 12, succeeded: 12, throttled: 0, failed: 0, mismatched: 0, endedBy: 'blocks', status: 'ok', errors: [] });
      expect(level.mibPerSecond).toBeGreaterThan(0);
      expect(level.blocksPerSecond * 0.5).toBeCloseTo(level.mibPerSecond, 6);
      const latency = level.latencyMs!;
      expect(latency.p50).toBeGreaterThan(0);
      expect(latency.p50).toBeLessThanOrEqual(latency.p90);
      expect(latency.p90).toBeLessThanOrEqual(latency.p99);
      expect(latency.p99).toBeLessThanOrEqual(latency.max);
    }
    // The first write, then per level a warm-up round (one request per slot) and the measured ones.
    expect(result.blocksWritten).toBe(1 + (1 + 12) + (4 + 12));
    expect(result.readsVerified).toBe(1 + 12 + 4 + 12);
    expect(result.mismatches).toBe(0);
    expect([1, 4]).toContain(result.recommended.put?.concurrency);
    expect([1, 4]).toContain(result.recommended.get?.concurrency);
    expect(result.volumeSizeGiB).toBe(scratchVolumeSizeGiB([1, 4], 12));
    expect(result.cleanup).toBe('deleted');
    expect(await exists(result.snapshotId)).toBe(false);
    expect(events.map((e) => e.type)).toEqual([
      'started',
      'level-started', 'level-done', 'level-started', 'level-done',
      'completing',
      'level-started', 'level-done', 'level-started', 'level-done',
      'cleanup-started', 'cleanup-done',
    ]);
  });

  it('writes distinct random blocks with their checksums, and the endpoint accepts the LINEAR aggregate (the snapshot completes)', async () => {
    const result = await runBench(remote, { levels: [2], durationMs: 600_000, blocksPerLevel: 6, keep: true });
    try {
      const [snapshot] = await remote.catalog.describeSnapshots([result.snapshotId]);
      expect(snapshot).toMatchObject({ state: 'completed', tags: { [BENCH_TAG]: 'true' } });
      const blocks: Array<{ index: number; token: string }> = [];
      for await (const page of remote.reader.listBlocks(result.snapshotId)) blocks.push(...page.blocks);
      expect(blocks.map((b) => b.index)).toEqual([...Array(result.blocksWritten).keys()]);
      // The checked reader hashes what it gets: every block matches its checksum, and no two blocks are alike.
      const seen = new Set<string>();
      for (const block of blocks) {
        const { data } = await remote.reader.getBlock(result.snapshotId, block.index, block.token);
        expect(data.every((byte) => byte === 0)).toBe(false);
        seen.add(data.toString('base64'));
      }
      expect(seen.size).toBe(blocks.length);
      expect(result.cleanup).toBe('kept');
    } finally {
      await remote.catalog.deleteSnapshot(result.snapshotId);
    }
  });

  it('counts reads whose checksum is wrong as mismatches, and still deletes the scratch snapshot', async () => {
    const ports: BenchPorts = {
      ...portsOf(remote),
      reader: {
        listBlocks(snapshotId, options) {
          // The corruption starts once every block is written and listed.
          emulator.setFaults({ corruptRate: 0.5, seed: 7 });
          return remote.reader.listBlocks(snapshotId, options);
        },
      },
    };
    const result = await runBench(ports, SMALL);
    expect(result.mismatches).toBeGreaterThan(0);
    expect(result.get.reduce((n, l) => n + l.mismatched, 0)).toBeGreaterThan(0);
    expect(result.put.every((l) => l.mismatched === 0 && l.status === 'ok')).toBe(true);
    for (const level of result.get.filter((l) => l.mismatched > 0)) {
      expect(level.status).not.toBe('ok');
      expect(level.errors.find((e) => e.code === ErrorCodes.CHECKSUM_MISMATCH)?.count).toBe(level.mismatched);
    }
    expect(result.cleanup).toBe('deleted');
    expect(await exists(result.snapshotId)).toBe(false);
  });

  it('notices bytes that differ from those written even when the checksum header is right', async () => {
    const ports: BenchPorts = {
      ...portsOf(remote),
      store: {
        putBlock: (...args) => remote.store.putBlock(...args),
        startSnapshot: (input) => remote.store.startSnapshot(input),
        async getBlock(snapshotId, blockIndex, blockToken) {
          const block = await remote.store.getBlock(snapshotId, blockIndex, blockToken);
          if (blockIndex % 2 === 0) block.data[1000] = block.data[1000]! ^ 0x01;
          return block;
        },
      },
    };
    const result = await runBench(ports, SMALL);
    expect(result.mismatches).toBeGreaterThan(0);
    expect(result.get.every((l) => l.mismatched > 0)).toBe(true);
    expect(result.cleanup).toBe('deleted');
  });

  it('counts throttled puts and gets without retrying them, writes the throttled blocks afterwards, and reports a level that mostly failed', async () => {
    emulator.setFaults({ throttleRate: 0.6, seed: 3 });
    const result = await runBench(remote, { levels: [1, 2], durationMs: 600_000, blocksPerLevel: 20 });
    const levels = [...result.put, ...result.get];
    expect(levels.every((l) => l.requests === 20 && l.succeeded + l.throttled + l.failed === 20)).toBe(true);
    expect(levels.some((l) => l.throttled > 0)).toBe(true);
    expect(levels.some((l) => l.status === 'failed')).toBe(true);
    for (const level of levels.filter((l) => l.throttled > 0)) {
      expect(level.errors.find((e) => e.code === ErrorCodes.THROTTLED)?.count).toBe(level.throttled);
    }
    expect(result.notes.join('\n')).toMatch(/throttled.*1000 PutSnapshotBlock/s);
    expect(result.notes.join('\n')).toMatch(/most requests failed/);
    // Every block a put tried is in the snapshot: it completed with all of them, and reads found each one.
    expect(result.blocksWritten).toBe(1 + (1 + 20) + (2 + 20));
    expect(result.mismatches).toBe(0);
    expect(result.cleanup).toBe('deleted');
    expect(await exists(result.snapshotId)).toBe(false);
  });

  for (const phase of ['put', 'get'] as const) {
    it(`deletes the scratch snapshot when aborted during the ${phase}s`, async () => {
      const abort = new AbortController();
      let calls = 0;
      const counted = () => {
        if (++calls === 5) abort.abort();
      };
      const ports: BenchPorts = {
        ...portsOf(remote),
        store: {
          putBlock: (...args) => (phase === 'put' && counted(), remote.store.putBlock(...args)),
          startSnapshot: (input) => remote.store.startSnapshot(input),
          getBlock: (...args) => (phase === 'get' && counted(), remote.store.getBlock(...args)),
        },
      };
      let snapshotId: string | undefined;
      const cleanups: BenchEvent[] = [];
      const error = await rejection(
        runBench(ports, {
          ...SMALL,
          signal: abort.signal,
          onEvent(event) {
            if (event.type === 'started') snapshotId = event.snapshotId;
            if (event.type === 'cleanup-done') cleanups.push(event);
          },
        }),
      );
      expect(error.code).toBe(ErrorCodes.INTERRUPTED);
      expect(error.details).toMatchObject({ scratchSnapshotId: snapshotId, cleanup: 'deleted' });
      expect(cleanups).toEqual([{ type: 'cleanup-done', snapshotId, cleanup: 'deleted' }]);
      expect(await exists(snapshotId!)).toBe(false);
    });
  }

  it('refuses bad options before starting any snapshot', async () => {
    const before = startsSoFar();
    for (const bad of [
      { levels: [] },
      { levels: [0] },
      { levels: [2000] },
      { levels: Array.from({ length: 17 }, (_, i) => i + 1) },
      { levels: [1.5] },
      { levels: [4, 1, 4] },
      { durationMs: 0 },
      { blocksPerLevel: 0 },
      { levels: [1023, 1024], blocksPerLevel: 1e10 },
    ]) {
      const error = await rejection(runBench(remote, { ...SMALL, ...bad }));
      expect(error.code, JSON.stringify(bad)).toBe(ErrorCodes.INVALID_ARGUMENT);
    }
    expect(startsSoFar()).toBe(before);
  });
});

describe('runBench on a session opened with the run\'s signal, as the CLI opens it', () => {
  /**
   * runBench through a session whose stores cut the requests in flight when
   * `abort` fires; `replace` swaps some of the session's ports. Resolves with
   * the run's error and its events.
   */
  async function abortedBench(abort: AbortController, onEvent: (event: BenchEvent) => void, replace: (session: RemoteSession) => Partial<BenchPorts> = () => ({})) {
    const events: BenchEvent[] = [];
    const error = await withRemote({ connection: 'local', endpointUrl: emulator.url, concurrency: 8, signal: abort.signal }, (session) =>
      rejection(
        runBench(
          { ...portsOf(session), ...replace(session) },
          {
            ...SMALL,
            signal: abort.signal,
            onEvent(event) {
              events.push(event);
              onEvent(event);
            },
          },
        ),
      ),
    );
    const started = events.find((e) => e.type === 'started');
    return { error, events, snapshotId: started?.type === 'started' ? started.snapshotId : undefined };
  }

  // The abort lands just after the event, while the step that follows it is under way (the first write, the completion, the deletion).
  for (const stage of ['started', 'completing', 'cleanup-started'] as const) {
    it(`ends INTERRUPTED after deleting the scratch snapshot when aborted at ${stage}`, async () => {
      const abort = new AbortController();
      const { error, events, snapshotId } = await abortedBench(abort, (event) => {
        if (event.type === stage) queueMicrotask(() => abort.abort());
      });
      expect(error.code).toBe(ErrorCodes.INTERRUPTED);
      expect(snapshotId).toBeDefined();
      expect(error.details).toMatchObject({ scratchSnapshotId: snapshotId, cleanup: 'deleted' });
      expect(events.filter((e) => e.type === 'cleanup-done')).toEqual([{ type: 'cleanup-done', snapshotId, cleanup: 'deleted' }]);
      expect(await exists(snapshotId!)).toBe(false);
    });
  }

  it('finds and deletes the snapshot of a StartSnapshot whose answer the abort cut, by sending its clientToken again', async () => {
    const abort = new AbortController();
    const made: string[] = [];
    const { error, snapshotId } = await abortedBench(
      abort,
      () => undefined,
      (session) => ({
        writer: {
          // The endpoint makes the snapshot, then the abort comes before the answer is seen: the retrying writer gives up INTERRUPTED.
          async startSnapshot(input) {
            made.push((await session.writer.startSnapshot(input)).snapshotId);
            abort.abort();
            return session.writer.startSnapshot(input);
          },
          putBlock: (...args) => session.writer.putBlock(...args),
          completeSnapshot: (...args) => session.writer.completeSnapshot(...args),
        },
      }),
    );
    expect(error.code).toBe(ErrorCodes.INTERRUPTED);
    expect(made).toHaveLength(1);
    expect(snapshotId).toBe(made[0]);
    expect(error.details).toMatchObject({ scratchSnapshotId: made[0], cleanup: 'deleted' });
    expect(await exists(made[0]!)).toBe(false);
  });

  it('leaves no scratch snapshot when aborted while StartSnapshot is in flight', async () => {
    const before = await scratchSnapshots();
    const abort = new AbortController();
    const { error, snapshotId } = await abortedBench(
      abort,
      () => undefined,
      (session) => ({
        writer: {
          startSnapshot(input) {
            const starting = session.writer.startSnapshot(input);
            queueMicrotask(() => abort.abort());
            return starting;
          },
          putBlock: (...args) => session.writer.putBlock(...args),
          completeSnapshot: (...args) => session.writer.completeSnapshot(...args),
        },
      }),
    );
    expect(error.code).toBe(ErrorCodes.INTERRUPTED);
    expect(error.details).toMatchObject({ scratchSnapshotId: snapshotId, cleanup: 'deleted' });
    expect(await scratchSnapshots()).toEqual(before);
  });
});

describe('figures', () => {
  it('percentiles are nearest-rank', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    expect(percentiles(samples)).toEqual({ p50: 50, p90: 90, p99: 99, max: 100 });
    expect(percentiles([7])).toEqual({ p50: 7, p90: 7, p99: 7, max: 7 });
    expect(percentiles([])).toBeNull();
  });

  it('recommends the smallest healthy level within 90 % of the best', () => {
    const level = (concurrency: number, mibPerSecond: number, extra: Partial<LevelResult> = {}): LevelResult => ({
      operation: 'put',
      concurrency,
      requests: 1000,
      succeeded: 1000,
      throttled: 0,
      failed: 0,
      mismatched: 0,
      seconds: 1,
      mibPerSecond,
      blocksPerSecond: mibPerSecond * 2,
      latencyMs: { p50: 5, p90: 8, p99: 20, max: 40 },
      endedBy: 'blocks',
      status: 'ok',
      errors: [],
      ...extra,
    });
    expect(recommend([level(1, 100), level(8, 460), level(16, 500), level(64, 505)])?.concurrency).toBe(8);
    // The fastest level is throttled (2 %): the best among the others counts.
    expect(recommend([level(1, 100), level(8, 300), level(16, 430), level(64, 600, { throttled: 20, succeeded: 980 })])?.concurrency).toBe(16);
    // p99 over a second disqualifies.
    expect(recommend([level(1, 100), level(128, 600, { latencyMs: { p50: 200, p90: 600, p99: 1500, max: 2000 } })])?.concurrency).toBe(1);
    expect(recommend([level(1, 0, { succeeded: 0, failed: 1000, latencyMs: null, status: 'failed' })])).toBeNull();
  });
});

function portsOf(session: RemoteSession): BenchPorts {
  return { store: session.store, writer: session.writer, reader: session.reader, catalog: session.catalog };
}
