import { describe, expect, it } from 'vitest';
import { barChart, table, utf8Terminal } from './chart.js';

describe('barChart', () => {
  it('scales bars to the largest value, with eighths at the end, and aligns labels and values', () => {
    const lines = barChart(
      [
        { label: '1', value: 25 },
        { label: '16', value: 100, note: 'best' },
        { label: '64', value: 31.25 },
      ],
      { width: 8 },
    );
    expect(lines).toEqual([' 1 │██        25.0', '16 │████████ 100.0  best', '64 │██▌       31.3']);
  });

  it('draws # bars without Unicode, and no bar for zero, negative or missing values', () => {
    expect(barChart([{ label: 'a', value: 3 }, { label: 'b', value: 0 }, { label: 'c', value: Number.NaN }, { label: 'd', value: -1 }], { width: 3, ascii: true, digits: 0 })).toEqual([
      'a |###  3',
      'b |     0',
      'c |     -',
      'd |    -1',
    ]);
    expect(barChart([{ label: 'x', value: 0 }], { width: 2, ascii: true })).toEqual(['x |   0.0']);
  });
});

describe('table', () => {
  it('pads columns to their widest cell, right-aligned where asked, without trailing spaces', () => {
    expect(table([['level', 'MiB/s', 'note'], ['1', '25.0', ''], ['128', '512.5', 'best']], ['right', 'right'])).toEqual([
      'level  MiB/s  note',
      '    1   25.0',
      '  128  512.5  best',
    ]);
  });
});

describe('utf8Terminal', () => {
  it('follows LC_ALL, then LC_CTYPE, then LANG', () => {
    if (process.platform === 'win32') return;
    expect(utf8Terminal({ LANG: 'en_US.UTF-8' })).toBe(true);
    expect(utf8Terminal({ LC_ALL: 'C', LANG: 'en_US.UTF-8' })).toBe(false);
    expect(utf8Terminal({ LC_CTYPE: 'de_DE.utf8' })).toBe(true);
    expect(utf8Terminal({})).toBe(false);
  });
});
