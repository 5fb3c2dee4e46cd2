/**
 * The restore side of the CLI as a user runs it: `node bin/snapline.js` in a
 * child process against the local endpoint over loopback HTTP, checking exit
 * codes, messages, --json output, the files written and the index left behind.
 * dist/ is built once for all such files by test/e2e/global-setup.ts.
 */
import { existsSync, statSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, open, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { backup } from '../../src/engine/backup/backup.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { startCli, until, type CliResult, type CliRun } from '../support/cli.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { openLocalSession, pathsIn, unreadableSnapshots, withLocalSession } from '../support/local-endpoint.js';
import { loopDevicesUnavailable, runTool, withTinyFilesystem } from '../support/loop-devices.js';
import { expectSameBytes } from '../support/same-bytes.js';

const NOBODY = 65_534;

// ---- running the CLI ------------------------------------------------------------

interface SnaplineOptions {
  endpoint?: RunningEmulator;
  index?: string;
  /** Run as this user (and group of the same number). */
  uid?: number;
}

/** Starts `snapline <global flags> ...args` against an endpoint (default the plain one) and an index (default the main one). */
function startSnapline(args: string[], options: SnaplineOptions = {}): CliRun {
  const endpoint = options.endpoint ?? emulator;
  return startCli(['--connection', 'local', '--endpoint-url', endpoint.url, '--index', options.index ?? mainIndex, '--no-progress', ...args], {
    dataDir: join(work, 'data'),
    cwd: work,
    uid: options.uid,
  });
}

/** startSnapline, resolving when the run exits. */
function snapline(args: string[], options: SnaplineOptions = {}): Promise<CliResult> {
  return startSnapline(args, options).done;
}

/** Asserts the exit code, showing the output when it is not the expected one. */
function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

function jsonOf<T = Record<string, unknown>>(run: CliResult): T {
  return JSON.parse(run.stdout) as T;
}

/** `snapline backup --json` of one image; the new snapshot's id. */
async function cliBackup(image: string, volume: string, options: SnaplineOptions = {}): Promise<string> {
  const run = await snapline(['--json', 'backup', image, '--volume', volume], options);
  expectExit(run, 0);
  return jsonOf<{ backups: Array<{ snapshotId: string }> }>(run).backups[0]!.snapshotId;
}

// ---- images and the index ---------------------------------------------------------------

function targetRecord(indexPath: string, target: string) {
  const index = BlockIndex.open(indexPath);
  try {
    return index.targets.get(target);
  } finally {
    index.close();
  }
}

/** Backs up `image` in this process (quick setup, not what is under test). */
function libraryBackup(endpoint: RunningEmulator, indexPath: string, image: string, volume: string) {
  return withLocalSession(endpoint, indexPath, (session) => backup(session, { source: image, volume }));
}

// ---- fixtures -------------------------------------------------------------------------

let work: string;
/** The plain endpoint most tests share. */
let emulator: RunningEmulator;
/** An endpoint whose faults tests switch on and off, one test at a time. */
let faulty: RunningEmulator;
/** An endpoint that corrupts every block read, for the restore that runs in the background. */
let corrupting: RunningEmulator;
let mainIndex: string;
/** A fresh path in the work folder. */
let pathFor: (name: string) => string;

/** The lineage "r": A, then B with block 1 rewritten and block 7 (a hole in A) written. */
const SIZE = 12 * BLOCK_SIZE + 3000;
let imageA: string;
let imageB: string;
let snapA: string;
let snapB: string;

/** A restore started in beforeAll against the corrupting endpoint: its retries take a while. */
let corruptRestore: Promise<CliResult>;
let corruptSnapshot: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-restore-cli-'));
  pathFor = pathsIn(work);
  // Traversable for the test that runs the CLI as nobody.
  await chmod(work, 0o755);
  mainIndex = join(work, 'index.db');
  const endpoint = (name: string) => startEmulator({ dataDir: join(work, `endpoint-${name}`) });
  [emulator, faulty, corrupting] = await Promise.all([endpoint('plain'), endpoint('faulty'), endpoint('corrupting')]);

  const one = pathFor('corrupt-source.img');
  writeBlocks(one, randomBlocks([0]), BLOCK_SIZE);
  corruptSnapshot = (await libraryBackup(corrupting, pathFor('corrupt-index.db'), one, 'corrupt')).snapshotId!;
  corrupting.setFaults({ corruptRate: 1 });
  corruptRestore = snapline(['restore', corruptSnapshot, pathFor('corrupt-target.img')], { endpoint: corrupting, index: pathFor('fresh-index.db') });

  const live = pathFor('r.img');
  writeBlocks(live, randomBlocks([0, 1, 2, 3, 6, 9, 12]), SIZE);
  snapA = await cliBackup(live, 'r');
  imageA = pathFor('r-a.img');
  await copyFile(live, imageA);
  writeBlocks(live, randomBlocks([1, 7]));
  snapB = await cliBackup(live, 'r');
  imageB = pathFor('r-b.img');
  await copyFile(live, imageB);
}, 120_000);

