import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE, BLOCKS_PER_GIB } from '../../src/core/constants.js';
import { checksumOf, linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import type { BlockPage, RemoteSnapshot, SnapshotCatalog, SnapshotReader, SnapshotWriter } from '../../src/core/ports.js';
import { ErrorCodes, SnaplineError, type ErrorCode } from '../../src/errors.js';
import { rejection } from '../support/rejection.js';

/**
 * The behaviour the engine relies on from a SnapshotWriter, SnapshotReader
 * and SnapshotCatalog, as one vitest suite that every implementation runs:
 * the in-memory fake and the SDK adapters over HTTP to the local endpoint.
 * Errors are asserted by SnaplineError code (and Reason where AWS gives one).
 */
export interface SnapshotStoreUnderTest {
  writer: SnapshotWriter;
  reader: SnapshotReader;
  catalog: SnapshotCatalog;
  /** Called once after the suite. */
  close?: () => Promise<void>;
}

export interface ContractOptions {
  /** describeSnapshots polls while a completion is pending before the suite gives up (default 500). */
  maxPolls?: number;
  /** Pause between those polls (default 20 ms). */
  pollIntervalMs?: number;
}

/** A block whose every byte is `fill`. */
export function filledBlock(fill: number): Buffer {
  return Buffer.alloc(BLOCK_SIZE, fill);
}

export function checksumOfBlock(data: Uint8Array): string {
  return checksumOf(sha256(data));
}

/** The LINEAR aggregate of blocks given by index. */
export function aggregateOf(blocks: ReadonlyMap<number, Uint8Array>): string {
  return linearAggregateOf([...blocks].map(([index, data]) => ({ index, digest: sha256(data) })));
}

/** Every block of a listing, and how many pages it came in. */
export async function collectPages<T>(pages: AsyncIterable<BlockPage<T>>): Promise<{ blocks: T[]; pageCount: number; volumeSizes: number[] }> {
  const blocks: T[] = [];
  const volumeSizes: number[] = [];
  let pageCount = 0;
  for await (const page of pages) {
    pageCount += 1;
    volumeSizes.push(page.volumeSizeGiB);
    blocks.push(...page.blocks);
  }
  return { blocks, pageCount, volumeSizes };
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode, reason?: string): Promise<SnaplineError> {
  const error = await rejection(promise);
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
  if (reason !== undefined) expect(error.details?.reason).toBe(reason);
  return error;
}

/** A well-formed snapshot id that names nothing. */
const UNKNOWN_SNAPSHOT = 'snap-0123456789abcdef0';

/** Test vectors of AWS-FACTS.md: 0x01 at index 0, 0x02 at index 1. */
const VECTOR_AGGREGATE = 'fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=';

export function snapshotStoreContract(name: string, setup: () => Promise<SnapshotStoreUnderTest>, options: ContractOptions = {}): void {
  const maxPolls = options.maxPolls ?? 500;
  const pollIntervalMs = options.pollIntervalMs ?? 20;

  describe(`snapshot store contract: ${name}`, () => {
    let store: SnapshotStoreUnderTest;
    beforeAll(async () => {
      store = await setup();
    });
    afterAll(async () => {
      await store?.close?.();
    });

    /** Polls the catalog until the snapshot leaves pending. */
    async function settle(snapshotId: string): Promise<RemoteSnapshot> {
      for (let poll = 0; poll < maxPolls; poll++) {
        const [described] = await store.catalog.describeSnapshots([snapshotId]);
        if (described === undefined) throw new Error(`${snapshotId} vanished while completing`);
        if (described.state !== 'pending') return described;
        await sleep(pollIntervalMs);
      }
      throw new Error(`${snapshotId} still pending after ${maxPolls} polls`);
    }

    async function put(snapshotId: string, index: number, data: Uint8Array, progress?: number): Promise<void> {
      await store.writer.putBlock(snapshotId, index, data, checksumOfBlock(data), progress);
    }

    /** Starts, writes `blocks`, completes with the right count and aggregate, waits until completed. */
    async function writeSnapshot(blocks: ReadonlyMap<number, Uint8Array>, start: { parentSnapshotId?: string; volumeSizeGiB?: number; encrypted?: boolean } = {}): Promise<string> {
      const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: start.volumeSizeGiB ?? 1, ...start });
      for (const [index, data] of blocks) await put(snapshotId, index, data);
      expect(['completed', 'pending']).toContain(await store.writer.completeSnapshot(snapshotId, blocks.size, aggregateOf(blocks)));
      const settled = await settle(snapshotId);
      expect(settled.state).toBe('completed');
      return snapshotId;
    }

    async function contentOf(snapshotId: string): Promise<Map<number, Buffer>> {
      const { blocks } = await collectPages(store.reader.listBlocks(snapshotId));
      const content = new Map<number, Buffer>();
      for (const block of blocks) content.set(block.index, (await store.reader.getBlock(snapshotId, block.index, block.token)).data);
      return content;
    }

    describe('writing', () => {
      it('starts a pending snapshot with the fixed block size and the asked volume size', async () => {
        const started = await store.writer.startSnapshot({ volumeSizeGiB: 2, description: 'contract start', tags: { purpose: 'contract' } });
        expect(started.snapshotId).toMatch(/^snap-[0-9a-f]+$/);
        expect(started).toMatchObject({ status: 'pending', volumeSizeGiB: 2, blockSize: BLOCK_SIZE });
        const [described] = await store.catalog.describeSnapshots([started.snapshotId]);
        expect(described).toMatchObject({ snapshotId: started.snapshotId, state: 'pending', volumeSizeGiB: 2, description: 'contract start', tags: { purpose: 'contract' } });
      });

      it('completes with the LINEAR aggregate of the AWS-FACTS test vectors', async () => {
        const blocks = new Map([
          [0, filledBlock(0x01)],
          [1, filledBlock(0x02)],
        ]);
        expect(aggregateOf(blocks)).toBe(VECTOR_AGGREGATE);
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await put(snapshotId, 1, blocks.get(1)!, 50);
        await put(snapshotId, 0, blocks.get(0)!, 100);
        const answered = await store.writer.completeSnapshot(snapshotId, 2, VECTOR_AGGREGATE);
        expect(['completed', 'pending']).toContain(answered);
        const settled = await settle(snapshotId);
        expect(settled).toMatchObject({ state: 'completed', volumeSizeGiB: 1 });
      });

      it('reads back exactly the blocks written, with the checksum they were written with', async () => {
        const blocks = new Map([
          [0, filledBlock(0x11)],
          [5, filledBlock(0x22)],
          [2047, filledBlock(0x33)],
        ]);
        const snapshotId = await writeSnapshot(blocks);
        const { blocks: listed, volumeSizes } = await collectPages(store.reader.listBlocks(snapshotId));
        expect(listed.map((b) => b.index)).toEqual([0, 5, 2047]);
        expect(new Set(volumeSizes)).toEqual(new Set([1]));
        for (const ref of listed) {
          const read = await store.reader.getBlock(snapshotId, ref.index, ref.token);
          expect(read.data.byteLength).toBe(BLOCK_SIZE);
          expect(read.data.equals(blocks.get(ref.index)!)).toBe(true);
          expect(read.checksum).toBe(checksumOfBlock(blocks.get(ref.index)!));
        }
      });

      it('accepts a block written again: the last write counts once', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await put(snapshotId, 3, filledBlock(0x01));
        await put(snapshotId, 3, filledBlock(0x05));
        await put(snapshotId, 3, filledBlock(0x05));
        const final = new Map([[3, filledBlock(0x05)]]);
        await store.writer.completeSnapshot(snapshotId, 1, aggregateOf(final));
        const settled = await settle(snapshotId);
        expect(settled.state).toBe('completed');
        expect((await contentOf(snapshotId)).get(3)?.equals(filledBlock(0x05))).toBe(true);
      });

      it('turns a snapshot completed with a wrong aggregate into error', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await put(snapshotId, 0, filledBlock(0x01));
        await put(snapshotId, 1, filledBlock(0x02));
        const wrong = checksumOf(sha256(Buffer.from(checksumOfBlock(filledBlock(0x01)) + checksumOfBlock(filledBlock(0x02)))));
        const answered = await store.writer.completeSnapshot(snapshotId, 2, wrong);
        expect(['error', 'pending']).toContain(answered);
        expect((await settle(snapshotId)).state).toBe('error');
      });

      it('turns a snapshot completed with a wrong ChangedBlocksCount into error', async () => {
        const blocks = new Map([[0, filledBlock(0x01)]]);
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await put(snapshotId, 0, blocks.get(0)!);
        await store.writer.completeSnapshot(snapshotId, 2, aggregateOf(blocks));
        expect((await settle(snapshotId)).state).toBe('error');
      });

      it('completing again (a retry after a lost answer) changes nothing: it answers the status, or is refused (REMOTE_REJECTED)', async () => {
        // AWS documents no answer for a second CompleteSnapshot: the local endpoint refuses it, the fake answers the status.
        const again = async (count: number, aggregate: string) => {
          try {
            return await store.writer.completeSnapshot(snapshotId, count, aggregate);
          } catch (err) {
            expect(err).toMatchObject({ code: ErrorCodes.REMOTE_REJECTED });
            return 'refused';
          }
        };
        const blocks = new Map([[0, filledBlock(0x01)]]);
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await put(snapshotId, 0, blocks.get(0)!);
        await store.writer.completeSnapshot(snapshotId, 1, aggregateOf(blocks));
        expect(['completed', 'pending', 'refused']).toContain(await again(5, aggregateOf(new Map())));
        expect((await settle(snapshotId)).state).toBe('completed');
        expect(['completed', 'refused']).toContain(await again(1, aggregateOf(blocks)));
      });

      it('returns the same snapshot for a reused client token and refuses it with other arguments', async () => {
        const clientToken = `contract-${Math.random().toString(36).slice(2)}`;
        const first = await store.writer.startSnapshot({ volumeSizeGiB: 1, clientToken });
        const again = await store.writer.startSnapshot({ volumeSizeGiB: 1, clientToken });
        expect(again.snapshotId).toBe(first.snapshotId);
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 2, clientToken }), ErrorCodes.CONFLICT);
      });

      it('records encryption', async () => {
        const started = await store.writer.startSnapshot({ volumeSizeGiB: 1, encrypted: true });
        expect(started.kmsKeyArn).toBeDefined();
        const [described] = await store.catalog.describeSnapshots([started.snapshotId]);
        expect(described).toMatchObject({ encrypted: true, kmsKeyId: started.kmsKeyArn });
      });

      it("a child takes its parent's encryption and key; Encrypted or KmsKeyArn with a parent is REMOTE_REJECTED", async () => {
        const parent = await writeSnapshot(new Map([[0, filledBlock(0x0e)]]), { encrypted: true });
        const [parentDescribed] = await store.catalog.describeSnapshots([parent]);
        const child = await store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: parent });
        expect(child.kmsKeyArn).toBe(parentDescribed?.kmsKeyId);
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: parent, encrypted: true }), ErrorCodes.REMOTE_REJECTED);
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: parent, kmsKeyArn: child.kmsKeyArn! }), ErrorCodes.REMOTE_REJECTED);
      });
    });

    describe('write errors', () => {
      it('NOT_FOUND for a block written to an unknown snapshot', async () => {
        const error = await expectCode(store.writer.putBlock(UNKNOWN_SNAPSHOT, 0, filledBlock(1), checksumOfBlock(filledBlock(1))), ErrorCodes.NOT_FOUND);
        expect(error.retryable).toBe(false);
      });

      it('CHECKSUM_MISMATCH for a block whose checksum is not its SHA-256', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        const error = await expectCode(
          store.writer.putBlock(snapshotId, 0, filledBlock(0x01), checksumOfBlock(filledBlock(0x02))),
          ErrorCodes.CHECKSUM_MISMATCH,
        );
        expect(error.retryable).toBe(false);
      });

      it('REMOTE_REJECTED for a block index outside the volume', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await expectCode(put(snapshotId, BLOCKS_PER_GIB, filledBlock(1)), ErrorCodes.REMOTE_REJECTED);
      });

      it('REMOTE_REJECTED for a block written to a completed snapshot', async () => {
        const snapshotId = await writeSnapshot(new Map([[0, filledBlock(0x01)]]));
        await expectCode(put(snapshotId, 1, filledBlock(0x02)), ErrorCodes.REMOTE_REJECTED);
      });

      it('REMOTE_REJECTED for a block written once completion was asked for, even while it is pending', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        const blocks = new Map([[0, filledBlock(0x01)]]);
        await put(snapshotId, 0, blocks.get(0)!);
        await store.writer.completeSnapshot(snapshotId, 1, aggregateOf(blocks));
        await expectCode(put(snapshotId, 1, filledBlock(0x02)), ErrorCodes.REMOTE_REJECTED);
        expect((await settle(snapshotId)).state).toBe('completed');
      });

      it('REMOTE_REJECTED for a parent that is not completed', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: snapshotId }), ErrorCodes.REMOTE_REJECTED);
      });

      it('REMOTE_REJECTED for a child smaller than its parent', async () => {
        const parentId = await writeSnapshot(new Map([[0, filledBlock(0x01)]]), { volumeSizeGiB: 2 });
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: parentId }), ErrorCodes.REMOTE_REJECTED);
      });

      it('REMOTE_REJECTED for a volume size outside 1..65536 GiB', async () => {
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 0 }), ErrorCodes.REMOTE_REJECTED);
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 65_537 }), ErrorCodes.REMOTE_REJECTED);
      });

      it('NOT_FOUND for an unknown parent and for completing an unknown snapshot', async () => {
        await expectCode(store.writer.startSnapshot({ volumeSizeGiB: 1, parentSnapshotId: UNKNOWN_SNAPSHOT }), ErrorCodes.NOT_FOUND);
        await expectCode(store.writer.completeSnapshot(UNKNOWN_SNAPSHOT, 0, aggregateOf(new Map())), ErrorCodes.NOT_FOUND);
      });
    });

    describe('lineage', () => {
      let parent: string;
      let child: string;
      let grandchild: string;
      const parentBlocks = new Map([
        [0, filledBlock(0x01)],
        [1, filledBlock(0x02)],
        [2, filledBlock(0x03)],
      ]);
      const childBlocks = new Map([
        [1, filledBlock(0x09)],
        [3, filledBlock(0x04)],
      ]);
      const grandchildBlocks = new Map([[0, filledBlock(0x07)]]);

      beforeAll(async () => {
        parent = await writeSnapshot(parentBlocks);
        child = await writeSnapshot(childBlocks, { parentSnapshotId: parent });
        grandchild = await writeSnapshot(grandchildBlocks, { parentSnapshotId: child, volumeSizeGiB: 2 });
      });

      it('a child inherits every block of its parent; its count and aggregate cover only its own writes', async () => {
        const content = await contentOf(child);
        expect([...content.keys()]).toEqual([0, 1, 2, 3]);
        expect(content.get(0)!.equals(parentBlocks.get(0)!)).toBe(true);
        expect(content.get(1)!.equals(childBlocks.get(1)!)).toBe(true);
        expect(content.get(2)!.equals(parentBlocks.get(2)!)).toBe(true);
        expect(content.get(3)!.equals(childBlocks.get(3)!)).toBe(true);
      });

      it('a grandchild sees the whole lineage and may be larger', async () => {
        const { blocks, volumeSizes } = await collectPages(store.reader.listBlocks(grandchild));
        expect(blocks.map((b) => b.index)).toEqual([0, 1, 2, 3]);
        expect(new Set(volumeSizes)).toEqual(new Set([2]));
        const content = await contentOf(grandchild);
        expect(content.get(0)!.equals(grandchildBlocks.get(0)!)).toBe(true);
        expect(content.get(1)!.equals(childBlocks.get(1)!)).toBe(true);
      });

      it('lists changed blocks with a first token only where the first snapshot has the block', async () => {
        const { blocks } = await collectPages(store.reader.listChangedBlocks(parent, child));
        expect(blocks.map((b) => b.index)).toEqual([1, 3]);
        const [changed, added] = blocks;
        expect(changed?.firstToken).toBeTruthy();
        expect(changed?.secondToken).toBeTruthy();
        expect(added?.firstToken).toBeUndefined();
        expect(added?.secondToken).toBeTruthy();
        const before = await store.reader.getBlock(parent, 1, changed!.firstToken!);
        const after = await store.reader.getBlock(child, 1, changed!.secondToken!);
        expect(before.data.equals(parentBlocks.get(1)!)).toBe(true);
        expect(after.data.equals(childBlocks.get(1)!)).toBe(true);
        expect(after.checksum).toBe(checksumOfBlock(childBlocks.get(1)!));
      });

      it('lists changed blocks across generations (grandparent to grandchild, parent to grandchild)', async () => {
        expect((await collectPages(store.reader.listChangedBlocks(parent, grandchild))).blocks.map((b) => b.index)).toEqual([0, 1, 3]);
        expect((await collectPages(store.reader.listChangedBlocks(child, grandchild))).blocks.map((b) => b.index)).toEqual([0]);
      });

      it('without a first snapshot, lists every block of the second with second tokens only', async () => {
        const { blocks } = await collectPages(store.reader.listChangedBlocks('', child));
        expect(blocks.map((b) => b.index)).toEqual([0, 1, 2, 3]);
        for (const block of blocks) {
          expect(block.firstToken).toBeUndefined();
          expect(block.secondToken).toBeTruthy();
        }
      });

      it('REMOTE_REJECTED (UNRELATED_SNAPSHOTS) for snapshots of two lineages', async () => {
        const stranger = await writeSnapshot(new Map([[0, filledBlock(0x01)]]));
        await expectCode(collectPages(store.reader.listChangedBlocks(parent, stranger)), ErrorCodes.REMOTE_REJECTED, 'UNRELATED_SNAPSHOTS');
      });
    });

    describe('pagination', () => {
      const BLOCK_COUNT = 150;
      let snapshotId: string;
      beforeAll(async () => {
        const data = filledBlock(0x5a);
        snapshotId = await writeSnapshot(new Map(Array.from({ length: BLOCK_COUNT }, (_, i): [number, Uint8Array] => [i * 3, data])));
      });

      it('pages ListSnapshotBlocks with NextToken, ascending and unique', async () => {
        const { blocks, pageCount } = await collectPages(store.reader.listBlocks(snapshotId, { pageSize: 100 }));
        expect(pageCount).toBeGreaterThanOrEqual(2);
        expect(blocks.map((b) => b.index)).toEqual(Array.from({ length: BLOCK_COUNT }, (_, i) => i * 3));
      });

      it('starts a listing at StartingBlockIndex', async () => {
        const { blocks } = await collectPages(store.reader.listBlocks(snapshotId, { startingBlockIndex: 400, pageSize: 100 }));
        expect(blocks.map((b) => b.index)).toEqual(Array.from({ length: BLOCK_COUNT }, (_, i) => i * 3).filter((i) => i >= 400));
      });

      it('pages ListChangedBlocks with NextToken', async () => {
        const { blocks, pageCount } = await collectPages(store.reader.listChangedBlocks('', snapshotId, { pageSize: 100 }));
        expect(pageCount).toBeGreaterThanOrEqual(2);
        expect(blocks.map((b) => b.index)).toEqual(Array.from({ length: BLOCK_COUNT }, (_, i) => i * 3));
        const ascending = blocks.every((b, i) => i === 0 || b.index > blocks[i - 1]!.index);
        expect(ascending).toBe(true);
      });
    });

    describe('read errors', () => {
      it('NOT_FOUND for listing or reading an unknown snapshot', async () => {
        await expectCode(collectPages(store.reader.listBlocks(UNKNOWN_SNAPSHOT)), ErrorCodes.NOT_FOUND);
        await expectCode(store.reader.getBlock(UNKNOWN_SNAPSHOT, 0, 'AAAA'), ErrorCodes.NOT_FOUND);
      });

      it('REMOTE_REJECTED (INVALID_BLOCK_TOKEN) for a token that is not the block’s', async () => {
        const snapshotId = await writeSnapshot(
          new Map([
            [0, filledBlock(0x01)],
            [1, filledBlock(0x02)],
          ]),
        );
        const { blocks } = await collectPages(store.reader.listBlocks(snapshotId));
        await expectCode(store.reader.getBlock(snapshotId, 1, blocks[0]!.token), ErrorCodes.REMOTE_REJECTED, 'INVALID_BLOCK_TOKEN');
      });

      it('REMOTE_REJECTED for reading a snapshot that is not completed', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1 });
        await expectCode(collectPages(store.reader.listBlocks(snapshotId)), ErrorCodes.REMOTE_REJECTED);
        await expectCode(collectPages(store.reader.listChangedBlocks('', snapshotId)), ErrorCodes.REMOTE_REJECTED);
      });
    });

    describe('catalog', () => {
      it('describes the snapshots that exist and leaves unknown ids out', async () => {
        expect(await store.catalog.describeSnapshots([])).toEqual([]);
        const snapshotId = await writeSnapshot(new Map([[0, filledBlock(0x01)]]));
        const described = await store.catalog.describeSnapshots([UNKNOWN_SNAPSHOT, snapshotId]);
        expect(described.map((s) => s.snapshotId)).toEqual([snapshotId]);
        expect(described[0]).toMatchObject({ state: 'completed', volumeSizeGiB: 1, encrypted: false });
      });

      it('adds tags', async () => {
        const { snapshotId } = await store.writer.startSnapshot({ volumeSizeGiB: 1, tags: { a: '1' } });
        await store.catalog.createTags(snapshotId, { b: '2', a: 'one' });
        const [described] = await store.catalog.describeSnapshots([snapshotId]);
        expect(described?.tags).toEqual({ a: 'one', b: '2' });
        await expectCode(store.catalog.createTags(UNKNOWN_SNAPSHOT, { a: '1' }), ErrorCodes.NOT_FOUND);
      });

      it('deletes idempotently', async () => {
        const snapshotId = await writeSnapshot(new Map([[0, filledBlock(0x01)]]));
        await store.catalog.deleteSnapshot(snapshotId);
        await store.catalog.deleteSnapshot(snapshotId);
        await store.catalog.deleteSnapshot(UNKNOWN_SNAPSHOT);
        expect(await store.catalog.describeSnapshots([snapshotId])).toEqual([]);
      });

      it('a child keeps its inherited blocks when its parent is deleted', async () => {
        const parentId = await writeSnapshot(new Map([[0, filledBlock(0x01)]]));
        const childId = await writeSnapshot(new Map([[1, filledBlock(0x02)]]), { parentSnapshotId: parentId });
        await store.catalog.deleteSnapshot(parentId);
        const content = await contentOf(childId);
        expect(content.get(0)?.equals(filledBlock(0x01))).toBe(true);
      });

      it('answers whether encryption by default is on', async () => {
        expect(typeof (await store.catalog.encryptionByDefault())).toBe('boolean');
      });
    });
  });
}
