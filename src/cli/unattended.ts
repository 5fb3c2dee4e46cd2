/**
 * What every backup, restore, prune and archive run does for the people who
 * do not watch it: the run goes into the index's history (failed runs too),
 * `--metrics-file` gets the history in the Prometheus text format, and
 * `--notify` (or the connection's notify.url) gets a JSON event. None of
 * these changes the command's exit code: a failure of theirs is a warning.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import type { UnattendedConfig } from '../config/connection.js';
import { defaultIndexPath } from '../config/paths.js';
import { NOTIFY_ON, type NotifyOn, type RunEntry, type RunOperation } from '../core/run-log.js';
import { ErrorCodes, ExitCodes, SnaplineError, isSnaplineError, toSnaplineError } from '../errors.js';
import type { BlockIndex } from '../index/index.js';
import { connectionRequest } from './commands/common.js';
import type { CommandContext } from './context.js';
import { notifyEvent, notifyUrlOption, sendEvent, shownUrl } from './notify.js';

export interface UnattendedFlags {
  metricsFile?: string;
  notify?: string;
  notifyOn?: NotifyOn;
}

function notifyOnOption(value: string): NotifyOn {
  if (!(NOTIFY_ON as readonly string[]).includes(value)) {
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--notify-on must be ${NOTIFY_ON.join(', ')}, got "${value}"`, { details: { option: 'notifyOn' } });
  }
  return value as NotifyOn;
}

/** Adds --metrics-file, --notify and --notify-on to a command. */
export function unattendedOptions(command: Command): Command {
  return command
    .option('--metrics-file <path>', "write the index's run history in the Prometheus text format there (atomically), for node_exporter's textfile collector")
    .addOption(new Option('--notify <url>', 'POST a JSON event there when the run fails (see --notify-on); default: the connection\'s notify.url').argParser(notifyUrlOption))
    .addOption(new Option('--notify-on <when>', `${NOTIFY_ON.join(', ')}: which runs send an event (default failure)`).argParser(notifyOnOption));
}

/** What a run reports of one volume it dealt with; the rest of its RunEntry comes from the wrapper. */
export type VolumeOutcome = Pick<RunEntry, 'volume' | 'snapshotId' | 'changedBlocks' | 'changedBytes' | 'transferredBlocks' | 'transferredBytes'> & {
  /** A run may end with a failure of one volume without throwing (a prune skipping a busy volume). */
  errorCode?: string;
};

export interface RecordedRun {
  exitCode: number;
  volumes: VolumeOutcome[];
}

export interface RecordOptions {
  operation: RunOperation;
  flags: UnattendedFlags;
  /** The volumes a run that threw dealt with, found in the index (null: not known). */
  volumesOnFailure: (index: BlockIndex) => Array<string | null>;
  /** False for a dry run: nothing is recorded or sent. */
  record?: boolean;
}

/**
 * Runs `run`, then records each volume's outcome in the index's history,
 * writes the metrics file and sends the event; returns run's exit code, or
 * rethrows its error (after the same steps).
 */
export async function recordedRun(ctx: CommandContext, options: RecordOptions, run: () => Promise<RecordedRun>): Promise<number> {
  if (options.record === false) return (await run()).exitCode;
  const notify = await notifySettings(ctx, options.flags);
  const started = new Date();
  let outcome: RecordedRun | undefined;
  let error: SnaplineError | undefined;
  try {
    outcome = await run();
  } catch (err) {
    error = toSnaplineError(err);
  }
  const finished = new Date();
  const output = ctx.output();
  const entries = await recordInIndex(ctx, options, started, finished, outcome, error);
  if (options.flags.metricsFile !== undefined) {
    const problem = await writeMetrics(ctx, options.flags.metricsFile, entries);
    if (problem !== undefined) output.warn(`the metrics file was not written: ${problem}`);
  }
  const exitCode = error?.exitCode ?? outcome!.exitCode;
  // BUSY (--if-idle found the volume busy and did nothing) is no failure.
  const failed = (exitCode !== ExitCodes.OK && exitCode !== ExitCodes.BUSY) || entries.some((e) => e.result === 'failure');
  if (notify !== undefined && (notify.on === 'always' || notify.on === (failed ? 'failure' : 'success'))) {
    const event = notifyEvent(options.operation, entries, started, finished, exitCode, error);
    const problem = await sendEvent(notify.url, event);
    if (problem !== undefined) output.warn(`the notification to ${shownUrl(notify.url)} was not delivered: ${problem}`);
  }
  if (error !== undefined) throw error;
  return exitCode;
}

/** The URL and policy of notifications: the flags over the connection's notify section; undefined for none. */
async function notifySettings(ctx: CommandContext, flags: UnattendedFlags): Promise<{ url: string; on: NotifyOn } | undefined> {
  const configured = await connectionSettings(ctx);
  const url = flags.notify ?? configured.notifyUrl;
  if (url === undefined) {
    if (flags.notifyOn !== undefined) {
      throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, '--notify-on needs a URL to notify: --notify URL, or notify.url in the connection', { details: { option: 'notifyOn' } });
    }
    return undefined;
  }
  return { url, on: flags.notifyOn ?? configured.notifyOn ?? 'failure' };
}

