import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AwsClients } from '../../src/aws/clients.js';
import { Ec2SnapshotCatalog } from '../../src/aws/ec2.js';
import { EbsSnapshotStore } from '../../src/aws/ebs.js';
import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { startEmulator, type FaultSettings } from '../../src/emulator/index.js';
import { expect } from 'vitest';
import { snapshotStoreContract, type SnapshotStoreUnderTest } from './snapshot-store.contract.js';

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
    catalog: new Ec2SnapshotCatalog(clients.ec2()),
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
