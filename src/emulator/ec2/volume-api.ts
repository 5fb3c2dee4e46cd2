import { ACCOUNT_ID } from '../snapshots.js';
import type { Tag } from '../store/catalog.js';
import { element, textElement } from '../protocol/xml.js';
import type { Ec2Actions } from './ec2.js';
import { globToRegExp, listParam, tagsOf } from './query.js';
import { ec2Error, type FastRestoreFailure, type FastRestoreRecord, type VolumeRecord, type VolumeService } from './volumes.js';

/** The EC2 actions this file answers. */
const ACTIONS = new Set([
  'CreateVolume',
  'DescribeVolumes',
  'AttachVolume',
  'DetachVolume',
  'DeleteVolume',
  'DescribeInstances',
  'EnableFastSnapshotRestores',
  'DisableFastSnapshotRestores',
  'DescribeFastSnapshotRestores',
]);

/**
 * The query-protocol side of volumes, instances and fast snapshot restore:
 * reads the form parameters, calls VolumeService, writes the inner XML of
 * the answer. Errors are AwsError, answered by Ec2Api.
 */
export class VolumeApi implements Ec2Actions {
  constructor(private readonly volumes: VolumeService) {}

  serves(action: string): boolean {
    return ACTIONS.has(action);
  }

  /** The answer's inner XML for `action` (one of those `serves` accepts). */
  handle(action: string, params: URLSearchParams, region: string): string {
    switch (action) {
      case 'CreateVolume':
        return this.#createVolume(params, region);
      case 'DescribeVolumes': {
        const page = this.#describeVolumes(params, region);
        return element('volumeSet', page.volumes.map((v) => element('item', this.#volumeXml(v))).join('')) + textElement('nextToken', page.nextToken);
      }
      case 'AttachVolume':
        return this.#attachmentXml(this.volumes.attach(region, params.get('VolumeId'), params.get('InstanceId'), params.get('Device')));
      case 'DetachVolume':
        return this.#attachmentXml(this.volumes.detach(region, params.get('VolumeId'), params.get('InstanceId')));
      case 'DeleteVolume':
        this.volumes.delete(region, params.get('VolumeId'));
        return textElement('return', true);
      case 'DescribeInstances':
        return this.#describeInstances(params, region);
      case 'EnableFastSnapshotRestores':
        return fastRestoreAnswer(this.volumes, this.volumes.enableFastRestores(region, listParam(params, 'SourceSnapshotId'), listParam(params, 'AvailabilityZone')));
      case 'DisableFastSnapshotRestores':
        return fastRestoreAnswer(this.volumes, this.volumes.disableFastRestores(region, listParam(params, 'SourceSnapshotId'), listParam(params, 'AvailabilityZone')));
      default:
        return this.#describeFastRestores(params, region);
    }
  }

  #createVolume(params: URLSearchParams, region: string): string {
    const number = (name: string) => {
      const raw = params.get(name);
      if (raw === null) return undefined;
      const n = Number(raw);
      if (!Number.isInteger(n)) throw ec2Error('InvalidParameterValue', `Value (${raw}) for parameter ${name} is invalid.`);
      return n;
    };
    const tags = volumeTagSpecifications(params);
    const optional = <T>(value: T | null | undefined) => value ?? undefined;
    const volume = this.volumes.create(
      {
        availabilityZone: optional(params.get('AvailabilityZone')),
        size: number('Size'),
        snapshotId: optional(params.get('SnapshotId')),
        volumeType: optional(params.get('VolumeType')),
        iops: number('Iops'),
        throughput: number('Throughput'),
        encrypted: params.get('Encrypted') === null ? undefined : params.get('Encrypted') === 'true',
        kmsKeyId: optional(params.get('KmsKeyId')),
        tags,
      },
      region,
      optional(params.get('ClientToken')),
    );
    return this.#volumeXml(volume);
  }

  /**
   * The volumes asked for, filtered. MaxResults (5 and up, at most 500 a
   * page, never with VolumeIds) cuts the listing into pages in volume-id
   * order; NextToken continues after the last volume of the page it came with.
   */
  #describeVolumes(params: URLSearchParams, region: string): { volumes: VolumeRecord[]; nextToken?: string } {
    const ids = listParam(params, 'VolumeId');
    const maxResults = params.get('MaxResults');
    if (maxResults !== null && ids.length > 0) throw ec2Error('InvalidParameterCombination', 'The parameter VolumeIds cannot be used with the parameter MaxResults.');
    const limit = maxResults === null ? undefined : pageSize(maxResults);
    const token = params.get('NextToken');
    const after = token === null ? undefined : volumeIdAfter(token);
    const filters = filtersOf(params, VOLUME_FILTERS);
    const selected = this.volumes.volumes(region, ids).filter((volume) =>
      filters.every((f) => f.values.some((value) => this.#volumeSubjects(volume, f.name).some((s) => globToRegExp(value).test(s)))),
    );
    if (limit === undefined && after === undefined) return { volumes: selected };
    const rest = selected.filter((v) => after === undefined || v.volumeId > after).sort((a, b) => (a.volumeId < b.volumeId ? -1 : 1));
    const page = limit === undefined ? rest : rest.slice(0, limit);
    return rest.length > page.length ? { volumes: page, nextToken: Buffer.from(`after:${page[page.length - 1]!.volumeId}`).toString('base64') } : { volumes: page };
  }

  #volumeSubjects(v: VolumeRecord, name: string): string[] {
    if (name.startsWith('tag:')) return v.tags.filter((t) => t.Key === name.slice(4)).map((t) => t.Value);
    const attachment = this.volumes.attachmentState(v) === null ? undefined : v.attachment!;
    const subjects: Record<string, (string | null | undefined)[]> = {
      'volume-id': [v.volumeId],
      status: [this.volumes.state(v)],
      'snapshot-id': [v.snapshotId],
      'availability-zone': [v.availabilityZone],
      'volume-type': [v.volumeType],
      'attachment.instance-id': [attachment?.instanceId],
      'attachment.device': [attachment?.device],
      'tag-key': v.tags.map((t) => t.Key),
    };
    return (subjects[name] ?? []).filter((s): s is string => typeof s === 'string');
  }

  #volumeXml(v: VolumeRecord): string {
    const attachmentState = this.volumes.attachmentState(v);
    const attachments = attachmentState === null ? '' : element('item', this.#attachmentXml(v));
    return (
      textElement('volumeId', v.volumeId) +
      textElement('size', v.sizeGiB) +
      textElement('snapshotId', v.snapshotId ?? '') +
      textElement('availabilityZone', v.availabilityZone) +
      textElement('status', this.volumes.state(v)) +
      textElement('createTime', new Date(v.createTime).toISOString()) +
      element('attachmentSet', attachments) +
      tagSet(v.tags) +
      textElement('volumeType', v.volumeType) +
      textElement('iops', v.iops) +
      textElement('throughput', v.throughput) +
      textElement('encrypted', v.encrypted) +
      textElement('kmsKeyId', v.kmsKeyId) +
      textElement('fastRestored', v.fastRestored) +
      textElement('multiAttachEnabled', false)
    );
  }

  #attachmentXml(v: VolumeRecord): string {
    const attachment = v.attachment!;
    return (
      textElement('volumeId', v.volumeId) +
      textElement('instanceId', attachment.instanceId) +
      textElement('device', attachment.device) +
      textElement('status', this.volumes.attachmentState(v) ?? 'detached') +
      textElement('attachTime', new Date(attachment.attachTime).toISOString()) +
      textElement('deleteOnTermination', false)
    );
  }

  #describeInstances(params: URLSearchParams, region: string): string {
    const items = this.volumes.instances(region, listParam(params, 'InstanceId')).map((instance) => {
      const devices = this.volumes.attachmentsOf(instance.instanceId).map((v) =>
        element(
          'item',
          textElement('deviceName', v.attachment!.device) +
            element(
              'ebs',
              textElement('volumeId', v.volumeId) +
                textElement('status', this.volumes.attachmentState(v)) +
                textElement('attachTime', new Date(v.attachment!.attachTime).toISOString()) +
                textElement('deleteOnTermination', false),
            ),
        ),
      );
      const inner =
        textElement('instanceId', instance.instanceId) +
        textElement('imageId', 'ami-00000000000000000') +
        element('instanceState', textElement('code', 16) + textElement('name', 'running')) +
        textElement('instanceType', 't3.micro') +
        textElement('launchTime', new Date(instance.launchTime).toISOString()) +
        element('placement', textElement('availabilityZone', instance.availabilityZone)) +
        element('blockDeviceMapping', devices.join(''));
      return element(
        'item',
        textElement('reservationId', `r-${instance.instanceId.slice(2)}`) + textElement('ownerId', ACCOUNT_ID) + element('instancesSet', element('item', inner)),
      );
    });
    return element('reservationSet', items.join(''));
  }

