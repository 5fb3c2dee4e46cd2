import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sha256 } from '../core/checksum.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { StoreRef } from './index.js';
import { withIndexAt } from '../../test/support/index-file.js';

const HERE: StoreRef = { id: 'snapline:aaaaaaaaaaaaaaaa', label: 'the local endpoint store aaaaaaaaaaaaaaaa (data /a)' };
const THERE: StoreRef = { id: 'aws:123456789012:eu-west-1', label: 'AWS account 123456789012, Region eu-west-1' };

let dir: string;
let path: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-stores-'));
  path = join(dir, 'index.db');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A volume with one completed snapshot, written by an index bound to `store`. */
function backedUp(store: StoreRef | undefined, volume: string, snapshotId: string): void {
  withIndexAt(path, store, (index) => {
    index.lineage.ensureVolume({ name: volume, sourcePath: `/images/${volume}.img`, sizeBytes: 1 << 20 });
    index.runs.beginRun({ volume, snapshotId, parentSnapshotId: null, baseSnapshotId: null, volumeSizeGiB: 1, sourceBytes: 1 << 20, encrypted: false, description: null, runOptions: null });
    index.runs.recordBlocks(snapshotId, [{ index: 0, digest: sha256(Buffer.from(volume)) }]);
    index.runs.commitRun(snapshotId);
  });
}

function mismatchOf(fn: () => unknown): SnaplineError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    expect((err as SnaplineError).code).toBe(ErrorCodes.STORE_MISMATCH);
    return err as SnaplineError;
  }
  throw new Error('expected STORE_MISMATCH');
}

describe('the store of each volume', () => {
  it('a bound index records its store for the volumes it writes; an unbound one records none', () => {
    backedUp(HERE, 'db1', 'snap-00000000000000001');
    backedUp(undefined, 'legacy', 'snap-00000000000000002');
    withIndexAt(path, undefined, (index) => {
      expect(index.volumeStore('db1')).toEqual(HERE);
      expect(index.volumeStore('legacy')).toBeUndefined();
      expect(index.lineage.listVolumes().map((v) => v.name)).toEqual(['db1', 'legacy']);
    });
  });

  it('naming a volume of another store, by name or by a snapshot of it, is refused before anything is written', () => {
    backedUp(HERE, 'db1', 'snap-00000000000000001');
    withIndexAt(path, THERE, (index) => {
      const error = mismatchOf(() => index.lineage.getVolume('db1'));
      expect(error.message).toBe(
        'volume "db1" lives in the local endpoint store aaaaaaaaaaaaaaaa (data /a), not in AWS account 123456789012, Region eu-west-1, the store this command reached',
      );
      expect(error.hint).toMatch(/snapline serve --data-dir/);
      expect(error.details).toMatchObject({ volume: 'db1', recorded: HERE, reached: THERE });
      mismatchOf(() => index.lineage.headSnapshot('db1'));
      mismatchOf(() => index.runs.pendingRun('db1'));
      mismatchOf(() => index.lineage.listSnapshots('db1'));
      mismatchOf(() => index.lineage.getSnapshot('snap-00000000000000001'));
      // `backup --full` of the volume: no new lineage in the wrong store.
      mismatchOf(() => index.lineage.ensureVolume({ name: 'db1', sourcePath: '/elsewhere/db1.img', sizeBytes: 2 << 20 }));
    });
    withIndexAt(path, HERE, (index) => {
      expect(index.lineage.getVolume('db1')).toMatchObject({ sourcePath: '/images/db1.img', sizeBytes: 1 << 20 });
      expect(index.lineage.headSnapshot('db1')?.snapshotId).toBe('snap-00000000000000001');
      expect(index.volumeStore('db1')).toEqual(HERE);
    });
  });

  it('the lists show the volumes of the bound store and the unrecorded ones; refused when every volume lives elsewhere', () => {
    backedUp(HERE, 'db1', 'snap-00000000000000001');
    withIndexAt(path, THERE, (index) => {
      const error = mismatchOf(() => index.lineage.listSnapshots());
      expect(error.message).toBe(
        'the index holds no volume of AWS account 123456789012, Region eu-west-1, the store this command reached: its volume "db1" lives in the local endpoint store aaaaaaaaaaaaaaaa (data /a)',
      );
      mismatchOf(() => index.lineage.listVolumes());
    });
    backedUp(THERE, 'db2', 'snap-00000000000000002');
    backedUp(undefined, 'legacy', 'snap-00000000000000003');
    withIndexAt(path, THERE, (index) => {
      expect(index.lineage.listVolumes().map((v) => v.name)).toEqual(['db2', 'legacy']);
      expect(index.lineage.listSnapshots().map((s) => s.snapshotId)).toEqual(['snap-00000000000000002', 'snap-00000000000000003']);
    });
    withIndexAt(path, HERE, (index) => expect(index.lineage.listSnapshots().map((s) => s.snapshotId)).toEqual(['snap-00000000000000001', 'snap-00000000000000003']));
  });

  it('a volume without a recorded store (written before stores were recorded) is claimed by the first bound write', () => {
    backedUp(undefined, 'legacy', 'snap-00000000000000003');
    withIndexAt(path, THERE, (index) => {
      expect(index.lineage.headSnapshot('legacy')?.snapshotId).toBe('snap-00000000000000003');
      expect(index.volumeStore('legacy')).toBeUndefined();
      index.lineage.ensureVolume({ name: 'legacy', sourcePath: '/images/legacy.img', sizeBytes: 1 << 20 });
      expect(index.volumeStore('legacy')).toEqual(THERE);
    });
    withIndexAt(path, HERE, (index) => mismatchOf(() => index.lineage.getVolume('legacy')));
  });

  it('binds once', () => {
    withIndexAt(path, HERE, (index) => {
      index.bindStore(HERE);
      expect(() => index.bindStore(THERE)).toThrow(/bound to .* already/);
    });
  });
});
