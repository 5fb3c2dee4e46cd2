/**
 * `snapline bench` as a user runs it: the built CLI in a child process
 * (test/support/cli.js) against the local endpoint over loopback HTTP. The
 * report, --json, refused options, and Ctrl-C in the middle of a run; after
 * each, the endpoint holds no scratch snapshot.
 */
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import type { BenchResult } from '../../src/engine/bench/bench.js';
import { clientsFor } from '../emulator/helpers.js';
import { killStrays, runCli, startCli, until, type CliResult } from '../support/cli.js';

let work: string;
let emulator: RunningEmulator;
let clients: ReturnType<typeof clientsFor>;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-bench-cli-'));
  emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
  clients = clientsFor(emulator.url);
});

afterEach(() => killStrays());

afterAll(async () => {
  for (const client of Object.values(clients)) client.destroy();
  await emulator?.close();
  await rm(work, { recursive: true, force: true });
});

/** `snapline --connection local --endpoint-url URL ...args`. */
function bench(args: string[]) {
  return startCli(['--connection', 'local', '--endpoint-url', emulator.url, ...args], { dataDir: join(work, 'data') });
}

/** Scratch snapshots the endpoint still has, found as the report tells users to look for them. */
async function scratchSnapshots(): Promise<string[]> {
  const out = await clients.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], Filters: [{ Name: 'tag:snapline:bench', Values: ['true'] }] }));
  return (out.Snapshots ?? []).map((s) => s.SnapshotId!);
}

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

describe('snapline bench', () => {
  it('prints a table and a chart per direction, a recommendation, and deletes the scratch snapshot', async () => {
    const run = await bench(['--no-progress', 'bench', '--levels', '2,1', '--blocks', '8', '--seconds', '600']).done;
    expectExit(run, 0);
    const out = run.stdout;
    const snapshotId = /scratch snapshot (snap-[0-9a-f]+)/.exec(out)?.[1];
    expect(snapshotId).toBeDefined();
    for (const call of ['PutSnapshotBlock (backup)', 'GetSnapshotBlock (restore)']) expect(out).toContain(call);
    // A table row per level in each direction, levels sorted: in flight, MiB/s, blocks/s, four latencies, 8 requests...
    const rows = out.split('\n').filter((line) => /^\s+[12]\s+[\d.]+\s+\d+(\s+[\d.]+){4}\s+8\s+0\s+0\s+0\s+[\d.]+\s+ok$/.test(line));
    expect(rows.map((line) => line.trim().split(/\s+/)[0])).toEqual(['1', '2', '1', '2']);
    // A bar per level in each direction (Unicode or ASCII, whatever the locale).
    expect(out.split('\n').filter((line) => /^\s+[12] [│|]/.test(line))).toHaveLength(4);
    expect(out).toMatch(/recommended: --concurrency [12] for backup .*; --concurrency [12] for restore/);
    expect(out).toMatch(/rule: the smallest level within 90 % of the best MiB\/s/);
    expect(out).toContain(`reads verified: all ${1 + 8 + 2 + 8} returned the bytes and checksum written`);
    expect(out).toContain(`scratch snapshot ${snapshotId} deleted`);
    expect(await scratchSnapshots()).toEqual([]);
  });

  it('prints only JSON on stdout with --json', async () => {
    const run = await bench(['--json', 'bench', '--levels', '1', '--blocks', '4', '--seconds', '600']).done;
    expectExit(run, 0);
    const result = JSON.parse(run.stdout) as BenchResult;
    expect(result.put).toHaveLength(1);
    expect(result.get).toHaveLength(1);
    expect(result.put[0]).toMatchObject({ concurrency: 1, requests: 4, succeeded: 4, status: 'ok' });
    expect(result.get[0]!.latencyMs?.p99).toBeGreaterThan(0);
    expect(result).toMatchObject({ blocksWritten: 6, mismatches: 0, cleanup: 'deleted', recommended: { put: { concurrency: 1 }, get: { concurrency: 1 } } });
    expect(await scratchSnapshots()).toEqual([]);
  });

  it('fails with exit code 4 when reads come back with a wrong checksum, and still deletes the scratch snapshot', async () => {
    emulator.setFaults({ corruptRate: 1 });
    try {
      const run = await bench(['--json', 'bench', '--levels', '1', '--blocks', '3', '--seconds', '600']).done;
      expectExit(run, 4);
      const result = JSON.parse(run.stdout) as BenchResult;
      expect(result.mismatches).toBe(1 + 3);
      expect(result.get[0]).toMatchObject({ requests: 3, succeeded: 0, mismatched: 3, status: 'failed' });
      expect(result.recommended.get).toBeNull();
      expect(run.stderr).toContain('4 reads did not return the bytes or checksum written');
      expect(result.cleanup).toBe('deleted');
    } finally {
      emulator.setFaults({});
    }
    expect(await scratchSnapshots()).toEqual([]);
  });

  it('refuses bad options with exit code 2, naming the option, before starting anything', async () => {
    const starts = emulator.stats().operations.StartSnapshot?.requests ?? 0;
    const cases: Array<[string[], RegExp]> = [
      [['--levels', '0'], /--levels must be a whole number from 1 to 1024, got "0"/],
      [['--levels', '1,x'], /--levels must be a whole number from 1 to 1024, got "x"/],
      [['--levels', '4,2000'], /--levels must be a whole number from 1 to 1024, got "2000"/],
      [['--levels', ''], /--levels must be a whole number/],
      [['--levels', Array.from({ length: 17 }, (_, i) => i + 1).join(',')], /--levels takes at most 16 levels, got 17/],
      [['--seconds', '0'], /--seconds must be a number from 0.1 to 3600, got "0"/],
      [['--seconds', 'soon'], /--seconds must be a number/],
      [['--blocks', '1.5'], /--blocks must be a whole number from 1 to 100000, got "1.5"/],
      [['--blocks', '0'], /--blocks must be a whole number from 1 to 100000/],
    ];
    const runs = await Promise.all(cases.map(([args]) => runCli(['--connection', 'local', '--endpoint-url', emulator.url, 'bench', ...args], { dataDir: join(work, 'data') })));
    runs.forEach((run, i) => {
      expectExit(run, 2);
      expect(run.stderr).toMatch(cases[i]![1]);
      expect(run.stdout).toBe('');
    });
    expect(emulator.stats().operations.StartSnapshot?.requests ?? 0).toBe(starts);
  });

  it('on Ctrl-C mid-run deletes the scratch snapshot, says so, and exits 130', async () => {
    const { child, done } = bench(['bench', '--levels', '1', '--blocks', '100000', '--seconds', '3600']);
    let stderr = '';
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    await until(() => stderr.includes('measuring PutSnapshotBlock at 1 in flight'), 'the puts to start', child);
    child.kill('SIGINT');
    const run = await done;
    expectExit(run, 130);
    const snapshotId = /scratch snapshot (snap-[0-9a-f]+) started/.exec(run.stderr)?.[1];
    expect(snapshotId).toBeDefined();
    expect(run.stderr).toContain(`interrupted: deleting the scratch snapshot ${snapshotId}; Ctrl-C again exits at once and leaves it`);
    expect(run.stderr).toContain('tag:snapline:bench');
    expect(run.stderr).toMatch(/error: .*interrupted by SIGINT/);
    expect(await scratchSnapshots()).toEqual([]);
  });
});
