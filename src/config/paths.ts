import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where snapline keeps its own files. SNAPLINE_DATA_DIR wins, then
 * XDG_DATA_HOME, then ~/.local/share/snapline.
 */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SNAPLINE_DATA_DIR) return env.SNAPLINE_DATA_DIR;
  const base = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(base, 'snapline');
}

/** The block index file used when --index is not given. */
export function defaultIndexPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'index.db');
}

/** The built-in local endpoint's data directory. */
export function localEndpointDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'endpoint');
}
