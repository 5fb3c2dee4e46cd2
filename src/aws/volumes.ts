import type { EC2Client, Volume } from '@aws-sdk/client-ec2';
import type { FastRestoreState, NewVolume, RemoteInstance, RemoteVolume, VolumeManager, VolumeState } from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { ec2Sdk } from './sdk.js';

/** EC2 codes in the Unsuccessful list of EnableFastSnapshotRestores and what they become. */
const FAST_RESTORE_FAILURES: Record<string, (typeof ErrorCodes)[keyof typeof ErrorCodes]> = {
  ResourceLimitExceeded: ErrorCodes.QUOTA_EXCEEDED,
  'InvalidSnapshot.NotFound': ErrorCodes.NOT_FOUND,
};

/**
 * Volumes, instances and fast snapshot restore over EC2 (the SDK's standard
 * retry applies). With `signal`, an abort ends the descriptions in flight
 * (INTERRUPTED); the calls that change something (create, attach, delete,
 * FSR) run to their end, so that the caller learns what exists and can
 * clean it up, and go out after the abort too.
 */
export class Ec2VolumeManager implements VolumeManager {
  readonly #clientOf: () => EC2Client;
  readonly #requests: InFlightRequests;

  constructor(client: EC2Client | (() => EC2Client), options: { signal?: AbortSignal; contact?: EndpointContact } = {}) {
    this.#clientOf = typeof client === 'function' ? client : () => client;
    this.#requests = new InFlightRequests(options.signal, options.contact);
  }

