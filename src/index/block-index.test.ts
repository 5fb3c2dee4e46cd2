import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../core/checksum.js';
import { BLOCKS_PER_GIB, GIB } from '../core/constants.js';
import { isSnaplineError } from '../errors.js';
import { BlockIndex, type BlockEntry } from './index.js';
import { CHUNK_SPAN } from './maps.js';

const GIB_SIZE = 40; // 81,920 blocks: maps span several chunks
const FAR = CHUNK_SPAN + 7_000; // a block in the second chunk
const FARTHER = 2 * CHUNK_SPAN + 100; // and one in the third

let dir: string;
let index: BlockIndex;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-index-'));
  index = BlockIndex.open(join(dir, 'index.db'));
  index.lineage.ensureVolume({ name: 'vol', sourcePath: '/images/vol.img', sizeBytes: GIB_SIZE * GIB });
});

afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

const d = (label: string): Buffer => sha256(Buffer.from(label));

function begin(snapshotId: string, baseSnapshotId: string | null, parentSnapshotId = baseSnapshotId) {
  return index.runs.beginRun({
    volume: 'vol',
    snapshotId,
    parentSnapshotId,
    baseSnapshotId,
    volumeSizeGiB: GIB_SIZE,
    sourceBytes: GIB_SIZE * GIB - 5,
    encrypted: false,
    description: `run ${snapshotId}`,
    runOptions: JSON.stringify({ source: '/images/vol.img' }),
  });
}

/** A committed snapshot writing `blocks` ({index: label}) over `base`. */
function snapshot(snapshotId: string, baseSnapshotId: string | null, blocks: Record<number, string>) {
  begin(snapshotId, baseSnapshotId);
  index.runs.recordBlocks(
    snapshotId,
    Object.entries(blocks).map(([at, label]) => ({ index: Number(at), digest: d(label) })),
  );
  index.runs.markCompleting(snapshotId);
  return index.runs.commitRun(snapshotId);
}

/** A map as {index: digest hex}, copying out of the chunk buffers. */
function asObject(entries: Iterable<BlockEntry>): Record<number, string> {
  const out: Record<number, string> = {};
  let previous = -1;
  for (const { index: at, digest } of entries) {
    expect(at).toBeGreaterThan(previous);
    previous = at;
    out[at] = digest.toString('hex');
  }
  return out;
}

function expected(blocks: Record<number, string>): Record<number, string> {
  return Object.fromEntries(Object.entries(blocks).map(([at, label]) => [at, d(label).toString('hex')]));
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isSnaplineError(err)) return err.code;
    throw err;
  }
  return undefined;
}

describe('volumes', () => {
  it('creates a volume once and updates its size and source path', () => {
    const first = index.lineage.getVolume('vol')!;
    const updated = index.lineage.ensureVolume({ name: 'vol', sourcePath: '/dev/sdb', sizeBytes: 7 });
    expect(updated).toMatchObject({ name: 'vol', sourcePath: '/dev/sdb', sizeBytes: 7 });
    expect(updated.createdAt.getTime()).toBe(first.createdAt.getTime());
    index.lineage.ensureVolume({ name: 'alpha', sourcePath: '', sizeBytes: 0 });
    expect(index.lineage.listVolumes().map((v) => v.name)).toEqual(['alpha', 'vol']);
    expect(index.lineage.getVolume('missing')).toBeUndefined();
  });
});

