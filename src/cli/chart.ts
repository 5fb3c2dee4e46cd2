/** Plain-text tables and bar charts for the terminal: no colour, no cursor movement, one string per line. */

export interface Bar {
  label: string;
  value: number;
  /** Printed after the value. */
  note?: string;
}

export interface ChartOptions {
  /** Columns of the longest bar (default 40). */
  width?: number;
  /** Bars of '#' instead of Unicode blocks (for terminals without UTF-8). */
  ascii?: boolean;
  /** Decimals of the printed values (default 1). */
  digits?: number;
}

/** Eighths of a block, for the fractional end of a bar. */
const EIGHTHS = ['', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/**
 * One line per bar: the label, a bar scaled to the largest value, the value
 * and the note. Negative or non-finite values draw no bar.
 */
export function barChart(bars: readonly Bar[], options: ChartOptions = {}): string[] {
  const width = options.width ?? 40;
  const digits = options.digits ?? 1;
  const drawable = (v: number) => (Number.isFinite(v) && v > 0 ? v : 0);
  const largest = Math.max(0, ...bars.map((b) => drawable(b.value)));
  const labelWidth = Math.max(0, ...bars.map((b) => b.label.length));
  const values = bars.map((b) => (Number.isFinite(b.value) ? b.value.toFixed(digits) : '-'));
  const valueWidth = Math.max(0, ...values.map((v) => v.length));
  return bars.map((bar, i) => {
    const length = largest === 0 ? 0 : (drawable(bar.value) / largest) * width;
    const drawn = options.ascii ? '#'.repeat(Math.round(length)) : '█'.repeat(Math.floor(length)) + EIGHTHS[Math.floor((length % 1) * 8)]!;
    const line = `${bar.label.padStart(labelWidth)} ${options.ascii ? '|' : '│'}${drawn.padEnd(width + 1)}${values[i]!.padStart(valueWidth)}`;
    return bar.note === undefined ? line : `${line}  ${bar.note}`;
  });
}

/** The commands' tables: columns two spaces apart, padded to their widest cell (`align` per column, left unless 'right'); trailing spaces trimmed. */
export function table(rows: readonly (readonly string[])[], align: readonly ('left' | 'right')[] = []): string[] {
  const columns = Math.max(0, ...rows.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((row) =>
    widths
      .map((w, c) => (align[c] === 'right' ? (row[c] ?? '').padStart(w) : (row[c] ?? '').padEnd(w)))
      .join('  ')
      .trimEnd(),
  );
}

/** True when the terminal's locale speaks UTF-8 (so block characters draw), judging by the environment. */
export function utf8Terminal(env: NodeJS.ProcessEnv = process.env): boolean {
  if (process.platform === 'win32') return true;
  return /utf-?8/i.test(env.LC_ALL || env.LC_CTYPE || env.LANG || '');
}
