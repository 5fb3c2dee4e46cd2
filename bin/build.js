#!/usr/bin/env node
// Builds dist/ (tsc -p tsconfig.json) in a clone of the repository, for the
// package scripts: `prepare` (npm ci, npm install) builds only when dist/ is
// missing or older than a source file, so that running the clone through
// npx does not rebuild it; `prepack` (npm pack) passes --clean and builds
// dist/ from scratch, so that the tarball holds nothing stale. Not part of
// the installed package.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The build's entry point; its time stands for the whole build's. */
export const BUILT = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/**
 * @param {string} dir
 * @returns {number} the newest modification time of a .ts or .js file under `dir`, test files aside
 */
function newestSourceMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path));
    else if (/\.(ts|js)$/.test(entry.name) && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** @returns {boolean} true when dist/ is missing or older than tsconfig.json or a source file under src/ or workers/ */
export function buildIsStale() {
  const builtAt = existsSync(BUILT) ? statSync(BUILT).mtimeMs : 0;
  return builtAt < Math.max(newestSourceMtime(join(ROOT, 'src')), newestSourceMtime(join(ROOT, 'workers')), statSync(join(ROOT, 'tsconfig.json')).mtimeMs);
}

/**
 * Runs tsc on tsconfig.json. It writes dist/ even when it reports type errors.
 * @returns {{ status: number | null, output: string }}
 */
export function compile() {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const run = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: ROOT, encoding: 'utf8' });
  return { status: run.status, output: `${run.error ? `${run.error.message}\n` : ''}${run.stdout ?? ''}${run.stderr ?? ''}` };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const clean = process.argv.includes('--clean');
  if (!clean && !buildIsStale()) process.exit(0);
  if (!existsSync(join(ROOT, 'node_modules', 'typescript'))) {
    process.stderr.write('snapline: cannot build dist/: TypeScript is not installed; run npm ci first\n');
    process.exit(1);
  }
  if (clean) rmSync(join(ROOT, 'dist'), { recursive: true, force: true });
  process.stderr.write(`snapline: building dist/ (tsc -p tsconfig.json)${clean ? ' from scratch' : ''}\n`);
  const { status, output } = compile();
  if (status !== 0) {
    process.stderr.write(`${output}snapline: the build failed (tsc exited with ${status})\n`);
    process.exit(1);
  }
}
