/**
 * Runs nobody watches, through the built CLI against a local endpoint: every
 * backup, restore, prune and archive run goes into the index's history (failed
 * ones with their code); `status` tells late and failing volumes by its exit
 * code; `--metrics-file` writes the Prometheus text format atomically;
 * `--notify` POSTs a JSON event to a local HTTP server, retrying, and never
 * carries a secret; a failed notification or metrics file is a warning only.
 */
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import * as library from '../../src/index.js';
import { parsePrometheusText, type Family } from '../support/prometheus.js';
import { runCli, secretLeaks, watchForSecret, type CliResult } from '../support/cli.js';
import { writeImage } from '../support/images.js';

let work: string;
let endpoint: RunningEmulator;
let hook: Hook;

/** A local HTTP server on port 0 that keeps every request and answers from a script (then 204). */
interface Hook {
  url: string;
  requests: Array<{ url: string; headers: Record<string, string | string[] | undefined>; body: string }>;
  answers: number[];
  server: Server;
}

async function startHook(): Promise<Hook> {
  const hook = { requests: [], answers: [] } as unknown as Hook;
  hook.server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      hook.requests.push({ url: req.url ?? '', headers: req.headers, body });
      res.writeHead(hook.answers.shift() ?? 204).end();
    });
  });
  await new Promise<void>((resolve) => hook.server.listen(0, '127.0.0.1', resolve));
  hook.url = `http://127.0.0.1:${(hook.server.address() as AddressInfo).port}`;
  return hook;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-unattended-'));
  endpoint = await startEmulator({ dataDir: join(work, 'endpoint') });
  hook = await startHook();
});

afterAll(async () => {
  await new Promise((resolve) => hook?.server.close(resolve));
  await endpoint?.close();
  rmSync(work, { recursive: true, force: true });
});

beforeEach(() => {
  hook.requests.length = 0;
  hook.answers.length = 0;
});

/** `snapline --connection local --endpoint-url ... --index INDEX --json ...` in `work`. */
function cli(index: string, args: string[], extra: string[] = ['--connection', 'local', '--endpoint-url', endpoint.url]): Promise<CliResult> {
  return runCli([...extra, '--index', join(work, index), '--no-progress', '--json', ...args], { dataDir: join(work, 'data'), cwd: work });
}

/** The run's JSON result, read as each test needs it. */
const json = (run: CliResult) => JSON.parse(run.stdout);

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stderr: run.stderr }).toMatchObject({ code });
}

function metrics(path: string): Map<string, Family> {
  return parsePrometheusText(readFileSync(path, 'utf8'));
}

function sample(families: Map<string, Family>, name: string, labels: Record<string, string>): number | undefined {
  return families.get(name)?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length)?.value;
}