afterAll(async () => {
  await corruptRestore?.catch(() => undefined);
  await Promise.all([emulator, faulty, corrupting].map((e) => e?.close()));
  if (work) await rm(work, { recursive: true, force: true });
});

// ---- restore ------------------------------------------------------------------------------

describe('snapline restore', () => {
  it('--json --verify: byte-identical, exact size, sparse, with the documented keys', async () => {
    const target = pathFor('restored.img');
    const restored = await snapline(['--json', 'restore', snapB, target, '--verify']);
    expectExit(restored, 0);
    const result = jsonOf(restored);
    for (const key of ['snapshotId', 'target', 'blocksListed', 'blocksFetched', 'bytesWritten', 'durationMs']) expect(result).toHaveProperty(key);
    expect(result).toMatchObject({ snapshotId: snapB, target, blocksListed: 8, blocksFetched: 8, bytesWritten: 7 * BLOCK_SIZE + 3000, verified: true, verifiedAgainst: 'index' });
    expect(typeof result.durationMs).toBe('number');
    await expectSameBytes(target, imageB);
    // 8 of 13 blocks hold data; the other 5 are holes.
    expect((await stat(target)).blocks * 512).toBeLessThan(9 * BLOCK_SIZE);
  });

  it('--incremental: B onto a target holding A fetches exactly the changed blocks', async () => {
    const target = pathFor('rolling.img');
    expectExit(await snapline(['restore', snapA, target]), 0);
    await expectSameBytes(target, imageA);

    const diffRun = await snapline(['--json', 'diff', snapA, snapB]);
    expectExit(diffRun, 0);
    expect(jsonOf(diffRun)).toMatchObject({
      changedBlocks: 2,
      changedBytes: 2 * BLOCK_SIZE,
      addedBlocks: 1,
      removedBlocks: 0,
      ranges: [
        { first: 1, last: 1 },
        { first: 7, last: 7 },
      ],
    });

    const before = emulator.stats().operations.GetSnapshotBlock?.requests ?? 0;
    const incremental = await snapline(['--json', 'restore', snapB, target, '--incremental']);
    expectExit(incremental, 0);
    expect((emulator.stats().operations.GetSnapshotBlock?.requests ?? 0) - before).toBe(2);
    expect(jsonOf(incremental)).toMatchObject({
      incrementalFrom: snapA,
      incremental: { method: 'hashed', digestsFrom: 'index', blocksHashed: 13, blocksDiffering: 2 },
      blocksListed: 2,
      blocksFetched: 2,
    });
    await expectSameBytes(target, imageB);
  });

  it('--incremental onto a target written to since its last restore: the target is hashed, the change found and undone, and the output says so', async () => {
    const target = pathFor('written-since.img');
    expectExit(await snapline(['restore', snapA, target]), 0);
    const scribble = async () => {
      const file = await open(target, 'r+');
      await file.write(Buffer.from('8 bytes!'), 0, 8, 6 * BLOCK_SIZE + 100);
      await file.close();
    };
    await scribble();
    const again = await snapline(['restore', snapA, target, '--incremental', '--verify']);
    expectExit(again, 0);
    expect(again.stdout).toContain(`  hashed 13 blocks of the target against the index's digests of ${snapA}: 1 differ\n`);
    // The skip decisions and the verify both rest on the index's digests: the output says so.
    expect(again.stdout).toContain(`  verified against the index's digests of ${snapA} (\`verify --remote\` reads the snapshot itself): the target equals the snapshot\n`);
    expect(again.stdout).toContain('fetched 1 blocks');
    await expectSameBytes(target, imageA);

    // Trusting the index, the target is not read: the output says what was taken on trust.
    await scribble();
    const trusted = await snapline(['restore', snapB, target, '--incremental', '--trust-index']);
    expectExit(trusted, 0);
    expect(trusted.stdout).toContain(`  trusted the index that the target held ${snapA} (not hashed): 2 blocks changed since\n`);
    const check = await snapline(['verify', target, snapB]);
    expectExit(check, 1);
    expect(check.stdout).toContain('  block 6\n');
  });

  it('a corrupted block is fetched again and the restore still comes out byte-identical', async () => {
    const snapshotId = (await libraryBackup(faulty, pathFor('setup-index.db'), imageB, 'corrupt-some')).snapshotId!;
    faulty.setFaults({ corruptRate: 0.3, seed: 5 });
    faulty.resetStats();
    try {
      const target = pathFor('corrupt-some.img');
      expectExit(await snapline(['restore', snapshotId, target], { endpoint: faulty, index: pathFor('fresh-index.db') }), 0);
      expect(faulty.stats().faults.corrupted).toBeGreaterThan(0);
      await expectSameBytes(target, imageB);
    } finally {
      faulty.setFaults({});
    }
  });

  it('pending and errored snapshots: exit 3', async () => {
    const { pending, errored } = await unreadableSnapshots(faulty);
    const [notReady, broken] = await Promise.all(
      [pending, errored].map((id) => snapline(['restore', id, pathFor('never.img')], { endpoint: faulty, index: pathFor('fresh-index.db') })),
    );
    expectExit(notReady!, 3);
    expect(notReady!.stderr).toContain(`snapshot ${pending} is pending; only a completed snapshot can be read`);
    expectExit(broken!, 3);
    expect(broken!.stderr).toContain(`snapshot ${errored} is error`);
  });

  it('SIGINT mid-way: exit 130, the target is said to be and marked incomplete, and --incremental finishes it', async () => {
    const indexPath = pathFor('interrupt-index.db');
    const image = pathFor('interrupt.img');
    writeBlocks(image, randomBlocks([...Array(16).keys()]), 16 * BLOCK_SIZE);
    const snapshotId = (await libraryBackup(faulty, indexPath, image, 'interrupt')).snapshotId!;
    faulty.setFaults({ latencyMs: 300 });
    faulty.resetStats();
    try {
      const target = pathFor('interrupted.img');
      const started = startSnapline(['restore', snapshotId, target, '--concurrency', '2'], { endpoint: faulty, index: indexPath });
      await until(() => (faulty.stats().operations.GetSnapshotBlock?.requests ?? 0) > 0, 'a block fetched', started.child);
      started.child.kill('SIGINT');
      const interrupted = await started.done;
      expectExit(interrupted, 130);
      expect(interrupted.stderr).toContain(`${target} is incomplete`);
      expect(faulty.stats().operations.GetSnapshotBlock!.requests).toBeLessThan(16);
      expect(targetRecord(indexPath, target)).toMatchObject({ snapshotId: null, state: 'incomplete' });

      expect(interrupted.stderr).toContain('run the restore again with --incremental to finish it');

      faulty.setFaults({});
      const finished = await snapline(['restore', snapshotId, target, '--incremental'], { endpoint: faulty, index: indexPath });
      expectExit(finished, 0);
      expect(finished.stdout).toContain(`restored ${snapshotId} to ${target} (incrementally, finishing its interrupted last restore)`);
      await expectSameBytes(target, image);
      expect(targetRecord(indexPath, target)).toMatchObject({ snapshotId, state: 'complete' });
    } finally {
      faulty.setFaults({});
    }
  });

  it('SIGKILL mid-way: the index says incomplete, and --incremental finishes it, fetching only what the killed run did not write', async () => {
    const indexPath = pathFor('kill-index.db');
    const image = pathFor('kill.img');
    writeBlocks(image, randomBlocks([...Array(16).keys()]), 16 * BLOCK_SIZE);
    const snapshotId = (await libraryBackup(faulty, indexPath, image, 'kill')).snapshotId!;
    faulty.setFaults({ latencyMs: 300 });
    try {
      const target = pathFor('killed.img');
      const started = startSnapline(['restore', snapshotId, target, '--concurrency', '2'], { endpoint: faulty, index: indexPath });
      // Block 1 or a later one written (the file reaches past it): a write to a file runs to its end even when the process is killed.
      await until(() => existsSync(target) && statSync(target).size >= 2 * BLOCK_SIZE, 'a block written', started.child);
      started.child.kill('SIGKILL');
      expect((await started.done).signal).toBe('SIGKILL');
      expect(targetRecord(indexPath, target)).toMatchObject({ snapshotId: null, state: 'incomplete' });

      faulty.setFaults({});
      const finished = await snapline(['--json', 'restore', snapshotId, target, '--incremental'], { endpoint: faulty, index: indexPath });
      expectExit(finished, 0);
      const result = jsonOf<{ blocksFetched: number; incrementalFrom: string | null; incremental: { method: string } }>(finished);
      expect(result).toMatchObject({ incrementalFrom: null, incremental: { method: 'hashed' } });
      expect(result.blocksFetched).toBeLessThan(16);
      await expectSameBytes(target, image);
      expect(targetRecord(indexPath, target)).toMatchObject({ snapshotId, state: 'complete' });
    } finally {
      faulty.setFaults({});
    }
  });
});

