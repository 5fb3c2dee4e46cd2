import type { Command } from 'commander';
import type { Wrap } from '../context.js';
import { registerArchive } from './archive.js';
import { registerBackup } from './backup.js';
import { registerBench } from './bench.js';
import { registerConnections } from './connections.js';
import { registerCopy } from './copy.js';
import { registerDiff } from './diff.js';
import { registerDrill } from './drill.js';
import { registerEcs } from './ecs.js';
import { registerIndexCommands } from './index-commands.js';
import { registerPrune } from './prune.js';
import { registerQuickstart } from './quickstart.js';
import { registerRehydrate } from './rehydrate.js';
import { registerReport } from './report.js';
import { registerRestore } from './restore.js';
import { registerSchedule } from './schedule.js';
import { registerServe } from './serve.js';
import { registerSnapshots } from './snapshots.js';
import { registerStatus } from './status.js';
import { registerVerify } from './verify.js';
import { registerWorker } from './worker.js';

/** Adds every subcommand to the program. One file per command. */
export function registerCommands(program: Command, wrap: Wrap): void {
  registerQuickstart(program, wrap);
  registerBackup(program, wrap);
  registerRestore(program, wrap);
  registerVerify(program, wrap);
  registerDrill(program, wrap);
  registerDiff(program, wrap);
  registerSnapshots(program, wrap);
  registerStatus(program, wrap);
  registerReport(program, wrap);
  registerPrune(program, wrap);
  registerSchedule(program, wrap);
  registerCopy(program, wrap);
  registerArchive(program, wrap);
  registerRehydrate(program, wrap);
  registerIndexCommands(program, wrap);
  registerServe(program, wrap);
  registerConnections(program, wrap);
  registerBench(program, wrap);
  registerEcs(program, wrap);
  registerWorker(program, wrap);
}
