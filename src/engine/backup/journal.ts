import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { BlockEntry, BlockInput, IndexPorts } from '../../core/index-ports.js';

/** One transaction of the journal: the records of one event-loop turn, and the promise of their write. */
interface JournalBatch {
  intents: BlockInput[];
  blocks: BlockInput[];
  written: Promise<void>;
  settle: (error?: unknown) => void;
  done: boolean;
}

/**
 * The run's journal in the index. Before blocks are uploaded their intent is
 * recorded (with the digest about to be written); after the service
 * acknowledges a block it is recorded as written. A crash between the two
 * leaves an intent that a resumed run uploads again, so the snapshot never
 * holds a block the journal does not know of.
 *
 * Records are batched: everything intended or acknowledged during one turn of
 * the event loop is written in one transaction at the end of the turn
 * (setImmediate), and the promises intend() and acknowledge() return settle
 * with that write. So an upload sent after its intent() resolved is known to
 * the journal, and a slab released after its blocks' acknowledge() resolved
 * is repeated by no resume: a crash repeats at most the uploads whose slabs
 * are still held, as with one transaction per slab.
 */
export class JournalWriter {
  #batch: JournalBatch | undefined;

  constructor(
    private readonly index: Pick<IndexPorts, 'runs'>,
    private readonly snapshotId: string,
  ) {}

  /** Records that these blocks are about to be uploaded; resolves once recorded. Send none of them before. */
  intend(blocks: ReadonlyArray<{ index: number; digest: Uint8Array }>): Promise<void> {
    const batch = this.#current();
    for (const block of blocks) batch.intents.push({ index: block.index, digest: copyOf(block.digest) });
    return batch.written;
  }

  /** Records an acknowledged block; resolves once recorded. Keep the bytes it was uploaded from until then. */
  acknowledge(blockIndex: number, digest: Uint8Array): Promise<void> {
    const batch = this.#current();
    batch.blocks.push({ index: blockIndex, digest: copyOf(digest) });
    return batch.written;
  }

  /** Writes what is waiting now, without waiting for the end of the turn; throws what the write throws. */
  flush(): void {
    const batch = this.#batch;
    if (batch !== undefined) this.#write(batch, true);
  }

  #current(): JournalBatch {
    if (this.#batch !== undefined) return this.#batch;
    let settle!: (error?: unknown) => void;
    const written = new Promise<void>((resolve, reject) => {
      settle = (error) => (error === undefined ? resolve() : reject(error));
    });
    // A failed write is thrown to whoever waits for it; none may be waiting (a flush that failed).
    written.catch(() => undefined);
    const batch: JournalBatch = { intents: [], blocks: [], written, settle, done: false };
    this.#batch = batch;
    setImmediate(() => this.#write(batch, false));
    return batch;
  }

  #write(batch: JournalBatch, rethrow: boolean): void {
    if (batch.done) return;
    batch.done = true;
    if (this.#batch === batch) this.#batch = undefined;
    try {
      this.index.runs.recordJournal(this.snapshotId, { intents: batch.intents, blocks: batch.blocks });
    } catch (err) {
      batch.settle(err);
      if (rethrow) throw err;
      return;
    }
    batch.settle();
  }
}

/** A digest copied out of the buffer it is a view of (a slab's digests outlive no slab). */
function copyOf(digest: Uint8Array): Uint8Array {
  return Uint8Array.prototype.slice.call(digest);
}

/**
 * What a resumed run already knows of its pending snapshot: blocks written
 * (with their digests) and intents never acknowledged (to upload again).
 * Empty for a new run. The written blocks are read from the index as the
 * run walks the volume (in chunks, so memory does not grow with the volume);
 * the unacknowledged intents, at most one upload window, are held.
 */
export class ResumeState {
  #next: BlockEntry | undefined;
  #lastAsked = -1;

  private constructor(
    private readonly writtenBlocks: Iterator<BlockEntry>,
    private readonly unacknowledged: ReadonlySet<number>,
  ) {
    this.#advance();
  }

  static empty(): ResumeState {
    return new ResumeState([][Symbol.iterator](), new Set());
  }

  static load(index: Pick<IndexPorts, 'runs'>, snapshotId: string): ResumeState {
    const unacknowledged = new Set<number>();
    for (const block of index.runs.unacknowledgedBlocks(snapshotId)) unacknowledged.add(block.index);
    return new ResumeState(index.runs.writtenBlocks(snapshotId), unacknowledged);
  }

  /**
   * The digest already written at this block in the pending snapshot. Calls
   * must not go backwards (the run asks in ascending block order); blocks
   * this run acknowledges are behind it and never asked for again.
   */
  written(blockIndex: number): Buffer | undefined {
    // Going back would answer "not written" for a block the snapshot holds, and a wrong skip could follow.
    if (blockIndex < this.#lastAsked) throw new SnaplineError(ErrorCodes.INTERNAL, `resume state asked for block ${blockIndex} after block ${this.#lastAsked}`);
    this.#lastAsked = blockIndex;
    while (this.#next !== undefined && this.#next.index < blockIndex) this.#advance();
    return this.#next?.index === blockIndex ? this.#next.digest : undefined;
  }

  /** The blocks whose upload may or may not have happened, to be read and uploaded again. */
  rewrites(): number[] {
    return [...this.unacknowledged];
  }

  /** True when an upload of this block may or may not have happened. */
  mustRewrite(blockIndex: number): boolean {
    return this.unacknowledged.has(blockIndex);
  }

  #advance(): void {
    const step = this.writtenBlocks.next();
    this.#next = step.done ? undefined : step.value;
  }
}
