import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { BlockIndex } from './index.js';

let dir: string;
let index: BlockIndex;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-copies-'));
  index = BlockIndex.open(join(dir, 'index.db'));
});
afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

const copy = (copySnapshotId: string, sourceSnapshotId: string, region = 'eu-west-1') => ({
  copySnapshotId,
  sourceSnapshotId,
  volume: 'db',
  region,
  connection: null,
  encrypted: false,
  kmsKeyId: null,
  incrementalOf: null,
});

describe('copies in the index', () => {
  it('records a copy pending, then completed or deleted; lists by snapshot and volume without the deleted; keeps them across reopening', () => {
    index.copies.record(copy('snap-c1', 'snap-a'), new Date(1000));
    index.copies.record(copy('snap-c2', 'snap-a', 'ap-south-1'), new Date(2000));
    index.copies.record({ ...copy('snap-c3', 'snap-b'), incrementalOf: 'snap-c1' }, new Date(3000));
    expect(index.copies.get('snap-c1')).toMatchObject({ state: 'pending', completedAt: null, createdAt: new Date(1000) });
    expect(index.copies.setState('snap-c1', 'completed', null, new Date(5000))).toMatchObject({ state: 'completed', completedAt: new Date(5000) });
    index.copies.setState('snap-c2', 'error', 'key refused');
    index.copies.setState('snap-c3', 'deleted');

    const path = index.path;
    index.close();
    index = BlockIndex.open(path);
    expect(index.copies.ofSnapshot('snap-a').map((c) => [c.copySnapshotId, c.state, c.message])).toEqual([
      ['snap-c1', 'completed', null],
      ['snap-c2', 'error', 'key refused'],
    ]);
    expect(index.copies.ofSnapshot('snap-b')).toEqual([]);
    expect(index.copies.get('snap-c3')).toMatchObject({ state: 'deleted', incrementalOf: 'snap-c1' });
    expect(index.copies.list('db').map((c) => c.copySnapshotId)).toEqual(['snap-c1', 'snap-c2']);
    expect(index.copies.list('other')).toEqual([]);
  });

  it('refuses a copy recorded twice, a state for an unknown copy, and an empty id', () => {
    index.copies.record(copy('snap-c1', 'snap-a'));
    expect(() => index.copies.record(copy('snap-c1', 'snap-a'))).toThrow(expect.objectContaining({ code: ErrorCodes.CONFLICT }));
    expect(() => index.copies.setState('snap-none', 'completed')).toThrow(expect.objectContaining({ code: ErrorCodes.NOT_FOUND }));
    expect(() => index.copies.record(copy('', 'snap-a'))).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });
});

describe('durability', () => {
  /** The synchronous settings `write` ran under, in order. */
  function syncsOf(write: () => void): string[] {
    const pragma = vi.spyOn(Database.prototype, 'pragma');
    try {
      write();
      return pragma.mock.calls.map(([source]) => String(source)).filter((source) => source.startsWith('synchronous'));
    } finally {
      pragma.mockRestore();
    }
  }

  it('recording a copy and changing its state are synced to disk at commit (synchronous FULL), as drills and the run history are', () => {
    expect(syncsOf(() => index.copies.record(copy('snap-c1', 'snap-a')))).toEqual(['synchronous = FULL', 'synchronous = NORMAL']);
    expect(syncsOf(() => index.copies.setState('snap-c1', 'completed'))).toEqual(['synchronous = FULL', 'synchronous = NORMAL']);
  });
});
