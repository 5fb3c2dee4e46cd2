import { describe, expect, it } from 'vitest';
import { MAX_BENCH_CONCURRENCY } from '../../engine/bench.js';
import { MAX_LEVEL } from './bench.js';

describe('bench command', () => {
  it('refuses the levels the engine refuses: its highest level is the engine\'s', () => {
    expect(MAX_LEVEL).toBe(MAX_BENCH_CONCURRENCY);
  });
});
