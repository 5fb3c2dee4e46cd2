/**
 * The package as npm packs and installs it: what the tarball holds, the
 * install script's fallback when the hole-seeking addon cannot be built, and
 * the entry point's words when the clone was never built. The install itself
 * (npm pack, npm install -g, a backup and restore from another directory)
 * runs in .ci/run: it compiles better-sqlite3, which takes minutes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, hermeticEnv } from '../support/cli.js';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'snapline-package-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the tarball (npm pack)', () => {
  it('holds the built program, the entry point, the install script and the addon sources, and no sources or tests', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, npm_config_loglevel: 'silent' } });
    const [packed] = JSON.parse(out) as Array<{ files: Array<{ path: string }> }>;
    const paths = packed!.files.map((file) => file.path);
    for (const path of ['package.json', 'bin/snapline.js', 'bin/build-addon.js', 'dist/src/cli/main.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/workers/hash.js', 'dist/workers/blocks.js', 'binding.gyp', 'native/holes.c']) {
      expect(paths).toContain(path);
    }
    expect(paths.filter((path) => /^(src|test|bench)\/|\.test\.|\.ts$/.test(path) && !path.endsWith('.d.ts'))).toEqual([]);
    expect(paths.filter((path) => path.endsWith('.map') || path === 'bin/build.js')).toEqual([]);
  });
});

/** The operations the library offers, as src/index.ts exports them. */
const OPERATIONS = [
  'backup', 'restore', 'verify', 'diff', 'snapshots', 'prune', 'rebuildIndex', 'archive', 'archiveRestore', 'archiveStatus',
  'archiveInventory', 'archiveDelete', 'archivePrune', 'rehydrate', 'ecsRestore', 'ecsStatus', 'bench', 'startEmulator',
  'restoreToVolume', 'drill', 'copy', 'status', 'metrics', 'report', 'scheduleInstall', 'scheduleList', 'scheduleRemove',
];

