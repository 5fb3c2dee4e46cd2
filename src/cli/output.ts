import { SnaplineError } from '../errors.js';

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
  ) {}

  get json(): boolean {
    return this.options.json;
  }

  /** True when a live progress display may be drawn. */
  get interactive(): boolean {
    return this.options.progress && !this.options.json && Boolean((this.stderr as NodeJS.WriteStream).isTTY);
  }

  /** The command's result: JSON with --json, else the given human lines. */
  result(value: unknown, humanLines: () => string[]): void {
    if (this.options.json) {
      this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    } else {
      for (const line of humanLines()) this.stdout.write(`${line}\n`);
    }
  }

  /** A note for the user; never part of the result. */
  note(line: string): void {
    this.stderr.write(`${line}\n`);
  }

  warn(line: string): void {
    this.stderr.write(`snapline: warning: ${line}\n`);
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

  error(err: SnaplineError): void {
    this.clearStatus();
    if (this.options.json) {
      const body = { error: { code: err.code, message: err.message, hint: err.hint, details: err.details } };
      this.stdout.write(`${JSON.stringify(body, null, 2)}\n`);
    }
    this.stderr.write(`snapline: error: ${err.message}\n`);
    if (err.hint) this.stderr.write(`hint: ${err.hint}\n`);
    if (this.options.verbose && err.cause instanceof Error && err.cause.stack) {
      this.stderr.write(`cause: ${err.cause.stack}\n`);
    }
  }
}
