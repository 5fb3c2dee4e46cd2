/**
 * Bad input across the commands, as a user meets it: the built CLI in a child
 * process against the local endpoint. Each case: a clear message on stderr,
 * the exit code the README documents, nothing on stdout, and no half-written
 * state (the index unchanged, no target created, no snapshot started). The
 * README's table "Bad input and failures" lists these cases and those of
 * test/e2e/backup-cli.test.ts, test/e2e/restore-cli.test.ts and
 * test/reliability/{security,concurrency}.test.ts.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, it, type TestContext } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { backup } from '../../src/index.js';
import { blockOf, clientsFor, complete, put, snapshotWith, start } from '../emulator/helpers.js';
import { killStrays, runCli, startCli, until, type CliResult } from '../support/cli.js';
import { runInProcess } from '../support/in-process.js';
import { overwriteBlocks, writeImage } from '../support/images.js';

const NOBODY = 65_534;
const isRoot = process.getuid?.() === 0;

let work: string;
let emulator: RunningEmulator;
let mainIndex: string;
let image: string;
let snapA: string;
let snapB: string;
let pending: string;
let errored: string;
let unrelated: string;

/** How a run ended. */
type Ran = Pick<CliResult, 'code' | 'stdout' | 'stderr'>;

/**
 * `snapline ...args`, hermetic, data and config under the work dir: in this
 * process (see in-process.ts), or as a child when it must run as another user.
 */
function snapline(args: string[], options: { uid?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const env: NodeJS.ProcessEnv = { XDG_CONFIG_HOME: join(work, 'config'), ...options.env };
  if (options.uid === undefined) return runInProcess(args, { dataDir: join(work, 'data'), env });
  return runCli(args, { dataDir: env.SNAPLINE_DATA_DIR ?? join(work, 'data'), cwd: work, env, uid: options.uid });
}

/** `snapline --connection local --endpoint-url URL --index INDEX --no-progress ...args`. */
function cli(args: string[], options: { index?: string; endpointUrl?: string; uid?: number; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const global = ['--connection', 'local', '--endpoint-url', options.endpointUrl ?? emulator.url, '--index', options.index ?? mainIndex, '--no-progress'];
  return snapline([...global, ...args], options);
}

/** What the index records of volumes and snapshots, to compare before and after a refusal. */
function indexDump(path: string): string {
  const index = BlockIndex.open(path);
  try {
    return JSON.stringify({ volumes: index.lineage.listVolumes(), snapshots: index.lineage.listSnapshots() });
  } finally {
    index.close();
  }
}

/** Asserts a refusal: exit code, message, nothing on stdout. */
function expectRefused(expect: TestContext['expect'], run: Ran, exitCode: number, message: RegExp): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: exitCode, stderr: expect.stringMatching(message) });
  expect(run.stderr).toMatch(/^snapline: error: /m);
  expect(run.stdout).toBe('');
}

/** StartSnapshot requests so far, to show a refusal started nothing. */
const starts = () => emulator.stats().operations.StartSnapshot?.requests ?? 0;

function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-bad-input-'));
  // Traversable for the runs as nobody.
  chmodSync(work, 0o755);
  mkdirSync(join(work, 'data'));
  mainIndex = join(work, 'index.db');
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
  const session = { connection: 'local', endpointUrl: emulator.url, indexPath: mainIndex, concurrency: 8 };
  image = join(work, 'base.img');
  const bytes = writeImage(image, { label: 'bad-input/base', blocks: 12, tailBytes: 1000 });
  snapA = (await backup({ ...session, source: image, volume: 'base' })).snapshotId!;
  overwriteBlocks(image, bytes, [3, 7], 'bad-input/b');
  snapB = (await backup({ ...session, source: image, volume: 'base' })).snapshotId!;

  const { ebs, ec2, sts, s3 } = clientsFor(emulator.url);
  try {
    unrelated = await snapshotWith(ebs, new Map([[0, blockOf(9)]]));
    emulator.setFaults({ completionDelayMs: 3_600_000 });
    pending = await start(ebs);
    await put(ebs, pending, 0, blockOf(1));
    await complete(ebs, pending, new Map([[0, blockOf(1)]]));
    emulator.setFaults({ completionErrorRate: 1 });
    errored = await start(ebs);
    await put(ebs, errored, 0, blockOf(2));
    await complete(ebs, errored, new Map([[0, blockOf(2)]]));
  } finally {
    emulator.setFaults({});
    for (const client of [ebs, ec2, sts, s3]) client.destroy();
  }
}, 120_000);

