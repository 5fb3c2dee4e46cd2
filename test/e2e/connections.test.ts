/**
 * Connections as a user meets them: the real CLI (`node bin/snapline.js`,
 * built by ./global-setup.ts) in child processes, a config file in a temp
 * directory, and `snapline serve --tls` (another child) as the HTTPS
 * endpoint, trusted through its CA by path, inline, or not at all. Every run
 * of the CLI here has its stdout and stderr scanned for the config's secrets.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCodes } from '../../src/errors.js';
import { BIN, hermeticEnv, runCli, secretLeaks, transcriptStats, watchForSecret, type CliResult } from '../support/cli.js';

/** Secrets written into the config file: none may ever be printed. */
const SECRET_KEY = `sk-${randomBytes(12).toString('hex')}`;
const SESSION_TOKEN = `st-${randomBytes(12).toString('hex')}`;
const SSE_C_KEY = randomBytes(32).toString('base64');
for (const secret of [SECRET_KEY, SESSION_TOKEN, SSE_C_KEY]) watchForSecret(secret);
/** The key the TLS endpoint checks signatures against. */
const ACCESS_KEY_ID = 'AKIASNAPLINEE2ETEST1';

let work: string;
let configFile: string;
let tlsDataDir: string;
let serveChild: ChildProcess | undefined;
let endpointUrl = '';
let caPem = '';

/** Data (and, under it, the default config directory) of every run here. */
const dataDir = () => join(work, 'data');

function snapline(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCli(['--no-progress', ...args], { dataDir: dataDir(), env, cwd: work });
}

/** `--config FILE` and the rest. */
function withConfig(...args: string[]): Promise<CliResult> {
  return snapline(['--config', configFile, ...args]);
}

function expectExit(run: CliResult, code: number): void {
  expect({ code: run.code, stdout: run.stdout, stderr: run.stderr }).toMatchObject({ code });
}

function indented(text: string, spaces: number): string {
  return text.trimEnd().replace(/^/gm, ' '.repeat(spaces));
}

/** A 2 MiB image, half random, half zeros (made once). */
function sampleImage(): string {
  const image = join(work, 'disk.img');
  if (!existsSync(image)) writeFileSync(image, Buffer.concat([randomBytes(1024 * 1024), Buffer.alloc(1024 * 1024)]));
  return image;
}

function writeConfig(text: string, mode = 0o600): void {
  writeFileSync(configFile, text, { mode });
  chmodSync(configFile, mode);
}

/** The config file of most tests: the TLS endpoint reached four ways. */
function standardConfig(): string {
  const keys = `    access_key_id: ${ACCESS_KEY_ID}\n    secret_access_key: ${SECRET_KEY}\n`;
  return `connections:
  tls-path:
    region: us-east-1
    endpoint_url: ${endpointUrl}
${keys}    session_token: ${SESSION_TOKEN}
    verify: ${join(tlsDataDir, 'ca.pem')}
    archive:
      attributes:
        x-amz-server-side-encryption-customer-algorithm: AES256
        x-amz-server-side-encryption-customer-key: ${SSE_C_KEY}
  tls-inline:
    region: us-east-1
    endpoint_url: ${endpointUrl}
${keys}    tls_ca_chain:
      - |
${indented(caPem, 8)}
  tls-none:
    region: us-east-1
    endpoint_url: ${endpointUrl}
${keys}  tls-off:
    region: us-east-1
    endpoint_url: ${endpointUrl}
${keys}    verify: false
  wrong-secret:
    region: us-east-1
    endpoint_url: ${endpointUrl}
    verify: ${join(tlsDataDir, 'ca.pem')}
    access_key_id: ${ACCESS_KEY_ID}
    secret_access_key: not-${SECRET_KEY}
`;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snapline-connections-e2e-'));
  configFile = join(work, 'config.yaml');
  tlsDataDir = join(work, 'tls-endpoint');
  mkdirSync(join(dataDir(), 'config'), { recursive: true });
  // The session token is part of what the endpoint would see; it checks the key id and secret only.
  writeFileSync(join(work, 'keys'), `${ACCESS_KEY_ID}:${SECRET_KEY}\n`, { mode: 0o600 });
  serveChild = spawn(process.execPath, [BIN, 'serve', '--tls', '--port', '0', '--data-dir', tlsDataDir, '--auth-file', join(work, 'keys')], {
    cwd: work,
    env: hermeticEnv(dataDir()),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  serveChild.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  endpointUrl = await new Promise<string>((resolve, reject) => {
    serveChild!.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      const url = /listening on (https:\/\/\S+)/.exec(out)?.[1];
      if (url !== undefined) resolve(url);
    });
    serveChild!.on('exit', (code) => reject(new Error(`serve --tls exited with ${code}: ${err}`)));
  });
  caPem = readFileSync(join(tlsDataDir, 'ca.pem'), 'utf8');
  writeConfig(standardConfig());
});

