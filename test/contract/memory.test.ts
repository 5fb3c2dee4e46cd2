import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { MemoryEbs } from '../fakes/memory-ebs.js';
import { snapshotStoreContract } from './snapshot-store.contract.js';

snapshotStoreContract('in-memory fake', async () => {
  const ebs = new MemoryEbs();
  return { writer: ebs, reader: ebs, catalog: ebs };
});

snapshotStoreContract('in-memory fake, completion pending for a few polls, small and empty pages', async () => {
  const ebs = new MemoryEbs({ pendingPolls: 3, maxPageSize: 2, emptyPages: true });
  return { writer: ebs, reader: ebs, catalog: ebs };
});

snapshotStoreContract('in-memory fake behind the retry wrappers', async () => {
  const ebs = new MemoryEbs({ pendingPolls: 1 });
  const limiter = new AdaptiveLimiter(8);
  return { writer: resilientWriter(ebs, { limiter }), reader: resilientReader(ebs, { limiter }), catalog: ebs };
});
