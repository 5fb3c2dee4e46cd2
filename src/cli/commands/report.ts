import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import type { CommandContext, Wrap } from '../context.js';
import type { SnapshotCatalog } from '../../core/ports.js';
import type { RemoteSession } from '../../session.js';
import { connectionSettings, withIndex, writeFileAtomically } from '../unattended.js';
import { sessionOptions } from './common.js';
import { retentionOf, retentionOptions, type RetentionFlags } from './prune.js';
import { expectEveryOption } from './status.js';

interface ReportFlags extends RetentionFlags {
  volume?: string;
  html: string;
  expectEvery?: number;
}

export function registerReport(program: Command, wrap: Wrap): void {
  const command = program
    .command('report')
    .description(
      "write one self-contained HTML page: the status table, charts of each volume's backups and restore drills, its snapshot calendar, and the retention rules that keep each snapshot (the options, else each volume's policy in the config file, as prune decides them)",
    )
    .option('--volume <name>', 'only this volume')
    .addOption(new Option('--html <file>', 'the page to write (replaced atomically)').makeOptionMandatory())
    .addOption(new Option('--expect-every <duration>', "as for status (default: the connection's expect_every)").argParser(expectEveryOption));
  retentionOptions(command).action(wrap((ctx: CommandContext, flags: ReportFlags) => runReport(ctx, flags)));
}

async function runReport(ctx: CommandContext, flags: ReportFlags): Promise<number> {
  const output = ctx.output();
  const { indexReport, reportHtml } = await import('../../engine/ops/report.js');
  const { retentionPlan } = await import('../../engine/lineage/prune.js');
  const expected = flags.expectEvery ?? (await connectionSettings(ctx, { refuseBroken: true })).expectEveryMs;
  const volumeFilter = flags.volume === undefined ? {} : { volume: flags.volume };
  const policies = await retentionOf(ctx, flags, flags.volume);
  const remote = tagsOnDemand(ctx);
  // From the index alone: only a policy that keeps tagged snapshots opens a connection (EC2 DescribeSnapshots for the tags).
  const html = await withIndex(ctx, async (index) => {
    const shown = indexReport(index, { ...volumeFilter, ...(expected === undefined ? {} : { expectEveryMs: expected }) });
    // A volume with failed runs only has no snapshots to plan for.
    const known = new Set(index.lineage.listVolumes().map((v) => v.name));
    const retention = flags.volume !== undefined && !known.has(flags.volume) ? undefined : await retentionPlan({ index, catalog: remote.catalog }, { ...policies, ...volumeFilter });
    return reportHtml({ ...shown, ...(retention === undefined ? {} : { retention }) });
  }).finally(() => remote.close());
  const path = resolve(flags.html);
  await writeFileAtomically(path, html);
  output.result({ html: path, bytes: Buffer.byteLength(html) }, () => [`wrote ${path}`]);
  return 0;
}

/** A snapshot catalog whose connection is opened on its first use (the tags of a keepTags policy), and closed by close(). */
function tagsOnDemand(ctx: CommandContext): { catalog: SnapshotCatalog; close(): Promise<void> } {
  let opened: Promise<RemoteSession> | undefined;
  const remote = () =>
    (opened ??= import('../../session.js').then(({ openRemote }) => openRemote(sessionOptions(ctx))));
  return {
    catalog: {
      describeSnapshots: async (ids) => (await remote()).catalog.describeSnapshots(ids),
      taggedSnapshots: async (tags) => (await remote()).catalog.taggedSnapshots(tags),
      deleteSnapshot: async (id) => (await remote()).catalog.deleteSnapshot(id),
      createTags: async (id, tags) => (await remote()).catalog.createTags(id, tags),
      encryptionByDefault: async () => (await remote()).catalog.encryptionByDefault(),
    },
    close: async () => {
      if (opened !== undefined) await (await opened).close();
    },
  };
}
