import type { RemoteSnapshot, SnapshotCatalog } from '../core/ports.js';
import { childOf, childrenOf, childText, type XmlNode } from '../core/xml-read.js';
import { ErrorCodes, SnaplineError, isSnaplineError } from '../errors.js';
import type { Ec2Calls } from './ec2-requests.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';

/** Ids per DescribeSnapshots call. */
const DESCRIBE_BATCH = 200;
/** Snapshots per page of a DescribeSnapshots by filters (MaxResults: 5..1000). */
const PAGE_SIZE = 1000;
const SNAPSHOT_ID = /snap-[0-9a-zA-Z]+/g;
/** EC2 fails the whole call for these when one id is unknown or malformed. */
const MISSING_ID_ERRORS = new Set(['InvalidSnapshot.NotFound', 'InvalidSnapshotID.Malformed']);

/**
 * Snapshot bookkeeping over EC2, as direct query requests (see
 * DirectEc2Requests: retries as the SDK client's). `ec2` may be a function
 * that makes them, called on the first request. With `signal`, an abort ends
 * the descriptions in flight, retries included: their calls fail
 * INTERRUPTED; DeleteSnapshot and CreateTags run to their end, and calls
 * made after the abort (clean-up) go out (see InFlightRequests). Every
 * outcome marks `contact` (see EndpointContact).
 */
export class Ec2SnapshotCatalog implements SnapshotCatalog {
  readonly #ec2Of: () => Ec2Calls;
  readonly #requests: InFlightRequests;
  readonly #pageSize: number;

  /** `pageSize`: snapshots per page of taggedSnapshots (DescribeSnapshots MaxResults, 5..1000; default 1000). */
  constructor(ec2: Ec2Calls | (() => Ec2Calls), options: { signal?: AbortSignal; contact?: EndpointContact; pageSize?: number } = {}) {
    this.#ec2Of = typeof ec2 === 'function' ? ec2 : () => ec2;
    this.#requests = new InFlightRequests(options.signal, options.contact);
    this.#pageSize = options.pageSize ?? PAGE_SIZE;
  }

  /** One call of `action`, cut by the run's abort unless `cutOnAbort` is false; failures are SnaplineErrors named by action. */
  #call(action: string, params: Record<string, string>, cutOnAbort = true): Promise<XmlNode> {
    return this.#requests.run(`ec2:${action}`, (signal) => this.#ec2Of().call(action, params, { signal }), { cutOnAbort });
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
    const params = Object.fromEntries(ids.map((id, i) => [`SnapshotId.${i + 1}`, id]));
    const answer = await this.#call('DescribeSnapshots', params);
    return itemsOf(childOf(answer, 'snapshotSet')).map(toRemoteSnapshot);
  }

  /**
   * DescribeSnapshots of this account's snapshots (OwnerIds self) with a
   * tag:KEY filter per tag, page after page (NextToken) until the last.
   */
  async taggedSnapshots(tags: Record<string, string>): Promise<RemoteSnapshot[]> {
    const params: Record<string, string> = { 'Owner.1': 'self', MaxResults: String(this.#pageSize) };
    Object.entries(tags).forEach(([key, value], i) => {
      params[`Filter.${i + 1}.Name`] = `tag:${key}`;
      params[`Filter.${i + 1}.Value.1`] = value;
    });
    const found: RemoteSnapshot[] = [];
    let nextToken: string | undefined;
    do {
      const answer = await this.#call('DescribeSnapshots', nextToken === undefined ? params : { ...params, NextToken: nextToken });
      found.push(...itemsOf(childOf(answer, 'snapshotSet')).map(toRemoteSnapshot));
      nextToken = childText(answer, 'nextToken') || undefined;
    } while (nextToken !== undefined);
    return found;
  }

  /** Idempotent: a snapshot that is already gone counts as deleted. Not cut by an abort. */
  async deleteSnapshot(snapshotId: string): Promise<void> {
    try {
      await this.#call('DeleteSnapshot', { SnapshotId: snapshotId }, false);
    } catch (err) {
      if (isSnaplineError(err) && err.details?.awsError === 'InvalidSnapshot.NotFound') return;
      throw err;
    }
  }

  /** Adds or overwrites tags; idempotent. Not cut by an abort. */
  async createTags(snapshotId: string, tags: Record<string, string>): Promise<void> {
    const entries = Object.entries(tags);
    if (entries.length === 0) return;
    const params: Record<string, string> = { 'ResourceId.1': snapshotId };
    entries.forEach(([key, value], i) => {
      params[`Tag.${i + 1}.Key`] = key;
      params[`Tag.${i + 1}.Value`] = value;
    });
    await this.#call('CreateTags', params, false);
  }

  async encryptionByDefault(): Promise<boolean> {
    const answer = await this.#call('GetEbsEncryptionByDefault', {});
    return childText(answer, 'ebsEncryptionByDefault') === 'true';
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

/** The <item> elements of a query-protocol list (absent: none). */
function itemsOf(list: XmlNode | undefined): XmlNode[] {
  return list === undefined ? [] : childrenOf(list, 'item');
}

/** A snapshot of a DescribeSnapshots answer, read as the SDK reads it (status is State, statusMessage StateMessage). */
function toRemoteSnapshot(item: XmlNode): RemoteSnapshot {
  const snapshotId = childText(item, 'snapshotId');
  const state = childText(item, 'status');
  if (!snapshotId || !state) {
    throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'ec2:DescribeSnapshots: a snapshot in the response lacks SnapshotId or State');
  }
  const tags: Record<string, string> = {};
  for (const tag of itemsOf(childOf(item, 'tagSet'))) {
    const key = childOf(tag, 'key');
    if (key !== undefined) tags[key.text] = childOf(tag, 'value')?.text ?? '';
  }
  const startTime = childText(item, 'startTime');
  const present = (name: string): string | undefined => childOf(item, name)?.text || undefined;
  const kmsKeyId = present('kmsKeyId');
  const progress = present('progress');
  const description = present('description');
  const stateMessage = present('statusMessage');
  return {
    snapshotId,
    state: state as RemoteSnapshot['state'],
    volumeSizeGiB: Number(childText(item, 'volumeSize') ?? 0),
    encrypted: childText(item, 'encrypted') === 'true',
    tags,
    ...(kmsKeyId ? { kmsKeyId } : {}),
    ...(progress ? { progress } : {}),
    ...(startTime ? { startTime: new Date(startTime) } : {}),
    ...(description ? { description } : {}),
    ...(stateMessage ? { stateMessage } : {}),
  };
}
