import { Option, type Command } from 'commander';
import {
  DEFAULT_RESTORE_DAYS,
  DEFAULT_RETRIEVAL_TIER,
  DEFAULT_SEGMENT_BLOCKS,
  DEFAULT_STORAGE_CLASS,
  MAX_RESTORE_DAYS,
  RETRIEVAL_TIERS,
  STORAGE_CLASSES,
  archiveTargetOf,
  retrievalTierOf,
} from '../../core/archive-options.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import type { ArchiveTarget, RetrievalTier } from '../../core/ports.js';
import type { ArchiveStatusEntry } from '../../engine/archive/jobs.js';
import type { BlockIndex } from '../../index/index.js';
import type { CommandContext, Wrap } from '../context.js';
import { archiveRefArgument, integerOption, secondsOption, snapshotIdArgument } from '../parse.js';
import { ProgressDisplay, count, formatBytes, formatDuration } from '../progress.js';
import { recordedRun, unattendedOptions, type RecordedRun, type UnattendedFlags } from '../unattended.js';
import { concurrencyOption, sessionOptions } from './common.js';

interface PlaceFlags {
  bucket?: string;
  vault?: string;
}

interface CreateFlags extends PlaceFlags, UnattendedFlags {
  to?: ArchiveTarget;
  storageClass?: string;
  incremental?: boolean;
  createBucket?: boolean;
  concurrency: number;
  segmentBlocks?: number;
}

const placeOptions = (command: Command): Command =>
  command.option('--bucket <name>', "S3 bucket (overrides the connection's archive.bucket)").option('--vault <name>', "Glacier vault (overrides the connection's archive.vault)");

function placeOf(flags: PlaceFlags): { archive: { bucket?: string; vault?: string } } {
  return { archive: { ...(flags.bucket ? { bucket: flags.bucket } : {}), ...(flags.vault ? { vault: flags.vault } : {}) } };
}

