import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import type { LocalEndpointStarter } from './connection.js';
import { probeConnection } from './probe.js';

/** The probes below name their endpoints: none starts one. */
const neverStarted: LocalEndpointStarter = () => Promise.reject(new Error('the local endpoint was started'));

describe('probeConnection', () => {
  let dir: string;
  let emulator: RunningEmulator;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'snapline-probe-connection-'));
    emulator = await startEmulator({ dataDir: join(dir, 'endpoint'), log: () => undefined });
    writeFileSync(
      join(dir, 'config.yaml'),
      `connections:
  core:
    region: us-east-1
    endpoint_url: ${emulator.url}
    access_key_id: AKIAEXAMPLE123456789
    secret_access_key: s
  everything:
    region: us-east-1
    endpoint_url: ${emulator.url}
    access_key_id: AKIAEXAMPLE123456789
    secret_access_key: s
    archive: { bucket: not-there, vault: v, s3_uri_style: path }
    ecs: { cluster: c, log_group: /g }
`,
      { mode: 0o600 },
    );
  });
  afterAll(async () => {
    await emulator.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('calls STS, EC2 and EBS of a connection without archive settings', async () => {
    const probe = await probeConnection({ configPath: join(dir, 'config.yaml'), connection: 'core' }, neverStarted, {});
    expect(probe.connection.name).toBe('core');
    expect(probe.results.map((r) => [r.service, r.outcome])).toEqual([
      ['sts', 'reachable'],
      ['ec2', 'reachable'],
      ['ebs', 'reachable'],
    ]);
    expect(probe.unchecked).toEqual([]);
  });

  it('adds S3 (HeadBucket on the archive bucket) and lists the services it cannot call yet', async () => {
    const probe = await probeConnection({ configPath: join(dir, 'config.yaml'), connection: 'everything' }, neverStarted, {});
    expect(probe.results.map((r) => [r.service, r.outcome])).toEqual([
      ['sts', 'reachable'],
      ['ec2', 'reachable'],
      ['ebs', 'reachable'],
      ['s3', 'failed'],
    ]);
    expect(probe.results[3]!.detail).toBe('bucket not-there does not exist');
    expect(probe.unchecked.map((u) => u.service)).toEqual(['glacier', 'ecs', 'logs']);
  });

  it('the built-in local connection with --endpoint-url', async () => {
    const probe = await probeConnection({ connection: 'local', endpointUrl: emulator.url }, neverStarted, {});
    expect(probe.results.every((r) => r.outcome === 'reachable')).toBe(true);
  });
});
