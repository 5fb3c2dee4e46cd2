import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE, GIB } from '../../src/core/constants.js';
import type { RunJournal, VolumeLineage } from '../../src/core/index-ports.js';
import { VOLUME_TAG } from '../../src/engine/blocks/remote-snapshot.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { clientsFor, get, listAll } from '../emulator/helpers.js';
import { killStrays, runCli, startCli, until, type CliResult } from '../support/cli.js';
import { overwriteBlocks, writeImage } from '../support/images.js';

/**
 * The real CLI (`node bin/snapline.js`, built by ./global-setup.ts) as a child
 * process against the local endpoint over HTTP, started in this process so
 * that its stats and faults can be read and set between and during runs.
 */

const ZERO_BLOCK = Buffer.alloc(BLOCK_SIZE);
/** The keys of the backup result the issue documents, plus resumed, dryRun and blocksRead, which the engine adds (changeTracking only with a tracker or checkpoint). */
const RESULT_KEYS = [
  'snapshotId',
  'parentSnapshotId',
  'volume',
  'volumeSizeGiB',
  'sourceBytes',
  'blocksScanned',
  'blocksRead',
  'blocksChanged',
  'blocksUploaded',
  'blocksZeroSkipped',
  'bytesUploaded',
  'durationMs',
  'resumed',
  'dryRun',
];
/**
 * The engine's upload window at --concurrency 4, from src/session.ts: slabs of
 * 8 blocks, ceil(4 / 8) + 4 of them. A block is journaled once its slab's
 * uploads have settled, so a kill can repeat at most this many uploads.
 */
const WINDOW_AT_CONCURRENCY_4 = (Math.ceil(4 / 8) + 4) * 8;

// ---- the CLI as a child process ----------------------------------------------

afterAll(killStrays);

/** The --json result of a backup of one source that must have succeeded. */
function resultOf(run: CliResult): Record<string, unknown> {
  expect(run.code, `exit code; stderr:\n${run.stderr}`).toBe(0);
  const { backups } = JSON.parse(run.stdout) as { backups: Array<Record<string, unknown>> };
  expect(backups).toHaveLength(1);
  return backups[0]!;
}

// ---- images and what the endpoint holds -------------------------------------

function paddedBlock(bytes: Buffer, i: number): Buffer {
  const slice = bytes.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
  return slice.length === BLOCK_SIZE ? slice : Buffer.concat([slice, Buffer.alloc(BLOCK_SIZE - slice.length)]);
}

/** What the index says, read after the CLI has exited (closed again at once). */
function indexState(path: string): { json: string; index: { runs: Pick<RunJournal, 'pendingRun'>; lineage: Pick<VolumeLineage, 'headSnapshot'> } } {
  const index = BlockIndex.open(path);
  try {
    const volumes = index.lineage.listVolumes();
    const snapshots = index.lineage.listSnapshots();
    const pending = new Map(volumes.map((v) => [v.name, index.runs.pendingRun(v.name)]));
    const heads = new Map(volumes.map((v) => [v.name, index.lineage.headSnapshot(v.name)]));
    return {
      json: JSON.stringify({ volumes, snapshots }),
      index: { runs: { pendingRun: (name: string) => pending.get(name) }, lineage: { headSnapshot: (name: string) => heads.get(name) } },
    };
  } finally {
    index.close();
  }
}

