/**
 * The archive commands as a user runs them: the built CLI (bin/snapline.js)
 * in a child process against the local endpoint, with a named connection
 * whose archive settings (bucket, path, s3_uri_style, storage_class, vault,
 * delete_older_than_days) come from a config file. Exit codes, messages,
 * --json results and the bytes that come back.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { CreateVaultCommand } from '@aws-sdk/client-glacier';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AwsClients } from '../../src/aws/clients.js';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { runCli } from '../support/cli.js';
import { randomBlocks, writeBlocks } from '../support/images.js';
import { pathsIn } from '../support/local-endpoint.js';
import { expectSameBytes } from '../support/same-bytes.js';

const BUCKET = 'cli-archive';
const VAULT = 'cli-vault';
const FAST = { Expedited: 0, Standard: 10, Bulk: 20 };

let emulator: RunningEmulator;
let work: string;
let config: string;
let pathFor: (name: string) => string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-archive-cli-'));
  pathFor = pathsIn(work);
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), restoreDelayMs: FAST, jobDelayMs: FAST });
  const clients = new AwsClients({ name: 'setup', region: 'us-east-1', endpointUrl: emulator.url, credentials: { accessKeyId: 'k', secretAccessKey: 's' }, forcePathStyle: true });
  try {
    await clients.s3().send(new CreateBucketCommand({ Bucket: BUCKET }));
    await clients.glacier().send(new CreateVaultCommand({ accountId: '-', vaultName: VAULT }));
  } finally {
    clients.destroy();
  }
  config = join(work, 'config.yaml');
  const connection = (name: string, archive: string) => `  ${name}:
    region: us-east-1
    endpoint_url: ${emulator.url}
    access_key_id: cli-test-key
    secret_access_key: cli-test-secret-value
    archive:
${archive}`;
  await writeFile(
    config,
    `connections:
${connection('arch', `      bucket: ${BUCKET}
      path: /backups/
      s3_uri_style: path
      storage_class: GLACIER
      vault: ${VAULT}
      delete_older_than_days: 30
`)}
${connection('vaultonly', `      vault: ${VAULT}
`)}`,
    { mode: 0o600 },
  );
});

afterAll(async () => {
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function snapline(args: string[], connection = 'arch'): Promise<Run> {
  return runCli(['--config', config, '--connection', connection, '--index', join(work, 'index.db'), '--no-progress', ...args], { dataDir: join(work, 'data'), cwd: work });
}

/** Runs a command that must succeed with --json and returns its result. */
async function json<T>(args: string[], connection?: string): Promise<T> {
  const run = await snapline([...args, '--json'], connection);
  expect(run.code, `snapline ${args.join(' ')}: ${run.stderr}`).toBe(0);
  return JSON.parse(run.stdout) as T;
}

/** A new image of `sizeBytes` with random data in `blocks`, holes elsewhere. */
function imageWith(blocks: number[], sizeBytes: number): string {
  const path = pathFor('image.img');
  writeBlocks(path, randomBlocks(blocks), sizeBytes);
  return path;
}

async function backedUp(volume: string, blocks = [0, 1, 5, 9]): Promise<{ image: string; snapshotId: string }> {
  const image = imageWith(blocks, 12 * BLOCK_SIZE + 99);
  const result = await json<{ backups: Array<{ snapshotId: string }> }>(['backup', image, '--volume', volume]);
  return { image, snapshotId: result.backups[0]!.snapshotId };
}

interface Created {
  archiveId: string;
  target: string;
  location: string;
  storageClass: string | null;
  manifestRef: string;
}

