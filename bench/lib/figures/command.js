// The whole CLI on an unchanged cached image, as the user waits for it: each
// command is `node bin/snapline.js ...` as a child process, timed from spawn
// to exit (start-up, SDK, index, endpoint calls and all), against the
// two-core SHA-256 ceiling (bare threads over as many bytes as the image, as
// in the scan figure) in the same interleaved rounds. The commands that read
// the source: `backup` (an incremental that uploads nothing), `verify` (the
// source against the index's digests) and `backup --dry-run` (the source's
// diff against the volume's newest snapshot). `snapline diff` compares two
// snapshots through ListChangedBlocks and reads no source, so it has no
// figure here. The runs use their own data directory, config home and index
// under the run's scratch folder, against the bench endpoint (its own
// process). Every run's exit code and JSON result are checked: a figure with
// a failed run is printed unjudged and fails the suite. The same rounds time
// the least any command reading the image could take on this machine: Node
// starting and exiting with nothing to do, then bare threads reading the
// image with pread and hashing it (bench/lib/sha-ceiling.js).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { startCli } from '../../../test/support/cli.js';
import { check, randomImage, report, sizeText } from '../context.js';
import { startEndpoint } from '../endpoint.js';
import { BLOCK, MIB, bestOf, interleavedRuns, mibPerSecond, rateSpread, rateText } from '../measure.js';
import { BareReadAndHash } from '../sha-ceiling.js';
import { CEILING_BLOCKS_PER_SLAB, CEILING_SLABS, bareSha256 } from './scan.js';

const VOLUME = 'bench';
/** Where the figures' printed values start. */
const COLUMN = 42;

/**
 * @typedef {object} CommandRun
 * @property {number} ms wall time, spawn to exit
 * @property {number} cpuMs CPU time of the child and its threads (user and system)
 * @property {number | null} code
 * @property {any} result the parsed JSON on stdout, undefined when there was none
 * @property {string} stderr
 */

/**
 * A command's figure: how to run it, and whether a run did what it must.
 * @typedef {object} Command
 * @property {string} name
 * @property {string} label the command line, short
 * @property {string} title
 * @property {() => string[]} args the command's arguments after the global flags
 * @property {(run: CommandRun) => string | undefined} problem what is wrong with a run, undefined when
 *   nothing (a good backup run then makes its snapshot the head the next runs build on and verify)
 */

