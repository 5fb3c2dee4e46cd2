/**
 * `--connection local` and the store it reaches, as a user meets it: the
 * built CLI in child processes finds a running endpoint on the local port
 * (SNAPLINE_LOCAL_PORT, here a free one: never the machine's 4577), or starts
 * its own on the data directory. Every command says which endpoint and data
 * it used; the index remembers the store of each volume and refuses another.
 */
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { clientsFor } from '../emulator/helpers.js';
import { hermeticEnv, runCli, type CliResult } from '../support/cli.js';
import { writeImage } from '../support/images.js';

let work: string;
let image: string;
let indexPath: string;
/** The endpoint found on the local port (as `snapline serve` would be), its data in served/. */
let served: RunningEmulator | undefined;
const servedData = () => join(work, 'served');
/** Where a command's own endpoint keeps its data: SNAPLINE_DATA_DIR/endpoint. */
const dataDir = () => join(work, 'data');
const ownData = () => join(dataDir(), 'endpoint');

/** `snapline --connection local ...`, looking for an endpoint on `port` (none: it never looks). */
function local(args: string[], port?: number): Promise<CliResult> {
  return runCli(['--connection', 'local', '--index', indexPath, '--no-progress', ...args], {
    dataDir: dataDir(),
    cwd: work,
    env: port === undefined ? {} : { SNAPLINE_LOCAL_PORT: String(port) },
  });
}

/** `text` matched literally inside a RegExp. */
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

async function storeIdOf(url: string): Promise<string> {
  const answer = (await (await fetch(`${url}/_snapline/store`)).json()) as { storeId: string };
  return answer.storeId;
}

function indexSnapshots(): string {
  const index = BlockIndex.open(indexPath);
  try {
    return JSON.stringify(index.lineage.listSnapshots());
  } finally {
    index.close();
  }
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-local-store-'));
  image = join(work, 'db1.img');
  writeImage(image, { label: 'local-store/db1', blocks: 4 });
  indexPath = join(work, 'index.db');
  served = await startEmulator({ dataDir: servedData(), log: () => undefined });
});