describe('archive and rehydrate through the CLI', () => {
  it('S3 with the connection settings: archive, refused before the restore, restore, wait, rehydrate to a snapshot and to a file', async () => {
    const { image, snapshotId } = await backedUp('cli-s3');
    const created = await json<Created>(['archive', 'create', snapshotId, '--segment-blocks', '2']);
    expect(created).toMatchObject({ target: 's3', location: BUCKET, storageClass: 'GLACIER', manifestRef: `backups/cli-s3/${snapshotId}/manifest.json` });

    const early = await snapline(['rehydrate', created.archiveId, '--to-file', pathFor('early.img')]);
    expect(early.code).toBe(3);
    expect(early.stderr).toMatch(/not readable yet/);
    // The hint's commands carry the global options of the run, ready to be copied.
    expect(early.stderr).toContain(`\`snapline --config ${config} --connection arch --index ${join(work, 'index.db')} archive restore ${created.archiveId}\``);

    const asked = await json<{ tier: string; objects: Array<{ requested: boolean }> }>(['archive', 'restore', created.archiveId, '--tier', 'bulk']);
    expect(asked.tier).toBe('Bulk');
    expect(asked.objects.length).toBe(3);
    const status = await json<{ archives: Array<{ restore: string }> }>(['archive', 'status', created.archiveId, '--wait', '--poll-ms', '5']);
    expect(status.archives.map((a) => a.restore)).toEqual(['available']);

    const toSnapshot = await json<{ snapshotId: string; sourceSnapshotId: string }>(['rehydrate', created.archiveId, '--to-snapshot']);
    expect(toSnapshot.sourceSnapshotId).toBe(snapshotId);
    const restored = pathFor('restored.img');
    await json(['restore', toSnapshot.snapshotId, restored]);
    await expectSameBytes(restored, image);
    const direct = pathFor('direct.img');
    const toFile = await snapline(['rehydrate', snapshotId, '--to-file', direct]);
    expect(toFile.code).toBe(0);
    expect(toFile.stdout).toMatch(/rehydrated/);
    await expectSameBytes(direct, image);

    const inventory = await json<{ archives: Array<{ archiveId: string; indexState: string }> }>(['archive', 'inventory']);
    expect(inventory.archives).toContainEqual(expect.objectContaining({ archiveId: created.archiveId, indexState: 'archived' }));
  });

  it('Glacier from a connection that names only a vault, incrementally', async () => {
    const { image, snapshotId } = await backedUp('cli-vault');
    const full = await json<Created>(['archive', 'create', snapshotId], 'vaultonly');
    expect(full).toMatchObject({ target: 'glacier', location: VAULT, storageClass: null });
    const patch = await open(image, 'r+');
    await patch.write(randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, 3 * BLOCK_SIZE);
    await patch.close();
    const second = (await json<{ backups: Array<{ snapshotId: string }> }>(['backup', image, '--volume', 'cli-vault'], 'vaultonly')).backups[0]!;
    const inc = await json<Created & { parentArchiveId: string; blocks: number }>(['archive', 'create', second.snapshotId, '--incremental'], 'vaultonly');
    expect(inc).toMatchObject({ parentArchiveId: full.archiveId, blocks: 1 });
    await json(['archive', 'restore', inc.archiveId, '--tier', 'Expedited'], 'vaultonly');
    await json(['archive', 'status', inc.archiveId, '--wait', '--poll-ms', '5'], 'vaultonly');
    const out = pathFor('vault-back.img');
    await json(['rehydrate', inc.archiveId, '--to-file', out], 'vaultonly');
    await expectSameBytes(out, image);
  });
});

describe('bad input is refused clearly', () => {
  it('with exit codes by cause', async () => {
    const { snapshotId } = await backedUp('cli-bad', [0]);
    const unknown = await snapline(['archive', 'restore', 'ar-0123456789abcdef']);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toMatch(/no archive ar-0123456789abcdef in the index/);

    const badClass = await snapline(['archive', 'create', snapshotId, '--storage-class', 'FROZEN']);
    expect(badClass.code).toBe(2);
    expect(badClass.stderr).toMatch(/--storage-class must be one of/);

    const badTarget = await snapline(['archive', 'create', snapshotId, '--to', 'tape']);
    expect(badTarget.code).toBe(2);

    const wrongVault = await snapline(['archive', 'create', snapshotId, '--to', 'glacier', '--vault', 'no-such-vault']);
    expect(wrongVault.code).toBe(3);
    expect(wrongVault.stderr).toMatch(/vault no-such-vault does not exist/);

    const created = await json<Created>(['archive', 'create', snapshotId, '--storage-class', 'DEEP_ARCHIVE']);
    const again = await snapline(['archive', 'create', snapshotId]);
    expect(again.code).toBe(5);
    const expedited = await snapline(['archive', 'restore', created.archiveId, '--tier', 'Expedited']);
    expect(expedited.code).toBe(2);
    expect(expedited.stderr).toMatch(/no Expedited tier/);
    const neither = await snapline(['rehydrate', created.archiveId]);
    expect(neither.code).toBe(2);
    const notRestored = await snapline(['archive', 'status', created.archiveId, '--wait', '--json']);
    expect(notRestored.code).toBe(3);
    expect(JSON.parse(notRestored.stdout)).toMatchObject({ error: { code: 'BAD_STATE' } });
    const noDays = await snapline(['archive', 'prune'], 'vaultonly');
    expect(noDays.code).toBe(2);
    expect(noDays.stderr).toMatch(/--older-than-days/);
    const dry = await json<{ olderThanDays: number; dryRun: boolean }>(['archive', 'prune', '--dry-run']);
    expect(dry).toMatchObject({ olderThanDays: 30, dryRun: true });
  });
});
