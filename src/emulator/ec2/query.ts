import { AwsError } from '../protocol/aws-error.js';
import { element, textElement } from '../protocol/xml.js';
import type { Tag } from '../store/catalog.js';

/** What the EC2 operations of the endpoint share: its Regions, its errors, and the checks of ids and tags. */

export const REGIONS = [
  'us-east-1',
  'us-east-2',
  'us-west-1',
  'us-west-2',
  'ca-central-1',
  'eu-west-1',
  'eu-west-2',
  'eu-west-3',
  'eu-central-1',
  'eu-north-1',
  'ap-northeast-1',
  'ap-northeast-2',
  'ap-southeast-1',
  'ap-southeast-2',
  'ap-south-1',
  'sa-east-1',
];

export const ec2Error = (code: string, message: string, status = 400) => new AwsError(status, code, message);
export const notFound = (snapshotId: string) => ec2Error('InvalidSnapshot.NotFound', `The snapshot '${snapshotId}' does not exist.`);

export function checkSnapshotId(id: string): void {
  if (!/^snap-[0-9a-f]{1,60}$/.test(id)) throw ec2Error('InvalidSnapshotID.Malformed', `Invalid id: "${id}" (expecting "snap-...")`);
}

/** The tags `PREFIX.N.Key` / `PREFIX.N.Value` (prefix `Tag` for CreateTags), checked as EC2 checks tag keys and values. */
export function tagsOf(params: URLSearchParams, prefix = 'Tag'): Tag[] {
  const tags = new Map<number, Tag>();
  const pattern = new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.(\\d+)\\.(Key|Value)$`);
  for (const [key, value] of params) {
    const m = pattern.exec(key);
    if (!m) continue;
    const tag = tags.get(Number(m[1])) ?? { Key: '', Value: '' };
    if (m[2] === 'Key') tag.Key = value;
    else tag.Value = value;
    tags.set(Number(m[1]), tag);
  }
  return [...tags.values()].map((tag) => {
    if (tag.Key === '') throw ec2Error('InvalidParameterValue', 'Tag keys must not be empty');
    if (tag.Key.length > 128 || tag.Value.length > 256) throw ec2Error('InvalidParameterValue', `Tag ${tag.Key} is too long`);
    if (tag.Key.toLowerCase().startsWith('aws:')) throw ec2Error('InvalidParameterValue', "Tag keys starting with 'aws:' are reserved for internal use");
    return tag;
  });
}

/** A tagSet element of an EC2 answer (nothing when there are no tags). */
export function tagSet(tags: Tag[]): string {
  const items = tags.map((t) => element('item', textElement('key', t.Key) + textElement('value', t.Value))).join('');
  return items === '' ? '' : element('tagSet', items);
}

/** Values of `Name.1`, `Name.2`, ... in numeric order. */
export function listParam(params: URLSearchParams, name: string): string[] {
  const found: [number, string][] = [];
  const pattern = new RegExp(`^${name}\\.(\\d+)$`);
  for (const [key, value] of params) {
    const m = pattern.exec(key);
    if (m) found.push([Number(m[1]), value]);
  }
  return found.sort((a, b) => a[0] - b[0]).map(([, value]) => value);
}

/** A filter value with `*` and `?` wildcards as a whole-string pattern. */
export function globToRegExp(glob: string): RegExp {
  const source = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${source}$`, 's');
}