describe('lineage and base chains', () => {
  it('follows base chains, orders snapshots and finds the head', () => {
    snapshot('snap-1', null, { 0: 'a' });
    snapshot('snap-2', 'snap-1', { 1: 'b' });
    snapshot('snap-3', 'snap-2', { 2: 'c' });
    // A parent taken elsewhere, reconciled against the index head.
    begin('snap-4', 'snap-3', 'snap-elsewhere');
    index.runs.commitRun('snap-4');

    expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3', 'snap-2', 'snap-1']);
    const fourth = index.lineage.getSnapshot('snap-4')!;
    expect(fourth).toMatchObject({ parentSnapshotId: 'snap-elsewhere', baseSnapshotId: 'snap-3', changedBlocks: 0 });
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-4');
    expect(index.lineage.listSnapshots('vol').map((s) => s.snapshotId)).toEqual(['snap-1', 'snap-2', 'snap-3', 'snap-4']);
    expect(index.lineage.listSnapshots().length).toBe(4);
    expect(index.lineage.listSnapshots('other')).toEqual([]);
    expect(index.lineage.headSnapshot('other')).toBeUndefined();
  });

  it('keeps every field of a run', () => {
    const started = begin('snap-1', null);
    expect(started).toMatchObject({
      snapshotId: 'snap-1',
      volume: 'vol',
      parentSnapshotId: null,
      baseSnapshotId: null,
      state: 'pending',
      volumeSizeGiB: GIB_SIZE,
      sourceBytes: GIB_SIZE * GIB - 5,
      encrypted: false,
      description: 'run snap-1',
      completedAt: null,
      changedBlocks: 0,
      runOptions: '{"source":"/images/vol.img"}',
      errorReason: null,
    });
    const completedAt = new Date('2026-01-02T03:04:05Z');
    expect(index.runs.commitRun('snap-1', completedAt).completedAt).toEqual(completedAt);
  });
});

describe('block maps', () => {
  beforeEach(() => {
    snapshot('snap-1', null, { 0: 'a', 1: 'b', 5: 'c', [FAR]: 'x' });
    snapshot('snap-2', 'snap-1', { 1: 'b2', 6: 'd', 5: 'c' });
    snapshot('snap-3', 'snap-2', { 0: 'a3', [FAR]: 'x3', [FARTHER]: 'y' });
  });

  it('derives each map along its base chain, newest digest winning, across chunks', () => {
    expect(asObject(index.maps.blockMap('snap-1'))).toEqual(expected({ 0: 'a', 1: 'b', 5: 'c', [FAR]: 'x' }));
    expect(asObject(index.maps.blockMap('snap-2'))).toEqual(expected({ 0: 'a', 1: 'b2', 5: 'c', 6: 'd', [FAR]: 'x' }));
    expect(asObject(index.maps.blockMap('snap-3'))).toEqual(
      expected({ 0: 'a3', 1: 'b2', 5: 'c', 6: 'd', [FAR]: 'x3', [FARTHER]: 'y' }),
    );
  });

  it('limits a map to [fromBlock, toBlock)', () => {
    expect(asObject(index.maps.blockMap('snap-3', { fromBlock: 1, toBlock: 6 }))).toEqual(expected({ 1: 'b2', 5: 'c' }));
    expect(asObject(index.maps.blockMap('snap-3', { fromBlock: 7, toBlock: FARTHER }))).toEqual(expected({ [FAR]: 'x3' }));
    expect(asObject(index.maps.blockMap('snap-3', { fromBlock: FARTHER + 1 }))).toEqual({});
    expect(codeOf(() => index.maps.blockMap('snap-3', { fromBlock: 9, toBlock: 3 }))).toBe('INVALID_ARGUMENT');
  });

  it('lists the blocks whose digests differ, a block in one map only included', () => {
    expect([...index.maps.diffMaps('snap-1', 'snap-3')]).toEqual([0, 1, 6, FAR, FARTHER]);
    expect([...index.maps.diffMaps('snap-3', 'snap-1')]).toEqual([0, 1, 6, FAR, FARTHER]);
    // snap-2 wrote block 5 again with the same digest: not a difference.
    expect([...index.maps.diffMaps('snap-1', 'snap-2')]).toEqual([1, 6]);
    expect([...index.maps.diffMaps('snap-3', 'snap-3')]).toEqual([]);
  });

  it('diffs maps of separate lineages', () => {
    index.lineage.importSnapshot(
      { snapshotId: 'snap-full', volume: 'vol', parentSnapshotId: null, volumeSizeGiB: GIB_SIZE, sourceBytes: 1, encrypted: false, description: null },
      Object.entries({ 0: 'a3', 1: 'b2', 5: 'other', [FAR]: 'x3', [FARTHER + 1]: 'z' }).map(([at, label]) => ({
        index: Number(at),
        digest: d(label),
      })),
    );
    expect([...index.maps.diffMaps('snap-3', 'snap-full')]).toEqual([5, 6, FARTHER, FARTHER + 1]);
  });

  it('streams without holding the connection: the journal can be written during a scan', () => {
    begin('snap-4', 'snap-3');
    const seen: number[] = [];
    for (const { index: at } of index.maps.blockMap('snap-3')) {
      index.runs.recordBlocks('snap-4', [{ index: at, digest: d(`new ${at}`) }]);
      seen.push(at);
    }
    expect(index.runs.writtenBlockCount('snap-4')).toBe(seen.length);
  });

  it('refuses a scan whose maps were rewritten underneath it', () => {
    const scan = index.maps.blockMap('snap-3');
    expect(scan.next().value).toMatchObject({ index: 0 });
    index.lineage.markDeleted('snap-2'); // folds snap-2 into snap-3
    expect(codeOf(() => [...scan])).toBe('CONFLICT');
    expect(asObject(index.maps.blockMap('snap-3'))).toEqual(
      expected({ 0: 'a3', 1: 'b2', 5: 'c', 6: 'd', [FAR]: 'x3', [FARTHER]: 'y' }),
    );
  });

  it('has no map for unknown, errored or deleted snapshots', () => {
    expect(codeOf(() => index.maps.blockMap('snap-unknown'))).toBe('NOT_FOUND');
    begin('snap-4', 'snap-3');
    index.runs.abandonRun('snap-4', 'gave up');
    expect(codeOf(() => index.maps.blockMap('snap-4'))).toBe('BAD_STATE');
    index.lineage.markDeleted('snap-3');
    expect(codeOf(() => index.maps.diffMaps('snap-1', 'snap-3'))).toBe('BAD_STATE');
  });
});

