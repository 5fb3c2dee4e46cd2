/**
 * The archive engine (create, restore, status, rehydrate, inventory, prune)
 * with in-memory fakes of EBS and of the archive stores (S3-like and
 * Glacier-like), a real SQLite index in a temp dir and the real worker pool.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { checksumOf, linearAggregateOf, sha256 } from '../../src/core/checksum.js';
import { BLOCK_SIZE, GIB } from '../../src/core/constants.js';
import type { ArchiveTarget } from '../../src/core/ports.js';
import { verifiedReader } from '../../src/core/verified-reader.js';
import { applyArchiveRange, chainAggregate, rehydrate } from '../../src/engine/archive/rehydrate.js';
import { openArchiveChain, treeHashAlignedRanges } from '../../src/engine/archive/chain.js';
import { archiveInventory, archiveStatus, deleteArchive, pruneArchives, restoreArchive } from '../../src/engine/archive/jobs.js';
import type { ArchivePlaces } from '../../src/engine/archive/places.js';
import { createArchive } from '../../src/engine/archive/archive.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { HashPool } from '../../src/hashing/index.js';
import { BlockIndex } from '../../src/index/index.js';
import { MemoryArchiveStore } from '../fakes/memory-archive.js';
import { MemoryEbs, awsFailure } from '../fakes/memory-ebs.js';
import { rejection } from '../support/rejection.js';

let hashPool: HashPool;
let dir: string;
let index: BlockIndex;
let ebs: MemoryEbs;
let stores: Record<ArchiveTarget, MemoryArchiveStore>;
let places: ArchivePlaces;

beforeAll(() => {
  hashPool = new HashPool({ threads: 2 });
});
afterAll(async () => {
  await hashPool.destroy();
});

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'snapline-archive-'));
  index = BlockIndex.open(join(dir, 'index.db'));
  ebs = new MemoryEbs({ maxPageSize: 7 });
  stores = { s3: new MemoryArchiveStore({ target: 's3' }), glacier: new MemoryArchiveStore({ target: 'glacier' }) };
  places = {
    store: (target, location) => {
      const store = stores[target];
      if (location !== undefined && location !== store.location) throw new SnaplineError(ErrorCodes.NOT_FOUND, `no ${target} ${location}`);
      return store;
    },
    defaultTarget: 's3',
    path: 'backups/',
  };
});

afterEach(async () => {
  index.close();
  await rm(dir, { recursive: true, force: true });
});

const deps = () => ({ index, reader: verifiedReader(ebs), writer: ebs, catalog: ebs, hashPool, archives: places });

/** A completed snapshot holding `blocks` over `parent`, tagged as snapline tags its own. */
async function snapshotOf(blocks: Map<number, Buffer>, options: { parent?: string; sourceBytes?: number; encrypted?: boolean } = {}): Promise<string> {
  const sourceBytes = options.sourceBytes ?? GIB - 1000;
  const started = await ebs.startSnapshot({
    volumeSizeGiB: 1,
    ...(options.parent ? { parentSnapshotId: options.parent } : {}),
    ...(options.encrypted ? { encrypted: true } : {}),
    tags: { 'snapline:volume': 'vol', 'snapline:source-bytes': String(sourceBytes) },
  });
  const written = [...blocks].map(([i, data]) => ({ index: i, digest: sha256(data) }));
  for (const [i, data] of blocks) await ebs.putBlock(started.snapshotId, i, data, checksumOf(sha256(data)));
  await ebs.completeSnapshot(started.snapshotId, written.length, linearAggregateOf(written));
  return started.snapshotId;
}

const random = (indexes: number[]) => new Map(indexes.map((i) => [i, randomBytes(BLOCK_SIZE)]));
const zero = () => Buffer.alloc(BLOCK_SIZE);

/** Content without all-zero blocks (an unwritten block reads as zeros too). */
function nonZero(content: Map<number, Buffer>): Map<number, string> {
  return new Map([...content].filter(([, data]) => data.some((b) => b !== 0)).map(([i, data]) => [i, sha256(data).toString('hex')]));
}

function imageOf(content: Map<number, Buffer>, sizeBytes: number): Buffer {
  const image = Buffer.alloc(sizeBytes);
  for (const [i, data] of content) if (i * BLOCK_SIZE < sizeBytes) data.copy(image, i * BLOCK_SIZE, 0, Math.min(BLOCK_SIZE, sizeBytes - i * BLOCK_SIZE));
  return image;
}

