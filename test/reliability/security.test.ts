/**
 * Security: `snapline serve --auth` checks SigV4 signatures for real (the SDK
 * and the CLI meet AWS's credential errors), the files snapline creates are
 * readable by the owner only, TLS is verified by default, and no test secret
 * appears anywhere in the output of the CLI runs of this file (backup,
 * restore and serve with the secrets in their arguments and environment).
 * The named-connections commands have their own secret scan (src/config).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { EBSClient, PutSnapshotBlockCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCodes } from '../../src/errors.js';
import { checksum, expectAwsError, REGION } from '../emulator/helpers.js';
import { killStrays, runCli, secretLeaks, startCli, transcriptStats, until, watchForSecret, type CliRun } from '../support/cli.js';
import { writeImage } from '../support/images.js';

const KEY = { accessKeyId: 'AKIDRELIABILITY01', secretAccessKey: 'rel-secret-8f3a2c91-flag-key' };
const FILE_KEY = { accessKeyId: 'AKIDRELIABILITY02', secretAccessKey: 'rel-secret-5d7e6b40-file-key' };
const WRONG_SECRET = 'rel-secret-0b1c2d3e-wrong-one';
for (const secret of [KEY.secretAccessKey, FILE_KEY.secretAccessKey, WRONG_SECRET]) watchForSecret(secret);

let work: string;

/** `snapline serve` as a child; resolves with its URL once it listens. */
async function serve(args: string[], dataDir: string): Promise<{ url: string; run: CliRun }> {
  const run = startCli(['serve', '--port', '0', '--data-dir', dataDir, ...args], { dataDir: join(work, 'data'), cwd: work });
  let out = '';
  run.child.stdout?.on('data', (chunk: string) => (out += chunk));
  await until(() => /listening on (\S+)/.test(out), 'the endpoint to listen', run.child);
  return { url: /listening on (\S+)/.exec(out)![1]!, run };
}

async function stop(server: { run: CliRun }): Promise<void> {
  server.run.child.kill('SIGTERM');
  expect((await server.run.done).code).toBe(0);
}

/** The CLI with the default credential chain fed from the environment, against `url`. */
function cliAs(credentials: { accessKeyId: string; secretAccessKey: string }, url: string, args: string[], index = join(work, 'index.db')) {
  return runCli(['--endpoint-url', url, '--region', REGION, '--index', index, '--no-progress', '--verbose', ...args], {
    dataDir: join(work, 'data'),
    cwd: work,
    env: { AWS_ACCESS_KEY_ID: credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey, XDG_CONFIG_HOME: join(work, 'config') },
  });
}

function sdkAs(credentials: { accessKeyId: string; secretAccessKey: string }, url: string) {
  const config = { endpoint: url, region: REGION, credentials, maxAttempts: 1 };
  return { ebs: new EBSClient(config), ec2: new EC2Client(config), sts: new STSClient(config), s3: new S3Client({ ...config, forcePathStyle: true }) };
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'snapline-security-'));
  mkdirSync(join(work, 'data'), { mode: 0o700 });
});

