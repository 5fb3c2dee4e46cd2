/**
 * Disaster recovery on the local endpoint through the real adapters: restore
 * to an EBS volume (attach, fast snapshot restore) and drills, on a clock
 * 1000 times faster than AWS's.
 */
import { CreateVolumeCommand, DescribeVolumesCommand } from '@aws-sdk/client-ec2';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients } from '../../src/aws/clients.js';
import { EbsSnapshotStore } from '../../src/aws/ebs.js';
import { AdaptiveLimiter, resilientReader } from '../../src/aws/retry.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { verifiedReader } from '../../src/core/verified-reader.js';
import { backup } from '../../src/engine/backup/backup.js';
import { drill, lastDrills } from '../../src/engine/dr/drill.js';
import { restoreToVolume } from '../../src/engine/dr/restore-volume.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import type { Session } from '../../src/session.js';
import { blockOf, clientsFor, snapshotWith } from '../emulator/helpers.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { startLocalEndpoint, type LocalEndpoint } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';

const ZONE = 'us-east-1a';
const POLL = { firstMs: 5, maxMs: 20 };
let local: LocalEndpoint;
let session: Session;
let sdk: ReturnType<typeof clientsFor>;
let instance: string;
let otherZoneInstance: string;

beforeAll(async () => {
  local = await startLocalEndpoint('snapline-dr-', { emulator: { timeScale: 1000 } });
  session = local.session;
  sdk = clientsFor(local.emulator.url);
  [instance] = local.emulator.createInstances(ZONE, 1) as [string];
  [otherZoneInstance] = local.emulator.createInstances('us-east-1b', 1) as [string];
});

afterAll(async () => {
  for (const client of Object.values(sdk ?? {})) client.destroy();
  await local?.close();
});

/** A 3 MiB image backed up twice (full, then one block changed): the image and both snapshot ids. */
async function lineage(volume: string): Promise<{ image: string; full: string; incremental: string }> {
  const image = local.pathFor(`${volume}.img`);
  writeBlocks(image, randomBlocks([0, 1, 4]), 6 * BLOCK_SIZE);
  const full = (await backup(session, { source: image, volume })).snapshotId!;
  writeBlocks(image, randomBlocks([1, 5]));
  const incremental = (await backup(session, { source: image, volume })).snapshotId!;
  return { image, full, incremental };
}

async function volumeBytes(volumeId: string, length: number): Promise<Buffer> {
  const res = await fetch(`${local.emulator.url}/_snapline/volumes/${volumeId}?offset=0&length=${length}`);
  expect(res.status).toBe(200);
  return Buffer.from(await res.arrayBuffer());
}

async function volumeIds(): Promise<string[]> {
  return ((await sdk.ec2.send(new DescribeVolumesCommand({}))).Volumes ?? []).map((v) => v.VolumeId!);
}