async function restoreAndWait(archive: string, target: ArchiveTarget): Promise<void> {
  await restoreArchive({ index, archives: places }, { archive, tier: 'Bulk' });
  stores[target].finishRestores();
  const status = await archiveStatus({ index, archives: places }, { archive, wait: true, pollMs: { first: 1, max: 5 } });
  expect(status.every((s) => s.restore === 'available')).toBe(true);
}

describe.each(['s3', 'glacier'] as const)('archive to %s and back', (target) => {
  it('archives a snapshot in segments, refuses to read it before the restore, then rehydrates it to a snapshot and to a file', async () => {
    const blocks = random([0, 1, 2, 5, 9, 10, 11, 100, 2047]);
    blocks.set(7, zero());
    const snapshotId = await snapshotOf(blocks);

    const created = await createArchive(deps(), { snapshotId, to: target, segmentBlocks: 3 });
    expect(created).toMatchObject({ target, snapshotId, volume: 'vol', incremental: false, segments: 4, blocks: 10, zeroBlocks: 1, removedBlocks: 0, resumed: false });
    expect(created.storageClass).toBe(target === 's3' ? 'DEEP_ARCHIVE' : null);
    expect(stores[target].objects.size).toBe(5);
    if (target === 's3') expect([...stores.s3.objects.keys()].sort()[0]).toBe(`backups/vol/${snapshotId}/manifest.json`);
    else expect([...stores.glacier.objects.values()].map((o) => o.name)).toContain(`snapline-archive/1 ${created.archiveId} manifest.json ${snapshotId} vol`);
    expect(index.archives.get(created.archiveId)).toMatchObject({ state: 'archived', manifestRef: created.manifestRef, treeHash: created.treeHash, sizeBytes: created.sizeBytes });

    const early = await rejection(rehydrate(deps(), { archive: created.archiveId, toSnapshot: true }));
    expect(early.code).toBe(ErrorCodes.BAD_STATE);
    expect(early.hint).toMatch(/archive restore/);

    await restoreAndWait(created.archiveId, target);
    const back = await rehydrate(deps(), { archive: snapshotId, toSnapshot: true });
    expect(back).toMatchObject({ archiveId: created.archiveId, chain: [created.archiveId], sourceSnapshotId: snapshotId, blocksWritten: 10, zeroBlocks: 1 });
    expect(ebs.inspect(back.snapshotId!)?.status).toBe('completed');
    expect(nonZero(ebs.contentOf(back.snapshotId!))).toEqual(nonZero(ebs.contentOf(snapshotId)));
    const tags = (await ebs.describeSnapshots([back.snapshotId!]))[0]!.tags;
    expect(tags).toMatchObject({ 'snapline:volume': 'vol', 'snapline:source-bytes': String(GIB - 1000), 'snapline:archive': created.archiveId });

    const image = join(dir, 'back.img');
    const toFile = await rehydrate(deps(), { archive: created.archiveId, toFile: image });
    expect(toFile.target).toBe(image);
    expect((await readFile(image)).equals(imageOf(ebs.contentOf(snapshotId), GIB - 1000))).toBe(true);
    expect(index.targets.get(image)).toMatchObject({ snapshotId, state: 'complete' });
  });

  it('rehydrates an incremental chain of three archives, including blocks an older snapshot lacks', async () => {
    const first = random([0, 1, 2, 3, 40]);
    const s1 = await snapshotOf(first);
    const s2 = await snapshotOf(random([1, 50, 51]), { parent: s1 });
    const s3 = await snapshotOf(new Map([[2, zero()], ...random([3, 60])]), { parent: s2 });
    const a1 = await createArchive(deps(), { snapshotId: s1, to: target, segmentBlocks: 2 });
    const a2 = await createArchive(deps(), { snapshotId: s2, to: target, incremental: true, segmentBlocks: 2 });
    const a3 = await createArchive(deps(), { snapshotId: s3, to: target, incremental: true, segmentBlocks: 2 });
    expect(a2).toMatchObject({ incremental: true, parentArchiveId: a1.archiveId, blocks: 3 });
    expect(a3).toMatchObject({ parentArchiveId: a2.archiveId, blocks: 3, zeroBlocks: 1 });

    await restoreAndWait(a3.archiveId, target);
    const image = join(dir, 's3.img');
    const back = await rehydrate(deps(), { archive: a3.archiveId, toFile: image });
    expect(back.chain).toEqual([a1.archiveId, a2.archiveId, a3.archiveId]);
    expect((await readFile(image)).equals(imageOf(ebs.contentOf(s3), GIB - 1000))).toBe(true);
    const snap = await rehydrate(deps(), { archive: a3.archiveId, toSnapshot: true });
    expect(nonZero(ebs.contentOf(snap.snapshotId!))).toEqual(nonZero(ebs.contentOf(s3)));

    // A snapshot is archived once per place.
    expect(await rejection(createArchive(deps(), { snapshotId: s1, to: target, incremental: true }))).toMatchObject({ code: ErrorCodes.CONFLICT });
  });
});

