/**
 * `snapline copy`, `backup --copy-to-region` and `prune` with copies, as a
 * user runs them: the built CLI in a child process against one local
 * endpoint that serves two Regions (us-east-1, the connection's, and
 * eu-west-1). Copies take 15 minutes at AWS's pace, here on a clock 20,000
 * times faster. What a copy holds is proved by restoring it through the
 * other Region and by the EBS direct APIs of that Region.
 */
import { ListChangedBlocksCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { clientsFor } from '../emulator/helpers.js';
import { startCli, type CliResult } from '../support/cli.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { expectSameBytes } from '../support/same-bytes.js';

const TIME_SCALE = 20_000;
const SECOND_REGION = 'eu-west-1';
const BLOCK = 524_288;
/** Each test runs the CLI up to a dozen times, a few seconds each on a loaded machine. */
const CLI_STEPS_TIMEOUT_MS = 300_000;

let work: string;
let emulator: RunningEmulator;
let west: ReturnType<typeof clientsFor>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-copy-cli-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), timeScale: TIME_SCALE });
  west = clientsFor(emulator.url, 4, SECOND_REGION);
});
afterAll(async () => {
  for (const client of Object.values(west)) client.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

function snapline(args: string[], options: { endpoint?: RunningEmulator; index?: string } = {}): Promise<CliResult> {
  const endpoint = options.endpoint ?? emulator;
  return startCli(['--connection', 'local', '--endpoint-url', endpoint.url, '--index', options.index ?? join(work, 'index.db'), '--no-progress', ...args], {
    dataDir: join(work, 'data'),
    cwd: work,
  }).done;
}

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

function jsonOf<T = Record<string, unknown>>(run: CliResult): T {
  return JSON.parse(run.stdout) as T;
}

interface CopyJson {
  volume: string;
  sourceSnapshotId: string;
  copySnapshotId: string;
  region: string;
  state: string;
  incrementalOf: string | null;
  alreadyCopied: boolean;
}

async function backupOf(image: string, volume: string, extra: string[] = [], options: { endpoint?: RunningEmulator; index?: string } = {}) {
  const run = await snapline(['--json', 'backup', image, '--volume', volume, ...extra], options);
  return { run, snapshotId: run.code === 0 || run.code === 9 ? jsonOf<{ backups: Array<{ snapshotId: string }> }>(run).backups[0]!.snapshotId : undefined };
}

async function copyOf(snapshotId: string, extra: string[] = []): Promise<CopyJson> {
  const run = await snapline(['--json', 'copy', snapshotId, '--to-region', SECOND_REGION, ...extra]);
  expectExit(run, 0);
  return jsonOf<CopyJson>(run);
}

describe('snapline copy', { timeout: CLI_STEPS_TIMEOUT_MS }, () => {
  it('copies a snapshot to a second Region; a restore of the copy through that Region gives the same bytes; copying again finds it', async () => {
    const image = join(work, 'a.img');
    writeBlocks(image, randomBlocks([0, 3, 7]), 8 * BLOCK);
    const { run, snapshotId } = await backupOf(image, 'a');
    expectExit(run, 0);

    const copy = await copyOf(snapshotId!);
    expect(copy).toMatchObject({ volume: 'a', sourceSnapshotId: snapshotId, region: SECOND_REGION, state: 'completed', incrementalOf: null, alreadyCopied: false });
    const described = (await west.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copy.copySnapshotId] }))).Snapshots![0]!;
    expect(described.State).toBe('completed');
    const tags = Object.fromEntries((described.Tags ?? []).map((t) => [t.Key, t.Value]));
    expect(tags).toMatchObject({ 'snapline:volume': 'a', 'snapline:copy-of': snapshotId, 'snapline:copy-source-region': 'us-east-1' });

    const restored = join(work, 'a-restored.img');
    const restore = await snapline(['--region', SECOND_REGION, 'restore', copy.copySnapshotId, restored]);
    expectExit(restore, 0);
    await expectSameBytes(restored, image);

    const again = await copyOf(snapshotId!);
    expect(again).toMatchObject({ copySnapshotId: copy.copySnapshotId, alreadyCopied: true });

    const listed = jsonOf<Array<{ snapshotId: string; copies: Array<{ copySnapshotId: string; region: string; state: string }> }>>(await snapline(['--json', 'snapshots', '--volume', 'a']));
    expect(listed.find((r) => r.snapshotId === snapshotId)?.copies).toEqual([{ copySnapshotId: copy.copySnapshotId, region: SECOND_REGION, connection: null, state: 'completed' }]);
    const table = await snapline(['snapshots', '--volume', 'a']);
    expect(table.stdout).toContain(`${SECOND_REGION} ${copy.copySnapshotId}`);
  });

  it('the copy of the next snapshot of a lineage is incremental from the previous copy: only the changed blocks differ between the copies', async () => {
    const image = join(work, 'b.img');
    writeBlocks(image, randomBlocks([0, 1, 2, 3]), 4 * BLOCK);
    const first = (await backupOf(image, 'b')).snapshotId!;
    const firstCopy = await copyOf(first);
    writeBlocks(image, randomBlocks([2]));
    const second = (await backupOf(image, 'b')).snapshotId!;
    const secondCopy = await copyOf(second);
    expect(secondCopy.incrementalOf).toBe(firstCopy.copySnapshotId);

    const changed = await west.ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: firstCopy.copySnapshotId, SecondSnapshotId: secondCopy.copySnapshotId }));
    expect(changed.ChangedBlocks?.map((b) => b.BlockIndex)).toEqual([2]);
    const restored = join(work, 'b-restored.img');
    expectExit(await snapline(['--region', SECOND_REGION, 'restore', secondCopy.copySnapshotId, restored]), 0);
    await expectSameBytes(restored, image);
  });

  it('prune deletes the copies of the snapshots it deletes, unless --keep-copies', async () => {
    const image = join(work, 'c.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const ids: string[] = [];
    const copies: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      writeBlocks(image, randomBlocks([0]));
      ids.push((await backupOf(image, 'c')).snapshotId!);
      copies.push((await copyOf(ids[i]!)).copySnapshotId);
    }
    const kept = await snapline(['--json', 'prune', '--older-than-days', '0', '--keep-last', '2', '--volume', 'c', '--keep-copies']);
    expectExit(kept, 0);
    expect(jsonOf(kept)).toMatchObject({ deleted: [{ snapshotId: ids[0] }], deletedCopies: [] });
    expect((await west.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copies[0]!] }))).Snapshots).toHaveLength(1);

    const pruned = await snapline(['--json', 'prune', '--older-than-days', '0', '--keep-last', '1', '--volume', 'c']);
    expectExit(pruned, 0);
    expect(jsonOf(pruned)).toMatchObject({ deleted: [{ snapshotId: ids[1] }], deletedCopies: [{ snapshotId: ids[1], copySnapshotId: copies[1], region: SECOND_REGION }] });
    await expect(west.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copies[1]!] }))).rejects.toMatchObject({ name: 'InvalidSnapshot.NotFound' });
    expect((await west.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copies[2]!] }))).Snapshots).toHaveLength(1);
  });

  it('refuses a bad or the source\'s own Region, an unknown snapshot, and reports a copy that fails', async () => {
    const image = join(work, 'd.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const snapshotId = (await backupOf(image, 'd')).snapshotId!;
    const own = await snapline(['copy', snapshotId, '--to-region', 'us-east-1']);
    expectExit(own, 2);
    expect(own.stderr).toContain("--to-region us-east-1 is the snapshot's own Region");
    const bad = await snapline(['copy', snapshotId, '--to-region', 'Mars']);
    expectExit(bad, 2);
    expect(bad.stderr).toContain('--to-region must be a Region name');
    const unknown = await snapline(['copy', 'snap-0123456789abcdef0', '--to-region', SECOND_REGION]);
    expectExit(unknown, 3);
    expect(unknown.stderr).toContain('the index records no snapshot snap-0123456789abcdef0');

    const foreignKey = 'arn:aws:kms:us-east-1:123456789012:key/11111111-2222-4333-8444-555555555555';
    const failed = await snapline(['copy', snapshotId, '--to-region', SECOND_REGION, '--kms-key-id', foreignKey]);
    expectExit(failed, 3);
    expect(failed.stderr).toMatch(/the copy snap-[0-9a-f]+ of snap-[0-9a-f]+ in eu-west-1 failed: .*KMS key/);
    const listed = jsonOf<Array<{ snapshotId: string; copies: Array<{ state: string }> }>>(await snapline(['--json', 'snapshots', '--volume', 'd']));
    expect(listed[0]!.copies).toMatchObject([{ state: 'error' }]);
  });
});

