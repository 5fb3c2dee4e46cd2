import { describe, expect, it } from 'vitest';
import type { RemoteSnapshot } from '../../core/ports.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { SnapshotRecord } from '../../index/index.js';
import { EC2_SETTLE_MS, type SettleWait } from '../blocks/committer.js';
import { completedSnapshot } from './remote-snapshot.js';

/**
 * completedSnapshot's bounded wait for EC2, with a catalog that lists what
 * the test says and an index of one record: the settle budget is counted
 * from the completion the index records, so a record completed just under
 * EC2_SETTLE_MS ago leaves a wait of a few hundred milliseconds.
 */

const SNAPSHOT_ID = 'snap-0123456789abcdef0';

function recordCompleted(msAgo: number): SnapshotRecord {
  const completedAt = new Date(Date.now() - msAgo);
  return {
    snapshotId: SNAPSHOT_ID,
    volume: 'disk',
    parentSnapshotId: null,
    baseSnapshotId: null,
    state: 'completed',
    volumeSizeGiB: 1,
    sourceBytes: 1 << 20,
    encrypted: false,
    description: null,
    startedAt: completedAt,
    completedAt,
    changedBlocks: 2,
    runOptions: null,
    errorReason: null,
  };
}

/** EC2 listing the snapshot as `seen` says, one look after another (the last one repeated), counting the looks. */
function listing(...seen: Array<RemoteSnapshot['state'] | 'unlisted'>) {
  const looks = { count: 0 };
  const catalog = {
    async describeSnapshots(): Promise<RemoteSnapshot[]> {
      const state = seen[Math.min(looks.count, seen.length - 1)]!;
      looks.count += 1;
      return state === 'unlisted' ? [] : [{ snapshotId: SNAPSHOT_ID, state, volumeSizeGiB: 1, encrypted: false, tags: {} }];
    },
  };
  return { catalog, looks };
}

const POLLS = { first: 20, max: 50 };

describe('completedSnapshot and EC2 settling', () => {
  it('a snapshot the index recorded completed moments ago, unlisted then pending in EC2: waited for, each look told, then returned', async () => {
    const { catalog, looks } = listing('unlisted', 'pending', 'completed');
    const waits: SettleWait[] = [];
    const snapshot = await completedSnapshot({ index: { lineage: { getSnapshot: () => recordCompleted(100) } }, catalog }, SNAPSHOT_ID, {
      onSettling: (wait) => waits.push(wait),
      pollMs: POLLS,
    });
    expect(snapshot.state).toBe('completed');
    expect(looks.count).toBe(3);
    expect(waits.map((w) => w.seen)).toEqual(['unlisted', 'pending']);
  });

  it('one EC2 never lists within the budget: NOT_FOUND once EC2_SETTLE_MS have passed since the recorded completion, saying when that was', async () => {
    const { catalog, looks } = listing('unlisted');
    const record = recordCompleted(EC2_SETTLE_MS - 300);
    const error = await completedSnapshot({ index: { lineage: { getSnapshot: () => record } }, catalog }, SNAPSHOT_ID, { pollMs: POLLS }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(SnaplineError);
    expect(error).toMatchObject({ code: ErrorCodes.NOT_FOUND, details: { snapshotId: SNAPSHOT_ID } });
    expect((error as SnaplineError).message).toBe(
      `snapshot ${SNAPSHOT_ID} does not exist in EC2 (the index recorded it completed at ${record.completedAt!.toISOString()}; EC2 shows a snapshot within 5 minutes)`,
    );
    expect(Date.now()).toBeGreaterThanOrEqual(record.completedAt!.getTime() + EC2_SETTLE_MS);
    expect(looks.count).toBeGreaterThan(1);
  });

  it('one still pending past the budget: BAD_STATE saying so', async () => {
    const { catalog } = listing('pending');
    const error = await completedSnapshot({ index: { lineage: { getSnapshot: () => recordCompleted(EC2_SETTLE_MS - 100) } }, catalog }, SNAPSHOT_ID, { pollMs: POLLS }).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: ErrorCodes.BAD_STATE });
    expect((error as SnaplineError).message).toMatch(/^snapshot snap-0123456789abcdef0 is pending \(the index recorded it completed at .*\); only a completed snapshot can be read$/);
  });

  it('one the index does not record completed is looked at once: NOT_FOUND at once when EC2 does not list it', async () => {
    const { catalog, looks } = listing('unlisted', 'completed');
    const error = await completedSnapshot({ index: { lineage: { getSnapshot: () => undefined } }, catalog }, SNAPSHOT_ID).catch((err: unknown) => err);
    expect(error).toMatchObject({ code: ErrorCodes.NOT_FOUND, message: `snapshot ${SNAPSHOT_ID} does not exist` });
    expect(looks.count).toBe(1);
  });
});
