import {
  CompleteSnapshotCommand,
  GetSnapshotBlockCommand,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
} from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { ACCOUNT_ID } from '../../src/emulator/index.js';
import {
  blockOf,
  changedAll,
  checksum,
  complete,
  distinctBlock,
  expectAwsError,
  expectBytes,
  get,
  listAll,
  put,
  readBack,
  snapshotWith,
  start,
  startTestEndpoint,
  TestClock,
  type TestEndpoint,
} from './helpers.js';

// The test vectors of AWS-FACTS.md.
const ONES = blockOf(0x01);
const TWOS = blockOf(0x02);
const ONES_CHECKSUM = 'M6FQvOsTwamSIx5ltPrRaBUhL8Bs20CJltMu6yzvnrs=';
const TWOS_CHECKSUM = 'Ioxb8/mw3beyMReNfgZ6/5ZqGRsfzT7Q4uNx7KM/zfw=';
const LINEAR_ONES_TWOS = 'fccGN1xyY7l5uqsw58BLULbsU8thbz9pDvzr9oCk5yk=';

let t: TestEndpoint;
const clock = new TestClock();

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now });
});
afterAll(async () => {
  await t.stop();
});

const blocks = (entries: [number, Buffer][]) => new Map(entries);

describe('StartSnapshot', () => {
  it('answers 201 with the snapshot, echoing tags, description and parent', async () => {
    const parent = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const out = await t.ebs.send(
      new StartSnapshotCommand({ VolumeSize: 2, ParentSnapshotId: parent, Tags: [{ Key: 'app', Value: 'db' }], Description: 'nightly', Timeout: 30 }),
    );
    expect(out.$metadata.httpStatusCode).toBe(201);
    expect(out.SnapshotId).toMatch(/^snap-[0-9a-f]{17}$/);
    expect(out).toMatchObject({
      OwnerId: ACCOUNT_ID,
      Status: 'pending',
      VolumeSize: 2,
      BlockSize: BLOCK_SIZE,
      Tags: [{ Key: 'app', Value: 'db' }],
      Description: 'nightly',
      ParentSnapshotId: parent,
    });
    expect(out.StartTime?.getTime()).toBe(clock.ms);
    expect(out.KmsKeyArn).toBeUndefined();
  });

  it('accepts VolumeSize 1..65536 and Timeout 10..4320, rejecting the rest', async () => {
    await start(t.ebs, { VolumeSize: 65_536, Timeout: 10 });
    await start(t.ebs, { VolumeSize: 1, Timeout: 4320 });
    await expectAwsError(start(t.ebs, { VolumeSize: 0 }), 'ValidationException', 'INVALID_VOLUME_SIZE');
    await expectAwsError(start(t.ebs, { VolumeSize: 65_537 }), 'ValidationException', 'INVALID_VOLUME_SIZE');
    await expectAwsError(start(t.ebs, { Timeout: 9 }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(start(t.ebs, { Timeout: 4321 }), 'ValidationException', 'INVALID_PARAMETER_VALUE');
  });

  it('rejects bad tags and a parent that is unknown, pending or larger', async () => {
    await expectAwsError(start(t.ebs, { Tags: [{ Key: 'aws:x', Value: 'y' }] }), 'ValidationException', 'INVALID_TAG');
    await expectAwsError(start(t.ebs, { ParentSnapshotId: 'snap-0000000000000dead' }), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
    const pending = await start(t.ebs);
    await expectAwsError(start(t.ebs, { ParentSnapshotId: pending }), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    const big = await snapshotWith(t.ebs, blocks([[0, ONES]]), { VolumeSize: 2 });
    await expectAwsError(start(t.ebs, { ParentSnapshotId: big, VolumeSize: 1 }), 'ValidationException', 'INVALID_VOLUME_SIZE');
  });

  it('is idempotent by ClientToken, and refuses the token with other arguments', async () => {
    const first = await start(t.ebs, { ClientToken: 'token-a', Description: 'one' });
    const again = await start(t.ebs, { ClientToken: 'token-a', Description: 'one' });
    expect(again).toBe(first);
    await expectAwsError(start(t.ebs, { ClientToken: 'token-a', Description: 'two' }), 'ConflictException');
  });

  it('records and echoes encryption: default key, given key, inherited by a child', async () => {
    const byDefault = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Encrypted: true }));
    expect(byDefault.KmsKeyArn).toMatch(new RegExp(`^arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/`));
    expect(byDefault.SseType).toBe('sse-kms');
    const key = `arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/11111111-2222-3333-4444-555555555555`;
    const parent = await snapshotWith(t.ebs, blocks([[0, ONES]]), { Encrypted: true, KmsKeyArn: key });
    const child = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: parent }));
    expect(child.KmsKeyArn).toBe(key);
    const described = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [parent, child.SnapshotId!] }));
    expect(described.Snapshots?.map((s) => [s.Encrypted, s.KmsKeyId])).toEqual([
      [true, key],
      [true, key],
    ]);
    const keyOnly = await t.ebs.send(new StartSnapshotCommand({ VolumeSize: 1, KmsKeyArn: key }));
    expect(keyOnly.KmsKeyArn).toBe(key);
    const foreign = 'arn:aws:kms:us-east-1:999999999999:key/11111111-2222-3333-4444-555555555555';
    await expectAwsError(start(t.ebs, { Encrypted: true, KmsKeyArn: foreign }), 'AccessDeniedException', 'DEPENDENCY_ACCESS_DENIED');
  });
});

