import { randomUUID } from 'node:crypto';
import type { IndexPorts } from '../../core/index-ports.js';
import { throwIfAborted } from '../../core/abort.js';
import type { FastRestoreState, NewVolume, RemoteSnapshot, RemoteVolume, SnapshotCatalog, VolumeManager } from '../../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../../errors.js';
import { EC2_SETTLE_MS, lookUpUntilListed } from '../blocks/committer.js';
import { VOLUME_TAG, completedSnapshot } from '../blocks/remote-snapshot.js';
import { pollUntil, type PollOptions } from './wait.js';

export const VOLUME_TYPES = ['gp3', 'gp2', 'io1', 'io2', 'st1', 'sc1', 'standard'] as const;

export interface VolumeRestoreDeps {
  /** Tells a snapshot snapline completed moments ago (EC2 may not show it yet) from one it never made. */
  index: Pick<IndexPorts, 'lineage'>;
  catalog: SnapshotCatalog;
  volumes: VolumeManager;
}

/** The volume's settings are CreateVolume's (NewVolume); kmsKeyId implies encrypted here. */
export interface VolumeRestoreOptions extends NewVolume {
  /** Attach the volume to this instance as this device, and wait until it is attached. */
  attach?: { instanceId: string; device: string };
  /** Enable fast snapshot restore in the zone first and wait until it is enabled. */
  fastRestore?: boolean;
  /** With fastRestore: leave it enabled afterwards (it is billed by the hour while enabled). */
  keepFastRestore?: boolean;
  poll?: PollOptions;
  signal?: AbortSignal;
  /** Told when each step starts. */
  onStep?: (step: VolumeStepName) => void;
}

export type VolumeStepName = 'check' | 'enable-fast-restore' | 'create-volume' | 'attach' | 'disable-fast-restore';

export interface VolumeStep {
  step: VolumeStepName;
  durationMs: number;
  /** What the step ended with: a state, an id. */
  outcome: string;
}

export interface VolumeRestoreResult {
  snapshotId: string;
  volumeId: string;
  /** The volume's state at the end: available, or in-use when attached. */
  state: RemoteVolume['state'];
  availabilityZone: string;
  sizeGiB: number;
  volumeType: string;
  iops: number | null;
  throughput: number | null;
  encrypted: boolean;
  kmsKeyId: string | null;
  /** Created fully initialized (fast snapshot restore was enabled). */
  fastRestored: boolean;
  attachment: { instanceId: string; device: string; state: string } | null;
  /** null without fastRestore; else whether it is left enabled (billed by the hour). */
  fastRestore: { kept: boolean } | null;
  steps: VolumeStep[];
  durationMs: number;
}

/**
 * Makes an EBS volume from a completed snapshot of snapline's own, in one
 * Availability Zone, and waits until it is available (and attached, with
 * `attach`). With `fastRestore`, fast snapshot restore is enabled in the
 * zone first and waited for, then disabled again (also on failure) unless
 * kept. Everything that can be checked is checked before anything is made:
 * the snapshot, the size, the instance and its zone. A volume that fails or
 * is interrupted before it is available is deleted; one that is available
 * is kept (the error names it).
 */
