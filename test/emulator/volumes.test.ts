import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DeleteVolumeCommand,
  DescribeFastSnapshotRestoresCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  DisableFastSnapshotRestoresCommand,
  EnableFastSnapshotRestoresCommand,
  type CreateVolumeCommandInput,
} from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { ACCOUNT_ID } from '../../src/emulator/index.js';
import { VOLUME_DELAYS_MS } from '../../src/emulator/ec2/volumes.js';
import { blockOf, distinctBlock, expectAwsError, snapshotWith, startTestEndpoint, tempDir, TestClock, type TestEndpoint } from './helpers.js';

const ZONE = 'us-east-1a';
const OTHER_ZONE = 'us-east-1b';
const clock = new TestClock();
let t: TestEndpoint;
let instanceA: string;
let instanceB: string;

beforeAll(async () => {
  t = await startTestEndpoint({ now: clock.now, instances: { [OTHER_ZONE]: 1 } });
  instanceA = t.emulator.createInstances(ZONE, 1)[0]!;
  instanceB = (await t.ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!).find((i) => i.Placement?.AvailabilityZone === OTHER_ZONE)!.InstanceId!;
});
afterAll(() => t?.stop());

async function volumeOf(volumeId: string) {
  return (await t.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]!;
}

async function create(input: Partial<CreateVolumeCommandInput>): Promise<string> {
  const out = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, ...input }));
  return out.VolumeId!;
}

/** A volume made and past creating. */
async function availableVolume(input: Partial<CreateVolumeCommandInput>): Promise<string> {
  const id = await create(input);
  clock.advance(VOLUME_DELAYS_MS.create);
  return id;
}

async function readVolume(volumeId: string, offset: number, length: number): Promise<{ status: number; data: Buffer }> {
  const res = await fetch(`${t.emulator.url}/_snapline/volumes/${volumeId}?offset=${offset}&length=${length}`);
  return { status: res.status, data: Buffer.from(await res.arrayBuffer()) };
}

