import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../emulator/index.js';
import { ErrorCodes } from '../errors.js';
import { AwsClients, type ConnectionSettings } from './clients.js';
import { probeServices } from './probe.js';

const CREDENTIALS = { accessKeyId: 'AKIAPROBETEST', secretAccessKey: 'probe-secret' };

/** A loopback server answering every request with `status`, `type` and `body`. */
async function answering(status: number, type: string, body: string, headers: Record<string, string> = {}): Promise<{ url: string; close(): Promise<void> }> {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': type, ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('probeServices', () => {
  let dataDir: string;
  let emulator: RunningEmulator;
  const opened: AwsClients[] = [];
  const clients = (settings: Partial<ConnectionSettings>) => {
    const made = new AwsClients({ name: 'probe', region: 'us-east-1', credentials: CREDENTIALS, retries: { maxAttempts: 1 }, ...settings });
    opened.push(made);
    return made;
  };
  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'snapline-probe-'));
    emulator = await startEmulator({ dataDir, log: () => undefined });
  });
  afterAll(async () => {
    await emulator.close();
    rmSync(dataDir, { recursive: true, force: true });
  });
  afterEach(() => {
    for (const made of opened.splice(0)) made.destroy();
  });

  it('the local endpoint answers as STS, EC2, EBS (no such snapshot, as expected) and S3', async () => {
    const results = await probeServices(clients({ endpointUrl: emulator.url, forcePathStyle: true }), ['sts', 'ec2', 'ebs', 's3']);
    expect(results.map((r) => [r.service, r.action, r.outcome])).toEqual([
      ['sts', 'sts:GetCallerIdentity', 'reachable'],
      ['ec2', 'ec2:DescribeSnapshots', 'reachable'],
      ['ebs', 'ebs:ListSnapshotBlocks', 'reachable'],
      ['s3', 's3:ListAllMyBuckets', 'reachable'],
    ]);
    expect(results[0]!.detail).toMatch(/^account \d{12}, arn:aws:iam::/);
    expect(results[2]!.detail).toContain('ResourceNotFoundException');
    expect(results.every((r) => r.endpoint === emulator.url)).toBe(true);
  });

  it('a bucket that does not exist fails HeadBucket and says so', async () => {
    const [s3] = await probeServices(clients({ endpointUrl: emulator.url, forcePathStyle: true }), ['s3'], 'no-such-bucket');
    expect(s3).toMatchObject({ action: 's3:ListBucket', outcome: 'failed', detail: 'bucket no-such-bucket does not exist', code: ErrorCodes.NOT_FOUND });
  });

  it('a web server that is not AWS is the wrong endpoint, for every protocol', async () => {
    const web = await answering(404, 'text/html', '<html><body>Not Found</body></html>');
    try {
      const results = await probeServices(clients({ endpointUrl: web.url, forcePathStyle: true }), ['sts', 'ec2', 'ebs', 's3'], 'bkt');
      expect(results.map((r) => r.outcome)).toEqual(['wrong endpoint', 'wrong endpoint', 'wrong endpoint', 'wrong endpoint']);
    } finally {
      await web.close();
    }
  });

  it('a server that says 200 to anything is the wrong endpoint too', async () => {
    const web = await answering(200, 'text/html', '<html>hello</html>');
    try {
      const results = await probeServices(clients({ endpointUrl: web.url, forcePathStyle: true }), ['sts', 'ec2', 'ebs', 's3'], 'bkt');
      expect(results.map((r) => r.outcome)).toEqual(['wrong endpoint', 'wrong endpoint', 'wrong endpoint', 'wrong endpoint']);
    } finally {
      await web.close();
    }
  });

  it('an S3 store given as the EBS endpoint is the wrong endpoint', async () => {
    // What an S3-compatible store answers to an EBS path: an S3 XML error with a request id.
    const s3Like = await answering(405, 'application/xml', '<Error><Code>MethodNotAllowed</Code><Message>no</Message><RequestId>r</RequestId></Error>', { 'x-amz-request-id': 'r' });
    try {
      const [ebs] = await probeServices(clients({ endpointUrl: s3Like.url }), ['ebs']);
      expect(ebs!.outcome).toBe('wrong endpoint');
    } finally {
      await s3Like.close();
    }
  });

  it('AccessDenied is permission denied and names the action', async () => {
    const denying = await answering(
      403,
      'text/xml',
      '<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>',
    );
    try {
      const [ec2] = await probeServices(clients({ endpointUrl: denying.url }), ['ec2']);
      expect(ec2).toMatchObject({ outcome: 'permission denied', code: ErrorCodes.ACCESS_DENIED });
      expect(ec2!.detail).toContain('ec2:DescribeSnapshots is not allowed');
    } finally {
      await denying.close();
    }
  });

  it('a closed port is unreachable', async () => {
    const closed = await answering(200, 'text/plain', '');
    await closed.close();
    const results = await probeServices(clients({ endpointUrl: closed.url }), ['sts', 'ebs']);
    expect(results.map((r) => [r.outcome, r.code])).toEqual([
      ['unreachable', ErrorCodes.ENDPOINT_UNREACHABLE],
      ['unreachable', ErrorCodes.ENDPOINT_UNREACHABLE],
    ]);
    expect(results[1]!.detail).toContain('ECONNREFUSED');
  });
});
