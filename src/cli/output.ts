import type { StoreUsed } from '../config/store.js';
import { SnaplineError } from '../errors.js';
import { inFlagTerms } from './flags.js';

export interface GlobalOptions {
  /** The config file of named connections (--config, else SNAPLINE_CONFIG, else the default path). */
  config?: string;
  connection?: string;
  endpointUrl?: string;
  region?: string;
  index?: string;
  json: boolean;
  progress: boolean;
  verbose: boolean;
  /**
   * The global options the user gave on the command line (--config,
   * --connection, --endpoint-url, --region, --index with their values):
   * every `snapline ...` command printed for the user carries them, so that
   * it can be copied and run as it is.
   */
  repeated?: string[];
}

/** What the Output objects of one run share: facts learnt on the way that the result carries. */
export interface RunFacts {
  /** The store the command reached (see storeUsed). */
  store?: StoreUsed;
}

/**
 * Where a command's words go. With --json, stdout carries exactly one JSON
 * document (the result or the error) and everything else goes to stderr.
 * Without it, results go to stdout and progress and notes to stderr.
 */
export class Output {
  constructor(
    readonly options: GlobalOptions,
    private readonly stdout: NodeJS.WritableStream = process.stdout,
    private readonly stderr: NodeJS.WritableStream = process.stderr,
    private readonly facts: RunFacts = {},
  ) {}

  get json(): boolean {
    return this.options.json;
  }

  /** True when a live progress display may be drawn. */
  get interactive(): boolean {
    return this.options.progress && !this.options.json && Boolean((this.stderr as NodeJS.WriteStream).isTTY);
  }

  /**
   * The command's result: JSON with --json, else the given human lines. A
   * JSON object carries the store the command reached as `store` (a list
   * keeps its shape: the store is on stderr).
   */
  result(value: unknown, humanLines: () => string[]): void {
    if (this.options.json) {
      const object = value !== null && typeof value === 'object' && !Array.isArray(value);
      const shown = object && this.facts.store !== undefined ? { ...value, store: this.facts.store } : value;
      this.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
    } else {
      for (const line of humanLines()) this.stdout.write(`${this.commands(line)}\n`);
    }
  }

  /** The store the command reached, once a session said so. */
  get reachedStore(): StoreUsed | undefined {
    return this.facts.store;
  }

  /** Says (on stderr) which store the command reached, and keeps it for the JSON result. */
  storeUsed(store: StoreUsed): void {
    this.facts.store = store;
    if (store.kind === 'aws') {
      this.note(`store: AWS account ${store.account}, Region ${store.region}, endpoint ${store.endpoint}`);
    } else {
      const via = store.via === 'serve' ? 'a running snapline serve' : store.via === 'in-process' ? 'started in this process' : 'named by the endpoint URL';
      this.note(`store: the local endpoint at ${store.endpoint} (${via}), data ${store.dataDir}, store id ${store.storeId}`);
    }
  }

  /** A note for the user; never part of the result. */
  note(line: string): void {
    this.stderr.write(`${this.commands(line)}\n`);
  }

  warn(line: string): void {
    this.stderr.write(`snapline: warning: ${this.commands(line)}\n`);
  }

  /** `text` with the user's global options (GlobalOptions.repeated) put into every command quoted as `snapline ...`. */
  commands(text: string): string {
    const repeated = this.options.repeated ?? [];
    if (repeated.length === 0) return text;
    const command = `\`snapline ${repeated.map(shellWord).join(' ')} `;
    return text.replace(/`snapline /g, () => command);
  }

  verbose(line: string): void {
    if (this.options.verbose) this.stderr.write(`${line}\n`);
  }

  /** Periodic progress lines when progress is on but there is no TTY. */
  progressLine(line: string): void {
    if (this.options.progress && !this.options.json) this.stderr.write(`${line}\n`);
  }

  /** Draws a one-line live status on a TTY (overwritten by the next call). */
  status(line: string): void {
    if (this.interactive) this.stderr.write(`\r\x1b[2K${line}`);
  }

  clearStatus(): void {
    if (this.interactive) this.stderr.write('\r\x1b[2K');
  }

  error(error: SnaplineError): void {
    this.clearStatus();
    const err = inFlagTerms(error);
    const hint = err.hint === undefined ? undefined : this.commands(err.hint);
    if (this.options.json) {
      const body = { error: { code: err.code, message: err.message, hint, details: err.details } };
      this.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    }
    this.stderr.write(`snapline: error: ${err.message}\n`);
    if (hint) this.stderr.write(`hint: ${hint}\n`);
    if (this.options.verbose && err.cause instanceof Error && err.cause.stack) {
      this.stderr.write(`cause: ${err.cause.stack}\n`);
    }
  }
}

/** A word as a POSIX shell reads it back: as it is when that is safe, else in single quotes. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