describe.concurrent('snapline restore refuses bad input', () => {
  it('an unknown snapshot: exit 3', async () => {
    const failed = await snapline(['restore', 'snap-0123456789abcdef0', pathFor('unknown.img')]);
    expectExit(failed, 3);
    expect(failed.stderr).toContain('snapline: error: snapshot snap-0123456789abcdef0 does not exist');
  });

  it('a directory: exit 2', async () => {
    const dir = pathFor('dir');
    await mkdir(dir);
    const failed = await snapline(['restore', snapA, dir]);
    expectExit(failed, 2);
    expect(failed.stderr).toContain(`${dir} is a directory`);
  });

  it('an existing non-empty file without --force: exit 2, untouched', async () => {
    const existing = pathFor('existing.img');
    await writeFile(existing, 'keep me');
    const failed = await snapline(['restore', snapA, existing]);
    expectExit(failed, 2);
    expect(failed.stderr).toContain(`${existing} exists and is not empty`);
    expect(failed.stderr).toContain('hint: pass --force');
    expect(await readFile(existing, 'utf8')).toBe('keep me');
  });

  it('onto the index itself, even with --force, or its write-ahead log through a link: exit 2, the index untouched', async () => {
    const ownIndex = pathFor('own-index.db');
    const earlier = pathFor('before-own-index.img');
    expectExit(await snapline(['restore', snapA, earlier], { index: ownIndex }), 0);

    const failed = await snapline(['restore', snapA, ownIndex, '--force'], { index: ownIndex });
    expectExit(failed, 2);
    expect(failed.stderr).toContain(`${ownIndex} is a file of the index snapline is using (${ownIndex}): restoring onto it would destroy the index`);

    const link = pathFor('link-to-wal.img');
    await symlink(`${ownIndex}-wal`, link);
    const throughLink = await snapline(['restore', snapA, link, '--force'], { index: ownIndex });
    expectExit(throughLink, 2);
    expect(throughLink.stderr).toContain(`a file of the index snapline is using`);
    expect(targetRecord(ownIndex, earlier)).toMatchObject({ snapshotId: snapA, state: 'complete' });
  });

  it('--incremental onto a target the index has no record of: exit 2', async () => {
    const stranger = pathFor('stranger.img');
    await copyFile(imageA, stranger);
    const failed = await snapline(['restore', snapB, stranger, '--incremental']);
    expectExit(failed, 2);
    expect(failed.stderr).toContain('the index has no record of restoring it');
    await expectSameBytes(stranger, imageA);
  });

  it.skipIf(process.getuid?.() !== 0)('no permission (run as nobody): exit 2', async () => {
    // nobody may use this index, and may not write in the target's folder.
    const shared = pathFor('shared');
    await mkdir(shared);
    await chmod(shared, 0o777);
    const locked = pathFor('locked');
    await mkdir(locked, { mode: 0o755 });
    const target = join(locked, 'restore.img');
    const failed = await snapline(['restore', snapA, target], { uid: NOBODY, index: join(shared, 'index.db') });
    expectExit(failed, 2);
    expect(failed.stderr).toContain(`no permission to write ${target}`);
    expect(existsSync(target)).toBe(false);
  });

  it('disk full while writing: exit 7, and the index does not claim the target holds the snapshot', async (ctx) => {
    const mountPoint = pathFor('tiny-fs');
    await withTinyFilesystem(mountPoint, (note) => ctx.skip(note), async () => {
      const indexPath = pathFor('disk-full-index.db');
      const target = join(mountPoint, 'restore.img');
      const failed = await snapline(['restore', snapB, target], { index: indexPath });
      expectExit(failed, 7);
      expect(failed.stderr).toContain(`no space left to write ${target}`);
      expect(targetRecord(indexPath, target)).toMatchObject({ snapshotId: null, state: 'incomplete' });
    });
  });

  const noLoop = loopDevicesUnavailable();
  it.skipIf(noLoop)(`a device that holds a file system, without --force: exit 2, untouched${noLoop ? ` (skipped: ${noLoop})` : ''}`, async (ctx) => {
    const backing = pathFor('fs-device.img');
    await writeFile(backing, Buffer.alloc(16 * BLOCK_SIZE));
    try {
      runTool('mkfs.ext4', ['-q', '-F', backing]);
    } catch (err) {
      ctx.skip(`cannot make an ext4 file system here: ${(err as Error).message.split('\n')[0]}`);
    }
    const before = await readFile(backing);
    const device = runTool('losetup', ['-f', '--show', backing]);
    try {
      const failed = await snapline(['restore', snapA, device]);
      expectExit(failed, 2);
      expect(failed.stderr).toContain(`snapline: error: ${device} holds an ext2/3/4 file system (magic 0xEF53 at byte 1080)`);
      expect(failed.stderr).toContain('hint: pass --force to overwrite it');
      expect((await readFile(device)).equals(before)).toBe(true);
    } finally {
      runTool('losetup', ['-d', device]);
    }
  });

  it.skipIf(noLoop)(`a device smaller than the snapshot: exit 2${noLoop ? ` (skipped: ${noLoop})` : ''}`, async () => {
    const backing = pathFor('small-device.img');
    await writeFile(backing, Buffer.alloc(2 * BLOCK_SIZE));
    const device = runTool('losetup', ['-f', '--show', backing]);
    try {
      const failed = await snapline(['restore', snapA, device]);
      expectExit(failed, 2);
      expect(failed.stderr).toContain(`${device} holds ${2 * BLOCK_SIZE} bytes, less than the ${SIZE} bytes of the snapshot`);
    } finally {
      runTool('losetup', ['-d', device]);
    }
  });
});

