// What the endpoint really holds, read through the SDK, and whether the block
// index claims anything else. Used by the reliability tests and
// bench/torture.js; the index module is passed in (src/ in tests, dist/ in the
// bench).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { GetSnapshotBlockCommand, ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs';
import { DescribeSnapshotsCommand } from '@aws-sdk/client-ec2';
import { BLOCK_SIZE } from './images.js';

const ZERO_DIGEST = createHash('sha256').update(Buffer.alloc(BLOCK_SIZE)).digest();

/** @typedef {typeof import('../../src/index/index.js').BlockIndex} BlockIndexClass */
/** @typedef {import('@aws-sdk/client-ebs').EBSClient} EBSClient */
/** @typedef {import('@aws-sdk/client-ec2').EC2Client} EC2Client */

/**
 * Every block of a completed snapshot, read back (GetSnapshotBlock) by index.
 * @param {EBSClient} ebs
 * @param {string} snapshotId
 * @returns {Promise<Map<number, Buffer>>}
 */
export async function remoteBlocks(ebs, snapshotId) {
  /** @type {Map<number, Buffer>} */
  const blocks = new Map();
  /** @type {string | undefined} */
  let pageToken;
  do {
    const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, NextToken: pageToken, MaxResults: 1000 }));
    for (const block of page.Blocks ?? []) {
      const out = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: block.BlockIndex, BlockToken: block.BlockToken }));
      blocks.set(/** @type {number} */ (block.BlockIndex), Buffer.from(await /** @type {NonNullable<typeof out.BlockData>} */ (out.BlockData).transformToByteArray()));
    }
    pageToken = page.NextToken;
  } while (pageToken);
  return blocks;
}

/**
 * The first `sizeBytes` bytes of a completed snapshot: its blocks, zeros where it has none.
 * @param {EBSClient} ebs
 * @param {string} snapshotId
 * @param {number} sizeBytes
 * @returns {Promise<Buffer>}
 */
export async function snapshotBytes(ebs, snapshotId, sizeBytes) {
  const bytes = Buffer.alloc(sizeBytes);
  for (const [index, data] of await remoteBlocks(ebs, snapshotId)) {
    const start = index * BLOCK_SIZE;
    if (start < sizeBytes) data.copy(bytes, start, 0, Math.min(BLOCK_SIZE, sizeBytes - start));
    else if (!data.equals(Buffer.alloc(BLOCK_SIZE))) throw new Error(`${snapshotId} holds data in block ${index}, past its ${sizeBytes} bytes`);
  }
  return bytes;
}

/**
 * Whether a completed snapshot holds exactly `bytes` (zeros past them, to the end of its last block).
 * @param {EBSClient} ebs
 * @param {string} snapshotId
 * @param {Buffer} bytes
 * @returns {Promise<string | undefined>} what differs, or undefined when equal
 */
export async function snapshotDiffers(ebs, snapshotId, bytes) {
  const held = await snapshotBytes(ebs, snapshotId, bytes.length);
  if (held.equals(bytes)) return undefined;
  for (let i = 0; i * BLOCK_SIZE < bytes.length; i += 1) {
    const range = [i * BLOCK_SIZE, Math.min(bytes.length, (i + 1) * BLOCK_SIZE)];
    if (!held.subarray(...range).equals(bytes.subarray(...range))) return `${snapshotId} differs from the image at block ${i}`;
  }
  return `${snapshotId} differs from the image`;
}

/**
 * EC2's state of each snapshot; absent ones are missing from the map.
 * @param {EC2Client} ec2
 * @param {string[]} snapshotIds
 * @returns {Promise<Map<string, string>>}
 */
export async function remoteStates(ec2, snapshotIds) {
  /** @type {Map<string, string>} */
  const states = new Map();
  if (snapshotIds.length === 0) return states;
  try {
    // One call for all; EC2 refuses the whole call when one of them is missing, then ask one by one.
    const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: snapshotIds }));
    for (const s of out.Snapshots ?? []) states.set(/** @type {string} */ (s.SnapshotId), /** @type {string} */ (s.State));
    return states;
  } catch (err) {
    if (/** @type {{ name?: string }} */ (err).name !== 'InvalidSnapshot.NotFound') throw err;
  }
  for (const id of snapshotIds) {
    try {
      const out = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }));
      for (const s of out.Snapshots ?? []) states.set(/** @type {string} */ (s.SnapshotId), /** @type {string} */ (s.State));
    } catch (err) {
      if (/** @type {{ name?: string }} */ (err).name !== 'InvalidSnapshot.NotFound') throw err;
    }
  }
  return states;
}

