import { AdaptiveLimiter, resilientReader, resilientWriter } from '../../src/aws/retry.js';
import { MemoryArchiveStore } from '../fakes/memory-archive.js';
import { MemoryEbs } from '../fakes/memory-ebs.js';
import { archiveStoreContract } from './archive-store.contract.js';
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

archiveStoreContract('in-memory fake, S3, DEEP_ARCHIVE', async () => {
  const store = new MemoryArchiveStore({ target: 's3' });
  return { store, objectOptions: { storageClass: 'DEEP_ARCHIVE' }, letJobsFinish: () => store.finishRestores() };
});

archiveStoreContract('in-memory fake, S3, STANDARD', async () => {
  const store = new MemoryArchiveStore({ target: 's3' });
  return { store, objectOptions: { storageClass: 'STANDARD' }, letJobsFinish: () => store.finishRestores() };
});

archiveStoreContract('in-memory fake, Glacier vault', async () => {
  const store = new MemoryArchiveStore({ target: 'glacier' });
  return { store, letJobsFinish: () => store.finishRestores() };
});