/** @param {import('../context.js').Context} ctx */
export async function commandFigures(ctx) {
  const { imageBytes, rounds } = ctx.plan.command;
  const totalBlocks = imageBytes / BLOCK;
  const image = await randomImage(ctx, imageBytes);
  const dataDir = join(ctx.dir, 'command-data');
  const endpoint = await startEndpoint();
  try {
    const globals = ['--connection', 'local', '--endpoint-url', endpoint.url, '--index', join(dataDir, 'index.db'), '--json', '--no-progress'];
    const snapline = (/** @type {string[]} */ args) => runTimed([...globals, ...args], dataDir);
    const accepted = async () => {
      const put = (await endpoint.stats()).operations.PutSnapshotBlock;
      return (put?.requests ?? 0) - (put?.errors ?? 0);
    };

    const first = await snapline(['backup', '--volume', VOLUME, image]);
    const full = first.result?.backups?.[0];
    const fullProblem = first.code !== 0 ? exitText(first) : full?.blocksUploaded !== totalBlocks ? `it uploaded ${full?.blocksUploaded} blocks, not ${totalBlocks}` : undefined;
    check(ctx, fullProblem === undefined, `the first (untimed) snapline backup of the ${sizeText(imageBytes)} image: ${fullProblem}`);
    if (fullProblem !== undefined) return;
    /** The volume's newest snapshot: each backup round builds on it. */
    let head = /** @type {string} */ (full.snapshotId);
    const cachedReadMs = await warmPageCache(image);

    /** @type {Command[]} */
    const commands = [
      {
        name: 'backup',
        label: 'snapline backup',
        title: 'snapline backup (an incremental that uploads nothing)',
        args: () => ['backup', '--volume', VOLUME, image],
        problem: (run) => {
          const b = run.result?.backups?.[0];
          if (run.code !== 0 || b === undefined) return exitText(run);
          if (b.blocksScanned !== totalBlocks || b.blocksChanged !== 0 || b.blocksUploaded !== 0) return `it scanned ${b.blocksScanned} blocks (of ${totalBlocks}), found ${b.blocksChanged} changed, uploaded ${b.blocksUploaded}`;
          if (b.parentSnapshotId !== head || typeof b.snapshotId !== 'string' || b.snapshotId === head) return `its snapshot ${b.snapshotId} is not a new child of ${head} (parent ${b.parentSnapshotId})`;
          head = b.snapshotId;
          return undefined;
        },
      },
      {
        name: 'verify',
        label: 'snapline verify',
        title: 'snapline verify (the source against the index)',
        args: () => ['verify', image, head],
        problem: (run) => {
          const v = run.result;
          if (run.code !== 0 || v === undefined) return exitText(run);
          if (v.equal !== true || v.blocksCompared !== totalBlocks || v.differingBlocks !== 0) return `equal ${v.equal}, ${v.blocksCompared} blocks compared (of ${totalBlocks}), ${v.differingBlocks} differing`;
          return undefined;
        },
      },
      {
        name: 'dry-run',
        label: 'snapline backup --dry-run',
        title: "snapline backup --dry-run (the source's diff against the newest snapshot)",
        args: () => ['backup', '--dry-run', '--volume', VOLUME, image],
        problem: (run) => {
          const b = run.result?.backups?.[0];
          if (run.code !== 0 || b === undefined) return exitText(run);
          if (b.dryRun !== true || b.snapshotId !== null || b.parentSnapshotId !== head) return `not a dry run against ${head}: snapshot ${b.snapshotId}, parent ${b.parentSnapshotId}`;
          if (b.blocksScanned !== totalBlocks || b.blocksChanged !== 0) return `it scanned ${b.blocksScanned} blocks (of ${totalBlocks}) and found ${b.blocksChanged} changed`;
          return undefined;
        },
      },
    ];

    const threads = availableParallelism();
    const slabCount = imageBytes / (CEILING_BLOCKS_PER_SLAB * BLOCK);
    const ceiling = bareSha256(threads, CEILING_SLABS);
    const bareRead = new BareReadAndHash({ threads, path: image, blockSize: BLOCK });
    /** The least CPU time (ms) of a ceiling round. */
    let ceilingCpu = Infinity;
    /** @type {Map<string, CommandRun[]>} */
    const done = new Map(commands.map((command) => [command.name, []]));
    /** @type {Map<string, string[]>} */
    const failures = new Map(commands.map((command) => [command.name, []]));
    /** @type {Map<string, number[]>} */
    let runs;
    try {
      // One untimed run warms the threads.
      await ceiling.hash(slabCount);
      await bareRead.readAndHash(totalBlocks);
      runs = await interleavedRuns(
        [
          {
            name: 'ceiling',
            run: async () => {
              const cpu = process.cpuUsage();
              const start = performance.now();
              await ceiling.hash(slabCount);
              const ms = performance.now() - start;
              const used = process.cpuUsage(cpu);
              ceilingCpu = Math.min(ceilingCpu, (used.user + used.system) / 1000);
              return ms;
            },
          },
          { name: 'node', run: nodeStartAndExit },
          { name: 'read', run: () => bareRead.readAndHash(totalBlocks) },
          ...commands.map((command) => ({
            name: command.name,
            run: async () => {
              const before = await accepted();
              const run = await snapline(command.args());
              const uploaded = (await accepted()) - before;
              const problem = command.problem(run) ?? (uploaded === 0 ? undefined : `the endpoint accepted ${uploaded} blocks`);
              check(ctx, problem === undefined, `${command.title} of the unchanged ${sizeText(imageBytes)} image: ${problem}`);
              if (problem !== undefined) failures.get(command.name)?.push(problem);
              done.get(command.name)?.push(run);
              return run.ms;
            },
          })),
        ],
        rounds,
      );
    } finally {
      await ceiling.close();
      await bareRead.close();
    }

    const best = bestOf(runs);
    const ceilingRate = mibPerSecond(imageBytes, /** @type {number} */ (best.get('ceiling')));
    const nodeMs = /** @type {number} */ (best.get('node'));
    const bareReadMs = /** @type {number} */ (best.get('read'));
    const boundRate = mibPerSecond(imageBytes, nodeMs + bareReadMs);
    for (const command of commands) {
      const commandRuns = /** @type {CommandRun[]} */ (done.get(command.name));
      const failed = /** @type {string[]} */ (failures.get(command.name));
      const wallMs = /** @type {number} */ (best.get(command.name));
      const fastest = /** @type {CommandRun} */ (commandRuns.find((run) => run.ms === wallMs));
      const engineMs = commandRuns.map(engineMsOf);
      const fastestEngineMs = engineMsOf(fastest);
      const leastCpu = Math.min(...commandRuns.map((run) => run.cpuMs));
      const rate = mibPerSecond(imageBytes, wallMs);
      report(
        ctx,
        {
          id: `command-${command.name}`,
          title: `${command.title} of an unchanged cached ${sizeText(imageBytes)} image, wall time of the whole command, vs the SHA-256 ceiling`,
          value: rate,
          unit: 'MiB/s',
          reference: { title: `SHA-256, ${threads} bare threads, ${sizeText(imageBytes)} in the same rounds`, value: ceilingRate, unit: 'MiB/s' },
          ratio: rate / ceilingRate,
          ratioUnit: '%',
          // A figure with a failed run is not judged: the failure is in the checks.
          ...(failed.length > 0 ? {} : { target: { op: '>=', value: 0.85, text: '>= 85 % of the two-core SHA-256 rate' } }),
          spread: rateSpread(imageBytes, /** @type {number[]} */ (runs.get(command.name)), ceilingRate),
          details: {
            wallMs: commandRuns.map((run) => run.ms),
            engineMs,
            cpuMs: commandRuns.map((run) => run.cpuMs),
            ceilingCpuMs: ceilingCpu,
            ceilingRunsMiBps: rateSpread(imageBytes, /** @type {number[]} */ (runs.get('ceiling'))).values,
            cachedReadMiBps: mibPerSecond(imageBytes, cachedReadMs),
            nodeStartAndExitMs: nodeMs,
            bareReadAndHashMs: bareReadMs,
            leastCommandMiBps: boundRate,
            leastCommandOfCeiling: boundRate / ceilingRate,
            commandOfLeast: rate / boundRate,
            failedRuns: failed,
          },
        },
        [
          `${`${command.label}, spawn to exit`.padEnd(COLUMN)}${(wallMs / 1000).toFixed(3)} s (${rateText(imageBytes, wallMs)})`,
          ...(fastestEngineMs === undefined ? [] : [`${'of it the engine (its durationMs)'.padEnd(COLUMN)}${(fastestEngineMs / 1000).toFixed(3)} s; start-up, loading and exit the other ${((wallMs - fastestEngineMs) / 1000).toFixed(3)} s`]),
          `${'CPU of the command (all threads)'.padEnd(COLUMN)}least ${(leastCpu / 1000).toFixed(2)} s, ${(leastCpu / ceilingCpu).toFixed(2)}x the ${(ceilingCpu / 1000).toFixed(2)} s the ceiling's threads take for the same bytes (load moves this less)`,
          `${'SHA-256 ceiling, same rounds'.padEnd(COLUMN)}${ceilingRate.toFixed(0)} MiB/s (${CEILING_SLABS} slabs hashed in turn: they stay in the CPU's cache)`,
          `${'the least a command can take here'.padEnd(COLUMN)}${((nodeMs + bareReadMs) / 1000).toFixed(3)} s, ${((100 * boundRate) / ceilingRate).toFixed(0)} % of the ceiling: node starting and exiting ${(nodeMs / 1000).toFixed(3)} s, then bare pread + SHA-256 of the image ${(bareReadMs / 1000).toFixed(3)} s (the command reaches ${((100 * rate) / boundRate).toFixed(0)} % of it)`,
          `${'the cached image read through'.padEnd(COLUMN)}${mibPerSecond(imageBytes, cachedReadMs).toFixed(0)} MiB/s (after the warming read; a disk-like rate means the page cache does not hold it)`,
          ...(failed.length > 0 ? [`NOT JUDGED: ${failed.length} of ${commandRuns.length} runs failed (${failed[0]})`] : []),
        ],
      );
    }
  } finally {
    await endpoint.close();
  }
}

