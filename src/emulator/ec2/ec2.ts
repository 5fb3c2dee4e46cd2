import { AwsError } from '../protocol/aws-error.js';
import { sendXml, type Exchange } from '../protocol/http.js';
import { ACCOUNT_ID, type SnapshotService } from '../snapshots.js';
import type { SnapshotRecord } from '../store/catalog.js';
import { element, textElement, xmlDocument } from '../protocol/xml.js';
import { copySnapshot } from './copy-snapshot.js';
import type { FaultInjector } from '../faults.js';
import { checkSnapshotId, ec2Error, globToRegExp, listParam, notFound, REGIONS, tagSet, tagsOf } from './query.js';

const EC2_NAMESPACE = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** Snapshots made through the EBS direct APIs have no source volume; AWS shows this id. */
const NO_VOLUME = 'vol-ffffffff';

/**
 * The EC2 subset for snapshot bookkeeping, over the ec2 query protocol
 * (form-encoded Action=...&Version=2016-11-15, XML answers). Errors are
 * `<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>`.
 * What DescribeSnapshots shows lags behind by the endpoint's EC2 lag (see
 * SnapshotService.describe), and CreateTags and DeleteSnapshot do not find
 * a snapshot DescribeSnapshots does not list yet. Encryption by default is
 * per Region.
 */
export class Ec2Api {
  constructor(
    private readonly snapshots: SnapshotService,
    /** More actions, answered in other files (volumes, instances, fast snapshot restore). */
    private readonly more?: Ec2Actions,
    /** snapshotsInUse refuses DeleteSnapshot. */
    private readonly faults?: FaultInjector,
  ) {}

  /** Answers one EC2 request; `params` are its form (and query) parameters. Rethrows only unexpected failures, after answering 500. */
  handle(action: string, params: URLSearchParams, exchange: Exchange): void {
    try {
      if (params.get('DryRun') === 'true') throw ec2Error('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
      let inner: string;
      switch (action) {
        case 'DescribeSnapshots':
          inner = this.#describeSnapshots(params, exchange.region);
          break;
        case 'CreateTags':
          inner = this.#createTags(params, exchange.region);
          break;
        case 'DeleteSnapshot':
          inner = this.#deleteSnapshot(params, exchange.region);
          break;
        case 'CopySnapshot':
          inner = copySnapshot(this.snapshots, params, exchange.region);
          break;
        case 'GetEbsEncryptionByDefault':
          inner = encryptionByDefault(this.snapshots.encryptionByDefault(exchange.region));
          break;
        case 'EnableEbsEncryptionByDefault':
        case 'DisableEbsEncryptionByDefault':
          this.snapshots.setEncryptionByDefault(exchange.region, action === 'EnableEbsEncryptionByDefault');
          inner = textElement('ebsEncryptionByDefault', this.snapshots.encryptionByDefault(exchange.region));
          break;
        case 'DescribeRegions':
          inner = describeRegions(params);
          break;
        default:
          if (this.more?.serves(action) !== true) throw ec2Error('InvalidAction', `The action ${action} is not valid for this web service.`);
          inner = this.more.handle(action, params, exchange.region);
      }
      sendXml(exchange, 200, xmlDocument(`${action}Response`, EC2_NAMESPACE, textElement('requestId', exchange.requestId) + inner));
    } catch (err) {
      const error = err instanceof AwsError ? err : ec2Error('InternalError', 'An internal error has occurred.', 500);
      sendEc2Error(exchange, error);
      if (!(err instanceof AwsError)) throw err;
    }
  }

  #describeSnapshots(params: URLSearchParams, region: string): string {
    const ids = listParam(params, 'SnapshotId');
    const owners = listParam(params, 'Owner');
    const filters = filtersOf(params);
    const maxResults = params.get('MaxResults');
    if (maxResults !== null && ids.length > 0) {
      throw ec2Error('InvalidParameterCombination', 'The parameter SnapshotIds cannot be used with the parameter MaxResults.');
    }
    let selected = this.snapshots.describe(region);
    if (ids.length > 0) {
      for (const id of ids) checkSnapshotId(id);
      const byId = new Map(selected.map((s) => [s.snapshotId, s]));
      const missing = ids.filter((id) => !byId.has(id));
      if (missing.length > 0) throw notFound(missing.join(', '));
      selected = [...new Set(ids)].map((id) => byId.get(id)!);
    }
    if (owners.length > 0) selected = owners.some((o) => o === 'self' || o === ACCOUNT_ID) ? selected : [];
    selected = selected.filter((s) => filters.every((f) => matchesFilter(s, f)));

    let nextToken: string | undefined;
    if (maxResults !== null) {
      // AWS: 5 to 1000; a larger value answers 1000 per page.
      const asked = Number(maxResults);
      if (!Number.isInteger(asked) || asked < 5) throw ec2Error('InvalidParameterValue', `MaxResults must be 5 or more, got ${maxResults}.`);
      const limit = Math.min(asked, 1000);
      const after = decodeOffset(params.get('NextToken'));
      const rest = selected.filter((s) => s.id > after);
      selected = rest.slice(0, limit);
      if (rest.length > limit) nextToken = Buffer.from(`after:${selected[selected.length - 1]!.id}`).toString('base64');
    }
    return element('snapshotSet', selected.map(snapshotItem).join('')) + textElement('nextToken', nextToken);
  }

