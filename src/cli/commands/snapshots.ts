import type { Command } from 'commander';
import { table } from '../chart.js';
import type { CommandContext, Wrap } from '../context.js';
import { formatBytes } from '../progress.js';
import { sessionOptions } from './common.js';

export function registerSnapshots(program: Command, wrap: Wrap): void {
  program
    .command('snapshots')
    .description('the lineage of each volume from the index, reconciled with EC2')
    .option('--volume <name>', 'only this volume')
    .action(
      wrap(async (ctx: CommandContext, flags: { volume?: string }) => {
        const output = ctx.output();
        const { withSession } = await import('../../session.js');
        const { listSnapshots } = await import('../../engine/lineage/snapshots.js');
        const rows = await withSession(sessionOptions(ctx), (session) => listSnapshots(session, { volume: flags.volume }));
        output.result(rows, () => {
          if (rows.length === 0) return ['no snapshots recorded in the index'];
          const cells = [['VOLUME', 'SNAPSHOT', 'PARENT', 'STATE', 'AWS', 'SIZE', 'CHANGED', 'AGE', 'TAGS']];
          for (const r of rows) {
            const tags = Object.entries(r.tags)
              .filter(([k]) => !k.startsWith('snapline:'))
              .map(([k, v]) => `${k}=${v}`)
              .join(',');
            cells.push([
              r.volume,
              r.snapshotId,
              r.parentSnapshotId ?? '-',
              r.indexState,
              r.remoteState,
              formatBytes(r.sourceBytes),
              String(r.changedBlocks),
              `${r.ageDays}d`,
              tags || '-',
            ]);
          }
          return table(cells);
        });
      }),
    );
}
