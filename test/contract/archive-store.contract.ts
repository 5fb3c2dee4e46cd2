import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { treeHash } from '../../src/core/checksum.js';
import type { ArchiveStore, ObjectOptions, RestoreStatus, StoredObject, UploadedPart } from '../../src/core/ports.js';
import { ErrorCodes, type ErrorCode } from '../../src/errors.js';
import { rejection } from '../support/rejection.js';

/**
 * The behaviour the engine relies on from an ArchiveStore, as one vitest
 * suite that every implementation runs: the S3 and Glacier adapters over
 * HTTP to the local endpoint, and the in-memory fake. Where the port lets
 * S3 and Glacier differ, the suite asks `capabilitiesOf`, not a copy of
 * itself. Errors are asserted by SnaplineError code.
 */
export interface ArchiveStoreUnderTest {
  /** A store on an empty bucket or vault. */
  store: ArchiveStore;
  /** How this run stores objects (the S3 storage class); absent for a vault. */
  objectOptions?: ObjectOptions;
  /** Moves the service's time past every restore, retrieval job and inventory job asked for so far (the suite asks for the Standard tier). */
  letJobsFinish(): Promise<void> | void;
  /** Called once after the suite. */
  close?: () => Promise<void>;
}

/** What the port allows to differ between an S3 bucket and a Glacier vault. */
export interface ArchiveCapabilities {
  /** putObject of a name again replaces the object of that name (S3: idempotent); otherwise each call makes a new object (Glacier). */
  putReplaces: boolean;
  /** The service refuses parts and objects whose tree hash is wrong (Glacier). */
  checksTreeHashes: boolean;
  /** Reads of tree-hash-aligned ranges carry the service's tree hash of the range (Glacier). */
  rangeTreeHashes: boolean;
  /** Bytes are read only after a restore (a vault; S3 GLACIER and DEEP_ARCHIVE). */
  needsRestore: boolean;
  /** The listing is a job that must finish first (a vault's inventory). */
  inventoryIsJob: boolean;
  /** The largest object: 10,000 parts of 4 GiB in a vault, 5 TiB in S3. */
  maxObjectBytes: number;
}

const ARCHIVED_CLASSES = new Set(['GLACIER', 'DEEP_ARCHIVE']);

const MIB = 1024 * 1024;
/** Both services allow at most this many parts. */
const MAX_PARTS = 10_000;

export function capabilitiesOf(store: ArchiveStore, options: ObjectOptions = {}): ArchiveCapabilities {
  const vault = store.target === 'glacier';
  return {
    putReplaces: !vault,
    checksTreeHashes: vault,
    rangeTreeHashes: vault,
    needsRestore: vault || ARCHIVED_CLASSES.has(options.storageClass ?? 'STANDARD'),
    inventoryIsJob: vault,
    maxObjectBytes: vault ? 4096 * MIB * MAX_PARTS : 5 * 1024 * 1024 * MIB,
  };
}

const hashOf = (data: Uint8Array) => treeHash(data).toString('hex');
const WRONG_HASH = '00'.repeat(32);

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const error = await rejection(promise);
  expect({ code: error.code, message: error.message }).toMatchObject({ code });
}