describe('PutSnapshotBlock and CompleteSnapshot', () => {
  it('stores blocks, echoes the checksum, and completes with the LINEAR aggregate of the test vectors', async () => {
    const id = await start(t.ebs);
    const put1 = await put(t.ebs, id, 1, TWOS);
    expect(put1.$metadata.httpStatusCode).toBe(201);
    expect(put1).toMatchObject({ Checksum: TWOS_CHECKSUM, ChecksumAlgorithm: 'SHA256' });
    expect((await put(t.ebs, id, 0, ONES)).Checksum).toBe(ONES_CHECKSUM);
    const done = await t.ebs.send(
      new CompleteSnapshotCommand({ SnapshotId: id, ChangedBlocksCount: 2, Checksum: LINEAR_ONES_TWOS, ChecksumAlgorithm: 'SHA256', ChecksumAggregationMethod: 'LINEAR' }),
    );
    expect(done.$metadata.httpStatusCode).toBe(202);
    expect(done.Status).toBe('completed');
    expectBytes(await readBack(t.ebs, id, 0), ONES);
    expectBytes(await readBack(t.ebs, id, 1), TWOS);
  });

  it('overwrites a block written twice; the last write counts once', async () => {
    const id = await start(t.ebs);
    await put(t.ebs, id, 5, ONES);
    await put(t.ebs, id, 5, TWOS);
    expect(await complete(t.ebs, id, blocks([[5, TWOS]]))).toBe('completed');
    expectBytes(await readBack(t.ebs, id, 5), TWOS);
  });

  it('rejects a wrong checksum, a wrong algorithm and a Data-Length other than 524288', async () => {
    const id = await start(t.ebs);
    const base = { SnapshotId: id, BlockIndex: 0, BlockData: ONES, DataLength: BLOCK_SIZE, Checksum: ONES_CHECKSUM, ChecksumAlgorithm: 'SHA256' as const };
    const wrong = await expectAwsError(t.ebs.send(new PutSnapshotBlockCommand({ ...base, Checksum: TWOS_CHECKSUM })), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    expect(wrong.message).toMatch(/checksum/i);
    await expectAwsError(t.ebs.send(new PutSnapshotBlockCommand({ ...base, ChecksumAlgorithm: 'MD5' as 'SHA256' })), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    const small = Buffer.alloc(4096, 1);
    await expectAwsError(
      t.ebs.send(new PutSnapshotBlockCommand({ ...base, BlockData: small, DataLength: small.length, Checksum: checksum(small) })),
      'ValidationException',
      'INVALID_PARAMETER_VALUE',
    );
    await expectAwsError(t.ebs.send(new PutSnapshotBlockCommand({ ...base, Progress: 101 })), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    // Nothing landed.
    expect(await complete(t.ebs, id, new Map())).toBe('completed');
  });

  it('answers a body shorter than Data-Length with "Failed to read block data", and refuses a longer one', async () => {
    const id = await start(t.ebs);
    const short = Buffer.alloc(1000, 7);
    const err = await expectAwsError(
      t.ebs.send(new PutSnapshotBlockCommand({ SnapshotId: id, BlockIndex: 0, BlockData: short, DataLength: BLOCK_SIZE, Checksum: checksum(short), ChecksumAlgorithm: 'SHA256' })),
      'ValidationException',
      'INVALID_PARAMETER_VALUE',
    );
    expect(err.message).toBe('Failed to read block data');
    const long = Buffer.alloc(BLOCK_SIZE + 1, 7);
    await expectAwsError(
      t.ebs.send(new PutSnapshotBlockCommand({ SnapshotId: id, BlockIndex: 0, BlockData: long, DataLength: BLOCK_SIZE, Checksum: checksum(long), ChecksumAlgorithm: 'SHA256' })),
      'ValidationException',
      'INVALID_PARAMETER_VALUE',
    );
  });

  it('keeps block indexes inside VolumeSize', async () => {
    const id = await start(t.ebs, { VolumeSize: 1 });
    await put(t.ebs, id, 2047, ONES);
    await expectAwsError(put(t.ebs, id, 2048, ONES), 'ValidationException', 'INVALID_BLOCK');
  });

  it('refuses unknown and malformed snapshot ids', async () => {
    await expectAwsError(put(t.ebs, 'snap-0123456789abcdef0', 0, ONES), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
    await expectAwsError(put(t.ebs, 'not-a-snapshot', 0, ONES), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(complete(t.ebs, 'snap-0123456789abcdef0', new Map()), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
  });

  it('refuses writes to a completed snapshot, and completing it again', async () => {
    const id = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    await expectAwsError(put(t.ebs, id, 1, TWOS), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(complete(t.ebs, id, blocks([[0, ONES]])), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    expect(await listAll(t.ebs, id)).toHaveLength(1);
  });

  it('turns the snapshot to error on a wrong ChangedBlocksCount or a wrong aggregate', async () => {
    const wrongCount = await start(t.ebs);
    await put(t.ebs, wrongCount, 0, ONES);
    const countOut = await t.ebs.send(new CompleteSnapshotCommand({ SnapshotId: wrongCount, ChangedBlocksCount: 2 }));
    expect(countOut.Status).toBe('error');

    const wrongSum = await start(t.ebs);
    await put(t.ebs, wrongSum, 0, ONES);
    await put(t.ebs, wrongSum, 1, TWOS);
    // The base64 strings concatenated instead of the raw digests: a classic mistake.
    const sumOut = await t.ebs.send(
      new CompleteSnapshotCommand({
        SnapshotId: wrongSum,
        ChangedBlocksCount: 2,
        Checksum: '86bbE6nbuRJPQ9gOA9RPKIRqysjmbWn1GFlZTvem28E=',
        ChecksumAlgorithm: 'SHA256',
        ChecksumAggregationMethod: 'LINEAR',
      }),
    );
    expect(sumOut.Status).toBe('error');
    const described = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [wrongCount, wrongSum] }));
    expect(described.Snapshots?.map((s) => s.State)).toEqual(['error', 'error']);
    expect(described.Snapshots?.[0]?.StateMessage).toMatch(/ChangedBlocksCount/);
    await expectAwsError(listAll(t.ebs, wrongSum), 'ValidationException', 'INVALID_SNAPSHOT_ID');
  });

  it('requires ChangedBlocksCount and accepts only SHA256 with LINEAR', async () => {
    const id = await start(t.ebs);
    const url = `${t.emulator.url}/snapshots/completion/${id}`;
    const missing = await fetch(url, { method: 'POST' });
    expect(missing.status).toBe(400);
    expect(missing.headers.get('x-amzn-errortype')).toBe('ValidationException');
    await expectAwsError(
      t.ebs.send(new CompleteSnapshotCommand({ SnapshotId: id, ChangedBlocksCount: 0, Checksum: ONES_CHECKSUM, ChecksumAlgorithm: 'SHA256', ChecksumAggregationMethod: 'TREE' as 'LINEAR' })),
      'ValidationException',
      'INVALID_PARAMETER_VALUE',
    );
  });

  it('counts only blocks written in the snapshot itself for the aggregate, not inherited ones', async () => {
    const parent = await snapshotWith(t.ebs, blocks([[0, ONES], [1, TWOS]]));
    const child = await start(t.ebs, { ParentSnapshotId: parent });
    await put(t.ebs, child, 3, ONES);
    expect(await complete(t.ebs, child, blocks([[3, ONES]]))).toBe('completed');
  });

  it('cancels a pending snapshot idle for Timeout minutes; each write restarts the wait', async () => {
    const id = await start(t.ebs, { Timeout: 10 });
    clock.advance(9 * 60_000);
    await put(t.ebs, id, 0, ONES);
    clock.advance(9 * 60_000);
    await put(t.ebs, id, 1, ONES);
    clock.advance(10 * 60_000);
    await expectAwsError(put(t.ebs, id, 2, ONES), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    const described = await t.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
    expect(described.Snapshots?.[0]?.State).toBe('error');
    await expectAwsError(complete(t.ebs, id, blocks([[0, ONES], [1, ONES]])), 'ValidationException', 'INVALID_SNAPSHOT_ID');
  });

  it('refuses a second write of a block while the first is still arriving (CONFLICTING_BLOCK_UPDATE)', async () => {
    const id = await start(t.ebs);
    const { request } = await import('node:http');
    const url = new URL(`${t.emulator.url}/snapshots/${id}/blocks/9`);
    const slow = request(url, {
      method: 'PUT',
      headers: { 'content-length': BLOCK_SIZE, 'x-amz-data-length': BLOCK_SIZE, 'x-amz-checksum': ONES_CHECKSUM, 'x-amz-checksum-algorithm': 'SHA256' },
    });
    const slowAnswer = new Promise<number>((resolve, reject) => {
      slow.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      slow.on('error', reject);
    });
    const putsBefore = t.emulator.stats().operations.PutSnapshotBlock?.requests ?? 0;
    slow.write(ONES.subarray(0, 1000));
    // Wait until the endpoint has taken the first request (counted as soon as its headers are in, claimed right after).
    while ((t.emulator.stats().operations.PutSnapshotBlock?.requests ?? 0) === putsBefore) await new Promise((r) => setTimeout(r, 5));
    await expectAwsError(put(t.ebs, id, 9, ONES), 'ValidationException', 'CONFLICTING_BLOCK_UPDATE');
    slow.end(ONES.subarray(1000));
    expect(await slowAnswer).toBe(201);
    expect(await complete(t.ebs, id, blocks([[9, ONES]]))).toBe('completed');
  });
});

describe('reading: ListSnapshotBlocks, GetSnapshotBlock, tokens', () => {
  it('reads a snapshot only once completed', async () => {
    const id = await start(t.ebs);
    await put(t.ebs, id, 0, ONES);
    await expectAwsError(listAll(t.ebs, id), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(changedAll(t.ebs, undefined, id), 'ValidationException', 'INVALID_SNAPSHOT_ID');
    await expectAwsError(get(t.ebs, id, 0, 'AAAA'), 'ValidationException', 'INVALID_SNAPSHOT_ID');
  });

  it('answers the block with its checksum headers', async () => {
    const id = await snapshotWith(t.ebs, blocks([[7, TWOS]]));
    const [block] = await listAll(t.ebs, id);
    const { data, ...headers } = await get(t.ebs, id, 7, block!.BlockToken!);
    expectBytes(data, TWOS);
    expect(headers).toEqual({ checksum: TWOS_CHECKSUM, algorithm: 'SHA256', dataLength: BLOCK_SIZE });
  });

  it('checks block tokens: another index, another snapshot, forged and expired ones are refused', async () => {
    const a = await snapshotWith(t.ebs, blocks([[0, ONES], [1, TWOS]]));
    const b = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const [a0, a1] = await listAll(t.ebs, a);
    const [b0] = await listAll(t.ebs, b);
    await expectAwsError(get(t.ebs, a, 0, a1!.BlockToken!), 'ValidationException', 'INVALID_BLOCK_TOKEN');
    await expectAwsError(get(t.ebs, a, 0, b0!.BlockToken!), 'ValidationException', 'INVALID_BLOCK_TOKEN');
    await expectAwsError(get(t.ebs, a, 0, 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), 'ValidationException', 'INVALID_BLOCK_TOKEN');
    await expectAwsError(t.ebs.send(new GetSnapshotBlockCommand({ SnapshotId: a, BlockIndex: 0, BlockToken: '' })), 'ValidationException', 'INVALID_BLOCK_TOKEN');
    const listing = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: a }));
    expect(listing.ExpiryTime?.getTime()).toBe(Math.floor((clock.ms + 7 * 24 * 3600_000) / 1000) * 1000);
    clock.advance(7 * 24 * 3600_000 + 1000);
    await expectAwsError(get(t.ebs, a, 0, a0!.BlockToken!), 'ValidationException', 'INVALID_BLOCK_TOKEN');
    const [fresh] = await listAll(t.ebs, a);
    expectBytes((await get(t.ebs, a, 0, fresh!.BlockToken!)).data, ONES);
  });
});

describe('lineage and ListChangedBlocks', () => {
  // P: 0=A 1=B 2=C;  C1 (child of P): 1=D 3=E 0=A (same bytes as P's);  G (child of C1): 2=F;  S (sibling, child of P): 4=G
  const A = distinctBlock(1);
  const B = distinctBlock(2);
  const C = distinctBlock(3);
  const D = distinctBlock(4);
  const E = distinctBlock(5);
  const F = distinctBlock(6);
  const G = distinctBlock(7);
  let P: string;
  let C1: string;
  let GC: string;
  let S: string;

  beforeAll(async () => {
    P = await snapshotWith(t.ebs, blocks([[0, A], [1, B], [2, C]]));
    C1 = await snapshotWith(t.ebs, blocks([[1, D], [3, E], [0, A]]), { ParentSnapshotId: P });
    GC = await snapshotWith(t.ebs, blocks([[2, F]]), { ParentSnapshotId: C1, VolumeSize: 2 });
    S = await snapshotWith(t.ebs, blocks([[4, G]]), { ParentSnapshotId: P });
  });

  const shape = (changed: { BlockIndex?: number; FirstBlockToken?: string; SecondBlockToken?: string }[]) =>
    changed.map((c) => [c.BlockIndex, c.FirstBlockToken !== undefined, c.SecondBlockToken !== undefined]);

  it('a child lists inherited and written blocks and reads inherited ones', async () => {
    expect((await listAll(t.ebs, C1)).map((b) => b.BlockIndex)).toEqual([0, 1, 2, 3]);
    expectBytes(await readBack(t.ebs, C1, 2), C);
    expectBytes(await readBack(t.ebs, C1, 1), D);
    expect((await listAll(t.ebs, GC)).map((b) => b.BlockIndex)).toEqual([0, 1, 2, 3]);
    expectBytes(await readBack(t.ebs, GC, 2), F);
    expectBytes(await readBack(t.ebs, GC, 3), E);
    expectBytes(await readBack(t.ebs, P, 1), B);
  });

  it('parent to child: written blocks, with the first token only where the parent has the block', async () => {
    // Block 0 was rewritten with the parent's bytes: AWS compares writes, not content, so it is listed.
    expect(shape(await changedAll(t.ebs, P, C1))).toEqual([
      [0, true, true],
      [1, true, true],
      [3, false, true],
    ]);
  });

  it('child to parent (reverse order): the same blocks, tokens swapped', async () => {
    expect(shape(await changedAll(t.ebs, C1, P))).toEqual([
      [0, true, true],
      [1, true, true],
      [3, true, false],
    ]);
  });

  it('grandparent and grandchild, both orders', async () => {
    expect(shape(await changedAll(t.ebs, P, GC))).toEqual([
      [0, true, true],
      [1, true, true],
      [2, true, true],
      [3, false, true],
    ]);
    expect(shape(await changedAll(t.ebs, GC, P))).toEqual([
      [0, true, true],
      [1, true, true],
      [2, true, true],
      [3, true, false],
    ]);
    expect((await changedAll(t.ebs, GC, GC)).length).toBe(0);
  });

  it('siblings: the blocks written on either side', async () => {
    expect(shape(await changedAll(t.ebs, C1, S))).toEqual([
      [0, true, true],
      [1, true, true],
      [3, true, false],
      [4, false, true],
    ]);
  });

  it('the tokens read the right bytes from each snapshot', async () => {
    const changed = await changedAll(t.ebs, P, GC);
    const two = changed.find((c) => c.BlockIndex === 2)!;
    expectBytes((await get(t.ebs, P, 2, two.FirstBlockToken!)).data, C);
    expectBytes((await get(t.ebs, GC, 2, two.SecondBlockToken!)).data, F);
    await expectAwsError(get(t.ebs, GC, 2, two.FirstBlockToken!), 'ValidationException', 'INVALID_BLOCK_TOKEN');
  });

  it('without a first snapshot lists every block of the second', async () => {
    const all = await t.ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: GC }));
    expect(shape(all.ChangedBlocks ?? [])).toEqual([0, 1, 2, 3].map((i) => [i, false, true]));
    expect(all.VolumeSize).toBe(2);
  });

  it('refuses snapshots of unrelated lineages', async () => {
    const other = await snapshotWith(t.ebs, blocks([[0, A]]));
    await expectAwsError(changedAll(t.ebs, other, C1), 'ValidationException', 'UNRELATED_SNAPSHOTS');
  });

  it('a deleted parent leaves its children whole', async () => {
    const { DeleteSnapshotCommand } = await import('@aws-sdk/client-ec2');
    const base = await snapshotWith(t.ebs, blocks([[0, A], [1, B]]));
    const mid = await snapshotWith(t.ebs, blocks([[1, C]]), { ParentSnapshotId: base });
    const leaf = await snapshotWith(t.ebs, blocks([[2, D]]), { ParentSnapshotId: mid });
    await t.ec2.send(new DeleteSnapshotCommand({ SnapshotId: mid }));
    await t.ec2.send(new DeleteSnapshotCommand({ SnapshotId: base }));
    expect((await listAll(t.ebs, leaf)).map((b) => b.BlockIndex)).toEqual([0, 1, 2]);
    expectBytes(await readBack(t.ebs, leaf, 0), A);
    expectBytes(await readBack(t.ebs, leaf, 1), C);
    await expectAwsError(listAll(t.ebs, base), 'ResourceNotFoundException', 'SNAPSHOT_NOT_FOUND');
  });
});

describe('pagination', () => {
  let big: string;
  let child: string;
  beforeAll(async () => {
    // 250 blocks of the same bytes: stored once, listed 250 times.
    const written = new Map<number, Buffer>();
    for (let i = 0; i < 250; i += 1) written.set(i * 3, ONES);
    big = await start(t.ebs, { VolumeSize: 1 });
    await Promise.all([...written].map(([index, data]) => put(t.ebs, big, index, data)));
    expect(await complete(t.ebs, big, written)).toBe('completed');
    const changed = new Map<number, Buffer>();
    for (let i = 0; i < 120; i += 1) changed.set(i * 6 + 1, TWOS);
    child = await start(t.ebs, { ParentSnapshotId: big });
    await Promise.all([...changed].map(([index, data]) => put(t.ebs, child, index, data)));
    expect(await complete(t.ebs, child, changed)).toBe('completed');
  });

  it('pages by MaxResults with a NextToken, sorted and unique', async () => {
    const first = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100 }));
    expect(first.Blocks).toHaveLength(100);
    expect(first.NextToken).toBeDefined();
    const all = await listAll(t.ebs, big, 100);
    const indexes = all.map((b) => b.BlockIndex!);
    expect(indexes).toEqual(Array.from({ length: 250 }, (_, i) => i * 3));
    const last = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, StartingBlockIndex: 700 }));
    expect(last.Blocks?.map((b) => b.BlockIndex)).toEqual([702, 705, 708, 711, 714, 717, 720, 723, 726, 729, 732, 735, 738, 741, 744, 747]);
    expect(last.NextToken).toBeUndefined();
  });

  it('lets NextToken win over StartingBlockIndex', async () => {
    const first = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100 }));
    const second = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100, NextToken: first.NextToken, StartingBlockIndex: 0 }));
    expect(second.Blocks?.[0]?.BlockIndex).toBe(300);
  });

  it('pages ListChangedBlocks too', async () => {
    const changed = await changedAll(t.ebs, big, child, 100);
    expect(changed.map((c) => c.BlockIndex)).toEqual(Array.from({ length: 120 }, (_, i) => i * 6 + 1));
    expect(changed.every((c) => c.FirstBlockToken === undefined && c.SecondBlockToken !== undefined)).toBe(true);
  });

  it('validates MaxResults 100..10000', async () => {
    await expectAwsError(t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 99 })), 'ValidationException', 'INVALID_PARAMETER_VALUE');
    await expectAwsError(t.ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: big, MaxResults: 10_001 })), 'ValidationException', 'INVALID_PARAMETER_VALUE');
  });

  it('refuses a NextToken that is foreign, forged or older than 60 minutes', async () => {
    const page = await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, MaxResults: 100 }));
    await expectAwsError(t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: child, NextToken: page.NextToken })), 'ValidationException', 'INVALID_PAGE_TOKEN');
    await expectAwsError(t.ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: big, NextToken: page.NextToken })), 'ValidationException', 'INVALID_PAGE_TOKEN');
    await expectAwsError(t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, NextToken: 'Zm9yZ2Vk' })), 'ValidationException', 'INVALID_PAGE_TOKEN');
    clock.advance(59 * 60_000);
    await t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, NextToken: page.NextToken }));
    clock.advance(2 * 60_000);
    await expectAwsError(t.ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: big, NextToken: page.NextToken })), 'ValidationException', 'INVALID_PAGE_TOKEN');
  });
});

