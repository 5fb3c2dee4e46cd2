import type { EC2Client } from '@aws-sdk/client-ec2';
import type { CopySnapshotInput, SnapshotCopier } from '../core/ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { fromAwsError } from './errors.js';
import { InFlightRequests, type EndpointContact } from './in-flight.js';
import { ec2Sdk } from './sdk.js';

/**
 * EC2 CopySnapshot over the SDK, with a client of the destination Region
 * (the copy is made where the request goes). The SDK's standard retry
 * applies; a retried call whose first attempt got through leaves an extra
 * copy whose id is not answered (CopySnapshot takes no ClientToken): the
 * engine finds such copies by their tags (copySnapshot, prune).
 * CopySnapshot is not cut by an abort: the copy it starts must be recorded.
 */
export class Ec2SnapshotCopier implements SnapshotCopier {
  readonly #clientOf: () => EC2Client;
  readonly #requests: InFlightRequests;

  constructor(client: () => EC2Client, options: { signal?: AbortSignal; contact?: EndpointContact } = {}) {
    this.#clientOf = client;
    this.#requests = new InFlightRequests(options.signal, options.contact);
  }

  async copySnapshot(input: CopySnapshotInput): Promise<string> {
    const tags = Object.entries(input.tags ?? {}).map(([Key, Value]) => ({ Key, Value }));
    const command = new (ec2Sdk().CopySnapshotCommand)({
      SourceRegion: input.sourceRegion,
      SourceSnapshotId: input.sourceSnapshotId,
      ...(input.description === undefined ? {} : { Description: input.description }),
      ...(input.encrypted ? { Encrypted: true } : {}),
      ...(input.kmsKeyId === undefined ? {} : { KmsKeyId: input.kmsKeyId }),
      ...(tags.length === 0 ? {} : { TagSpecifications: [{ ResourceType: 'snapshot' as const, Tags: tags }] }),
    });
    let snapshotId: string | undefined;
    try {
      const out = await this.#requests.run('ec2:CopySnapshot', (abortSignal) => this.#clientOf().send(command, { abortSignal }), { cutOnAbort: false });
      snapshotId = out.SnapshotId;
    } catch (err) {
      throw fromAwsError(err, 'ec2:CopySnapshot');
    }
    if (snapshotId === undefined) throw new SnaplineError(ErrorCodes.REMOTE_REJECTED, 'ec2:CopySnapshot: the response names no SnapshotId');
    return snapshotId;
  }
}
