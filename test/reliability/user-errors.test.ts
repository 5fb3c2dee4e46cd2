/**
 * What a user meets when something is off, through the CLI as it runs
 * (main() in this process; a child when it must run as another user):
 * endpoint URLs that point at a web server or at a port that never answers,
 * usage errors under --json, malformed snapshot ids, hints whose commands
 * must run as printed, the archive tier on the built-in local connection
 * (no bucket, a missing bucket, --create-bucket, archive delete), what
 * archive status says, and an index folder this user may not write. Each
 * case: the exit code of the README, a clear message, and nothing asked of
 * the endpoint that the refusal should have spared.
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE } from '../../src/core/constants.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { killStrays, runCli } from '../support/cli.js';
import { runInProcess } from '../support/in-process.js';
import { randomBlocks, writeBlocks } from '../support/images.js';

const NOBODY = 65_534;
const isRoot = process.getuid?.() === 0;

let work: string;
let emulator: RunningEmulator;
let index: string;
let snapshotId: string;

/** `snapline ...args` in this process, hermetic, data and config under the work dir. */
function snapline(args: string[]) {
  return runInProcess(args, { dataDir: join(work, 'data'), env: { XDG_CONFIG_HOME: join(work, 'config') } });
}

/** The global options of the runs on the local connection: given on the command line, so hints must carry them. */
const globals = () => ['--connection', 'local', '--endpoint-url', emulator.url, '--index', index, '--no-progress'];

/** Requests the endpoint has had, to show a refusal asked it nothing. */
const requests = () => emulator.stats().totals.requests;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-user-errors-'));
  chmodSync(work, 0o755);
  // A space in the index path: hints must quote it.
  index = join(work, 'my index.db');
  emulator = await startEmulator({ dataDir: join(work, 'endpoint'), log: () => undefined });
  const image = join(work, 'disk.img');
  writeBlocks(image, randomBlocks([0, 2]), 4 * BLOCK_SIZE);
  const run = await snapline([...globals(), '--json', 'backup', image]);
  expect(run.code, run.stderr).toBe(0);
  const result = JSON.parse(run.stdout) as { backups: Array<{ snapshotId: string }> };
  // One shape whatever the number of sources: a list of backups.
  expect(result.backups).toHaveLength(1);
  snapshotId = result.backups[0]!.snapshotId;
}, 120_000);

