/**
 * Runs that meet: two backups of one volume started at once, a prune while a
 * backup runs, two restores to one target (also through a symbolic link).
 * Each pair is refused or serialised, never interleaved: the endpoint holds
 * one snapshot per successful backup, targets hold exactly one snapshot, and
 * the index claims nothing else. A run is held still with SIGSTOP while the
 * other one tries, so nothing depends on timing.
 * (Two backups where the second starts later: test/e2e/backup-cli.test.ts.)
 */
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { VOLUME_TAG } from '../../src/engine/blocks/remote-snapshot.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { backup } from '../../src/index.js';
import { clientsFor } from '../emulator/helpers.js';
import { killStrays, runCli, startCli, until, type CliResult, type CliRun } from '../support/cli.js';
import { overwriteBlocks, writeImage } from '../support/images.js';
import { indexProblems } from '../support/truth.js';

let work: string;
let emulator: RunningEmulator;
let sdk: ReturnType<typeof clientsFor>;

const requests = (operation: string) => emulator.stats().operations[operation]?.requests ?? 0;

function args(index: string, rest: string[]): string[] {
  return ['--connection', 'local', '--endpoint-url', emulator.url, '--index', index, '--no-progress', ...rest];
}
const start = (index: string, rest: string[]): CliRun => startCli(args(index, rest), { dataDir: join(work, 'data'), cwd: work });
const run = (index: string, rest: string[]): Promise<CliResult> => runCli(args(index, rest), { dataDir: join(work, 'data'), cwd: work });

/** Starts a command, waits until the endpoint has seen `operation` from it, and stops it there (SIGSTOP). */
async function startAndHold(index: string, rest: string[], operation: string): Promise<CliRun> {
  const before = requests(operation);
  const held = start(index, rest);
  await until(() => requests(operation) > before, `${operation} under way`, held.child);
  held.child.kill('SIGSTOP');
  return held;
}

async function release(held: CliRun): Promise<CliResult> {
  held.child.kill('SIGCONT');
  return held.done;
}

const truth = (indexPath: string, targets: string[] = []) =>
  indexProblems({ BlockIndex, indexPath, ebs: sdk.ebs, ec2: sdk.ec2, settled: true, targets });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-concurrency-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
  sdk = clientsFor(emulator.url);
});