export async function restoreToVolume(deps: VolumeRestoreDeps, options: VolumeRestoreOptions): Promise<VolumeRestoreResult> {
  const started = Date.now();
  const steps: VolumeStep[] = [];
  const timed = async <T>(step: VolumeStepName, work: () => Promise<T>, outcome: (value: T) => string): Promise<T> => {
    options.onStep?.(step);
    const at = Date.now();
    const value = await work();
    steps.push({ step, durationMs: Date.now() - at, outcome: outcome(value) });
    return value;
  };
  const wait = { ...options.poll, ...(options.signal === undefined ? {} : { signal: options.signal }) };

  const snapshot = await timed('check', () => checkBeforeRestore(deps, options), (s) => `${s.snapshotId} completed, ${s.volumeSizeGiB} GiB`);
  throwIfAborted(options.signal);

  let enabledFastRestore = false;
  let volume: RemoteVolume | undefined;
  let madeAt = 0;
  let available = false;
  try {
    if (options.fastRestore) {
      enabledFastRestore = true;
      await timed(
        'enable-fast-restore',
        async () => {
          await deps.volumes.enableFastRestore(options.snapshotId, options.availabilityZone);
          return waitForFastRestore(deps.volumes, options.snapshotId, options.availabilityZone, wait);
        },
        (state) => state,
      );
    }
    volume = await timed(
      'create-volume',
      async () => {
        madeAt = Date.now();
        const made = await deps.volumes.createVolume({
          snapshotId: options.snapshotId,
          availabilityZone: options.availabilityZone,
          volumeType: options.volumeType ?? 'gp3',
          ...(options.sizeGiB === undefined ? {} : { sizeGiB: options.sizeGiB }),
          ...(options.iops === undefined ? {} : { iops: options.iops }),
          ...(options.throughput === undefined ? {} : { throughput: options.throughput }),
          ...(options.encrypted || options.kmsKeyId !== undefined ? { encrypted: true } : {}),
          ...(options.kmsKeyId === undefined ? {} : { kmsKeyId: options.kmsKeyId }),
          tags: { ...options.tags, ...(snapshot.tags[VOLUME_TAG] === undefined ? {} : { [VOLUME_TAG]: snapshot.tags[VOLUME_TAG] }) },
          // The run's own: a CreateVolume sent again (its answer lost) answers the same volume instead of making a second.
          clientToken: `snapline-restore-${randomUUID()}`,
        });
        volume = made;
        return waitForVolume(deps.volumes, made.volumeId, wait);
      },
      (v) => `${v.volumeId} ${v.state}`,
    );
    available = true;
    if (options.attach !== undefined) {
      const { instanceId, device } = options.attach;
      const volumeId = volume.volumeId;
      volume = await timed(
        'attach',
        async () => {
          await deps.volumes.attachVolume(volumeId, instanceId, device);
          return waitForAttachment(deps.volumes, volumeId, wait);
        },
        (v) => `${v.attachment?.state ?? 'detached'} to ${instanceId} as ${device}`,
      );
    }
  } catch (err) {
    if (volume !== undefined && !available) await deleteMadeVolume(deps.volumes, volume.volumeId, madeAt).catch(() => undefined);
    if (enabledFastRestore && !options.keepFastRestore) await deps.volumes.disableFastRestore(options.snapshotId, options.availabilityZone).catch(() => undefined);
    if (volume !== undefined && available && isSnaplineError(err)) {
      throw new SnaplineError(err.code, `${err.message} (the volume ${volume.volumeId} is available in ${volume.availabilityZone} and kept)`, {
        cause: err,
        retryable: err.retryable,
        ...(err.hint === undefined ? {} : { hint: err.hint }),
        details: { ...err.details, volumeId: volume.volumeId },
      });
    }
    throw err;
  }
  if (enabledFastRestore && !options.keepFastRestore) {
    await timed('disable-fast-restore', () => deps.volumes.disableFastRestore(options.snapshotId, options.availabilityZone), () => 'disabling');
  }
  return {
    snapshotId: options.snapshotId,
    volumeId: volume.volumeId,
    state: volume.state,
    availabilityZone: volume.availabilityZone,
    sizeGiB: volume.sizeGiB,
    volumeType: volume.volumeType,
    iops: volume.iops ?? null,
    throughput: volume.throughput ?? null,
    encrypted: volume.encrypted,
    kmsKeyId: volume.kmsKeyId ?? null,
    fastRestored: volume.fastRestored,
    attachment: volume.attachment ?? null,
    fastRestore: options.fastRestore ? { kept: options.keepFastRestore === true } : null,
    steps,
    durationMs: Date.now() - started,
  };
}

/**
 * The checks made before anything is created: the snapshot exists, is
 * completed and carries snapline's volume tag; the size only grows; the
 * instance to attach to exists and is in the zone.
 */
async function checkBeforeRestore(deps: VolumeRestoreDeps, options: VolumeRestoreOptions): Promise<RemoteSnapshot> {
  checkVolumeOptions(options);
  const snapshot = await completedSnapshot(deps, options.snapshotId, options.signal === undefined ? {} : { signal: options.signal });
  if (snapshot.tags[VOLUME_TAG] === undefined) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${options.snapshotId} was not made by snapline (it has no ${VOLUME_TAG} tag)`, {
      hint: 'restore snapshots that snapline made; other snapshots can be made into volumes with the EC2 console or CLI',
      details: { argument: 'snapshotId' },
    });
  }
  if (options.sizeGiB !== undefined && options.sizeGiB < snapshot.volumeSizeGiB) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `sizeGiB ${options.sizeGiB} is smaller than the snapshot's ${snapshot.volumeSizeGiB} GiB: a volume can only be as large or larger`, {
      details: { option: 'sizeGiB' },
    });
  }
  if (options.attach !== undefined) {
    const instance = await deps.volumes.describeInstance(options.attach.instanceId);
    if (instance === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `instance ${options.attach.instanceId} does not exist`, { details: { option: 'attach' } });
    if (instance.availabilityZone !== options.availabilityZone) {
      throw new SnaplineError(
        ErrorCodes.INVALID_ARGUMENT,
        `instance ${instance.instanceId} is in ${instance.availabilityZone}, not ${options.availabilityZone}: a volume attaches only to an instance in its own zone`,
        { hint: `use --availability-zone ${instance.availabilityZone}`, details: { option: 'availabilityZone' } },
      );
    }
  }
  return snapshot;
}

