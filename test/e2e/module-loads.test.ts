import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { killStrays, runCli } from '../support/cli.js';
import { writeImage } from '../support/images.js';

/**
 * Which AWS SDK packages a command loads: the EC2 package costs about half a
 * second of CPU to load, so the commands that only need EC2's snapshot
 * bookkeeping (a backup, verify and diff of an unchanged image) must not
 * load it. The built CLI runs with a preloaded script that writes, at exit,
 * the @aws-sdk packages in the CommonJS module cache (the SDK is CommonJS).
 */

afterAll(killStrays);

const PRELOAD = `process.on('exit', () => {
  const packages = new Set();
  for (const file of Object.keys(require.cache)) {
    const match = /node_modules\\/(@aws-sdk\\/[^/]+)\\//.exec(file);
    if (match) packages.add(match[1]);
  }
  require('node:fs').writeFileSync(process.env.SNAPLINE_TEST_LOADED, JSON.stringify([...packages].sort()));
});
`;

describe('SDK packages a run loads (the built CLI as a child process)', () => {
  let work: string;
  let emulator: RunningEmulator;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'snapline-loads-'));
    writeFileSync(join(work, 'preload.cjs'), PRELOAD);
    emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => {} });
    writeImage(join(work, 'disk.img'), { label: 'loads', blocks: 12, zeroBlocks: [3] });
  });

  afterAll(async () => {
    await emulator.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Runs the CLI and answers the @aws-sdk packages it had loaded when it exited. */
  async function loadedBy(...args: string[]): Promise<{ stdout: string; packages: string[] }> {
    const loaded = join(work, 'loaded.json');
    rmSync(loaded, { force: true });
    const run = await runCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', join(work, 'index.db'), '--json', ...args], {
      dataDir: join(work, 'data'),
      env: { NODE_OPTIONS: `--require ${join(work, 'preload.cjs')}`, SNAPLINE_TEST_LOADED: loaded },
    });
    expect(run.code, `exit code; stderr:\n${run.stderr}`).toBe(0);
    return { stdout: run.stdout, packages: JSON.parse(readFileSync(loaded, 'utf8')) as string[] };
  }

  it('a backup of an unchanged image, its verify and a diff of the two snapshots do not load @aws-sdk/client-ec2', async () => {
    const image = join(work, 'disk.img');
    const first = await loadedBy('backup', image, '--volume', 'loads');
    expect(first.packages).not.toContain('@aws-sdk/client-ec2');
    const parent = (JSON.parse(first.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!.snapshotId;

    const again = await loadedBy('backup', image, '--volume', 'loads');
    const child = (JSON.parse(again.stdout) as { backups: Array<{ snapshotId: string; blocksUploaded: number }> }).backups[0]!;
    expect(child.blocksUploaded).toBe(0);
    // The check sees the SDK packages at all: EBS is loaded.
    expect(again.packages).toContain('@aws-sdk/client-ebs');
    expect(again.packages).not.toContain('@aws-sdk/client-ec2');

    expect((await loadedBy('verify', image, child.snapshotId)).packages).not.toContain('@aws-sdk/client-ec2');
    expect((await loadedBy('diff', parent, child.snapshotId)).packages).not.toContain('@aws-sdk/client-ec2');
  });
});