describe('the run history, status and --metrics-file', () => {
  it('records a good and a failed backup, restore, prune and archive; status says failing and late by its exit code; the metrics file follows', async () => {
    const image = join(work, 'disk.img');
    writeImage(image, { label: 'unattended', blocks: 8, zeroBlocks: [1, 2, 4, 6, 7] });
    const dir = mkdtempSync(join(work, 'metrics-'));
    const prom = join(dir, 'snapline.prom');

    const good = await cli('h.db', ['backup', image, '--volume', 'disk', '--metrics-file', prom]);
    expectExit(good, ExitCodes.OK);
    const made = json(good).backups[0];
    let families = metrics(prom);
    const backupDisk = { operation: 'backup', volume: 'disk' };
    expect(sample(families, 'snapline_last_run_success', backupDisk)).toBe(1);
    expect(sample(families, 'snapline_last_run_transferred_bytes', backupDisk)).toBe(made.bytesUploaded);
    expect(sample(families, 'snapline_last_run_changed_blocks', backupDisk)).toBe(made.blocksChanged);
    expect(sample(families, 'snapline_volume_snapshots', { volume: 'disk' })).toBe(1);
    const lastSuccess = sample(families, 'snapline_last_success_timestamp_seconds', backupDisk)!;
    expect(readdirSync(dir)).toEqual(['snapline.prom']);

    const status = await cli('h.db', ['status', '--expect-every', '1d']);
    expectExit(status, ExitCodes.OK);
    const [volume] = json(status).volumes;
    expect(volume).toMatchObject({
      volume: 'disk',
      health: 'ok',
      late: false,
      failing: false,
      lastBackup: { result: 'success', errorCode: null, snapshotId: made.snapshotId, changedBytes: made.blocksChanged * 524288, uploadedBytes: made.bytesUploaded, from: 'runs' },
      newestGoodSnapshot: { snapshotId: made.snapshotId },
      expectEverySeconds: 86400,
      snapshotCount: 1,
      lastArchive: null,
      lastDrill: null,
      ebsSpace: { blocks: 3, estimatedBytes: 3 * 524288, estimate: true },
    });
    expect(volume.lastBackup.durationMs).toBeGreaterThan(0);

    // The newest good snapshot grows older than one second: late.
    await sleep(Math.max(0, Date.parse(volume.newestGoodSnapshot.completedAt) + 1100 - Date.now()));
    const late = await cli('h.db', ['status', 'disk', '--expect-every', '1s']);
    expectExit(late, ExitCodes.DIFFERENCES);
    expect(json(late).volumes[0]).toMatchObject({ health: 'late', late: true, failing: false });

    const bad = await cli('h.db', ['backup', join(work, 'missing.img'), '--volume', 'disk', '--metrics-file', prom]);
    expectExit(bad, ExitCodes.USAGE);
    expect(json(bad).error.code).toBe('SOURCE_UNUSABLE');
    families = metrics(prom);
    expect(sample(families, 'snapline_last_run_success', backupDisk)).toBe(0);
    expect(sample(families, 'snapline_errors_total', { ...backupDisk, code: 'SOURCE_UNUSABLE' })).toBe(1);
    expect(sample(families, 'snapline_runs_total', { ...backupDisk, result: 'success' })).toBe(1);
    expect(sample(families, 'snapline_last_success_timestamp_seconds', backupDisk)).toBe(lastSuccess);

    const failing = await cli('h.db', ['status', '--expect-every', '1d']);
    expectExit(failing, ExitCodes.DIFFERENCES);
    expect(json(failing).volumes[0]).toMatchObject({ health: 'failing', failing: true, lastBackup: { result: 'failure', errorCode: 'SOURCE_UNUSABLE', snapshotId: null } });

    const restored = await cli('h.db', ['restore', made.snapshotId, join(work, 'restored.img'), '--metrics-file', prom]);
    expectExit(restored, ExitCodes.OK);
    const archived = await cli('h.db', ['archive', 'create', made.snapshotId, '--bucket', 'archive-bucket', '--create-bucket', '--metrics-file', prom]);
    expectExit(archived, ExitCodes.OK);
    const pruned = await cli('h.db', ['prune', '--older-than-days', '0', '--metrics-file', prom]);
    expectExit(pruned, ExitCodes.OK);
    families = metrics(prom);
    expect(sample(families, 'snapline_last_run_transferred_bytes', { operation: 'restore', volume: 'disk' })).toBe(json(restored).bytesWritten);
    expect(sample(families, 'snapline_last_run_transferred_blocks', { operation: 'archive', volume: 'disk' })).toBe(json(archived).blocks);
    expect(sample(families, 'snapline_last_run_success', { operation: 'prune', volume: 'disk' })).toBe(1);
    // The newest snapshot is never pruned.
    expect(sample(families, 'snapline_volume_snapshots', { volume: 'disk' })).toBe(1);

    const after = json(await cli('h.db', ['status']));
    expect(after.volumes[0].lastArchive).toMatchObject({ archiveId: json(archived).archiveId, snapshotId: made.snapshotId, target: 's3', location: 'archive-bucket' });
    expect(after.volumes[0].expectEverySeconds).toBeNull();
  });

  it('a metrics file that cannot be written is a warning; the exit code stays the run\'s', async () => {
    const image = join(work, 'other.img');
    writeImage(image, { label: 'other', blocks: 2 });
    const run = await cli('w.db', ['backup', image, '--metrics-file', join(work, 'no-such-dir', 'snapline.prom')]);
    expectExit(run, ExitCodes.OK);
    expect(run.stderr).toMatch(/warning: the metrics file was not written: cannot write .*no-such-dir.*ENOENT/);
  });

  it("status with the connection's expect_every: a config file it cannot read is an error naming the problem, not a healthy exit 0", async () => {
    const image = join(work, 'expected.img');
    writeImage(image, { label: 'expected', blocks: 1 });
    expectExit(await cli('expected.db', ['backup', image, '--volume', 'expected']), ExitCodes.OK);
    const config = (extra: string[]) => {
      const path = join(work, `expect-${extra.length}.yaml`);
      writeFileSync(path, ['connections:', '  watched:', '    region: us-east-1', '    expect_every: 1s', ...extra, ''].join('\n'), { mode: 0o600 });
      return path;
    };
    await sleep(1100);
    const late = await cli('expected.db', ['status'], ['--config', config([]), '--connection', 'watched']);
    expectExit(late, ExitCodes.DIFFERENCES);
    expect(json(late).volumes[0]).toMatchObject({ volume: 'expected', late: true });
    // A key misspelt elsewhere in the connection: the file no longer resolves, and the interval must not silently go with it.
    const broken = await cli('expected.db', ['status'], ['--config', config(['    notfy:', '      url: https://hooks.example.com/x']), '--connection', 'watched']);
    expectExit(broken, ExitCodes.USAGE);
    expect(broken.stderr).toContain('notfy');
  });

  it('--expect-every that is not a duration is a usage error naming the flag', async () => {
    const run = await cli('u.db', ['status', '--expect-every', 'daily']);
    expectExit(run, ExitCodes.USAGE);
    expect(json(run).error.message).toMatch(/--expect-every must be a duration/);
  });

  it('status of a volume the index does not know is NOT_FOUND; of an empty index, no volumes and exit 0', async () => {
    const unknown = await cli('u.db', ['status', 'nowhere']);
    expectExit(unknown, ExitCodes.REMOTE);
    expect(json(unknown).error).toMatchObject({ code: 'NOT_FOUND', message: 'the index knows no volume "nowhere"' });
    const empty = await cli('u.db', ['status', '--expect-every', '1h']);
    expectExit(empty, ExitCodes.OK);
    expect(json(empty)).toMatchObject({ volumes: [], attention: false });
  });
});

