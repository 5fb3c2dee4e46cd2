import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsClients } from '../aws/clients.js';
import { Ec2SnapshotCatalog } from '../aws/ec2.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { startEmulator } from '../emulator/index.js';
import { chosenConnection, openConnection, resolveNamed, type ConnectionRequest, type LocalEndpointStarter } from './connection.js';
import { describeConnection, REDACTED } from './describe.js';
import { configPath } from './paths.js';
import { createCertificateAuthority, issueServerCertificate } from '../emulator/tls/x509.js';

const SECRET = 'kQ9+secret/Value-that-must-not-leak';
const TOKEN = 'FwoGZXIvYXdzEXAMPLETOKEN-must-not-leak';
const SSE_KEY = 'c3NlLWMta2V5LXRoYXQtbXVzdC1ub3QtbGVhaw==';

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-connection-'));
  file = join(dir, 'config.yaml');
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function config(text: string): void {
  writeFileSync(file, text, { mode: 0o600 });
}

/** Resolves with only the given environment (none of the machine's). */
function resolve(name: string | undefined, flags: Partial<ConnectionRequest> = {}, env: NodeJS.ProcessEnv = {}) {
  return resolveNamed(name, { configPath: file, ...flags }, env);
}

/** For connections that must not start the local endpoint. */
const neverStarted: LocalEndpointStarter = () => Promise.reject(new Error('the local endpoint was started'));

function refusal(fn: () => unknown): SnaplineError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    return err as SnaplineError;
  }
  throw new Error('expected a refusal');
}

const PROD = `connections:
  prod:
    region: eu-west-1
    endpoint_url: https://all.example
    endpoint_urls: { ebs: https://ebs.example }
    access_key_id: AKIAEXAMPLE123456789
    secret_access_key: ${SECRET}
    session_token: ${TOKEN}
    retries: { mode: adaptive, max_attempts: 4 }
    connect_timeout: 3
    read_timeout: 30
    tcp_keepalive: 20
    max_sockets: 9
    archive:
      bucket: arch
      s3_uri_style: path
      attributes:
        x-amz-server-side-encryption-customer-algorithm: AES256
        x-amz-server-side-encryption-customer-key: ${SSE_KEY}
`;

