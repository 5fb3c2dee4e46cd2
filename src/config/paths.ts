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

/**
 * The config file: SNAPLINE_CONFIG wins, then XDG_CONFIG_HOME/snapline,
 * then ~/.config/snapline. `explicit` tells whether the user named it (a
 * missing file is then an error, not an empty configuration).
 */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): { path: string; explicit: boolean } {
  if (flag) return { path: flag, explicit: true };
  if (env.SNAPLINE_CONFIG) return { path: env.SNAPLINE_CONFIG, explicit: true };
  const base = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return { path: join(base, 'snapline', 'config.yaml'), explicit: false };
}

/** The built-in local endpoint's data directory. */
export function localEndpointDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(dataDir(env), 'endpoint');
}
