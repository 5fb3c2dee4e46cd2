import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Vitest global setup: builds dist/ (what `npm run build` does) once per test
 * run, before any test file starts, when it is missing or older than src/ or
 * workers/. The end-to-end tests run the built CLI (bin/snapline.js ->
 * dist/); building here rather than in each file keeps two files from
 * rewriting dist/ while the other's CLI children load it.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function newestSourceMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path));
    else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const built = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const builtAt = existsSync(built) ? statSync(built).mtimeMs : 0;
  if (builtAt >= Math.max(newestSourceMtime(join(ROOT, 'src')), newestSourceMtime(join(ROOT, 'workers')))) return;
  const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (!existsSync(built) || statSync(built).mtimeMs <= builtAt) throw new Error(`the build for the end-to-end tests failed:\n${tsc.stdout}${tsc.stderr}`);
  // tsc emits despite type errors (say, in another engineer's half-written file): say so and go on.
  if (tsc.status !== 0) console.warn(`tsc reported errors; the end-to-end tests run what it emitted:\n${tsc.stdout}`);
}