describe('CreateVolume and DescribeVolumes', () => {
  it('a volume from a snapshot is creating, then available with its size, type, zone, source and tags', async () => {
    const snapshotId = await snapshotWith(t.ebs, new Map([[0, blockOf(1)]]), { VolumeSize: 2 });
    const out = await t.ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: ZONE,
        SnapshotId: snapshotId,
        VolumeType: 'gp3',
        TagSpecifications: [{ ResourceType: 'volume', Tags: [{ Key: 'purpose', Value: 'dr' }] }],
      }),
    );
    expect(out).toMatchObject({ State: 'creating', Size: 2, SnapshotId: snapshotId, AvailabilityZone: ZONE, VolumeType: 'gp3', Iops: 3000, Throughput: 125, Encrypted: false });
    expect((await volumeOf(out.VolumeId!)).State).toBe('creating');
    clock.advance(VOLUME_DELAYS_MS.create);
    expect(await volumeOf(out.VolumeId!)).toMatchObject({ State: 'available', Size: 2, SnapshotId: snapshotId, Tags: [{ Key: 'purpose', Value: 'dr' }] });
    const filtered = await t.ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'tag:purpose', Values: ['d*'] }] }));
    expect(filtered.Volumes?.map((v) => v.VolumeId)).toContain(out.VolumeId);
  });

  it('a volume from an incremental snapshot holds the whole disk, read back through the endpoint route; grown, zeros past the snapshot', async () => {
    const parent = await snapshotWith(t.ebs, new Map([[0, distinctBlock(10)], [1, distinctBlock(11)], [3, distinctBlock(13)]]));
    const child = await snapshotWith(t.ebs, new Map([[1, distinctBlock(21)]]), { ParentSnapshotId: parent });
    const volumeId = await create({ SnapshotId: child, Size: 2 });
    expect((await readVolume(volumeId, 0, BLOCK_SIZE)).status).toBe(409);
    clock.advance(VOLUME_DELAYS_MS.create);
    const { status, data } = await readVolume(volumeId, 0, 5 * BLOCK_SIZE);
    expect(status).toBe(200);
    expect(data.equals(Buffer.concat([distinctBlock(10), distinctBlock(21), Buffer.alloc(BLOCK_SIZE), distinctBlock(13), Buffer.alloc(BLOCK_SIZE)]))).toBe(true);
    const pastTheSnapshot = await readVolume(volumeId, 1024 * 1024 * 1024 + BLOCK_SIZE, BLOCK_SIZE);
    expect(pastTheSnapshot.data.equals(Buffer.alloc(BLOCK_SIZE))).toBe(true);
  });

  it('refuses a size smaller than the snapshot, an unknown snapshot, an unknown zone, and a size out of the type range', async () => {
    const snapshotId = await snapshotWith(t.ebs, new Map([[0, blockOf(2)]]), { VolumeSize: 4 });
    const small = await expectAwsError(create({ SnapshotId: snapshotId, Size: 3 }), 'InvalidParameterValue');
    expect(small.message).toContain(`smaller than snapshot '${snapshotId}'`);
    await expectAwsError(create({ SnapshotId: 'snap-0123456789abcdef0' }), 'InvalidSnapshot.NotFound');
    await expectAwsError(create({ SnapshotId: snapshotId, AvailabilityZone: 'us-east-1z' }), 'InvalidParameterValue');
    await expectAwsError(create({ SnapshotId: snapshotId, AvailabilityZone: 'eu-west-1a' }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 16_385, VolumeType: 'gp2' }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 65_537, VolumeType: 'gp3' }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 2, VolumeType: 'io1', Iops: 100 }), 'InvalidParameterValue');
    await expectAwsError(create({}), 'MissingParameter');
  });

  it('gp3 is 1 to 65,536 GiB (gp2 1 to 16,384)', async () => {
    expect((await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 65_536, VolumeType: 'gp3' }))).Size).toBe(65_536);
    expect((await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 16_384, VolumeType: 'gp2' }))).Size).toBe(16_384);
  });

  it('io1 and io2 need Iops in their range; gp3 takes Iops 3000..80000 and Throughput 125..2000; other types take neither', async () => {
    const gp3 = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 200, VolumeType: 'gp3', Iops: 80_000, Throughput: 2000 }));
    expect(gp3).toMatchObject({ Iops: 80_000, Throughput: 2000 });
    await expectAwsError(create({ Size: 200, VolumeType: 'gp3', Iops: 80_001 }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 8, VolumeType: 'gp3', Throughput: 2001 }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 8, VolumeType: 'io1' }), 'MissingParameter');
    await expectAwsError(create({ Size: 8, VolumeType: 'io2' }), 'MissingParameter');
    await expectAwsError(create({ Size: 8, VolumeType: 'io1', Iops: 64_001 }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 8, VolumeType: 'io2', Iops: 99 }), 'InvalidParameterValue');
    expect((await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 256, VolumeType: 'io2', Iops: 256_000 }))).Iops).toBe(256_000);
    await expectAwsError(create({ Size: 8, VolumeType: 'gp3', Iops: 2999 }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 8, VolumeType: 'gp3', Throughput: 124 }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 8, VolumeType: 'gp2', Iops: 3000 }), 'InvalidParameterCombination');
    await expectAwsError(create({ Size: 8, VolumeType: 'io1', Iops: 1000, Throughput: 200 }), 'InvalidParameterCombination');
    await expectAwsError(create({ Size: 8, VolumeType: 'ssd' as CreateVolumeCommandInput['VolumeType'] }), 'InvalidParameterValue');
  });

  it('IOPS per GiB: io1 at most 50, io2 at most 1,000, gp3 at most 500 above its 3,000; gp3 throughput at most 0.25 MiB/s per IOPS above 125', async () => {
    const made = (input: Partial<CreateVolumeCommandInput>) => t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, ...input }));
    expect((await made({ Size: 4, VolumeType: 'io1', Iops: 200 })).Iops).toBe(200);
    await expectAwsError(create({ Size: 4, VolumeType: 'io1', Iops: 201 }), 'InvalidParameterValue');
    expect((await made({ Size: 4, VolumeType: 'io2', Iops: 4000 })).Iops).toBe(4000);
    await expectAwsError(create({ Size: 4, VolumeType: 'io2', Iops: 4001 }), 'InvalidParameterValue');
    expect((await made({ Size: 1, VolumeType: 'gp3', Iops: 3000 })).Iops).toBe(3000);
    expect((await made({ Size: 10, VolumeType: 'gp3', Iops: 5000 })).Iops).toBe(5000);
    await expectAwsError(create({ Size: 10, VolumeType: 'gp3', Iops: 5001 }), 'InvalidParameterValue');
    expect((await made({ Size: 1, VolumeType: 'gp3', Throughput: 750 })).Throughput).toBe(750);
    await expectAwsError(create({ Size: 1, VolumeType: 'gp3', Throughput: 751 }), 'InvalidParameterValue');
    expect((await made({ Size: 8, VolumeType: 'gp3', Iops: 4000, Throughput: 1000 })).Throughput).toBe(1000);
  });

  it('KmsKeyId needs Encrypted; an unknown key is found out after the call: the volume ends in state error', async () => {
    await expectAwsError(create({ Size: 1, KmsKeyId: 'alias/aws/ebs' }), 'InvalidParameterDependency');
    const good = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1, Encrypted: true, KmsKeyId: 'alias/aws/ebs' }));
    expect(good.KmsKeyId).toMatch(new RegExp(`^arn:aws:kms:us-east-1:${ACCOUNT_ID}:key/`));
    const unknown = await create({ Size: 1, Encrypted: true, KmsKeyId: 'arn:aws:kms:us-east-1:999999999999:key/00000000-0000-4000-8000-000000000000' });
    expect((await volumeOf(unknown)).State).toBe('creating');
    clock.advance(VOLUME_DELAYS_MS.create);
    expect((await volumeOf(unknown)).State).toBe('error');
    expect((await volumeOf(good.VolumeId!)).State).toBe('available');
  });

  it('a volume from an encrypted snapshot is encrypted with its key', async () => {
    const snapshotId = await snapshotWith(t.ebs, new Map([[0, blockOf(3)]]), { Encrypted: true });
    const out = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, SnapshotId: snapshotId }));
    expect(out).toMatchObject({ Encrypted: true });
    expect(out.KmsKeyId).toMatch(/^arn:aws:kms:/);
  });
});

