import type { EC2Client, Snapshot } from '@aws-sdk/client-ec2';
import type { RemoteSnapshot, SnapshotCatalog } from '../core/ports.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { ec2Sdk } from './sdk.js';

/** Ids per DescribeSnapshots call. */
const DESCRIBE_BATCH = 200;
const SNAPSHOT_ID = /snap-[0-9a-zA-Z]+/g;
/** EC2 fails the whole call for these when one id is unknown or malformed. */
const MISSING_ID_ERRORS = new Set(['InvalidSnapshot.NotFound', 'InvalidSnapshotID.Malformed']);

/**
 * Snapshot bookkeeping over EC2 (the SDK's standard retry applies). `client`
 * may be a function that makes it, called on the first request: a run that
 * never asks EC2 anything does not load its SDK. With `signal`, an abort ends
 * the descriptions in flight, retries included: their calls fail
 * INTERRUPTED; DeleteSnapshot and CreateTags run to their end, and calls
 * made after the abort (clean-up) go out (see InFlightRequests). Every
 * outcome marks `contact` (see EndpointContact).
 */
export class Ec2SnapshotCatalog implements SnapshotCatalog {
  readonly #clientOf: () => EC2Client;
  readonly #requests: InFlightRequests;

  constructor(client: EC2Client | (() => EC2Client), options: { signal?: AbortSignal; contact?: EndpointContact } = {}) {
    this.#clientOf = typeof client === 'function' ? client : () => client;
    this.#requests = new InFlightRequests(options.signal, options.contact);
  }

  get #client(): EC2Client {
    return this.#clientOf();
  }

  /**
   * The snapshots among `snapshotIds` that exist, in no particular order.
   * EC2 fails a whole call over one unknown id and names it in the message:
   * the named ids are dropped and the call repeated; if the message names
   * none of them, the ids are described one by one.
   */
  async describeSnapshots(snapshotIds: readonly string[]): Promise<RemoteSnapshot[]> {
    const unique = [...new Set(snapshotIds)];
    const found: RemoteSnapshot[] = [];
    for (let start = 0; start < unique.length; start += DESCRIBE_BATCH) {
      found.push(...(await this.#describeExisting(unique.slice(start, start + DESCRIBE_BATCH))));
    }
    return found;
  }

  async #describeExisting(ids: string[]): Promise<RemoteSnapshot[]> {
    let remaining = ids;
    while (remaining.length > 0) {
      try {
        return await this.#describe(remaining);
      } catch (err) {
        if (!isMissingIdError(err)) throw err;
        const named = new Set(missingIdsIn(err, remaining));
        if (named.size === 0) return this.#describeOneByOne(remaining);
        remaining = remaining.filter((id) => !named.has(id));
      }
    }
    return [];
  }

  async #describeOneByOne(ids: string[]): Promise<RemoteSnapshot[]> {
    const found: RemoteSnapshot[] = [];
    for (const id of ids) {
      try {
        found.push(...(await this.#describe([id])));
      } catch (err) {
        if (!isMissingIdError(err)) throw err;
      }
    }
    return found;
  }

  async #describe(ids: string[]): Promise<RemoteSnapshot[]> {
    try {
      const out = await this.#requests.run('ec2:DescribeSnapshots', (abortSignal) => this.#client.send(new (ec2Sdk().DescribeSnapshotsCommand)({ SnapshotIds: ids }), { abortSignal }));
      return (out.Snapshots ?? []).map(toRemoteSnapshot);
    } catch (err) {
      throw fromAwsError(err, 'ec2:DescribeSnapshots');
    }
  }

  /** Idempotent: a snapshot that is already gone counts as deleted. Not cut by an abort. */
  async deleteSnapshot(snapshotId: string): Promise<void> {
    try {
      await this.#requests.run('ec2:DeleteSnapshot', (abortSignal) => this.#client.send(new (ec2Sdk().DeleteSnapshotCommand)({ SnapshotId: snapshotId }), { abortSignal }), {
        cutOnAbort: false,
      });
    } catch (err) {
      const error = fromAwsError(err, 'ec2:DeleteSnapshot');
      if (error.details?.awsError === 'InvalidSnapshot.NotFound') return;
      throw error;
    }
  }

  /** Adds or overwrites tags; idempotent. Not cut by an abort. */
  async createTags(snapshotId: string, tags: Record<string, string>): Promise<void> {
    const entries = Object.entries(tags);
    if (entries.length === 0) return;
    try {
      const command = new (ec2Sdk().CreateTagsCommand)({ Resources: [snapshotId], Tags: entries.map(([Key, Value]) => ({ Key, Value })) });
      await this.#requests.run('ec2:CreateTags', (abortSignal) => this.#client.send(command, { abortSignal }), { cutOnAbort: false });
    } catch (err) {
      throw fromAwsError(err, 'ec2:CreateTags');
    }
  }

  async encryptionByDefault(): Promise<boolean> {
    try {
      const out = await this.#requests.run('ec2:GetEbsEncryptionByDefault', (abortSignal) => this.#client.send(new (ec2Sdk().GetEbsEncryptionByDefaultCommand)({}), { abortSignal }));
      return out.EbsEncryptionByDefault ?? false;
    } catch (err) {
      throw fromAwsError(err, 'ec2:GetEbsEncryptionByDefault');
    }
  }
}

function isMissingIdError(err: unknown): err is SnaplineError {
  return isSnaplineError(err) && MISSING_ID_ERRORS.has(String(err.details?.awsError));
}

/** The requested ids that an EC2 error message names. */
function missingIdsIn(err: SnaplineError, requested: readonly string[]): string[] {
  const asked = new Set(requested);
  const awsMessage = err.cause instanceof Error ? err.cause.message : err.message;
  return [...awsMessage.matchAll(SNAPSHOT_ID)].map((match) => match[0]).filter((id) => asked.has(id));
}

function toRemoteSnapshot(snapshot: Snapshot): RemoteSnapshot {
  if (snapshot.SnapshotId === undefined || snapshot.State === undefined) {
    throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'ec2:DescribeSnapshots: a snapshot in the response lacks SnapshotId or State');
  }
  const tags: Record<string, string> = {};
  for (const tag of snapshot.Tags ?? []) {
    if (tag.Key !== undefined) tags[tag.Key] = tag.Value ?? '';
  }
  return {
    snapshotId: snapshot.SnapshotId,
    state: snapshot.State,
    volumeSizeGiB: snapshot.VolumeSize ?? 0,
    encrypted: snapshot.Encrypted ?? false,
    tags,
    ...(snapshot.KmsKeyId ? { kmsKeyId: snapshot.KmsKeyId } : {}),
    ...(snapshot.Progress ? { progress: snapshot.Progress } : {}),
    ...(snapshot.StartTime ? { startTime: snapshot.StartTime } : {}),
    ...(snapshot.Description ? { description: snapshot.Description } : {}),
    ...(snapshot.StateMessage ? { stateMessage: snapshot.StateMessage } : {}),
  };
}
