/**
 * The built CLI with NBD URLs: `backup` of an export qemu-nbd serves,
 * `verify` against it and `restore` to a file, against the local endpoint;
 * a URL without an export name needs --volume; a bitmap-driven incremental
 * (--dirty-bitmap) and a lying bitmap caught by --verify-unchanged.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { killStrays, runCli, type CliResult } from '../support/cli.js';
import { qemuImg, qemuIo, qemuMissing, rawBytesOf, startQemuNbd, type RunningQemuNbd } from '../support/qemu-nbd.js';

afterAll(killStrays);

describe.skipIf(qemuMissing !== undefined)('snapline with NBD URLs', () => {
  let work: string;
  let emulator: RunningEmulator;
  let named: RunningQemuNbd;
  let unnamed: RunningQemuNbd;
  let image: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'snapline-nbd-cli-'));
    emulator = await startEmulator({ dataDir: join(work, 'endpoint') });
    image = join(work, 'disk.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', image, '12M');
    qemuIo(image, 'qcow2', 'write -P 0x61 0 1M', 'write -P 0x62 5M 100k', 'write -z 9M 1M');
    named = await startQemuNbd(work, { image, format: 'qcow2', exportName: 'web-1' });
    unnamed = await startQemuNbd(work, { image, format: 'qcow2' });
  });
  afterAll(async () => {
    await Promise.all([named?.stop(), unnamed?.stop()]);
    await emulator?.close();
    rmSync(work, { recursive: true, force: true });
  });

  function snapline(...args: string[]): Promise<CliResult> {
    return runCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', join(work, 'index.db'), '--no-progress', ...args], {
      dataDir: join(work, 'data'),
      cwd: work,
    });
  }

  it('backs up an export under its name, verifies the export against the snapshot, and restores it to a file', async () => {
    const backup = await snapline('--json', 'backup', named.url);
    expect({ code: backup.code, stderr: backup.stderr }).toMatchObject({ code: 0 });
    const [result] = (JSON.parse(backup.stdout) as { backups: Array<{ snapshotId: string; volume: string; blocksUploaded: number; blocksZeroSkipped: number }> }).backups;
    expect(result).toMatchObject({ volume: 'web-1', blocksUploaded: 3, blocksZeroSkipped: 21 });

    const verify = await snapline('verify', named.url, result!.snapshotId);
    expect({ code: verify.code, stderr: verify.stderr }).toMatchObject({ code: 0 });

    const target = join(work, 'restored.raw');
    const restore = await snapline('restore', result!.snapshotId, target);
    expect({ code: restore.code, stderr: restore.stderr }).toMatchObject({ code: 0 });
    expect(readFileSync(target).equals(rawBytesOf(image, 'qcow2', work))).toBe(true);
  });

  it('refuses a URL without an export name unless --volume is given, and a malformed URL, with exit 2', async () => {
    const refused = await snapline('backup', unnamed.url);
    expect(refused.code).toBe(ExitCodes.USAGE);
    expect(refused.stderr).toMatch(/names no export, so it gives no volume name: pass --volume/);
    const badUrl = await snapline('backup', 'nbd+unix:///disk');
    expect(badUrl.code).toBe(ExitCodes.USAGE);
    expect(badUrl.stderr).toContain('the socket=PATH query parameter is missing');
    const withVolume = await snapline('--json', 'backup', unnamed.url, '--volume', 'web-default', '--dry-run');
    expect({ code: withVolume.code, stderr: withVolume.stderr }).toMatchObject({ code: 0 });
    expect(JSON.parse(withVolume.stdout)).toMatchObject({ backups: [{ volume: 'web-default', dryRun: true }] });
  });

  it('reads only what --dirty-bitmap marks, says why a bitmap is not used, and ends with exit 8 when --verify-unchanged catches a lying one', async () => {
    const tracked = join(work, 'tracked.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', tracked, '12M');
    qemuIo(tracked, 'qcow2', 'write -P 0x71 0 3M');
    qemuImg('bitmap', '--add', tracked, 'gen1');
    const socket = join(work, 'tracked.sock');
    const serving = async <T>(bitmap: string, body: (url: string) => Promise<T>): Promise<T> => {
      const server = await startQemuNbd(work, { image: tracked, format: 'qcow2', exportName: 'tracked', bitmap, socket });
      try {
        return await body(server.url);
      } finally {
        await server.stop();
      }
    };
    const full = await serving('gen1', (url) => snapline('backup', url, '--dirty-bitmap', 'gen1', '--checkpoint', 'gen1'));
    expect(full.code, full.stderr).toBe(0);
    expect(full.stderr).toMatch(/warning: the dirty bitmap "gen1" of .* is not used: there is no parent snapshot/);

    qemuIo(tracked, 'qcow2', 'write -P 0x72 1M 4k');
    qemuImg('bitmap', '--add', tracked, 'gen2');
    const incremental = await serving('gen1', (url) => snapline('backup', url, '--dirty-bitmap', 'gen1', '--checkpoint', 'gen2', '--verify-unchanged', '100'));
    expect(incremental.code, incremental.stderr).toBe(0);
    expect(incremental.stdout).toMatch(/the dirty bitmap "gen1" of .*: 1 blocks marked changed, 1 read, 23 of the 23 it calls unchanged verified; the rest is the parent's/);
    expect(incremental.stdout).toContain('changed 1, uploaded 1');

    qemuImg('bitmap', '--disable', tracked, 'gen2');
    qemuIo(tracked, 'qcow2', 'write -P 0x73 8M 4k');
    const lying = await serving('gen2', (url) => snapline('backup', url, '--dirty-bitmap', 'gen2', '--checkpoint', 'gen3', '--verify-unchanged', '100'));
    expect(lying.code).toBe(ExitCodes.TRACKER_UNTRUSTED);
    expect(lying.stderr).toMatch(/the dirty bitmap "gen2" of .* cannot be trusted: 1 of 24 blocks it calls unchanged differ/);
    const bad = await snapline('backup', join(work, 'tracked.qcow2'), '--dirty-bitmap', 'gen2');
    expect(bad.code).toBe(ExitCodes.USAGE);
    expect(bad.stderr).toContain('is not an NBD URL');
  });
});
