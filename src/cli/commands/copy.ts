import type { Command } from 'commander';
import type { CopyProgress, CopyResult } from '../../engine/dr/copy.js';
import type { Session } from '../../session.js';
import type { CommandContext, Wrap } from '../context.js';
import type { Output } from '../output.js';
import { secondsOption, snapshotIdArgument, tagOption } from '../parse.js';
import { formatDuration } from '../progress.js';
import { sessionOptions } from './common.js';

interface CopyFlags {
  toRegion: string;
  toConnection?: string;
  encrypted?: boolean;
  kmsKeyId?: string;
  tag?: Record<string, string>;
  description?: string;
  waitTimeout?: number;
}

export function registerCopy(program: Command, wrap: Wrap): void {
  program
    .command('copy')
    .description('copy a snapshot into another Region (or account) with EC2 CopySnapshot and wait until the copy is completed')
    .argument('<snapshot-id>', 'completed snapshot of the index to copy', snapshotIdArgument('<snapshot-id>'))
    .requiredOption('--to-region <region>', 'the Region the copy goes to')
    .option('--to-connection <name>', "make the copy through this connection (another account or credentials) instead of the current one's")
    .option('--encrypted', 'encrypt the copy of an unencrypted snapshot (the default KMS key of the destination unless --kms-key-id)')
    .option('--kms-key-id <key>', 'KMS key of the destination Region for the copy (implies --encrypted)')
    .option('--tag <key=value>', 'tag for the copy (repeatable), besides the source\'s snapline tags', tagOption)
    .option('--description <text>', 'description of the copy')
    .option('--wait-timeout <seconds>', 'stop waiting for the copy after this long (it goes on; run the same command again to wait for it)', secondsOption('--wait-timeout'))
    .action(
      wrap(async (ctx: CommandContext, snapshotId: string, flags: CopyFlags) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const result = await withSession(sessionOptions(ctx), (session) => copyFromSession(ctx, session, snapshotId, flags));
        output.result(result, () => describeCopy(result));
        return 0;
      }),
    );
}

/** The copy of one snapshot, within a session of the source: opens the destination, copies, waits, closes. */
export async function copyFromSession(ctx: CommandContext, session: Session, snapshotId: string, flags: CopyFlags): Promise<CopyResult> {
  const output = ctx.output();
  const { openCopyDestination } = await import('../../session.js');
  const { copySnapshot } = await import('../../engine/dr/copy.js');
  const globals = ctx.globals();
  const destination = await openCopyDestination(session, {
    region: flags.toRegion,
    ...(flags.toConnection === undefined ? {} : { connection: flags.toConnection }),
    ...(globals.config === undefined ? {} : { configPath: globals.config }),
    onWarning: (message) => output.warn(message),
    ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
  });
  try {
    return await copySnapshot(
      { index: session.index, catalog: session.catalog, sourceRegion: session.connection.settings.region, destination },
      {
        snapshotId,
        ...(flags.encrypted || flags.kmsKeyId !== undefined ? { encrypted: true } : {}),
        ...(flags.kmsKeyId === undefined ? {} : { kmsKeyId: flags.kmsKeyId }),
        ...(flags.tag === undefined ? {} : { tags: flags.tag }),
        ...(flags.description === undefined ? {} : { description: flags.description }),
        ...(flags.waitTimeout === undefined ? {} : { waitTimeoutMs: flags.waitTimeout }),
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
        onProgress: copyProgress(output),
      },
    );
  } finally {
    output.clearStatus();
    await destination.close();
  }
}

/** A status line on a TTY, otherwise a line each time the copy's progress changes. */
function copyProgress(output: Output): (progress: CopyProgress) => void {
  let last: string | undefined;
  return (p) => {
    const line = `copying ${p.snapshotId} to ${p.region} as ${p.copySnapshotId}: ${p.progress ?? 'pending'}`;
    output.status(line);
    if (line !== last) output.progressLine(line);
    last = line;
  };
}

export function describeCopy(result: CopyResult): string[] {
  const where = `${result.connection === null ? '' : `${result.connection}:`}${result.region}`;
  if (result.alreadyCopied) return [`${result.volume}: ${result.sourceSnapshotId} is already copied to ${where} as ${result.copySnapshotId}`];
  if (result.adopted) return [`${result.volume}: ${result.sourceSnapshotId} is copied to ${where} as ${result.copySnapshotId}, a copy found there that the index did not record (taken, nothing copied)`];
  return [
    `${result.volume}: ${result.sourceSnapshotId} copied to ${where} as ${result.copySnapshotId} in ${formatDuration(result.durationMs)}`,
    `  ${result.incrementalOf === null ? 'full copy' : `incremental from ${result.incrementalOf}`}${result.encrypted ? ', encrypted' : ''}`,
  ];
}