export function archiveStoreContract(name: string, setup: () => Promise<ArchiveStoreUnderTest>): void {
  describe(`archive store contract: ${name}`, () => {
    let under: ArchiveStoreUnderTest;
    let store: ArchiveStore;
    let can: ArchiveCapabilities;
    beforeAll(async () => {
      under = await setup();
      store = under.store;
      can = capabilitiesOf(store, under.objectOptions);
    });
    afterAll(async () => {
      await under?.close?.();
    });

    const put = (key: string, data: Uint8Array) => store.putObject(key, data, hashOf(data), under.objectOptions);

    /** Uploads `data` in parts of the store's size for it, sent in `order` (part indexes, 0-based); returns the parts ascending. */
    async function uploadParts(key: string, data: Buffer, order?: number[]): Promise<{ uploadId: string; parts: UploadedPart[]; partSize: number }> {
      const partSize = store.partSizeFor(data.byteLength);
      const uploadId = await store.startUpload(key, partSize, under.objectOptions);
      const count = Math.ceil(data.byteLength / partSize);
      const parts: UploadedPart[] = [];
      for (const index of order ?? [...Array(count).keys()]) {
        const piece = data.subarray(index * partSize, (index + 1) * partSize);
        parts[index] = await store.putPart(key, uploadId, index + 1, index * partSize, piece, hashOf(piece));
      }
      return { uploadId, parts, partSize };
    }

    /** Three parts of the store's smallest size but the last, which is short. */
    const multipartData = () => randomBytes(2 * store.partSizeFor(0) + 1000);

    /** Asks for `ref` to be made readable when it must be, and waits until it is; returns the job to read it through. */
    async function makeReadable(ref: string): Promise<string | undefined> {
      if (!can.needsRestore) return undefined;
      const asked = await store.requestRestore(ref, { tier: 'Standard', days: 1 });
      await under.letJobsFinish();
      const status = await store.restoreStatus(ref, asked.job);
      expect(status.state).toBe('available');
      return asked.job;
    }

    describe('part sizes', () => {
      it('partSizeFor: 1 MiB x 2^n, the smallest that holds the object in 10,000 parts, pure; too large is INVALID_ARGUMENT', () => {
        const floor = store.partSizeFor(0);
        expect(floor % MIB).toBe(0);
        expect(Number.isInteger(Math.log2(floor / MIB))).toBe(true);
        expect(store.partSizeFor(1)).toBe(floor);
        expect(store.partSizeFor(floor * MAX_PARTS)).toBe(floor);
        expect(store.partSizeFor(floor * MAX_PARTS + 1)).toBe(2 * floor);
        expect(store.partSizeFor(floor * MAX_PARTS + 1)).toBe(2 * floor);
        const largest = can.maxObjectBytes;
        expect(store.partSizeFor(largest)).toBe(Math.max(floor, 2 ** Math.ceil(Math.log2(largest / MAX_PARTS / MIB)) * MIB));
        expect(() => store.partSizeFor(largest + 1)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
        expect(() => store.partSizeFor(-1)).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
      });
    });

    describe('single objects', () => {
      it('putObject returns the object with its size and tree hash; S3 replaces the same name, Glacier makes a new archive each call', async () => {
        const data = randomBytes(3 * MIB + 17);
        const first = await put('single/twice', data);
        expect(first).toEqual({ ref: expect.any(String), sizeBytes: data.byteLength, treeHash: hashOf(data) });
        const second = await put('single/twice', data);
        expect(second).toMatchObject({ sizeBytes: data.byteLength, treeHash: hashOf(data) });
        if (can.putReplaces) expect(second.ref).toBe(first.ref);
        else expect(second.ref).not.toBe(first.ref);
      });

      it('an object with a wrong tree hash is refused where the service checks them', async () => {
        const data = randomBytes(1000);
        const attempt = store.putObject('single/wrong-hash', data, WRONG_HASH, under.objectOptions);
        if (can.checksTreeHashes) await expectCode(attempt, ErrorCodes.REMOTE_REJECTED);
        else expect((await attempt).sizeBytes).toBe(data.byteLength);
      });
    });

    describe('multipart uploads', () => {
      it('parts sent out of order are listed ascending; the same bytes again change nothing; complete gives the whole object, read back equal', async () => {
        const data = multipartData();
        const { uploadId, parts, partSize } = await uploadParts('multi/object', data, [1, 2, 0]);
        expect(parts.map((p) => p.sizeBytes)).toEqual([partSize, partSize, 1000]);
        expect(await store.listParts('multi/object', uploadId)).toEqual(parts);
        const again = await store.putPart('multi/object', uploadId, 2, partSize, data.subarray(partSize, 2 * partSize), hashOf(data.subarray(partSize, 2 * partSize)));
        expect(again).toEqual(parts[1]);
        expect(await store.listParts('multi/object', uploadId)).toEqual(parts);

        const stored = await store.completeUpload('multi/object', uploadId, parts, data.byteLength, hashOf(data));
        expect(stored).toEqual({ ref: expect.any(String), sizeBytes: data.byteLength, treeHash: hashOf(data) });
        const job = await makeReadable(stored.ref);
        const read = await store.getRange(stored.ref, 0, undefined, job);
        expect(read.data.equals(data)).toBe(true);
      });

      it('an upload completed is gone: listParts is NOT_FOUND, abort succeeds', async () => {
        const data = multipartData();
        const { uploadId, parts } = await uploadParts('multi/gone', data);
        await store.completeUpload('multi/gone', uploadId, parts, data.byteLength, hashOf(data));
        await expectCode(store.listParts('multi/gone', uploadId), ErrorCodes.NOT_FOUND);
        await store.abortUpload('multi/gone', uploadId);
      });

      it('abort is idempotent; an aborted upload is NOT_FOUND to listParts, putPart and completeUpload', async () => {
        const data = multipartData();
        const { uploadId, parts, partSize } = await uploadParts('multi/aborted', data);
        await store.abortUpload('multi/aborted', uploadId);
        await store.abortUpload('multi/aborted', uploadId);
        await expectCode(store.listParts('multi/aborted', uploadId), ErrorCodes.NOT_FOUND);
        const piece = data.subarray(0, partSize);
        await expectCode(store.putPart('multi/aborted', uploadId, 1, 0, piece, hashOf(piece)), ErrorCodes.NOT_FOUND);
        await expectCode(store.completeUpload('multi/aborted', uploadId, parts, data.byteLength, hashOf(data)), ErrorCodes.NOT_FOUND);
      });

      it('where the service checks tree hashes, a wrong part and a wrong whole are refused', async () => {
        if (!can.checksTreeHashes) return;
        const data = multipartData();
        const partSize = store.partSizeFor(data.byteLength);
        const uploadId = await store.startUpload('multi/wrong-hash', partSize, under.objectOptions);
        await expectCode(store.putPart('multi/wrong-hash', uploadId, 1, 0, data.subarray(0, partSize), WRONG_HASH), ErrorCodes.REMOTE_REJECTED);
        await store.abortUpload('multi/wrong-hash', uploadId);
        const { uploadId: second, parts } = await uploadParts('multi/wrong-hash', data);
        await expectCode(store.completeUpload('multi/wrong-hash', second, parts, data.byteLength, WRONG_HASH), ErrorCodes.REMOTE_REJECTED);
        await store.abortUpload('multi/wrong-hash', second);
      });
    });

    describe('reading', () => {
      let data: Buffer;
      let stored: StoredObject;
      let job: string | undefined;

      beforeAll(async () => {
        data = randomBytes(3 * MIB + 100);
        stored = await put('read/object', data);
      });

      it('an object that needs a restore is BAD_STATE to getRange until asked for and done; restoreStatus says so all along', async () => {
        if (!can.needsRestore) {
          expect((await store.restoreStatus(stored.ref)).state).toBe('available');
          expect((await store.requestRestore(stored.ref, { tier: 'Bulk', days: 1 })).state).toBe('available');
          return;
        }
        await expectCode(store.getRange(stored.ref, 0, MIB), ErrorCodes.BAD_STATE);
        expect(await store.restoreStatus(stored.ref)).toEqual({ state: 'archived' });

        const asked = await store.requestRestore(stored.ref, { tier: 'Standard', days: 2 });
        expect(asked.state).toBe('in-progress');
        job = asked.job;
        if (store.target === 'glacier') expect(job).toEqual(expect.any(String));
        expect((await store.restoreStatus(stored.ref, job)).state).toBe('in-progress');
        await expectCode(store.getRange(stored.ref, 0, MIB, job), ErrorCodes.BAD_STATE);

        await under.letJobsFinish();
        const done: RestoreStatus = await store.restoreStatus(stored.ref, job);
        expect(done).toMatchObject({ state: 'available', expiresAt: expect.any(Date) });
        if (job !== undefined) expect(done.job).toBe(job);
      });

      it('getRange gives bytes [start, end), or to the end when end is undefined', async () => {
        expect((await store.getRange(stored.ref, 0, 1, job)).data.equals(data.subarray(0, 1))).toBe(true);
        expect((await store.getRange(stored.ref, 5, MIB + 7, job)).data.equals(data.subarray(5, MIB + 7))).toBe(true);
        expect((await store.getRange(stored.ref, 2 * MIB, undefined, job)).data.equals(data.subarray(2 * MIB))).toBe(true);
        expect((await store.getRange(stored.ref, data.byteLength - 1, data.byteLength, job)).data.equals(data.subarray(-1))).toBe(true);
      });

      it('a tree-hash-aligned range carries the tree hash of its bytes where the service sends one; an unaligned one never does', async () => {
        const aligned = await store.getRange(stored.ref, 0, 2 * MIB, job);
        const tail = await store.getRange(stored.ref, 2 * MIB, undefined, job);
        const across = await store.getRange(stored.ref, MIB, 3 * MIB, job);
        expect(across.treeHash).toBeUndefined();
        if (can.rangeTreeHashes) {
          expect(aligned.treeHash).toBe(hashOf(data.subarray(0, 2 * MIB)));
          expect(tail.treeHash).toBe(hashOf(data.subarray(2 * MIB)));
        } else {
          expect(aligned.treeHash).toBeUndefined();
          expect(tail.treeHash).toBeUndefined();
        }
      });
    });

    describe('inventory and deletion', () => {
      it('inventory lists what was stored: S3 at once under a prefix, Glacier once its job is done', async () => {
        const kept = randomBytes(2000);
        const first = await put('listed/one', kept);
        const second = await put('listed/two', kept.subarray(0, 1500));
        await put('unlisted/three', kept.subarray(0, 10));
        if (can.inventoryIsJob) {
          // No inventory at hand and none to start: nothing is started.
          await expectCode(store.inventory({ start: false }), ErrorCodes.NOT_FOUND);
          const started = await store.inventory({ start: true });
          expect(started).toMatchObject({ state: 'in-progress', job: expect.any(String) });
          // Asked again while it runs: the same job, no second one.
          expect(await store.inventory({ start: true })).toMatchObject({ state: 'in-progress', job: started.state === 'in-progress' ? started.job : 'none' });
          // Glacier's inventory is the vault as it was when the job began.
          await put('listed/late', kept);
          await under.letJobsFinish();
        }
        const inventory = await store.inventory({ prefix: 'listed/', start: true });
        expect(inventory.state).toBe('ready');
        if (inventory.state !== 'ready') return;
        const listed = inventory.objects.filter((o) => o.name.startsWith('listed/')).sort((a, b) => a.name.localeCompare(b.name));
        expect(listed).toMatchObject([
          { ref: first.ref, name: 'listed/one', sizeBytes: 2000 },
          { ref: second.ref, name: 'listed/two', sizeBytes: 1500 },
        ]);
        if (!can.inventoryIsJob) {
          expect(inventory.objects).toHaveLength(2);
          expect(listed.map((o) => o.storageClass)).toEqual(Array(2).fill(under.objectOptions?.storageClass ?? 'STANDARD'));
        }
      });

      it('deleteObject is idempotent; what is deleted is no longer read or listed', async () => {
        const data = randomBytes(500);
        const stored = await put('deleted/object', data);
        await store.deleteObject(stored.ref);
        await store.deleteObject(stored.ref);
        if (can.inventoryIsJob) return;
        await expectCode(store.getRange(stored.ref, 0, 10), ErrorCodes.NOT_FOUND);
        expect(await store.inventory({ prefix: 'deleted/', start: true })).toMatchObject({ state: 'ready', objects: [] });
      });
    });
  });
}