export function registerArchive(program: Command, wrap: Wrap): void {
  const archive = program.command('archive').description('move snapshots to S3 Glacier storage classes or Glacier vaults, and bring them within reach again');

  placeOptions(
    unattendedOptions(archive.command('create'))
      .description('archive a completed snapshot: its blocks (or, with --incremental, those changed since the last archive of its volume) and a manifest')
      .argument('<snapshot-id>', 'completed snapshot to archive', snapshotIdArgument('<snapshot-id>'))
      .addOption(new Option('--to <target>', 's3 or glacier (default: s3 when the connection names a bucket)').argParser(archiveTargetOf))
      .option('--storage-class <class>', `S3 storage class: ${STORAGE_CLASSES.join(', ')} (default ${DEFAULT_STORAGE_CLASS})`)
      .option('--incremental', 'store only the blocks changed since the newest archive of the volume in the same place')
      .option('--create-bucket', "make the S3 bucket when it does not exist (in the connection's Region)"),
  )
    .addOption(concurrencyOption('blocks read at once'))
    .addOption(new Option('--segment-blocks <n>', `blocks per segment object (default ${DEFAULT_SEGMENT_BLOCKS}, ${formatBytes(DEFAULT_SEGMENT_BLOCKS * BLOCK_SIZE)})`).argParser(integerOption('--segment-blocks', 1, 1 << 20)).hideHelp())
    .action(wrap((ctx: CommandContext, snapshotId: string, flags: CreateFlags) => runCreate(ctx, snapshotId, flags)));

  archive
    .command('restore')
    .description('ask for every object of an archive (and the archives it builds on) to be made readable: S3 RestoreObject or Glacier retrieval jobs')
    .argument('<archive>', 'archive id, or a snapshot id with one archive', archiveRefArgument('<archive>'))
    .addOption(new Option('--tier <tier>', `${RETRIEVAL_TIERS.join(', ')} (default ${DEFAULT_RETRIEVAL_TIER})`).argParser(retrievalTierOf))
    .addOption(new Option('--days <n>', 'days a restored S3 copy stays readable').default(DEFAULT_RESTORE_DAYS).argParser(integerOption('--days', 1, MAX_RESTORE_DAYS)))
    .action(wrap((ctx: CommandContext, ref: string, flags: { tier?: RetrievalTier; days: number }) => runRestore(ctx, ref, flags)));

  archive
    .command('status')
    .description('the archives of the index, and whether their objects can be read')
    .argument('[archive]', 'one archive (and those it builds on)', archiveRefArgument('[archive]'))
    .option('--wait', 'wait (with growing pauses, no fixed limit) until the archive can be read; fails when a retrieval job fails')
    .addOption(new Option('--wait-timeout <seconds>', 'stop waiting after this long').argParser(secondsOption('--wait-timeout')))
    .addOption(new Option('--poll-ms <ms>', 'first pause between polls').argParser(integerOption('--poll-ms', 1, 3_600_000)).hideHelp())
    .action(wrap((ctx: CommandContext, ref: string | undefined, flags: { wait?: boolean; waitTimeout?: number; pollMs?: number }) => runStatus(ctx, ref, flags)));

  placeOptions(
    archive
      .command('inventory')
      .description('what the bucket (S3 listing) or vault (inventory job, hours) holds, by archive, compared with the index')
      .addOption(new Option('--to <target>', 's3 or glacier').argParser(archiveTargetOf)),
  ).action(wrap((ctx: CommandContext, flags: PlaceFlags & { to?: ArchiveTarget }) => runInventory(ctx, flags)));

  archive
    .command('delete')
    .description('delete one archive: its objects or vault archives and its records in the index; refused while an archive builds on it')
    .argument('<archive>', 'archive id, or a snapshot id with one archive', archiveRefArgument('<archive>'))
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .action(wrap((ctx: CommandContext, ref: string, flags: { dryRun?: boolean }) => runDelete(ctx, ref, flags)));

  archive
    .command('prune')
    .description("delete archives older than N days; never a volume's newest, nor one an unfinished ECS restore or a running rehydration reads, nor one a kept archive builds on")
    .addOption(new Option('--older-than-days <n>', "delete archives completed more than N days ago (default: the connection's archive.delete_older_than_days)").argParser(integerOption('--older-than-days', 0, 100_000)))
    .option('--volume <name>', 'only this volume')
    .option('--dry-run', 'say what would be deleted; delete nothing')
    .action(wrap((ctx: CommandContext, flags: { olderThanDays?: number; volume?: string; dryRun?: boolean }) => runPrune(ctx, flags)));
}

function runCreate(ctx: CommandContext, snapshotId: string, flags: CreateFlags): Promise<number> {
  const volumesOnFailure = (index: BlockIndex) => [index.lineage.getSnapshot(snapshotId)?.volume ?? null];
  return recordedRun(ctx, { operation: 'archive', flags, volumesOnFailure }, () => createRun(ctx, snapshotId, flags));
}