afterAll(() => {
  killStrays();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('serve --auth: SigV4 signatures checked against the configured keys', () => {
  let server: { url: string; run: CliRun };

  beforeAll(async () => {
    const keyFile = join(work, 'keys');
    writeFileSync(keyFile, `# keys of the reliability tests\n${FILE_KEY.accessKeyId}:${FILE_KEY.secretAccessKey}\n`, { mode: 0o600 });
    server = await serve(['--auth', `${KEY.accessKeyId}:${KEY.secretAccessKey}`, '--auth-file', keyFile], join(work, 'auth-endpoint'));
  });
  afterAll(async () => {
    if (server) await stop(server);
  });

  it('the SDK with a configured key (from --auth or --auth-file) works: EBS with a signed and an unsigned (streamed) block body, EC2, STS, S3', async () => {
    for (const key of [KEY, FILE_KEY]) {
      const sdk = sdkAs(key, server.url);
      try {
        const { SnapshotId } = await sdk.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
        const block = Buffer.alloc(524_288, 7);
        const input = { SnapshotId, DataLength: block.length, Checksum: checksum(block), ChecksumAlgorithm: 'SHA256' as const };
        await sdk.ebs.send(new PutSnapshotBlockCommand({ ...input, BlockIndex: 0, BlockData: block }));
        // A stream body is sent with x-amz-content-sha256: UNSIGNED-PAYLOAD.
        await sdk.ebs.send(new PutSnapshotBlockCommand({ ...input, BlockIndex: 1, BlockData: Readable.from([block]) as unknown as Uint8Array }));
        await sdk.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [SnapshotId!] }));
        expect((await sdk.sts.send(new GetCallerIdentityCommand({}))).Account).toMatch(/^\d{12}$/);
        await sdk.s3.send(new ListBucketsCommand({}));
      } finally {
        for (const client of Object.values(sdk)) client.destroy();
      }
    }
  });

  it('a wrong secret is refused as AWS does: InvalidSignatureException, AuthFailure, SignatureDoesNotMatch', async () => {
    const sdk = sdkAs({ accessKeyId: KEY.accessKeyId, secretAccessKey: WRONG_SECRET }, server.url);
    try {
      await expectAwsError(sdk.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })), 'InvalidSignatureException');
      await expectAwsError(sdk.ec2.send(new DescribeSnapshotsCommand({})), 'AuthFailure');
      await expectAwsError(sdk.sts.send(new GetCallerIdentityCommand({})), 'SignatureDoesNotMatch');
      await expectAwsError(sdk.s3.send(new ListBucketsCommand({})), 'SignatureDoesNotMatch');
    } finally {
      for (const client of Object.values(sdk)) client.destroy();
    }
  });

  it('an unknown key is refused: UnrecognizedClientException, AuthFailure, InvalidClientTokenId, InvalidAccessKeyId', async () => {
    const sdk = sdkAs({ accessKeyId: 'AKIDNOBODYKNOWS', secretAccessKey: WRONG_SECRET }, server.url);
    try {
      await expectAwsError(sdk.ebs.send(new StartSnapshotCommand({ VolumeSize: 1 })), 'UnrecognizedClientException');
      await expectAwsError(sdk.ec2.send(new DescribeSnapshotsCommand({})), 'AuthFailure');
      await expectAwsError(sdk.sts.send(new GetCallerIdentityCommand({})), 'InvalidClientTokenId');
      await expectAwsError(sdk.s3.send(new ListBucketsCommand({})), 'InvalidAccessKeyId');
    } finally {
      for (const client of Object.values(sdk)) client.destroy();
    }
  });

  it('an unsigned request and an unsigned admin change are refused; the stats stay readable', async () => {
    const start = await fetch(`${server.url}/snapshots`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"VolumeSize":1}' });
    expect([start.status, start.headers.get('x-amzn-errortype')]).toEqual([403, 'MissingAuthenticationTokenException']);
    const faults = await fetch(`${server.url}/_snapline/faults`, { method: 'POST', body: '{"errorRate":1}' });
    expect(faults.status).toBe(403);
    expect(await (await fetch(`${server.url}/_snapline/faults`)).json()).toEqual({});
    expect((await fetch(`${server.url}/_snapline/stats`)).status).toBe(200);
  });

  it('the CLI: backup and restore with the right keys; a wrong secret or an unknown key is exit 3 naming the credentials problem, with nothing written', async () => {
    const image = join(work, 'auth.img');
    const bytes = writeImage(image, { label: 'security/auth', blocks: 6, tailBytes: 100 });
    const done = await cliAs(KEY, server.url, ['--json', 'backup', image]);
    expect({ code: done.code, stderr: done.stderr }).toMatchObject({ code: 0 });
    const { snapshotId } = (JSON.parse(done.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!;
    const target = join(work, 'auth-restored.img');
    const restored = await cliAs(FILE_KEY, server.url, ['restore', snapshotId, target]);
    expect({ code: restored.code, stderr: restored.stderr }).toMatchObject({ code: 0 });
    expect(readFileSync(target).equals(bytes)).toBe(true);

    const refusedIndex = join(work, 'refused-index.db');
    for (const [who, credentials, awsError] of [
      ['wrong secret', { accessKeyId: KEY.accessKeyId, secretAccessKey: WRONG_SECRET }, 'AuthFailure'],
      ['unknown key', { accessKeyId: 'AKIDNOBODYKNOWS', secretAccessKey: WRONG_SECRET }, 'AuthFailure'],
    ] as const) {
      const backup = await cliAs(credentials, server.url, ['backup', image, '--volume', 'refused'], refusedIndex);
      expect({ who, code: backup.code }).toEqual({ who, code: ExitCodes.REMOTE });
      expect(backup.stderr).toMatch(new RegExp(`snapline: error: credentials refused for ec2:\\w+: ${awsError}`));
      expect(backup.stderr).toMatch(/hint: check the credentials of the connection/);
      const restore = await cliAs(credentials, server.url, ['restore', snapshotId, join(work, `never-${who.replace(' ', '-')}.img`)], refusedIndex);
      expect({ who, code: restore.code }).toEqual({ who, code: ExitCodes.REMOTE });
      expect(restore.stderr).toMatch(/credentials refused/);
      expect(existsSync(join(work, `never-${who.replace(' ', '-')}.img`))).toBe(false);
    }
  });

  it('bad --auth values: exit 2 without echoing the secret', async () => {
    const malformed = await runCli(['serve', '--port', '0', '--data-dir', join(work, 'never'), '--auth', WRONG_SECRET], { dataDir: join(work, 'data'), cwd: work });
    expect({ code: malformed.code, stderr: malformed.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringContaining('--auth must look like KEYID:SECRET') });
    const missing = await runCli(['serve', '--port', '0', '--data-dir', join(work, 'never'), '--auth-file', join(work, 'no-keys')], { dataDir: join(work, 'data'), cwd: work });
    expect({ code: missing.code, stderr: missing.stderr }).toMatchObject({ code: ExitCodes.USAGE, stderr: expect.stringMatching(/--auth-file .*no-keys cannot be read \(ENOENT\)/) });
    expect(existsSync(join(work, 'never'))).toBe(false);
  });

  it('a key file that group or others may read: the endpoint starts and warns, naming the file, not the secret', async () => {
    const loose = join(work, 'loose-keys');
    writeFileSync(loose, `${FILE_KEY.accessKeyId}:${FILE_KEY.secretAccessKey}\n`, { mode: 0o644 });
    const server = await serve(['--auth-file', loose], join(work, 'loose-endpoint'));
    server.run.child.kill('SIGTERM');
    const ended = await server.run.done;
    expect(ended.code).toBe(0);
    expect(ended.stderr).toContain(`snapline: warning: ${loose} holds secrets and is readable by group or others; run: chmod 600 ${loose}`);
  });
});

