import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { askEndpoint, type EndpointStore } from './endpoint-store.js';
import { BUILT_IN_CONNECTION, loadConfigFile, type ConfigFile } from './file.js';
import { CA_CERT_FILE, DEFAULT_LOCAL_PORT } from './local-endpoint.js';
import { configPath, localEndpointDir } from './paths.js';
import { resolveConnection, type ConnectionFlags, type ResolvedConnection } from './resolve.js';
import { didYouMean } from './suggest.js';

export type { ResolvedConnection } from './resolve.js';
export type { ArchiveConfig, EcsConfig, UnattendedConfig } from './schema.js';

/** The built-in connection that talks to snapline's own local endpoint. */
export const LOCAL_CONNECTION = BUILT_IN_CONNECTION;
const LOCAL_CREDENTIALS = { accessKeyId: 'snapline-local', secretAccessKey: 'snapline-local-secret' };

export interface ConnectionRequest extends ConnectionFlags {
  /** The config file; default SNAPLINE_CONFIG, else $XDG_CONFIG_HOME/snapline/config.yaml. */
  configPath?: string;
  /** Told of each warning about the configuration; default process.emitWarning. Never given secrets. */
  onWarning?: (message: string) => void;
}

/** The local endpoint the `local` connection found or started. */
export interface LocalEndpointUse {
  url: string;
  /** A `snapline serve` found listening on the local port, or an endpoint started in this process. */
  via: 'serve' | 'in-process';
  /** Its store, as it says (absent from a serve too old to say). */
  store?: EndpointStore;
}

/** A local endpoint started in this process; close() stops it. */
export interface StartedLocalEndpoint {
  url: string;
  close(): Promise<void>;
}

/**
 * Starts the local endpoint in this process, with its data in `dataDir`, on
 * a free loopback port. The session layer hands it in: resolving and opening
 * a connection carries no endpoint code of its own.
 */
export type LocalEndpointStarter = (dataDir: string) => Promise<StartedLocalEndpoint>;

/** A resolved connection and what must be stopped when the command ends. */
export interface OpenConnection extends ResolvedConnection {
  /** For `local` without an endpoint URL: the endpoint it found or started (via 'in-process': this connection's, stopped by close()). */
  localEndpoint?: LocalEndpointUse;
  close(): Promise<void>;
}

/**
 * SNAPLINE_LOCAL_PORT: the loopback port where `local` looks for a running
 * `snapline serve` (default 4577); 0 means it never looks and always starts
 * its own endpoint. Undefined for 0.
 */
export function localServePort(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.SNAPLINE_LOCAL_PORT;
  if (text === undefined || text === '') return DEFAULT_LOCAL_PORT;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65_535) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `SNAPLINE_LOCAL_PORT must be a port number from 0 to 65535, got ${JSON.stringify(text)}`);
  }
  return Number(text) === 0 ? undefined : Number(text);
}

/** The connection name asked for: --connection, then SNAPLINE_CONNECTION; undefined for none. */
export function chosenConnection(request: ConnectionRequest, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return request.connection || env.SNAPLINE_CONNECTION || undefined;
}

/** The config file the request points at, read and checked (see loadConfigFile). */
export function loadConfig(request: ConnectionRequest, env: NodeJS.ProcessEnv = process.env): ConfigFile {
  const { path, explicit } = configPath(request.configPath, env);
  return loadConfigFile(path, { required: explicit });
}

/**
 * Decides every setting of connection `name` without opening anything:
 * command-line flags over the environment over the connection over the
 * defaults. "default" is no connection: the SDK's chain and environment.
 * `local` gets its endpoint only when opened. Warnings (file permissions,
 * unknown keys, verify off, the environment overriding the file) are in
 * the result. Throws CONFIG_INVALID for an unknown or invalid connection.
 */
