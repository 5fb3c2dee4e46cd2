import { describe, expect, it } from 'vitest';
import { closest, didYouMean } from './suggest.js';

describe('closest', () => {
  it('finds typos: a missing, extra, wrong or swapped letter', () => {
    const keys = ['region', 'endpoint_url', 'max_attempts', 'storage_class'];
    expect(closest('regoin', keys)).toBe('region');
    expect(closest('regin', keys)).toBe('region');
    expect(closest('endpoint_urls', keys)).toBe('endpoint_url');
    expect(closest('max_attemps', keys)).toBe('max_attempts');
    expect(closest('Storage_Class', keys)).toBe('storage_class');
  });

  it('suggests nothing for a word that is not close to any', () => {
    expect(closest('zzzz', ['region', 'profile'])).toBeUndefined();
    expect(closest('ab', ['xy'])).toBeUndefined();
    expect(didYouMean('bucket', [])).toBe('');
    expect(didYouMean('bukcet', ['bucket'])).toBe(' (did you mean bucket?)');
  });
});