  #createTags(params: URLSearchParams, region: string): string {
    const resources = listParam(params, 'ResourceId');
    if (resources.length === 0) throw ec2Error('MissingParameter', 'The request must contain the parameter ResourceId');
    const tags = tagsOf(params);
    if (tags.length === 0) throw ec2Error('MissingParameter', 'The request must contain the parameter Tag');
    const records = resources.map((id) => {
      if (!id.startsWith('snap-')) throw ec2Error('InvalidID', `The ID '${id}' is not valid`);
      checkSnapshotId(id);
      const record = this.snapshots.findForEc2(id, region);
      if (record === undefined) throw notFound(id);
      return record;
    });
    for (const record of records) {
      const keys = new Set([...record.tags.map((t) => t.Key), ...tags.map((t) => t.Key)]);
      if (keys.size > 50) throw ec2Error('TagLimitExceeded', `The maximum number of tags (50) for resource ${record.snapshotId} has been reached.`);
    }
    for (const record of records) this.snapshots.tag(record, tags);
    return textElement('return', true);
  }

  #deleteSnapshot(params: URLSearchParams, region: string): string {
    const id = params.get('SnapshotId');
    if (id === null || id === '') throw ec2Error('MissingParameter', 'The request must contain the parameter SnapshotId');
    checkSnapshotId(id);
    const record = this.snapshots.findForEc2(id, region);
    if (record === undefined) throw notFound(id);
    if (this.faults?.take('snapshotsInUse') === true) throw ec2Error('InvalidSnapshot.InUse', `The snapshot ${id} is currently in use by ami-0123456789abcdef0`);
    this.snapshots.delete(record);
    return textElement('return', true);
  }
}

/** A set of EC2 actions served beside the snapshot ones: `handle` returns the answer's inner XML or throws AwsError. */
export interface Ec2Actions {
  serves(action: string): boolean;
  handle(action: string, params: URLSearchParams, region: string): string;
}

export function sendEc2Error(exchange: Exchange, error: AwsError): void {
  const errors = element('Errors', element('Error', textElement('Code', error.code) + textElement('Message', error.message)));
  sendXml(exchange, error.status, xmlDocument('Response', undefined, errors + textElement('RequestID', exchange.requestId)));
}

interface Filter {
  name: string;
  values: string[];
}