describe('CreateVolume idempotency (ClientToken)', () => {
  it('a token is at most 64 ASCII characters: longer or other characters are InvalidParameterValue, nothing made', async () => {
    const count = async () => (await t.ec2.send(new DescribeVolumesCommand({}))).Volumes!.length;
    const before = await count();
    await expectAwsError(create({ Size: 1, ClientToken: 'x'.repeat(65) }), 'InvalidParameterValue');
    await expectAwsError(create({ Size: 1, ClientToken: 'restore-é' }), 'InvalidParameterValue');
    expect(await count()).toBe(before);
    await create({ Size: 1, ClientToken: 'x'.repeat(64) });
    expect(await count()).toBe(before + 1);
  });

  it('the same token and parameters answer the volume made first, making none; other parameters are IdempotentParameterMismatch', async () => {
    const count = async () => (await t.ec2.send(new DescribeVolumesCommand({}))).Volumes!.length;
    const first = await create({ Size: 4, VolumeType: 'gp3', ClientToken: 'restore-run-1' });
    const before = await count();
    expect(await create({ Size: 4, VolumeType: 'gp3', ClientToken: 'restore-run-1' })).toBe(first);
    expect(await count()).toBe(before);
    await expectAwsError(create({ Size: 5, VolumeType: 'gp3', ClientToken: 'restore-run-1' }), 'IdempotentParameterMismatch');
    expect(await count()).toBe(before);
    // Another token, the same parameters: another volume.
    expect(await create({ Size: 4, VolumeType: 'gp3', ClientToken: 'restore-run-2' })).not.toBe(first);
  });

  it('a token whose volume was deleted and is gone from listings is forgotten with it: the same request makes a new volume', async () => {
    const first = await availableVolume({ Size: 3, ClientToken: 'deleted-then-again' });
    await t.ec2.send(new DeleteVolumeCommand({ VolumeId: first }));
    clock.advance(VOLUME_DELAYS_MS.delete);
    await expectAwsError(t.ec2.send(new DescribeVolumesCommand({ VolumeIds: [first] })), 'InvalidVolume.NotFound');
    const again = await create({ Size: 3, ClientToken: 'deleted-then-again' });
    expect(again).not.toBe(first);
    expect((await t.ec2.send(new DescribeVolumesCommand({ VolumeIds: [again] }))).Volumes![0]).toMatchObject({ State: 'creating', Size: 3 });
  });
});