/**
 * SHA-256 of every block of a completed snapshot, from the bytes read back; kept in `cache` (a completed snapshot never changes).
 * @param {EBSClient} ebs
 * @param {string} snapshotId
 * @param {Map<string, Map<number, Buffer>>} cache
 * @returns {Promise<Map<number, Buffer>>}
 */
async function remoteDigests(ebs, snapshotId, cache) {
  let digests = cache.get(snapshotId);
  if (digests === undefined) {
    digests = new Map();
    for (const [i, data] of await remoteBlocks(ebs, snapshotId)) digests.set(i, createHash('sha256').update(data).digest());
    cache.set(snapshotId, digests);
  }
  return digests;
}

/**
 * @typedef {object} TruthCheck
 * @property {BlockIndexClass} BlockIndex the index module's class (src/ or dist/)
 * @property {string} indexPath
 * @property {EBSClient} ebs
 * @property {EC2Client} ec2
 * @property {boolean} [settled] true after a run succeeded: no run may be left pending
 * @property {string[]} [targets] restore targets whose index record to check against their content
 * @property {Map<string, Map<number, Buffer>>} [cache] digests of completed snapshots already read (they never change)
 */

/**
 * What the index claims that the endpoint does not hold, as sentences; empty
 * when the index is truthful: every snapshot it calls completed exists and is
 * completed at the endpoint with exactly the blocks of its block map (a block
 * the map lacks must be absent or zeros there, and the other way round); with
 * `settled`, no run is pending; every listed target it calls complete holds
 * that snapshot's bytes at the recorded size. Reads the index while no other
 * process writes it.
 * @param {TruthCheck} check
 * @returns {Promise<string[]>}
 */
export async function indexProblems({ BlockIndex, indexPath, ebs, ec2, settled = false, targets = [], cache = new Map() }) {
  if (!existsSync(indexPath)) return [];
  const index = BlockIndex.open(indexPath);
  try {
    /** @type {string[]} */
    const problems = [];
    const snapshots = index.lineage.listSnapshots();
    const completed = snapshots.filter((s) => s.state === 'completed');
    const states = await remoteStates(
      ec2,
      completed.map((s) => s.snapshotId),
    );
    for (const snapshot of completed) {
      const id = snapshot.snapshotId;
      const state = states.get(id);
      if (state !== 'completed') {
        problems.push(`the index calls ${id} completed; the endpoint has it ${state ?? 'nowhere'}`);
        continue;
      }
      const remote = await remoteDigests(ebs, id, cache);
      /** @type {Map<number, Buffer>} */
      const local = new Map();
      for (const entry of index.maps.blockMap(id)) local.set(entry.index, entry.digest);
      for (const i of new Set([...local.keys(), ...remote.keys()])) {
        const claimed = local.get(i) ?? ZERO_DIGEST;
        const held = remote.get(i) ?? ZERO_DIGEST;
        if (!claimed.equals(held)) problems.push(`the index map of ${id} disagrees with the endpoint at block ${i}`);
      }
    }
    if (settled) {
      for (const volume of index.lineage.listVolumes()) {
        const pending = index.runs.pendingRun(volume.name);
        if (pending) problems.push(`volume ${volume.name} still has a pending run (${pending.snapshotId}, ${pending.state})`);
      }
    }
    for (const path of targets) {
      const record = index.targets.get(path);
      if (record?.state !== 'complete') continue;
      if (record.snapshotId === null) {
        problems.push(`the index calls ${path} complete without a snapshot`);
        continue;
      }
      if (!existsSync(path)) {
        problems.push(`the index calls ${path} complete, and it does not exist`);
        continue;
      }
      const content = readFileSync(path);
      if (content.length !== record.sizeBytes) {
        problems.push(`the index calls ${path} complete with ${record.snapshotId} at ${record.sizeBytes} bytes; it has ${content.length}`);
        continue;
      }
      const remote = await remoteDigests(ebs, record.snapshotId, cache);
      for (let i = 0; i * BLOCK_SIZE < content.length; i += 1) {
        const block = Buffer.alloc(BLOCK_SIZE);
        content.copy(block, 0, i * BLOCK_SIZE, Math.min(content.length, (i + 1) * BLOCK_SIZE));
        if (!createHash('sha256').update(block).digest().equals(remote.get(i) ?? ZERO_DIGEST)) {
          problems.push(`the index calls ${path} complete with ${record.snapshotId}; it differs at block ${i}`);
          break;
        }
      }
    }
    return problems;
  } finally {
    index.close();
  }
}