afterAll(async () => {
  killStrays();
  await emulator?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.concurrent('backup: sources', () => {
  it('an unreadable source: exit 2, permission denied', async ({ expect }) => {
    const secret = join(work, 'secret.img');
    writeImage(secret, { label: 'bad-input/secret', blocks: 1 });
    chmodSync(secret, 0o600);
    // As root, read permission is only missing for another user: run as nobody with an index nobody may write.
    const shared = join(work, 'shared');
    mkdirSync(shared, { recursive: true, mode: 0o777 });
    chmodSync(shared, 0o777);
    if (!isRoot) chmodSync(secret, 0o000);
    const index = join(shared, 'nobody-index.db');
    const run = await cli(['backup', secret], { index, ...(isRoot ? { uid: NOBODY, env: { SNAPLINE_DATA_DIR: shared } } : {}) });
    expectRefused(expect, run, ExitCodes.USAGE, /permission denied reading source .*secret\.img/);
    expect(run.stderr).toMatch(/hint: run snapline as a user allowed to read it/);
  });

  it('a character device (/dev/null): exit 2', async ({ expect }) => {
    const before = indexDump(mainIndex);
    expectRefused(expect, await cli(['backup', '/dev/null']), ExitCodes.USAGE, /source \/dev\/null is a character device; snapline backs up a disk image file or a block device/);
    expect(indexDump(mainIndex)).toBe(before);
  });

  it('a symbolic link to nothing: exit 2, does not exist', async ({ expect }) => {
    const link = join(work, 'dangling.img');
    symlinkSync(join(work, 'gone.img'), link);
    expectRefused(expect, await cli(['backup', link]), ExitCodes.USAGE, /source .*dangling\.img does not exist/);
  });
});

describe.concurrent('backup: arguments and parents', () => {
  it('an invalid --volume name: exit 2', async ({ expect }) => {
    expectRefused(expect, await cli(['backup', image, '--volume', 'a b']), ExitCodes.USAGE, /--volume "a b" is not a valid name/);
  });

  it('--full with --parent: exit 2, nothing started', async ({ expect }) => {
    const before = { index: indexDump(mainIndex), starts: starts() };
    expectRefused(expect, await cli(['backup', image, '--volume', 'base', '--full', '--parent', snapA]), ExitCodes.USAGE, /--full and --parent exclude each other/);
    expect({ index: indexDump(mainIndex), starts: starts() }).toEqual(before);
  });

  it('--volume with two sources: exit 2', async ({ expect }) => {
    expectRefused(expect, await cli(['backup', image, image, '--volume', 'base']), ExitCodes.USAGE, /--volume names one lineage: give one source with it/);
  });

  it('--parent a pending snapshot: exit 3, nothing started', async ({ expect }) => {
    const before = { index: indexDump(mainIndex), starts: starts() };
    expectRefused(expect, await cli(['backup', image, '--volume', 'base', '--parent', pending]), ExitCodes.REMOTE, new RegExp(`parent snapshot ${pending} is pending, not completed`));
    expect({ index: indexDump(mainIndex), starts: starts() }).toEqual(before);
  });

  it('--parent a snapshot that ended in error: exit 3', async ({ expect }) => {
    expectRefused(expect, await cli(['backup', image, '--volume', 'base', '--parent', errored]), ExitCodes.REMOTE, new RegExp(`parent snapshot ${errored} is error, not completed`));
  });

  it('--parent a snapshot of another lineage: exit 3, nothing started', async ({ expect }) => {
    const before = { index: indexDump(mainIndex), starts: starts() };
    expectRefused(
      expect,
      await cli(['backup', image, '--volume', 'base', '--parent', unrelated]),
      ExitCodes.REMOTE,
      new RegExp(`snapshot ${unrelated} is not of the lineage of ${snapB}`),
    );
    expect({ index: indexDump(mainIndex), starts: starts() }).toEqual(before);
  });
});

describe.concurrent('the index file', () => {
  /** A copy of the main index (closed, so a plain copy is whole). */
  function copyOfIndex(name: string): string {
    const path = join(work, name);
    writeFileSync(path, readFileSync(mainIndex));
    return path;
  }

  it('a block map whose rows were altered: backup and verify refuse (exit 4) before starting anything; index check finds it', async ({ expect }) => {
    const index = copyOfIndex('altered-index.db');
    const db = new Database(index);
    // Lose one row of snapshot A's map: it would read as a block never written.
    db.prepare('DELETE FROM blocks WHERE id = (SELECT max(id) FROM blocks)').run();
    db.close();
    const before = starts();
    const refused = await cli(['backup', image, '--volume', 'base'], { index });
    expectRefused(expect, refused, ExitCodes.INTEGRITY, /is damaged: the block map of snap-\w+ does not match its checksum/);
    // The hint's command carries the run's global options, --index among them.
    expect(refused.stderr).toContain(`hint: run \`snapline --connection local --endpoint-url ${emulator.url} --index ${index} index check\``);
    expect(starts()).toBe(before);
    expectRefused(expect, await cli(['verify', image, snapB], { index }), ExitCodes.INTEGRITY, /does not match its checksum/);
    expectRefused(expect, await cli(['index', 'check'], { index }), ExitCodes.INTEGRITY, /does not match its checksum \(altered rows\)/);
  });

  it('garbage over the pages of the snapshots table: exit 4 for every command that reads it, and the file is not rewritten', async ({ expect }) => {
    const index = copyOfIndex('garbage-index.db');
    // The page the snapshots table starts on (its root), wherever the schema's other tables put it.
    const db = new Database(index, { readonly: true });
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    const { rootpage } = db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'snapshots'").get() as { rootpage: number };
    db.close();
    const bytes = readFileSync(index);
    bytes.fill(0x5a, (rootpage - 1) * pageSize, rootpage * pageSize);
    writeFileSync(index, bytes);
    for (const args of [['backup', image, '--volume', 'base'], ['snapshots'], ['restore', snapB, join(work, 'never-garbage.img')]]) {
      expectRefused(expect, await cli(args, { index }), ExitCodes.INTEGRITY, /is damaged \(database disk image is malformed\)|is not a usable snapline index/);
    }
    expect(readFileSync(index).equals(bytes)).toBe(true);
    expect(existsSync(join(work, 'never-garbage.img'))).toBe(false);
  });

  it('an index written by a newer snapline: exit 4 naming both versions, the file unchanged', async ({ expect }) => {
    const index = copyOfIndex('newer-index.db');
    const db = new Database(index);
    db.pragma('user_version = 99');
    db.pragma('journal_mode = DELETE');
    db.close();
    const bytes = readFileSync(index);
    expectRefused(expect, await cli(['backup', image, '--volume', 'base'], { index }), ExitCodes.INTEGRITY, /written by a newer snapline \(schema version 99; this snapline knows up to \d+\)/);
    expect(readFileSync(index).equals(bytes)).toBe(true);
  });

  it('a file that is not SQLite, another application\'s database, a directory: exit 4', async ({ expect }) => {
    const text = join(work, 'text-index.db');
    writeFileSync(text, 'not a database\n'.repeat(400));
    expectRefused(expect, await cli(['snapshots'], { index: text }), ExitCodes.INTEGRITY, /text-index\.db is not a usable snapline index: it is not an SQLite database/);
    const foreign = join(work, 'foreign-index.db');
    const db = new Database(foreign);
    db.exec('CREATE TABLE t (a)');
    db.pragma('application_id = 1234');
    db.close();
    expectRefused(expect, await cli(['snapshots'], { index: foreign }), ExitCodes.INTEGRITY, /it is an SQLite database of another application/);
    const dir = join(work, 'dir-index.db');
    mkdirSync(dir);
    expectRefused(expect, await cli(['snapshots'], { index: dir }), ExitCodes.INTEGRITY, /dir-index\.db is not a usable snapline index: it is not a regular file/);
  });
});

describe.concurrent('configuration and connection', () => {
  it('a config file that is not valid YAML: exit 2 naming the file and line', async ({ expect }) => {
    const config = join(work, 'broken.yaml');
    writeFileSync(config, 'connections:\n  prod: [\n', { mode: 0o600 });
    const run = await snapline(['--config', config, '--connection', 'prod', '--index', mainIndex, 'snapshots']);
    expectRefused(expect, run, ExitCodes.USAGE, /broken\.yaml:\d+:\d+: YAML syntax error/);
  });

  it('a --config file that does not exist: exit 2', async ({ expect }) => {
    const run = await snapline(['--config', join(work, 'missing.yaml'), '--connection', 'prod', '--index', mainIndex, 'snapshots']);
    expectRefused(expect, run, ExitCodes.USAGE, /config file .*missing\.yaml does not exist/);
  });

  it('an unknown --connection: exit 2 listing the known ones', async ({ expect }) => {
    const run = await snapline(['--connection', 'nosuch', '--index', mainIndex, 'snapshots']);
    expectRefused(expect, run, ExitCodes.USAGE, /unknown connection "nosuch"/);
    expect(run.stderr).toMatch(/hint: known connections: local/);
  });

  it('an --endpoint-url that is not a URL: exit 2', async ({ expect }) => {
    expectRefused(expect, await cli(['snapshots'], { endpointUrl: 'not-a-url' }), ExitCodes.USAGE, /endpointUrl is not a URL: not-a-url/);
  });

  it('the endpoint down (nothing listening): restore, verify, snapshots and index rebuild exit 6; no target is created', async ({ expect }) => {
    const down = 'http://127.0.0.1:9';
    const target = join(work, 'never-down.img');
    const runs = await Promise.all([
      cli(['restore', snapB, target], { endpointUrl: down }),
      cli(['verify', image, snapB], { endpointUrl: down }),
      cli(['snapshots'], { endpointUrl: down }),
      cli(['index', 'rebuild', snapB], { endpointUrl: down, index: join(work, 'down-index.db') }),
    ]);
    for (const run of runs) expectRefused(expect, run, ExitCodes.UNREACHABLE, /cannot reach the endpoint \(ECONNREFUSED\)/);
    expect(existsSync(target)).toBe(false);
  });
});

describe.concurrent('restore targets', () => {
  it('a target in a folder that does not exist: exit 2, and the index records nothing', async ({ expect }) => {
    const target = join(work, 'no-such-folder', 'disk.img');
    expectRefused(expect, await cli(['restore', snapB, target]), ExitCodes.USAGE, /the folder of .*no-such-folder\/disk\.img does not exist/);
    const index = BlockIndex.open(mainIndex);
    try {
      expect(index.targets.get(target)).toBeUndefined();
    } finally {
      index.close();
    }
  });

  it('a FIFO or a character device as target: exit 2, never opened', async ({ expect }) => {
    const fifo = join(work, 'target.fifo');
    execFileSync('mkfifo', [fifo]);
    expectRefused(expect, await cli(['restore', snapB, fifo, '--force']), ExitCodes.USAGE, /target\.fifo is neither a regular file nor a block device/);
    expectRefused(expect, await cli(['restore', snapB, '/dev/null', '--force']), ExitCodes.USAGE, /\/dev\/null is neither a regular file nor a block device/);
  });

  it('--concurrency 0: exit 2 naming the flag', async ({ expect }) => {
    expectRefused(expect, await cli(['restore', snapB, join(work, 'c0.img'), '--concurrency', '0']), ExitCodes.USAGE, /--concurrency must be a whole number from 1 to 1024/);
  });

  it('--trust-index without --incremental: exit 2 naming both flags, no target created', async ({ expect }) => {
    const target = join(work, 'trust-alone.img');
    expectRefused(expect, await cli(['restore', snapB, target, '--trust-index']), ExitCodes.USAGE, /--trust-index goes with --incremental/);
    expect(existsSync(target)).toBe(false);
  });
});

describe.concurrent('snapshots that cannot be used', () => {
  it('verify: an unknown snapshot, a pending one (exit 3); a missing source (exit 2)', async ({ expect }) => {
    expectRefused(expect, await cli(['verify', image, 'snap-0123456789abcdef0']), ExitCodes.REMOTE, /snapshot snap-0123456789abcdef0 does not exist/);
    expectRefused(expect, await cli(['verify', image, pending]), ExitCodes.REMOTE, new RegExp(`snapshot ${pending} is pending; only a completed snapshot can be read`));
    expectRefused(expect, await cli(['verify', join(work, 'nope.img'), snapB]), ExitCodes.USAGE, /source .*nope\.img does not exist/);
    expectRefused(expect, await cli(['verify', snapB]), ExitCodes.USAGE, /verify needs a source and a snapshot id \(with --remote, the snapshot id alone reads and checks the snapshot\)/);
    expectRefused(expect, await cli(['verify', '--remote', 'snap-0123456789abcdef0']), ExitCodes.REMOTE, /snapshot snap-0123456789abcdef0 does not exist/);
  });

  it('diff: snapshots of unrelated lineages, an unknown snapshot: exit 3', async ({ expect }) => {
    expectRefused(expect, await cli(['diff', snapA, unrelated]), ExitCodes.REMOTE, /UNRELATED_SNAPSHOTS/);
    expectRefused(expect, await cli(['diff', snapA, 'snap-0123456789abcdef0']), ExitCodes.REMOTE, /snap-0123456789abcdef0/);
  });

  it('index rebuild: a snapshot that ended in error, an unknown one: exit 3, the index unchanged', async ({ expect }) => {
    const index = join(work, 'rebuild-refused-index.db');
    expectRefused(expect, await cli(['index', 'rebuild', errored], { index }), ExitCodes.REMOTE, new RegExp(`snapshot ${errored} is error`));
    expectRefused(expect, await cli(['index', 'rebuild', 'snap-0123456789abcdef0'], { index }), ExitCodes.REMOTE, /snapshot snap-0123456789abcdef0 does not exist/);
    expect(indexDump(index)).toBe(JSON.stringify({ volumes: [], snapshots: [] }));
  });

  it('prune --older-than-days -1: exit 2, nothing deleted', async ({ expect }) => {
    const before = indexDump(mainIndex);
    expectRefused(expect, await cli(['prune', '--older-than-days', '-1']), ExitCodes.USAGE, /--older-than-days must be a whole number from 0/);
    expect(indexDump(mainIndex)).toBe(before);
  });

  it('archive --to nowhere, --tier Fast, --storage-class FROZEN: exit 2 naming the flag the engine\'s rule is about', async ({ expect }) => {
    expectRefused(expect, await cli(['archive', 'create', snapA, '--to', 'nowhere']), ExitCodes.USAGE, /--to must be s3 or glacier, got "nowhere"/);
    expectRefused(expect, await cli(['archive', 'restore', 'ar-0123456789abcdef', '--tier', 'Fast']), ExitCodes.USAGE, /--tier must be Bulk, Standard or Expedited, got "Fast"/);
    const json = await cli(['--json', 'archive', 'create', snapA, '--bucket', 'no-such-bucket', '--storage-class', 'FROZEN']);
    expect(json.code).toBe(ExitCodes.USAGE);
    expect(JSON.parse(json.stdout)).toMatchObject({
      error: { code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^--storage-class must be one of/), details: { option: 'storageClass', flag: '--storage-class' } },
    });
  });
});

describe('a block device mounted read-write (a loop device over an ext4 image)', () => {
  it('backup warns that the copy is only crash-consistent and how to freeze it, and goes on; restore onto it is refused (exit 2)', async ({ expect, skip }) => {
    const backing = join(work, 'ext4.img');
    const mountPoint = join(work, 'mnt');
    let device: string | undefined;
    let mounted = false;
    try {
      try {
        if (!isRoot) throw new Error('not root');
        writeFileSync(backing, Buffer.alloc(0));
        execFileSync('truncate', ['-s', '16M', backing]);
        device = sh('losetup', ['-f', '--show', backing]);
        sh('mkfs.ext4', ['-q', '-F', device]);
        mkdirSync(mountPoint);
        sh('mount', [device, mountPoint]);
        mounted = true;
        writeFileSync(join(mountPoint, 'hello.txt'), 'live data');
      } catch (err) {
        skip(`cannot mount an ext4 loop device here (${(err as Error).message.split('\n')[0]}); src/source/mounts.test.ts covers the detection with a fake mountinfo`);
      }
      const run = await cli(['--json', 'backup', device!, '--volume', 'live']);
      expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code: 0 });
      expect(run.stderr).toContain(`snapline: warning: ${device} is mounted read-write (on ${mountPoint}): the copy is only crash-consistent`);
      expect(run.stderr).toContain(`fsfreeze --freeze ${mountPoint}`);
      expect(JSON.parse(run.stdout)).toMatchObject({ backups: [{ volume: 'live', sourceBytes: 16 * 1024 * 1024 }] });

      const refused = await cli(['restore', snapB, device!]);
      expectRefused(expect, refused, ExitCodes.USAGE, new RegExp(`${device} is mounted \\(on ${mountPoint}\\); unmount it before restoring onto it`));
      expect(readFileSync(join(mountPoint, 'hello.txt'), 'utf8')).toBe('live data');
    } finally {
      if (mounted) sh('umount', [mountPoint]);
      if (device) sh('losetup', ['-d', device]);
    }
  });
});

