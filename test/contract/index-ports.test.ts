import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockIndex } from '../../src/index/index.js';
import { MemoryIndex } from '../fakes/memory-index.js';
import { archiveCatalogContract } from './archive-catalog.contract.js';
import { copyCatalogContract } from './copies.contract.js';
import { drillRecordsContract } from './drills.contract.js';
import { ecsJobsContract } from './ecs-jobs.contract.js';
import type { IndexSetup } from './index-support.js';
import { lineageContract } from './lineage.contract.js';
import { restoreTargetsContract } from './restore-targets.contract.js';
import { runJournalContract } from './run-journal.contract.js';
import { runLogContract } from './run-log.contract.js';
import { trackerLogContract } from './trackers.contract.js';

/** A fresh SQLite index file in a directory of its own, removed on close. */
const sqlite: IndexSetup = () => {
  const dir = mkdtempSync(join(tmpdir(), 'snapline-ports-'));
  const index = BlockIndex.open(join(dir, 'index.db'));
  return {
    index,
    close: () => {
      index.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
};

const memory: IndexSetup = () => ({ index: new MemoryIndex() });

for (const [name, setup] of [['SQLite index', sqlite], ['in-memory fake', memory]] as const) {
  lineageContract(name, setup);
  runJournalContract(name, setup);
  restoreTargetsContract(name, setup);
  archiveCatalogContract(name, setup);
  ecsJobsContract(name, setup);
  trackerLogContract(name, setup);
  copyCatalogContract(name, setup);
  drillRecordsContract(name, setup);
  runLogContract(name, setup);
}
