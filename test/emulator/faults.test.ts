import { CompleteSnapshotCommand, ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isSnaplineError } from '../../src/errors.js';
import type { EmulatorStats } from '../../src/emulator/index.js';
import { blockOf, checksum, complete, expectAwsError, expectBytes, get, listAll, put, rejection, snapshotWith, start, startTestEndpoint, TestClock, type TestEndpoint } from './helpers.js';

const clock = new TestClock();
let t: TestEndpoint;
let readable: string;

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now });
  readable = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]));
});
afterEach(() => {
  t.emulator.setFaults({});
  t.emulator.resetStats();
});
afterAll(async () => {
  await t.stop();
});

/** The outcome of `count` sequential ListSnapshotBlocks calls: '.' answered, 'T' throttled, 'E' 500, 'R' reset. */
async function pattern(count: number): Promise<string> {
  let out = '';
  for (let i = 0; i < count; i += 1) {
    try {
      await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: readable }));
      out += '.';
    } catch (err) {
      const name = (err as Error).name;
      out += name === 'RequestThrottledException' ? 'T' : name === 'InternalServerException' ? 'E' : 'R';
    }
  }
  return out;
}

describe('fault knobs', () => {
  it('throttleRate answers RequestThrottledException', async () => {
    t.emulator.setFaults({ throttleRate: 1 });
    await expectAwsError(put(t.ebs, readable, 0, blockOf(1)), 'RequestThrottledException', 'ACCOUNT_THROTTLED');
    const err = await expectAwsError(start(t.ebs), 'RequestThrottledException');
    expect((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(400);
    expect(t.emulator.stats().faults.throttled).toBe(2);
  });

  it('throttleForS throttles every EBS request for that many seconds of AWS time from the first one after it is set, on the endpoint clock divided by the time scale', async () => {
    const scaledClock = new TestClock();
    const scaled = await startTestEndpoint({ now: scaledClock.now, timeScale: 60 });
    try {
      const id = await snapshotWith(scaled.ebs, new Map([[0, blockOf(2)]]));
      const listed = () =>
        scaled.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id })).then(
          () => '.',
          (err: Error) => (err.name === 'RequestThrottledException' ? 'T' : err.name),
        );
      // Three minutes of AWS time: 3 s on an endpoint whose clock runs 60 times faster.
      scaled.emulator.setFaults({ throttleForS: 180 });
      scaledClock.advance(10_000);
      expect(await listed()).toBe('T');
      await expectAwsError(put(scaled.ebs, id, 1, blockOf(3)), 'RequestThrottledException', 'ACCOUNT_THROTTLED');
      scaledClock.advance(2999);
      expect(await listed()).toBe('T');
      scaledClock.advance(1);
      expect(await listed()).toBe('.');
      expect(scaled.emulator.stats().faults.throttled).toBe(3);
      // Set again, the window starts again.
      scaled.emulator.setFaults({ throttleForS: 180 });
      expect(await listed()).toBe('T');
    } finally {
      await scaled.stop();
    }
  });

  it('errorRate answers InternalServerException (500)', async () => {
    t.emulator.setFaults({ errorRate: 1 });
    const err = await expectAwsError(listAll(t.ebs, readable), 'InternalServerException');
    expect((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(500);
    expect(t.emulator.stats().faults.internalErrors).toBe(1);
  });

  it('resetRate drops the connection without an answer', async () => {
    t.emulator.setFaults({ resetRate: 1 });
    const err = await rejection(listAll(t.ebs, readable));
    expect(err.name).not.toMatch(/Exception$/);
    expect(t.emulator.stats().faults.resets).toBe(1);
    t.emulator.setFaults({});
    expect(await listAll(t.ebs, readable)).toHaveLength(1);
  });

  it('latencyMs delays each answer by at least that much', async () => {
    t.emulator.setFaults({ latencyMs: 120 });
    const began = performance.now();
    await listAll(t.ebs, readable);
    expect(performance.now() - began).toBeGreaterThanOrEqual(115);
  });

  it('rateLimit throttles Put/GetSnapshotBlock per snapshot beyond the rate', async () => {
    t.emulator.setFaults({ rateLimit: 3 });
    const id = await start(t.ebs);
    const other = await start(t.ebs);
    for (let i = 0; i < 3; i += 1) await put(t.ebs, id, i, blockOf(2));
    await expectAwsError(put(t.ebs, id, 3, blockOf(2)), 'RequestThrottledException', 'RESOURCE_LEVEL_THROTTLE');
    await put(t.ebs, other, 0, blockOf(2));
    clock.advance(1000);
    await put(t.ebs, id, 3, blockOf(2));
    const [block] = await listAll(t.ebs, readable);
    for (let i = 0; i < 3; i += 1) await get(t.ebs, readable, 0, block!.BlockToken!);
    await expectAwsError(get(t.ebs, readable, 0, block!.BlockToken!), 'RequestThrottledException', 'RESOURCE_LEVEL_THROTTLE');
    expect(t.emulator.stats().faults.rateLimited).toBe(2);
  });

  it('notFoundAfterStart answers ResourceNotFoundException to PutSnapshotBlock for a while', async () => {
    t.emulator.setFaults({ notFoundAfterStart: 30 });
    const id = await start(t.ebs);
    await expectAwsError(put(t.ebs, id, 0, blockOf(3)), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
    clock.advance(29_000);
    await expectAwsError(put(t.ebs, id, 0, blockOf(3)), 'ResourceNotFoundException');
    clock.advance(1000);
    await put(t.ebs, id, 0, blockOf(3));
    expect(t.emulator.stats().faults.notFound).toBe(2);
  });

  it('corruptRate sends a wrong x-amz-Checksum with the right bytes', async () => {
    t.emulator.setFaults({ corruptRate: 1 });
    const [block] = await listAll(t.ebs, readable);
    const got = await get(t.ebs, readable, 0, block!.BlockToken!);
    expectBytes(got.data, blockOf(1));
    expect(got.checksum).not.toBe(checksum(blockOf(1)));
    expect(t.emulator.stats().faults.corrupted).toBe(1);
  });

  it('completionDelayMs keeps a completed snapshot pending for that long', async () => {
    t.emulator.setFaults({ completionDelayMs: 60_000 });
    const id = await start(t.ebs);
    await put(t.ebs, id, 0, blockOf(4));
    expect(await complete(t.ebs, id, new Map([[0, blockOf(4)]]))).toBe('pending');
    const state = async () => (await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))).Snapshots?.[0]?.State;
    expect(await state()).toBe('pending');
    await expectAwsError(listAll(t.ebs, id), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(put(t.ebs, id, 1, blockOf(4)), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(t.ebs.send(new CompleteSnapshotCommand({ SnapshotId: id, ChangedBlocksCount: 1 })), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    clock.advance(60_000);
    expect(await state()).toBe('completed');
    expect(await listAll(t.ebs, id)).toHaveLength(1);
  });

  it('completionErrorRate ends completions in error', async () => {
    t.emulator.setFaults({ completionErrorRate: 1 });
    const id = await start(t.ebs);
    expect(await complete(t.ebs, id, new Map())).toBe('error');
    expect(t.emulator.stats().faults.completionErrors).toBe(1);
  });
});

describe('determinism', () => {
  it('the same seed gives the same sequence of faults, another seed another one', async () => {
    t.emulator.setFaults({ seed: 42, throttleRate: 0.3, errorRate: 0.2 });
    const first = await pattern(40);
    t.emulator.setFaults({ seed: 42, throttleRate: 0.3, errorRate: 0.2 });
    const again = await pattern(40);
    t.emulator.setFaults({ seed: 7, throttleRate: 0.3, errorRate: 0.2 });
    const other = await pattern(40);
    expect(again).toBe(first);
    expect(other).not.toBe(first);
    expect(first).toMatch(/T/);
    expect(first).toMatch(/E/);
    expect(first).toMatch(/\./);
  });

  it('switching one fault on does not shift the sequence of another', async () => {
    t.emulator.setFaults({ seed: 5, throttleRate: 0.5 });
    const throttles = (await pattern(30)).replace(/[^T]/g, '.');
    t.emulator.setFaults({ seed: 5, throttleRate: 0.5, corruptRate: 0.5 });
    expect((await pattern(30)).replace(/[^T]/g, '.')).toBe(throttles);
  });

  it('rejects bad settings with the field named', () => {
    const bad = (faults: object) => {
      try {
        t.emulator.setFaults(faults);
      } catch (err) {
        expect(isSnaplineError(err, 'INVALID_ARGUMENT')).toBe(true);
        return (err as Error).message;
      }
      throw new Error('accepted');
    };
    expect(bad({ throttleRate: 1.5 })).toMatch(/throttleRate/);
    expect(bad({ latencyMs: -1 })).toMatch(/latencyMs/);
    expect(bad({ throttleForS: -1 })).toMatch(/throttleForS must be 0 or more/);
    expect(bad({ seed: 1.5 })).toMatch(/seed/);
    expect(bad({ colour: 1 })).toMatch(/colour/);
  });
});

describe('admin routes', () => {
  it('GET /_snapline/stats counts requests and bytes by operation; reset zeroes them', async () => {
    const id = await start(t.ebs);
    await put(t.ebs, id, 0, blockOf(5));
    await put(t.ebs, id, 1, blockOf(5));
    const stats = (await (await fetch(`${t.emulator.url}/_snapline/stats`)).json()) as EmulatorStats;
    expect(stats.operations.PutSnapshotBlock).toEqual({ requests: 2, errors: 0, bytesIn: 2 * 524_288, bytesOut: 0 });
    expect(stats.operations.StartSnapshot?.requests).toBe(1);
    expect(stats.totals.requests).toBe(3);
    const reset = await fetch(`${t.emulator.url}/_snapline/stats/reset`, { method: 'POST' });
    expect(reset.status).toBe(204);
    expect(t.emulator.stats().totals.requests).toBe(0);
  });

  it('POST /_snapline/faults replaces the faults; bad ones are refused by name', async () => {
    const set = await fetch(`${t.emulator.url}/_snapline/faults`, { method: 'POST', body: JSON.stringify({ throttleRate: 1, seed: 3 }) });
    expect(set.status).toBe(200);
    expect(await set.json()).toEqual({ throttleRate: 1, seed: 3 });
    await expectAwsError(listAll(t.ebs, readable), 'RequestThrottledException');
    expect(await (await fetch(`${t.emulator.url}/_snapline/faults`)).json()).toEqual({ throttleRate: 1, seed: 3 });
    const bad = await fetch(`${t.emulator.url}/_snapline/faults`, { method: 'POST', body: JSON.stringify({ errorRate: 2 }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toMatch(/errorRate/);
    await fetch(`${t.emulator.url}/_snapline/faults`, { method: 'POST', body: '{}' });
    expect(await listAll(t.ebs, readable)).toHaveLength(1);
    expect(t.emulator.stats().operations['_snapline']).toBeUndefined();
  });
});