describe('DescribeVolumes paging (MaxResults, NextToken)', () => {
  // Its own endpoint, so that it knows every volume there is.
  let p: TestEndpoint;
  let made: string[];
  beforeAll(async () => {
    p = await startTestEndpoint({ now: clock.now });
    made = [];
    for (let i = 0; i < 12; i++) made.push((await p.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 }))).VolumeId!);
  });
  afterAll(() => p?.stop());

  async function allPages(maxResults: number, filters?: { Name: string; Values: string[] }[]): Promise<{ sizes: number[]; ids: string[] }> {
    const sizes: number[] = [];
    const ids: string[] = [];
    let token: string | undefined;
    do {
      const out = await p.ec2.send(new DescribeVolumesCommand({ MaxResults: maxResults, NextToken: token, Filters: filters }));
      sizes.push(out.Volumes!.length);
      ids.push(...out.Volumes!.map((v) => v.VolumeId!));
      token = out.NextToken;
    } while (token !== undefined);
    return { sizes, ids };
  }

  it('without MaxResults every volume comes in one answer, with no NextToken', async () => {
    const out = await p.ec2.send(new DescribeVolumesCommand({}));
    expect(out.Volumes!.map((v) => v.VolumeId).sort()).toEqual([...made].sort());
    expect(out.NextToken).toBeUndefined();
  });

  it('pages of MaxResults, each NextToken continuing where the page ended, cover every volume once; the last page has no NextToken', async () => {
    const { sizes, ids } = await allPages(5);
    expect(sizes).toEqual([5, 5, 2]);
    expect(ids.sort()).toEqual([...made].sort());
    // Filters apply across pages too.
    await p.ec2.send(new CreateVolumeCommand({ AvailabilityZone: OTHER_ZONE, Size: 1 }));
    const inZone = await allPages(5, [{ Name: 'availability-zone', Values: [ZONE] }]);
    expect(inZone.ids.sort()).toEqual([...made].sort());
  });

  it('MaxResults below 5 is InvalidParameterValue', async () => {
    await expectAwsError(p.ec2.send(new DescribeVolumesCommand({ MaxResults: 4 })), 'InvalidParameterValue');
    expect((await p.ec2.send(new DescribeVolumesCommand({ MaxResults: 5 }))).Volumes).toHaveLength(5);
  });

  it('MaxResults cannot go with VolumeIds: InvalidParameterCombination', async () => {
    await expectAwsError(p.ec2.send(new DescribeVolumesCommand({ MaxResults: 5, VolumeIds: [made[0]!] })), 'InvalidParameterCombination');
  });

  it('a NextToken the endpoint did not give is refused', async () => {
    await expectAwsError(p.ec2.send(new DescribeVolumesCommand({ MaxResults: 5, NextToken: 'not-a-token' })), 'InvalidNextToken');
  });

  it('MaxResults above 500 answers 500 volumes a page', async () => {
    const more = 501 - (await p.ec2.send(new DescribeVolumesCommand({}))).Volumes!.length;
    for (let i = 0; i < more; i += 25) {
      await Promise.all(Array.from({ length: Math.min(25, more - i) }, () => p.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 }))));
    }
    const first = await p.ec2.send(new DescribeVolumesCommand({ MaxResults: 1000 }));
    expect(first.Volumes).toHaveLength(500);
    const second = await p.ec2.send(new DescribeVolumesCommand({ MaxResults: 1000, NextToken: first.NextToken }));
    expect(second.Volumes).toHaveLength(1);
    expect(second.NextToken).toBeUndefined();
  });
});