describe('incremental archives', () => {
  it('records the blocks a snapshot lacks that its parent archive holds, and rehydrates without them', async () => {
    const s1 = await snapshotOf(random([0, 1, 2]));
    const s2 = await snapshotOf(random([5, 6]), { parent: s1 });
    const full = await createArchive(deps(), { snapshotId: s2, segmentBlocks: 4 });
    const older = await createArchive(deps(), { snapshotId: s1, incremental: true, segmentBlocks: 4 });
    expect(older).toMatchObject({ parentArchiveId: full.archiveId, removedBlocks: 2, blocks: 0, segments: 0 });
    await restoreAndWait(older.archiveId, 's3');
    const image = join(dir, 's1.img');
    await rehydrate(deps(), { archive: older.archiveId, toFile: image });
    expect((await readFile(image)).equals(imageOf(ebs.contentOf(s1), GIB - 1000))).toBe(true);
  });

  it("rehydrate's progress counts the volume's blocks and reaches all of them, also from an archive that holds no block of its own", async () => {
    const s1 = await snapshotOf(random([0, 1, 2]));
    const s2 = await snapshotOf(random([5, 6]), { parent: s1 });
    await createArchive(deps(), { snapshotId: s2, segmentBlocks: 4 });
    const older = await createArchive(deps(), { snapshotId: s1, incremental: true, segmentBlocks: 4 });
    expect(older.blocks).toBe(0);
    await restoreAndWait(older.archiveId, 's3');
    for (const to of [{ toFile: join(dir, 'progress.img') }, { toSnapshot: true }]) {
      const seen: Array<{ totalBlocks: number; blocksWritten: number; blocksPassed: number }> = [];
      await rehydrate(deps(), { archive: older.archiveId, ...to, onProgress: (p) => seen.push(p) });
      expect(seen.length).toBeGreaterThan(0);
      for (const p of seen) expect(p.totalBlocks).toBe(GIB / BLOCK_SIZE);
      const done = seen.map((p) => p.blocksWritten + p.blocksPassed);
      expect(done).toEqual([...done].sort((a, b) => a - b));
      expect(seen.at(-1)).toMatchObject({ blocksWritten: 3, blocksPassed: GIB / BLOCK_SIZE - 3 });
    }
  });

  it('needs an earlier archive of the volume at the same place', async () => {
    const s1 = await snapshotOf(random([0]));
    const error = await rejection(createArchive(deps(), { snapshotId: s1, incremental: true }));
    expect(error.code).toBe(ErrorCodes.BAD_STATE);
    expect(error.hint).toMatch(/in full/);
  });
});