async function createRun(ctx: CommandContext, snapshotId: string, flags: CreateFlags): Promise<RecordedRun> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { createArchive } = await import('../../engine/archive/archive.js');
  const { settleWaitText } = await import('../../engine/blocks/committer.js');
  const result = await withSession(sessionOptions(ctx, { concurrency: flags.concurrency, ...placeOf(flags) }), async (session) => {
    const display = new ProgressDisplay(output);
    try {
      return await createArchive(session, {
        snapshotId,
        to: flags.to,
        storageClass: flags.storageClass,
        incremental: flags.incremental,
        createBucket: flags.createBucket,
        segmentBlocks: flags.segmentBlocks,
        window: flags.concurrency,
        signal: ctx.signal,
        onSettling: (wait) => output.progressLine(settleWaitText(wait)),
        onProgress: (p) =>
          display.update({
            label: 'archive',
            done: p.blocksArchived * BLOCK_SIZE,
            total: Math.max(p.blocksListed, p.blocksArchived) * BLOCK_SIZE,
            detail: `${count(p.segmentsDone, 'segment')} stored, ${formatBytes(p.bytesUploaded)} sent`,
          }),
      });
    } finally {
      display.done();
    }
  });
  output.result(result, () => [
    ...(result.locationCreated ? [`made bucket ${result.location}`] : []),
    `archived ${result.snapshotId} as ${result.archiveId} in ${result.target} ${result.location}${result.storageClass ? ` (${result.storageClass})` : ''}${result.resumed ? ', resumed' : ''}`,
    `  ${result.incremental ? `incremental on ${result.parentArchiveId}: ` : ''}${count(result.blocks, 'block')} (${result.zeroBlocks} all zeros)${result.incremental ? `, ${result.removedBlocks} removed` : ''} in ${count(result.segments, 'segment')}; ${formatBytes(result.sizeBytes)} stored, ${formatBytes(result.bytesUploaded)} sent in ${formatDuration(result.durationMs)}`,
    `  manifest ${result.manifestRef} (tree hash ${result.treeHash})`,
  ]);
  const outcome = {
    volume: result.volume,
    snapshotId: result.snapshotId,
    changedBlocks: 0,
    changedBytes: 0,
    transferredBlocks: result.blocks,
    transferredBytes: result.bytesUploaded,
  };
  return { exitCode: 0, volumes: [outcome] };
}

async function runRestore(ctx: CommandContext, ref: string, flags: { tier?: RetrievalTier; days: number }): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { restoreArchive } = await import('../../engine/archive/jobs.js');
  const result = await withSession(sessionOptions(ctx), (session) => restoreArchive(session, { archive: ref, tier: flags.tier, days: flags.days }));
  const asked = result.objects.filter((o) => o.requested).length;
  output.result(result, () => [
    `asked for ${count(asked, 'object')} of ${result.chain.join(', ')} (${result.tier}${result.objects.some((o) => o.job === null) ? `, ${result.days} days` : ''}); ${result.objects.length - asked} readable or under way already`,
    ...result.objects.map((o) => `  ${o.archiveId} ${o.name}: ${o.state}${o.job ? ` (job ${o.job})` : ''}`),
    `wait for it with \`snapline archive status ${ref} --wait\``,
  ]);
  return 0;
}

async function runStatus(ctx: CommandContext, ref: string | undefined, flags: { wait?: boolean; waitTimeout?: number; pollMs?: number }): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { archiveStatus } = await import('../../engine/archive/jobs.js');
  const entries = await withSession(sessionOptions(ctx), (session) =>
    archiveStatus(session, {
      ...(ref === undefined ? {} : { archive: ref }),
      wait: flags.wait,
      waitTimeoutMs: flags.waitTimeout,
      ...(flags.pollMs === undefined ? {} : { pollMs: { first: flags.pollMs, max: Math.max(flags.pollMs, 600_000) } }),
      signal: ctx.signal,
      onWait: (summary) => output.progressLine(`waiting: ${summary.map((e) => `${e.archiveId} ${describeObjects(e)}`).join('; ')}`),
    }),
  );
  output.result({ archives: entries }, () => (entries.length === 0 ? ['no archives in the index'] : entries.map(describeEntry)));
  return 0;
}

function describeObjects(entry: ArchiveStatusEntry): string {
  const readable = entry.objects.filter((o) => o.state === 'available').length;
  return `${readable} of ${entry.objects.length} objects readable`;
}