describe('restore to an EBS volume', () => {
  it('sends CreateVolume a client token of the run\'s own, another for each run', async () => {
    const { full } = await lineage('tokens');
    const sent: Array<string | undefined> = [];
    const real = session.volumes;
    const volumes = new Proxy(real, {
      get: (target, key: keyof typeof real) =>
        key === 'createVolume' ? (input: Parameters<typeof real.createVolume>[0]) => (sent.push(input.clientToken), target.createVolume(input)) : (target[key] as (...args: unknown[]) => unknown).bind(target),
    });
    for (let run = 0; run < 2; run++) await restoreToVolume({ index: session.index, catalog: session.catalog, volumes }, { snapshotId: full, availabilityZone: ZONE, poll: POLL });
    expect(sent).toHaveLength(2);
    expect(sent.every((token) => token !== undefined && token.length <= 64)).toBe(true);
    expect(new Set(sent).size).toBe(2);
  });

  it('an incremental snapshot becomes a whole-disk volume, attached to the instance, with the time of each step', async () => {
    const { image, incremental } = await lineage('web');
    const result = await restoreToVolume(session, {
      snapshotId: incremental,
      availabilityZone: ZONE,
      volumeType: 'gp3',
      sizeGiB: 2,
      throughput: 250,
      tags: { purpose: 'dr' },
      attach: { instanceId: instance, device: '/dev/sdf' },
      poll: POLL,
    });
    expect(result).toMatchObject({
      snapshotId: incremental,
      state: 'in-use',
      sizeGiB: 2,
      volumeType: 'gp3',
      throughput: 250,
      availabilityZone: ZONE,
      attachment: { instanceId: instance, device: '/dev/sdf', state: 'attached' },
      fastRestore: null,
    });
    expect(result.steps.map((s) => s.step)).toEqual(['check', 'create-volume', 'attach']);
    const bytes = await volumeBytes(result.volumeId, 6 * BLOCK_SIZE);
    // Buffer.equals, not toEqual: a deep-equality diff of megabytes takes a minute.
    expect(bytes.equals(await readFile(image))).toBe(true);
    const [described] = (await sdk.ec2.send(new DescribeVolumesCommand({ VolumeIds: [result.volumeId] }))).Volumes!;
    expect(described?.Tags).toEqual(expect.arrayContaining([{ Key: 'purpose', Value: 'dr' }, { Key: 'snapline:volume', Value: 'web' }]));
  });

  it('--fast-restore: enabled first and waited for, the volume fully initialized, disabled afterwards unless kept', async () => {
    const { full } = await lineage('db');
    const off = await restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, fastRestore: true, poll: POLL });
    expect(off.steps.map((s) => s.step)).toEqual(['check', 'enable-fast-restore', 'create-volume', 'disable-fast-restore']);
    expect(off.steps[1]?.outcome).toBe('enabled');
    expect(off).toMatchObject({ fastRestored: true, fastRestore: { kept: false }, state: 'available' });
    expect(await session.volumes.fastRestoreState(full, ZONE)).toMatch(/^disabl/);

    const kept = await restoreToVolume(session, { snapshotId: full, availabilityZone: 'us-east-1b', fastRestore: true, keepFastRestore: true, poll: POLL });
    expect(kept.steps.map((s) => s.step)).toEqual(['check', 'enable-fast-restore', 'create-volume']);
    expect(await session.volumes.fastRestoreState(full, 'us-east-1b')).toBe('enabled');
    await session.volumes.disableFastRestore(full, 'us-east-1b');
  });

  it('refuses before making anything: not snapline\'s snapshot, a smaller size, an instance in another zone or unknown, a pending snapshot', async () => {
    const { full } = await lineage('refused');
    const foreign = await snapshotWith(sdk.ebs, new Map([[0, blockOf(9)]]));
    const before = await volumeIds();
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => restoreToVolume(session, { snapshotId: foreign, availabilityZone: ZONE }), ErrorCodes.INVALID_ARGUMENT, /not made by snapline/],
      [() => restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, volumeType: 'gp3', sizeGiB: 0 }), ErrorCodes.INVALID_ARGUMENT, /^sizeGiB must be a whole number/],
      [() => restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, attach: { instanceId: otherZoneInstance, device: '/dev/sdf' } }), ErrorCodes.INVALID_ARGUMENT, /is in us-east-1b, not us-east-1a/],
      [() => restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, attach: { instanceId: 'i-0123456789abcdef0', device: '/dev/sdf' } }), ErrorCodes.NOT_FOUND, /does not exist/],
      [() => restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, volumeType: 'hdd' }), ErrorCodes.INVALID_ARGUMENT, /^volumeType must be one of/],
      [() => restoreToVolume(session, { snapshotId: 'snap-0123456789abcdef0', availabilityZone: ZONE }), ErrorCodes.NOT_FOUND, /does not exist/],
    ];
    for (const [attempt, code, message] of cases) {
      const err = await rejection(attempt());
      expect(err.code).toBe(code);
      expect(err.message).toMatch(message);
    }
    expect(await volumeIds()).toEqual(before);
  });

  it('the endpoint refusing the volume (io1 without --iops) leaves nothing behind; an unknown KMS key ends in error and the volume is deleted', async () => {
    const { full } = await lineage('rejected');
    const before = await volumeIds();
    expect((await rejection(restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, volumeType: 'io1', sizeGiB: 4 }))).code).toBe(ErrorCodes.REMOTE_REJECTED);
    const badKey = await rejection(
      restoreToVolume(session, { snapshotId: full, availabilityZone: ZONE, kmsKeyId: 'arn:aws:kms:us-east-1:999999999999:key/00000000-0000-4000-8000-000000000000', poll: POLL }),
    );
    expect(badKey.message).toMatch(/ended in state error/);
    const left = (await volumeIds()).filter((id) => !before.includes(id));
    for (const id of left) expect((await session.volumes.describeVolume(id))?.state ?? 'deleted').toMatch(/^delet/);
  });

  it('--size below the snapshot is refused before anything is made; past 5 FSR snapshots in the Region the run fails QUOTA_EXCEEDED and leaves no volume', async () => {
    const image = local.pathFor('big.img');
    writeBlocks(image, randomBlocks([0, 2048]), 1024 * 1024 * 1024 + BLOCK_SIZE);
    const big = (await backup(session, { source: image, volume: 'big' })).snapshotId!;
    const before = await volumeIds();
    const small = await rejection(restoreToVolume(session, { snapshotId: big, availabilityZone: ZONE, sizeGiB: 1 }));
    expect(small).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, details: { option: 'sizeGiB' } });
    expect(small.message).toContain("smaller than the snapshot's 2 GiB");

    const others: string[] = [];
    for (let i = 0; i < 5; i += 1) others.push(await snapshotWith(sdk.ebs, new Map([[0, blockOf(60 + i)]])));
    for (const id of others) await session.volumes.enableFastRestore(id, 'us-east-1c');
    try {
      const quota = await rejection(restoreToVolume(session, { snapshotId: big, availabilityZone: 'us-east-1c', fastRestore: true, poll: POLL }));
      expect(quota.code).toBe(ErrorCodes.QUOTA_EXCEEDED);
      expect(quota.message).toContain('ResourceLimitExceeded');
    } finally {
      // Disabling still counts against the quota: wait it out so the tests after this one start clear of it.
      for (const id of others) await session.volumes.disableFastRestore(id, 'us-east-1c');
      for (const id of others) while (((await session.volumes.fastRestoreState(id, 'us-east-1c')) ?? 'disabled') !== 'disabled') await sleep(POLL.maxMs);
    }
    expect(await volumeIds()).toEqual(before);
  });

  it('interrupted while the volume is being created: the volume is deleted, FSR disabled, INTERRUPTED', async () => {
    const { full } = await lineage('interrupted');
    const before = await volumeIds();
    const controller = new AbortController();
    const err = await rejection(
      restoreToVolume(session, {
        snapshotId: full,
        availabilityZone: ZONE,
        fastRestore: true,
        poll: POLL,
        signal: controller.signal,
        onStep: (step) => {
          if (step === 'create-volume') controller.abort();
        },
      }),
    );
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    const made = (await volumeIds()).filter((id) => !before.includes(id));
    expect(made.length).toBeLessThanOrEqual(1);
    for (const id of made) expect((await session.volumes.describeVolume(id))?.state ?? 'deleted').toMatch(/^delet/);
    expect(await session.volumes.fastRestoreState(full, ZONE)).toMatch(/^disabl/);
  });
});

