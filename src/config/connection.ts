import type { ConnectionSettings } from '../aws/clients.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { localEndpointDir } from './paths.js';

/** The built-in connection that talks to snapline's own local endpoint. */
export const LOCAL_CONNECTION = 'local';
/** The port `snapline serve` listens on by default. */
export const DEFAULT_LOCAL_PORT = 4577;
const LOCAL_CREDENTIALS = { accessKeyId: 'snapline-local', secretAccessKey: 'snapline-local-secret' };

export interface ConnectionRequest {
  connection?: string;
  endpointUrl?: string;
  region?: string;
}

/** A resolved connection and what must be stopped when the command ends. */
export interface OpenConnection {
  settings: ConnectionSettings;
  /** The in-process local endpoint, when this connection started one. */
  emulator?: RunningEmulator;
  close(): Promise<void>;
}

/**
 * Resolves the connection a command runs against. Precedence: command-line
 * flags over the environment over the connection's own settings. With no
 * connection, the SDK's default chain and environment apply. `local` uses a
 * `snapline serve` already listening on the default port, or starts the local
 * endpoint in this process on a free loopback port.
 */
export async function openConnection(request: ConnectionRequest, env: NodeJS.ProcessEnv = process.env): Promise<OpenConnection> {
  const name = request.connection || env.SNAPLINE_CONNECTION || undefined;
  if (name === LOCAL_CONNECTION) return openLocal(request, env);
  if (name !== undefined) {
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `unknown connection "${name}"`, {
      hint: 'the built-in connection is "local"; without --connection the AWS default credential chain is used',
    });
  }
  const region = request.region ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!region) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'no AWS Region: pass --region or set AWS_REGION', {
      hint: 'or use --connection local to work against the built-in local endpoint',
    });
  }
  const endpointUrl = request.endpointUrl ?? env.AWS_ENDPOINT_URL;
  return { settings: { name: 'default', region, endpointUrl }, close: async () => undefined };
}

async function openLocal(request: ConnectionRequest, env: NodeJS.ProcessEnv): Promise<OpenConnection> {
  const region = request.region ?? 'us-east-1';
  const settings = (endpointUrl: string): ConnectionSettings => ({
    name: LOCAL_CONNECTION,
    region,
    endpointUrl,
    credentials: LOCAL_CREDENTIALS,
  });
  if (request.endpointUrl) return { settings: settings(request.endpointUrl), close: async () => undefined };
  const running = `http://127.0.0.1:${DEFAULT_LOCAL_PORT}`;
  if (await isLocalEndpoint(running)) return { settings: settings(running), close: async () => undefined };
  const emulator = await startEmulator({ dataDir: localEndpointDir(env), host: '127.0.0.1', port: 0 });
  return { settings: settings(emulator.url), emulator, close: () => emulator.close() };
}

/** True when a snapline endpoint answers at `url` (its admin route). */
async function isLocalEndpoint(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/_snapline/stats`, { signal: AbortSignal.timeout(1000) });
    await response.body?.cancel();
    return response.ok;
  } catch {
    return false;
  }
}