describe('resuming an interrupted archive', () => {
  it.each(['s3', 'glacier'] as const)('%s: a multipart upload that failed mid-way resumes with only the missing parts', async (target) => {
    // 24 blocks in one segment: 12 MiB of data, parts of 1 MiB.
    const blocks = random(Array.from({ length: 24 }, (_, i) => i * 3));
    const snapshotId = await snapshotOf(blocks);
    stores[target].failOn('putPart', awsFailure(`${target}:UploadPart`, 'AccessDeniedException', { status: 403 }), { after: 7 });
    const first = await rejection(createArchive(deps(), { snapshotId, to: target, segmentBlocks: 64, partsInFlight: 1 }));
    expect(first.code).toBe(ErrorCodes.ACCESS_DENIED);
    const record = index.archives.live(target, stores[target].location, snapshotId)!;
    expect(record.state).toBe('uploading');
    const journal = index.archives.upload(record.archiveId, 'segment-000000')!;
    expect(journal.parts.map((p) => p.partNumber)).toEqual([1, 2, 3, 4, 5, 6, 7]);

    const partsBefore = stores[target].count('putPart');
    const second = await createArchive(deps(), { snapshotId, to: target, segmentBlocks: 64 });
    expect(second).toMatchObject({ archiveId: record.archiveId, resumed: true, blocks: 24 });
    // 12 MiB of data plus the table: 13 parts, of which 7 were acknowledged before.
    expect(stores[target].count('putPart') - partsBefore).toBe(6);
    expect(stores[target].count('startUpload')).toBe(1);
    expect(index.archives.upload(record.archiveId, 'segment-000000')).toBeUndefined();

    await restoreAndWait(second.archiveId, target);
    const image = join(dir, 'resumed.img');
    await rehydrate(deps(), { archive: second.archiveId, toFile: image });
    expect((await readFile(image)).equals(imageOf(ebs.contentOf(snapshotId), GIB - 1000))).toBe(true);
  });

  it('starts the upload again when the service no longer holds it', async () => {
    const snapshotId = await snapshotOf(random(Array.from({ length: 6 }, (_, i) => i)));
    stores.s3.failOn('putPart', awsFailure('s3:UploadPart', 'InternalError', { status: 500 }), { after: 1 });
    await rejection(createArchive(deps(), { snapshotId, segmentBlocks: 64, partsInFlight: 1 }));
    stores.s3.uploads.clear();
    const done = await createArchive(deps(), { snapshotId, segmentBlocks: 64 });
    expect(done.resumed).toBe(true);
    expect(stores.s3.count('startUpload')).toBe(2);
  });

  it('refuses to resume with other options', async () => {
    const snapshotId = await snapshotOf(random([0, 1, 2]));
    stores.s3.failOn('putObject', awsFailure('s3:PutObject', 'AccessDenied', { status: 403 }));
    await rejection(createArchive(deps(), { snapshotId, segmentBlocks: 64 }));
    const error = await rejection(createArchive(deps(), { snapshotId, segmentBlocks: 64, storageClass: 'GLACIER' }));
    expect(error.code).toBe(ErrorCodes.CONFLICT);
    expect(error.hint).toMatch(/DEEP_ARCHIVE/);
  });
});