describe('the built-in local connection', () => {
  it('keeps working: it starts its own endpoint without --auth, and its files are readable by the owner only', async () => {
    const data = join(work, 'local-data');
    const image = join(work, 'local.img');
    writeImage(image, { label: 'security/local', blocks: 3 });
    const env = { XDG_CONFIG_HOME: join(work, 'config') };
    const backup = await runCli(['--connection', 'local', '--json', '--no-progress', 'backup', image], { dataDir: data, cwd: work, env });
    expect({ code: backup.code, stderr: backup.stderr }).toMatchObject({ code: 0 });
    const { snapshotId } = (JSON.parse(backup.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!;
    const target = join(work, 'local-restored.img');
    const restore = await runCli(['--connection', 'local', '--no-progress', 'restore', snapshotId, target], { dataDir: data, cwd: work, env });
    expect({ code: restore.code, stderr: restore.stderr }).toMatchObject({ code: 0 });

    // Everything under the data directory (index, endpoint catalog, packs, token secret), and the restored image.
    const loose: string[] = [];
    const visit = (path: string) => {
      const mode = statSync(path).mode & 0o777;
      const isDir = statSync(path).isDirectory();
      if ((mode & 0o077) !== 0) loose.push(`${path} ${mode.toString(8)}`);
      if (isDir) for (const entry of readdirSync(path)) visit(join(path, entry));
    };
    visit(data);
    visit(target);
    expect(loose).toEqual([]);
    expect(readdirSync(join(data, 'endpoint')).sort()).toEqual(expect.arrayContaining(['catalog.sqlite', 'packs', 'token-secret']));
    expect(existsSync(join(data, 'index.db'))).toBe(true);
  });
});

describe('TLS', () => {
  it('is verified by default: an HTTPS endpoint whose CA is unknown is refused (exit 6); trusting its CA through a connection works', async () => {
    const server = await serve(['--tls'], join(work, 'tls-endpoint'));
    try {
      expect(server.url).toMatch(/^https:/);
      const image = join(work, 'tls.img');
      writeImage(image, { label: 'security/tls', blocks: 2 });
      const refused = await cliAs(KEY, server.url, ['backup', image], join(work, 'tls-index.db'));
      expect({ code: refused.code, stderr: refused.stderr }).toMatchObject({ code: ExitCodes.UNREACHABLE });
      expect(refused.stderr).toMatch(/TLS verification of the endpoint failed \((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);

      const config = join(work, 'tls-config.yaml');
      const ca = join(work, 'tls-endpoint', 'ca.pem');
      writeFileSync(config, `connections:\n  tls-local:\n    region: ${REGION}\n    endpoint_url: ${server.url}\n    verify: ${ca}\n`, { mode: 0o600 });
      const trusted = await runCli(['--config', config, '--connection', 'tls-local', '--index', join(work, 'tls-index.db'), 'backup', image], {
        dataDir: join(work, 'data'),
        cwd: work,
        env: { AWS_ACCESS_KEY_ID: KEY.accessKeyId, AWS_SECRET_ACCESS_KEY: KEY.secretAccessKey },
      });
      expect({ code: trusted.code, stderr: trusted.stderr }).toMatchObject({ code: 0 });
    } finally {
      await stop(server);
    }
  });
});

describe('secrets in the output', () => {
  it('no run of this file printed a test secret (backup, restore, serve --auth, refusals, --verbose)', () => {
    const scanned = transcriptStats();
    // Runs after this one (none: it is last) would not be scanned; the file's runs are all above.
    expect(scanned.runsWithSecretAround).toBeGreaterThanOrEqual(8);
    expect(secretLeaks()).toEqual([]);
  });
});