afterAll(async () => {
  killStrays();
  for (const client of Object.values(sdk ?? {})) client.destroy();
  await emulator?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.sequential('concurrent runs', () => {
  it('two backups of one volume started at the same moment: refused (exit 5) or serialised, never interleaved', async () => {
    const index = join(work, 'twins-index.db');
    const image = join(work, 'twins.img');
    writeImage(image, { label: 'concurrency/twins', blocks: 16 });
    emulator.setFaults({ latencyMs: 20 });
    let results: CliResult[];
    try {
      results = await Promise.all([run(index, ['--json', 'backup', image]), run(index, ['--json', 'backup', image])]);
    } finally {
      emulator.setFaults({});
    }
    const stderr = results.map((r) => r.stderr).join('\n');
    const succeeded = results.filter((r) => r.code === 0).map((r) => (JSON.parse(r.stdout) as { backups: Array<{ snapshotId: string; parentSnapshotId: string | null }> }).backups[0]!);
    const tagged = await sdk.ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: `tag:${VOLUME_TAG}`, Values: ['twins.img'] }] }));
    const inAws = (tagged.Snapshots ?? []).map((s) => s.SnapshotId).sort();
    if (succeeded.length === 1) {
      // The two overlapped: the second found the volume locked.
      const refused = results.find((r) => r.code !== 0)!;
      expect(refused.code, stderr).toBe(ExitCodes.CONFLICT);
      expect(refused.stderr).toMatch(/volume:twins\.img is in use by pid \d+/);
      expect(inAws).toEqual([succeeded[0]!.snapshotId]);
    } else {
      // The first had finished before the second took the lock: two snapshots, the second a child of the first.
      expect(succeeded, stderr).toHaveLength(2);
      const [older, newer] = succeeded[0]!.parentSnapshotId === null ? succeeded : [succeeded[1]!, succeeded[0]!];
      expect(older!.parentSnapshotId).toBeNull();
      expect(newer!.parentSnapshotId).toBe(older!.snapshotId);
      expect(inAws).toEqual([older!.snapshotId, newer!.snapshotId].sort());
    }
    expect(await truth(index)).toEqual([]);
  });

  it('a prune while a backup of the volume runs skips that volume (busy, exit 5) and prunes the others; the backup completes', async () => {
    const index = join(work, 'prune-index.db');
    const session = { connection: 'local', endpointUrl: emulator.url, indexPath: index };
    const busyImage = join(work, 'busy.img');
    const busyBytes = writeImage(busyImage, { label: 'concurrency/busy', blocks: 24 });
    const idleImage = join(work, 'idle.img');
    const idleBytes = writeImage(idleImage, { label: 'concurrency/idle', blocks: 4 });
    const busy: string[] = [];
    const idle: string[] = [];
    for (let round = 0; round < 3; round += 1) {
      overwriteBlocks(busyImage, busyBytes, [round], `concurrency/busy/${round}`);
      overwriteBlocks(idleImage, idleBytes, [round], `concurrency/idle/${round}`);
      busy.push((await backup({ ...session, source: busyImage, volume: 'busy' })).snapshotId!);
      idle.push((await backup({ ...session, source: idleImage, volume: 'idle' })).snapshotId!);
    }
    // Every block changes: the held backup is in the middle of many uploads.
    overwriteBlocks(busyImage, busyBytes, Array.from({ length: 24 }, (_, i) => i), 'concurrency/busy/all');
    const held = await startAndHold(index, ['--json', 'backup', busyImage, '--volume', 'busy', '--concurrency', '2'], 'PutSnapshotBlock');
    let pruned: CliResult;
    try {
      pruned = await run(index, ['--json', 'prune', '--older-than-days', '0', '--keep-last', '1']);
    } finally {
      const finished = await release(held);
      expect({ code: finished.code, stderr: finished.stderr }).toMatchObject({ code: 0 });
      expect(JSON.parse(finished.stdout)).toMatchObject({ backups: [{ parentSnapshotId: busy[2] }] });
    }
    expect({ code: pruned.code, stderr: pruned.stderr }).toMatchObject({ code: ExitCodes.CONFLICT });
    const result = JSON.parse(pruned.stdout) as { busyVolumes: string[]; deleted: Array<{ snapshotId: string }> };
    expect(result.busyVolumes).toEqual(['busy']);
    expect(result.deleted.map((d) => d.snapshotId).sort()).toEqual([idle[0], idle[1]].sort());
    const states = await sdk.ec2.send(new DescribeSnapshotsCommand({ Filters: [{ Name: `tag:${VOLUME_TAG}`, Values: ['busy'] }] }));
    expect(states.Snapshots).toHaveLength(4);
    expect(await truth(index)).toEqual([]);
  });

  it('two restores to one target, by its path and through a symbolic link: the second is refused (exit 5); the target holds the first', async () => {
    const index = join(work, 'restore-index.db');
    const session = { connection: 'local', endpointUrl: emulator.url, indexPath: index };
    const image = join(work, 'source.img');
    const first = writeImage(image, { label: 'concurrency/restore-a', blocks: 24 });
    const snapA = (await backup({ ...session, source: image, volume: 'r' })).snapshotId!;
    const firstBytes = Buffer.from(first);
    overwriteBlocks(image, first, Array.from({ length: 24 }, (_, i) => i), 'concurrency/restore-b');
    const snapB = (await backup({ ...session, source: image, volume: 'r' })).snapshotId!;

    const target = join(work, 'target.img');
    const link = join(work, 'target-link.img');
    symlinkSync(target, link);
    emulator.setFaults({ latencyMs: 20 });
    let held: CliRun;
    try {
      held = await startAndHold(index, ['restore', snapA, target, '--concurrency', '2'], 'GetSnapshotBlock');
    } finally {
      emulator.setFaults({});
    }
    let second: CliResult;
    let viaLink: CliResult;
    try {
      second = await run(index, ['restore', snapB, target, '--force']);
      viaLink = await run(index, ['restore', snapB, link, '--force']);
    } finally {
      const finished = await release(held);
      expect({ code: finished.code, stderr: finished.stderr }).toMatchObject({ code: 0 });
    }
    for (const refused of [second, viaLink]) {
      expect({ code: refused.code, stderr: refused.stderr }).toMatchObject({ code: ExitCodes.CONFLICT, stderr: expect.stringMatching(/target:.*target\.img is in use by pid \d+/) });
    }
    expect(readFileSync(target).equals(firstBytes)).toBe(true);
    expect(await truth(index, [target, link])).toEqual([]);
  });
});