// ---- verify ------------------------------------------------------------------------------

describe.concurrent('snapline verify', () => {
  let changed: string;

  beforeAll(async () => {
    changed = pathFor('verify-changed.img');
    await copyFile(imageB, changed);
    const file = await open(changed, 'r+');
    await file.write(Buffer.from([0x42]), 0, 1, 9 * BLOCK_SIZE + 5);
    await file.close();
  });

  for (const from of ['index', 'snapshot'] as const) {
    it(`with ${from === 'index' ? 'the index knowing the snapshot' : 'a fresh empty index (reads the snapshot)'}: exit 0 when equal, 1 with the differing block`, async () => {
      const index = from === 'index' ? mainIndex : pathFor('fresh-index.db');
      const [equal, different] = await Promise.all([
        snapline(['--json', 'verify', imageB, snapB], { index }),
        snapline(['verify', changed, snapB], { index }),
      ]);
      expectExit(equal, 0);
      expect(jsonOf(equal)).toMatchObject({ equal: true, expectedFrom: from, differingRanges: [] });
      expectExit(different, 1);
      expect(different.stdout).toContain(`${changed} differs from ${snapB}: 1 of 13 blocks`);
      expect(different.stdout).toContain('  block 9\n');
    });
  }
});

describe.concurrent('snapline verify --remote', () => {
  it('reads every block of the snapshot (with or without a source) and says which kind of verify ran', async () => {
    const [alone, withSource, local] = await Promise.all([
      snapline(['--json', 'verify', '--remote', snapB]),
      snapline(['verify', '--remote', imageB, snapB, '--concurrency', '4']),
      snapline(['verify', imageB, snapB]),
    ]);
    expectExit(alone, 0);
    expect(jsonOf(alone)).toMatchObject({ kind: 'remote', source: null, equal: true, blocksRead: 8, indexChecked: true, indexMismatches: 0 });
    expectExit(withSource, 0);
    expect(withSource.stdout).toBe(
      [
        `read ${snapB} in full through GetSnapshotBlock: 8 blocks, each matching its checksum`,
        "  the index's block map of it agrees",
        `${imageB} equals ${snapB} (13 blocks compared with the blocks read)`,
        '',
      ].join('\n'),
    );
    expectExit(local, 0);
    expect(local.stdout).toContain("compared with the index's digests; the snapshot itself was not read (--remote reads and checks it)");
    expect(jsonOf(await snapline(['--json', 'verify', imageB, snapB]))).toMatchObject({ kind: 'index', blocksRead: 0 });
  });

  it('a snapshot id alone without --remote: exit 2', async () => {
    const failed = await snapline(['verify', snapB]);
    expectExit(failed, 2);
    expect(failed.stderr).toContain('verify needs a source and a snapshot id (with --remote, the snapshot id alone reads and checks the snapshot)');
  });
});