describe('drills', () => {
  it('a drill reads every block, restores to a file and to a volume, removes both, and records its result', async () => {
    const { incremental } = await lineage('drilled');
    const before = await volumeIds();
    const file = local.pathFor('drill.img');
    const onFile = await drill(session, { volume: 'drilled', toFile: file, poll: POLL });
    expect(onFile).toMatchObject({ snapshotId: incremental, kind: 'file', passed: true, mismatchedBlocks: 0, message: null });
    expect(onFile.blocksRead).toBeGreaterThan(0);
    expect(existsSync(file)).toBe(false);

    const onVolume = await drill(session, { volume: 'drilled', toVolume: { availabilityZone: ZONE, volumeType: 'gp2' }, poll: POLL });
    expect(onVolume).toMatchObject({ kind: 'volume', passed: true });
    expect(onVolume.steps.map((s) => s.step)).toEqual(['read', 'create-volume', 'clean-up']);
    expect(onVolume.steps.at(-1)?.outcome).toContain(onVolume.volumeId!);
    const remaining = (await volumeIds()).filter((id) => !before.includes(id));
    for (const id of remaining) expect((await session.volumes.describeVolume(id))?.state ?? 'deleted').toMatch(/^delet/);

    const last = lastDrills(session).find((d) => d.volume === 'drilled');
    expect(last).toMatchObject({ id: onVolume.recordId, snapshotId: incremental, kind: 'volume', passed: true });
    expect(session.index.drills.ofVolume('drilled')).toHaveLength(2);
  });

  it('a drill fails, and records the failure, when a block of the snapshot was corrupted on the endpoint', async () => {
    const { full } = await lineage('corrupted');
    const clients = new AwsClients(session.connection.settings, { concurrency: 8 });
    local.emulator.setFaults({ corruptRate: 1 });
    try {
      const reader = resilientReader(verifiedReader(new EbsSnapshotStore(clients.ebs())), {
        limiter: new AdaptiveLimiter(8),
        policy: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      });
      const result = await drill({ ...session, reader }, { volume: 'corrupted', snapshotId: full });
      expect(result).toMatchObject({ passed: false, kind: 'read', mismatchedBlocks: 1 });
      expect(result.message).toMatch(/does not match its checksum/);
    } finally {
      local.emulator.setFaults({});
      clients.destroy();
    }
    expect(lastDrills(session).find((d) => d.volume === 'corrupted')).toMatchObject({ passed: false, snapshotId: full });
  });

  it('a drill interrupted while making its volume removes it and records nothing', async () => {
    await lineage('stopped');
    const before = await volumeIds();
    const controller = new AbortController();
    const onStep = (step: string) => {
      if (step === 'create-volume') setTimeout(() => controller.abort(), 1);
    };
    const err = await rejection(drill(session, { volume: 'stopped', toVolume: { availabilityZone: ZONE }, poll: POLL, signal: controller.signal, onStep }));
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    for (const id of (await volumeIds()).filter((v) => !before.includes(v))) {
      expect((await session.volumes.describeVolume(id))?.state ?? 'deleted').toMatch(/^delet/);
    }
    expect(session.index.drills.ofVolume('stopped')).toEqual([]);
  });

  it('a drill whose volume cannot be deleted afterwards rejects naming the volume left behind, and records what it proved', async () => {
    const { incremental } = await lineage('left');
    // The drill's own credentials may create volumes and not delete them (an IAM policy without ec2:DeleteVolume).
    const denied = new SnaplineError(ErrorCodes.ACCESS_DENIED, 'ec2:DeleteVolume: not authorized');
    const real = session.volumes;
    const volumes: Session['volumes'] = {
      createVolume: (input) => real.createVolume(input),
      describeVolume: (id) => real.describeVolume(id),
      attachVolume: (id, instanceId, device) => real.attachVolume(id, instanceId, device),
      deleteVolume: () => Promise.reject(denied),
      taggedVolumes: (tags) => real.taggedVolumes(tags),
      describeInstance: (id) => real.describeInstance(id),
      enableFastRestore: (id, zone) => real.enableFastRestore(id, zone),
      disableFastRestore: (id, zone) => real.disableFastRestore(id, zone),
      fastRestoreState: (id, zone) => real.fastRestoreState(id, zone),
    };
    const err = await rejection(drill({ ...session, volumes } as Session, { volume: 'left', toVolume: { availabilityZone: ZONE }, poll: POLL }));
    const made = lastDrills(session).find((d) => d.volume === 'left');
    expect(made).toMatchObject({ snapshotId: incremental, kind: 'volume', passed: true });
    expect(err.code).toBe(ErrorCodes.ACCESS_DENIED);
    const left = err.details?.leftBehind as string[];
    expect(left).toHaveLength(1);
    expect(err.message).toContain(left[0]);
    expect((await session.volumes.describeVolume(left[0]!))?.state).toBe('available');
    await session.volumes.deleteVolume(left[0]!);
  });

  it('a volume drill removes the volumes that earlier drills of the volume made and did not live to remove (killed), and no other', async () => {
    const { full } = await lineage('revisited');
    const made = async (tags: Record<string, string>) =>
      (await sdk.ec2.send(new CreateVolumeCommand({ SnapshotId: full, AvailabilityZone: ZONE, TagSpecifications: [{ ResourceType: 'volume', Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) }] }))).VolumeId!;
    // What a drill killed after CreateVolume leaves: its volume, tagged as a drill's.
    const leftover = await made({ 'snapline:drill': '2026-12-01T02:00:00.000Z', 'snapline:drill-of': 'revisited', 'snapline:volume': 'revisited' });
    const othersDrill = await made({ 'snapline:drill': '2026-12-01T02:00:00.000Z', 'snapline:drill-of': 'someone-else' });
    const notADrill = await made({ 'snapline:volume': 'revisited' });
    await sleep(50);

    const result = await drill(session, { volume: 'revisited', toVolume: { availabilityZone: ZONE }, poll: POLL });
    expect(result.passed).toBe(true);
    expect(result.steps.at(-1)?.outcome).toContain(`${leftover} (left by an earlier drill)`);
    expect((await session.volumes.describeVolume(leftover))?.state ?? 'deleted').toMatch(/^delet/);
    for (const kept of [othersDrill, notADrill]) {
      expect((await session.volumes.describeVolume(kept))?.state).toBe('available');
      await session.volumes.deleteVolume(kept);
    }
  });

  it('refuses a snapshot of another volume, a volume without snapshots, and a file that exists', async () => {
    const { full } = await lineage('mine');
    await lineage('theirs');
    expect((await rejection(drill(session, { volume: 'theirs', snapshotId: full }))).code).toBe(ErrorCodes.INVALID_ARGUMENT);
    expect((await rejection(drill(session, { volume: 'nothing' }))).code).toBe(ErrorCodes.NOT_FOUND);
    const existing = local.pathFor('existing.img');
    writeBlocks(existing, new Map(), BLOCK_SIZE);
    expect((await rejection(drill(session, { volume: 'mine', toFile: existing }))).code).toBe(ErrorCodes.TARGET_UNUSABLE);
    expect(existsSync(existing)).toBe(true);
  });
});