describe('restore jobs', () => {
  it('a failed Glacier job is reported by status --wait, and asking again starts a new one', async () => {
    const snapshotId = await snapshotOf(random([0, 1]));
    const created = await createArchive(deps(), { snapshotId, to: 'glacier' });
    const asked = await restoreArchive({ index, archives: places }, { archive: created.archiveId, tier: 'Expedited' });
    expect(asked.objects.every((o) => o.requested && o.state === 'in-progress' && o.job !== null)).toBe(true);
    stores.glacier.failRestores();
    const error = await rejection(archiveStatus({ index, archives: places }, { archive: created.archiveId, wait: true, pollMs: { first: 1, max: 5 } }));
    expect(error.code).toBe(ErrorCodes.BAD_STATE);
    expect(error.message).toMatch(/failed/);
    expect(error.hint).toMatch(/archive restore/);

    const again = await restoreArchive({ index, archives: places }, { archive: created.archiveId });
    expect(again.objects.every((o) => o.requested)).toBe(true);
    // A restore already under way is not asked for twice.
    const twice = await restoreArchive({ index, archives: places }, { archive: created.archiveId });
    expect(twice.objects.some((o) => o.requested)).toBe(false);
    stores.glacier.finishRestores();
    await archiveStatus({ index, archives: places }, { archive: created.archiveId, wait: true, pollMs: { first: 1, max: 5 } });
  });

  it('Deep Archive has no Expedited tier; GLACIER_IR needs no restore', async () => {
    const snapshotId = await snapshotOf(random([0]));
    const deep = await createArchive(deps(), { snapshotId });
    const error = await rejection(restoreArchive({ index, archives: places }, { archive: deep.archiveId, tier: 'Expedited' }));
    expect(error.code).toBe(ErrorCodes.INVALID_ARGUMENT);
    const other = await snapshotOf(random([3]));
    const instant = await createArchive(deps(), { snapshotId: other, storageClass: 'GLACIER_IR' });
    const [status] = await archiveStatus({ index, archives: places }, { archive: instant.archiveId });
    expect(status?.restore).toBe('available');
    await rehydrate(deps(), { archive: instant.archiveId, toFile: join(dir, 'ir.img') });
  });

  it('status of every archive: looked up when a restore was asked, else as the storage class implies', async () => {
    const deep = await createArchive(deps(), { snapshotId: await snapshotOf(random([0])) });
    const instant = await createArchive(deps(), { snapshotId: await snapshotOf(random([1])), storageClass: 'GLACIER_IR' });
    const asked = await createArchive(deps(), { snapshotId: await snapshotOf(random([2])) });
    await restoreArchive({ index, archives: places }, { archive: asked.archiveId });
    const headsBefore = stores.s3.count('restoreStatus');
    const all = await archiveStatus({ index, archives: places });
    expect(all.map((e) => [e.archiveId, e.restore, e.objects.length])).toEqual([
      [deep.archiveId, 'archived', 0],
      [instant.archiveId, 'available', 0],
      [asked.archiveId, 'in-progress', 2],
    ]);
    expect(stores.s3.count('restoreStatus') - headsBefore).toBe(2);
  });

  it('a wait looks once more at its timeout rather than giving up early when the next pause would pass it', async () => {
    const created = await createArchive(deps(), { snapshotId: await snapshotOf(random([0])) });
    await restoreArchive({ index, archives: places }, { archive: created.archiveId });
    let waits = 0;
    // Looks at 0 and at 1 s (the restore finishes then); the next pause (2 s) would pass the 2.5 s timeout.
    const onWait = () => {
      waits += 1;
      if (waits === 2) stores.s3.finishRestores();
    };
    const entries = await archiveStatus({ index, archives: places }, { archive: created.archiveId, wait: true, waitTimeoutMs: 2500, pollMs: { first: 1000, max: 60_000 }, onWait });
    expect(entries.map((e) => e.restore)).toEqual(['available']);
  });

  it('a wait that finds restored copies expired before the rest of the chain is readable says so, and to ask again', async () => {
    const s1 = await snapshotOf(random([0]));
    const a1 = await createArchive(deps(), { snapshotId: s1 });
    const a2 = await createArchive(deps(), { snapshotId: await snapshotOf(random([1]), { parent: s1 }), incremental: true });
    await restoreArchive({ index, archives: places }, { archive: a2.archiveId, days: 1 });
    stores.s3.finishRestores();
    stores.s3.expireRestores(index.archives.objects(a1.archiveId).map((o) => o.ref));
    const error = await rejection(archiveStatus({ index, archives: places }, { archive: a2.archiveId, wait: true, pollMs: { first: 1, max: 5 } }));
    expect(error).toMatchObject({ code: ErrorCodes.BAD_STATE, details: { archiveId: a1.archiveId, objects: ['manifest.json', 'segment-000000'] } });
    expect(error.message).toBe(`the restored copies of 2 objects of archive ${a1.archiveId} expired before archive ${a2.archiveId} was readable`);
    expect(error.hint).toMatch(/archive restore/);
  });

  it('waiting for an archive nobody asked to restore says so', async () => {
    const created = await createArchive(deps(), { snapshotId: await snapshotOf(random([0])) });
    const error = await rejection(archiveStatus({ index, archives: places }, { archive: created.archiveId, wait: true, pollMs: { first: 1, max: 5 } }));
    expect(error).toMatchObject({ code: ErrorCodes.BAD_STATE });
    expect(error.hint).toMatch(/archive restore/);
  });
});

describe('integrity of what is read back', () => {
  it.each([
    ['glacier', /tree hash/],
    ['s3', /SHA-256/],
  ] as const)('%s: a corrupted ranged download is detected and nothing is claimed', async (target, message) => {
    const snapshotId = await snapshotOf(random([0, 1, 2, 3]));
    const created = await createArchive(deps(), { snapshotId, to: target });
    await restoreAndWait(created.archiveId, target);
    stores[target].corruptReads = (name) => name.includes('segment-');
    const image = join(dir, 'corrupt.img');
    const error = await rejection(rehydrate(deps(), { archive: created.archiveId, toFile: image }));
    expect(error.code).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    expect(error.message).toMatch(message);
    expect(error.message).toMatch(/incomplete/);
    expect(index.targets.get(image)?.state).toBe('incomplete');
  });
});