describe('SIGINT and SIGTERM in the middle of the long commands (exit 130, nothing half-written)', () => {
  let slow: RunningEmulator;
  let slowIndex: string;
  let slowImage: string;
  let slowSnapshot: string;
  let slowFirst: string;
  const ops = (name: string) => slow.stats().operations[name]?.requests ?? 0;

  beforeAll(async () => {
    slow = await startEmulator({ dataDir: join(work, 'slow-endpoint'), log: () => undefined });
    slowIndex = join(work, 'slow-index.db');
    slowImage = join(work, 'slow.img');
    const bytes = writeImage(slowImage, { label: 'bad-input/slow', blocks: 24 });
    const session = { connection: 'local', endpointUrl: slow.url, indexPath: slowIndex, source: slowImage, volume: 'slow' };
    slowFirst = (await backup(session)).snapshotId!;
    overwriteBlocks(slowImage, bytes, [5], 'bad-input/slow2');
    slowSnapshot = (await backup(session)).snapshotId!;
    // Every EBS request now takes a while: the commands are still at work when the signal comes.
    slow.setFaults({ latencyMs: 250 });
  });
  afterAll(() => slow?.close());

  /** Starts the command, sends `signal` once the endpoint has seen `operation`, and returns how it ended. */
  async function interrupt(args: string[], signal: NodeJS.Signals, operation: string, index = slowIndex): Promise<CliResult> {
    const before = ops(operation);
    const run = startCli(['--connection', 'local', '--endpoint-url', slow.url, '--index', index, '--no-progress', ...args], { dataDir: join(work, 'data'), cwd: work });
    await until(() => ops(operation) > before, `${operation} under way`, run.child);
    run.child.kill(signal);
    return run.done;
  }

  it('backup, SIGTERM: the pending snapshot is kept and named; the same command resumes it', async ({ expect }) => {
    const source = join(work, 'term.img');
    writeImage(source, { label: 'bad-input/term', blocks: 24 });
    const stopped = await interrupt(['backup', source, '--concurrency', '2'], 'SIGTERM', 'PutSnapshotBlock');
    expect({ code: stopped.code, stderr: stopped.stderr }).toMatchObject({ code: ExitCodes.INTERRUPTED, stderr: expect.stringMatching(/interrupted.*; snapshot (snap-\w+) stays pending/) });
    expect(stopped.stderr).toMatch(/hint: run the same command again to resume it/);
    const pendingId = /snapshot (snap-\w+) stays pending/.exec(stopped.stderr)![1];
    const index = BlockIndex.open(slowIndex);
    try {
      expect(index.runs.pendingRun('term.img')?.snapshotId).toBe(pendingId);
      expect(index.lineage.headSnapshot('term.img')).toBeUndefined();
    } finally {
      index.close();
    }
    slow.setFaults({});
    try {
      const resumed = await runCli(['--connection', 'local', '--endpoint-url', slow.url, '--index', slowIndex, '--json', 'backup', source, '--concurrency', '2'], {
        dataDir: join(work, 'data'),
        cwd: work,
      });
      expect({ code: resumed.code, stderr: resumed.stderr }).toMatchObject({ code: 0 });
      expect(JSON.parse(resumed.stdout)).toMatchObject({ backups: [{ snapshotId: pendingId, resumed: true }] });
    } finally {
      slow.setFaults({ latencyMs: 250 });
    }
  });

  it('restore, SIGTERM: exit 130, the target said to be and marked incomplete', async ({ expect }) => {
    const target = join(work, 'term-restore.img');
    const stopped = await interrupt(['restore', slowSnapshot, target, '--concurrency', '2'], 'SIGTERM', 'GetSnapshotBlock');
    expect({ code: stopped.code, stderr: stopped.stderr }).toMatchObject({ code: ExitCodes.INTERRUPTED, stderr: expect.stringContaining(`${target} is incomplete`) });
    const index = BlockIndex.open(slowIndex);
    try {
      expect(index.targets.get(target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    } finally {
      index.close();
    }
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`verify (reading the snapshot), ${signal}: exit 130, no verdict printed`, async ({ expect }) => {
      const stopped = await interrupt(['verify', slowImage, slowSnapshot], signal, 'GetSnapshotBlock', join(work, `verify-${signal}-index.db`));
      expect({ code: stopped.code, stderr: stopped.stderr }).toMatchObject({ code: ExitCodes.INTERRUPTED, stderr: expect.stringMatching(/^snapline: error: .*interrupted/m) });
      expect(stopped.stdout).toBe('');
    });

    it(`index rebuild, ${signal}: exit 130, the index learns nothing (no half map)`, async ({ expect }) => {
      const index = join(work, `rebuild-${signal}-index.db`);
      const stopped = await interrupt(['index', 'rebuild', slowSnapshot], signal, 'GetSnapshotBlock', index);
      expect({ code: stopped.code, stderr: stopped.stderr }).toMatchObject({ code: ExitCodes.INTERRUPTED, stderr: expect.stringMatching(/^snapline: error: .*interrupted/m) });
      expect(indexDump(index)).toBe(JSON.stringify({ volumes: [], snapshots: [] }));
    });
  }

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`diff, ${signal}: exit 130, no ranges printed`, async ({ expect }) => {
      const stopped = await interrupt(['diff', slowFirst, slowSnapshot], signal, 'ListChangedBlocks');
      expect({ code: stopped.code, stderr: stopped.stderr }).toMatchObject({ code: ExitCodes.INTERRUPTED, stderr: expect.stringMatching(/interrupted/) });
      expect(stopped.stdout).toBe('');
    });
  }
});