describe('the journal of a run', () => {
  beforeEach(() => {
    snapshot('snap-1', null, { 0: 'a', 1: 'b' });
    begin('snap-2', 'snap-1');
  });

  it('records blocks idempotently and lists them ascending', () => {
    index.runs.recordBlocks('snap-2', [
      { index: FAR, digest: d('x') },
      { index: 3, digest: d('c') },
    ]);
    index.runs.recordBlocks('snap-2', [
      { index: 3, digest: d('c2') },
      { index: 1, digest: new Uint8Array(d('b2')) },
    ]);
    expect(asObject(index.runs.writtenBlocks('snap-2'))).toEqual(expected({ 1: 'b2', 3: 'c2', [FAR]: 'x' }));
    expect(index.runs.writtenBlockCount('snap-2')).toBe(3);
  });

  it('keeps intents until their blocks are acknowledged', () => {
    index.runs.recordIntents('snap-2', [1, 2, 3, FAR].map((at) => ({ index: at, digest: d(`i${at}`) })));
    index.runs.recordBlocks('snap-2', [{ index: 2, digest: d('i2') }]);
    expect(Object.keys(asObject(index.runs.unacknowledgedBlocks('snap-2'))).map(Number)).toEqual([1, 3, FAR]);
  });

  it('survives closing the file: the next run finds the pending snapshot and its blocks', () => {
    index.runs.recordBlocks('snap-2', [{ index: 4, digest: d('e') }]);
    index.runs.recordIntents('snap-2', [{ index: 9, digest: d('f') }]);
    index.close();
    index = BlockIndex.open(join(dir, 'index.db'));
    expect(index.runs.pendingRun('vol')).toMatchObject({ snapshotId: 'snap-2', state: 'pending', baseSnapshotId: 'snap-1' });
    expect(asObject(index.runs.writtenBlocks('snap-2'))).toEqual(expected({ 4: 'e' }));
    expect(Object.keys(asObject(index.runs.unacknowledgedBlocks('snap-2')))).toEqual(['9']);
  });

  it('allows one open run per volume', () => {
    expect(codeOf(() => begin('snap-3', 'snap-1'))).toBe('CONFLICT');
    index.lineage.ensureVolume({ name: 'other', sourcePath: '/x', sizeBytes: 1 });
    expect(
      index.runs.beginRun({ volume: 'other', snapshotId: 'snap-9', parentSnapshotId: null, baseSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 1, encrypted: true, description: null, runOptions: null }).state,
    ).toBe('pending');
    index.runs.markCompleting('snap-2');
    expect(codeOf(() => begin('snap-3', 'snap-1'))).toBe('CONFLICT');
    expect(index.runs.pendingRun('vol')?.state).toBe('completing');
  });

  it('refuses bad runs and bad blocks, naming the argument', () => {
    index.runs.abandonRun('snap-2', 'test');
    expect(codeOf(() => begin('snap-1', null))).toBe('CONFLICT'); // id already known
    expect(codeOf(() => begin('snap-3', 'snap-2'))).toBe('BAD_STATE'); // base in error
    expect(codeOf(() => begin('snap-3', 'snap-unknown'))).toBe('NOT_FOUND');
    expect(codeOf(() => index.runs.beginRun({ ...index.lineage.getSnapshot('snap-1')!, volume: 'nope', snapshotId: 's', runOptions: null }))).toBe(
      'NOT_FOUND',
    );
    begin('snap-3', 'snap-1');
    expect(() => index.runs.recordBlocks('snap-3', [{ index: 0, digest: new Uint8Array(31) }])).toThrow(/blocks\[0\]\.digest/);
    expect(() => index.runs.recordBlocks('snap-3', [{ index: GIB_SIZE * BLOCKS_PER_GIB, digest: d('a') }])).toThrow(/blocks\[0\]\.index/);
    expect(() => index.runs.recordBlocks('snap-3', [{ index: 1.5, digest: d('a') }])).toThrow(/blocks\[0\]\.index/);
    expect(index.runs.writtenBlockCount('snap-3')).toBe(0);
  });
});