afterAll(async () => {
  if (serveChild !== undefined && serveChild.exitCode === null) {
    const exited = new Promise((resolve) => serveChild!.on('exit', resolve));
    serveChild.kill('SIGTERM');
    await exited;
  }
  if (work !== undefined) rmSync(work, { recursive: true, force: true });
});

describe('serve --tls', () => {
  it('listens on https and keeps its CA in the data directory, readable by the owner only', () => {
    expect(endpointUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(caPem).toMatch(/^-----BEGIN CERTIFICATE-----/);
    expect(statSync(join(tlsDataDir, 'ca.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(tlsDataDir, 'ca-key.pem')).mode & 0o777).toBe(0o600);
  });
});

describe('HTTPS with the local endpoint', () => {
  it('the CA by path: every service reachable', async () => {
    const run = await withConfig('connections', 'test', 'tls-path');
    expectExit(run, 0);
    expect(run.stdout).toMatch(/^sts\s+reachable\s+sts:GetCallerIdentity/m);
    expect(run.stdout).toMatch(/^ec2\s+reachable\s+ec2:DescribeSnapshots/m);
    expect(run.stdout).toMatch(/^ebs\s+reachable\s+ebs:ListSnapshotBlocks/m);
    expect(run.stdout).toContain('all services reachable');
  });

  it('the CA inline (tls_ca_chain): every service reachable, in JSON too', async () => {
    const run = await withConfig('--json', 'connections', 'test', 'tls-inline');
    expectExit(run, 0);
    const result = JSON.parse(run.stdout) as { ok: boolean; results: { service: string; outcome: string; endpoint: string }[] };
    expect(result.ok).toBe(true);
    expect(result.results.map((r) => [r.service, r.outcome, r.endpoint])).toEqual([
      ['sts', 'reachable', endpointUrl],
      ['ec2', 'reachable', endpointUrl],
      ['ebs', 'reachable', endpointUrl],
    ]);
  });

  it('without the CA the connection is refused: exit 6 and a message about TLS', async () => {
    const test = await withConfig('connections', 'test', 'tls-none');
    expectExit(test, ExitCodes.UNREACHABLE);
    expect(test.stdout).toMatch(/^ebs\s+unreachable\s+.*TLS verification of the endpoint failed/m);
    const command = await withConfig('--connection', 'tls-none', '--index', join(work, 'tls-none.db'), 'backup', '--dry-run', sampleImage());
    expectExit(command, ExitCodes.UNREACHABLE);
    expect(command.stderr).toMatch(/snapline: error: .*TLS verification of the endpoint failed \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
  });

  it('verify: false works and warns on every run', async () => {
    const runs = [
      await withConfig('connections', 'test', 'tls-off'),
      await withConfig('--connection', 'tls-off', '--index', join(work, 'tls-off.db'), 'backup', '--dry-run', sampleImage()),
    ];
    for (const result of runs) {
      expectExit(result, 0);
      expect(result.stderr).toContain('snapline: warning: connection tls-off: TLS certificate verification is off (verify: false)');
    }
  });

  it('a wrong secret is permission denied, per service', async () => {
    const run = await withConfig('connections', 'test', 'wrong-secret');
    expectExit(run, ExitCodes.REMOTE);
    for (const service of ['sts', 'ec2', 'ebs']) expect(run.stdout).toMatch(new RegExp(`^${service}\\s+permission denied`, 'm'));
  });
});

describe('the config file through the CLI', () => {
  const other = () => join(work, 'other.yaml');
  const run = (text: string, ...args: string[]) => {
    writeFileSync(other(), text, { mode: 0o600 });
    return snapline(['--config', other(), ...args]);
  };

  it('a syntax error: exit 2, the file, line and column', async () => {
    const result = await run(`connections:\n  a:\n    secret_access_key: [${SECRET_KEY}\n`, 'connections', 'list');
    expectExit(result, ExitCodes.USAGE);
    expect(result.stderr).toMatch(new RegExp(`snapline: error: ${other().replace(/[.]/g, '\\.')}:\\d+:\\d+: YAML syntax error`));
  });

  it('a wrong type: exit 2, naming the file, line, connection and field', async () => {
    const result = await run('connections:\n  a:\n    region: eu-west-1\n    max_sockets: lots\n', '--connection', 'a', 'snapshots');
    expectExit(result, ExitCodes.USAGE);
    expect(result.stderr).toContain(`snapline: error: ${other()}:4: connection a: max_sockets: must be a whole number from 1 to 4096, got a string`);
  });

  it('an unknown connection: exit 2 and a did-you-mean', async () => {
    const result = await withConfig('--connection', 'tls-pth', 'snapshots');
    expectExit(result, ExitCodes.USAGE);
    expect(result.stderr).toContain('unknown connection "tls-pth" (did you mean tls-path?)');
  });

  it('SNAPLINE_CONNECTION chooses the connection, --connection wins over it', async () => {
    const fromEnv = await snapline(['--config', configFile, '--json', 'connections', 'show'], { SNAPLINE_CONNECTION: 'tls-inline' });
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ name: 'tls-inline' });
    const fromFlag = await snapline(['--config', configFile, '--connection', 'tls-path', '--json', 'connections', 'show'], { SNAPLINE_CONNECTION: 'tls-inline' });
    expect(JSON.parse(fromFlag.stdout)).toMatchObject({ name: 'tls-path' });
  });

  it('a missing file named by --config or SNAPLINE_CONFIG: exit 2', async () => {
    const missing = join(work, 'missing.yaml');
    const byFlag = await snapline(['--config', missing, 'connections', 'list']);
    expectExit(byFlag, ExitCodes.USAGE);
    expect(byFlag.stderr).toContain(`config file ${missing} does not exist`);
    const byEnv = await snapline(['connections', 'list'], { SNAPLINE_CONFIG: missing });
    expectExit(byEnv, ExitCodes.USAGE);
  });

  it('no file at the default place: only the built-in connection', async () => {
    const result = await snapline(['connections', 'list']);
    expectExit(result, 0);
    expect(result.stdout).toContain(`config file: ${join(dataDir(), 'config', 'snapline', 'config.yaml')} (none yet`);
    expect(result.stdout).toMatch(/^local\s+us-east-1/m);
  });

  it('an unknown key is a warning, and the command still runs', async () => {
    const result = await run(`connections:\n  a:\n    region: us-east-1\n    colour: blue\n`, 'connections', 'show', 'a');
    expectExit(result, 0);
    expect(result.stderr).toContain(`snapline: warning: ${other()}:4: connection a: colour: unknown key, ignored`);
  });

  it('a misspelt setting is an error naming the setting meant (not "no region"); list does not call the connection ok', async () => {
    const regoin = `connections:\n  dev:\n    regoin: eu-west-1\n`;
    const used = await run(regoin, '--connection', 'dev', 'snapshots');
    expectExit(used, ExitCodes.USAGE);
    expect(used.stderr).toContain(`snapline: error: ${other()}:3: connection dev: regoin: unknown key (did you mean region?)`);
    expect(used.stderr).not.toContain('has no region');
    const listed = await run(regoin, 'connections', 'list');
    expectExit(listed, 0);
    expect(listed.stdout).toMatch(/^dev\s+-\s+-\s+default chain\s+invalid \(1 problem: `snapline --config \S+ connections show dev`\)$/m);

    const acces = `connections:\n  dev:\n    region: eu-west-1\n    acces_key_id: AKIAEXAMPLE123456789\n    secret_access_key: ${SECRET_KEY}\n`;
    const shown = await run(acces, 'connections', 'show', 'dev');
    expectExit(shown, ExitCodes.USAGE);
    expect(shown.stderr).toContain(`${other()}:4: connection dev: acces_key_id: unknown key (did you mean access_key_id?)`);
    expect(shown.stderr).toContain(`${other()}:5: connection dev: secret_access_key: access_key_id and secret_access_key go together`);
    const json = await run(acces, '--json', 'connections', 'list');
    expect(JSON.parse(json.stdout)).toMatchObject({ connections: [{ name: 'local', valid: true }, { name: 'dev', valid: false }] });
  });

  it('a file others may read is warned about, like ssh; owner-only is quiet', async () => {
    writeConfig(standardConfig(), 0o644);
    try {
      const open = await withConfig('connections', 'list');
      expectExit(open, 0);
      expect(open.stderr).toContain(`snapline: warning: ${configFile}: the config file is accessible by group or others (mode 0644)`);
    } finally {
      writeConfig(standardConfig(), 0o600);
    }
    const closed = await withConfig('connections', 'list');
    expect(closed.stderr).not.toContain('accessible by group or others');
  });

  it('precedence on the command line: --region over AWS_REGION over the connection', async () => {
    const env = await snapline(['--config', configFile, '--json', 'connections', 'show', 'tls-path'], { AWS_REGION: 'eu-central-1' });
    expect(JSON.parse(env.stdout)).toMatchObject({ region: 'eu-central-1', sources: { region: 'AWS_REGION' } });
    expect(env.stderr).toContain('AWS_REGION (eu-central-1) overrides region of connection tls-path');
    const flag = await snapline(['--config', configFile, '--region', 'ap-east-1', '--json', 'connections', 'show', 'tls-path'], { AWS_REGION: 'eu-central-1' });
    expect(JSON.parse(flag.stdout)).toMatchObject({ region: 'ap-east-1', sources: { region: '--region' } });
  });
});

describe('secrets never printed', () => {
  it('show, list, test, snapshots and backup --dry-run, in text, JSON and verbose, succeeding and failing', async () => {
    const image = sampleImage();
    const index = join(work, 'index.db');
    const runs: string[][] = [
      ['connections', 'list'],
      ['--json', 'connections', 'list'],
      ['connections', 'show', 'tls-path'],
      ['--json', 'connections', 'show', 'tls-path'],
      ['--verbose', 'connections', 'test', 'tls-path'],
      ['--json', 'connections', 'test', 'tls-path'],
      ['--connection', 'tls-path', '--index', index, '--json', 'backup', image, '--volume', 'secrets'],
      ['--connection', 'tls-path', '--index', index, 'snapshots'],
      ['--connection', 'tls-path', '--index', index, '--json', 'snapshots'],
      ['--connection', 'tls-path', '--index', index, 'backup', '--dry-run', image, '--volume', 'secrets'],
      ['--connection', 'tls-path', '--index', index, '--verbose', '--json', 'backup', '--dry-run', image, '--volume', 'secrets'],
      ['--connection', 'tls-none', '--index', index, '--verbose', 'backup', '--dry-run', image],
      ['--connection', 'tls-none', '--index', index, '--verbose', '--json', 'snapshots'],
      ['--verbose', 'connections', 'test', 'wrong-secret'],
    ];
    const results = [];
    for (const args of runs) results.push(await withConfig(...args));
    // The runs did their work: the scan is not over empty output.
    expect(results[2]!.stdout).toContain('secret_access_key: <redacted>');
    expect(results[2]!.stdout).toContain('session_token: <redacted>');
    expect(results[2]!.stdout).toContain('x-amz-server-side-encryption-customer-key: <redacted>');
    expectExit(results[6]!, 0);
    const { snapshotId } = (JSON.parse(results[6]!.stdout) as { backups: Array<{ snapshotId: string }> }).backups[0]!;
    // snapshots reconciles the index with EC2 over HTTPS: the endpoint's state shows.
    expectExit(results[7]!, 0);
    expect(results[7]!.stdout).toMatch(new RegExp(`^secrets\\s+${snapshotId}\\s+-\\s+\\S+\\s+completed`, 'm'));
    expectExit(results[9]!, 0);
    expect(results[9]!.stdout).toMatch(/dry run/i);
    expectExit(results[11]!, ExitCodes.UNREACHABLE);

    expect(transcriptStats().runs).toBeGreaterThanOrEqual(runs.length);
    expect(secretLeaks()).toEqual([]);
  });
});