describe('copy --to-connection', { timeout: CLI_STEPS_TIMEOUT_MS }, () => {
  it('makes the copy through another connection of the config file, in the Region given; snapshots and prune reach it there', async () => {
    const configDir = join(work, 'data', 'config', 'snapline');
    await mkdir(configDir, { recursive: true });
    const config = join(configDir, 'config.yaml');
    await writeFile(config, `connections:\n  dr:\n    region: us-west-2\n    endpoint_url: ${emulator.url}\n    access_key_id: AKIDDRACCOUNT\n    secret_access_key: dr-secret\n`, { mode: 0o600 });
    const image = join(work, 'h.img');
    writeBlocks(image, randomBlocks([0, 1]), 2 * BLOCK);
    const first = (await backupOf(image, 'h')).snapshotId!;
    writeBlocks(image, randomBlocks([1]));
    const second = (await backupOf(image, 'h')).snapshotId!;

    const copy = jsonOf<CopyJson & { connection: string }>(await snapline(['--json', 'copy', first, '--to-connection', 'dr', '--to-region', 'ap-south-1']));
    expect(copy).toMatchObject({ connection: 'dr', region: 'ap-south-1', state: 'completed' });
    const south = clientsFor(emulator.url, 2, 'ap-south-1');
    try {
      expect((await south.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copy.copySnapshotId] }))).Snapshots).toHaveLength(1);
      const table = await snapline(['snapshots', '--volume', 'h']);
      expect(table.stdout).toContain(`dr:ap-south-1 ${copy.copySnapshotId}`);
      const pruned = await snapline(['--json', 'prune', '--older-than-days', '0', '--volume', 'h']);
      expectExit(pruned, 0);
      expect(jsonOf(pruned)).toMatchObject({ deleted: [{ snapshotId: first }], deletedCopies: [{ copySnapshotId: copy.copySnapshotId, region: 'ap-south-1', connection: 'dr' }] });
      await expect(south.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [copy.copySnapshotId] }))).rejects.toMatchObject({ name: 'InvalidSnapshot.NotFound' });
    } finally {
      for (const client of Object.values(south)) client.destroy();
    }
    expect(second).toMatch(/^snap-/);
  });
});

