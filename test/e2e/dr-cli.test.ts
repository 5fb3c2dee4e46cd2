/**
 * Disaster recovery as a user runs it: `restore --to-volume` and `drill`
 * from the built CLI against the local endpoint (time scale 10000), with
 * their exit codes, --json output and what `snapshots` shows afterwards.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { startCli, type CliResult } from '../support/cli.js';
import { randomBlocks, writeBlocks } from '../support/images.js';

const ZONE = 'us-east-1a';
let work: string;
let emulator: RunningEmulator;
let instance: string;

function snapline(args: string[]): Promise<CliResult> {
  return startCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', join(work, 'index.db'), '--no-progress', ...args], {
    dataDir: join(work, 'data'),
    cwd: work,
  }).done;
}

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-dr-cli-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), timeScale: 10_000 });
  [instance] = emulator.createInstances(ZONE, 1) as [string];
});

afterAll(async () => {
  await emulator?.close();
  if (work) await rm(work, { recursive: true, force: true });
});

async function backedUp(volume: string): Promise<string> {
  const image = join(work, `${volume}.img`);
  writeBlocks(image, randomBlocks([0, 2]), 4 * BLOCK_SIZE);
  const run = await snapline(['--json', 'backup', image, '--volume', volume]);
  expectExit(run, 0);
  return (JSON.parse(run.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!.snapshotId;
}

describe('restore --to-volume', () => {
  it('makes the volume, attaches it, prints its id, state and the time of each step (and --json)', async () => {
    const snapshotId = await backedUp('app');
    const run = await snapline(['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--attach', instance, '--device', '/dev/sdf', '--fast-restore', '--tag', 'team=ops']);
    expectExit(run, 0);
    expect(run.stdout).toMatch(new RegExp(`restored ${snapshotId} to volume vol-[0-9a-f]+: in-use, 1 GiB gp3 in ${ZONE}`));
    expect(run.stdout).toMatch(/enabled fast snapshot restore\s+\S+\s+enabled/);
    expect(run.stdout).toMatch(/created the volume\s+\S+\s+vol-[0-9a-f]+ available/);
    expect(run.stdout).toMatch(new RegExp(`attached\\s+\\S+\\s+attached to ${instance} as /dev/sdf`));
    expect(run.stdout).toMatch(/disabled fast snapshot restore/);
    // Like every restore, it goes into the run history, and --metrics-file writes it.
    const metricsFile = join(work, 'restore.prom');
    const bad = await snapline(['restore', 'snap-0000000000000000f', '--to-volume', '--availability-zone', ZONE, '--metrics-file', metricsFile]);
    expectExit(bad, ExitCodes.REMOTE);
    const index = BlockIndex.open(join(work, 'index.db'));
    try {
      expect(index.history.listRuns({ operation: 'restore' }).map((r) => [r.volume, r.snapshotId, r.result, r.errorCode])).toEqual([
        ['app', snapshotId, 'success', null],
        [null, null, 'failure', 'NOT_FOUND'],
      ]);
    } finally {
      index.close();
    }
    expect(readFileSync(metricsFile, 'utf8')).toContain('operation="restore"');

    const json = await snapline(['--json', 'restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--volume-type', 'gp2', '--size', '3']);
    expectExit(json, 0);
    const result = JSON.parse(json.stdout) as { volumeId: string; state: string; sizeGiB: number; steps: Array<{ step: string; durationMs: number }> };
    expect(result).toMatchObject({ state: 'available', sizeGiB: 3 });
    expect(result.steps.map((s) => s.step)).toEqual(['check', 'create-volume']);

    // gp3 takes up to 80,000 IOPS and 2,000 MiB/s (CreateVolume, Iops and Throughput).
    const fastest = await snapline(['--json', 'restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--size', '200', '--iops', '80000', '--throughput', '2000']);
    expectExit(fastest, 0);
    expect(JSON.parse(fastest.stdout)).toMatchObject({ state: 'available', volumeType: 'gp3', iops: 80_000, throughput: 2000 });
  }, 120_000);

  it('bad input is refused with the flag named, before anything is made', async () => {
    const snapshotId = await backedUp('bad');
    const cases: [string[], RegExp][] = [
      [['restore', snapshotId], /restore needs a target \(image file, device or NBD export\), or --to-volume/],
      [['restore', snapshotId, '--to-volume'], /--availability-zone/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, 'target.img'], /give no target/],
      [['restore', snapshotId, 'target.img', '--availability-zone', ZONE], /--availability-zone goes with --to-volume/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--attach', instance], /--attach needs --device/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--keep-fast-restore'], /--keep-fast-restore goes with --fast-restore/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', 'us-east-1b', '--attach', instance, '--device', '/dev/sdf'], /is in us-east-1a, not us-east-1b/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--volume-type', 'fast'], /--volume-type must be one of/],
      [['drill', 'bad', '--to-volume', '--to-file', 'x.img'], /cannot go together/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--force'], /--force does not go with --to-volume/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--incremental'], /--incremental does not go with --to-volume/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--incremental', '--trust-index'], /--incremental does not go with --to-volume/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--verify'], /--verify does not go with --to-volume/],
      [['restore', snapshotId, '--to-volume', '--availability-zone', ZONE, '--concurrency', '8'], /--concurrency does not go with --to-volume/],
    ];
    for (const [args, message] of cases) {
      const run = await snapline(args);
      expectExit(run, ExitCodes.USAGE);
      expect(run.stderr).toMatch(message);
    }
  }, 180_000);
});

describe('drill', () => {
  it('passes, onto a volume it deletes afterwards, and snapshots shows the last drill', async () => {
    const snapshotId = await backedUp('drilled');
    const passed = await snapline(['drill', 'drilled', '--to-volume', '--availability-zone', ZONE]);
    expectExit(passed, 0);
    expect(passed.stdout).toContain(`drill of drilled on ${snapshotId} (volume): PASSED`);
    expect(passed.stdout).toMatch(/cleaned up\s+\S+\s+removed vol-/);

    const listed = await snapline(['snapshots', '--volume', 'drilled']);
    expectExit(listed, 0);
    expect(listed.stdout).toMatch(new RegExp(`last drill of drilled: passed .* on ${snapshotId} \\(volume, recovery `));
  }, 120_000);

  // The reads are retried with backoff (10 attempts) before the block counts as corrupt: about half a minute.
  it('a block corrupted on the endpoint fails the drill with exit 4, and snapshots shows the failure', async () => {
    const snapshotId = await backedUp('corrupted');
    emulator.setFaults({ corruptRate: 1 });
    try {
      const failed = await snapline(['--json', 'drill', 'corrupted']);
      expectExit(failed, ExitCodes.INTEGRITY);
      expect(JSON.parse(failed.stdout)).toMatchObject({ passed: false, kind: 'read', snapshotId });
    } finally {
      emulator.setFaults({});
    }
    const after = await snapline(['--json', 'snapshots', '--volume', 'corrupted']);
    expect((JSON.parse(after.stdout) as Array<{ lastDrill: { passed: boolean } }>)[0]?.lastDrill.passed).toBe(false);
  }, 180_000);
});