describe('AttachVolume, DetachVolume, DeleteVolume and DescribeInstances', () => {
  it('attaching -> attached (in-use, shown on the instance), detaching -> available, deleting -> gone', async () => {
    const volumeId = await availableVolume({ Size: 1 });
    const attach = await t.ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceA, Device: '/dev/sdf' }));
    expect(attach).toMatchObject({ State: 'attaching', InstanceId: instanceA, Device: '/dev/sdf' });
    expect((await volumeOf(volumeId)).State).toBe('in-use');
    clock.advance(VOLUME_DELAYS_MS.attach);
    expect((await volumeOf(volumeId)).Attachments).toMatchObject([{ State: 'attached', InstanceId: instanceA, Device: '/dev/sdf' }]);
    const instance = (await t.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceA] }))).Reservations![0]!.Instances![0]!;
    expect(instance).toMatchObject({ State: { Name: 'running' }, Placement: { AvailabilityZone: ZONE } });
    expect(instance.BlockDeviceMappings).toMatchObject([{ DeviceName: '/dev/sdf', Ebs: { VolumeId: volumeId, Status: 'attached' } }]);

    await expectAwsError(t.ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId })), 'VolumeInUse');
    expect((await t.ec2.send(new DetachVolumeCommand({ VolumeId: volumeId }))).State).toBe('detaching');
    expect((await volumeOf(volumeId)).State).toBe('in-use');
    clock.advance(VOLUME_DELAYS_MS.detach);
    expect(await volumeOf(volumeId)).toMatchObject({ State: 'available', Attachments: [] });
    await expectAwsError(t.ec2.send(new DetachVolumeCommand({ VolumeId: volumeId })), 'IncorrectState');

    await t.ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
    expect((await volumeOf(volumeId)).State).toBe('deleting');
    clock.advance(VOLUME_DELAYS_MS.delete);
    await expectAwsError(t.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] })), 'InvalidVolume.NotFound');
  });

  it('refuses a volume that is not available, another zone, a device in use, an unknown instance and a bad device name', async () => {
    const creating = await create({ Size: 1 });
    await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: instanceA, Device: '/dev/sdg' })), 'IncorrectState');
    clock.advance(VOLUME_DELAYS_MS.create);
    await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: instanceB, Device: '/dev/sdg' })), 'InvalidVolume.ZoneMismatch');
    await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: 'i-0123456789abcdef0', Device: '/dev/sdg' })), 'InvalidInstanceID.NotFound');
    await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: instanceA, Device: 'sdg' })), 'InvalidParameterValue');
    await t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: instanceA, Device: '/dev/sdg' }));
    await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: creating, InstanceId: instanceA, Device: '/dev/sdh' })), 'VolumeInUse');
    const second = await availableVolume({ Size: 1 });
    const inUse = await expectAwsError(t.ec2.send(new AttachVolumeCommand({ VolumeId: second, InstanceId: instanceA, Device: '/dev/sdg' })), 'InvalidParameterValue');
    expect(inUse.message).toContain('already in use');
    await expectAwsError(t.ec2.send(new DescribeVolumesCommand({ VolumeIds: ['vol-0123456789abcdef0'] })), 'InvalidVolume.NotFound');
  });

  it('instances are made through the admin route in a known zone', async () => {
    const made = await fetch(`${t.emulator.url}/_snapline/instances`, { method: 'POST', body: JSON.stringify({ availabilityZone: 'us-east-1c', count: 2 }) });
    const { instanceIds } = (await made.json()) as { instanceIds: string[] };
    expect(instanceIds).toHaveLength(2);
    const described = await t.ec2.send(new DescribeInstancesCommand({ InstanceIds: instanceIds }));
    expect(described.Reservations?.flatMap((r) => r.Instances!.map((i) => i.Placement?.AvailabilityZone))).toEqual(['us-east-1c', 'us-east-1c']);
    const bad = await fetch(`${t.emulator.url}/_snapline/instances`, { method: 'POST', body: JSON.stringify({ availabilityZone: 'mars-1a' }) });
    expect(bad.status).toBe(400);
  });
});