afterAll(async () => {
  killStrays();
  await emulator?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('an endpoint URL that points at something else', () => {
  it('a web server answering 200 with HTML, or 404 in text: exit 6 at once, naming the service and the URL', async () => {
    const pages = [
      [200, 'text/html', '<html><body>It works!</body></html>'],
      [404, 'text/plain', '404 page not found'],
    ] as const;
    for (const [status, type, body] of pages) {
      const server = http.createServer((req, res) => {
        req.resume();
        res.writeHead(status, { 'content-type': type });
        res.end(body);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      try {
        const run = await snapline(['--connection', 'local', '--endpoint-url', url, '--index', join(work, 'web.db'), 'restore', snapshotId, join(work, 'web.img')]);
        expect(run.code, run.stderr).toBe(ExitCodes.UNREACHABLE);
        expect(run.stderr).toContain(`snapline: error: ec2:DescribeSnapshots: ${url} answered HTTP ${status} with ${type} and no AWS request id: it is not the EC2 endpoint`);
        expect(run.stderr).toMatch(/hint: check the EC2 endpoint URL \(--endpoint-url/);
        expect(run.stderr).not.toMatch(/\$response|Deserialization/);
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    }
  });

  it('a port that accepts and never answers: exit 6 after the first-byte limit, not minutes of retries', async () => {
    const sockets = new Set<net.Socket>();
    const server = net.createServer((socket) => sockets.add(socket.resume()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const config = join(work, 'silent.yaml');
    writeFileSync(
      config,
      `connections:\n  silent:\n    region: us-east-1\n    endpoint_url: ${url}\n    access_key_id: test-key-id\n    secret_access_key: test-secret-value\n    read_timeout: 0.5\n`,
      { mode: 0o600 },
    );
    try {
      const run = await snapline(['--config', config, '--connection', 'silent', '--index', join(work, 'silent.db'), 'restore', snapshotId, join(work, 'silent.img')]);
      expect(run.code, run.stderr).toBe(ExitCodes.UNREACHABLE);
      expect(run.stderr).toContain(`ec2:DescribeSnapshots: ${url} accepted the connection but sent no answer within 0.5 s: it is not a working EC2 endpoint`);
      // One connection a service: STS (asked which account the store is) and EC2, neither waited on again.
      expect(sockets.size).toBe(2);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('usage errors', () => {
  it('under --json are a JSON error on stdout like every other error, exit 2, the text on stderr', async () => {
    const cases = [
      [['--json', 'backup', '--bogus', 'disk.img'], "unknown option '--bogus'", '`snapline backup --help`'],
      [['--json', 'frobnicate'], "unknown command 'frobnicate'", '`snapline --help`'],
      [['--json', 'archive', 'restore'], "missing required argument 'archive'", '`snapline archive restore --help`'],
    ] as const;
    for (const [args, message, help] of cases) {
      const run = await snapline([...args]);
      expect(run.code, run.stderr).toBe(ExitCodes.USAGE);
      expect(JSON.parse(run.stdout)).toEqual({ error: { code: 'INVALID_ARGUMENT', message, hint: `run ${help} for usage`, details: { reason: expect.any(String) } } });
      expect(run.stderr).toBe(`snapline: error: ${message}\nhint: run ${help} for usage\n`);
    }
    const plain = await snapline(['backup', '--bogus', 'disk.img']);
    expect(plain).toMatchObject({ code: ExitCodes.USAGE, stdout: '' });
  });

  it('a malformed snapshot or archive id is refused wherever one is taken, before anything is asked of the endpoint', async () => {
    const image = join(work, 'disk.img');
    const cases: Array<[string[], RegExp]> = [
      [['restore', 'hello', join(work, 'never.img')], /<snapshot-id> "hello" is not a snapshot id: snap- followed by hex digits/],
      [['verify', image, 'hello'], /<snapshot-id> "hello" is not a snapshot id/],
      [['diff', 'hello', snapshotId], /<snapshot-a> "hello" is not a snapshot id/],
      [['diff', snapshotId, 'snap-xyz'], /<snapshot-b> "snap-xyz" is not a snapshot id/],
      [['index', 'rebuild', 'hello'], /<snapshot-id> "hello" is not a snapshot id/],
      [['backup', image, '--parent', 'hello'], /--parent "hello" is not a snapshot id/],
      [['archive', 'create', 'hello'], /<snapshot-id> "hello" is not a snapshot id/],
      [['archive', 'restore', 'hello'], /<archive> "hello" is neither an archive id \(ar- followed by 16 hex digits\) nor a snapshot id/],
      [['archive', 'delete', 'ar-12'], /<archive> "ar-12" is neither an archive id/],
      [['rehydrate', 'hello', '--to-snapshot'], /<archive> "hello" is neither an archive id/],
      [['ecs', 'restore', 'hello'], /<archive-or-snapshot> "hello" is neither an archive id/],
    ];
    for (const [args, message] of cases) {
      const before = requests();
      const run = await snapline([...globals(), ...args]);
      expect({ args, code: run.code }).toEqual({ args, code: ExitCodes.USAGE });
      expect(run.stderr).toMatch(message);
      expect(requests(), args.join(' ')).toBe(before);
    }
  });
});

describe('hints', () => {
  it('carry the global options the user gave, shell-quoted, so that the command runs as printed', async () => {
    const run = await snapline([...globals(), 'archive', 'restore', 'ar-0123456789abcdef']);
    expect(run.code).toBe(ExitCodes.REMOTE);
    expect(run.stderr).toContain(`\`snapline --connection local --endpoint-url ${emulator.url} --index '${index}' archive status\``);
    // What comes from the environment stays out: the shell that runs the hint has it too.
    const fromEnv = await runInProcess(['archive', 'restore', 'ar-0123456789abcdef'], {
      dataDir: join(work, 'data'),
      env: { XDG_CONFIG_HOME: join(work, 'config'), SNAPLINE_CONNECTION: 'local', SNAPLINE_INDEX: index },
    });
    expect(fromEnv.stderr).toContain('`snapline archive status`');
  });
});

describe('the archive tier on the built-in local connection', () => {
  it('no bucket, a missing one, --create-bucket, archived already, archive delete, and archived again', async () => {
    const noPlace = await snapline([...globals(), 'archive', 'create', snapshotId]);
    expect(noPlace.code).toBe(ExitCodes.USAGE);
    expect(noPlace.stderr).toMatch(/hint: name one with --bucket NAME \(add --create-bucket to make it\) or --vault NAME/);

    const reads = () => (emulator.stats().operations.GetSnapshotBlock?.requests ?? 0) + (emulator.stats().operations.ListSnapshotBlocks?.requests ?? 0);
    const before = reads();
    const missing = await snapline([...globals(), 'archive', 'create', snapshotId, '--bucket', 'local-archive']);
    expect(missing.code).toBe(ExitCodes.REMOTE);
    expect(missing.stderr).toContain('snapline: error: bucket local-archive does not exist\nhint: add --create-bucket to make it, or name an existing bucket with --bucket');
    expect(reads()).toBe(before);

    const made = await snapline([...globals(), '--json', 'archive', 'create', snapshotId, '--bucket', 'local-archive', '--create-bucket']);
    expect(made.code, made.stderr).toBe(0);
    const created = JSON.parse(made.stdout) as { archiveId: string; locationCreated: boolean };
    expect(created.locationCreated).toBe(true);

    const status = await snapline([...globals(), 'archive', 'status']);
    expect(status.stdout).toContain(`${created.archiveId} disk.img ${snapshotId} s3 local-archive DEEP_ARCHIVE: archived, 1.0 MiB, not readable until restored (no restore asked for)`);
    expect(status.stdout).not.toMatch(/0 of 0/);

    const again = await snapline([...globals(), 'archive', 'create', snapshotId, '--bucket', 'local-archive']);
    expect(again.code).toBe(ExitCodes.CONFLICT);
    expect(again.stderr).toContain(`hint: delete it with \`snapline --connection local --endpoint-url ${emulator.url} --index '${index}' archive delete ${created.archiveId}\``);

    const dry = await snapline([...globals(), 'archive', 'delete', created.archiveId, '--dry-run']);
    expect(dry).toMatchObject({ code: 0, stdout: `would delete archive ${created.archiveId} of ${snapshotId} (disk.img) in s3 local-archive: 2 objects\n` });
    const deleted = await snapline([...globals(), 'archive', 'delete', created.archiveId]);
    expect(deleted).toMatchObject({ code: 0, stdout: `deleted archive ${created.archiveId} of ${snapshotId} (disk.img) in s3 local-archive: 2 objects\n` });
    const recreated = await snapline([...globals(), 'archive', 'create', snapshotId, '--bucket', 'local-archive']);
    expect(recreated.code, recreated.stderr).toBe(0);
  });
});

describe('an index this user may not write', () => {
  it('a folder it cannot write in is named, with what to do: exit 7', async () => {
    // As root every folder is writable: run as nobody, the folder root's own.
    const readOnly = join(work, 'read-only');
    mkdirSync(readOnly, { mode: 0o755 });
    chmodSync(readOnly, isRoot ? 0o755 : 0o555);
    const shared = join(work, 'shared');
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    for (const target of [join(readOnly, 'index.db'), join(readOnly, 'sub', 'index.db')]) {
      const run = await runCli(['--connection', 'local', '--endpoint-url', emulator.url, '--index', target, 'snapshots'], {
        dataDir: shared,
        cwd: work,
        ...(isRoot ? { uid: NOBODY } : {}),
      });
      expect(run.code, run.stderr).toBe(ExitCodes.LOCAL_IO);
      expect(run.stderr).toContain(`snapline: error: cannot use the index: this user may not write in ${readOnly}, where the index ${target} is kept`);
      expect(run.stderr).toContain(`hint: give this user write access to ${readOnly}, or choose another index file with --index PATH`);
    }
  });
});