/** The options' form: known volume type, whole positive numbers, a device with an instance. */
export function checkVolumeOptions(options: Pick<VolumeRestoreOptions, 'availabilityZone' | 'volumeType' | 'sizeGiB' | 'iops' | 'throughput' | 'attach'>): void {
  const bad = (option: string, message: string) => new SnaplineError(ErrorCodes.INVALID_ARGUMENT, message, { details: { option } });
  if (!/^[a-z]{2}(-[a-z]+)+-\d[a-z]$/.test(options.availabilityZone)) {
    throw bad('availabilityZone', `availabilityZone must name a zone such as us-east-1a, got '${options.availabilityZone}'`);
  }
  if (options.volumeType !== undefined && !(VOLUME_TYPES as readonly string[]).includes(options.volumeType)) {
    throw bad('volumeType', `volumeType must be one of ${VOLUME_TYPES.join(', ')}, got '${options.volumeType}'`);
  }
  for (const [option, value] of [
    ['sizeGiB', options.sizeGiB],
    ['iops', options.iops],
    ['throughput', options.throughput],
  ] as const) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 1)) throw bad(option, `${option} must be a whole number above 0, got ${value}`);
  }
  if (options.attach !== undefined && !/^\/dev\/[a-z0-9]+$|^xvd[a-z]+$/.test(options.attach.device)) {
    throw bad('device', `device must be a device name such as /dev/sdf, got '${options.attach.device}'`);
  }
}

async function waitForFastRestore(volumes: VolumeManager, snapshotId: string, zone: string, wait: PollOptions & { signal?: AbortSignal }): Promise<FastRestoreState> {
  return pollUntil(
    `fast snapshot restore of ${snapshotId} in ${zone} to be enabled`,
    async () => {
      const state = await volumes.fastRestoreState(snapshotId, zone);
      if (state === 'disabling' || state === 'disabled' || state === undefined) {
        throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `fast snapshot restore of ${snapshotId} in ${zone} failed to enable (state ${state ?? 'missing'})`);
      }
      return state === 'enabled' ? state : undefined;
    },
    wait,
  );
}

/**
 * Deletes a volume CreateVolume made at `madeAt` (epoch ms). EC2 is
 * eventually consistent: a DeleteVolume soon after CreateVolume may answer
 * InvalidVolume.NotFound, which deleteVolume takes for "already gone", and
 * the volume would be left. So, as AWS advises for a change right after a
 * creation, the volume is first described until EC2 lists it (until
 * EC2_SETTLE_MS after it was made), then deleted; one EC2 does not list by
 * then is gone.
 */
async function deleteMadeVolume(volumes: VolumeManager, volumeId: string, madeAt: number): Promise<void> {
  const listed = await lookUpUntilListed(() => volumes.describeVolume(volumeId), () => true, madeAt + EC2_SETTLE_MS);
  if (listed !== undefined) await volumes.deleteVolume(volumeId);
}

/** Waits until the volume leaves creating: available is returned, error fails. */
export async function waitForVolume(volumes: VolumeManager, volumeId: string, wait: PollOptions & { signal?: AbortSignal }): Promise<RemoteVolume> {
  return pollUntil(
    `volume ${volumeId} to be available`,
    async () => {
      const volume = await volumes.describeVolume(volumeId);
      // Just made, EC2 may not list it yet (eventual consistency): look again.
      if (volume === undefined || volume.state === 'creating') return undefined;
      if (volume.state !== 'available') throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, `volume ${volumeId} ended in state ${volume.state} instead of available`);
      return volume;
    },
    wait,
  );
}

async function waitForAttachment(volumes: VolumeManager, volumeId: string, wait: PollOptions & { signal?: AbortSignal }): Promise<RemoteVolume> {
  return pollUntil(
    `volume ${volumeId} to be attached`,
    async () => {
      const volume = await volumes.describeVolume(volumeId);
      if (volume === undefined) throw new SnaplineError(ErrorCodes.NOT_FOUND, `volume ${volumeId} disappeared while being attached`);
      return volume.attachment?.state === 'attached' ? volume : undefined;
    },
    wait,
  );
}
