import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, hermeticEnv } from '../../test/support/cli.js';

/**
 * What the built CLI loads before it answers help, version and usage errors:
 * none of the engine, the session, the AWS SDK, SQLite or the config parser.
 * A preload records every ES module the loader hooks see and, at exit, every
 * CommonJS module in require's cache (the SDK clients are loaded with require).
 */
const HEAVY = [
  /\/dist\/src\/(engine|aws|index|hashing|source|target)\//,
  /\/dist\/src\/(session|ecs-session)\.js$/,
  /\/dist\/src\/emulator\/(index|server)\.js$/,
  /\/dist\/src\/config\/(connection|file|schema|probe)\.js$/,
  /\/node_modules\/(@aws-sdk|@smithy|better-sqlite3|yaml|piscina|p-limit)\//,
];

let dir: string;
let log: string;
let preload: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-startup-'));
  log = join(dir, 'loaded.txt');
  const hooks = join(dir, 'hooks.mjs');
  writeFileSync(
    hooks,
    `import { appendFileSync } from 'node:fs';
export async function load(url, context, next) {
  appendFileSync(process.env.SNAPLINE_TEST_LOADED, url + '\\n');
  return next(url, context);
}
`,
  );
  preload = join(dir, 'preload.mjs');
  writeFileSync(
    preload,
    `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
register(${JSON.stringify(pathToFileURL(hooks).href)});
const require = createRequire(import.meta.url);
process.on('exit', () => appendFileSync(process.env.SNAPLINE_TEST_LOADED, Object.keys(require.cache).join('\\n') + '\\n'));
`,
  );
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loadedBy(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; loaded: string[] } {
  rmSync(log, { force: true });
  const run = spawnSync(process.execPath, ['--import', pathToFileURL(preload).href, BIN, ...args], {
    env: hermeticEnv(join(dir, 'data'), { SNAPLINE_TEST_LOADED: log, ...env }),
    encoding: 'utf8',
  });
  return { code: run.status, stdout: run.stdout, loaded: readFileSync(log, 'utf8').split('\n').filter(Boolean) };
}

describe('CLI start-up', () => {
  it.each([
    [['--help'], 0],
    [['--version'], 0],
    [['snapshots', '--help'], 0],
    [['worker', 'shard', '--help'], 0],
    [['backup'], 2],
    [['restore', '--concurrency', 'x', 'snap-1', 'target.img'], 2],
    [['archive', 'restore', 'a-1', '--tier', 'Fast'], 2],
  ])('snapline %j loads no heavy module', (args, code) => {
    const run = loadedBy(args);
    expect(run.code).toBe(code);
    // The recording works: the CLI's own modules and commander are seen.
    expect(run.loaded.some((url) => url.endsWith('/dist/src/cli/main.js'))).toBe(true);
    expect(run.loaded.some((url) => url.includes('/node_modules/commander/'))).toBe(true);
    expect(run.loaded.filter((url) => HEAVY.some((heavy) => heavy.test(url)))).toEqual([]);
  });

  it('a command loads what its action uses: without a config file, the connection code but no YAML parser, endpoint, src/aws or SDK package', () => {
    const run = loadedBy(['connections', 'list']);
    expect(run.code).toBe(0);
    expect(run.loaded.some((url) => url.endsWith('/dist/src/config/file.js'))).toBe(true);
    expect(run.loaded.filter((url) => /\/node_modules\/(yaml|@aws-sdk|@smithy)\/|\/dist\/src\/aws\/|\/dist\/src\/emulator\/(index|server)\.js$/.test(url))).toEqual([]);
  });

  it('a command loads what its action uses: with a config file, the YAML parser too, still no endpoint or SDK package', () => {
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'connections:\n  lab:\n    region: eu-west-1\n    endpoint_url: http://127.0.0.1:9\n', { mode: 0o600 });
    const run = loadedBy(['connections', 'list'], { SNAPLINE_CONFIG: config });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^lab\s+eu-west-1\s/m);
    expect(run.loaded.some((url) => url.includes('/node_modules/yaml/'))).toBe(true);
    expect(run.loaded.filter((url) => /\/node_modules\/(@aws-sdk|@smithy)\/|\/dist\/src\/aws\/|\/dist\/src\/emulator\/(index|server)\.js$/.test(url))).toEqual([]);
  });

  it('a command loads what its action uses: the index, no SDK package', () => {
    const run = loadedBy(['index', 'check', '--index', join(dir, 'index.db')]);
    expect(run.code).toBe(0);
    expect(run.loaded.some((url) => url.includes('/node_modules/better-sqlite3/'))).toBe(true);
    expect(run.loaded.filter((url) => /@aws-sdk|\/dist\/src\/engine\//.test(url))).toEqual([]);
  });
});