describe('the library, imported by its name (package.json "exports")', () => {
  /** A project that depends on snapline: node_modules/snapline is this package. */
  function consumer(): string {
    const dir = join(work, 'consumer');
    if (existsSync(dir)) return dir;
    mkdirSync(join(dir, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, join(dir, 'node_modules', 'snapline'), 'dir');
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    return dir;
  }

  it('offers every operation, refuses deep imports, and its errors name the option as the library spells it', () => {
    const dir = consumer();
    writeFileSync(
      join(dir, 'use.js'),
      `import * as snapline from 'snapline';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
const exported = Object.keys(snapline).filter((name) => typeof snapline[name] === 'function').sort();
let deep;
try {
  await import('snapline/dist/src/session.js');
  deep = 'imported';
} catch (err) {
  deep = err.code;
}
const dir = mkdtempSync(join(tmpdir(), 'snapline-consumer-'));
const endpoint = await snapline.startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined });
const session = { connection: 'local', endpointUrl: endpoint.url, indexPath: join(dir, 'index.db') };
try {
  const rows = await snapline.snapshots(session);
  const refused = await snapline.prune({ ...session, olderThanDays: -1 }).then(() => undefined, (err) => err);
  const status = await snapline.status(session);
  const schedules = await snapline.scheduleList({ unitDir: join(dir, 'units') });
  const badZone = await snapline.restoreToVolume({ ...session, snapshotId: 'snap-0123456789abcdef0', availabilityZone: 'nowhere' }).then(() => undefined, (err) => err);
  const failure = (err) => ({ isError: err instanceof snapline.SnaplineError, code: err.code, message: err.message, details: err.details });
  console.log(JSON.stringify({ exported, deep, rows, refused: failure(refused), volumes: status.volumes, schedules, badZone: failure(badZone) }));
} finally {
  await endpoint.close();
}
`,
    );
    const out = execFileSync(process.execPath, ['use.js'], { cwd: dir, encoding: 'utf8', env: hermeticEnv(join(work, 'data')) });
    const result = JSON.parse(out) as { exported: string[]; deep: string; rows: unknown[]; refused: unknown; volumes: unknown[]; schedules: unknown[]; badZone: unknown };
    expect(result.exported).toEqual(expect.arrayContaining(OPERATIONS));
    expect(result.deep).toBe('ERR_PACKAGE_PATH_NOT_EXPORTED');
    expect(result.rows).toEqual([]);
    expect(result.refused).toEqual({ isError: true, code: 'INVALID_ARGUMENT', message: 'olderThanDays must be 0 or more, got -1', details: { option: 'olderThanDays' } });
    expect(result.volumes).toEqual([]);
    expect(result.schedules).toEqual([]);
    expect(result.badZone).toEqual({
      isError: true,
      code: 'INVALID_ARGUMENT',
      message: "availabilityZone must name a zone such as us-east-1a, got 'nowhere'",
      details: { option: 'availabilityZone' },
    });
  });

  it('carries its types: a TypeScript project type-checks its calls through the "types" condition', () => {
    const dir = consumer();
    writeFileSync(
      join(dir, 'typed.ts'),
      `import { archiveStatus, backup, copy, scheduleInstall, type BackupResult, type CopyResult, type SnaplineError } from 'snapline';
export async function run(): Promise<string> {
  const result: BackupResult = await backup({ source: 'disk.img', volume: 'db1', connection: 'local', concurrency: 8 });
  const entries = await archiveStatus({ archive: 'ar-0123456789abcdef', wait: true });
  const copied: CopyResult = await copy({ snapshotId: 'snap-0123456789abcdef0', toRegion: 'eu-west-1', encrypted: true });
  const installed = await scheduleInstall({ volume: 'db1', source: 'disk.img', every: 'daily', at: '02:30', unitDir: 'units' });
  return result.snapshotId ?? String(entries.length) + copied.copySnapshotId + installed.timerPath;
}
// @ts-expect-error: backup needs a source
export const missing = () => backup({ volume: 'db1' });
// @ts-expect-error: a copy needs the Region it goes to
export const nowhere = () => copy({ snapshotId: 'snap-0123456789abcdef0' });
export type Failure = SnaplineError['code'];
`,
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--skipLibCheck', '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'typed.ts'];
    const run = spawnSync(process.execPath, [tsc, ...args], { cwd: dir, encoding: 'utf8' });
    expect({ status: run.status, stdout: run.stdout }).toEqual({ status: 0, stdout: '' });
  });
});

describe('prepare (bin/build.js), which npm runs on npm ci, and on the first npx in a clone', () => {
  it('leaves a build newer than every source alone: no tsc run, nothing printed', () => {
    const built = join(ROOT, 'dist', 'src', 'cli', 'main.js');
    const before = statSync(built).mtimeMs;
    const run = spawnSync(process.execPath, [join(ROOT, 'bin', 'build.js')], { cwd: ROOT, encoding: 'utf8' });
    expect({ status: run.status, stdout: run.stdout, stderr: run.stderr }).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(statSync(built).mtimeMs).toBe(before);
  });
});

describe('the install script (bin/build-addon.js)', () => {
  /** A package as npm unpacks it: the script, binding.gyp and native/, and no build/ yet. */
  function unpacked(name: string): string {
    const dir = join(work, name);
    mkdirSync(join(dir, 'bin'), { recursive: true });
    mkdirSync(join(dir, 'native'));
    copyFileSync(join(ROOT, 'bin', 'build-addon.js'), join(dir, 'bin', 'build-addon.js'));
    copyFileSync(join(ROOT, 'binding.gyp'), join(dir, 'binding.gyp'));
    copyFileSync(join(ROOT, 'native', 'holes.c'), join(dir, 'native', 'holes.c'));
    return dir;
  }

  /** Runs the install script of the package in `dir` with `gyp` (a script) as npm's node-gyp. */
  function install(dir: string, gyp: string): { status: number | null; stdout: string; stderr: string } {
    const path = join(work, `${gyp}-gyp.js`);
    writeFileSync(path, gyp === 'failing' ? "console.error('gyp ERR! find Python: no Python found'); process.exit(1);\n" : 'process.exit(0);\n');
    const run = spawnSync(process.execPath, [join(dir, 'bin', 'build-addon.js')], {
      encoding: 'utf8',
      env: { ...hermeticEnv(join(work, 'data')), npm_config_node_gyp: path, npm_config_nodedir: '/nonexistent' },
    });
    return { status: run.status, stdout: run.stdout, stderr: run.stderr };
  }

  it('when the addon cannot be built: the install goes on (exit 0), saying why, what it means and how to build it later', () => {
    const run = install(unpacked('no-compiler'), 'failing');
    expect(run.status).toBe(0);
    expect(run.stderr).toContain('snapline: warning: the hole-seeking addon was not built (node-gyp exited with 1).');
    expect(run.stderr).toContain('the holes of sparse images are read as data');
    expect(run.stderr).toContain('npm rebuild snapline');
    expect(run.stderr).toContain('  gyp ERR! find Python: no Python found');
  });

  it('says so when it was built', () => {
    const run = install(unpacked('built'), 'succeeding');
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
    expect(run.stdout).toBe('snapline: built the hole-seeking addon (build/Release/holes.node)\n');
  });

  it('leaves an addon newer than its sources that loads alone (npx in a clone runs it again); builds one older than its sources', () => {
    const dir = unpacked('current');
    mkdirSync(join(dir, 'build', 'Release'), { recursive: true });
    // The addon `npm ci` built in this clone (the CI machine has the toolchain).
    copyFileSync(join(ROOT, 'build', 'Release', 'holes.node'), join(dir, 'build', 'Release', 'holes.node'));
    expect(install(dir, 'failing')).toEqual({ status: 0, stdout: '', stderr: '' });
    const later = new Date(Date.now() + 60_000);
    utimesSync(join(dir, 'native', 'holes.c'), later, later);
    expect(install(dir, 'failing').stderr).toContain('snapline: warning: the hole-seeking addon was not built');
  });
});

describe('the entry point (bin/snapline.js)', () => {
  it('--version is the package\'s own, not that of the project it is run from (npm exec sets npm_package_version)', () => {
    const { version } = JSON.parse(execFileSync(process.execPath, ['-p', 'JSON.stringify(require("./package.json"))'], { cwd: ROOT, encoding: 'utf8' })) as { version: string };
    const run = spawnSync(process.execPath, [BIN, '--version'], { cwd: work, encoding: 'utf8', env: hermeticEnv(join(work, 'data'), { npm_package_version: '9.9.9' }) });
    expect(run.stdout).toBe(`${version}\n`);
  });

  it('in a clone never built: says so and how to build it (exit 70), not a module-loader trace', () => {
    const clone = join(work, 'unbuilt');
    mkdirSync(join(clone, 'bin'), { recursive: true });
    copyFileSync(BIN, join(clone, 'bin', 'snapline.js'));
    const run = spawnSync(process.execPath, [join(clone, 'bin', 'snapline.js'), '--version'], { encoding: 'utf8', env: hermeticEnv(join(work, 'data')) });
    expect(run.status).toBe(70);
    expect(run.stderr).toBe(
      `snapline: error: the program is not built: ${join(clone, 'dist', 'src', 'cli', 'main.js')} is missing\nhint: in the clone, run npm ci (which builds it), or npm run build\n`,
    );
  });
});
