import { AwsClients } from '../aws/clients.js';
import { probeServices, type ProbeResult } from '../aws/probe.js';
import { openConnection, type ConnectionRequest, type LocalEndpointStarter, type ResolvedConnection } from './connection.js';

export type { ProbeOutcome, ProbeResult } from '../aws/probe.js';

/** A service the connection configures that snapline has no client for yet. */
export interface UncheckedService {
  service: 'glacier' | 'ecs' | 'logs';
  outcome: 'not checked';
  detail: string;
}

export interface ConnectionProbe {
  connection: ResolvedConnection;
  /** STS, EC2 and EBS always; S3 when the connection has an archive bucket or an S3 endpoint. */
  results: ProbeResult[];
  unchecked: UncheckedService[];
}

/**
 * Opens the connection the request names (starting the local endpoint with
 * `startLocal` for `local` when needed), makes one cheap call to each service it uses (see
 * probeServices), and closes everything again. Failed calls are results, not
 * errors; a connection that cannot be resolved throws as openConnection does.
 */
export async function probeConnection(request: ConnectionRequest, startLocal: LocalEndpointStarter, env: NodeJS.ProcessEnv = process.env): Promise<ConnectionProbe> {
  const connection = await openConnection(request, startLocal, env);
  let clients: AwsClients | undefined;
  try {
    clients = new AwsClients(connection.settings, { concurrency: 4 });
    const withS3 = connection.archive.bucket !== undefined || connection.settings.endpoints?.s3 !== undefined;
    const results = await probeServices(clients, withS3 ? ['sts', 'ec2', 'ebs', 's3'] : ['sts', 'ec2', 'ebs'], connection.archive.bucket);
    return { connection, results, unchecked: uncheckedServices(connection) };
  } finally {
    clients?.destroy();
    await connection.close();
  }
}

function uncheckedServices(connection: ResolvedConnection): UncheckedService[] {
  const detail = 'configured; snapline does not call this service yet';
  const endpoints = connection.settings.endpoints ?? {};
  const out: UncheckedService[] = [];
  if (connection.archive.vault !== undefined || endpoints.glacier !== undefined) out.push({ service: 'glacier', outcome: 'not checked', detail });
  if (Object.keys(connection.ecs).length > 0 || endpoints.ecs !== undefined) out.push({ service: 'ecs', outcome: 'not checked', detail });
  if (connection.ecs.logGroup !== undefined || endpoints.logs !== undefined) out.push({ service: 'logs', outcome: 'not checked', detail });
  return out;
}
