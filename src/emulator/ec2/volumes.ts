import { randomBytes } from 'node:crypto';
import { BLOCK_SIZE, BLOCKS_PER_GIB } from '../../core/constants.js';
import { AwsError } from '../protocol/aws-error.js';
import { ACCOUNT_ID, type SnapshotService } from '../snapshots.js';
import type { SnapshotRecord, Tag } from '../store/catalog.js';

/**
 * How long each transition takes on AWS, in milliseconds; the endpoint
 * divides them by its time scale. AWS documents only the FSR optimizing
 * rate (60 minutes per TiB); the others are what AWS typically shows.
 */
export const VOLUME_DELAYS_MS = {
  /** creating -> available (without FSR; a volume from an FSR-enabled snapshot is available at once). */
  create: 10_000,
  /** attaching -> attached, detaching -> detached, deleting -> gone. */
  attach: 5_000,
  detach: 5_000,
  delete: 5_000,
  /** FSR enabling -> optimizing, disabling -> disabled. */
  fsrEnabling: 60_000,
  fsrDisabling: 60_000,
  /** FSR optimizing -> enabled: 60 minutes per TiB of the snapshot's volume size. */
  fsrOptimizingPerGiB: (60 * 60_000) / 1024,
};

/** Snapshots with fast snapshot restore enabled (in any state but disabled) per Region (EBS quota, adjustable). */
export const MAX_FAST_RESTORE_SNAPSHOTS = 5;

/** Availability Zones each Region has on the endpoint: REGION + a, b, c. */
export const ZONE_LETTERS = ['a', 'b', 'c'];

/**
 * Volume types, with their sizes (GiB) and provisioned IOPS and throughput
 * ranges from the CreateVolume reference, and the EBS User Guide's ratios:
 * at most `iopsPerGiB` IOPS per GiB of size above a baseline of
 * `baselineIops` (gp3 3,000; Provisioned IOPS SSD volumes, General Purpose
 * SSD volumes), and for gp3 at most 0.25 MiB/s per IOPS above 125 MiB/s.
 */
const VOLUME_TYPES: Record<
  string,
  { minGiB: number; maxGiB: number; iops?: [number, number]; iopsRequired?: boolean; iopsPerGiB?: number; baselineIops?: number; throughput?: [number, number] }
> = {
  gp2: { minGiB: 1, maxGiB: 16_384 },
  gp3: { minGiB: 1, maxGiB: 65_536, iops: [3000, 80_000], iopsPerGiB: 500, baselineIops: 3000, throughput: [125, 2000] },
  io1: { minGiB: 4, maxGiB: 16_384, iops: [100, 64_000], iopsRequired: true, iopsPerGiB: 50 },
  io2: { minGiB: 4, maxGiB: 65_536, iops: [100, 256_000], iopsRequired: true, iopsPerGiB: 1000 },
  st1: { minGiB: 125, maxGiB: 16_384 },
  sc1: { minGiB: 125, maxGiB: 16_384 },
  standard: { minGiB: 1, maxGiB: 1024 },
};

/** gp3 throughput: 125 MiB/s whatever the IOPS, more at 0.25 MiB/s per provisioned IOPS. */
const GP3_BASELINE_THROUGHPUT = 125;
const GP3_THROUGHPUT_PER_IOPS = 0.25;

export const ec2Error = (code: string, message: string, status = 400) => new AwsError(status, code, message);

export interface VolumeAttachment {
  instanceId: string;
  device: string;
  /** When AttachVolume was accepted (endpoint clock). */
  attachTime: number;
  attachedAt: number;
  /** When DetachVolume was accepted, and when the detachment is done. */
  detachedAt?: number;
}

export interface VolumeRecord {
  volumeId: string;
  region: string;
  availabilityZone: string;
  sizeGiB: number;
  volumeType: string;
  iops: number | null;
  throughput: number | null;
  encrypted: boolean;
  kmsKeyId: string | null;
  snapshotId: string | null;
  /** The catalog id of the source snapshot: its block map is the volume's content. */
  source: number | null;
  tags: Tag[];
  createTime: number;
  availableAt: number;
  /** Why the volume ends in state error once created (its KMS key is not usable). */
  failure: string | null;
  /** Whether it was created from a snapshot with fast snapshot restore enabled in its zone. */
  fastRestored: boolean;
  attachment: VolumeAttachment | null;
  deletedAt: number | null;
  goneAt: number | null;
}

