import { defaultKmsKeyArn, ACCOUNT_ID, type SnapshotService } from '../snapshots.js';
import type { SnapshotRecord, Tag } from '../store/catalog.js';
import { textElement } from '../protocol/xml.js';
import { checkSnapshotId, ec2Error, notFound, REGIONS, tagSet, tagsOf } from './query.js';

/** How long a copy takes when the request names no CompletionDurationMinutes (AWS time; divided by the time scale). */
export const DEFAULT_COPY_MINUTES = 15;
/** CompletionDurationMinutes: 15-minute steps from 15 minutes to 48 hours. */
const COPY_MINUTES_STEP = 15;
const MAX_COPY_MINUTES = 2880;

/**
 * EC2 CopySnapshot, made in the destination Region (the Region the request
 * is signed for) from a completed snapshot of SourceRegion. The copy starts
 * pending and completes after CompletionDurationMinutes, or
 * DEFAULT_COPY_MINUTES, on the endpoint's scaled clock. Encryption: a copy of
 * an encrypted snapshot stays encrypted; an unencrypted one is encrypted with
 * Encrypted=true or when encryption by default is on in the destination;
 * Encrypted cannot be false; KmsKeyId needs Encrypted=true. A key that is not
 * this account's in the destination Region is accepted, and the copy ends in
 * error (AWS checks the key after answering). Tags come only from
 * TagSpecifications (ResourceType snapshot): the source's are not copied.
 * At most maxConcurrentCopies copies may be pending into one Region
 * (ResourceLimitExceeded). Returns the inner XML of the answer.
 */
export function copySnapshot(snapshots: SnapshotService, params: URLSearchParams, region: string): string {
  const sourceRegion = required(params, 'SourceRegion');
  const sourceSnapshotId = required(params, 'SourceSnapshotId');
  if (!REGIONS.includes(sourceRegion)) throw ec2Error('InvalidParameterValue', `Invalid value '${sourceRegion}' for SourceRegion.`);
  checkSnapshotId(sourceSnapshotId);
  for (const unsupported of ['DestinationOutpostArn', 'DestinationAvailabilityZone']) {
    if (params.has(unsupported)) throw ec2Error('UnsupportedOperation', `${unsupported}: copies to Outposts and Local Zones are not served by this endpoint.`);
  }
  const encryptedParam = params.get('Encrypted');
  if (encryptedParam === 'false') throw ec2Error('InvalidParameterValue', 'The parameter Encrypted cannot be false: omit it to keep the source snapshot\'s encryption.');
  const encryptedAsked = encryptedParam === 'true';
  const kmsKeyId = params.get('KmsKeyId');
  if (kmsKeyId !== null && !encryptedAsked) throw ec2Error('InvalidParameterDependency', 'The parameter KmsKeyId requires the parameter Encrypted to be true.');
  const durationMinutes = completionMinutes(params.get('CompletionDurationMinutes'));
  const tags = tagSpecifications(params);
  const description = params.get('Description');
  if (description !== null && description.length > 255) throw ec2Error('InvalidParameterValue', 'The description may be at most 255 characters.');

  const source = snapshots.find(sourceSnapshotId, sourceRegion);
  if (source === undefined) throw notFound(sourceSnapshotId);
  if (source.status !== 'completed') throw ec2Error('IncorrectState', `Snapshot '${sourceSnapshotId}' is in state ${source.status}; only a completed snapshot can be copied.`);
  if (snapshots.pendingCopies(region) >= snapshots.maxConcurrentCopies) {
    throw ec2Error('ResourceLimitExceeded', `Too many snapshot copies in progress. The limit is ${snapshots.maxConcurrentCopies} for this destination region.`);
  }

  const encrypted = source.encrypted || encryptedAsked || snapshots.encryptionByDefault(region);
  const key = encrypted ? keyOf(kmsKeyId, source, region) : { arn: null, failure: null };
  const copy = snapshots.startCopy(source, region, {
    description,
    encrypted,
    kmsKeyArn: key.arn,
    tags,
    durationMs: durationMinutes * 60_000,
    failure: key.failure,
  });
  return textElement('snapshotId', copy.snapshotId) + tagSet(copy.tags);
}

function required(params: URLSearchParams, name: string): string {
  const value = params.get(name);
  if (value === null || value === '') throw ec2Error('MissingParameter', `The request must contain the parameter ${name}`);
  return value;
}

function completionMinutes(value: string | null): number {
  if (value === null) return DEFAULT_COPY_MINUTES;
  const minutes = Number(value);
  if (!Number.isInteger(minutes) || minutes < COPY_MINUTES_STEP || minutes > MAX_COPY_MINUTES || minutes % COPY_MINUTES_STEP !== 0) {
    throw ec2Error('InvalidParameterValue', `CompletionDurationMinutes must be a multiple of ${COPY_MINUTES_STEP} from ${COPY_MINUTES_STEP} to ${MAX_COPY_MINUTES}, got ${value}.`);
  }
  return minutes;
}

/** The tags of `TagSpecification.N` entries; each must be for ResourceType snapshot. */
function tagSpecifications(params: URLSearchParams): Tag[] {
  const tags: Tag[] = [];
  for (const [key, value] of params) {
    const m = /^TagSpecification\.(\d+)\.ResourceType$/.exec(key);
    if (m === null) continue;
    if (value !== 'snapshot') throw ec2Error('InvalidParameterValue', `'${value}' is not a valid taggable resource type for this operation.`);
    tags.push(...tagsOf(params, `TagSpecification.${m[1]}.Tag`));
  }
  if (new Set(tags.map((t) => t.Key)).size !== tags.length) throw ec2Error('InvalidParameterValue', 'A tag key is given more than once.');
  if (tags.length > 50) throw ec2Error('TagLimitExceeded', 'The maximum number of tags (50) for a snapshot has been reached.');
  return tags;
}

/**
 * The key of an encrypted copy: without KmsKeyId the source's key when it is
 * in the destination Region, else the destination's default key. KmsKeyId may
 * be a key ARN, a key id, alias/aws/ebs or its ARN; a key of another account
 * or Region, or an unknown alias, gives a copy that fails later.
 */
function keyOf(kmsKeyId: string | null, source: SnapshotRecord, region: string): { arn: string; failure: string | null } {
  const fallback = defaultKmsKeyArn(region);
  if (kmsKeyId === null) {
    const sourceKeyHere = source.kmsKeyArn !== null && source.kmsKeyArn.split(':')[3] === region;
    return { arn: sourceKeyHere ? source.kmsKeyArn! : fallback, failure: null };
  }
  if (kmsKeyId === 'alias/aws/ebs' || kmsKeyId === `arn:aws:kms:${region}:${ACCOUNT_ID}:alias/aws/ebs`) return { arn: fallback, failure: null };
  if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(kmsKeyId)) return { arn: `arn:aws:kms:${region}:${ACCOUNT_ID}:key/${kmsKeyId}`, failure: null };
  const arn = /^arn:aws[a-z-]*:kms:([^:]*):(\d{12}):key\/.+$/.exec(kmsKeyId);
  if (arn !== null && arn[1] === region && arn[2] === ACCOUNT_ID) return { arn: kmsKeyId, failure: null };
  return { arn: kmsKeyId, failure: `The KMS key ${kmsKeyId} cannot be used in ${region} by account ${ACCOUNT_ID}.` };
}