describe('run starts (before StartSnapshot)', () => {
  const start = { volume: 'vol', clientToken: 'token-a', startInput: '{"volumeSizeGiB":40}', runOptions: '{"source":"/images/vol.img"}' };

  it('keeps the token and arguments durably until beginRun of the volume drops them; a new record replaces the old one', () => {
    index.runs.recordRunStart(start);
    index.close();
    index = BlockIndex.open(join(dir, 'index.db'));
    expect(index.runs.runStart('vol')).toMatchObject({ volume: 'vol', clientToken: 'token-a', startInput: start.startInput, runOptions: start.runOptions });
    index.runs.recordRunStart({ ...start, clientToken: 'token-b' });
    expect(index.runs.runStart('vol')?.clientToken).toBe('token-b');
    begin('snap-1', null);
    expect(index.runs.runStart('vol')).toBeUndefined();
  });

  it('refuses a run start while the volume has an open run or is unknown; dropRunStart is idempotent', () => {
    begin('snap-1', null);
    expect(codeOf(() => index.runs.recordRunStart(start))).toBe('CONFLICT');
    expect(codeOf(() => index.runs.recordRunStart({ ...start, volume: 'nope' }))).toBe('NOT_FOUND');
    index.runs.abandonRun('snap-1', 'test');
    index.runs.recordRunStart(start);
    index.runs.dropRunStart('vol');
    index.runs.dropRunStart('vol');
    expect(index.runs.runStart('vol')).toBeUndefined();
  });
});

describe('commit and abandon', () => {
  beforeEach(() => {
    snapshot('snap-1', null, { 0: 'a', 1: 'b' });
    begin('snap-2', 'snap-1');
    index.runs.recordBlocks('snap-2', [
      { index: 1, digest: d('b2') },
      { index: 2, digest: d('c') },
    ]);
  });

  it('claims nothing before the commit', () => {
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-1');
    // A pending snapshot's map is its base's.
    expect(asObject(index.maps.blockMap('snap-2'))).toEqual(expected({ 0: 'a', 1: 'b' }));
    index.runs.markCompleting('snap-2');
    index.runs.markCompleting('snap-2');
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-1');
    expect(codeOf(() => index.runs.recordBlocks('snap-2', [{ index: 3, digest: d('d') }]))).toBe('BAD_STATE');
  });

  it('commits the journal as the map in one step, idempotently', () => {
    index.runs.recordIntents('snap-2', [{ index: 7, digest: d('never acknowledged') }]);
    const committed = index.runs.commitRun('snap-2');
    expect(committed).toMatchObject({ state: 'completed', changedBlocks: 2 });
    expect(committed.completedAt).toBeInstanceOf(Date);
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-2');
    expect(index.runs.pendingRun('vol')).toBeUndefined();
    expect(asObject(index.maps.blockMap('snap-2'))).toEqual(expected({ 0: 'a', 1: 'b2', 2: 'c' }));
    expect(index.runs.commitRun('snap-2')).toEqual(committed);
    expect(codeOf(() => index.runs.writtenBlocks('snap-2'))).toBe('BAD_STATE');
    expect(index.storageStats().blockRows).toBe(4); // 2 + 2 in the maps; journal and intents gone
    expect(index.check()).toEqual([]);
  });

  it('abandons a run: it and its blocks stop counting', () => {
    index.runs.abandonRun('snap-2', 'snapshot ended in error');
    index.runs.abandonRun('snap-2', 'again');
    expect(index.lineage.getSnapshot('snap-2')).toMatchObject({ state: 'error', errorReason: 'snapshot ended in error' });
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-1');
    expect(index.runs.pendingRun('vol')).toBeUndefined();
    expect(index.storageStats().blockRows).toBe(2);
    expect(codeOf(() => index.runs.commitRun('snap-2'))).toBe('BAD_STATE');
    expect(codeOf(() => index.runs.abandonRun('snap-1', 'no'))).toBe('BAD_STATE');
    begin('snap-3', 'snap-1');
    expect(index.runs.pendingRun('vol')?.snapshotId).toBe('snap-3');
  });
});

