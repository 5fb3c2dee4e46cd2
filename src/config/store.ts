import type { AwsClients } from '../aws/clients.js';
import { fromAwsError } from '../aws/errors.js';
import { stsSdk } from '../aws/sdk.js';
import type { OpenConnection } from './connection.js';
import { askEndpoint, type EndpointStore } from './endpoint-store.js';

/** The store a command's snapshots live in, and how the command reached it. Holds no secret. */
export interface StoreUsed {
  /** What the index records for each volume: "aws:ACCOUNT:REGION", or "snapline:STOREID" for a local endpoint's data. */
  id: string;
  /** The store in words, without how it was reached: "AWS account 123456789012, Region eu-west-1", "the local endpoint store ID (data DIR)". */
  label: string;
  kind: 'aws' | 'local-endpoint';
  /** The EBS endpoint the command calls: its URL, or "AWS" for the public endpoints. */
  endpoint: string;
  /** How the local endpoint was reached: a serve found on the local port, one started in this process, or an endpoint URL. */
  via?: 'serve' | 'in-process' | 'endpoint-url';
  dataDir?: string;
  storeId?: string;
  account?: string;
  region: string;
}

/** Hosts of AWS's own endpoints (public, FIPS, dual-stack, VPC endpoints): no snapline endpoint to ask there. */
const AWS_HOST = /\.(amazonaws\.com|amazonaws\.com\.cn|api\.aws)$/i;

/**
 * Which store the connection's EBS calls reach. A local endpoint (the one
 * `local` found or started, or one an endpoint URL names that answers GET
 * /_snapline/store) is its store id; anything else is an AWS account and
 * Region: the account of the role the connection assumes, else STS
 * GetCallerIdentity's. Undefined when it cannot be told: nothing answers at
 * the endpoint (the command's own calls say so), or (told to `warn`) a
 * local endpoint too old to say, or a failed GetCallerIdentity.
 */
export async function identifyStore(
  connection: OpenConnection,
  clients: AwsClients,
  options: { warn: (message: string) => void; signal?: AbortSignal },
): Promise<StoreUsed | undefined> {
  const { settings } = connection;
  const unknown = (why: string) => {
    options.warn(`${why}: the index does not check that its volumes live there`);
    return undefined;
  };
  const local = connection.localEndpoint;
  if (local !== undefined) {
    if (local.store === undefined) return unknown(`the local endpoint at ${local.url} does not say which store it serves (a snapline serve older than this snapline?)`);
    return localStore(local.store, local.url, local.via, settings.region);
  }
  const ebs = settings.endpoints?.ebs ?? settings.endpointUrl;
  if (ebs !== undefined && !AWS_HOST.test(hostOf(ebs))) {
    const answer = await askEndpoint(ebs, { timeoutMs: 5000, ...(settings.tls === undefined ? {} : { tls: settings.tls }) });
    if (answer.kind === 'store') return localStore(answer.store, ebs, 'endpoint-url', settings.region);
    if (answer.kind === 'unreachable') return undefined;
  }
  let account: string;
  try {
    account = accountOfRole(settings.assumeRole?.roleArn) ?? (await callerAccount(clients, options.signal));
  } catch (err) {
    return unknown(`cannot tell which AWS account connection ${settings.name} reaches (${fromAwsError(err, 'sts:GetCallerIdentity').message})`);
  }
  return {
    id: `aws:${account}:${settings.region}`,
    label: `AWS account ${account}, Region ${settings.region}`,
    kind: 'aws',
    endpoint: ebs ?? 'AWS',
    account,
    region: settings.region,
  };
}

function localStore(store: EndpointStore, endpoint: string, via: NonNullable<StoreUsed['via']>, region: string): StoreUsed {
  return {
    id: `snapline:${store.storeId}`,
    label: `the local endpoint store ${store.storeId} (data ${store.dataDir})`,
    kind: 'local-endpoint',
    endpoint,
    via,
    dataDir: store.dataDir,
    storeId: store.storeId,
    region,
  };
}

function hostOf(url: string): string {
  try {
    return new URL(url).hostname;
  } catch {
    return '';
  }
}

/** The account in an IAM role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME). */
function accountOfRole(roleArn: string | undefined): string | undefined {
  return roleArn?.split(':')[4] || undefined;
}

async function callerAccount(clients: AwsClients, signal: AbortSignal | undefined): Promise<string> {
  const out = await clients.sts().send(new (stsSdk().GetCallerIdentityCommand)({}), signal === undefined ? {} : { abortSignal: signal });
  if (out.Account === undefined) throw new Error('GetCallerIdentity named no account');
  return out.Account;
}