describe('bad input', () => {
  it('names what is wrong', async () => {
    const snapshotId = await snapshotOf(random([0]));
    expect(await rejection(rehydrate(deps(), { archive: 'ar-0000000000000000', toSnapshot: true }))).toMatchObject({ code: ErrorCodes.NOT_FOUND });
    expect(await rejection(restoreArchive({ index, archives: places }, { archive: 'snap-unknown' }))).toMatchObject({ code: ErrorCodes.NOT_FOUND });
    const badClass = await rejection(createArchive(deps(), { snapshotId, storageClass: 'FROZEN' }));
    expect(badClass).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    expect(badClass.message).toMatch(/^storageClass must be one of/);
    expect(badClass.details).toEqual({ option: 'storageClass' });
    expect(await rejection(createArchive(deps(), { snapshotId, to: 'glacier', storageClass: 'GLACIER' }))).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    expect(await rejection(createArchive(deps(), { snapshotId: 'snap-missing' }))).toMatchObject({ code: ErrorCodes.NOT_FOUND });
    const created = await createArchive(deps(), { snapshotId });
    expect(await rejection(createArchive(deps(), { snapshotId }))).toMatchObject({ code: ErrorCodes.CONFLICT });
    expect(await rejection(rehydrate(deps(), { archive: created.archiveId }))).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    places.defaultTarget = undefined;
    expect(await rejection(createArchive(deps(), { snapshotId }))).toMatchObject({ code: ErrorCodes.CONFIG_INVALID });
  });

  it('a file of the index as the file to rehydrate onto, even with force: refused, the index untouched', async () => {
    const snapshotId = await snapshotOf(random([0, 1]));
    const created = await createArchive(deps(), { snapshotId });
    await restoreAndWait(created.archiveId, 's3');
    const indexFile = join(dir, 'index.db');
    const before = await readFile(indexFile);
    for (const target of [indexFile, `${indexFile}-wal`]) {
      const error = await rejection(rehydrate(deps(), { archive: created.archiveId, toFile: target, force: true }));
      expect(error.code).toBe(ErrorCodes.TARGET_UNUSABLE);
      expect(error.message).toBe(`${target} is a file of the index snapline is using (${target}): restoring onto it would destroy the index`);
    }
    expect(await readFile(indexFile)).toEqual(before);
    expect(index.targets.get(indexFile)).toBeUndefined();
  });
});

describe('sharded rehydration', () => {
  it('applyArchiveRange over two spans into one pending snapshot, completed with chainAggregate', async () => {
    const s1 = await snapshotOf(random([0, 1, 700, 1500]), { encrypted: true });
    const s2 = await snapshotOf(new Map([[1, zero()], ...random([701, 2000])]), { parent: s1 });
    const a1 = await createArchive(deps(), { snapshotId: s1, segmentBlocks: 2 });
    const a2 = await createArchive(deps(), { snapshotId: s2, incremental: true, segmentBlocks: 2 });
    await restoreAndWait(a2.archiveId, 's3');
    const chain = await openArchiveChain(deps(), a2.archiveId);
    expect(chain.members.map((m) => m.manifest.archiveId)).toEqual([a1.archiveId, a2.archiveId]);
    expect(chain.snapshot.encrypted).toBe(true);
    const pending = await ebs.startSnapshot({ volumeSizeGiB: 1, encrypted: true });
    const left = await applyArchiveRange({ hashPool, writer: ebs }, chain, pending.snapshotId, { fromBlock: 0, toBlock: 701 });
    const right = await applyArchiveRange({ hashPool, writer: ebs }, chain, pending.snapshotId, { fromBlock: 701, toBlock: 2048 });
    expect(left.blocksWritten + right.blocksWritten).toBe(6);
    const { changedBlocksCount, aggregateChecksum } = await chainAggregate({ hashPool }, chain);
    expect(changedBlocksCount).toBe(6);
    expect(await ebs.completeSnapshot(pending.snapshotId, changedBlocksCount, aggregateChecksum)).toBe('completed');
    expect(nonZero(ebs.contentOf(pending.snapshotId))).toEqual(nonZero(ebs.contentOf(s2)));
    // The zero block of an encrypted snapshot is written (unwritten blocks would read as random data).
    expect(ebs.inspect(pending.snapshotId)?.writtenIndexes).toContain(1);
    const outside = await rejection(applyArchiveRange({ hashPool, writer: ebs }, chain, pending.snapshotId, { fromBlock: 0, toBlock: 2049 }));
    expect(outside.code).toBe(ErrorCodes.INVALID_ARGUMENT);
  });
});