describe('deletion', () => {
  const map3 = { 0: 'a3', 1: 'b2', 5: 'c', 6: 'd', [FAR]: 'x3', [FARTHER]: 'y' };

  beforeEach(() => {
    snapshot('snap-1', null, { 0: 'a', 1: 'b', 5: 'c', [FAR]: 'x' });
    snapshot('snap-2', 'snap-1', { 1: 'b2', 6: 'd' });
    snapshot('snap-3', 'snap-2', { 0: 'a3', [FAR]: 'x3', [FARTHER]: 'y' });
  });

  it('folds a deleted snapshot into its only child, keeping the child derivable', () => {
    const rowsBefore = index.storageStats().blockRows;
    index.lineage.markDeleted('snap-2');
    index.lineage.markDeleted('snap-2');
    expect(index.lineage.getSnapshot('snap-2')).toMatchObject({ state: 'deleted', baseSnapshotId: null });
    expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3', 'snap-1']);
    expect(asObject(index.maps.blockMap('snap-3'))).toEqual(expected(map3));
    expect(asObject(index.maps.blockMap('snap-1'))).toEqual(expected({ 0: 'a', 1: 'b', 5: 'c', [FAR]: 'x' }));

    index.lineage.markDeleted('snap-1');
    expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3']);
    expect(asObject(index.maps.blockMap('snap-3'))).toEqual(expected(map3));
    expect(index.storageStats().blockRows).toBeLessThan(rowsBefore);
    expect(index.storageStats().blockRows).toBe(Object.keys(map3).length);
    expect(index.check()).toEqual([]);
  });

  it('folds a small child into a large parent, the digests of the child winning', () => {
    snapshot('snap-4', 'snap-3', { 0: 'a4', 2: 'z' });
    index.lineage.markDeleted('snap-3');
    index.lineage.markDeleted('snap-2');
    expect(index.lineage.baseChain('snap-4').map((s) => s.snapshotId)).toEqual(['snap-4', 'snap-1']);
    expect(asObject(index.maps.blockMap('snap-4'))).toEqual(expected({ ...map3, 0: 'a4', 2: 'z' }));
    expect(asObject(index.maps.blockMap('snap-1'))).toEqual(expected({ 0: 'a', 1: 'b', 5: 'c', [FAR]: 'x' }));
    expect(index.check()).toEqual([]);
  });

  it('keeps a map that two snapshots build on, and folds it once one is left', () => {
    snapshot('snap-3b', 'snap-2', { 6: 'd-b' });
    index.lineage.markDeleted('snap-2');
    expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3', 'snap-2', 'snap-1']);
    expect(asObject(index.maps.blockMap('snap-3b'))).toEqual(expected({ 0: 'a', 1: 'b2', 5: 'c', 6: 'd-b', [FAR]: 'x' }));
    index.lineage.markDeleted('snap-3b');
    expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3', 'snap-1']);
    expect(asObject(index.maps.blockMap('snap-3'))).toEqual(expected(map3));
    expect(index.check()).toEqual([]);
  });

  it('keeps the base of an open run until the run ends', () => {
    begin('snap-4', 'snap-3');
    index.runs.recordBlocks('snap-4', [{ index: 2, digest: d('z') }]);
    index.lineage.markDeleted('snap-3');
    expect(asObject(index.maps.blockMap('snap-4'))).toEqual(expected(map3));
    index.runs.commitRun('snap-4');
    expect(index.lineage.baseChain('snap-4').map((s) => s.snapshotId)).toEqual(['snap-4', 'snap-2', 'snap-1']);
    expect(asObject(index.maps.blockMap('snap-4'))).toEqual(expected({ ...map3, 2: 'z' }));
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-4');
    expect(index.check()).toEqual([]);
  });

  it('drops the map of a deleted snapshot nothing builds on, and the journal of a deleted run', () => {
    begin('snap-4', 'snap-3');
    index.runs.recordBlocks('snap-4', [{ index: 2, digest: d('z') }]);
    index.lineage.markDeleted('snap-4');
    expect(index.runs.pendingRun('vol')).toBeUndefined();
    index.lineage.markDeleted('snap-3');
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-2');
    expect(index.storageStats().blockRows).toBe(6); // snap-1 (4) + snap-2 (2)
    expect(index.check()).toEqual([]);
    expect(codeOf(() => index.lineage.markDeleted('snap-unknown'))).toBe('NOT_FOUND');
  });
});

