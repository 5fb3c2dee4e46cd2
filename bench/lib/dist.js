// The benchmarks measure the built library in dist/ (bench/run.js builds it
// first when the sources are newer).
const DIST = new URL('../../dist/src/', import.meta.url);

/**
 * Imports a module of the build by its path under dist/src/ (e.g. 'hashing/index.js').
 * Callers cast the result to the type of the matching src/ module.
 * @param {string} path
 * @returns {Promise<unknown>}
 */
export function load(path) {
  return import(new URL(path, DIST).href);
}
