import type { Command } from 'commander';
import { stringify } from 'yaml';
import { AwsClients } from '../../aws/clients.js';
import { probeServices, type ProbeResult } from '../../aws/probe.js';
import { chosenConnection, loadConfig, LOCAL_CONNECTION, openConnection, resolveNamed, type ConnectionRequest, type OpenConnection } from '../../config/connection.js';
import { describeConnection, summarizeEntry, type ConnectionSummary } from '../../config/describe.js';
import { ErrorCodes, exitCodeFor, ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../main.js';

/** A service a connection names that `test` has no client for yet. */
interface Unchecked {
  service: string;
  outcome: 'not checked';
  detail: string;
}

export function registerConnections(program: Command, wrap: Wrap): void {
  const connections = program.command('connections').description('named connections from the config file: list, show, test');
  connections
    .command('list')
    .description('the connections of the config file, and the built-in local one')
    .action(wrap((ctx: CommandContext) => list(ctx)));
  connections
    .command('show')
    .description('the settings a command would use, with flags and environment applied, secrets redacted')
    .argument('[name]', 'connection (default: --connection, SNAPLINE_CONNECTION, else none: the SDK default chain)')
    .action(wrap((ctx: CommandContext, name: string | undefined) => show(ctx, name)));
  connections
    .command('test')
    .description('one cheap call to each service the connection uses: reachable, permission denied, wrong endpoint or unreachable')
    .argument('[name]', 'connection (default: --connection, SNAPLINE_CONNECTION, else none: the SDK default chain)')
    .action(wrap((ctx: CommandContext, name: string | undefined) => test(ctx, name)));
}

function requestOf(ctx: CommandContext): ConnectionRequest {
  const globals = ctx.globals();
  const output = ctx.output();
  return {
    connection: globals.connection,
    endpointUrl: globals.endpointUrl,
    region: globals.region,
    configPath: globals.config,
    onWarning: (message) => output.warn(message),
  };
}

async function list(ctx: CommandContext): Promise<number> {
  const output = ctx.output();
  const request = requestOf(ctx);
  const file = loadConfig(request);
  for (const warning of [...file.warnings, ...[...file.connections.values()].flatMap((entry) => entry.warnings)]) output.warn(warning);
  const rows: ConnectionSummary[] = [
    { name: LOCAL_CONNECTION, source: 'built-in', valid: true, region: 'us-east-1', endpoint_url: 'the local endpoint', credentials: 'built in' },
    ...[...file.connections.values()].map((entry) => summarizeEntry(entry, file.path)),
  ];
  output.result({ configFile: file.path, configFileExists: file.exists, connections: rows }, () => [
    file.exists ? `config file: ${file.path}` : `config file: ${file.path} (none yet: only the built-in connection)`,
    ...table(
      ['NAME', 'REGION', 'ENDPOINT', 'CREDENTIALS', 'STATUS'],
      rows.map((row) => [
        row.name,
        row.region ?? '-',
        row.endpoint_url ?? '-',
        row.credentials,
        row.valid ? 'ok' : `invalid (${row.problems?.length ?? 0} problems: snapline connections show ${row.name})`,
      ]),
    ),
  ]);
  return ExitCodes.OK;
}

async function show(ctx: CommandContext, name: string | undefined): Promise<number> {
  const output = ctx.output();
  const request = requestOf(ctx);
  const resolved = resolveNamed(name ?? chosenConnection(request), request);
  for (const warning of resolved.warnings) output.warn(warning);
  const description = describeConnection(resolved);
  output.result({ ...description, warnings: resolved.warnings }, () => stringify(description).trimEnd().split('\n'));
  return ExitCodes.OK;
}

async function test(ctx: CommandContext, name: string | undefined): Promise<number> {
  const output = ctx.output();
  const request = requestOf(ctx);
  const connection = await openConnection({ ...request, connection: name ?? chosenConnection(request) });
  let results: ProbeResult[];
  let clients: AwsClients | undefined;
  try {
    clients = new AwsClients(connection.settings, { concurrency: 4 });
    const withS3 = connection.archive.bucket !== undefined || connection.settings.endpoints?.s3 !== undefined;
    results = await probeServices(clients, withS3 ? ['sts', 'ec2', 'ebs', 's3'] : ['sts', 'ec2', 'ebs'], connection.archive.bucket);
  } finally {
    clients?.destroy();
    await connection.close();
  }
  const unchecked = uncheckedServices(connection);
  const failed = results.filter((r) => r.outcome !== 'reachable');
  output.result({ connection: connection.name, ok: failed.length === 0, results, unchecked }, () => [
    `connection ${connection.name} (${connection.source}), region ${connection.settings.region}`,
    ...table(
      ['SERVICE', 'RESULT', 'CALL', 'ENDPOINT', 'DETAIL'],
      [...results.map((r) => [r.service, r.outcome, r.action, r.endpoint, r.detail]), ...unchecked.map((u) => [u.service, u.outcome, '-', '-', u.detail])],
    ),
    failed.length === 0 ? 'all services reachable' : `${failed.length} of ${results.length} services failed`,
  ]);
  const first = failed[0];
  return first === undefined ? ExitCodes.OK : exitCodeFor(first.code ?? ErrorCodes.REMOTE_REJECTED);
}

/** Services the connection configures that snapline has no client for yet (archive vaults, ECS, Logs). */
function uncheckedServices(connection: OpenConnection): Unchecked[] {
  const out: Unchecked[] = [];
  const note = 'configured; snapline does not call this service yet';
  if (connection.archive.vault !== undefined || connection.settings.endpoints?.glacier !== undefined) out.push({ service: 'glacier', outcome: 'not checked', detail: note });
  if (Object.keys(connection.ecs).length > 0 || connection.settings.endpoints?.ecs !== undefined) out.push({ service: 'ecs', outcome: 'not checked', detail: note });
  if (connection.ecs.logGroup !== undefined || connection.settings.endpoints?.logs !== undefined) out.push({ service: 'logs', outcome: 'not checked', detail: note });
  return out;
}

/** Left-aligned columns, two spaces apart. */
function table(header: string[], rows: string[][]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((row) => (row[c] ?? '').length)));
  return all.map((row) => row.map((cell, c) => (c === row.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}