describe('importSnapshot', () => {
  it('learns a full map, replacing what was known of the snapshot', () => {
    snapshot('snap-1', null, { 0: 'a' });
    snapshot('snap-2', 'snap-1', { 1: 'b' });
    const learnt = index.lineage.importSnapshot(
      { snapshotId: 'snap-2', volume: 'vol', parentSnapshotId: 'snap-1', volumeSizeGiB: GIB_SIZE, sourceBytes: 9, encrypted: true, description: 'rebuilt', startedAt: new Date(5) },
      [{ index: 0, digest: d('a') }, { index: 1, digest: d('b') }, { index: 2, digest: d('c') }],
    );
    expect(learnt).toMatchObject({ baseSnapshotId: null, state: 'completed', changedBlocks: 3, encrypted: true, startedAt: new Date(5) });
    expect(asObject(index.maps.blockMap('snap-2'))).toEqual(expected({ 0: 'a', 1: 'b', 2: 'c' }));
    expect(index.lineage.headSnapshot('vol')?.snapshotId).toBe('snap-2');
    expect(index.check()).toEqual([]);
  });

  it('stores nothing when a block is bad', () => {
    const blocks = [{ index: 4, digest: d('a') }, { index: 4, digest: d('b') }];
    const input = { snapshotId: 'snap-x', volume: 'vol', parentSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 1, encrypted: false, description: null };
    expect(codeOf(() => index.lineage.importSnapshot(input, blocks))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => index.lineage.importSnapshot(input, [{ index: BLOCKS_PER_GIB, digest: d('a') }]))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => index.lineage.importSnapshot({ ...input, volume: 'nope' }, []))).toBe('NOT_FOUND');
    expect(index.lineage.getSnapshot('snap-x')).toBeUndefined();
    expect(index.storageStats().blockRows).toBe(0);
  });
});

describe('restore targets', () => {
  it('remembers what a target holds', () => {
    expect(index.targets.get('/restore/a.img')).toBeUndefined();
    index.targets.set({ path: '/restore/a.img', snapshotId: 'snap-1', state: 'incomplete', sizeBytes: 10 });
    index.targets.set({ path: '/restore/a.img', snapshotId: 'snap-1', state: 'complete', sizeBytes: 11 });
    const target = index.targets.get('/restore/a.img')!;
    expect(target).toMatchObject({ path: '/restore/a.img', snapshotId: 'snap-1', state: 'complete', sizeBytes: 11 });
    expect(target.updatedAt).toBeInstanceOf(Date);
    expect(codeOf(() => index.targets.set({ path: '/x', snapshotId: null, state: 'done' as 'complete', sizeBytes: 1 }))).toBe(
      'INVALID_ARGUMENT',
    );
  });
});

describe('a closed index', () => {
  it('refuses calls after close, and close is idempotent', () => {
    index.close();
    index.close();
    expect(codeOf(() => index.lineage.listVolumes())).toBe('INTERNAL');
    index = BlockIndex.open(join(dir, 'index.db'));
    expect(index.lineage.getVolume('vol')?.sizeBytes).toBe(GIB_SIZE * GIB);
  });
});