// ---- snapshots and prune -----------------------------------------------------------------------

/** A writer that aborts `controller` once the snapshot is started: the backup stays pending. */
function abortingWriter(controller: AbortController) {
  return (inner: SnapshotWriter): SnapshotWriter => ({
    async startSnapshot(input) {
      const started = await inner.startSnapshot(input);
      controller.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test'));
      return started;
    },
    putBlock: (id, index, data, checksum, progress) => inner.putBlock(id, index, data, checksum, progress),
    completeSnapshot: (id, count, checksum) => inner.completeSnapshot(id, count, checksum),
  });
}

describe('snapline snapshots and prune', () => {
  it('snapshots --json shows the lineage with its remote state; prune keeps the newest and what a pending run builds on; --dry-run deletes nothing', async () => {
    const indexPath = pathFor('prune-index.db');
    const image = pathFor('p.img');
    writeBlocks(image, randomBlocks([0, 1, 2]), 16 * BLOCK_SIZE);
    const ids: string[] = [];
    for (const changedBlock of [undefined, 1, 2]) {
      if (changedBlock !== undefined) writeBlocks(image, randomBlocks([changedBlock]));
      ids.push((await libraryBackup(emulator, indexPath, image, 'p')).snapshotId!);
    }
    const [s1, s2, s3] = ids as [string, string, string];
    // A backup on top of s1, interrupted: it stays pending and builds on s1.
    writeBlocks(image, randomBlocks([3]));
    const controller = new AbortController();
    await withLocalSession(emulator, indexPath, (session) =>
      expect(
        backup({ ...session, writer: abortingWriter(controller)(session.writer) }, { source: image, volume: 'p', parent: s1, signal: controller.signal }),
      ).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED }),
    );

    const listed = await snapline(['--json', 'snapshots', '--volume', 'p'], { index: indexPath });
    expectExit(listed, 0);
    const rows = jsonOf<Array<Record<string, unknown>>>(listed);
    expect(rows.map((r) => [r.snapshotId, r.parentSnapshotId, r.indexState, r.remoteState])).toEqual([
      [s1, null, 'completed', 'completed'],
      [s2, s1, 'completed', 'completed'],
      [s3, s2, 'completed', 'completed'],
      [expect.stringMatching(/^snap-/), s1, 'pending', 'pending'],
    ]);
    expect(rows[2]).toMatchObject({ volume: 'p', sourceBytes: 16 * BLOCK_SIZE, changedBlocks: 1 });

    const dry = await snapline(['--json', 'prune', '--older-than-days', '0', '--keep-last', '1', '--dry-run'], { index: indexPath });
    expectExit(dry, 0);
    expect(jsonOf(dry)).toMatchObject({ dryRun: true, deleted: [{ volume: 'p', snapshotId: s2 }] });
    const session2 = await openLocalSession(emulator, pathFor('look-index.db'));
    try {
      const remoteStates = async () => new Map((await session2.catalog.describeSnapshots(ids)).map((s) => [s.snapshotId, s.state]));
      expect([...(await remoteStates()).keys()].sort()).toEqual([...ids].sort());

      const pruned = await snapline(['--json', 'prune', '--older-than-days', '0', '--keep-last', '1'], { index: indexPath });
      expectExit(pruned, 0);
      expect(jsonOf(pruned)).toMatchObject({ dryRun: false, deleted: [{ volume: 'p', snapshotId: s2 }], busyVolumes: [] });
      const after = await remoteStates();
      expect(after.get(s1)).toBe('completed');
      expect(after.has(s2)).toBe(false);
      expect(after.get(s3)).toBe('completed');
    } finally {
      await session2.close();
    }
  });
});

