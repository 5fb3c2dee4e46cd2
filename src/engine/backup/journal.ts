import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { BlockEntry, IndexPorts } from '../../core/index-ports.js';

/** Acknowledged blocks are written to the index in batches of this many. */
const ACK_BATCH = 64;

/**
 * The run's journal in the index. Before blocks are uploaded their intent is
 * recorded (with the digest about to be written); after the service
 * acknowledges a block it is recorded as written, in batches. A crash between
 * the two leaves an intent that a resumed run uploads again, so the snapshot
 * never holds a block the journal does not know of.
 */
export class JournalWriter {
  #acks: Array<{ index: number; digest: Uint8Array }> = [];

  constructor(
    private readonly index: Pick<IndexPorts, 'runs'>,
    private readonly snapshotId: string,
  ) {}

  /** Records that these blocks are about to be uploaded. Call before the uploads start. */
  intend(blocks: ReadonlyArray<{ index: number; digest: Uint8Array }>): void {
    this.index.runs.recordIntents(this.snapshotId, blocks);
  }

  /** Records an acknowledged block; written to the index with the next batch. */
  acknowledge(blockIndex: number, digest: Uint8Array): void {
    this.#acks.push({ index: blockIndex, digest: Uint8Array.prototype.slice.call(digest) });
    if (this.#acks.length >= ACK_BATCH) this.flush();
  }

  flush(): void {
    if (this.#acks.length === 0) return;
    const batch = this.#acks;
    this.#acks = [];
    this.index.runs.recordBlocks(this.snapshotId, batch);
  }
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