describe('inventory and prune', () => {
  it('lists the archives a bucket holds and those a vault inventory shows once its job is done', async () => {
    const s1 = await snapshotOf(random([0, 1]));
    const onS3 = await createArchive(deps(), { snapshotId: s1 });
    const onVault = await createArchive(deps(), { snapshotId: s1, to: 'glacier' });
    stores.s3.objects.set('backups/stray-file', { name: 'backups/stray-file', data: Buffer.from('x'), storageClass: 'STANDARD', restore: 'none', createdAt: new Date() });
    const s3 = await archiveInventory({ index, archives: places });
    expect(s3).toMatchObject({ state: 'ready', archives: [{ archiveId: onS3.archiveId, snapshotId: s1, volume: 'vol', objects: 2, indexState: 'archived' }], missing: [] });
    expect(s3.strays.map((s) => s.ref)).toEqual(['backups/stray-file']);

    const first = await archiveInventory({ index, archives: places }, { to: 'glacier' });
    expect(first).toMatchObject({ state: 'in-progress', archives: [] });
    stores.glacier.finishRestores();
    const vault = await archiveInventory({ index, archives: places }, { to: 'glacier' });
    expect(vault).toMatchObject({ state: 'ready', archives: [{ archiveId: onVault.archiveId, snapshotId: s1, objects: 2, indexState: 'archived' }], strays: [] });
  });

  it('deletes old archives but the newest of each volume and those a kept one builds on', async () => {
    const s1 = await snapshotOf(random([0]));
    const s2 = await snapshotOf(random([1]), { parent: s1 });
    const s3 = await snapshotOf(random([2]), { parent: s2 });
    const a1 = await createArchive(deps(), { snapshotId: s1 });
    const a2 = await createArchive(deps(), { snapshotId: s2, incremental: true });
    const lone = await createArchive(deps(), { snapshotId: s3 });
    const later = new Date(Date.now() + 10 * 86_400_000);
    // lone is the newest: it stays, and so it is the head; a1 and a2 go together.
    const dry = await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later, dryRun: true });
    expect(dry.deleted.map((d) => d.archiveId)).toEqual([a2.archiveId, a1.archiveId]);
    expect(stores.s3.objects.size).toBe(6);
    const none = await pruneArchives({ index, archives: places }, { olderThanDays: 30, now: later });
    expect(none.deleted).toEqual([]);
    places.deleteOlderThanDays = 5;
    const done = await pruneArchives({ index, archives: places }, { now: later });
    expect(done.deleted.map((d) => d.archiveId)).toEqual([a2.archiveId, a1.archiveId]);
    expect(done.kept).toEqual([{ archiveId: lone.archiveId, reason: 'the newest archive of its volume there' }]);
    expect(stores.s3.objects.size).toBe(2);
    expect(index.archives.get(a1.archiveId)?.state).toBe('deleted');
    places.deleteOlderThanDays = undefined;
    expect(await rejection(pruneArchives({ index, archives: places }))).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('keeps an old archive, and those it builds on, while an ECS restore from it is unfinished (running or failed)', async () => {
    const s1 = await snapshotOf(random([0]));
    const s2 = await snapshotOf(random([1]), { parent: s1 });
    const s3 = await snapshotOf(random([2]), { parent: s2 });
    const a1 = await createArchive(deps(), { snapshotId: s1 });
    const a2 = await createArchive(deps(), { snapshotId: s2, incremental: true });
    await createArchive(deps(), { snapshotId: s3 });
    const job = { sourceKind: 'archive' as const, source: a2.archiveId, volume: 'restored', cluster: 'c', taskDefinition: 'td' };
    index.ecsJobs.create({ ...job, jobId: 'job-prune-1', startedBy: 'sb-prune-1' }, [{ fromBlock: 0, toBlock: 1 }]);
    const later = new Date(Date.now() + 10 * 86_400_000);
    const running = await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later });
    expect(running.deleted).toEqual([]);
    expect(running.kept).toEqual(
      expect.arrayContaining([
        { archiveId: a2.archiveId, reason: 'ECS restore job job-prune-1 from it is running' },
        { archiveId: a1.archiveId, reason: `archive ${a2.archiveId} builds on it` },
      ]),
    );
    index.ecsJobs.update('job-prune-1', { state: 'failed', message: 'shard 0 failed' });
    expect((await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later })).deleted).toEqual([]);
    index.ecsJobs.update('job-prune-1', { state: 'abandoned' });
    const done = await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later });
    expect(done.deleted.map((d) => d.archiveId)).toEqual([a2.archiveId, a1.archiveId]);
  });

  it('an archive being rehydrated is neither pruned nor deleted until the rehydration ends', async () => {
    const old = await createArchive(deps(), { snapshotId: await snapshotOf(random([0, 1])), storageClass: 'GLACIER_IR' });
    await createArchive(deps(), { snapshotId: await snapshotOf(random([2])), storageClass: 'GLACIER_IR' });
    const later = new Date(Date.now() + 10 * 86_400_000);
    const store = stores.s3;
    const getRange = store.getRange.bind(store);
    let release = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let reading = () => {};
    const read = new Promise<void>((resolve) => (reading = resolve));
    // The rehydration's first read waits at the gate.
    store.getRange = async (...args) => {
      reading();
      await gate;
      return getRange(...args);
    };
    try {
      const running = rehydrate(deps(), { archive: old.archiveId, toFile: join(dir, 'held.img') });
      await read;
      const pruned = await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later });
      expect(pruned.deleted).toEqual([]);
      expect(pruned.kept).toContainEqual({ archiveId: old.archiveId, reason: `in use by another run (pid ${process.pid}), such as a rehydration` });
      expect(await rejection(deleteArchive({ index, archives: places }, { archive: old.archiveId }))).toMatchObject({ code: ErrorCodes.CONFLICT });
      release();
      await running;
    } finally {
      release();
      store.getRange = getRange;
    }
    const done = await pruneArchives({ index, archives: places }, { olderThanDays: 5, now: later });
    expect(done.deleted.map((d) => d.archiveId)).toEqual([old.archiveId]);
  });

  it('keeps an old archive while a newer incremental one builds on it', async () => {
    const s1 = await snapshotOf(random([0]));
    const s2 = await snapshotOf(random([1]), { parent: s1 });
    const a1 = await createArchive(deps(), { snapshotId: s1 });
    const a2 = await createArchive(deps(), { snapshotId: s2, incremental: true });
    const result = await pruneArchives({ index, archives: places }, { olderThanDays: 0, now: new Date(Date.now() + 1000) });
    expect(result.deleted).toEqual([]);
    expect(result.kept).toEqual(expect.arrayContaining([{ archiveId: a1.archiveId, reason: `archive ${a2.archiveId} builds on it` }]));
  });
});