/**
 * Runs the CLI with `args` in a hermetic environment under `dataDir` (test/support/cli.js), timing it from spawn to exit.
 * @param {string[]} args
 * @param {string} dataDir
 * @returns {Promise<CommandRun>}
 */
async function runTimed(args, dataDir) {
  const cpuBefore = childrenCpuMs();
  const start = performance.now();
  const { child, done } = startCli(args, { dataDir });
  const exitedAt = new Promise((resolve) => child.once('exit', () => resolve(performance.now())));
  const { code, stdout, stderr } = await done;
  const ms = /** @type {number} */ (await exitedAt) - start;
  /** @type {any} */
  let result;
  try {
    result = JSON.parse(stdout);
  } catch {
    result = undefined;
  }
  return { ms, cpuMs: childrenCpuMs() - cpuBefore, code, result, stderr };
}

/**
 * Milliseconds from spawning Node with nothing to run to its exit: the
 * start-up every command pays before its first line runs.
 * @returns {Promise<number>}
 */
async function nodeStartAndExit() {
  const start = performance.now();
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const code = await new Promise((resolve, reject) => (child.once('exit', resolve), child.once('error', reject)));
  if (code !== 0) throw new Error(`node -e '' exited with ${code}`);
  return performance.now() - start;
}

/**
 * CPU time (user and system, ms) of this process's children that have exited
 * and been waited for, with all their threads (cutime and cstime of /proc/self/stat).
 */