/** Whether an archive can be read, in words; its objects are counted only when they were looked up. */
function describeReadability(entry: ArchiveStatusEntry): string {
  if (entry.state === 'uploading') return `unfinished: finish it with \`snapline archive create ${entry.snapshotId}\` or delete it with \`snapline archive delete ${entry.archiveId}\``;
  const counted = entry.objects.length === 0 ? '' : ` (${describeObjects(entry)})`;
  switch (entry.restore) {
    case null:
      return entry.state;
    case 'available':
      return `readable${counted}`;
    case 'in-progress':
      return `restore under way${counted}`;
    case 'failed':
      return `a retrieval failed${counted}: ask again with \`snapline archive restore ${entry.archiveId}\``;
    case 'archived':
      return `not readable until restored${entry.objects.length === 0 ? ' (no restore asked for)' : counted}`;
  }
}

function describeEntry(entry: ArchiveStatusEntry): string {
  const parent = entry.parentArchiveId ? ` on ${entry.parentArchiveId}` : '';
  const archived = entry.state === 'archived' ? `archived${parent}, ${formatBytes(entry.sizeBytes)}, ` : '';
  return `${entry.archiveId} ${entry.volume} ${entry.snapshotId} ${entry.target} ${entry.location}${entry.storageClass ? ` ${entry.storageClass}` : ''}: ${archived}${describeReadability(entry)}`;
}

async function runInventory(ctx: CommandContext, flags: PlaceFlags & { to?: ArchiveTarget }): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { archiveInventory } = await import('../../engine/archive/jobs.js');
  const result = await withSession(sessionOptions(ctx, placeOf(flags)), (session) => archiveInventory(session, { to: flags.to }));
  output.result(result, () => {
    if (result.state === 'in-progress') return [`the inventory of vault ${result.location} is being taken (job ${result.job}); it takes hours: run this again later`];
    if (result.state === 'failed') return [`the inventory job ${result.job} of vault ${result.location} failed`];
    return [
      `${result.target} ${result.location}: ${count(result.archives.length, 'archive')}${result.takenAt ? ` (inventory of ${result.takenAt})` : ''}`,
      ...result.archives.map((a) => `  ${a.archiveId ?? '(unknown id)'} ${a.volume} ${a.snapshotId}: ${count(a.objects, 'object')}, ${formatBytes(a.sizeBytes)}, ${a.indexState === null ? 'not in the index' : `index: ${a.indexState}`}`),
      ...result.missing.map((m) => `  missing: ${m.archiveId} ${m.name} (${m.ref})`),
      ...result.strays.map((s) => `  stray: ${s.name} (${formatBytes(s.sizeBytes)})`),
    ];
  });
  return result.state === 'failed' ? 3 : 0;
}

async function runDelete(ctx: CommandContext, ref: string, flags: { dryRun?: boolean }): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { deleteArchive } = await import('../../engine/archive/jobs.js');
  const result = await withSession(sessionOptions(ctx), (session) => deleteArchive(session, { archive: ref, dryRun: flags.dryRun }));
  const uploads = result.uploads > 0 ? ` and ${count(result.uploads, 'upload')} under way` : '';
  output.result(result, () => [
    `${result.dryRun ? 'would delete' : 'deleted'} ${result.state === 'uploading' ? 'unfinished ' : ''}archive ${result.archiveId} of ${result.snapshotId} (${result.volume}) in ${result.target} ${result.location}: ${count(result.objects, 'object')}${uploads}`,
  ]);
  return 0;
}

async function runPrune(ctx: CommandContext, flags: { olderThanDays?: number; volume?: string; dryRun?: boolean }): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { pruneArchives } = await import('../../engine/archive/jobs.js');
  const result = await withSession(sessionOptions(ctx), (session) => pruneArchives(session, flags));
  output.result(result, () => [
    `${result.dryRun ? 'would delete' : 'deleted'} ${count(result.deleted.length, 'archive')} older than ${result.olderThanDays} days`,
    ...result.deleted.map((d) => `  ${d.archiveId} ${d.volume} ${d.snapshotId} (${d.ageDays} days old, ${count(d.objects, 'object')})`),
    ...result.kept.map((k) => `  kept ${k.archiveId}: ${k.reason}`),
  ]);
  return 0;
}