  async #send<T>(action: string, send: (client: EC2Client, abortSignal: AbortSignal | undefined) => Promise<T>, cutOnAbort = true): Promise<T> {
    try {
      return await this.#requests.run(`ec2:${action}`, (abortSignal) => send(this.#clientOf(), abortSignal), { cutOnAbort });
    } catch (err) {
      throw fromAwsError(err, `ec2:${action}`);
    }
  }

  async createVolume(input: NewVolume): Promise<RemoteVolume> {
    const tags = Object.entries(input.tags ?? {}).map(([Key, Value]) => ({ Key, Value }));
    const command = new (ec2Sdk().CreateVolumeCommand)({
      SnapshotId: input.snapshotId,
      AvailabilityZone: input.availabilityZone,
      VolumeType: input.volumeType as Volume['VolumeType'],
      Size: input.sizeGiB,
      Iops: input.iops,
      Throughput: input.throughput,
      Encrypted: input.encrypted,
      KmsKeyId: input.kmsKeyId,
      ...(tags.length === 0 ? {} : { TagSpecifications: [{ ResourceType: 'volume', Tags: tags }] }),
      ...(input.clientToken === undefined ? {} : { ClientToken: input.clientToken }),
    });
    // Not cut by an abort: a volume made by a request whose answer was dropped would be left behind unseen.
    const out = await this.#send('CreateVolume', (client, abortSignal) => client.send(command, { abortSignal }), false);
    return toRemoteVolume(out);
  }

  async describeVolume(volumeId: string): Promise<RemoteVolume | undefined> {
    try {
      const out = await this.#send('DescribeVolumes', (client, abortSignal) => client.send(new (ec2Sdk().DescribeVolumesCommand)({ VolumeIds: [volumeId] }), { abortSignal }));
      const volume = out.Volumes?.[0];
      return volume === undefined ? undefined : toRemoteVolume(volume);
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async attachVolume(volumeId: string, instanceId: string, device: string): Promise<void> {
    const command = new (ec2Sdk().AttachVolumeCommand)({ VolumeId: volumeId, InstanceId: instanceId, Device: device });
    await this.#send('AttachVolume', (client, abortSignal) => client.send(command, { abortSignal }), false);
  }

  async deleteVolume(volumeId: string): Promise<void> {
    try {
      await this.#send('DeleteVolume', (client, abortSignal) => client.send(new (ec2Sdk().DeleteVolumeCommand)({ VolumeId: volumeId }), { abortSignal }), false);
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.NOT_FOUND)) return;
      throw err;
    }
  }

  async taggedVolumes(tags: Record<string, string>): Promise<RemoteVolume[]> {
    const filters = Object.entries(tags).map(([key, value]) => ({ Name: `tag:${key}`, Values: [value] }));
    const found: RemoteVolume[] = [];
    let nextToken: string | undefined;
    do {
      const command = new (ec2Sdk().DescribeVolumesCommand)({ Filters: filters, MaxResults: 500, ...(nextToken === undefined ? {} : { NextToken: nextToken }) });
      const out = await this.#send('DescribeVolumes', (client, abortSignal) => client.send(command, { abortSignal }));
      found.push(...(out.Volumes ?? []).map(toRemoteVolume));
      nextToken = out.NextToken || undefined;
    } while (nextToken !== undefined);
    return found;
  }

  async describeInstance(instanceId: string): Promise<RemoteInstance | undefined> {
    try {
      const out = await this.#send('DescribeInstances', (client, abortSignal) =>
        client.send(new (ec2Sdk().DescribeInstancesCommand)({ InstanceIds: [instanceId] }), { abortSignal }),
      );
      const instance = out.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId);
      if (instance === undefined) return undefined;
      return { instanceId, availabilityZone: instance.Placement?.AvailabilityZone ?? '', state: instance.State?.Name ?? 'unknown' };
    } catch (err) {
      if (isSnaplineError(err, ErrorCodes.NOT_FOUND)) return undefined;
      throw err;
    }
  }

  async enableFastRestore(snapshotId: string, availabilityZone: string): Promise<void> {
    const command = new (ec2Sdk().EnableFastSnapshotRestoresCommand)({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [availabilityZone] });
    const out = await this.#send('EnableFastSnapshotRestores', (client, abortSignal) => client.send(command, { abortSignal }), false);
    const failure = out.Unsuccessful?.[0]?.FastSnapshotRestoreStateErrors?.[0]?.Error;
    if (failure !== undefined) {
      const code = FAST_RESTORE_FAILURES[failure.Code ?? ''] ?? ErrorCodes.REMOTE_REJECTED;
      throw new SnaplineError(code, `ec2:EnableFastSnapshotRestores refused ${snapshotId} in ${availabilityZone}: ${failure.Code}: ${failure.Message}`, {
        details: { awsError: failure.Code },
      });
    }
  }

  async disableFastRestore(snapshotId: string, availabilityZone: string): Promise<void> {
    const command = new (ec2Sdk().DisableFastSnapshotRestoresCommand)({ SourceSnapshotIds: [snapshotId], AvailabilityZones: [availabilityZone] });
    // A pair that is not enabled comes back in Unsuccessful: already disabled, which is what was asked.
    await this.#send('DisableFastSnapshotRestores', (client, abortSignal) => client.send(command, { abortSignal }), false);
  }

  async fastRestoreState(snapshotId: string, availabilityZone: string): Promise<FastRestoreState | undefined> {
    const command = new (ec2Sdk().DescribeFastSnapshotRestoresCommand)({
      Filters: [
        { Name: 'snapshot-id', Values: [snapshotId] },
        { Name: 'availability-zone', Values: [availabilityZone] },
      ],
    });
    const out = await this.#send('DescribeFastSnapshotRestores', (client, abortSignal) => client.send(command, { abortSignal }));
    return out.FastSnapshotRestores?.[0]?.State;
  }
}

function toRemoteVolume(volume: Volume): RemoteVolume {
  if (volume.VolumeId === undefined || volume.State === undefined || volume.AvailabilityZone === undefined) {
    throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'ec2: a volume in the response lacks VolumeId, State or AvailabilityZone');
  }
  const attachment = volume.Attachments?.[0];
  return {
    volumeId: volume.VolumeId,
    state: volume.State as VolumeState,
    sizeGiB: volume.Size ?? 0,
    availabilityZone: volume.AvailabilityZone,
    volumeType: volume.VolumeType ?? 'unknown',
    encrypted: volume.Encrypted ?? false,
    fastRestored: volume.FastRestored ?? false,
    ...(volume.SnapshotId ? { snapshotId: volume.SnapshotId } : {}),
    ...(volume.Iops === undefined ? {} : { iops: volume.Iops }),
    ...(volume.Throughput === undefined ? {} : { throughput: volume.Throughput }),
    ...(volume.KmsKeyId ? { kmsKeyId: volume.KmsKeyId } : {}),
    ...(attachment?.InstanceId && attachment.Device && attachment.State
      ? { attachment: { instanceId: attachment.InstanceId, device: attachment.Device, state: attachment.State } }
      : {}),
  };
}
