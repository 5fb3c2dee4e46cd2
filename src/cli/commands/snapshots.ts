import type { Command } from 'commander';
import { table } from '../chart.js';
import type { CommandContext, Wrap } from '../context.js';
import { formatBytes } from '../progress.js';
import { sessionOptions } from './common.js';
import { describeLastDrill } from './drill.js';

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
        const { lastDrills } = await import('../../engine/dr/drill.js');
        const { rows, drills } = await withSession(sessionOptions(ctx), async (session) => ({
          rows: await listSnapshots(session, { volume: flags.volume }),
          drills: lastDrills(session).filter((d) => flags.volume === undefined || d.volume === flags.volume),
        }));
        const drillOf = new Map(drills.map((d) => [d.volume, d]));
        // Each row carries its volume's last drill (null when none): JSON readers get it without a second shape.
        const withDrills = rows.map((r) => ({ ...r, lastDrill: drillOf.get(r.volume) ?? null }));
        output.result(withDrills, () => {
          if (rows.length === 0) return ['no snapshots recorded in the index'];
          const cells = [['VOLUME', 'SNAPSHOT', 'PARENT', 'STATE', 'AWS', 'SIZE', 'CHANGED', 'AGE', 'COPIES', 'TAGS']];
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
              r.copies.map((c) => `${c.connection === null ? '' : `${c.connection}:`}${c.region} ${c.copySnapshotId}${c.state === 'completed' ? '' : ` (${c.state})`}`).join(', ') || '-',
              tags || '-',
            ]);
          }
          const drilled = new Set(rows.map((r) => r.volume));
          return [...table(cells), ...drills.filter((d) => drilled.has(d.volume)).map(describeLastDrill)];
        });
      }),
    );
}
