// Builds dist/ when a source file is newer than the build, so that
// `npm run bench` always measures the code as it is.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Newest modification time (ms) of the files under `dir` that `keep` accepts; 0 when there are none.
 * @param {string} dir
 * @param {(name: string) => boolean} keep
 * @returns {number}
 */
function newest(dir, keep) {
  let latest = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) latest = Math.max(latest, newest(path, keep));
    else if (keep(entry.name)) latest = Math.max(latest, statSync(path).mtimeMs);
  }
  return latest;
}

/** Runs `tsc -p tsconfig.json` when dist/ is missing or older than src/, workers/ or the tsconfig. Throws when the build fails. */
export function ensureBuilt() {
  const sources = Math.max(
    newest(join(ROOT, 'src'), (name) => name.endsWith('.ts') && !name.endsWith('.test.ts')),
    newest(join(ROOT, 'workers'), (name) => name.endsWith('.js')),
    statSync(join(ROOT, 'tsconfig.json')).mtimeMs,
  );
  const built = newest(join(ROOT, 'dist'), (name) => name.endsWith('.js'));
  if (built >= sources) return false;
  console.log('dist/ is older than the sources: building (npm run build)');
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json')], { stdio: 'inherit' });
  if (result.status !== 0) throw new Error('the build failed: fix it, or run `npm run build` to see why');
  return true;
}