/** A free loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

// The two groups run side by side; the tests of the first share one endpoint (faults, stats) and run in order.
describe.concurrent('snapline backup (the built CLI as a child process)', () => {
  describe('against the local endpoint over HTTP', () => {
    let work: string;
    let emulator: RunningEmulator;
    let sdk: ReturnType<typeof clientsFor>;
    let indexPath: string;
    const data = () => join(work, 'data');
    const cli = (...args: string[]) => ['--connection', 'local', '--endpoint-url', emulator.url, '--index', indexPath, '--json', ...args];
    const ops = () => emulator.stats().operations;
    const requests = (op: string) => ops()[op]?.requests ?? 0;
    /** PutSnapshotBlock requests the endpoint accepted (a request cut off by a killed client may count, which only raises the figure). */
    const storedPuts = () => (ops().PutSnapshotBlock?.requests ?? 0) - (ops().PutSnapshotBlock?.errors ?? 0);

    /** Reads the snapshot back through the SDK (ListSnapshotBlocks, GetSnapshotBlock) and compares it with the image. */
    async function expectRemoteEquals(snapshotId: string, bytes: Buffer): Promise<void> {
      const blockCount = Math.ceil(bytes.length / BLOCK_SIZE);
      const listed = new Map((await listAll(sdk.ebs, snapshotId)).map((b) => [b.BlockIndex!, b.BlockToken!]));
      expect([...listed.keys()].filter((i) => i >= blockCount), 'blocks past the image').toEqual([]);
      for (let i = 0; i < blockCount; i += 1) {
        const token = listed.get(i);
        const expected = paddedBlock(bytes, i);
        if (token === undefined) {
          expect(expected.equals(ZERO_BLOCK), `block ${i} is not in the snapshot but is not zero in the image`).toBe(true);
        } else {
          const { data } = await get(sdk.ebs, snapshotId, i, token);
          expect(data.equals(expected), `block ${i} differs from the image`).toBe(true);
        }
      }
    }

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), 'snapline-cli-e2e-'));
      mkdirSync(data());
      indexPath = join(work, 'index.db');
      emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
      sdk = clientsFor(emulator.url);
    });
    afterAll(async () => {
      sdk?.ebs.destroy();
      sdk?.ec2.destroy();
      await emulator?.close();
      rmSync(work, { recursive: true, force: true });
    });

    it.sequential('backup --json prints only the result; the endpoint holds the image; 1 % changed uploads exactly those blocks', async () => {
      const image = join(work, 'full.img');
      const zeros = [0, 1, 2, 50, 51, 127];
      const bytes = writeImage(image, { label: image, blocks: 128, zeroBlocks: zeros });
      emulator.resetStats();

      const run = await runCli(cli('backup', image), { dataDir: data() });
      const first = resultOf(run);

      // The library's result, and beside the results the store the command reached (the endpoint named by --endpoint-url).
      expect(Object.keys(first).sort()).toEqual([...RESULT_KEYS].sort());
      const { store } = JSON.parse(run.stdout) as { store: unknown };
      expect(store).toMatchObject({ kind: 'local-endpoint', endpoint: emulator.url, via: 'endpoint-url', dataDir: join(work, 'endpoint') });
      expect(first).toMatchObject({
        parentSnapshotId: null,
        volume: 'full.img',
        volumeSizeGiB: 1,
        sourceBytes: 128 * BLOCK_SIZE,
        blocksScanned: 128,
        blocksChanged: 122,
        blocksUploaded: 122,
        blocksZeroSkipped: 6,
        bytesUploaded: 122 * BLOCK_SIZE,
      });
      expect(first.snapshotId).toMatch(/^snap-/);
      expect(typeof first.durationMs).toBe('number');
      expect(run.stderr).not.toMatch(/error/i);
      expect(requests('PutSnapshotBlock')).toBe(122);
      await expectRemoteEquals(first.snapshotId as string, bytes);

      const changed = [9, 77]; // ceil(1 % of 128)
      overwriteBlocks(image, bytes, changed, `${image}/changed`);
      emulator.resetStats();
      const second = resultOf(await runCli(cli('backup', image), { dataDir: data() }));

      expect(second).toMatchObject({ parentSnapshotId: first.snapshotId, blocksScanned: 128, blocksChanged: 2, blocksUploaded: 2 });
      expect(requests('PutSnapshotBlock')).toBe(2);
      expect(requests('StartSnapshot')).toBe(1);
      await expectRemoteEquals(second.snapshotId as string, bytes);
    });

    it.sequential('several sources in one run: one result each, in the order given, each snapshot equal to its image', async () => {
      const first = join(work, 'multi-a.img');
      const second = join(work, 'multi-b.img');
      const firstBytes = writeImage(first, { label: first, blocks: 24, zeroBlocks: [3] });
      const secondBytes = writeImage(second, { label: second, blocks: 40, zeroBlocks: [0, 39] });
      emulator.resetStats();

      const run = await runCli(cli('backup', first, second), { dataDir: data() });
      expect(run.code, run.stderr).toBe(0);
      const results = (JSON.parse(run.stdout) as { backups: Array<Record<string, unknown>> }).backups;

      expect(results.map((r) => [r.volume, r.blocksUploaded])).toEqual([
        ['multi-a.img', 23],
        ['multi-b.img', 38],
      ]);
      expect(requests('PutSnapshotBlock')).toBe(23 + 38);
      await expectRemoteEquals(results[0]!.snapshotId as string, firstBytes);
      await expectRemoteEquals(results[1]!.snapshotId as string, secondBytes);
    });

    it.sequential('SIGKILL while uploading: the rerun resumes the same snapshot, repeats at most the upload window, and the result equals the image', async () => {
      const image = join(work, 'kill.img');
      const bytes = writeImage(image, { label: image, blocks: 64 });
      const args = cli('backup', '--concurrency', '4', image);
      emulator.resetStats();
      emulator.setFaults({ latencyMs: 40 });
      const first = startCli(args, { dataDir: data() });
      // Past the window and short of the end.
      await until(() => requests('PutSnapshotBlock') >= WINDOW_AT_CONCURRENCY_4 + 4, 'uploads under way', first.child);
      first.child.kill('SIGKILL');
      expect((await first.done).signal).toBe('SIGKILL');
      emulator.setFaults({});
      const pending = indexState(indexPath).index.runs.pendingRun('kill.img');
      expect(pending?.state).toBe('pending');

      const rerun = resultOf(await runCli(args, { dataDir: data() }));

      expect(rerun).toMatchObject({ snapshotId: pending!.snapshotId, resumed: true });
      const repeated = storedPuts() - 64;
      expect(repeated).toBeGreaterThanOrEqual(0);
      expect(repeated).toBeLessThanOrEqual(WINDOW_AT_CONCURRENCY_4);
      await expectRemoteEquals(pending!.snapshotId, bytes);
    });

    it.sequential('SIGKILL right after StartSnapshot: the rerun gets the same snapshot back (no orphan) and completes it', async () => {
      const image = join(work, 'early.img');
      const bytes = writeImage(image, { label: image, blocks: 8 });
      const args = cli('backup', image);
      emulator.resetStats();
      emulator.setFaults({ latencyMs: 300 });
      const first = startCli(args, { dataDir: data() });
      await until(() => requests('StartSnapshot') >= 1, 'StartSnapshot', first.child);
      first.child.kill('SIGKILL');
      await first.done;
      emulator.setFaults({});

      const rerun = resultOf(await runCli(args, { dataDir: data() }));

      const tagged = await sdk.ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: `tag:${VOLUME_TAG}`, Values: ['early.img'] }] }));
      expect(tagged.Snapshots?.map((s) => s.SnapshotId)).toEqual([rerun.snapshotId]);
      await expectRemoteEquals(rerun.snapshotId as string, bytes);
    });

    it.sequential('SIGKILL between CompleteSnapshot and the index commit: the rerun only watches and commits, uploading nothing', async () => {
      const image = join(work, 'wait.img');
      const bytes = writeImage(image, { label: image, blocks: 16 });
      const args = cli('backup', image);
      emulator.resetStats();
      emulator.setFaults({ completionDelayMs: 1500 });
      const first = startCli(args, { dataDir: data() });
      await until(() => requests('CompleteSnapshot') >= 1, 'CompleteSnapshot', first.child);
      first.child.kill('SIGKILL');
      await first.done;
      emulator.setFaults({});
      const pending = indexState(indexPath).index.runs.pendingRun('wait.img');
      expect(pending?.state).toBe('completing');
      emulator.resetStats();

      const rerun = resultOf(await runCli(args, { dataDir: data() }));

      expect(rerun).toMatchObject({ snapshotId: pending!.snapshotId, resumed: true, blocksUploaded: 0 });
      expect(requests('PutSnapshotBlock')).toBe(0);
      expect(indexState(indexPath).index.lineage.headSnapshot('wait.img')?.snapshotId).toBe(pending!.snapshotId);
      await expectRemoteEquals(pending!.snapshotId, bytes);
    });

    it.sequential('a run resumed inside the not-found window after StartSnapshot retries the not-found answers and completes', async () => {
      const image = join(work, 'young.img');
      const bytes = writeImage(image, { label: image, blocks: 16 });
      const args = cli('backup', image);
      emulator.resetStats();
      emulator.setFaults({ notFoundAfterStart: 3 });
      const first = startCli(args, { dataDir: data() });
      await until(() => emulator.stats().faults.notFound >= 1, 'a not-found answer', first.child);
      first.child.kill('SIGKILL');
      await first.done;
      const pending = indexState(indexPath).index.runs.pendingRun('young.img');
      expect(pending?.state).toBe('pending');

      const rerun = await runCli(args, { dataDir: data() });

      emulator.setFaults({});
      expect(resultOf(rerun)).toMatchObject({ snapshotId: pending!.snapshotId, resumed: true });
      await expectRemoteEquals(pending!.snapshotId, bytes);
    });

    it.sequential('SIGINT stops cleanly (exit 130, says how to resume); the rerun resumes, repeating only uploads cut in flight', async () => {
      const image = join(work, 'int.img');
      const bytes = writeImage(image, { label: image, blocks: 64 });
      const args = cli('backup', '--concurrency', '4', image);
      emulator.resetStats();
      emulator.setFaults({ latencyMs: 40 });
      const first = startCli(args, { dataDir: data() });
      await until(() => requests('PutSnapshotBlock') >= 10, 'uploads under way', first.child);
      first.child.kill('SIGINT');
      const stopped = await first.done;
      emulator.setFaults({});

      expect(stopped.code).toBe(ExitCodes.INTERRUPTED);
      const pending = indexState(indexPath).index.runs.pendingRun('int.img');
      expect(stopped.stderr).toContain(`snapshot ${pending!.snapshotId} stays pending`);
      expect(stopped.stderr).toMatch(/run the same command again to resume/);
      expect(JSON.parse(stopped.stdout)).toMatchObject({ error: { code: 'INTERRUPTED', details: { snapshotId: pending!.snapshotId } } });

      const rerun = resultOf(await runCli(args, { dataDir: data() }));

      expect(rerun).toMatchObject({ snapshotId: pending!.snapshotId, resumed: true });
      // SIGINT cuts the 4 uploads in flight: the endpoint may have stored them, the journal cannot know, so the rerun sends them again.
      expect(storedPuts()).toBeGreaterThanOrEqual(64);
      expect(storedPuts()).toBeLessThanOrEqual(64 + 4);
      await expectRemoteEquals(pending!.snapshotId, bytes);
    });

    it.sequential('throttling, 5xx, connection resets and the not-found window after StartSnapshot: the run completes with the right content', async () => {
      const image = join(work, 'faulty.img');
      const bytes = writeImage(image, { label: image, blocks: 48, zeroBlocks: [5] });
      emulator.resetStats();
      // Seed 7 draws a reset, a throttle and a 500 within the first 49 EBS requests, fewer than this run makes.
      emulator.setFaults({ seed: 7, throttleRate: 0.1, errorRate: 0.05, resetRate: 0.05, notFoundAfterStart: 1 });

      const run = await runCli(cli('backup', image), { dataDir: data() });

      const { faults } = emulator.stats();
      emulator.setFaults({});
      const result = resultOf(run);
      expect(faults.throttled).toBeGreaterThan(0);
      expect(faults.internalErrors).toBeGreaterThan(0);
      expect(faults.resets).toBeGreaterThan(0);
      expect(faults.notFound).toBeGreaterThan(0);
      expect(result).toMatchObject({ blocksUploaded: 47 });
      // The endpoint completed it: ChangedBlocksCount and the LINEAR aggregate matched what it stored.
      await expectRemoteEquals(result.snapshotId as string, bytes);
    });

    it.sequential('a second backup of a volume while one runs: exit 5 naming the holder; the first completes', async () => {
      const image = join(work, 'busy.img');
      const bytes = writeImage(image, { label: image, blocks: 16 });
      emulator.resetStats();
      emulator.setFaults({ latencyMs: 100 });
      const first = startCli(cli('backup', '--concurrency', '1', image), { dataDir: data() });
      await until(() => requests('PutSnapshotBlock') >= 1, 'uploads under way', first.child);
      // Stopped, the first run holds the volume (a live process) for as long as the second needs.
      first.child.kill('SIGSTOP');
      emulator.setFaults({});
      let second: CliResult;
      try {
        second = await runCli(cli('backup', image), { dataDir: data() });
      } finally {
        first.child.kill('SIGCONT');
      }

      expect(second.code).toBe(ExitCodes.CONFLICT);
      expect(second.stderr).toMatch(/volume:busy\.img is in use by pid \d+/);
      const done = resultOf(await first.done);
      expect(requests('StartSnapshot')).toBe(1);
      const index = BlockIndex.open(indexPath);
      try {
        expect(index.lineage.listSnapshots('busy.img').map((s) => [s.snapshotId, s.state])).toEqual([[done.snapshotId, 'completed']]);
      } finally {
        index.close();
      }
      await expectRemoteEquals(done.snapshotId as string, bytes);
    });
  });

  describe('refuses bad input (clear message, documented exit code, index unchanged)', () => {
    let work: string;
    let emulator: RunningEmulator;
    let indexPath: string;
    let grown: string;
    let before: string;
    const data = () => join(work, 'data');
    const cli = (...args: string[]) => ['--connection', 'local', '--endpoint-url', emulator.url, '--index', indexPath, ...args];

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), 'snapline-cli-refusals-'));
      mkdirSync(data());
      indexPath = join(work, 'index.db');
      emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
      grown = join(work, 'grown.img');
      writeImage(grown, { label: grown, blocks: 2 });
      resultOf(await runCli(cli('--json', 'backup', grown), { dataDir: data() }));
      before = indexState(indexPath).json;
    });
    afterAll(async () => {
      await emulator?.close();
      rmSync(work, { recursive: true, force: true });
    });

    async function expectRefused(args: string[], exitCode: number, message: RegExp): Promise<string> {
      const run = await runCli(args, { dataDir: data() });
      expect(run.code, `stderr:\n${run.stderr}`).toBe(exitCode);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
      expect(indexState(indexPath).json).toBe(before);
      return run.stderr;
    }

    it('a missing source: exit 2', async () => {
      await expectRefused(cli('backup', join(work, 'nope.img')), ExitCodes.USAGE, /source .*nope\.img does not exist/);
    });

    it('a directory: exit 2', async () => {
      await expectRefused(cli('backup', work), ExitCodes.USAGE, /is a directory; snapline backs up a disk image file or a block device/);
    });

    it('a zero-length file: exit 2', async () => {
      const empty = join(work, 'empty.img');
      writeFileSync(empty, '');
      await expectRefused(cli('backup', empty), ExitCodes.USAGE, /empty\.img is empty \(0 bytes\)/);
    });

    it('a FIFO: exit 2, without waiting for a writer', async () => {
      const fifo = join(work, 'pipe.img');
      execFileSync('mkfifo', [fifo]);
      await expectRefused(cli('backup', fifo), ExitCodes.USAGE, /pipe\.img is a FIFO \(named pipe\)/);
    });

    it("a source grown past its lineage's volume size: exit 2 with a hint", async () => {
      truncateSync(grown, GIB + BLOCK_SIZE);
      const stderr = await expectRefused(cli('backup', grown), ExitCodes.USAGE, /grown to 2 GiB, past the 1 GiB of its lineage/);
      expect(stderr).toMatch(/hint: .*--full/);
    });

    it('an unknown --parent: exit 3', async () => {
      const image = join(work, 'orphan.img');
      writeImage(image, { label: image, blocks: 1 });
      await expectRefused(cli('backup', '--parent', 'snap-0123456789abcdef0', image), ExitCodes.REMOTE, /parent snapshot snap-0123456789abcdef0 does not exist/);
    });

    it('the endpoint down (a closed port): exit 6', async () => {
      const image = join(work, 'down.img');
      writeImage(image, { label: image, blocks: 1 });
      const url = `http://127.0.0.1:${await closedPort()}`;
      await expectRefused(
        ['--connection', 'local', '--endpoint-url', url, '--index', indexPath, 'backup', image],
        ExitCodes.UNREACHABLE,
        /cannot reach the endpoint \(ECONNREFUSED\)/,
      );
    });

    it('an unreadable source: exit 2 saying permission is denied', async () => {
      // Root reads anything: as root, the CLI runs as nobody on a file only root may read.
      const asRoot = process.getuid?.() === 0;
      const dir = join(work, 'unreadable');
      mkdirSync(dir);
      chmodSync(dir, 0o777);
      chmodSync(work, 0o755);
      const source = join(dir, 'secret.img');
      writeImage(source, { label: source, blocks: 1 });
      chmodSync(source, asRoot ? 0o600 : 0o000);
      const ownIndex = join(dir, 'index.db');

      const run = await runCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', ownIndex, 'backup', source], { dataDir: dir, uid: asRoot ? 65534 : undefined });

      expect(run.code, `stderr:\n${run.stderr}`).toBe(ExitCodes.USAGE);
      expect(run.stderr).toMatch(/permission denied reading source .*secret\.img/);
      expect(indexState(ownIndex).json).toBe(JSON.stringify({ volumes: [], snapshots: [] }));
    });

    it('credentials the endpoint does not accept: exit 3 saying so', async () => {
      const locked = await startEmulator({
        dataDir: join(work, 'endpoint-locked'),
        auth: [{ accessKeyId: 'someone-else', secretAccessKey: 'not-snapline-local' }],
        log: () => undefined,
      });
      try {
        const image = join(work, 'locked.img');
        writeImage(image, { label: image, blocks: 1 });
        const stderr = await expectRefused(
          ['--connection', 'local', '--endpoint-url', locked.url, '--index', indexPath, 'backup', image],
          ExitCodes.REMOTE,
          /credentials refused/,
        );
        expect(stderr).toMatch(/hint: /);
      } finally {
        await locked.close();
      }
    });

    it('--concurrency 0: exit 2 naming the flag', async () => {
      await expectRefused(cli('backup', '--concurrency', '0', grown), ExitCodes.USAGE, /--concurrency must be a whole number from 1 to 1024, got "0"/);
    });

    it('--tag without =: exit 2 naming the flag', async () => {
      await expectRefused(cli('backup', '--tag', 'team', grown), ExitCodes.USAGE, /--tag must look like key=value, got "team"/);
    });

    it('quickstart --dir TMP, twice on one endpoint (one data directory, a new index each time): exit 0 both times', async () => {
      const dir = join(work, 'quickstart');
      for (const round of [1, 2]) {
        const run = await runCli(['quickstart', '--dir', dir], { dataDir: join(work, 'quickstart-data') });
        expect(run.code, `run ${round}, stderr:\n${run.stderr}`).toBe(0);
        expect(run.stdout).toMatch(/quickstart finished: both restores equal the second snapshot/);
      }
    }, 240_000);
  });
});
