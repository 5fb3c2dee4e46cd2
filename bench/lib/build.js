// Builds dist/ when a source file is newer than the build, so that
// `npm run bench` always measures the code as it is. The staleness rule and
// the compile are bin/build.js's, the one place the package scripts use too.
import { buildIsStale, compile } from '../../bin/build.js';

/** Runs `tsc -p tsconfig.json` when dist/ is missing or older than src/, workers/ or the tsconfig. Throws when the build fails. */
export function ensureBuilt() {
  if (!buildIsStale()) return false;
  console.log('dist/ is older than the sources: building (npm run build)');
  const { status, output } = compile();
  if (status !== 0) throw new Error(`the build failed (tsc exited with ${status}):\n${output}`);
  return true;
}