describe('--notify', () => {
  let image: string;
  beforeAll(() => {
    image = join(work, 'notify.img');
    writeImage(image, { label: 'notify', blocks: 2 });
  });

  it('POSTs the failure event (schema snapline.event/1) and keeps the failure\'s exit code', async () => {
    const run = await cli('n.db', ['backup', join(work, 'gone.img'), '--volume', 'n', '--notify', `${hook.url}/hook`]);
    expectExit(run, ExitCodes.USAGE);
    expect(hook.requests).toHaveLength(1);
    const [request] = hook.requests;
    expect(request!.url).toBe('/hook');
    expect(request!.headers['content-type']).toBe('application/json');
    const event = JSON.parse(request!.body);
    expect(event).toMatchObject({
      schema: 'snapline.event/1',
      event: 'backup.failed',
      operation: 'backup',
      result: 'failure',
      exitCode: ExitCodes.USAGE,
      error: { code: 'SOURCE_UNUSABLE' },
      volumes: [{ volume: 'n', result: 'failure', errorCode: 'SOURCE_UNUSABLE', snapshotId: null }],
    });
    expect(Object.keys(event).sort()).toEqual(['durationMs', 'error', 'event', 'exitCode', 'finishedAt', 'host', 'operation', 'result', 'schema', 'startedAt', 'volumes']);
  });

  it('sends nothing for a success by default; --notify-on success sends backup.succeeded', async () => {
    expectExit(await cli('n.db', ['backup', image, '--volume', 'n', '--notify', `${hook.url}/hook`]), ExitCodes.OK);
    expect(hook.requests).toHaveLength(0);
    const run = await cli('n.db', ['backup', image, '--volume', 'n', '--notify', `${hook.url}/hook`, '--notify-on', 'success']);
    expectExit(run, ExitCodes.OK);
    expect(hook.requests).toHaveLength(1);
    const event = JSON.parse(hook.requests[0]!.body);
    expect(event).toMatchObject({ event: 'backup.succeeded', result: 'success', error: null, exitCode: 0, volumes: [{ volume: 'n', result: 'success', snapshotId: json(run).backups[0].snapshotId }] });
  });

  it('backup of several sources, one volume busy: the others finish and are recorded, the busy one is reported and recorded failed (exit 5), or skipped with --if-idle (exit 75)', async () => {
    const [free, busy] = ['free.img', 'busy.img'].map((name) => join(work, name));
    writeImage(free!, { label: 'free', blocks: 2 });
    writeImage(busy!, { label: 'busy', blocks: 2 });
    const held = BlockIndex.open(join(work, 'multi.db'));
    try {
      // A lock of this process counts as held by a live process.
      const lock = held.locks.acquire('volume:busy.img');
      const run = await cli('multi.db', ['backup', free!, busy!]);
      const skippedRun = await cli('multi.db', ['backup', free!, busy!, '--if-idle']);
      lock.release();

      expectExit(run, ExitCodes.CONFLICT);
      expect(json(run)).toMatchObject({ backups: [{ volume: 'free.img' }], failed: [{ source: busy, volume: 'busy.img', code: 'CONFLICT' }] });
      expectExit(skippedRun, ExitCodes.BUSY);
      expect(json(skippedRun)).toMatchObject({ backups: [{ volume: 'free.img' }], skipped: [{ volume: 'busy.img', code: 'CONFLICT' }] });
      expect(json(skippedRun).failed).toBeUndefined();

      const runs = held.history.listRuns({ operation: 'backup' });
      expect(runs.filter((r) => r.volume === 'free.img').map((r) => [r.result, r.snapshotId])).toEqual([
        ['success', json(run).backups[0].snapshotId],
        ['success', json(skippedRun).backups[0].snapshotId],
      ]);
      expect(runs.filter((r) => r.volume === 'busy.img').map((r) => [r.result, r.errorCode])).toEqual([['failure', 'CONFLICT']]);
    } finally {
      held.close();
    }
  });

  it('status and report read the index alone: the local connection starts no endpoint, and the EBS space comes from its block maps', async () => {
    const image = join(work, 'quiet.img');
    writeImage(image, { label: 'quiet', blocks: 6, zeroBlocks: [2, 3] });
    expectExit(await cli('quiet.db', ['backup', image, '--volume', 'quiet']), ExitCodes.OK);
    writeImage(image, { label: 'quiet, changed', blocks: 6, zeroBlocks: [3] });
    expectExit(await cli('quiet.db', ['backup', image, '--volume', 'quiet']), ExitCodes.OK);

    // Through the built-in local connection with no endpoint URL: it would start one on its own data folder.
    const dataDir = join(work, 'quiet-data');
    const local = (args: string[]) => runCli(['--connection', 'local', '--index', join(work, 'quiet.db'), '--no-progress', '--json', ...args], { dataDir, cwd: work });
    const status = await local(['status', 'quiet']);
    expectExit(status, ExitCodes.OK);
    const report = await local(['report', '--html', join(work, 'quiet.html'), '--keep-last', '1']);
    expectExit(report, ExitCodes.OK);
    expect(existsSync(join(dataDir, 'endpoint'))).toBe(false);

    // The blocks each snapshot adds, as EBS lists them: the 4 of the first backup, the 5 the second wrote (the label changes every block with data).
    expect(json(status).volumes[0]).toMatchObject({ volume: 'quiet', health: 'ok', snapshotCount: 2, ebsSpace: { blocks: 9, estimatedBytes: 9 * 524288, estimate: true } });
    expect(readFileSync(join(work, 'quiet.html'), 'utf8')).toContain('quiet');
  });

  it("the library's status() and report() read the index alone and tell what the commands tell, drills included", async () => {
    const image = join(work, 'told.img');
    writeImage(image, { label: 'told', blocks: 6, zeroBlocks: [2] });
    const backup = await cli('told.db', ['backup', image, '--volume', 'told']);
    expectExit(backup, ExitCodes.OK);
    const at = new Date();
    const indexPath = join(work, 'told.db');
    const index = BlockIndex.open(indexPath);
    try {
      const drill = { volume: 'told', snapshotId: json(backup).backups[0].snapshotId, kind: 'read', startedAt: at, finishedAt: at, passed: true, recoveryMs: 1234, blocksRead: 5, mismatchedBlocks: 0, message: null } as const;
      index.drills.record(drill);
    } finally {
      index.close();
    }
    const command = await cli('told.db', ['status', 'told'], []);
    expectExit(command, ExitCodes.OK);

    // They take no connection: the index is all they read. The same clock, so that the ages agree to the second.
    const told = json(command);
    expect(await library.status({ indexPath, volume: 'told', now: new Date(told.generatedAt) })).toEqual(told);
    expect(told.volumes[0]).toMatchObject({ ebsSpace: { blocks: 5 }, lastDrill: { result: 'success' } });
    const html = await library.report({ indexPath });
    expect(html).toContain(`<td data-field="ebsSpace.estimatedBytes" data-value="${5 * 524288}"`);
    expect(html).toContain('<td data-field="recoveryMs" data-value="1234">');

    // An index not made yet has no volumes, and is not made by asking.
    const none = join(work, 'never.db');
    expect(await library.status({ indexPath: none })).toMatchObject({ volumes: [], attention: false });
    expect(await library.report({ indexPath: none })).toContain('</html>');
    expect(existsSync(none)).toBe(false);
  });

  it('a backup --if-idle that finds the volume busy exits 75 and sends no failure event', async () => {
    const held = BlockIndex.open(join(work, 'n.db'));
    try {
      // A lock of this process counts as held by a live process.
      const lock = held.locks.acquire('volume:n');
      const run = await cli('n.db', ['backup', image, '--volume', 'n', '--if-idle', '--notify', `${hook.url}/hook`]);
      lock.release();
      expectExit(run, ExitCodes.BUSY);
      expect(hook.requests).toHaveLength(0);
    } finally {
      held.close();
    }
  });

  it('an event quotes a URL of the error without its user:password@, even a password holding @ or /', async () => {
    for (const password of ['pw@leaked-1st', 'pw/leaked-2nd']) {
      hook.requests.length = 0;
      const run = await cli('n.db', ['backup', image, '--volume', 'n', '--notify', `${hook.url}/hook`], ['--connection', 'local', '--endpoint-url', `http://backup:${password}@127.0.0.1:bad/`]);
      expect(run.code).not.toBe(ExitCodes.OK);
      expect(hook.requests).toHaveLength(1);
      const event = JSON.parse(hook.requests[0]!.body);
      expect(event.error.message).toContain('http://127.0.0.1:bad/');
      expect(hook.requests[0]!.body).not.toContain('leaked');
      expect(hook.requests[0]!.body).not.toContain('backup:pw');
    }
  });

  it('retries 5xx and is delivered on the third attempt, without a warning', async () => {
    hook.answers.push(503, 500);
    const run = await cli('n.db', ['backup', join(work, 'gone.img'), '--volume', 'n', '--notify', `${hook.url}/hook`]);
    expectExit(run, ExitCodes.USAGE);
    expect(hook.requests).toHaveLength(3);
    expect(new Set(hook.requests.map((r) => r.body)).size).toBe(1);
    expect(run.stderr).not.toMatch(/notification/);
  });

  it('gives up after three attempts with a warning naming only the origin; the exit code is the run\'s', async () => {
    hook.answers.push(500, 500, 500);
    const run = await cli('n.db', ['backup', image, '--volume', 'n', '--notify', `${hook.url}/hook/pathkey?token=querykey`, '--notify-on', 'always']);
    expectExit(run, ExitCodes.OK);
    expect(hook.requests).toHaveLength(3);
    expect(run.stderr).toContain(`warning: the notification to ${hook.url} was not delivered: HTTP 500 after 3 attempts`);
    expect(run.stderr).not.toMatch(/pathkey|querykey/);
  });

  it('an unreachable receiver is a warning too', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(closed.address() as AddressInfo).port}`;
    await new Promise((resolve) => closed.close(resolve));
    const run = await cli('n.db', ['backup', image, '--volume', 'n', '--notify', url, '--notify-on', 'always']);
    expectExit(run, ExitCodes.OK);
    expect(run.stderr).toMatch(/warning: the notification to http:\/\/127\.0\.0\.1:\d+ was not delivered: ECONNREFUSED after 3 attempts/);
  });

  it('refuses a URL with user:password@ and --notify-on without a URL, before anything runs', async () => {
    const withUser = await cli('n2.db', ['backup', image, '--notify', 'http://alice:hunter2hunter2@127.0.0.1:1/hook']);
    expectExit(withUser, ExitCodes.USAGE);
    expect(json(withUser).error.message).toMatch(/--notify must not carry user:password@/);
    expect(withUser.stdout + withUser.stderr).not.toContain('hunter2');
    const onOnly = await cli('n2.db', ['backup', image, '--notify-on', 'always']);
    expectExit(onOnly, ExitCodes.USAGE);
    expect(json(onOnly).error.message).toMatch(/--notify-on needs a URL/);
    const badOn = await cli('n2.db', ['backup', image, '--notify', hook.url, '--notify-on', 'sometimes']);
    expectExit(badOn, ExitCodes.USAGE);
    expect(existsSync(join(work, 'n2.db'))).toBe(false);
    expect(hook.requests).toHaveLength(0);
  });

  it("takes notify.url from the connection, and no secret of the config reaches the event, stdout or stderr", async () => {
    const secrets = {
      keyId: 'AKIDWATCHEDKEY0001',
      secret: 'watchedSecretAccessKey0123456789',
      sse: 'watchedSseCustomerKey0123456789',
      pathKey: 'watchedPathKey0123',
      queryKey: 'watchedQueryKey0123',
      endpointKey: 'watchedEndpointQuery01',
    };
    for (const secret of Object.values(secrets)) watchForSecret(secret);
    const config = join(work, 'config.yaml');
    writeFileSync(
      config,
      [
        'connections:',
        '  watched:',
        '    region: us-east-1',
        `    endpoint_url: ${endpoint.url}`,
        `    access_key_id: ${secrets.keyId}`,
        `    secret_access_key: ${secrets.secret}`,
        '    archive:',
        '      bucket: watched-bucket',
        '      attributes:',
        `        x-amz-server-side-encryption-customer-key: ${secrets.sse}`,
        '    notify:',
        `      url: ${hook.url}/hook/${secrets.pathKey}?token=${secrets.queryKey}`,
        '      on: always',
        '  unreachable:',
        '    region: us-east-1',
        `    endpoint_url: http://127.0.0.1:1/?key=${secrets.endpointKey}`,
        `    access_key_id: ${secrets.keyId}`,
        `    secret_access_key: ${secrets.secret}`,
        '    notify:',
        `      url: ${hook.url}/hook/${secrets.pathKey}?token=${secrets.queryKey}`,
        '',
      ].join('\n'),
    );
    chmodSync(config, 0o600);
    const ok = await cli('s.db', ['backup', image, '--volume', 's'], ['--config', config, '--connection', 'watched']);
    expectExit(ok, ExitCodes.OK);
    const failed = await cli('s.db', ['backup', join(work, 'gone.img'), '--volume', 's'], ['--config', config, '--connection', 'watched']);
    expectExit(failed, ExitCodes.USAGE);
    const unreachable = await cli('s2.db', ['backup', image, '--volume', 's'], ['--config', config, '--connection', 'unreachable']);
    expect(unreachable.code).not.toBe(ExitCodes.OK);
    expect(hook.requests.map((r) => JSON.parse(r.body).event)).toEqual(['backup.succeeded', 'backup.failed', 'backup.failed']);
    expect(hook.requests.every((r) => r.url === `/hook/${secrets.pathKey}?token=${secrets.queryKey}`)).toBe(true);
    for (const request of hook.requests) {
      const seen = JSON.stringify(request.headers) + request.body;
      for (const secret of Object.values(secrets)) expect(seen).not.toContain(secret);
    }
    expect(secretLeaks()).toEqual([]);
  });
});