export type VolumeState = 'creating' | 'available' | 'in-use' | 'deleting' | 'error';

export interface InstanceRecord {
  instanceId: string;
  region: string;
  availabilityZone: string;
  launchTime: number;
}

export type FastRestoreState = 'enabling' | 'optimizing' | 'enabled' | 'disabling' | 'disabled';

export interface FastRestoreRecord {
  snapshotId: string;
  region: string;
  availabilityZone: string;
  /** Endpoint-clock times of each transition. */
  enablingTime: number;
  optimizingTime: number;
  enabledTime: number;
  disablingTime: number | null;
  disabledTime: number | null;
}

export interface CreateVolumeInput {
  availabilityZone?: string;
  size?: number;
  snapshotId?: string;
  volumeType?: string;
  iops?: number;
  throughput?: number;
  encrypted?: boolean;
  kmsKeyId?: string;
  tags: Tag[];
}

/** A failure of one snapshot and zone in Enable/DisableFastSnapshotRestores (answered in Unsuccessful, not as an error). */
export interface FastRestoreFailure {
  snapshotId: string;
  availabilityZone: string;
  code: string;
  message: string;
}

/** A CreateVolume client token: the parameters it came with and the volume it made. */
export interface VolumeClientToken {
  parameters: string;
  volumeId: string;
}

/** Everything stored of volumes, instances and FSR, keyed as VolumeService keys them, in the order they were made. */
export interface StoredVolumes {
  volumes: Map<string, VolumeRecord>;
  clientTokens: Map<string, VolumeClientToken>;
  instances: Map<string, InstanceRecord>;
  fastRestores: Map<string, FastRestoreRecord>;
}

/** Where VolumeService writes its records through to (store/volume-catalog.ts: the endpoint's catalog). */
export interface VolumeStore {
  load(): StoredVolumes;
  /** The volume and, for a volume a CreateVolume client token made, that token, together (a retry must never find one without the other). */
  putVolume(volume: VolumeRecord, madeFor?: { key: string; token: VolumeClientToken }): void;
  dropVolume(volumeId: string): void;
  putInstance(instance: InstanceRecord): void;
  putFastRestore(key: string, record: FastRestoreRecord): void;
}

/**
 * EBS volumes, the instances they attach to, and fast snapshot restore, as
 * EC2 shows them. Kept in memory and written through to the store (the
 * endpoint's catalog), so a restart finds them as they were. Every state is
 * computed from the transition times on the endpoint's clock, so no timer runs. A volume's content is its source
 * snapshot's block map, read through the snapshot catalog; it stays
 * readable while that snapshot is not deleted.
 */
export class VolumeService {
  readonly #volumes: Map<string, VolumeRecord>;
  /** CreateVolume client tokens by Region: the parameters they came with and the volume they made. */
  readonly #byClientToken: Map<string, VolumeClientToken>;
  readonly #instances: Map<string, InstanceRecord>;
  /** By `${snapshotId} ${zone}`. */
  readonly #fastRestores: Map<string, FastRestoreRecord>;

  constructor(
    private readonly snapshots: SnapshotService,
    private readonly store: VolumeStore,
    private readonly now: () => number,
    private readonly timeScale: number,
    /** Milliseconds EC2 lags behind: a volume made less than this ago is not found yet (DescribeVolumes, AttachVolume, DeleteVolume...). */
    private readonly ec2LagMs = 0,
  ) {
    const stored = store.load();
    this.#volumes = stored.volumes;
    this.#byClientToken = stored.clientTokens;
    this.#instances = stored.instances;
    this.#fastRestores = stored.fastRestores;
  }

  // ---- instances -----------------------------------------------------------

