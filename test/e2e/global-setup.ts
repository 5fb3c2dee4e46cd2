import { existsSync, statSync } from 'node:fs';
import { BUILT, buildIsStale, compile } from '../../bin/build.js';

/**
 * Vitest global setup: builds dist/ (what `npm run build` does) once per test
 * run, before any test file starts, when it is missing or older than src/,
 * workers/ or tsconfig.json (see bin/build.js). The end-to-end tests run the
 * built CLI (bin/snapline.js -> dist/); building here rather than in each
 * file keeps two files from rewriting dist/ while the other's CLI children
 * load it.
 */
export default function setup(): void {
  if (!buildIsStale()) return;
  const builtAt = existsSync(BUILT) ? statSync(BUILT).mtimeMs : 0;
  const tsc = compile();
  if (!existsSync(BUILT) || statSync(BUILT).mtimeMs <= builtAt) throw new Error(`the build for the end-to-end tests failed:\n${tsc.output}`);
  // tsc emits despite type errors (say, in another engineer's half-written file): say so and go on.
  if (tsc.status !== 0) console.warn(`tsc reported errors; the end-to-end tests run what it emitted:\n${tsc.output}`);
}