  #describeFastRestores(params: URLSearchParams, region: string): string {
    const filters = filtersOf(params, FAST_RESTORE_FILTERS);
    const subjects = (r: FastRestoreRecord, name: string): string[] => {
      if (name === 'snapshot-id') return [r.snapshotId];
      if (name === 'availability-zone') return [r.availabilityZone];
      if (name === 'owner-id') return [ACCOUNT_ID];
      return [this.volumes.stateOfFastRestore(r)];
    };
    const selected = this.volumes
      .fastRestores(region)
      .filter((r) => filters.every((f) => f.values.some((value) => subjects(r, f.name).some((s) => globToRegExp(value).test(s)))));
    return element('fastSnapshotRestoreSet', selected.map((r) => element('item', fastRestoreXml(this.volumes, r))).join(''));
  }
}

/** DescribeVolumes' MaxResults: 5 and up; more than 500 answers 500. */
const MIN_VOLUME_PAGE = 5;
const MAX_VOLUME_PAGE = 500;

function pageSize(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < MIN_VOLUME_PAGE) {
    throw ec2Error('InvalidParameterValue', `Value (${raw}) for parameter maxResults is invalid. Expecting a value greater than ${MIN_VOLUME_PAGE - 1}.`);
  }
  return Math.min(n, MAX_VOLUME_PAGE);
}