function childrenCpuMs() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // The fields after the command name (in parentheses, which may hold spaces); cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS;
}

/** USER_HZ of /proc: 100 on Linux's every common platform. */
const CLOCK_TICKS = 100;

/**
 * The engine's own duration of a run, from its JSON result.
 * @param {CommandRun} run
 * @returns {number | undefined}
 */
function engineMsOf(run) {
  const ms = run.result?.durationMs ?? run.result?.backups?.[0]?.durationMs;
  return typeof ms === 'number' ? ms : undefined;
}

/** @param {CommandRun} run */
function exitText(run) {
  const lastLine = run.stderr.trim().split('\n').at(-1) ?? '';
  return `exit code ${run.code}${run.result === undefined ? ', no JSON result' : ''}${lastLine === '' ? '' : `: ${lastLine}`}`;
}

/**
 * Reads the image through twice: the first read puts it in the page cache,
 * the second (timed) tells whether it stays there.
 * @param {string} path
 * @returns {Promise<number>} milliseconds of the second read
 */
async function warmPageCache(path) {
  const chunk = Buffer.alloc(8 * MIB);
  const readThrough = async () => {
    const file = await open(path, 'r');
    try {
      while ((await file.read(chunk, 0, chunk.length)).bytesRead > 0);
    } finally {
      await file.close();
    }
  };
  await readThrough();
  const start = performance.now();
  await readThrough();
  return performance.now() - start;
}