describe('backup --copy-to-region', { timeout: CLI_STEPS_TIMEOUT_MS }, () => {
  it('copies every successful backup and reports the copies beside the backups', async () => {
    const image = join(work, 'e.img');
    writeBlocks(image, randomBlocks([0, 1]), 2 * BLOCK);
    const { run, snapshotId } = await backupOf(image, 'e', ['--copy-to-region', SECOND_REGION]);
    expectExit(run, 0);
    const copies = jsonOf<{ copies: CopyJson[] }>(run).copies;
    expect(copies).toMatchObject([{ volume: 'e', sourceSnapshotId: snapshotId, region: SECOND_REGION, state: 'completed' }]);
    const restored = join(work, 'e-restored.img');
    expectExit(await snapline(['--region', SECOND_REGION, 'restore', copies[0]!.copySnapshotId, restored]), 0);
    await expectSameBytes(restored, image);
  });

  it('a copy that fails (too many copies in progress) leaves the backup committed and exits 9; copy itself exits 3', async () => {
    const refusing = await startEmulator({ dataDir: join(work, 'refusing'), timeScale: TIME_SCALE, limits: { maxConcurrentCopies: 0 } });
    try {
      const image = join(work, 'f.img');
      writeBlocks(image, randomBlocks([0]), BLOCK);
      const index = join(work, 'refusing.db');
      const { run, snapshotId } = await backupOf(image, 'f', ['--copy-to-region', SECOND_REGION], { endpoint: refusing, index });
      expectExit(run, 9);
      expect(jsonOf(run)).toMatchObject({ copies: [{ volume: 'f', code: 'QUOTA_EXCEEDED' }] });
      const listed = jsonOf<Array<{ snapshotId: string; indexState: string; copies: unknown[] }>>(await snapline(['--json', 'snapshots'], { endpoint: refusing, index }));
      expect(listed).toMatchObject([{ snapshotId, indexState: 'completed', copies: [] }]);
      const refused = await snapline(['copy', snapshotId!, '--to-region', SECOND_REGION], { endpoint: refusing, index });
      expectExit(refused, 3);
      expect(refused.stderr).toContain('Too many snapshot copies in progress');
    } finally {
      await refusing.close();
    }
  });

  it('refuses a bad Region before backing anything up', async () => {
    const image = join(work, 'g.img');
    writeBlocks(image, randomBlocks([0]), BLOCK);
    const run = await snapline(['backup', image, '--volume', 'g', '--copy-to-region', 'us-east-1']);
    expectExit(run, 2);
    expect(run.stderr).toContain('--copy-to-region us-east-1 is the snapshot\'s own Region');
    const listed = jsonOf<unknown[]>(await snapline(['--json', 'snapshots', '--volume', 'g']));
    expect(listed).toEqual([]);
  });
});
