/**
 * What snapline's own tools (the benchmarks in bench/) use beyond the
 * library (src/index.ts): the session, the index, the hash pool and the
 * bare EBS adapter they measure. Exported as `snapline/internals`, with no
 * promise of stability; nothing else reaches into the build.
 */
export { openSession, withSession, type Session, type SessionOptions } from './session.js';
export { backup as sessionBackup } from './engine/backup/backup.js';
export { restore as sessionRestore } from './engine/restore/restore.js';
export { ResumeState } from './engine/backup/journal.js';
export { BlockIndex } from './index/index.js';
export { BLOCK_KEY_SPAN } from './index/schema.js';
export { HashPool } from './hashing/index.js';
export { SlabPool, nativeHoleSeeker, openSource, readSlabs } from './source/index.js';
export { LinearAggregate, checksumOf } from './core/checksum.js';
export { BLOCK_SIZE, BLOCKS_PER_GIB } from './core/constants.js';
export { AwsClients } from './aws/clients.js';
export { EbsSnapshotStore } from './aws/ebs.js';
