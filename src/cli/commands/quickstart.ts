import type { Command } from 'commander';
import { randomFillSync } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { dataDir } from '../../config/paths.js';
import { BLOCK_SIZE } from '../../core/constants.js';
import { ExitCodes } from '../../errors.js';
import type { CommandContext, Wrap } from '../context.js';
import { describeResult } from './backup.js';
import { sessionOptions } from './common.js';
import { describeRestore } from './restore.js';

const MIB = 1024 * 1024;
const SAMPLE_BYTES = 256 * MIB;

export function registerQuickstart(program: Command, wrap: Wrap): void {
  program
    .command('quickstart')
    .description('the whole cycle on the built-in local endpoint: back up a sample image twice, restore, verify')
    .option('--dir <path>', 'working folder for the sample image, restores and index (default: under the data directory)')
    .action(wrap((ctx: CommandContext, flags: { dir?: string }) => runQuickstart(ctx, flags.dir ?? join(dataDir(), 'quickstart'))));
}

async function runQuickstart(ctx: CommandContext, dir: string): Promise<number> {
  const output = ctx.output();
  const { LOCAL_CONNECTION } = await import('../../config/connection.js');
  const { withSession } = await import('../../session.js');
  const { backup } = await import('../../engine/backup/backup.js');
  const { restore } = await import('../../engine/restore/restore.js');
  const { verify } = await import('../../engine/restore/verify.js');
  const say = (lines: string[]) => {
    if (!output.json) for (const line of lines) output.note(line);
  };
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const image = join(dir, 'sample.img');
  const options = sessionOptions(ctx, {
    connection: ctx.globals().connection ?? LOCAL_CONNECTION,
    indexPath: ctx.globals().index ?? join(dir, 'index.db'),
  });

  const summary = await withSession(options, async (session) => {
    say([`endpoint: ${session.connection.settings.endpointUrl ?? 'AWS'}`, `working folder: ${dir}`, '']);
    await writeSampleImage(image);
    say([`1. sample image: ${image} (256 MiB, half of it zeros)`]);
    const first = await backup(session, { source: image, volume: 'quickstart', signal: ctx.signal });
    say(['2. full backup', ...describeResult(first)]);

    const changed = await changeBlocks(image, 40);
    say([`3. changed ${changed} blocks of the image`]);
    const second = await backup(session, { source: image, volume: 'quickstart', signal: ctx.signal });
    say(['4. incremental backup', ...describeResult(second)]);

    const fresh = join(dir, 'restored-fresh.img');
    const rolling = join(dir, 'restored-rolling.img');
    const full = await restore(session, { snapshotId: second.snapshotId!, target: fresh, signal: ctx.signal });
    say(['5. full restore of the second snapshot', ...describeRestore(full)]);
    await restore(session, { snapshotId: first.snapshotId!, target: rolling, signal: ctx.signal });
    const incremental = await restore(session, { snapshotId: second.snapshotId!, target: rolling, incremental: true, signal: ctx.signal });
    say(['6. restore of the first snapshot, then the second onto it incrementally', ...describeRestore(incremental)]);

    const checks = [];
    for (const target of [fresh, rolling]) {
      checks.push(await verify(session, { source: target, snapshotId: second.snapshotId!, signal: ctx.signal }));
    }
    say(['7. verify', ...checks.map((c) => `  ${c.source}: ${c.equal ? 'equal to' : 'DIFFERS from'} ${c.snapshotId}`)]);
    return { backups: [first, second], restores: [full, incremental], verified: checks.every((c) => c.equal) };
  });
  output.result(summary, () => [summary.verified ? 'quickstart finished: both restores equal the second snapshot' : 'quickstart FAILED: a restore differs']);
  return summary.verified ? ExitCodes.OK : ExitCodes.DIFFERENCES;
}

/** 256 MiB: alternating 8 MiB runs of random data and zeros. */
async function writeSampleImage(path: string): Promise<void> {
  const file = await open(path, 'w', 0o600);
  try {
    const chunk = Buffer.alloc(8 * MIB);
    for (let offset = 0, n = 0; offset < SAMPLE_BYTES; offset += chunk.byteLength, n += 1) {
      if (n % 2 === 0) randomFillSync(chunk);
      else chunk.fill(0);
      await file.write(chunk, 0, chunk.byteLength, offset);
    }
  } finally {
    await file.close();
  }
}

/** Rewrites `count` blocks spread over the image with new random bytes. */
async function changeBlocks(path: string, count: number): Promise<number> {
  const file = await open(path, 'r+');
  try {
    const block = Buffer.alloc(BLOCK_SIZE);
    const stride = Math.floor(SAMPLE_BYTES / BLOCK_SIZE / count);
    for (let i = 0; i < count; i += 1) {
      randomFillSync(block);
      await file.write(block, 0, BLOCK_SIZE, i * stride * BLOCK_SIZE);
    }
  } finally {
    await file.close();
  }
  return count;
}