describe('precedence: command-line flag > environment > connection > defaults', () => {
  it('the connection alone', () => {
    config(PROD);
    const resolved = resolve('prod');
    expect(resolved.settings).toEqual({
      name: 'prod',
      region: 'eu-west-1',
      endpointUrl: 'https://all.example',
      endpoints: { ebs: 'https://ebs.example' },
      credentials: { accessKeyId: 'AKIAEXAMPLE123456789', secretAccessKey: SECRET, sessionToken: TOKEN },
      retries: { mode: 'adaptive', maxAttempts: 4 },
      connectTimeoutMs: 3000,
      readTimeoutMs: 30_000,
      tcpKeepAliveMs: 20_000,
      maxSockets: 9,
      forcePathStyle: true,
    });
    expect(resolved.origins).toMatchObject({ region: 'connection', endpoint_url: 'connection', 'endpoint_urls.ebs': 'connection', credentials: 'connection', verify: 'default' });
    expect(resolved.warnings).toEqual([]);
  });

  it('region: --region, then AWS_REGION, then AWS_DEFAULT_REGION, then the connection', () => {
    config(PROD);
    expect(resolve('prod', { region: 'ap-south-1' }, { AWS_REGION: 'us-west-2' }).settings.region).toBe('ap-south-1');
    const fromEnv = resolve('prod', {}, { AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'us-east-2' });
    expect(fromEnv.settings.region).toBe('us-west-2');
    expect(fromEnv.origins.region).toBe('AWS_REGION');
    expect(fromEnv.warnings).toEqual(['AWS_REGION (us-west-2) overrides region of connection prod (the environment wins over the config file)']);
    expect(resolve('prod', {}, { AWS_DEFAULT_REGION: 'us-east-2' }).settings.region).toBe('us-east-2');
  });

  it('a connection without a region and nothing else to give one is refused', () => {
    config('connections:\n  bare:\n    profile: p\n');
    expect(refusal(() => resolve('bare')).message).toBe('connection bare has no region');
    expect(resolve('bare', {}, { AWS_REGION: 'eu-north-1' }).settings.region).toBe('eu-north-1');
    expect(refusal(() => resolve(undefined)).message).toBe('no AWS Region: pass --region or set AWS_REGION');
  });

  it('endpoints: --endpoint-url, then AWS_ENDPOINT_URL_<SERVICE>, then AWS_ENDPOINT_URL, then endpoint_urls, then endpoint_url', () => {
    config(PROD);
    const flag = resolve('prod', { endpointUrl: 'http://flag' }, { AWS_ENDPOINT_URL: 'http://env', AWS_ENDPOINT_URL_EBS: 'http://env-ebs' });
    expect(flag.settings.endpointUrl).toBe('http://flag');
    expect(flag.settings.endpoints).toBeUndefined();
    const serviceEnv = resolve('prod', {}, { AWS_ENDPOINT_URL_EBS: 'http://env-ebs', AWS_ENDPOINT_URL_S3: 'http://env-s3' });
    expect(serviceEnv.settings.endpointUrl).toBe('https://all.example');
    expect(serviceEnv.settings.endpoints).toEqual({ ebs: 'http://env-ebs', s3: 'http://env-s3' });
    expect(serviceEnv.origins['endpoint_urls.ebs']).toBe('AWS_ENDPOINT_URL_EBS');
    const globalEnv = resolve('prod', {}, { AWS_ENDPOINT_URL: 'http://env' });
    expect(globalEnv.settings.endpointUrl).toBe('http://env');
    expect(globalEnv.settings.endpoints).toBeUndefined();
    expect(globalEnv.warnings).toEqual([
      'AWS_ENDPOINT_URL (http://env) overrides endpoint_url of connection prod (the environment wins over the config file)',
      'AWS_ENDPOINT_URL (http://env) overrides the ebs endpoint of connection prod (the environment wins over the config file)',
    ]);
    const clients = new AwsClients(serviceEnv.settings);
    try {
      expect(clients.endpointFor('ebs')).toBe('http://env-ebs');
      expect(clients.endpointFor('ec2')).toBe('https://all.example');
    } finally {
      clients.destroy();
    }
  });

  it('credentials are chosen whole: AWS_PROFILE, then the environment keys, then the connection', () => {
    config(PROD);
    const profile = resolve('prod', {}, { AWS_PROFILE: 'other', AWS_ACCESS_KEY_ID: 'AKIAENV', AWS_SECRET_ACCESS_KEY: 'env-secret' });
    expect(profile.settings.credentials).toEqual({ profile: 'other' });
    expect(profile.warnings).toEqual(['AWS_PROFILE (other) overrides the credentials of connection prod (the environment wins over the config file)']);
    const keys = resolve('prod', {}, { AWS_ACCESS_KEY_ID: 'AKIAENV', AWS_SECRET_ACCESS_KEY: 'env-secret', AWS_SESSION_TOKEN: 'env-token' });
    expect(keys.settings.credentials).toEqual({ accessKeyId: 'AKIAENV', secretAccessKey: 'env-secret', sessionToken: 'env-token' });
    expect(keys.warnings.join('\n')).not.toContain('env-secret');
    // Half a key pair in the environment does not count.
    expect(resolve('prod', {}, { AWS_ACCESS_KEY_ID: 'AKIAENV' }).settings.credentials).toMatchObject({ secretAccessKey: SECRET });
  });

  it('a connection without credentials leaves them to the SDK default chain', () => {
    config('connections:\n  chain:\n    region: eu-west-1\n');
    const resolved = resolve('chain', {}, { AWS_PROFILE: 'whatever' });
    expect(resolved.settings.credentials).toBeUndefined();
    expect(resolved.origins.credentials).toBe('default chain');
    expect(resolved.warnings).toEqual([]);
  });

  it('a role is assumed on top of the chosen credentials', () => {
    config('connections:\n  role:\n    region: eu-west-1\n    profile: base\n    role_arn: arn:aws:iam::123456789012:role/r\n    external_id: xid\n');
    expect(resolve('role').settings).toMatchObject({
      credentials: { profile: 'base' },
      assumeRole: { roleArn: 'arn:aws:iam::123456789012:role/r', externalId: 'xid' },
    });
  });

  it('retries: AWS_RETRY_MODE and AWS_MAX_ATTEMPTS win over the connection and are checked', () => {
    config(PROD);
    expect(resolve('prod', {}, { AWS_RETRY_MODE: 'standard', AWS_MAX_ATTEMPTS: '2' }).settings.retries).toEqual({ mode: 'standard', maxAttempts: 2 });
    expect(refusal(() => resolve('prod', {}, { AWS_RETRY_MODE: 'legacy' })).message).toContain('AWS_RETRY_MODE must be standard or adaptive');
    expect(refusal(() => resolve('prod', {}, { AWS_MAX_ATTEMPTS: 'lots' })).message).toContain('AWS_MAX_ATTEMPTS must be a whole number');
  });

  it('the connection: --connection over SNAPLINE_CONNECTION; the file: --config over SNAPLINE_CONFIG over XDG_CONFIG_HOME', () => {
    expect(chosenConnection({ connection: 'a' }, { SNAPLINE_CONNECTION: 'b' })).toBe('a');
    expect(chosenConnection({}, { SNAPLINE_CONNECTION: 'b' })).toBe('b');
    expect(chosenConnection({}, {})).toBeUndefined();
    expect(configPath('/flag.yaml', { SNAPLINE_CONFIG: '/env.yaml' })).toEqual({ path: '/flag.yaml', explicit: true });
    expect(configPath(undefined, { SNAPLINE_CONFIG: '/env.yaml', XDG_CONFIG_HOME: '/xdg' })).toEqual({ path: '/env.yaml', explicit: true });
    expect(configPath(undefined, { XDG_CONFIG_HOME: '/xdg' })).toEqual({ path: '/xdg/snapline/config.yaml', explicit: false });
    expect(configPath(undefined, {}).path).toMatch(/\.config\/snapline\/config\.yaml$/);
  });

  it('SNAPLINE_CONFIG names the file when --config does not', () => {
    config('connections:\n  viaenv:\n    region: sa-east-1\n');
    expect(resolveNamed('viaenv', {}, { SNAPLINE_CONFIG: file }).settings.region).toBe('sa-east-1');
  });

  it('without a connection: the environment, then the defaults', () => {
    const resolved = resolve(undefined, {}, { AWS_REGION: 'eu-west-3', AWS_ENDPOINT_URL: 'http://x', AWS_PROFILE: 'p' });
    expect(resolved.name).toBe('default');
    expect(resolved.settings).toEqual({ name: 'default', region: 'eu-west-3', endpointUrl: 'http://x' });
  });

  it('local is built in and ignores the environment; --region and --endpoint-url still win', () => {
    const resolved = resolve('local', {}, { AWS_REGION: 'eu-west-1', AWS_ENDPOINT_URL: 'http://elsewhere', AWS_PROFILE: 'p' });
    expect(resolved.settings).toMatchObject({ name: 'local', region: 'us-east-1', forcePathStyle: true });
    expect(resolved.settings.endpointUrl).toBeUndefined();
    expect(resolve('local', { region: 'eu-west-1', endpointUrl: 'http://127.0.0.1:9' }).settings).toMatchObject({ region: 'eu-west-1', endpointUrl: 'http://127.0.0.1:9' });
  });
});