describe('restore to an EBS volume, EC2 lagging behind (ec2LagMs 2000)', () => {
  const LAG = 2000;
  let lagged: LocalEndpoint;
  beforeAll(async () => {
    lagged = await startLocalEndpoint('snapline-dr-lag-', { emulator: { timeScale: 1000, ec2LagMs: LAG } });
  });
  afterAll(() => lagged?.close());

  it('interrupted right after CreateVolume: the volume, which DeleteVolume finds only once EC2 lists it, is deleted all the same', async () => {
    const image = lagged.pathFor('lagged.img');
    writeBlocks(image, randomBlocks([0, 1]), 2 * BLOCK_SIZE);
    const { snapshotId } = await backup(lagged.session, { source: image, volume: 'lagged' });
    const controller = new AbortController();
    const real = lagged.session.volumes;
    // The abort comes as CreateVolume answers, before anything describes the volume.
    const volumes = new Proxy(real, {
      get: (target, key: keyof typeof real) =>
        key === 'createVolume'
          ? async (input: Parameters<typeof real.createVolume>[0]) => {
              const made = await target.createVolume(input);
              controller.abort();
              return made;
            }
          : (target[key] as (...args: unknown[]) => unknown).bind(target),
    });
    const err = await rejection(restoreToVolume({ ...lagged.session, volumes }, { snapshotId: snapshotId!, availabilityZone: ZONE, poll: POLL, signal: controller.signal }));
    expect(err.code).toBe(ErrorCodes.INTERRUPTED);
    await sleep(LAG);
    const { ec2 } = clientsFor(lagged.emulator.url);
    try {
      // Deleted (deleting, or already gone from listings at this time scale): none is left available.
      const left = ((await ec2.send(new DescribeVolumesCommand({}))).Volumes ?? []).filter((v) => !/^delet/.test(v.State ?? ''));
      expect(left).toEqual([]);
    } finally {
      ec2.destroy();
    }
  });
});