// ---- index rebuild and check -------------------------------------------------------------------

describe('snapline index', () => {
  it('rebuild into a fresh index: verify from it, then an incremental backup uploads only the change; check passes, and fails (exit 4) on a damaged file', async () => {
    const indexPath = pathFor('rebuilt-index.db');
    const image = pathFor('rebuild-source.img');
    await copyFile(imageB, image);

    const rebuilt = await snapline(['--json', 'index', 'rebuild', snapB, '--source', image], { index: indexPath });
    expectExit(rebuilt, 0);
    expect(jsonOf(rebuilt)).toMatchObject({ snapshotId: snapB, volume: 'r', blocks: 8, sourceBytes: SIZE });

    const verified = await snapline(['--json', 'verify', image, snapB], { index: indexPath });
    expectExit(verified, 0);
    expect(jsonOf(verified)).toMatchObject({ equal: true, expectedFrom: 'index' });

    writeBlocks(image, randomBlocks([4]));
    const next = await snapline(['--json', 'backup', image, '--volume', 'r'], { index: indexPath });
    expectExit(next, 0);
    expect(jsonOf(next)).toMatchObject({ backups: [{ parentSnapshotId: snapB, blocksChanged: 1, blocksUploaded: 1 }] });

    const good = await snapline(['--json', 'index', 'check'], { index: indexPath });
    expectExit(good, 0);
    expect(jsonOf(good)).toMatchObject({ path: indexPath, ok: true, problems: [] });

    // Garbage over the middle half of the file.
    const size = (await stat(indexPath)).size;
    const file = await open(indexPath, 'r+');
    await file.write(Buffer.alloc(Math.floor(size / 2), 0x5a), 0, Math.floor(size / 2), Math.floor(size / 4));
    await file.close();
    const bad = await snapline(['index', 'check'], { index: indexPath });
    expectExit(bad, 4);
    expect(bad.stderr).toContain(indexPath);
  });
});

// Last, so that the restore started in beforeAll has had all the other tests' time to run out of attempts.
describe('snapline restore against an endpoint that corrupts every block', () => {
  it('a block corrupted on every read: exit 4, naming the block', async () => {
    const failed = await corruptRestore;
    expectExit(failed, 4);
    expect(failed.stderr).toContain(`snapline: error: block 0 of ${corruptSnapshot} does not match its checksum`);
    expect(corrupting.stats().faults.corrupted).toBeGreaterThan(1);
  });
});