afterAll(async () => {
  await served?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('GET /_snapline/store', () => {
  it('names the data: the same id after a restart, another id for other data', async () => {
    const dir = join(work, 'route');
    const first = await startEmulator({ dataDir: dir, log: () => undefined });
    const id = await storeIdOf(first.url);
    expect(await (await fetch(`${first.url}/_snapline/store`)).json()).toEqual({ storeId: id, dataDir: dir });
    await first.close();
    const again = await startEmulator({ dataDir: dir, log: () => undefined });
    const other = await startEmulator({ dataDir: join(work, 'route-other'), log: () => undefined });
    try {
      expect(id).toMatch(/^[0-9a-f]{16}$/);
      expect(await storeIdOf(again.url)).toBe(id);
      expect(await storeIdOf(other.url)).not.toBe(id);
    } finally {
      await again.close();
      await other.close();
    }
  });
});

describe('--connection local and the store of each volume', () => {
  let first: string;

  it('a running endpoint on the local port is used, and every command says so: endpoint, data and store id, on stderr and in --json', async () => {
    const endpoint = served!;
    const storeId = await storeIdOf(endpoint.url);
    const run = await local(['--json', 'backup', image, '--volume', 'db1'], endpoint.port);
    expectExit(run, 0);
    expect(run.stderr).toContain(`store: the local endpoint at ${endpoint.url} (a running snapline serve), data ${servedData()}, store id ${storeId}\n`);
    const result = JSON.parse(run.stdout) as { backups: Array<{ snapshotId: string }>; store: unknown };
    expect(result.store).toEqual({
      id: `snapline:${storeId}`,
      label: `the local endpoint store ${storeId} (data ${servedData()})`,
      kind: 'local-endpoint',
      endpoint: endpoint.url,
      via: 'serve',
      dataDir: servedData(),
      storeId,
      region: 'us-east-1',
    });
    first = result.backups[0]!.snapshotId;
  });

  it('with the endpoint stopped, the command starts its own on other data: refused (exit 5) naming both stores, before anything is started', async () => {
    const port = served!.port;
    const servedId = await storeIdOf(served!.url);
    await served!.close();
    served = undefined;
    const before = indexSnapshots();
    const target = join(work, 'restored.img');

    const listed = await local(['--json', 'snapshots'], port);
    expectExit(listed, ExitCodes.CONFLICT);
    expect(listed.stderr).toMatch(new RegExp(`^store: the local endpoint at http://127\\.0\\.0\\.1:\\d+ \\(started in this process\\), data ${literal(ownData())}, store id [0-9a-f]{16}$`, 'm'));
    const { error } = JSON.parse(listed.stdout) as { error: { code: string; message: string; hint: string } };
    expect(error.code).toBe('STORE_MISMATCH');
    expect(error.message).toMatch(
      new RegExp(
        `^the index holds no volume of the local endpoint store [0-9a-f]{16} \\(data ${literal(ownData())}\\), the store this command reached: its volume "db1" lives in the local endpoint store ${servedId} \\(data ${literal(servedData())}\\)$`,
      ),
    );
    expect(error.hint).toMatch(/snapline serve --data-dir/);

    for (const args of [['backup', image, '--volume', 'db1'], ['backup', '--full', image, '--volume', 'db1'], ['restore', first, target]]) {
      const run = await local(args, port);
      expectExit(run, ExitCodes.CONFLICT);
      expect(run.stderr).toContain(`snapline: error: volume "db1" lives in the local endpoint store ${servedId} (data ${servedData()}), not in the local endpoint store `);
    }
    expect(existsSync(target)).toBe(false);
    expect(indexSnapshots()).toBe(before);
    // Nothing was started in the command's own store.
    const own = await startEmulator({ dataDir: ownData(), log: () => undefined });
    const { ec2 } = clientsFor(own.url);
    try {
      expect((await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'] }))).Snapshots).toEqual([]);
    } finally {
      ec2.destroy();
      await own.close();
    }
  });

  it('each store shows its own volumes; with the endpoint back on its data, the lineage goes on', async () => {
    const other = join(work, 'db2.img');
    writeImage(other, { label: 'local-store/db2', blocks: 2 });
    expectExit(await local(['backup', other, '--volume', 'db2']), 0);
    const own = JSON.parse((await local(['--json', 'snapshots'])).stdout) as Array<{ volume: string; remoteState: string }>;
    expect(own.map((row) => [row.volume, row.remoteState])).toEqual([['db2', 'completed']]);

    served = await startEmulator({ dataDir: servedData(), log: () => undefined });
    const listed = JSON.parse((await local(['--json', 'snapshots'], served.port)).stdout) as Array<{ volume: string; snapshotId: string; remoteState: string }>;
    expect(listed.map((row) => [row.volume, row.snapshotId, row.remoteState])).toEqual([['db1', first, 'completed']]);
    const next = await local(['--json', 'backup', image, '--volume', 'db1'], served.port);
    expectExit(next, 0);
    expect(JSON.parse(next.stdout)).toMatchObject({ backups: [{ parentSnapshotId: first }], store: { via: 'serve', dataDir: servedData() } });
  });

  it("the tests' environment never reaches an endpoint on the machine's port 4577: a command starts its own, on the test's data", async () => {
    expect(hermeticEnv(dataDir()).SNAPLINE_LOCAL_PORT).toBe('0');
    const run = await runCli(['--connection', 'local', '--index', join(work, 'empty-index.db'), '--json', 'snapshots'], { dataDir: join(work, 'hermetic'), cwd: work });
    expectExit(run, 0);
    expect(run.stderr).toContain(`(started in this process), data ${join(work, 'hermetic', 'endpoint')}, store id `);
  });

  it('SNAPLINE_LOCAL_PORT that is not a port: exit 2 naming it', async () => {
    const run = await runCli(['--connection', 'local', '--index', indexPath, 'snapshots'], { dataDir: dataDir(), cwd: work, env: { SNAPLINE_LOCAL_PORT: 'http' } });
    expectExit(run, ExitCodes.USAGE);
    expect(run.stderr).toContain('SNAPLINE_LOCAL_PORT must be a port number from 0 to 65535, got "http"');
  });
});
