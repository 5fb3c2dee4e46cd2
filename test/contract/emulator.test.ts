import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateVaultCommand } from '@aws-sdk/client-glacier';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { AwsClients } from '../../src/aws/clients.js';
import { Ec2SnapshotCatalog } from '../../src/aws/ec2.js';
import { EbsSnapshotStore } from '../../src/aws/ebs.js';
import { GlacierArchiveStore } from '../../src/aws/glacier-archive.js';
import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { S3ArchiveStore } from '../../src/aws/s3-archive.js';
import type { ArchiveStore, ArchiveTarget } from '../../src/core/ports.js';
import { startEmulator, type FaultSettings } from '../../src/emulator/index.js';
import { expect } from 'vitest';
import { TestClock } from '../emulator/helpers.js';
import { archiveStoreContract, type ArchiveStoreUnderTest } from './archive-store.contract.js';
import { snapshotStoreContract, type SnapshotStoreUnderTest } from './snapshot-store.contract.js';

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
/** Restores and retrieval jobs take about as long as on AWS, on the endpoint's clock. */
const TIER_DELAYS = { Expedited: 5 * 60_000, Standard: 4 * HOUR, Bulk: 10 * HOUR };

/** The SDK adapters over real HTTP to the local endpoint, with its data in a fresh temp dir. */
async function adaptersOverEmulator(faults: FaultSettings = {}, resilient = false): Promise<SnapshotStoreUnderTest> {
  const dataDir = mkdtempSync(join(tmpdir(), 'snapline-contract-'));
  const emulator = await startEmulator({ dataDir, port: 0, ...faults });
  const clients = new AwsClients({
    name: 'contract',
    region: 'us-east-1',
    endpointUrl: emulator.url,
    credentials: { accessKeyId: 'contract-key', secretAccessKey: 'contract-secret' },
  });
  const store = new EbsSnapshotStore(clients.ebs());
  const limiter = new AdaptiveLimiter(8);
  const policy = { baseDelayMs: 5, maxDelayMs: 50 };
  return {
    writer: resilient ? resilientWriter(store, { limiter, policy }) : store,
    reader: resilient ? resilientReader(store, { limiter, policy }) : store,
    catalog: new Ec2SnapshotCatalog(clients.ec2Requests()),
    close: async () => {
      if (resilient) {
        // The faults must really have fired, or this run proves nothing about the wrappers.
        const { faults: fired } = emulator.stats();
        expect(fired.throttled * fired.internalErrors * fired.resets * fired.notFound).toBeGreaterThan(0);
      }
      clients.destroy();
      await emulator.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

snapshotStoreContract('SDK adapters over HTTP to the local endpoint', () => adaptersOverEmulator());

snapshotStoreContract('SDK adapters over HTTP to the local endpoint, completion pending for a while', () =>
  adaptersOverEmulator({ completionDelayMs: 50 }),
);

// What the engine sees in a run: the adapters behind the retry wrappers, against an endpoint that throttles,
// fails, drops connections and denies new snapshots for a moment. The contract must still hold.
snapshotStoreContract('SDK adapters behind the retry wrappers, endpoint with injected faults', () =>
  adaptersOverEmulator({ seed: 7, throttleRate: 0.1, errorRate: 0.05, resetRate: 0.05, notFoundAfterStart: 0.2, completionDelayMs: 20 }, true),
);

/** An S3 bucket or a Glacier vault on a fresh endpoint whose clock the suite moves: restores and jobs take AWS's hours on it. */
async function archiveAdapterOverEmulator(target: ArchiveTarget, storageClass?: string): Promise<ArchiveStoreUnderTest> {
  const dataDir = mkdtempSync(join(tmpdir(), 'snapline-contract-archive-'));
  const clock = new TestClock();
  const emulator = await startEmulator({ dataDir, port: 0, now: clock.now, restoreDelayMs: TIER_DELAYS, jobDelayMs: TIER_DELAYS });
  const clients = new AwsClients({
    name: 'contract',
    region: 'us-east-1',
    endpointUrl: emulator.url,
    credentials: { accessKeyId: 'contract-key', secretAccessKey: 'contract-secret' },
    forcePathStyle: true,
  });
  let store: ArchiveStore;
  if (target === 's3') {
    await clients.s3().send(new CreateBucketCommand({ Bucket: 'contract-bucket' }));
    // S3 takes parts of 5 MiB or more but the last: the smallest power of two above is 8 MiB.
    store = new S3ArchiveStore(clients.s3(), 'contract-bucket', { minPartSize: 8 * MIB });
  } else {
    await clients.glacier().send(new CreateVaultCommand({ accountId: '-', vaultName: 'contract-vault' }));
    store = new GlacierArchiveStore(clients.glacier(), 'contract-vault', { minPartSize: MIB });
  }
  return {
    store,
    ...(storageClass === undefined ? {} : { objectOptions: { storageClass } }),
    letJobsFinish: () => clock.advance(TIER_DELAYS.Standard),
    close: async () => {
      clients.destroy();
      await emulator.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

archiveStoreContract('S3 adapter over HTTP to the local endpoint, DEEP_ARCHIVE', () => archiveAdapterOverEmulator('s3', 'DEEP_ARCHIVE'));
archiveStoreContract('S3 adapter over HTTP to the local endpoint, GLACIER_IR', () => archiveAdapterOverEmulator('s3', 'GLACIER_IR'));
archiveStoreContract('Glacier adapter over HTTP to the local endpoint', () => archiveAdapterOverEmulator('glacier'));
