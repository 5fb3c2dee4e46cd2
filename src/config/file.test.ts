import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { loadConfigFile, type ConfigFile } from './file.js';
import { createCertificateAuthority } from '../emulator/tls/x509.js';

const SECRET = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-config-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function write(text: string, mode = 0o600): string {
  const path = join(dir, 'config.yaml');
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

function load(text: string, mode = 0o600): ConfigFile {
  return loadConfigFile(write(text, mode), { required: true });
}

/** The CONFIG_INVALID error loading `text` throws. */
function refusal(text: string): SnaplineError {
  try {
    load(text);
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    expect((err as SnaplineError).code).toBe(ErrorCodes.CONFIG_INVALID);
    return err as SnaplineError;
  }
  throw new Error('expected the file to be refused');
}

/** The errors of connection `name`, which must be invalid. */
function errorsOf(text: string, name: string): string[] {
  const entry = load(text).connections.get(name);
  expect(entry, `connection ${name}`).toBeDefined();
  expect(entry!.config).toBeUndefined();
  return entry!.errors;
}

describe('loadConfigFile', () => {
  it('reads every field of a connection', () => {
    const ca = createCertificateAuthority({ commonName: 'test CA', days: 1 }).cert;
    const file = load(`
connections:
  prod:
    region: eu-west-1
    endpoint_url: https://ceph.example:8443
    endpoint_urls:
      ebs: https://ebs.example
      ec2: https://ec2.example
      s3: https://s3.example
      sts: https://sts.example
      glacier: https://glacier.example
      ecs: https://ecs.example
      logs: https://logs.example
    access_key_id: AKIAEXAMPLE123456789
    secret_access_key: ${SECRET}
    session_token: token-abc
    role_arn: arn:aws:iam::123456789012:role/snapline-backup
    external_id: ext-1234
    role_session_name: nightly
    duration_seconds: 1800
    verify: ca/bundle.pem
    tls_ca_chain:
      - |
${ca.trimEnd().replace(/^/gm, '        ')}
    retries: { mode: adaptive, max_attempts: 7 }
    connect_timeout: 5
    read_timeout: 120.5
    tcp_keepalive: 30
    max_sockets: 128
    archive:
      bucket: snap-archive
      path: backups/db
      s3_uri_style: path
      storage_class: GLACIER_IR
      vault: old-vault
      delete_older_than_days: 400
      attributes:
        x-amz-server-side-encryption-customer-algorithm: AES256
        x-amz-server-side-encryption-customer-key: c2VjcmV0
    ecs:
      cluster: restore
      task_definition: snapline-worker:3
      subnets: [subnet-1, subnet-2]
      security_groups: [sg-1]
      assign_public_ip: false
      capacity_provider_strategy:
        - { capacity_provider: FARGATE_SPOT, weight: 3, base: 1 }
      log_group: /snapline/restore
      log_stream_prefix: worker
`);
    expect(file.warnings).toEqual([]);
    const entry = file.connections.get('prod')!;
    expect(entry.errors).toEqual([]);
    expect(entry.warnings).toEqual([]);
    expect(entry.config).toEqual({
      region: 'eu-west-1',
      endpointUrl: 'https://ceph.example:8443',
      endpointUrls: {
        ebs: 'https://ebs.example',
        ec2: 'https://ec2.example',
        s3: 'https://s3.example',
        sts: 'https://sts.example',
        glacier: 'https://glacier.example',
        ecs: 'https://ecs.example',
        logs: 'https://logs.example',
      },
      keys: { accessKeyId: 'AKIAEXAMPLE123456789', secretAccessKey: SECRET, sessionToken: 'token-abc' },
      role: { roleArn: 'arn:aws:iam::123456789012:role/snapline-backup', externalId: 'ext-1234', sessionName: 'nightly', durationSeconds: 1800 },
      verify: join(dir, 'ca', 'bundle.pem'),
      tlsCaChain: [ca],
      retries: { mode: 'adaptive', maxAttempts: 7 },
      connectTimeoutSeconds: 5,
      readTimeoutSeconds: 120.5,
      tcpKeepAlive: 30,
      maxSockets: 128,
      archive: {
        bucket: 'snap-archive',
        path: 'backups/db',
        s3UriStyle: 'path',
        storageClass: 'GLACIER_IR',
        vault: 'old-vault',
        deleteOlderThanDays: 400,
        attributes: { 'x-amz-server-side-encryption-customer-algorithm': 'AES256', 'x-amz-server-side-encryption-customer-key': 'c2VjcmV0' },
      },
      ecs: {
        cluster: 'restore',
        taskDefinition: 'snapline-worker:3',
        subnets: ['subnet-1', 'subnet-2'],
        securityGroups: ['sg-1'],
        assignPublicIp: false,
        capacityProviderStrategy: [{ capacityProvider: 'FARGATE_SPOT', weight: 3, base: 1 }],
        logGroup: '/snapline/restore',
        logStreamPrefix: 'worker',
      },
    });
  });

  it('an empty file, or one without connections, defines none', () => {
    expect(load('').connections.size).toBe(0);
    expect(load('# nothing yet\n').connections.size).toBe(0);
    expect(load('connections:\n').connections.size).toBe(0);
  });

  it('a missing file is empty at the default path and an error when named', () => {
    const path = join(dir, 'absent.yaml');
    expect(loadConfigFile(path, { required: false })).toMatchObject({ exists: false, connections: new Map() });
    expect(() => loadConfigFile(path, { required: true })).toThrow(`config file ${path} does not exist`);
    expect(() => loadConfigFile(dir, { required: true })).toThrow('is a directory');
  });

  it('a syntax error names the file, line and column, and never quotes the text', () => {
    const error = refusal(`connections:\n  prod:\n    region: eu-west-1\n    secret_access_key: [${SECRET}\n`);
    expect(error.message).toMatch(new RegExp(`^${escape(join(dir, 'config.yaml'))}:\\d+:\\d+: YAML syntax error: .+\\([A-Z_]+\\)`));
    expect(JSON.stringify({ message: error.message, details: error.details })).not.toContain(SECRET);
  });

  it('a bad escape next to a secret does not show the secret either', () => {
    const error = refusal(`connections:\n  prod:\n    secret_access_key: "${SECRET}\\q"\n`);
    expect(error.message).toContain(':3:');
    expect(error.message).toContain('BAD_DQ_ESCAPE');
    expect(error.message).not.toContain(SECRET);
  });

  it('a key given twice is refused with its line', () => {
    const error = refusal('connections:\n  prod:\n    region: a\n    region: b\n');
    expect(error.message).toMatch(/config\.yaml:4:\d+: YAML syntax error: a key given twice/);
  });

  it('the file must be a mapping, connections too', () => {
    expect(refusal('- a\n- b\n').message).toContain('the file must be a mapping with a "connections" key');
    expect(refusal('connections: [prod]\n').message).toMatch(/config\.yaml:1: connections: must be a mapping, got a list/);
  });

  it('an unknown key is a warning, with a did-you-mean when it is near a key that is set', () => {
    const file = load('conections: {}\nconnections:\n  prod:\n    region: eu-west-1\n    regoin: eu-west-2\n    retries: { mode: standard, mdoe: adaptive }\n    zzzz: 1\n');
    expect(file.warnings).toEqual([expect.stringMatching(/config\.yaml:1: conections: unknown key, ignored \(did you mean connections\?\)$/)]);
    const entry = file.connections.get('prod')!;
    expect(entry.config).toBeDefined();
    expect(entry.warnings).toEqual([
      expect.stringMatching(/config\.yaml:5: connection prod: regoin: unknown key, ignored \(did you mean region\?\)$/),
      expect.stringMatching(/config\.yaml:6: connection prod: retries\.mdoe: unknown key, ignored \(did you mean mode\?\)$/),
      expect.stringMatching(/config\.yaml:7: connection prod: zzzz: unknown key, ignored$/),
    ]);
  });

  it('an unknown key near a key that is left out is an error naming that key, at every level', () => {
    expect(refusal('conections:\n  prod: { region: eu-west-1 }\n').message).toMatch(/config\.yaml:1: conections: unknown key \(did you mean connections\?\)$/);
    const at = (line: number, rest: string) => expect.stringMatching(new RegExp(`config\\.yaml:${line}: connection prod: ${rest}$`));
    expect(errorsOf('connections:\n  prod:\n    regoin: eu-west-1\n    retries: { max_attemps: 3 }\n    archive: { storage_clas: GLACIER }\n    zzzz: 1\n', 'prod')).toEqual([
      at(3, 'regoin: unknown key \\(did you mean region\\?\\)'),
      at(4, 'retries\\.max_attemps: unknown key \\(did you mean max_attempts\\?\\)'),
      at(5, 'archive\\.storage_clas: unknown key \\(did you mean storage_class\\?\\)'),
    ]);
    // The misspelt key of a pair is named beside the error about the pair.
    expect(errorsOf('connections:\n  prod:\n    region: eu-west-1\n    acces_key_id: AKIAEXAMPLE123456789\n    secret_access_key: s\n', 'prod')).toEqual([
      at(4, 'acces_key_id: unknown key \\(did you mean access_key_id\\?\\)'),
      at(5, 'secret_access_key: access_key_id and secret_access_key go together'),
    ]);
  });

  it('a wrong type names the file, line, connection and field, and never shows a secret value', () => {
    const errors = errorsOf(
      `connections:
  prod:
    region: 12
    max_sockets: many
    retries: 3
    tls_ca_chain: not-a-list
    verify: 5
    secret_access_key: 123456789
    access_key_id: AKIAEXAMPLE123456789
    connect_timeout: -1
    endpoint_url: ftp://host
    archive:
      storage_class: GLACIR
      attributes: { x-amz-server-side-encryption-customer-key: 42 }
    ecs: { subnets: subnet-1, launch_type: FARGATE, capacity_provider_strategy: [{ weight: 1 }] }
`,
      'prod',
    );
    const at = (line: number, rest: string) => expect.stringMatching(new RegExp(`config\\.yaml:${line}: connection prod: ${rest}`));
    expect(errors).toEqual(
      expect.arrayContaining([
        at(3, 'region: must be a string, got a number \\(put it in quotes\\)'),
        at(4, 'max_sockets: must be a whole number from 1 to 4096, got a string'),
        at(5, 'retries: must be a mapping, got a number'),
        at(6, 'tls_ca_chain: must be a list, got a string'),
        at(7, 'verify: must be true, false or the path of a CA bundle, got a number'),
        at(8, 'secret_access_key: must be a string, got a number \\(put it in quotes\\)$'),
        at(10, 'connect_timeout: must be a number of seconds above 0 and at most 3600, got -1'),
        at(11, 'endpoint_url: must be an http:// or https:// URL, got "ftp://host"'),
        at(13, 'archive\\.storage_class: must be one of .*, got "GLACIR" \\(did you mean GLACIER\\?\\)'),
        at(14, 'archive\\.attributes\\.x-amz-server-side-encryption-customer-key: must be a string, got a number'),
        at(15, 'ecs\\.subnets: must be a list, got a string'),
        at(15, 'ecs\\.capacity_provider_strategy\\[0\\]\\.capacity_provider: is required'),
        at(15, 'ecs\\.capacity_provider_strategy: give either launch_type or capacity_provider_strategy'),
      ]),
    );
    expect(errors.join('\n')).not.toContain('123456789\n');
    expect(errors.join('\n')).not.toMatch(/: 42\b/);
  });

  it('credentials that do not fit together are errors', () => {
    expect(errorsOf('connections:\n  a:\n    profile: p\n    access_key_id: AKIAEXAMPLE123456789\n    secret_access_key: s\n', 'a')).toEqual([
      expect.stringContaining('connection a: profile: give either profile or access_key_id and secret_access_key, not both'),
    ]);
    expect(errorsOf('connections:\n  a:\n    access_key_id: AKIAEXAMPLE123456789\n', 'a')).toEqual([
      expect.stringContaining('access_key_id: access_key_id and secret_access_key go together'),
    ]);
    expect(errorsOf('connections:\n  a:\n    session_token: t\n', 'a')).toEqual([expect.stringContaining('session_token: needs access_key_id and secret_access_key')]);
    expect(errorsOf('connections:\n  a:\n    external_id: abc\n', 'a')).toEqual([expect.stringContaining('external_id: needs role_arn')]);
    expect(errorsOf('connections:\n  a:\n    role_arn: arn:aws:iam::12:user/x\n', 'a')).toEqual([
      expect.stringContaining('role_arn: must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME), got "arn:aws:iam::12:user/x"'),
    ]);
  });

  it('a private key in tls_ca_chain is refused without being shown', () => {
    const { key } = createCertificateAuthority({ commonName: 'x', days: 1 });
    const body = key.trimEnd().replace(/^/gm, '        ');
    const errors = errorsOf(`connections:\n  a:\n    tls_ca_chain:\n      - |\n${body}\n`, 'a');
    expect(errors).toEqual([expect.stringMatching(/config\.yaml:4: connection a: tls_ca_chain\[0\]: holds a private key/)]);
    const keyBody = key.split('\n')[1]!;
    expect(errors.join('\n')).not.toContain(keyBody);
    expect(errorsOf('connections:\n  a:\n    tls_ca_chain: ["hello"]\n', 'a')).toEqual([expect.stringContaining('tls_ca_chain[0]: is not a PEM certificate')]);
  });

  it('tcp_keepalive: false is refused with the reason', () => {
    expect(errorsOf('connections:\n  a:\n    tcp_keepalive: false\n', 'a')).toEqual([expect.stringContaining('tcp_keepalive: cannot be false')]);
  });

  it('notify and expect_every: read when right; a URL with user:password@ or a wrong duration is refused, the URL never shown', () => {
    const file = load('connections:\n  a:\n    notify: { url: "https://hooks.example/T0/abc?key=k1", on: always }\n    expect_every: 1d12h\n');
    expect(file.connections.get('a')!.config).toEqual({ unattended: { notifyUrl: 'https://hooks.example/T0/abc?key=k1', notifyOn: 'always', expectEveryMs: 36 * 3_600_000 } });
    const errors = errorsOf('connections:\n  a:\n    notify: { url: "https://bob:pw-secret-1@hooks.example/x", on: sometimes }\n    expect_every: daily\n', 'a');
    expect(errors).toEqual([
      expect.stringContaining('notify.url: must be an http:// or https:// URL without user:password@'),
      expect.stringContaining('notify.on: must be one of failure, success, always'),
      expect.stringContaining('expect_every: must be a duration such as 26h'),
    ]);
    expect(errors.join('\n')).not.toContain('pw-secret-1');
  });

  it('one broken connection leaves the others usable', () => {
    const file = load('connections:\n  good:\n    region: eu-west-1\n  bad:\n    region: [1]\n  empty:\n');
    expect(file.connections.get('good')!.config).toEqual({ region: 'eu-west-1' });
    expect(file.connections.get('bad')!.errors).toEqual([expect.stringContaining('connection bad: region: must be a string, got a list')]);
    expect(file.connections.get('empty')!.errors).toEqual([expect.stringContaining('connection empty: must be a mapping of settings, got nothing')]);
  });

  it('the built-in name and malformed names are refused', () => {
    expect(refusal('connections:\n  local:\n    region: x\n').message).toMatch(/config\.yaml:2: connections\.local: the connection "local" is built in/);
    expect(refusal('connections:\n  "bad name":\n    region: x\n').message).toContain('is not a valid connection name');
  });

  it('warns when group or others may read the file, like ssh', () => {
    expect(load('connections: {}\n', 0o644).warnings).toEqual([
      expect.stringMatching(/config\.yaml: the config file is accessible by group or others \(mode 0644\) and may hold secrets; run: chmod 600 .*config\.yaml$/),
    ]);
    expect(load('connections: {}\n', 0o640).warnings).toHaveLength(1);
    expect(load('connections: {}\n', 0o600).warnings).toEqual([]);
  });

  // root reads anything: nothing to refuse.
  it.skipIf(process.getuid?.() === 0)('refuses a file it cannot read', () => {
    const path = write('connections: {}\n', 0o000);
    expect(() => loadConfigFile(path, { required: true })).toThrow('cannot be read (permission denied)');
  });

  it('a relative CA bundle path is relative to the config file; ~/ is the home directory', () => {
    mkdirSync(join(dir, 'sub'));
    const path = join(dir, 'sub', 'c.yaml');
    writeFileSync(path, 'connections:\n  a:\n    verify: ../ca.pem\n  b:\n    verify: /abs/ca.pem\n  c:\n    verify: true\n', { mode: 0o600 });
    const file = loadConfigFile(path, { required: true });
    expect(file.connections.get('a')!.config!.verify).toBe(join(dir, 'ca.pem'));
    expect(file.connections.get('b')!.config!.verify).toBe('/abs/ca.pem');
    expect(file.connections.get('c')!.config!.verify).toBe(true);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