describe('fast snapshot restore', () => {
  it('enabling -> optimizing (60 minutes per TiB) -> enabled; a volume made then is available at once; disabling -> disabled', async () => {
    const snapshotId = await snapshotWith(t.ebs, new Map([[0, blockOf(7)]]), { VolumeSize: 16 });
    const state = async () =>
      (await t.ec2.send(new DescribeFastSnapshotRestoresCommand({ Filters: [{ Name: 'snapshot-id', Values: [snapshotId] }] }))).FastSnapshotRestores?.map((r) => [r.AvailabilityZone, r.State]);
    const enabled = await t.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [ZONE] }));
    expect(enabled.Successful).toMatchObject([{ SnapshotId: snapshotId, AvailabilityZone: ZONE, State: 'enabling', OwnerId: ACCOUNT_ID }]);
    expect(enabled.Unsuccessful).toEqual([]);
    clock.advance(VOLUME_DELAYS_MS.fsrEnabling);
    expect(await state()).toEqual([[ZONE, 'optimizing']]);
    // 16 GiB at 60 minutes per TiB: 56.25 s.
    clock.advance(16 * VOLUME_DELAYS_MS.fsrOptimizingPerGiB - 1);
    expect(await state()).toEqual([[ZONE, 'optimizing']]);
    clock.advance(1);
    expect(await state()).toEqual([[ZONE, 'enabled']]);

    const fast = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, SnapshotId: snapshotId }));
    expect(await volumeOf(fast.VolumeId!)).toMatchObject({ State: 'available', FastRestored: true });
    const slow = await t.ec2.send(new CreateVolumeCommand({ AvailabilityZone: OTHER_ZONE, SnapshotId: snapshotId }));
    expect(await volumeOf(slow.VolumeId!)).toMatchObject({ State: 'creating', FastRestored: false });

    const disabled = await t.ec2.send(new DisableFastSnapshotRestoresCommand({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [ZONE] }));
    expect(disabled.Successful).toMatchObject([{ State: 'disabling' }]);
    clock.advance(VOLUME_DELAYS_MS.fsrDisabling);
    expect(await state()).toEqual([[ZONE, 'disabled']]);
    const again = await t.ec2.send(new DisableFastSnapshotRestoresCommand({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [ZONE] }));
    expect(again.Unsuccessful?.[0]?.FastSnapshotRestoreStateErrors?.[0]?.Error?.Code).toBe('InvalidParameterValue');
  });

  it('at most 5 snapshots per Region; an unknown snapshot or zone fails in Unsuccessful', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i += 1) ids.push(await snapshotWith(t.ebs, new Map([[0, blockOf(40 + i)]])));
    const out = await t.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: ids, AvailabilityZones: [ZONE, OTHER_ZONE] }));
    expect(new Set(out.Successful?.map((s) => s.SnapshotId)).size).toBe(5);
    expect(out.Unsuccessful).toMatchObject([{ SnapshotId: ids[5], FastSnapshotRestoreStateErrors: [{ Error: { Code: 'ResourceLimitExceeded' } }, { Error: { Code: 'ResourceLimitExceeded' } }] }]);
    const unknown = await t.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: ['snap-0123456789abcdef0'], AvailabilityZones: [ZONE] }));
    expect(unknown.Unsuccessful?.[0]?.FastSnapshotRestoreStateErrors?.[0]).toMatchObject({ AvailabilityZone: ZONE, Error: { Code: 'InvalidSnapshot.NotFound' } });
    const zone = await t.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: [ids[0]!], AvailabilityZones: ['eu-west-1a'] }));
    expect(zone.Unsuccessful?.[0]?.FastSnapshotRestoreStateErrors?.[0]?.Error?.Code).toBe('InvalidParameterValue');
    await t.ec2.send(new DisableFastSnapshotRestoresCommand({ SourceSnapshotIds: ids.slice(0, 5), AvailabilityZones: [ZONE, OTHER_ZONE] }));
    clock.advance(VOLUME_DELAYS_MS.fsrDisabling);
    const after = await t.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: [ids[5]!], AvailabilityZones: [ZONE] }));
    expect(after.Successful).toHaveLength(1);
    await t.ec2.send(new DisableFastSnapshotRestoresCommand({ SourceSnapshotIds: [ids[5]!], AvailabilityZones: [ZONE] }));
    clock.advance(VOLUME_DELAYS_MS.fsrDisabling);
  });
});

