/**
 * The journal of backup runs (RunJournal): a run's blocks live apart from
 * the committed maps and are copied into them, ascending, when the run
 * commits. recordIntents, recordBlocks and recordJournal run with
 * synchronous NORMAL (a batch lost to a power cut is uploaded again on
 * resume); every state change is durable.
 */
import { BLOCKS_PER_GIB } from '../core/constants.js';
import type { BeginRunInput, RunJournal } from '../core/index-ports.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import type { IndexAccess } from './access.js';
import { type ChunkGuard, DIGEST_BYTES, type KeyedRows, chainEntries, keyChecksum } from './maps.js';
import { type BlockEntry, type BlockInput, OPEN_STATES, type RunStartRecord, type SnapshotRecord, type SnapshotRow, type VolumeRow, snapshotRecordOf } from './records.js';
import { BLOCK_KEY_SPAN } from './schema.js';
import { type SnapshotRows, badState } from './snapshot-rows.js';
import { isUniqueViolation } from './sqlite-errors.js';
import type { VolumeStores } from './stores.js';
import { checkedBeginRun, optionalText, requireDigest, requireInteger, requireText, requireTime } from './validate.js';

export class RunStore implements RunJournal {
  readonly #access: IndexAccess;
  readonly #rows: SnapshotRows;
  readonly #stores: VolumeStores;

  constructor(access: IndexAccess, rows: SnapshotRows, stores: VolumeStores) {
    this.#access = access;
    this.#rows = rows;
    this.#stores = stores;
  }

