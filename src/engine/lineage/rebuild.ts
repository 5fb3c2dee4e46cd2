import { realpath } from 'node:fs/promises';
import { throwIfAborted } from '../../core/abort.js';
import { digestOf } from '../../core/checksum.js';
import { GIB } from '../../core/constants.js';
import type { SnapshotCatalog, SnapshotReader } from '../../core/ports.js';
import { TaskWindow } from '../../core/task-window.js';
import { ErrorCodes, SnaplineError } from '../../errors.js';
import type { IndexPorts } from '../../core/index-ports.js';
import { isNbdUrl, parseNbdUrl } from '../../source/index.js';
import { completedSnapshot, SOURCE_BYTES_TAG, VOLUME_TAG } from '../blocks/remote-snapshot.js';

export interface RebuildOptions {
  /** The completed snapshot the index learns. */
  snapshotId: string;
  /** The volume it is filed under; default its snapline:volume tag. */
  volume?: string;
  /** The source the lineage backs up; a later backup of it builds on this snapshot. */
  source?: string;
  signal?: AbortSignal;
}

export interface RebuildResult {
  snapshotId: string;
  volume: string;
  blocks: number;
  sourceBytes: number;
  durationMs: number;
}

/**
 * Learns a completed snapshot's block map by reading every block (each
 * checksum verified by the reader) and records it in the index as a full map,
 * for a new machine or a lost index. The volume comes from `volume` or the
 * snapshot's snapline:volume tag. `source` names the image or device the
 * lineage backs up: a later backup of it builds on this snapshot, where a
 * backup of any other source is refused as for any lineage.
 */
export async function rebuildIndex(
  deps: { index: Pick<IndexPorts, 'lineage'>; reader: SnapshotReader; catalog: SnapshotCatalog },
  options: RebuildOptions,
): Promise<RebuildResult> {
  const started = Date.now();
  const snapshot = await completedSnapshot(deps, options.snapshotId, options);
  const volume = options.volume ?? snapshot.tags[VOLUME_TAG];
  if (!volume) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${options.snapshotId} has no ${VOLUME_TAG} tag, so volume must be given`, { details: { option: 'volume' } });
  }
  const sourcePath = options.source === undefined ? (deps.index.lineage.getVolume(volume)?.sourcePath ?? '') : await sourcePathOf(options.source);
  const taggedBytes = Number(snapshot.tags[SOURCE_BYTES_TAG]);
  const sourceBytes = Number.isSafeInteger(taggedBytes) && taggedBytes > 0 ? taggedBytes : snapshot.volumeSizeGiB * GIB;

  const blocks: Array<{ index: number; digest: Buffer }> = [];
  const tasks = new TaskWindow(64);
  await tasks.run(async () => {
      for await (const page of deps.reader.listBlocks(options.snapshotId)) {
        for (const block of page.blocks) {
          throwIfAborted(options.signal);
          await tasks.add(async () => {
            const { checksum } = await deps.reader.getBlock(options.snapshotId, block.index, block.token);
            blocks.push({ index: block.index, digest: digestOf(checksum) });
          });
        }
      }
  });
  // An interruption that came after the last block was asked for still stops the run before anything is recorded.
  throwIfAborted(options.signal);
  blocks.sort((a, b) => a.index - b.index);
  deps.index.lineage.ensureVolume({ name: volume, sourcePath, sizeBytes: sourceBytes });
  deps.index.lineage.importSnapshot(
    {
      snapshotId: options.snapshotId,
      volume,
      parentSnapshotId: null,
      volumeSizeGiB: snapshot.volumeSizeGiB,
      sourceBytes,
      encrypted: snapshot.encrypted,
      description: snapshot.description ?? null,
      startedAt: snapshot.startTime,
    },
    blocks,
  );
  return { snapshotId: options.snapshotId, volume, blocks: blocks.length, sourceBytes, durationMs: Date.now() - started };
}

/** The source's real path (an NBD export's canonical URL), as backup records it. */
async function sourcePathOf(source: string): Promise<string> {
  if (isNbdUrl(source)) return parseNbdUrl(source).url;
  try {
    return await realpath(source);
  } catch (err) {
    throw new SnaplineError(ErrorCodes.SOURCE_UNUSABLE, `cannot find the source ${source}: ${(err as Error).message}`, { cause: err });
  }
}
