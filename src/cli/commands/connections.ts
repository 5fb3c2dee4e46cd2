import type { Command } from 'commander';
import type { ConnectionSummary } from '../../config/describe.js';
import { ErrorCodes, exitCodeFor, ExitCodes } from '../../errors.js';
import { table } from '../chart.js';
import { count } from '../progress.js';
import type { CommandContext, Wrap } from '../context.js';
import { connectionRequest } from './common.js';

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

async function list(ctx: CommandContext): Promise<number> {
  const output = ctx.output();
  const request = connectionRequest(ctx);
  const { loadConfig, LOCAL_CONNECTION } = await import('../../config/connection.js');
  const { summarizeEntry } = await import('../../config/describe.js');
  const file = loadConfig(request);
  for (const warning of [...file.warnings, ...[...file.connections.values()].flatMap((entry) => entry.warnings)]) output.warn(warning);
  const rows: ConnectionSummary[] = [
    { name: LOCAL_CONNECTION, source: 'built-in', valid: true, region: 'us-east-1', endpoint_url: 'the local endpoint', credentials: 'built in' },
    ...[...file.connections.values()].map((entry) => summarizeEntry(entry, file.path)),
  ];
  output.result({ configFile: file.path, configFileExists: file.exists, connections: rows }, () => [
    file.exists ? `config file: ${file.path}` : `config file: ${file.path} (none yet: only the built-in connection)`,
    ...table([
      ['NAME', 'REGION', 'ENDPOINT', 'CREDENTIALS', 'STATUS'],
      ...rows.map((row) => [
        row.name,
        row.region ?? '-',
        row.endpoint_url ?? '-',
        row.credentials,
        row.valid ? 'ok' : `invalid (${count(row.problems?.length ?? 0, 'problem')}: \`snapline connections show ${row.name}\`)`,
      ]),
    ]),
  ]);
  return ExitCodes.OK;
}

async function show(ctx: CommandContext, name: string | undefined): Promise<number> {
  const output = ctx.output();
  const request = connectionRequest(ctx);
  const { chosenConnection, resolveNamed } = await import('../../config/connection.js');
  const { describeConnection } = await import('../../config/describe.js');
  const { stringify } = await import('yaml');
  const resolved = resolveNamed(name ?? chosenConnection(request), request);
  for (const warning of resolved.warnings) output.warn(warning);
  const description = describeConnection(resolved);
  output.result({ ...description, warnings: resolved.warnings }, () => stringify(description).trimEnd().split('\n'));
  return ExitCodes.OK;
}

async function test(ctx: CommandContext, name: string | undefined): Promise<number> {
  const output = ctx.output();
  const request = connectionRequest(ctx);
  const { chosenConnection } = await import('../../config/connection.js');
  const { probeConnection } = await import('../../config/probe.js');
  const { startLocalEndpoint } = await import('../../session.js');
  const { connection, results, unchecked } = await probeConnection({ ...request, connection: name ?? chosenConnection(request) }, startLocalEndpoint);
  const failed = results.filter((r) => r.outcome !== 'reachable');
  output.result({ connection: connection.name, ok: failed.length === 0, results, unchecked }, () => [
    `connection ${connection.name} (${connection.source}), region ${connection.settings.region}`,
    ...table([
      ['SERVICE', 'RESULT', 'CALL', 'ENDPOINT', 'DETAIL'],
      ...results.map((r) => [r.service, r.outcome, r.action, r.endpoint, r.detail]),
      ...unchecked.map((u) => [u.service, u.outcome, '-', '-', u.detail]),
    ]),
    failed.length === 0 ? 'all services reachable' : `${failed.length} of ${results.length} services failed`,
  ]);
  const first = failed[0];
  return first === undefined ? ExitCodes.OK : exitCodeFor(first.code ?? ErrorCodes.REMOTE_REJECTED);
}