describe('the wire format, without the SDK', () => {
  it('answers JSON numbers and AWS error bodies', async () => {
    const started = await fetch(`${t.emulator.url}/snapshots`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"VolumeSize":1}' });
    expect(started.status).toBe(201);
    const body = (await started.json()) as Record<string, unknown>;
    expect(typeof body.VolumeSize).toBe('number');
    expect(typeof body.BlockSize).toBe('number');
    expect(typeof body.StartTime).toBe('number');

    const missing = await fetch(`${t.emulator.url}/snapshots/snap-0123456789abcdef0/blocks`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('x-amzn-errortype')).toBe('ResourceNotFoundException');
    expect(await missing.json()).toEqual({ Message: "The snapshot 'snap-0123456789abcdef0' does not exist.", Reason: 'SNAPSHOT_NOT_FOUND' });

    const done = await snapshotWith(t.ebs, blocks([[0, ONES]]));
    const listing = (await (await fetch(`${t.emulator.url}/snapshots/${done}/blocks?maxResults=100`)).json()) as Record<string, unknown>;
    expect(typeof listing.ExpiryTime).toBe('number');
    expect(listing.VolumeSize).toBe(1);
    expect(listing.BlockSize).toBe(BLOCK_SIZE);
    expect(listing.Blocks).toEqual([{ BlockIndex: 0, BlockToken: expect.stringMatching(/^[A-Za-z0-9+/=]+$/) }]);
  });

  it('answers malformed requests with AWS errors', async () => {
    const badJson = await fetch(`${t.emulator.url}/snapshots`, { method: 'POST', body: '{"VolumeSize":' });
    expect(badJson.status).toBe(400);
    expect(badJson.headers.get('x-amzn-errortype')).toBe('ValidationException');
    const wrongType = await fetch(`${t.emulator.url}/snapshots`, { method: 'POST', body: '{"VolumeSize":"1"}' });
    expect(((await wrongType.json()) as { Reason: string }).Reason).toBe('INVALID_VOLUME_SIZE');
    const unknown = await fetch(`${t.emulator.url}/snapshots/snap-01/nothing`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get('x-amzn-errortype')).toBe('UnknownOperationException');
    const badIndex = await fetch(`${t.emulator.url}/snapshots/snap-01/blocks/-1?blockToken=AAAA`);
    expect(((await badIndex.json()) as { Reason: string }).Reason).toBe('INVALID_BLOCK');
    const badEscape = await fetch(`${t.emulator.url}/snapshots/%E0%A4%A/blocks`);
    expect(((await badEscape.json()) as { Reason: string }).Reason).toBe('INVALID_SNAPSHOT_ID');
  });
});

describe('quotas', () => {
  it('ConcurrentLimitExceededException past the pending snapshots quota, ServiceQuotaExceededException past the snapshots quota', async () => {
    const small = await startTestEndpoint({ limits: { maxPendingSnapshots: 2, maxSnapshots: 3 } });
    try {
      const first = await start(small.ebs);
      const second = await start(small.ebs);
      await expectAwsError(start(small.ebs), 'ConcurrentLimitExceededException');
      expect(await complete(small.ebs, first, new Map())).toBe('completed');
      expect(await complete(small.ebs, second, new Map())).toBe('completed');
      await start(small.ebs);
      const quota = await expectAwsError(start(small.ebs), 'ServiceQuotaExceededException', 'DEPENDENCY_SERVICE_QUOTA_EXCEEDED');
      expect((quota as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode).toBe(402);
    } finally {
      await small.stop();
    }
  });
});