  /** Makes `count` running instances in `zone` (endpoint-only: RunInstances is not served). */
  createInstances(zone: string, count: number): InstanceRecord[] {
    const region = regionOfZone(zone);
    if (region === undefined) throw ec2Error('InvalidParameterValue', `Invalid availability zone: [${zone}]`);
    const made: InstanceRecord[] = [];
    for (let i = 0; i < count; i += 1) {
      const instance = { instanceId: `i-${hexId()}`, region, availabilityZone: zone, launchTime: this.now() };
      this.#instances.set(instance.instanceId, instance);
      this.store.putInstance(instance);
      made.push(instance);
    }
    return made;
  }

  /** Makes as many running instances in `zone` as it lacks of `count` (a restarted endpoint keeps its own); all of the zone's. */
  ensureInstances(zone: string, count: number): InstanceRecord[] {
    const inZone = () => [...this.#instances.values()].filter((i) => i.availabilityZone === zone);
    this.createInstances(zone, Math.max(0, count - inZone().length));
    return inZone();
  }

  instances(region: string, ids: string[]): InstanceRecord[] {
    for (const id of ids) checkId(id, 'i', 'InvalidInstanceID.Malformed');
    const missing = ids.filter((id) => this.#instances.get(id)?.region !== region);
    if (missing.length > 0) throw ec2Error('InvalidInstanceID.NotFound', `The instance IDs '${missing.join(', ')}' do not exist`);
    const all = [...this.#instances.values()].filter((i) => i.region === region);
    return ids.length === 0 ? all : ids.map((id) => this.#instances.get(id)!);
  }

  /** The devices of an instance's attachments that are not detached. */
  attachmentsOf(instanceId: string): VolumeRecord[] {
    return [...this.#volumes.values()].filter((v) => this.#liveAttachment(v)?.instanceId === instanceId);
  }

  // ---- volumes ---------------------------------------------------------------

  /**
   * CreateVolume: every check the reference documents, then a volume in
   * state creating. A `clientToken` seen before in the Region with the same
   * parameters answers the volume it made (in its state now, nothing made);
   * with other parameters, IdempotentParameterMismatch. Once that volume is
   * gone from listings, the token is forgotten with it. A token is at most
   * 64 ASCII characters.
   */
  create(input: CreateVolumeInput, region: string, clientToken?: string): VolumeRecord {
    if (clientToken === undefined) return this.#create(input, region);
    if (clientToken.length === 0 || clientToken.length > 64 || [...clientToken].some((c) => c.charCodeAt(0) > 0x7f)) {
      throw ec2Error('InvalidParameterValue', `Value (${clientToken}) for parameter clientToken is invalid. The client token must be 1 to 64 ASCII characters.`);
    }
    const key = `${region}\0${clientToken}`;
    const parameters = JSON.stringify(input);
    const earlier = this.#byClientToken.get(key);
    if (earlier !== undefined) {
      if (earlier.parameters !== parameters) throw ec2Error('IdempotentParameterMismatch', `The client token ${clientToken} was used before with other parameters.`);
      return this.#volumes.get(earlier.volumeId)!;
    }
    return this.#create(input, region, { key, parameters });
  }

  /** A new volume; `clientToken` (its key and the request's parameters) is stored with it. */
  #create(input: CreateVolumeInput, region: string, clientToken?: { key: string; parameters: string }): VolumeRecord {
    if (input.availabilityZone === undefined) throw ec2Error('MissingParameter', 'The request must contain the parameter AvailabilityZone');
    if (regionOfZone(input.availabilityZone) !== region) throw ec2Error('InvalidParameterValue', `Invalid availability zone: [${input.availabilityZone}]`);
    const volumeType = input.volumeType ?? 'gp2';
    const type = VOLUME_TYPES[volumeType];
    if (type === undefined) throw ec2Error('InvalidParameterValue', `Value (${volumeType}) for parameter volumeType is invalid. Valid values: ${Object.keys(VOLUME_TYPES).join(', ')}`);

    let snapshot: SnapshotRecord | undefined;
    if (input.snapshotId !== undefined) {
      checkId(input.snapshotId, 'snap', 'InvalidSnapshotID.Malformed');
      snapshot = this.snapshots.find(input.snapshotId, region);
      if (snapshot === undefined) throw ec2Error('InvalidSnapshot.NotFound', `The snapshot '${input.snapshotId}' does not exist.`);
      if (snapshot.status !== 'completed') throw ec2Error('IncorrectState', `Snapshot '${input.snapshotId}' is in state '${snapshot.status}', not 'completed'.`);
    }
    if (input.size === undefined && snapshot === undefined) throw ec2Error('MissingParameter', 'The request must contain the parameter size or snapshotId');
    const sizeGiB = input.size ?? snapshot!.volumeSize;
    if (snapshot !== undefined && sizeGiB < snapshot.volumeSize) {
      throw ec2Error('InvalidParameterValue', `Volume of ${sizeGiB}GiB is smaller than snapshot '${snapshot.snapshotId}', expect size >= ${snapshot.volumeSize}GiB`);
    }
    if (!Number.isInteger(sizeGiB) || sizeGiB < type.minGiB || sizeGiB > type.maxGiB) {
      throw ec2Error('InvalidParameterValue', `Volume size ${sizeGiB} GiB is out of range for ${volumeType}: ${type.minGiB} to ${type.maxGiB} GiB.`);
    }
    const iops = checkRange('Iops', input.iops, type.iops, volumeType);
    if (type.iopsRequired && iops === null) throw ec2Error('MissingParameter', `The parameter iops must be specified for ${volumeType} volumes.`);
    const throughput = checkRange('Throughput', input.throughput, type.throughput, volumeType);
    if (iops !== null && type.iopsPerGiB !== undefined && iops > Math.max(type.baselineIops ?? 0, type.iopsPerGiB * sizeGiB)) {
      throw ec2Error('InvalidParameterValue', `Iops to volume size ratio of ${(iops / sizeGiB).toFixed(6)} is too high; maximum is ${type.iopsPerGiB.toFixed(6)}.`);
    }
    if (throughput !== null && throughput > Math.max(GP3_BASELINE_THROUGHPUT, GP3_THROUGHPUT_PER_IOPS * (iops ?? type.baselineIops ?? 0))) {
      throw ec2Error('InvalidParameterValue', `Throughput (MiBps) to iops ratio of ${(throughput / (iops ?? type.baselineIops ?? 1)).toFixed(6)} is too high; maximum is ${GP3_THROUGHPUT_PER_IOPS.toFixed(6)} MiBps per iops.`);
    }

    const { encrypted, kmsKeyId, failure } = this.#encryptionOf(input, snapshot, region);
    const now = this.now();
    const fastRestored = snapshot !== undefined && this.fastRestoreState(snapshot.snapshotId, input.availabilityZone) === 'enabled';
    const volume: VolumeRecord = {
      volumeId: `vol-${hexId()}`,
      region,
      availabilityZone: input.availabilityZone,
      sizeGiB,
      volumeType,
      iops: iops ?? (volumeType === 'gp3' ? 3000 : volumeType === 'gp2' ? Math.min(16_000, Math.max(100, 3 * sizeGiB)) : null),
      throughput: throughput ?? (volumeType === 'gp3' ? 125 : null),
      encrypted,
      kmsKeyId,
      snapshotId: snapshot?.snapshotId ?? null,
      source: snapshot?.id ?? null,
      tags: input.tags,
      createTime: now,
      availableAt: now + (fastRestored ? 0 : this.#scaled(VOLUME_DELAYS_MS.create)),
      failure,
      fastRestored,
      attachment: null,
      deletedAt: null,
      goneAt: null,
    };
    const madeFor = clientToken && { key: clientToken.key, token: { parameters: clientToken.parameters, volumeId: volume.volumeId } };
    this.store.putVolume(volume, madeFor);
    this.#volumes.set(volume.volumeId, volume);
    if (madeFor !== undefined) this.#byClientToken.set(madeFor.key, madeFor.token);
    return volume;
  }

  /**
   * The encryption of a new volume: from an encrypted snapshot always
   * encrypted (with its key unless KmsKeyId names another); with encryption
   * by default on, always encrypted. KmsKeyId needs Encrypted true. The key
   * is checked asynchronously, as AWS does: an unknown key makes a volume
   * that ends in state error.
   */
  #encryptionOf(input: CreateVolumeInput, snapshot: SnapshotRecord | undefined, region: string) {
    if (input.kmsKeyId !== undefined && input.encrypted !== true) {
      throw ec2Error('InvalidParameterDependency', 'The parameter KmsKeyId requires the parameter Encrypted to be set.');
    }
    const encrypted = input.encrypted === true || snapshot?.encrypted === true || this.snapshots.encryptionByDefault(region);
    if (!encrypted) return { encrypted, kmsKeyId: null, failure: null };
    if (input.kmsKeyId === undefined) return { encrypted, kmsKeyId: snapshot?.kmsKeyArn ?? defaultKeyArn(region), failure: null };
    const key = keyArnOf(input.kmsKeyId, region);
    if (key === undefined) return { encrypted, kmsKeyId: input.kmsKeyId, failure: `Client.InvalidKMSKey.InvalidState: The KMS key ${input.kmsKeyId} does not exist in ${region}.` };
    return { encrypted, kmsKeyId: key, failure: null };
  }

  /**
   * The volumes of a Region, or those named (InvalidVolume.NotFound when one
   * is not). Gone ones are left out, and so are those made less than the EC2
   * lag ago (EC2 is eventually consistent).
   */
  volumes(region: string, ids: string[]): VolumeRecord[] {
    for (const id of ids) checkId(id, 'vol', 'InvalidVolumeID.Malformed');
    const now = this.now();
    const visible = (v: VolumeRecord | undefined): v is VolumeRecord =>
      v !== undefined && v.region === region && now - v.createTime >= this.ec2LagMs && !this.#gone(v);
    const missing = ids.filter((id) => !visible(this.#volumes.get(id)));
    if (missing.length > 0) throw ec2Error('InvalidVolume.NotFound', `The volume '${missing.join(', ')}' does not exist.`);
    return ids.length === 0 ? [...this.#volumes.values()].filter(visible) : ids.map((id) => this.#volumes.get(id)!);
  }

  state(volume: VolumeRecord): VolumeState {
    const now = this.now();
    if (volume.deletedAt !== null) return 'deleting';
    if (now < volume.availableAt) return 'creating';
    if (volume.failure !== null) return 'error';
    return this.#liveAttachment(volume) === null ? 'available' : 'in-use';
  }

  /** The attachment's state now, or null when it is detached. */
  attachmentState(volume: VolumeRecord): 'attaching' | 'attached' | 'detaching' | null {
    const attachment = this.#liveAttachment(volume);
    if (attachment === null) return null;
    if (attachment.detachedAt !== undefined) return 'detaching';
    return this.now() < attachment.attachedAt ? 'attaching' : 'attached';
  }

  /** AttachVolume: the volume available, the instance in its zone, the device free on the instance. */
  attach(region: string, volumeId: string | null, instanceId: string | null, device: string | null): VolumeRecord {
    if (volumeId === null) throw ec2Error('MissingParameter', 'The request must contain the parameter VolumeId');
    if (instanceId === null) throw ec2Error('MissingParameter', 'The request must contain the parameter InstanceId');
    if (device === null) throw ec2Error('MissingParameter', 'The request must contain the parameter Device');
    const [volume] = this.volumes(region, [volumeId]);
    const [instance] = this.instances(region, [instanceId]);
    if (!/^\/dev\/(sd[a-z]|xvd[a-z]{1,2}|sd[a-z][1-9])$|^xvd[a-z]{1,2}$/.test(device)) {
      throw ec2Error('InvalidParameterValue', `Value (${device}) for parameter device is invalid. ${device} is not a valid EBS device name.`);
    }
    const state = this.state(volume!);
    if (state === 'in-use') throw ec2Error('VolumeInUse', `${volumeId} is already attached to an instance`);
    if (state !== 'available') throw ec2Error('IncorrectState', `vol '${volumeId}' is not 'available'. It is '${state}'.`);
    if (volume!.availabilityZone !== instance!.availabilityZone) {
      throw ec2Error('InvalidVolume.ZoneMismatch', `The volume '${volumeId}' is not in the same availability zone as instance '${instanceId}'`);
    }
    if (this.attachmentsOf(instanceId).some((v) => v.attachment!.device === device)) {
      throw ec2Error('InvalidParameterValue', `Invalid value '${device}' for unixDevice. Attachment point ${device} is already in use`);
    }
    const now = this.now();
    volume!.attachment = { instanceId, device, attachTime: now, attachedAt: now + this.#scaled(VOLUME_DELAYS_MS.attach) };
    this.store.putVolume(volume!);
    return volume!;
  }

  /** DetachVolume: the volume must be attached (and to the instance, when one is named). */
  detach(region: string, volumeId: string | null, instanceId: string | null): VolumeRecord {
    if (volumeId === null) throw ec2Error('MissingParameter', 'The request must contain the parameter VolumeId');
    const [volume] = this.volumes(region, [volumeId]);
    const attachment = this.#liveAttachment(volume!);
    if (attachment === null || (instanceId !== null && attachment.instanceId !== instanceId)) {
      throw ec2Error('IncorrectState', `Volume '${volumeId}' is in the '${this.state(volume!)}' state${instanceId === null ? '' : ` and not attached to '${instanceId}'`}.`);
    }
    attachment.detachedAt ??= this.now() + this.#scaled(VOLUME_DELAYS_MS.detach);
    this.store.putVolume(volume!);
    return volume!;
  }

  /** DeleteVolume: only a volume that is not attached (available, creating or error). */
  delete(region: string, volumeId: string | null): void {
    if (volumeId === null) throw ec2Error('MissingParameter', 'The request must contain the parameter VolumeId');
    const [volume] = this.volumes(region, [volumeId]);
    if (this.state(volume!) === 'in-use') throw ec2Error('VolumeInUse', `Volume ${volumeId} is currently attached to ${volume!.attachment!.instanceId}`);
    if (volume!.deletedAt !== null) throw ec2Error('IncorrectState', `The volume '${volumeId}' is 'deleting'.`);
    const now = this.now();
    volume!.deletedAt = now;
    volume!.goneAt = now + this.#scaled(VOLUME_DELAYS_MS.delete);
    this.store.putVolume(volume!);
  }

  /**
   * `length` bytes of a volume from byte `offset` (endpoint-only read-back):
   * the source snapshot's blocks, zeros where it has none or past it. The
   * volume must exist, be past creating, and not be in error.
   */
  async read(volumeId: string, offset: number, length: number): Promise<Buffer> {
    const volume = this.#volumes.get(volumeId);
    if (volume === undefined || this.#gone(volume)) throw ec2Error('InvalidVolume.NotFound', `The volume '${volumeId}' does not exist.`);
    const state = this.state(volume);
    if (state === 'creating' || state === 'error') throw ec2Error('IncorrectState', `The volume '${volumeId}' is '${state}'.`);
    const size = volume.sizeGiB * BLOCKS_PER_GIB * BLOCK_SIZE;
    const end = Math.min(size, offset + length);
    const out = Buffer.alloc(Math.max(0, end - offset));
    for (let block = Math.floor(offset / BLOCK_SIZE); block * BLOCK_SIZE < end; block += 1) {
      const data = volume.source === null ? undefined : await this.snapshots.blockOf(volume.source, block);
      if (data === undefined) continue;
      const from = Math.max(offset, block * BLOCK_SIZE);
      const to = Math.min(end, (block + 1) * BLOCK_SIZE);
      data.copy(out, from - offset, from - block * BLOCK_SIZE, to - block * BLOCK_SIZE);
    }
    return out;
  }

  // ---- fast snapshot restore -------------------------------------------------

  /** EnableFastSnapshotRestores for every pair of snapshot and zone; failures per pair. */
  enableFastRestores(region: string, snapshotIds: string[], zones: string[]): { done: FastRestoreRecord[]; failed: FastRestoreFailure[] } {
    checkFastRestoreArguments(snapshotIds, zones);
    const done: FastRestoreRecord[] = [];
    const failed: FastRestoreFailure[] = [];
    for (const snapshotId of snapshotIds) {
      const snapshot = this.snapshots.find(snapshotId, region);
      for (const zone of zones) {
        const fail = (code: string, message: string) => failed.push({ snapshotId, availabilityZone: zone, code, message });
        if (snapshot === undefined) {
          fail('InvalidSnapshot.NotFound', `The snapshot '${snapshotId}' does not exist.`);
          continue;
        }
        if (regionOfZone(zone) !== region) {
          fail('InvalidParameterValue', `Invalid availability zone: [${zone}]`);
          continue;
        }
        const existing = this.#fastRestore(snapshotId, zone);
        const active = existing !== undefined && this.#fastRestoreStateOf(existing) !== 'disabled';
        if (active) {
          done.push(existing);
          continue;
        }
        const enabledSnapshots = new Set(this.#activeFastRestores(region).map((r) => r.snapshotId));
        if (!enabledSnapshots.has(snapshotId) && enabledSnapshots.size >= MAX_FAST_RESTORE_SNAPSHOTS) {
          fail('ResourceLimitExceeded', `You can enable fast snapshot restore for at most ${MAX_FAST_RESTORE_SNAPSHOTS} snapshots per Region.`);
          continue;
        }
        const now = this.now();
        const optimizingTime = now + this.#scaled(VOLUME_DELAYS_MS.fsrEnabling);
        const record: FastRestoreRecord = {
          snapshotId,
          region,
          availabilityZone: zone,
          enablingTime: now,
          optimizingTime,
          enabledTime: optimizingTime + this.#scaled(VOLUME_DELAYS_MS.fsrOptimizingPerGiB * snapshot.volumeSize),
          disablingTime: null,
          disabledTime: null,
        };
        this.#fastRestores.set(`${snapshotId} ${zone}`, record);
        this.store.putFastRestore(`${snapshotId} ${zone}`, record);
        done.push(record);
      }
    }
    return { done, failed };
  }

  /** DisableFastSnapshotRestores: a pair not enabled fails with InvalidParameterValue. */
  disableFastRestores(region: string, snapshotIds: string[], zones: string[]): { done: FastRestoreRecord[]; failed: FastRestoreFailure[] } {
    checkFastRestoreArguments(snapshotIds, zones);
    const done: FastRestoreRecord[] = [];
    const failed: FastRestoreFailure[] = [];
    for (const snapshotId of snapshotIds) {
      for (const zone of zones) {
        const record = this.#fastRestore(snapshotId, zone);
        if (record === undefined || record.region !== region || this.#fastRestoreStateOf(record) === 'disabled') {
          failed.push({ snapshotId, availabilityZone: zone, code: 'InvalidParameterValue', message: `Fast snapshot restore is not enabled for ${snapshotId} in ${zone}.` });
          continue;
        }
        if (record.disablingTime === null) {
          record.disablingTime = this.now();
          record.disabledTime = record.disablingTime + this.#scaled(VOLUME_DELAYS_MS.fsrDisabling);
          this.store.putFastRestore(`${snapshotId} ${zone}`, record);
        }
        done.push(record);
      }
    }
    return { done, failed };
  }

  /** Every FSR record of a Region (disabled ones too), oldest first. */
  fastRestores(region: string): FastRestoreRecord[] {
    return [...this.#fastRestores.values()].filter((r) => r.region === region && this.snapshots.find(r.snapshotId, region) !== undefined);
  }

  fastRestoreState(snapshotId: string, zone: string): FastRestoreState | undefined {
    const record = this.#fastRestore(snapshotId, zone);
    return record === undefined ? undefined : this.#fastRestoreStateOf(record);
  }

  stateOfFastRestore(record: FastRestoreRecord): FastRestoreState {
    return this.#fastRestoreStateOf(record);
  }

  // ---- helpers ---------------------------------------------------------------

  #fastRestore(snapshotId: string, zone: string): FastRestoreRecord | undefined {
    return this.#fastRestores.get(`${snapshotId} ${zone}`);
  }

  #activeFastRestores(region: string): FastRestoreRecord[] {
    return this.fastRestores(region).filter((r) => this.#fastRestoreStateOf(r) !== 'disabled');
  }

  #fastRestoreStateOf(record: FastRestoreRecord): FastRestoreState {
    const now = this.now();
    if (record.disablingTime !== null) return now < record.disabledTime! ? 'disabling' : 'disabled';
    if (now < record.optimizingTime) return 'enabling';
    return now < record.enabledTime ? 'optimizing' : 'enabled';
  }

  /** The attachment unless its detachment is done (then it is dropped). */
  #liveAttachment(volume: VolumeRecord): VolumeAttachment | null {
    const attachment = volume.attachment;
    if (attachment?.detachedAt !== undefined && this.now() >= attachment.detachedAt) volume.attachment = null;
    return volume.attachment;
  }

  /** Drops a deleted volume once it is no longer listed, and the client tokens that answered it (a repeat then makes a new volume). */
  #gone(volume: VolumeRecord): boolean {
    if (volume.goneAt === null || this.now() < volume.goneAt) return false;
    this.#volumes.delete(volume.volumeId);
    for (const [key, token] of this.#byClientToken) if (token.volumeId === volume.volumeId) this.#byClientToken.delete(key);
    this.store.dropVolume(volume.volumeId);
    return true;
  }

  #scaled(ms: number): number {
    return ms / this.timeScale;
  }
}

/** The Region of an Availability Zone the endpoint knows (REGION + a, b or c), or undefined. */
export function regionOfZone(zone: string): string | undefined {
  const m = /^([a-z]{2}(?:-[a-z]+)+-\d)([a-z])$/.exec(zone);
  return m !== null && ZONE_LETTERS.includes(m[2]!) ? m[1] : undefined;
}

function checkFastRestoreArguments(snapshotIds: string[], zones: string[]): void {
  if (snapshotIds.length === 0) throw ec2Error('MissingParameter', 'The request must contain the parameter SourceSnapshotId');
  if (zones.length === 0) throw ec2Error('MissingParameter', 'The request must contain the parameter AvailabilityZone');
  for (const id of snapshotIds) checkId(id, 'snap', 'InvalidSnapshotID.Malformed');
}

function checkRange(name: string, value: number | undefined, range: [number, number] | undefined, volumeType: string): number | null {
  if (value === undefined) return null;
  if (range === undefined) throw ec2Error('InvalidParameterCombination', `The parameter ${name} is not supported for ${volumeType} volumes.`);
  if (!Number.isInteger(value) || value < range[0] || value > range[1]) {
    throw ec2Error('InvalidParameterValue', `${name} ${value} is out of range for ${volumeType}: ${range[0]} to ${range[1]}.`);
  }
  return value;
}

function checkId(id: string, prefix: string, code: string): void {
  if (!new RegExp(`^${prefix}-[0-9a-f]{8,17}$`).test(id)) throw ec2Error(code, `Invalid id: "${id}" (expecting "${prefix}-...")`);
}

function hexId(): string {
  return randomBytes(9).toString('hex').slice(0, 17);
}

/** The account's default EBS key in a Region (alias/aws/ebs), as the snapshot service names it. */
function defaultKeyArn(region: string): string {
  return `arn:aws:kms:${region}:${ACCOUNT_ID}:key/5e1f0ebc-0000-4000-8000-${'0'.repeat(12)}`;
}

/**
 * The key ARN a KmsKeyId names when the key exists for the endpoint: a key
 * id, key ARN or alias of this account in this Region (alias/aws/ebs is the
 * default key; other aliases are unknown). Undefined for anything else.
 */
function keyArnOf(kmsKeyId: string, region: string): string | undefined {
  if (kmsKeyId === 'alias/aws/ebs' || kmsKeyId === `arn:aws:kms:${region}:${ACCOUNT_ID}:alias/aws/ebs`) return defaultKeyArn(region);
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(kmsKeyId)) return `arn:aws:kms:${region}:${ACCOUNT_ID}:key/${kmsKeyId}`;
  const m = /^arn:aws:kms:([^:]+):(\d{12}):key\/[0-9a-f-]{36}$/.exec(kmsKeyId);
  return m !== null && m[1] === region && m[2] === ACCOUNT_ID ? kmsKeyId : undefined;
}