/**
 * The connection's unattended settings; none when it cannot be resolved (the
 * run itself then says why). With `refuseBroken` (status and report, which
 * make no run that would say it), a config file that cannot be read or a
 * connection it does not define is thrown (CONFIG_INVALID): its expect_every
 * would otherwise be dropped unseen and every volume shown on time.
 */
export async function connectionSettings(ctx: CommandContext, options: { refuseBroken?: boolean } = {}): Promise<UnattendedConfig> {
  const request = connectionRequest(ctx);
  const { chosenConnection, resolveNamed } = await import('../config/connection.js');
  try {
    return resolveNamed(chosenConnection(request), request).unattended ?? {};
  } catch (err) {
    if (options.refuseBroken && isSnaplineError(err, ErrorCodes.CONFIG_INVALID)) throw err;
    return {};
  }
}

function indexPathOf(ctx: CommandContext): string {
  return ctx.globals().index ?? defaultIndexPath();
}

/** Opens the index, bound to the store the run reached (unbound when it reached none), runs `fn`, closes it. No endpoint is started. */
export async function withIndex<T>(ctx: CommandContext, fn: (index: BlockIndex) => T | Promise<T>): Promise<T> {
  const { BlockIndex } = await import('../index/index.js');
  const index = BlockIndex.open(indexPathOf(ctx));
  try {
    const store = ctx.output().reachedStore;
    if (store !== undefined) index.bindStore(store);
    return await fn(index);
  } finally {
    index.close();
  }
}

/** The run's entries, recorded when the index can be opened (else a warning says why); returned either way. */
async function recordInIndex(
  ctx: CommandContext,
  options: RecordOptions,
  started: Date,
  finished: Date,
  outcome: RecordedRun | undefined,
  error: SnaplineError | undefined,
): Promise<RunEntry[]> {
  const output = ctx.output();
  let entries: RunEntry[] = [];
  const counted = options.operation === 'backup' || options.operation === 'prune';
  const make = (volume: VolumeOutcome, index: BlockIndex | undefined): RunEntry => ({
    operation: options.operation,
    volume: volume.volume,
    startedAt: started,
    finishedAt: finished,
    result: error !== undefined || volume.errorCode !== undefined ? 'failure' : 'success',
    errorCode: error?.code ?? volume.errorCode ?? null,
    snapshotId: volume.snapshotId,
    changedBlocks: volume.changedBlocks,
    changedBytes: volume.changedBytes,
    transferredBlocks: volume.transferredBlocks,
    transferredBytes: volume.transferredBytes,
    liveSnapshots: counted && index !== undefined && volume.volume !== null ? liveSnapshotsOf(index, volume.volume) : null,
  });
  const failedVolumes = (names: Array<string | null>): VolumeOutcome[] =>
    names.map((volume) => ({ volume, snapshotId: null, changedBlocks: 0, changedBytes: 0, transferredBlocks: 0, transferredBytes: 0 }));
  // Never an index made only to hold a failure (the run failed before it opened one), nor a write to one found unusable.
  if (!existsSync(indexPathOf(ctx)) || error?.code === ErrorCodes.INDEX_UNUSABLE) return (outcome?.volumes ?? failedVolumes([null])).map((v) => make(v, undefined));
  try {
    await withIndex(ctx, (index) => {
      const volumes = outcome?.volumes ?? failedVolumes(safely(() => options.volumesOnFailure(index), [null]));
      entries = volumes.map((v) => make(v, index));
      for (const entry of entries) index.history.recordRun(entry);
    });
  } catch (err) {
    if (entries.length === 0) entries = (outcome?.volumes ?? failedVolumes([null])).map((v) => make(v, undefined));
    output.warn(`the run was not recorded in the index: ${toSnaplineError(err).message}`);
  }
  return entries;
}

function safely<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

function liveSnapshotsOf(index: BlockIndex, volume: string): number | null {
  return safely(() => index.lineage.listSnapshots(volume).filter((s) => s.state === 'completed').length, null);
}

/**
 * Writes the index's history as metrics to `path` through a temp file in the
 * same directory and a rename (only this run's `entries` when there is no
 * index); the reason when it could not.
 */
async function writeMetrics(ctx: CommandContext, path: string, entries: RunEntry[]): Promise<string | undefined> {
  try {
    const { prometheusText } = await import('../engine/ops/metrics.js');
    const text = existsSync(indexPathOf(ctx)) ? await withIndex(ctx, (index) => prometheusText(index.history.listRuns())) : prometheusText(entries);
    await writeFileAtomically(resolve(path), text);
    return undefined;
  } catch (err) {
    return toSnaplineError(err).message;
  }
}

/** `text` at `path`, replacing it in one rename: a reader sees the old file or the new one, never a part. */
export async function writeFileAtomically(path: string, text: string): Promise<void> {
  // A dot name: the textfile collector reads only *.prom files, never the temp one.
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, text, { mode: 0o644, flag: 'wx' });
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw new SnaplineError(ErrorCodes.IO_FAILED, `cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
}