  /**
   * Starts a run: a pending snapshot. The volume must exist; the base, when
   * given, must be a completed snapshot of the same volume. CONFLICT when the
   * volume already has an unfinished run or the snapshot id is known. Drops
   * the volume's recorded run start (recordRunStart) in the same transaction.
   * Durable.
   */
  beginRun(r: BeginRunInput): SnapshotRecord {
    const { volume, snapshotId, parentSnapshotId, baseSnapshotId, volumeSizeGiB, sourceBytes, encrypted, description, runOptions } = checkedBeginRun(r);
    return this.#access.durably(() => {
      this.#stores.check(volume);
      const volumeRow = this.#rows.volumeRow(volume);
      let baseKey: number | null = null;
      if (baseSnapshotId !== null) {
        const base = this.#rows.snapshotRow(baseSnapshotId);
        if (base.volume_key !== volumeRow.volume_key) {
          throw new SnaplineError(
            ErrorCodes.INVALID_ARGUMENT,
            `base snapshot ${baseSnapshotId} belongs to volume ${base.volume}, not ${volume}`,
            { details: { argument: 'baseSnapshotId' } },
          );
        }
        if (base.state !== 'completed') {
          throw badState(`base snapshot ${baseSnapshotId} is ${base.state}, not completed`, baseSnapshotId);
        }
        baseKey = base.snapshot_key;
      }
      const open = this.#rows.sql.openRun.get(volume) as SnapshotRow | undefined;
      if (open !== undefined) {
        throw new SnaplineError(
          ErrorCodes.CONFLICT,
          `volume ${volume} has an unfinished run (snapshot ${open.snapshot_id}, ${open.state})`,
          {
            hint: 'resume it by running the same backup again, or abandon it',
            details: { volume, snapshotId: open.snapshot_id },
          },
        );
      }
      try {
        this.#rows.sql.insertRun.run({
          snapshot_id: snapshotId,
          volume_key: volumeRow.volume_key,
          parent_snapshot_id: parentSnapshotId,
          base_key: baseKey,
          volume_size_gib: volumeSizeGiB,
          source_bytes: sourceBytes,
          encrypted: encrypted ? 1 : 0,
          description,
          started_at: Date.now(),
          run_options: runOptions,
        });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshotId} is already in the index`, {
          details: { snapshotId },
        });
      }
      this.#rows.sql.dropRunStart.run(volumeRow.volume_key);
      return snapshotRecordOf(this.#rows.snapshotRow(snapshotId));
    });
  }

  /**
   * Records, before its StartSnapshot, the ClientToken and StartSnapshot
   * arguments of the volume's next run, replacing any earlier record of the
   * volume: a run that crashes before beginRun is resumed by sending the same
   * token and arguments, which AWS answers with the same snapshot. The volume
   * must exist; CONFLICT when it has an unfinished run. Durable.
   */
  recordRunStart(r: { volume: string; clientToken: string; startInput: string; runOptions: string | null }): RunStartRecord {
    const volume = requireText('volume', r?.volume);
    const clientToken = requireText('clientToken', r.clientToken);
    const startInput = requireText('startInput', r.startInput);
    const runOptions = optionalText('runOptions', r.runOptions);
    return this.#access.durably(() => {
      const volumeRow = this.#rows.volumeRow(volume);
      const open = this.#rows.sql.openRun.get(volume) as SnapshotRow | undefined;
      if (open !== undefined) {
        throw new SnaplineError(ErrorCodes.CONFLICT, `volume ${volume} has an unfinished run (snapshot ${open.snapshot_id}, ${open.state})`, {
          details: { volume, snapshotId: open.snapshot_id },
        });
      }
      const createdAt = Date.now();
      this.#rows.sql.upsertRunStart.run({ volume_key: volumeRow.volume_key, client_token: clientToken, start_input: startInput, run_options: runOptions, created_at: createdAt });
      return { volume, clientToken, startInput, runOptions, createdAt: new Date(createdAt) };
    });
  }

  /** The volume's run recorded by recordRunStart and not yet begun (beginRun) or dropped, if any. */
  runStart(volume: string): RunStartRecord | undefined {
    return this.#access.run(() => {
      const row = this.#rows.sql.runStart.get(volume) as
        | { volume: string; client_token: string; start_input: string; run_options: string | null; created_at: number }
        | undefined;
      if (row === undefined) return undefined;
      return { volume: row.volume, clientToken: row.client_token, startInput: row.start_input, runOptions: row.run_options, createdAt: new Date(row.created_at) };
    });
  }

  /** Forgets the volume's recorded run start. Idempotent. Durable. */
  dropRunStart(volume: string): void {
    this.#access.durably(() => {
      const row = this.#rows.sql.volumeByName.get(volume) as VolumeRow | undefined;
      if (row !== undefined) this.#rows.sql.dropRunStart.run(row.volume_key);
    });
  }

  /** The volume's unfinished run (pending or completing), if any. */
  pendingRun(volume: string): SnapshotRecord | undefined {
    return this.#access.run(() => {
      this.#stores.check(volume);
      const row = this.#rows.sql.openRun.get(volume) as SnapshotRow | undefined;
      return row === undefined ? undefined : snapshotRecordOf(row);
    });
  }

  /**
   * Records blocks about to be uploaded for a pending run (call before the
   * uploads start), in one transaction (synchronous NORMAL). An intent stays
   * until recordBlocks records that block: after a crash,
   * unacknowledgedBlocks lists the blocks the snapshot may or may not hold.
   * Idempotent: an intent recorded again gets the new digest.
   */
  recordIntents(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.recordJournal(snapshotId, { intents: blocks, blocks: [] });
  }

  /**
   * Records blocks the service acknowledged for a pending run, in one
   * transaction (synchronous NORMAL), and clears their intents. Idempotent:
   * a block recorded again gets the new digest. BAD_STATE once markCompleting
   * was called.
   */
  recordBlocks(snapshotId: string, blocks: ReadonlyArray<BlockInput>): void {
    this.recordJournal(snapshotId, { intents: [], blocks });
  }

  /**
   * recordIntents then recordBlocks in one transaction (synchronous NORMAL):
   * a run's intents and acknowledgements of one moment cost one commit.
   * Validates both lists before writing anything.
   */
  recordJournal(snapshotId: string, batch: { intents: ReadonlyArray<BlockInput>; blocks: ReadonlyArray<BlockInput> }): void {
    const { intents, blocks } = batch ?? {};
    if (!Array.isArray(intents)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'intents must be an array');
    if (!Array.isArray(blocks)) throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, 'blocks must be an array');
    this.#access.run(() =>
      this.#access.db
        .transaction(() => {
          const row = this.#rows.snapshotRow(snapshotId);
          if (row.state !== 'pending') {
            throw badState(`snapshot ${snapshotId} is ${row.state}: its journal is written only while it is pending`, snapshotId);
          }
          const blockCount = row.volume_size_gib * BLOCKS_PER_GIB;
          const runBase = row.snapshot_key * BLOCK_KEY_SPAN;
          const intended = checkedBatch('intents', intents, blockCount, runBase);
          const written = checkedBatch('blocks', blocks, blockCount, runBase);
          for (const [id, digest] of intended) this.#rows.sql.recordIntent.run(id, digest);
          for (const [id, digest] of written) {
            this.#rows.sql.recordBlock.run(id, digest);
            this.#rows.sql.clearIntent.run(id);
          }
        })
        .immediate(),
    );
  }

  /** Intents not yet acknowledged by recordBlocks for an open run, ascending (same scan rules as writtenBlocks). */
  unacknowledgedBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    return this.#journalEntries(snapshotId, this.#rows.intents);
  }

  /** Blocks recorded (acknowledged) for an open run (pending or completing), ascending. */
  writtenBlocks(snapshotId: string): IterableIterator<BlockEntry> {
    return this.#journalEntries(snapshotId, this.#rows.journal);
  }

  /** Number of blocks recorded for an open run. */
  writtenBlockCount(snapshotId: string): number {
    return this.#access.run(() => {
      const row = this.#rows.openRunRow(snapshotId);
      return this.#rows.sql.runBlocks.count.get({ base: row.snapshot_key * BLOCK_KEY_SPAN }) as number;
    });
  }

  /** CompleteSnapshot was sent: pending -> completing. Idempotent. Durable. */
  markCompleting(snapshotId: string): void {
    this.#access.durably(() => {
      const row = this.#rows.snapshotRow(snapshotId);
      if (row.state === 'completing') return;
      if (row.state !== 'pending') throw badState(`snapshot ${snapshotId} is ${row.state}, not pending`, snapshotId);
      this.#rows.sql.setState.run('completing', row.snapshot_key);
    });
  }

  /**
   * AWS said completed: in one durable transaction the run's blocks become
   * the snapshot's map, state completed, changedBlocks (the blocks recorded)
   * and completedAt set. Idempotent: a completed snapshot is returned as is.
   */
  commitRun(snapshotId: string, completedAt: Date = new Date()): SnapshotRecord {
    const completedAtMs = requireTime('completedAt', completedAt);
    return this.#access.durably(() => {
      const row = this.#rows.snapshotRow(snapshotId);
      if (row.state === 'completed') return snapshotRecordOf(row);
      if (!OPEN_STATES.has(row.state)) {
        throw badState(`snapshot ${snapshotId} is ${row.state}: only an open run can be committed`, snapshotId);
      }
      const mapKey = this.#rows.sql.nextMapKey.get() as number;
      const runBase = row.snapshot_key * BLOCK_KEY_SPAN;
      const copied = this.#rows.sql.copyRunToMap.run({ run_base: runBase, map_base: mapKey * BLOCK_KEY_SPAN }).changes;
      this.#rows.dropJournal(row.snapshot_key);
      this.#rows.sql.commitRun.run({
        key: row.snapshot_key,
        completed_at: completedAtMs,
        changed_blocks: copied,
        map_key: mapKey,
        map_checksum: keyChecksum(this.#rows.maps, mapKey),
      });
      if (row.base_key !== null) this.#rows.settleDeleted(row.base_key);
      return snapshotRecordOf(this.#rows.snapshotRow(snapshotId));
    });
  }

  /**
   * The run failed for good: state error, its recorded blocks dropped; it
   * never counts as a base or head. Idempotent for a snapshot already in
   * error; BAD_STATE for a completed or deleted one. Durable.
   */
  abandonRun(snapshotId: string, reason: string): void {
    const why = requireText('reason', reason);
    this.#access.durably(() => {
      const row = this.#rows.snapshotRow(snapshotId);
      if (row.state === 'error') return;
      if (!OPEN_STATES.has(row.state)) {
        throw badState(`snapshot ${snapshotId} is ${row.state}: only an open run can be abandoned`, snapshotId);
      }
      this.#rows.dropJournal(row.snapshot_key);
      this.#rows.sql.failRun.run(why, row.snapshot_key);
      if (row.base_key !== null) this.#rows.settleDeleted(row.base_key);
    });
  }

  /**
   * One table of an open run's journal, ascending, chunk by chunk: rows
   * recorded during the scan may or may not be seen; CONFLICT if the run is
   * committed or abandoned meanwhile.
   */
  #journalEntries(snapshotId: string, rows: KeyedRows): IterableIterator<BlockEntry> {
    return this.#access.run(() => {
      const row = this.#rows.openRunRow(snapshotId);
      const guard: ChunkGuard = () => {
        this.#access.assertOpen();
        const state = this.#rows.sql.stateByKey.get(row.snapshot_key) as SnapshotRecord['state'] | undefined;
        if (state === undefined || !OPEN_STATES.has(state)) {
          throw new SnaplineError(ErrorCodes.CONFLICT, `snapshot ${snapshotId} stopped being an open run during the scan`);
        }
      };
      return chainEntries(rows, [row.snapshot_key], 0, BLOCK_KEY_SPAN, guard);
    });
  }
}

/** A journal batch validated against a volume of `blockCount` blocks, as [row id, digest] pairs ascending (ascending inserts keep the journal's pages full). */
function checkedBatch(name: string, blocks: ReadonlyArray<BlockInput>, blockCount: number, runBase: number): Array<[number, Buffer]> {
  const rows: Array<[number, Buffer]> = [];
  for (let at = 0; at < blocks.length; at += 1) {
    const block = blocks[at]!;
    const index = requireInteger(`${name}[${at}].index`, block?.index, 0, blockCount - 1);
    rows.push([runBase + index, requireDigest(`${name}[${at}].digest`, block.digest, DIGEST_BYTES)]);
  }
  return rows.sort((a, b) => a[0] - b[0]);
}
