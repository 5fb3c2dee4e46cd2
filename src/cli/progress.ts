import type { Output } from './output.js';

const MIB = 1024 * 1024;

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** "1 block", "2 blocks". */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

export function formatDuration(ms: number): string {
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${String(seconds % 60).padStart(2, '0')}s`;
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

export interface TransferStatus {
  label: string;
  done: number;
  total: number;
  detail: string;
}

/**
 * Shows the progress of a transfer: a live bar on a TTY, a plain line every
 * few seconds otherwise, nothing with --json or --no-progress.
 */
export class ProgressDisplay {
  readonly #started = Date.now();
  #lastLine = 0;
  #last: TransferStatus | undefined;
  #note: (() => string | undefined) | undefined;

  constructor(
    private readonly output: Output,
    private readonly lineEveryMs = 5000,
  ) {}

  /** Adds what `note` says, when it says anything, to the detail of every line (that the run is throttled, say). */
  withNote(note: () => string | undefined): this {
    this.#note = note;
    return this;
  }

  /** Draws the last status again, for a note that changed while the transfer stands still. */
  refresh(): void {
    if (this.#last !== undefined) this.update(this.#last);
  }

  update(status: TransferStatus): void {
    this.#last = status;
    const note = this.#note?.();
    if (note !== undefined) status = { ...status, detail: `${status.detail}, ${note}` };
    const elapsed = Date.now() - this.#started;
    const rate = elapsed > 0 ? status.done / MIB / (elapsed / 1000) : 0;
    const fraction = status.total > 0 ? Math.min(1, status.done / status.total) : 1;
    const eta = rate > 0 && fraction < 1 ? formatDuration(((status.total - status.done) / MIB / rate) * 1000) : '-';
    const figures = `${formatBytes(status.done)}/${formatBytes(status.total)} ${rate.toFixed(0)} MiB/s ETA ${eta} ${status.detail}`;
    if (this.output.interactive) {
      const width = 24;
      const filled = Math.round(fraction * width);
      this.output.status(`${status.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0)}% ${figures}`);
    } else if (Date.now() - this.#lastLine >= this.lineEveryMs) {
      this.#lastLine = Date.now();
      this.output.progressLine(`${status.label}: ${(fraction * 100).toFixed(0)}% ${figures}`);
    }
  }

  done(): void {
    this.output.clearStatus();
  }
}