/** The volume id a DescribeVolumes NextToken continues after. */
function volumeIdAfter(token: string): string {
  const m = /^after:(vol-[0-9a-f]+)$/.exec(Buffer.from(token, 'base64').toString('utf8'));
  if (!m) throw ec2Error('InvalidNextToken', 'The token is not valid.');
  return m[1]!;
}

const VOLUME_FILTERS = new Set(['volume-id', 'status', 'snapshot-id', 'availability-zone', 'volume-type', 'attachment.instance-id', 'attachment.device', 'tag-key']);
const FAST_RESTORE_FILTERS = new Set(['snapshot-id', 'availability-zone', 'owner-id', 'state']);

/** The tags of the `TagSpecification.N` entries; each must be for ResourceType volume. */
function volumeTagSpecifications(params: URLSearchParams): Tag[] {
  const tags: Tag[] = [];
  for (const [key, value] of params) {
    const m = /^TagSpecification\.(\d+)\.ResourceType$/.exec(key);
    if (m === null) continue;
    if (value !== 'volume') throw ec2Error('InvalidParameterValue', `'${value}' is not a valid taggable resource type for this operation.`);
    tags.push(...tagsOf(params, `TagSpecification.${m[1]}.Tag`));
  }
  return tags;
}

function filtersOf(params: URLSearchParams, known: Set<string>): { name: string; values: string[] }[] {
  const filters = new Map<number, { name: string; values: string[] }>();
  for (const [key, value] of params) {
    const m = /^Filter\.(\d+)\.(Name|Value\.\d+)$/.exec(key);
    if (!m) continue;
    const filter = filters.get(Number(m[1])) ?? { name: '', values: [] };
    if (m[2] === 'Name') filter.name = value;
    else filter.values.push(value);
    filters.set(Number(m[1]), filter);
  }
  for (const { name } of filters.values()) {
    if (!known.has(name) && !name.startsWith('tag:')) throw ec2Error('InvalidParameterValue', `The filter '${name}' is invalid`);
  }
  return [...filters.values()];
}

function tagSet(tags: Tag[]): string {
  if (tags.length === 0) return '';
  return element('tagSet', tags.map((t) => element('item', textElement('key', t.Key) + textElement('value', t.Value))).join(''));
}

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

function fastRestoreXml(volumes: VolumeService, r: FastRestoreRecord): string {
  const state = volumes.stateOfFastRestore(r);
  return (
    textElement('snapshotId', r.snapshotId) +
    textElement('availabilityZone', r.availabilityZone) +
    textElement('state', state) +
    textElement('stateTransitionReason', state === 'disabling' || state === 'disabled' ? 'Client.UserInitiated' : 'Client.UserInitiated - Lifecycle state transition') +
    textElement('ownerId', ACCOUNT_ID) +
    textElement('enablingTime', iso(r.enablingTime)) +
    textElement('optimizingTime', state === 'enabling' ? null : iso(r.optimizingTime)) +
    textElement('enabledTime', state === 'enabled' || (r.disablingTime !== null && r.disablingTime >= r.enabledTime) ? iso(r.enabledTime) : null) +
    textElement('disablingTime', iso(r.disablingTime)) +
    textElement('disabledTime', state === 'disabled' ? iso(r.disabledTime) : null)
  );
}

function fastRestoreAnswer(volumes: VolumeService, outcome: { done: FastRestoreRecord[]; failed: FastRestoreFailure[] }): string {
  const failedBySnapshot = new Map<string, FastRestoreFailure[]>();
  for (const failure of outcome.failed) failedBySnapshot.set(failure.snapshotId, [...(failedBySnapshot.get(failure.snapshotId) ?? []), failure]);
  const unsuccessful = [...failedBySnapshot].map(([snapshotId, failures]) =>
    element(
      'item',
      textElement('snapshotId', snapshotId) +
        element(
          'fastSnapshotRestoreStateErrorSet',
          failures
            .map((f) => element('item', textElement('availabilityZone', f.availabilityZone) + element('error', textElement('code', f.code) + textElement('message', f.message))))
            .join(''),
        ),
    ),
  );
  return (
    element('successful', outcome.done.map((r) => element('item', fastRestoreXml(volumes, r))).join('')) + element('unsuccessful', unsuccessful.join(''))
  );
}