function filtersOf(params: URLSearchParams): Filter[] {
  const filters = new Map<number, Filter>();
  for (const [key, value] of params) {
    const m = /^Filter\.(\d+)\.(Name|Value\.(\d+))$/.exec(key);
    if (!m) continue;
    const n = Number(m[1]);
    const filter = filters.get(n) ?? { name: '', values: [] };
    if (m[2] === 'Name') filter.name = value;
    else filter.values.push(value);
    filters.set(n, filter);
  }
  for (const filter of filters.values()) {
    if (!KNOWN_FILTERS.has(filter.name) && !filter.name.startsWith('tag:')) {
      throw ec2Error('InvalidParameterValue', `The filter '${filter.name}' is invalid`);
    }
  }
  return [...filters.values()];
}

const KNOWN_FILTERS = new Set(['snapshot-id', 'status', 'tag-key', 'tag-value', 'owner-id', 'description', 'encrypted', 'volume-id', 'volume-size', 'kms-key-id', 'progress']);

/** True when one of the filter's values matches (EC2 wildcards: * and ?). */
function matchesFilter(snapshot: SnapshotRecord, filter: Filter): boolean {
  const candidates = filterSubjects(snapshot, filter.name);
  return filter.values.some((value) => {
    const pattern = globToRegExp(value);
    return candidates.some((c) => pattern.test(c));
  });
}

function filterSubjects(s: SnapshotRecord, name: string): string[] {
  if (name.startsWith('tag:')) return s.tags.filter((t) => t.Key === name.slice(4)).map((t) => t.Value);
  switch (name) {
    case 'snapshot-id':
      return [s.snapshotId];
    case 'status':
      return [s.status];
    case 'tag-key':
      return s.tags.map((t) => t.Key);
    case 'tag-value':
      return s.tags.map((t) => t.Value);
    case 'owner-id':
      return [ACCOUNT_ID];
    case 'description':
      return s.description === null ? [] : [s.description];
    case 'encrypted':
      return [String(s.encrypted)];
    case 'volume-id':
      return [NO_VOLUME];
    case 'volume-size':
      return [String(s.volumeSize)];
    case 'kms-key-id':
      return s.kmsKeyArn === null ? [] : [s.kmsKeyArn];
    case 'progress':
      return [progressOf(s)];
    default:
      return [];
  }
}

function decodeOffset(token: string | null): number {
  if (token === null) return 0;
  const m = /^after:(\d+)$/.exec(Buffer.from(token, 'base64').toString('utf8'));
  if (!m) throw ec2Error('InvalidNextToken', 'The token is not valid.');
  return Number(m[1]);
}

function progressOf(s: SnapshotRecord): string {
  return `${s.status === 'completed' ? 100 : (s.progress ?? 0)}%`;
}

function snapshotItem(s: SnapshotRecord): string {
  return element(
    'item',
    textElement('snapshotId', s.snapshotId) +
      textElement('volumeId', NO_VOLUME) +
      textElement('status', s.status) +
      textElement('statusMessage', s.status === 'error' ? s.statusMessage : null) +
      textElement('startTime', new Date(s.startTime).toISOString()) +
      textElement('progress', progressOf(s)) +
      textElement('ownerId', ACCOUNT_ID) +
      textElement('volumeSize', s.volumeSize) +
      textElement('description', s.description) +
      textElement('encrypted', s.encrypted) +
      textElement('kmsKeyId', s.kmsKeyArn) +
      textElement('storageTier', 'standard') +
      tagSet(s.tags),
  );
}

/** GetEbsEncryptionByDefault's answer; the encryption is KMS-based when on. */
function encryptionByDefault(on: boolean): string {
  return textElement('ebsEncryptionByDefault', on) + textElement('sseType', on ? 'sse-kms' : 'none');
}

function describeRegions(params: URLSearchParams): string {
  const wanted = listParam(params, 'RegionName');
  const unknown = wanted.find((r) => !REGIONS.includes(r));
  if (unknown !== undefined) throw ec2Error('InvalidParameterValue', `Invalid region name: ${unknown}`);
  const regions = wanted.length > 0 ? wanted : REGIONS;
  const items = regions.map((r) =>
    element('item', textElement('regionName', r) + textElement('regionEndpoint', `ec2.${r}.amazonaws.com`) + textElement('optInStatus', 'opt-in-not-required')),
  );
  return element('regionInfo', items.join(''));
}