describe('choosing a connection', () => {
  it('an unknown connection is refused with the file and a did-you-mean', () => {
    config(PROD);
    const error = refusal(() => resolve('prd'));
    expect(error.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(error.message).toBe(`unknown connection "prd" (did you mean prod?): ${file} does not define it`);
    expect(error.hint).toContain('known connections: prod, local');
  });

  it('a named connection without a config file says where it looked', () => {
    const error = refusal(() => resolveNamed('prod', {}, { XDG_CONFIG_HOME: dir }));
    expect(error.message).toBe(`unknown connection "prod": there is no config file at ${join(dir, 'snapline', 'config.yaml')}`);
  });

  it('a config file named by --config must exist', () => {
    expect(refusal(() => resolve('prod')).message).toBe(`config file ${file} does not exist`);
  });

  it('an invalid connection is refused with all its problems', () => {
    config('connections:\n  bad:\n    region: 1\n    max_sockets: 0\n');
    const error = refusal(() => resolve('bad'));
    expect(error.code).toBe(ErrorCodes.CONFIG_INVALID);
    expect(error.message).toContain(`connection bad in ${file} has 2 problems:`);
    expect(error.message).toContain(`${file}:3: connection bad: region:`);
    expect(error.message).toContain(`${file}:4: connection bad: max_sockets:`);
  });

  it('openConnection tells every warning: the file, the connection, the environment', async () => {
    writeFileSync(file, 'connections:\n  w:\n    region: eu-west-1\n    regoin: x\n    verify: false\n', { mode: 0o644 });
    const warnings: string[] = [];
    const open = await openConnection({ configPath: file, connection: 'w', onWarning: (m) => warnings.push(m) }, neverStarted, { AWS_REGION: 'us-east-1' });
    await open.close();
    expect(warnings).toEqual([
      expect.stringContaining('accessible by group or others'),
      expect.stringContaining('connection w: regoin: unknown key'),
      expect.stringContaining('AWS_REGION (us-east-1) overrides region of connection w'),
      expect.stringContaining('connection w: TLS certificate verification is off (verify: false)'),
    ]);
    expect(open.settings.tls).toEqual({ rejectUnauthorized: false });
  });
});

describe('the local connection', () => {
  it('starts its endpoint with the starter it is handed, in the local data directory, and stops it on close', async () => {
    const started: string[] = [];
    let stopped = false;
    const starter: LocalEndpointStarter = async (dataDir) => {
      started.push(dataDir);
      const emulator = await startEmulator({ dataDir, host: '127.0.0.1', port: 0, log: () => undefined });
      return { url: emulator.url, close: () => ((stopped = true), emulator.close()) };
    };
    const open = await openConnection({ connection: 'local' }, starter, { SNAPLINE_DATA_DIR: dir, SNAPLINE_LOCAL_PORT: '0' });
    try {
      expect(started).toEqual([join(dir, 'endpoint')]);
      expect(open.localEndpoint).toMatchObject({ via: 'in-process', url: open.settings.endpointUrl });
      expect(open.localEndpoint?.store).toBeDefined();
    } finally {
      await open.close();
    }
    expect(stopped).toBe(true);
  });

  it('starts nothing when an endpoint URL is given', async () => {
    const open = await openConnection({ connection: 'local', endpointUrl: 'http://127.0.0.1:9' }, neverStarted, { SNAPLINE_DATA_DIR: dir });
    await open.close();
    expect(open.localEndpoint).toBeUndefined();
  });
});

describe('connections show', () => {
  it('redacts the secret key, the session token and secret request headers, and masks the key id', () => {
    config(PROD);
    const description = describeConnection(resolve('prod'));
    const text = JSON.stringify(description);
    for (const secret of [SECRET, TOKEN, SSE_KEY, 'AKIAEXAMPLE123456789']) expect(text).not.toContain(secret);
    expect(description).toMatchObject({
      name: 'prod',
      source: file,
      credentials: { access_key_id: '****************6789', secret_access_key: REDACTED, session_token: REDACTED },
      archive: {
        attributes: { 'x-amz-server-side-encryption-customer-algorithm': 'AES256', 'x-amz-server-side-encryption-customer-key': REDACTED },
      },
      retries: { mode: 'adaptive', max_attempts: 4 },
      sources: { region: 'connection' },
    });
  });
});

describe('TLS settings against a real HTTPS server', () => {
  const ca = createCertificateAuthority({ commonName: 'snapline test CA', days: 2 });
  const other = createCertificateAuthority({ commonName: 'someone else', days: 2 });
  let server: https.Server;
  let url: string;
  beforeAll(async () => {
    const leaf = issueServerCertificate(ca, { commonName: '127.0.0.1', hosts: ['127.0.0.1'], days: 1 });
    server = https.createServer({ key: leaf.key, cert: leaf.cert }, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/xml' });
        res.end('<GetEbsEncryptionByDefaultResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><ebsEncryptionByDefault>false</ebsEncryptionByDefault></GetEbsEncryptionByDefaultResponse>');
      });
    });
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  async function call(tlsLines: string, env: NodeJS.ProcessEnv = {}): Promise<boolean> {
    config(`connections:\n  tls:\n    region: us-east-1\n    endpoint_url: ${url}\n    access_key_id: AKIAEXAMPLE123456789\n    secret_access_key: s\n${tlsLines}`);
    const clients = new AwsClients(resolve('tls', {}, env).settings);
    try {
      return await new Ec2SnapshotCatalog(clients.ec2Requests()).encryptionByDefault();
    } finally {
      clients.destroy();
    }
  }
  const inline = (pem: string) => `    tls_ca_chain:\n      - |\n${pem.trimEnd().replace(/^/gm, '        ')}\n`;

  it('verify with a CA bundle path trusts the server', async () => {
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    await expect(call('    verify: ca.pem\n')).resolves.toBe(false);
  });

  it('tls_ca_chain inline trusts the server', async () => {
    await expect(call(inline(other.cert) + inline(ca.cert).replace('    tls_ca_chain:\n', ''))).resolves.toBe(false);
  });

  it('without the CA the call is refused as unreachable, saying TLS', async () => {
    const error = await call('').catch((err: unknown) => err as SnaplineError);
    expect(error).toBeInstanceOf(SnaplineError);
    expect((error as SnaplineError).code).toBe(ErrorCodes.ENDPOINT_UNREACHABLE);
    expect((error as SnaplineError).message).toMatch(/TLS verification of the endpoint failed/);
  });

  it('a CA that did not sign the server does not help', async () => {
    await expect(call(inline(other.cert))).rejects.toMatchObject({ code: ErrorCodes.ENDPOINT_UNREACHABLE });
  });

  it('verify: false trusts anything', async () => {
    await expect(call('    verify: false\n')).resolves.toBe(false);
  });

  it('AWS_CA_BUNDLE wins over the connection and is named when unreadable', async () => {
    writeFileSync(join(dir, 'ca.pem'), ca.cert);
    await expect(call('    verify: /nonexistent/ca.pem\n', { AWS_CA_BUNDLE: join(dir, 'ca.pem') })).resolves.toBe(false);
    await expect(call('', { AWS_CA_BUNDLE: join(dir, 'missing.pem') })).rejects.toThrow(`AWS_CA_BUNDLE: cannot read the CA bundle ${join(dir, 'missing.pem')} (ENOENT)`);
  });

  it('an unreadable or empty CA bundle names the file, line, connection and field', async () => {
    await expect(call('    verify: missing.pem\n')).rejects.toThrow(new RegExp(`${file}:7: connection tls: verify: cannot read the CA bundle ${join(dir, 'missing.pem')} \\(ENOENT\\)`));
    writeFileSync(join(dir, 'empty.pem'), 'nothing here');
    await expect(call('    verify: empty.pem\n')).rejects.toThrow(/connection tls: verify: the CA bundle .*empty\.pem holds no PEM certificate/);
  });
});
