import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import type { CommandContext, Wrap } from '../context.js';
import { connectionSettings, writeFileAtomically } from '../unattended.js';
import { sessionOptions } from './common.js';
import { expectEveryOption } from './status.js';

interface ReportFlags {
  volume?: string;
  html: string;
  expectEvery?: number;
}

export function registerReport(program: Command, wrap: Wrap): void {
  program
    .command('report')
    .description('write one self-contained HTML page: the status table, charts of each volume\'s backups, and its snapshot calendar')
    .option('--volume <name>', 'only this volume')
    .addOption(new Option('--html <file>', 'the page to write (replaced atomically)').makeOptionMandatory())
    .addOption(new Option('--expect-every <duration>', "as for status (default: the connection's expect_every)").argParser(expectEveryOption))
    .action(wrap((ctx: CommandContext, flags: ReportFlags) => runReport(ctx, flags)));
}

async function runReport(ctx: CommandContext, flags: ReportFlags): Promise<number> {
  const output = ctx.output();
  const { withSession } = await import('../../session.js');
  const { volumeStatus } = await import('../../engine/ops/status.js');
  const { drillLog } = await import('../../engine/dr/drill.js');
  const { reportHtml } = await import('../../engine/ops/report.js');
  const expected = flags.expectEvery ?? (await connectionSettings(ctx)).expectEveryMs;
  const volumeFilter = flags.volume === undefined ? {} : { volume: flags.volume };
  const html = await withSession(sessionOptions(ctx), async (session) => {
    const status = await volumeStatus(
      { index: session.index, runs: session.index.history, reader: session.reader, drills: drillLog(session) },
      { ...volumeFilter, ...(expected === undefined ? {} : { expectEveryMs: expected }) },
    );
    const shown = new Set(status.volumes.map((v) => v.volume));
    const snapshots = session.index.lineage.listSnapshots().filter((s) => shown.has(s.volume));
    return reportHtml({ status, runs: session.index.history.listRuns(volumeFilter), snapshots });
  });
  const path = resolve(flags.html);
  await writeFileAtomically(path, html);
  output.result({ html: path, bytes: Buffer.byteLength(html) }, () => [`wrote ${path}`]);
  return 0;
}
