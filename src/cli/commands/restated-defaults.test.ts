import { describe, expect, it } from 'vitest';
import { DEFAULT_LOCAL_PORT } from '../../config/connection.js';
import { DEFAULT_PACING, DEFAULT_RETRIES, DEFAULT_SHARDS, MAX_SHARDS } from '../../engine/ecs-restore.js';
import { ECS_RESTORE_DEFAULTS } from './ecs.js';
import { SERVE_DEFAULT_PORT } from './serve.js';

// The commands restate a few defaults of heavy modules so that help and usage
// errors do not load them; these are the places they come from.
describe('defaults restated by the commands', () => {
  it('ecs restore: shards, retries and log wait are the engine\'s', () => {
    expect(ECS_RESTORE_DEFAULTS).toEqual({ shards: DEFAULT_SHARDS, maxShards: MAX_SHARDS, retries: DEFAULT_RETRIES, logSettleMs: DEFAULT_PACING.logSettleMs });
  });

  it('serve: the default port is the one the local connection looks for', () => {
    expect(SERVE_DEFAULT_PORT).toBe(DEFAULT_LOCAL_PORT);
  });
});