describe('restart', () => {
  it('instances asked for at start are made only where the zone lacks them, so restarts do not multiply them', async () => {
    const dir = tempDir();
    const inZone = async (endpoint: Awaited<ReturnType<typeof startTestEndpoint>>) =>
      (await endpoint.ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!).filter((i) => i.Placement?.AvailabilityZone === ZONE).map((i) => i.InstanceId);
    let endpoint = await startTestEndpoint({ instances: { [ZONE]: 2 } }, dir.path);
    try {
      const first = await inZone(endpoint);
      expect(first).toHaveLength(2);
      await endpoint.stop();
      endpoint = await startTestEndpoint({ instances: { [ZONE]: 2 } }, dir.path);
      expect((await inZone(endpoint)).sort()).toEqual(first.sort());
      expect(endpoint.emulator.ensureInstances(ZONE, 3)).toHaveLength(3);
    } finally {
      await endpoint.stop();
      dir.cleanup();
    }
  });

  it('a restarted endpoint on the same data folder finds its volumes, instances, client tokens and FSR states as they were', async () => {
    const dir = tempDir();
    const restartClock = new TestClock();
    let endpoint = await startTestEndpoint({ now: restartClock.now }, dir.path);
    try {
      const [instanceId] = endpoint.emulator.createInstances(ZONE, 1) as [string];
      const snapshotId = await snapshotWith(endpoint.ebs, new Map([[0, blockOf(7)]]), { VolumeSize: 1 });
      await endpoint.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [ZONE] }));
      restartClock.advance(VOLUME_DELAYS_MS.fsrEnabling + VOLUME_DELAYS_MS.fsrOptimizingPerGiB);
      const volumeId = (await endpoint.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, SnapshotId: snapshotId, Size: 2, ClientToken: 'kept' }))).VolumeId!;
      await endpoint.ec2.send(new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: '/dev/sdf' }));
      await endpoint.ec2.send(new EnableFastSnapshotRestoresCommand({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [OTHER_ZONE] }));
      const before = (await endpoint.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]!;
      await endpoint.stop();

      endpoint = await startTestEndpoint({ now: restartClock.now }, dir.path);
      expect((await endpoint.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]).toEqual(before);
      expect(before).toMatchObject({ State: 'in-use', Size: 2, FastRestored: true, Attachments: [{ State: 'attaching', InstanceId: instanceId, Device: '/dev/sdf' }] });
      const instances = (await endpoint.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))).Reservations!.flatMap((r) => r.Instances!);
      expect(instances).toMatchObject([{ InstanceId: instanceId, Placement: { AvailabilityZone: ZONE }, BlockDeviceMappings: [{ DeviceName: '/dev/sdf', Ebs: { VolumeId: volumeId } }] }]);
      const fsr = async () =>
        (await endpoint.ec2.send(new DescribeFastSnapshotRestoresCommand({ Filters: [{ Name: 'snapshot-id', Values: [snapshotId] }] }))).FastSnapshotRestores!.map((r) => [
          r.AvailabilityZone,
          r.State,
        ]);
      expect((await fsr()).sort()).toEqual([[ZONE, 'enabled'], [OTHER_ZONE, 'enabling']]);
      // The transitions go on after the restart; the client token still answers its volume.
      restartClock.advance(Math.max(VOLUME_DELAYS_MS.attach, VOLUME_DELAYS_MS.fsrEnabling));
      expect((await endpoint.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]!.Attachments).toMatchObject([{ State: 'attached' }]);
      expect((await fsr()).sort()).toEqual([[ZONE, 'enabled'], [OTHER_ZONE, 'optimizing']]);
      expect((await endpoint.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, SnapshotId: snapshotId, Size: 2, ClientToken: 'kept' }))).VolumeId).toBe(volumeId);
    } finally {
      await endpoint.stop();
      dir.cleanup();
    }
  });
});

describe('EC2 is eventually consistent for volumes too (ec2LagMs)', () => {
  const LAG = 5000;
  const lagClock = new TestClock();
  let lagged: TestEndpoint;
  beforeAll(async () => {
    lagged = await startTestEndpoint({ now: lagClock.now, ec2LagMs: LAG });
  });
  afterAll(() => lagged?.stop());

  it('a volume made less than the lag ago is not found: DescribeVolumes leaves it out (by id InvalidVolume.NotFound), DeleteVolume answers InvalidVolume.NotFound; then both find it', async () => {
    const volumeId = (await lagged.ec2.send(new CreateVolumeCommand({ AvailabilityZone: ZONE, Size: 1 }))).VolumeId!;
    await expectAwsError(lagged.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] })), 'InvalidVolume.NotFound');
    expect(((await lagged.ec2.send(new DescribeVolumesCommand({}))).Volumes ?? []).map((v) => v.VolumeId)).not.toContain(volumeId);
    await expectAwsError(lagged.ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId })), 'InvalidVolume.NotFound');
    lagClock.advance(LAG);
    expect((await lagged.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]).toMatchObject({ VolumeId: volumeId, State: 'creating' });
    await lagged.ec2.send(new DeleteVolumeCommand({ VolumeId: volumeId }));
    expect((await lagged.ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0]).toMatchObject({ State: 'deleting' });
  });
});
