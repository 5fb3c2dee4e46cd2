/**
 * prune with retention policies against the local endpoint, through the real
 * adapters and a SQLite index: random histories of real backups, a random
 * policy and random work that depends on snapshots (an unfinished archive,
 * an unfinished ECS restore); afterwards EC2 and the index agree, every kept
 * snapshot restores byte-identical, and so does the next incremental backup.
 */
import { copyFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { backup } from '../../src/engine/backup/backup.js';
import { prune } from '../../src/engine/lineage/prune.js';
import { applyRetention, type RetentionPolicy, type RetentionSnapshot } from '../../src/engine/lineage/retention.js';
import { restore } from '../../src/engine/restore/restore.js';
import { ErrorCodes } from '../../src/errors.js';
import type { Session } from '../../src/session.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { startLocalEndpoint, withLocalSession, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

const IMAGE_BLOCKS = 8;

let local: LocalEndpoint;
beforeAll(async () => {
  local = await startLocalEndpoint('snapline-retention-');
});
afterAll(() => local?.close());

const withFreshIndex = <T>(fn: (session: Session) => Promise<T>) => withLocalSession(local.emulator, local.pathFor('index.db'), fn);

interface Scenario {
  backups: Array<{ blocks: number[]; hold: boolean }>;
  policy: RetentionPolicy;
  /** The backup (by number, modulo their count) an unfinished archive reads, and the one an unfinished ECS restore reads. */
  archived: number | null;
  restoredOnEcs: number | null;
}

const scenarioArb: fc.Arbitrary<Scenario> = fc.record({
  backups: fc.array(fc.record({ blocks: fc.subarray([0, 1, 2, 3, 4, 5, 6, 7], { minLength: 1, maxLength: 3 }), hold: fc.boolean() }), { minLength: 3, maxLength: 6 }),
  policy: fc.oneof(
    fc.integer({ min: 1, max: 3 }).map((n): RetentionPolicy => ({ keepLast: n })),
    fc.constant<RetentionPolicy>({ keepTags: [['hold=yes']] }),
    fc.integer({ min: 1, max: 2 }).map((n): RetentionPolicy => ({ keepHourly: n, keepTags: [['hold']] })),
    fc.constant<RetentionPolicy>({ keepWithin: { years: 0, months: 0, days: 0, hours: 1 } }),
  ),
  archived: fc.option(fc.nat(), { nil: null }),
  restoredOnEcs: fc.option(fc.nat(), { nil: null }),
});

describe('prune with a retention policy, on the local endpoint', () => {
  it('deletes what no rule keeps and nothing the index depends on; every kept snapshot and the next backup restore byte-identical', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (scenario) => {
        run += 1;
        const volume = `retained-${run}`;
        await withFreshIndex(async (own) => {
          const image = local.pathFor(`${volume}.img`);
          writeBlocks(image, randomBlocks([0]), IMAGE_BLOCKS * BLOCK_SIZE);
          const taken: Array<{ snapshotId: string; copy: string }> = [];
          for (const [n, step] of scenario.backups.entries()) {
            writeBlocks(image, randomBlocks(step.blocks));
            const result = await backup(own, { source: image, volume, ...(step.hold ? { tags: { hold: 'yes' } } : {}) });
            const copy = local.pathFor(`${volume}-${n}.img`);
            await copyFile(image, copy);
            taken.push({ snapshotId: result.snapshotId!, copy });
          }
          const protect = new Map<string, string[]>();
          if (scenario.archived !== null) {
            const snapshotId = taken[scenario.archived % taken.length]!.snapshotId;
            own.index.archives.begin({ archiveId: `ar-${run.toString(16).padStart(16, '0')}`, target: 's3', location: 'bucket', prefix: 'p/', snapshotId, volume, parentArchiveId: null, storageClass: 'STANDARD', segmentBlocks: 2048 });
            protect.set(snapshotId, ['archive']);
          }
          if (scenario.restoredOnEcs !== null) {
            const snapshotId = taken[scenario.restoredOnEcs % taken.length]!.snapshotId;
            own.index.ecsJobs.create({ jobId: `job-${run}`, sourceKind: 'snapshot', source: snapshotId, volume: `${volume}-copy`, cluster: 'c', taskDefinition: 'td', startedBy: `sb-${run}` }, [{ fromBlock: 0, toBlock: 1 }]);
            protect.set(snapshotId, [...(protect.get(snapshotId) ?? []), 'ecs']);
          }

          const held = (id: string) => scenario.backups[taken.findIndex((t) => t.snapshotId === id)]!.hold;
          const history = own.index.lineage.listSnapshots(volume).map((s): RetentionSnapshot => ({ snapshotId: s.snapshotId, startedAt: s.startedAt, tags: held(s.snapshotId) ? { hold: 'yes' } : {} }));
          const now = new Date();
          const expectedKept = new Set(applyRetention(history, scenario.policy, { now, timeZone: 'UTC', protect }).filter((d) => d.keep).map((d) => d.snapshotId));

          const dry = await prune(own, { policy: scenario.policy, timeZone: 'UTC', volume, dryRun: true, now });
          expect(dry.volumes[0]!.snapshots.filter((s) => !s.removed).map((s) => s.snapshotId).sort()).toEqual([...expectedKept].sort());
          expect((await own.catalog.describeSnapshots(taken.map((t) => t.snapshotId))).length).toBe(taken.length);

          const pruned = await prune(own, { policy: scenario.policy, timeZone: 'UTC', volume, now });
          const deleted = new Set(pruned.deleted.map((d) => d.snapshotId));
          expect([...deleted].sort()).toEqual(taken.map((t) => t.snapshotId).filter((id) => !expectedKept.has(id)).sort());
          expect(deleted.has(taken.at(-1)!.snapshotId)).toBe(false);
          for (const id of protect.keys()) expect(deleted.has(id)).toBe(false);
          const remote = new Set((await own.catalog.describeSnapshots(taken.map((t) => t.snapshotId))).map((s) => s.snapshotId));
          for (const t of taken) {
            expect(remote.has(t.snapshotId)).toBe(!deleted.has(t.snapshotId));
            expect(own.index.lineage.getSnapshot(t.snapshotId)?.state).toBe(deleted.has(t.snapshotId) ? 'deleted' : 'completed');
          }
          expect(own.index.check()).toEqual([]);

          // Applied again to what it kept, the policy removes nothing more.
          expect((await prune(own, { policy: scenario.policy, timeZone: 'UTC', volume, now })).deleted).toEqual([]);

          for (const t of taken.filter((x) => !deleted.has(x.snapshotId))) {
            const target = local.pathFor(`${volume}-restored.img`);
            await restore(own, { snapshotId: t.snapshotId, target });
            await expectSameBytes(target, t.copy);
          }

          const changed = [IMAGE_BLOCKS - 1];
          writeBlocks(image, randomBlocks(changed));
          const next = await backup(own, { source: image, volume });
          expect(next).toMatchObject({ parentSnapshotId: taken.at(-1)!.snapshotId, blocksUploaded: 1 });
          const target = local.pathFor(`${volume}-next.img`);
          await restore(own, { snapshotId: next.snapshotId!, target });
          await expectSameBytes(target, image);
        });
      }),
      { numRuns: 4 },
    );
  });

  it('a prune killed between the DeleteSnapshot and the index write: the next one with the policy finishes it, and the index and EC2 agree', async () => {
    await withFreshIndex(async (own) => {
      const image = local.pathFor('killed.img');
      writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
      const taken: string[] = [];
      for (const block of [0, 1, 0]) {
        writeBlocks(image, randomBlocks([block]));
        taken.push((await backup(own, { source: image, volume: 'killed' })).snapshotId!);
      }
      // The process dies once EC2 has deleted the first snapshot, before the index records it.
      const dying = { ...own.catalog, describeSnapshots: own.catalog.describeSnapshots.bind(own.catalog), deleteSnapshot: async (id: string) => {
        await own.catalog.deleteSnapshot(id);
        throw new Error('killed');
      } } as typeof own.catalog;
      await expect(prune({ index: own.index, catalog: dying }, { keepLast: 1, volume: 'killed', timeZone: 'UTC' })).rejects.toThrow('killed');
      expect(own.index.lineage.getSnapshot(taken[0]!)?.state).toBe('completed');

      const next = await prune(own, { keepLast: 1, volume: 'killed', timeZone: 'UTC' });
      expect(next.deleted.map((d) => d.snapshotId)).toEqual(taken.slice(0, 2));
      expect(taken.map((id) => own.index.lineage.getSnapshot(id)?.state)).toEqual(['deleted', 'deleted', 'completed']);
      expect((await own.catalog.describeSnapshots(taken)).map((r) => r.snapshotId)).toEqual([taken[2]]);
      expect(own.index.check()).toEqual([]);
      const target = local.pathFor('killed-restored.img');
      await restore(own, { snapshotId: taken[2]!, target });
      await expectSameBytes(target, image);
    });
  });

  it('a snapshot a restore is reading is kept until the restore ends, and a restore does not start on a snapshot being deleted', async () => {
    await withFreshIndex(async (own) => {
      const image = local.pathFor('read.img');
      writeBlocks(image, randomBlocks([0, 1]), 2 * BLOCK_SIZE);
      const old = await backup(own, { source: image, volume: 'read' });
      const oldCopy = local.pathFor('read-old.img');
      await copyFile(image, oldCopy);
      writeBlocks(image, randomBlocks([1]));
      await backup(own, { source: image, volume: 'read' });

      // The restore of the older snapshot waits at its first block until the prune has run.
      let letRead!: () => void;
      const readable = new Promise<void>((resolve) => (letRead = resolve));
      let reading!: () => void;
      const started = new Promise<void>((resolve) => (reading = resolve));
      const reader: typeof own.reader = {
        listBlocks: (...args) => own.reader.listBlocks(...args),
        listChangedBlocks: (...args) => own.reader.listChangedBlocks(...args),
        getBlock: async (...args) => {
          reading();
          await readable;
          return own.reader.getBlock(...args);
        },
      };
      const target = local.pathFor('read-restored.img');
      const restoring = restore({ index: own.index, reader, catalog: own.catalog, hashPool: own.hashPool, slabs: own.slabs }, { snapshotId: old.snapshotId!, target });
      await started;
      const pruned = await prune(own, { keepLast: 1, volume: 'read', timeZone: 'UTC' });
      expect(pruned.deleted).toEqual([]);
      expect(pruned.volumes[0]!.snapshots.find((s) => s.snapshotId === old.snapshotId)?.keptBy).toEqual([expect.stringMatching(/^read by a restore \(pid \d+ on /)]);
      letRead();
      await restoring;
      await expectSameBytes(target, oldCopy);

      // Ended, the restore holds it no more; a restore asked for while prune deletes it is refused.
      const deleting = own.index.locks.acquire(`deletes:${old.snapshotId}`);
      const refused = await rejection(restore(own, { snapshotId: old.snapshotId!, target: local.pathFor('read-refused.img') }));
      expect(refused).toMatchObject({ code: ErrorCodes.CONFLICT, message: `${old.snapshotId} is being deleted by a prune (pid ${process.pid} on ${hostname()})` });
      deleting.release();
      expect(own.index.locks.holders('reads:')).toEqual([]);
      const next = await prune(own, { keepLast: 1, volume: 'read', timeZone: 'UTC' });
      expect(next.deleted.map((d) => d.snapshotId)).toEqual([old.snapshotId]);
    });
  });

  it('without a policy from the options or the config, prune is refused; a volume without one is left alone', async () => {
    await withFreshIndex(async (own) => {
      for (const volume of ['managed', 'unmanaged']) {
        const image = local.pathFor(`${volume}.img`);
        writeBlocks(image, randomBlocks([0]), 2 * BLOCK_SIZE);
        await backup(own, { source: image, volume });
        writeBlocks(image, randomBlocks([1]));
        await backup(own, { source: image, volume });
      }
      const refused = await rejection(prune(own, { volume: 'unmanaged' }));
      expect(refused).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringContaining('no retention policy for volume unmanaged') });
      expect(await rejection(prune(own, { policies: new Map([['elsewhere', { keepLast: 1 }]]) }))).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });

      const pruned = await prune(own, { policies: new Map([['managed', { keepLast: 1 }]]) });
      expect(pruned).toMatchObject({ unmanagedVolumes: ['unmanaged'], volumes: [{ volume: 'managed', policy: 'last 1' }] });
      expect(pruned.deleted.map((d) => d.volume)).toEqual(['managed']);
      expect(own.index.lineage.listSnapshots('unmanaged').map((s) => s.state)).toEqual(['completed', 'completed']);
    });
  });
});