export function resolveNamed(name: string | undefined, request: ConnectionRequest, env: NodeJS.ProcessEnv = process.env): ResolvedConnection {
  if (name === LOCAL_CONNECTION) return resolveLocal(request);
  if (name === undefined) return resolveConnection('default', 'default', {}, request, env, (_field, message) => message);
  const file = loadConfig(request, env);
  const entry = file.connections.get(name);
  if (entry === undefined) {
    const known = [...file.connections.keys(), LOCAL_CONNECTION];
    throw new SnaplineError(
      ErrorCodes.CONFIG_INVALID,
      `unknown connection "${name}"${didYouMean(name, known)}: ${file.exists ? `${file.path} does not define it` : `there is no config file at ${file.path}`}`,
      { hint: `known connections: ${known.join(', ')}; see \`snapline connections list\`` },
    );
  }
  if (entry.config === undefined) {
    const message = entry.errors.length === 1 ? entry.errors[0]! : `connection ${name} in ${file.path} has ${entry.errors.length} problems:\n  ${entry.errors.join('\n  ')}`;
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, message, { details: { configFile: file.path, connection: name, problems: entry.errors } });
  }
  const resolved = resolveConnection(name, file.path, entry.config, request, env, entry.locate);
  resolved.warnings.unshift(...file.warnings, ...entry.warnings);
  return resolved;
}

/**
 * Resolves the connection a command runs against (see resolveNamed), tells
 * its warnings, and opens it. `local` uses a `snapline serve` already
 * listening on the local port (see localServePort; plain HTTP, or HTTPS
 * trusted through the CA that `serve --tls` wrote), or starts the local
 * endpoint in this process with `startLocal`; close() stops it.
 */
export async function openConnection(request: ConnectionRequest, startLocal: LocalEndpointStarter, env: NodeJS.ProcessEnv = process.env): Promise<OpenConnection> {
  const warn = request.onWarning ?? ((message: string) => process.emitWarning(message, 'SnaplineWarning'));
  const resolved = resolveNamed(chosenConnection(request, env), request, env);
  for (const warning of resolved.warnings) warn(warning);
  if (resolved.name !== LOCAL_CONNECTION || resolved.settings.endpointUrl !== undefined) return { ...resolved, close: async () => undefined };
  return openLocal(resolved, startLocal, env);
}

function resolveLocal(flags: ConnectionFlags): ResolvedConnection {
  return {
    name: LOCAL_CONNECTION,
    source: 'built-in',
    settings: {
      name: LOCAL_CONNECTION,
      region: flags.region ?? 'us-east-1',
      credentials: LOCAL_CREDENTIALS,
      forcePathStyle: true,
      ...(flags.endpointUrl ? { endpointUrl: flags.endpointUrl } : {}),
    },
    archive: {},
    ecs: {},
    tls: { verify: true, extraCertificates: [] },
    origins: {
      region: flags.region ? '--region' : 'built-in',
      endpoint_url: flags.endpointUrl ? '--endpoint-url' : 'built-in',
      credentials: 'built-in',
    },
    warnings: [],
  };
}

async function openLocal(resolved: ResolvedConnection, startLocal: LocalEndpointStarter, env: NodeJS.ProcessEnv): Promise<OpenConnection> {
  const dataDir = localEndpointDir(env);
  const port = localServePort(env);
  const using = (endpoint: LocalEndpointUse, ca?: string): OpenConnection => ({
    ...resolved,
    settings: { ...resolved.settings, endpointUrl: endpoint.url, ...(ca === undefined ? {} : { tls: { ca } }) },
    localEndpoint: endpoint,
    close: async () => undefined,
  });
  // A serve found: its store as it says (a serve older than the store route is used without one).
  const serveAt = async (url: string, ca?: string): Promise<OpenConnection | undefined> => {
    const answer = await askEndpoint(url, { timeoutMs: 1000, legacy: true, ...(ca === undefined ? {} : { tls: { ca } }) });
    if (answer.kind === 'store') return using({ url, via: 'serve', store: answer.store }, ca);
    return answer.kind === 'snapline' ? using({ url, via: 'serve' }, ca) : undefined;
  };
  if (port !== undefined) {
    const plain = await serveAt(`http://127.0.0.1:${port}`);
    if (plain !== undefined) return plain;
    const caFile = join(dataDir, CA_CERT_FILE);
    if (existsSync(caFile)) {
      const secure = await serveAt(`https://127.0.0.1:${port}`, readFileSync(caFile, 'utf8'));
      if (secure !== undefined) return secure;
    }
  }
  const endpoint = await startLocal(dataDir);
  const answer = await askEndpoint(endpoint.url, { timeoutMs: 5000 });
  const store = answer.kind === 'store' ? { store: answer.store } : {};
  return { ...using({ url: endpoint.url, via: 'in-process', ...store }), close: () => endpoint.close() };
}