describe('treeHashAlignedRanges', () => {
  const MIB = 1024 * 1024;
  it('splits a range into the fewest subtrees Glacier sends a tree hash for', () => {
    expect(treeHashAlignedRanges(0, 8 * MIB, 100 * MIB)).toEqual([[0, 8 * MIB]]);
    expect(treeHashAlignedRanges(MIB, 3 * MIB, 100 * MIB)).toEqual([[MIB, 2 * MIB], [2 * MIB, 3 * MIB]]);
    expect(treeHashAlignedRanges(3 * MIB, 9 * MIB, 100 * MIB)).toEqual([[3 * MIB, 4 * MIB], [4 * MIB, 8 * MIB], [8 * MIB, 9 * MIB]]);
    // Reaching the end of the object: one range when its start is a multiple of the span above its length.
    expect(treeHashAlignedRanges(4 * MIB, 7 * MIB + 5, 7 * MIB + 5)).toEqual([[4 * MIB, 7 * MIB + 5]]);
    expect(treeHashAlignedRanges(3 * MIB, 5 * MIB + 1, 5 * MIB + 1)).toEqual([[3 * MIB, 4 * MIB], [4 * MIB, 5 * MIB + 1]]);
    expect(treeHashAlignedRanges(0, 10, 10)).toEqual([[0, 10]]);
    expect(treeHashAlignedRanges(5 * MIB, 5 * MIB, 9 * MIB)).toEqual([]);
    expect(() => treeHashAlignedRanges(10, 2 * MIB, 9 * MIB)).toThrow(SnaplineError);
  });
});
