import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { type IndexSetup, codeOf, committedRun, digest, freshIndex, mapOf, volumeOf } from './index-support.js';

/** The behaviour the engine relies on from a VolumeLineage and BlockMaps (src/core/index-ports.ts), for every implementation. */
export function lineageContract(name: string, setup: IndexSetup): void {
  describe(`lineage and block maps contract: ${name}`, () => {
    const current = freshIndex(setup);
    const imported = (snapshotId: string, volume: string, blocks: Record<number, number>, startedAt?: Date) => ({
      input: { snapshotId, volume, parentSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 1024 ** 3, encrypted: true, description: 'learnt', startedAt },
      blocks: Object.entries(blocks).map(([i, fill]) => ({ index: Number(i), digest: digest(fill) })),
    });

    it('creates a volume once and updates its size and source; lists volumes by name', () => {
      const index = current();
      const first = index.lineage.ensureVolume({ name: 'b', sourcePath: '/b.img', sizeBytes: 10 });
      const again = index.lineage.ensureVolume({ name: 'b', sourcePath: '/b2.img', sizeBytes: 20 });
      expect(again).toMatchObject({ name: 'b', sourcePath: '/b2.img', sizeBytes: 20, createdAt: first.createdAt });
      volumeOf(index, 'a');
      expect(index.lineage.listVolumes().map((v) => v.name)).toEqual(['a', 'b']);
      expect(index.lineage.getVolume('b')?.sourcePath).toBe('/b2.img');
      expect(index.lineage.getVolume('none')).toBeUndefined();
      expect(codeOf(() => index.lineage.ensureVolume({ name: '', sourcePath: '/x', sizeBytes: 1 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.lineage.ensureVolume({ name: 'c', sourcePath: '/x', sizeBytes: -1 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
    });

    it('knows snapshots of every state, oldest first; the head is the newest completed by completion order', () => {
      const index = current();
      const vol = volumeOf(index);
      volumeOf(index, 'other');
      const { input, blocks } = imported('snap-old', vol, { 0: 1 }, new Date('2020-01-01T00:00:00Z'));
      committedRun(index, vol, 'snap-1', { 0: 2 });
      index.lineage.importSnapshot(input, blocks);
      committedRun(index, 'other', 'snap-o', { 0: 3 });
      expect(index.lineage.headSnapshot(vol)?.snapshotId).toBe('snap-old');
      expect(index.lineage.listSnapshots(vol).map((s) => s.snapshotId)).toEqual(['snap-old', 'snap-1']);
      expect(index.lineage.listSnapshots().map((s) => s.snapshotId)).toEqual(['snap-old', 'snap-1', 'snap-o']);
      expect(index.lineage.listSnapshots('none')).toEqual([]);
      expect(index.lineage.headSnapshot('none')).toBeUndefined();
      expect(index.lineage.getSnapshot('snap-none')).toBeUndefined();
    });

    it('imports a full map, replacing what was known of the snapshot, and refuses a bad block whole', () => {
      const index = current();
      const vol = volumeOf(index);
      committedRun(index, vol, 'snap-1', { 0: 1, 1: 1 });
      committedRun(index, vol, 'snap-2', { 1: 2 }, 'snap-1');
      const { input, blocks } = imported('snap-2', vol, { 1: 9, 5: 9 });
      const record = index.lineage.importSnapshot(input, blocks);
      expect(record).toMatchObject({ snapshotId: 'snap-2', state: 'completed', baseSnapshotId: null, changedBlocks: 2, encrypted: true, runOptions: null });
      expect(mapOf(index.maps.blockMap('snap-2'))).toEqual({ 1: 9, 5: 9 });
      expect(mapOf(index.maps.blockMap('snap-1'))).toEqual({ 0: 1, 1: 1 });
      const twice = imported('snap-3', vol, { 4: 1 });
      expect(codeOf(() => index.lineage.importSnapshot(twice.input, [...twice.blocks, ...twice.blocks]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.lineage.importSnapshot(twice.input, [{ index: 4, digest: Buffer.alloc(3) }]))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(index.lineage.getSnapshot('snap-3')).toBeUndefined();
      const lost = imported('snap-4', 'none', {});
      expect(codeOf(() => index.lineage.importSnapshot(lost.input, lost.blocks))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('follows the base chain; every remaining map stays what it was when snapshots are deleted', () => {
      const index = current();
      const vol = volumeOf(index);
      committedRun(index, vol, 'snap-1', { 0: 1, 1: 1, 2: 1 });
      committedRun(index, vol, 'snap-2', { 1: 2 }, 'snap-1');
      committedRun(index, vol, 'snap-3', { 2: 3 }, 'snap-2');
      expect(index.lineage.baseChain('snap-3').map((s) => s.snapshotId)).toEqual(['snap-3', 'snap-2', 'snap-1']);
      expect(codeOf(() => index.lineage.baseChain('snap-none'))).toBe(ErrorCodes.NOT_FOUND);
      index.lineage.markDeleted('snap-2');
      index.lineage.markDeleted('snap-2');
      expect(index.lineage.getSnapshot('snap-2')?.state).toBe('deleted');
      expect(mapOf(index.maps.blockMap('snap-3'))).toEqual({ 0: 1, 1: 2, 2: 3 });
      index.lineage.markDeleted('snap-1');
      expect(mapOf(index.maps.blockMap('snap-3'))).toEqual({ 0: 1, 1: 2, 2: 3 });
      index.maps.verifyMap('snap-3');
      expect(codeOf(() => index.maps.blockMap('snap-1'))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.maps.verifyMap('snap-2'))).toBe(ErrorCodes.BAD_STATE);
      expect(codeOf(() => index.lineage.markDeleted('snap-none'))).toBe(ErrorCodes.NOT_FOUND);
    });

    it('deleting an open run drops it; the volume may begin another', () => {
      const index = current();
      const vol = volumeOf(index);
      committedRun(index, vol, 'snap-1', { 0: 1 });
      index.runs.beginRun({ volume: vol, snapshotId: 'snap-2', parentSnapshotId: 'snap-1', baseSnapshotId: 'snap-1', volumeSizeGiB: 1, sourceBytes: 1, encrypted: false, description: null, runOptions: null });
      index.runs.recordBlocks('snap-2', [{ index: 3, digest: digest(2) }]);
      index.lineage.markDeleted('snap-2');
      expect(index.runs.pendingRun(vol)).toBeUndefined();
      committedRun(index, vol, 'snap-3', { 4: 3 }, 'snap-1');
      expect(mapOf(index.maps.blockMap('snap-3'))).toEqual({ 0: 1, 4: 3 });
    });

    it('reads a map over a range, and diffs two maps (a block in one only counts)', () => {
      const index = current();
      const vol = volumeOf(index);
      committedRun(index, vol, 'snap-1', { 0: 1, 5: 1, 9: 1, 2000: 1 });
      committedRun(index, vol, 'snap-2', { 5: 2, 7: 2, 9: 1 }, 'snap-1');
      expect(mapOf(index.maps.blockMap('snap-2', { fromBlock: 5, toBlock: 10 }))).toEqual({ 5: 2, 7: 2, 9: 1 });
      expect(mapOf(index.maps.blockMap('snap-2', { fromBlock: 10 }))).toEqual({ 2000: 1 });
      expect([...index.maps.diffMaps('snap-1', 'snap-2')]).toEqual([5, 7]);
      expect([...index.maps.diffMaps('snap-2', 'snap-2')]).toEqual([]);
      volumeOf(index, 'other');
      committedRun(index, 'other', 'snap-o', { 0: 1, 1: 1 });
      expect([...index.maps.diffMaps('snap-1', 'snap-o')]).toEqual([1, 5, 9, 2000]);
      expect(codeOf(() => index.maps.blockMap('snap-2', { fromBlock: 10, toBlock: 5 }))).toBe(ErrorCodes.INVALID_ARGUMENT);
      expect(codeOf(() => index.maps.blockMap('snap-none'))).toBe(ErrorCodes.NOT_FOUND);
    });

    it("an open run's map is its base's", () => {
      const index = current();
      const vol = volumeOf(index);
      index.runs.beginRun({ volume: vol, snapshotId: 'snap-1', parentSnapshotId: null, baseSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 1, encrypted: false, description: null, runOptions: null });
      index.runs.recordBlocks('snap-1', [{ index: 0, digest: digest(1) }]);
      expect(mapOf(index.maps.blockMap('snap-1'))).toEqual({});
      index.maps.verifyMap('snap-1');
    });
  });
}
