import { Command, CommanderError } from 'commander';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { MAX_CONCURRENCY } from '../core/constants.js';
import { ErrorCodes, ExitCodes, SnaplineError, toSnaplineError } from '../errors.js';
import type { CommandAction, CommandContext } from './context.js';
import { Output, type GlobalOptions, type RunFacts } from './output.js';
import { registerCommands } from './commands/index.js';

/**
 * Runs the CLI and returns the process exit code. Never calls process.exit:
 * the caller sets process.exitCode so that pending output is flushed.
 */
export async function main(argv: string[]): Promise<number> {
  const abort = new AbortController();
  // Waiting on this signal: every retry's backoff sleep and every wait for a free slab (at most about two per
  // request in flight: 2 x concurrency), and one listener per store with requests in flight (InFlightRequests).
  // A bound above that still tells of a leak.
  setMaxListeners(2 * MAX_CONCURRENCY + 16, abort.signal);
  let exitCode: number = ExitCodes.OK;
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts += 1;
    if (interrupts > 1) process.exit(ExitCodes.INTERRUPTED);
    abort.abort(new SnaplineError(ErrorCodes.INTERRUPTED, `interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const program = new Command('snapline')
    .description('Incremental block-level backups to Amazon EBS snapshots through the EBS direct APIs')
    .version(ownVersion())
    .option('--config <path>', 'config file of named connections (env SNAPLINE_CONFIG; default ~/.config/snapline/config.yaml)')
    .option('--connection <name>', 'named connection to use (built in: local; env SNAPLINE_CONNECTION)', process.env.SNAPLINE_CONNECTION)
    .option('--endpoint-url <url>', 'endpoint for every AWS service (overrides the connection)')
    .option('--region <name>', 'AWS Region (overrides the connection and AWS_REGION)')
    .option('--index <path>', 'block index file (default: under the data directory)', process.env.SNAPLINE_INDEX)
    .option('--json', 'print the result as JSON on stdout, and nothing else there', false)
    .option('--no-progress', 'do not print progress')
    .option('--verbose', 'print more about what happens', false)
    // Usage errors are told by Output.error like every other error (JSON with --json), not printed by commander.
    .configureOutput({ outputError: () => undefined })
    .exitOverride();

  const globals = (): GlobalOptions => {
    const o = program.opts();
    return {
      config: o.config,
      connection: o.connection,
      endpointUrl: o.endpointUrl,
      region: o.region,
      index: o.index,
      // A usage error can come before commander has read --json.
      json: Boolean(o.json) || argv.slice(2).includes('--json'),
      progress: o.progress !== false,
      verbose: Boolean(o.verbose),
      repeated: repeatedOptions(program),
    };
  };
  const facts: RunFacts = {};
  const context: CommandContext = { globals, output: () => new Output(globals(), process.stdout, process.stderr, facts), signal: abort.signal };

  const wrap =
    <A extends unknown[]>(action: CommandAction<A>) =>
    async (...args: A) => {
      try {
        const code = await action(context, ...args);
        exitCode = code ?? ExitCodes.OK;
      } catch (err) {
        const error = toSnaplineError(err);
        context.output().error(error);
        exitCode = error.exitCode;
      }
    };

  registerCommands(program, wrap);

  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      const quiet = err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help';
      if (quiet) return ExitCodes.OK;
      const error = usageError(err, commandPath(program, argv));
      context.output().error(error);
      return error.exitCode;
    }
    // An option parser refused a value before any action ran.
    const error = toSnaplineError(err);
    context.output().error(error);
    return error.exitCode;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return exitCode;
}

/** The global options that follow a command: those the user gave on the command line, as they gave them. */
const REPEATED_OPTIONS = [
  ['config', '--config'],
  ['connection', '--connection'],
  ['endpointUrl', '--endpoint-url'],
  ['region', '--region'],
  ['index', '--index'],
] as const;

function repeatedOptions(program: Command): string[] {
  const options = program.opts();
  return REPEATED_OPTIONS.flatMap(([key, flag]) => (program.getOptionValueSource(key) === 'cli' && typeof options[key] === 'string' ? [flag, options[key]] : []));
}

/** The names of the command and subcommand `argv` runs, as far as they are known ([] for none). */
function commandPath(program: Command, argv: string[]): string[] {
  const path: string[] = [];
  let current = program;
  for (const word of argv.slice(2)) {
    const next = current.commands.find((command) => command.name() === word);
    if (next === undefined) continue;
    path.push(word);
    current = next;
  }
  return path;
}

/** A usage error commander found (unknown option or command, missing argument...) as INVALID_ARGUMENT, with where to read the usage. */
function usageError(err: CommanderError, command: string[]): SnaplineError {
  return new SnaplineError(ErrorCodes.INVALID_ARGUMENT, err.message.replace(/^error: /, ''), {
    hint: `run \`${['snapline', ...command, '--help'].join(' ')}\` for usage`,
    details: { reason: err.code },
  });
}

/**
 * The version in snapline's own package.json (above src/ in a clone, above
 * dist/src/ when built), not npm_package_version: npm sets that to the
 * version of whatever project snapline is run from (npm exec, npm run).
 */
function ownVersion(): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const manifest = JSON.parse(readFileSync(new URL(candidate, import.meta.url), 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === 'snapline' && typeof manifest.version === 'string') return manifest.version;
    } catch {
      // Not there: the other place.
    }
  }
  return 'unknown';
}
