import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSnaplineError } from '../errors.js';
import { BlockIndex } from './index.js';

let dir: string;
let path: string;
let index: BlockIndex;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'snapline-index-locks-'));
  path = join(dir, 'index.db');
  index = BlockIndex.open(path);
});

afterEach(() => {
  index.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a lock row as another process would have. */
function plantLock(name: string, holder: { pid: number; host?: string; processStartedAt?: number }): void {
  const db = new Database(path);
  db.prepare(
    'INSERT OR REPLACE INTO locks (name, pid, host, started_at, process_started_at, token) VALUES (?, ?, ?, ?, ?, ?)',
  ).run(name, holder.pid, holder.host ?? hostname(), Date.UTC(2026, 0, 1), holder.processStartedAt ?? 0, 'planted');
  db.close();
}

function holderOf(name: string): { pid: number; token: string } | undefined {
  const db = new Database(path, { readonly: true });
  const row = db.prepare('SELECT pid, token FROM locks WHERE name = ?').get(name) as { pid: number; token: string } | undefined;
  db.close();
  return row;
}

function conflictOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isSnaplineError(err, 'CONFLICT')) return err.message;
    throw err;
  }
  throw new Error('no CONFLICT');
}

describe('advisory locks', () => {
  it('refuses a lock this live process holds, naming pid, host and since', () => {
    const lock = index.locks.acquire('volume:vol');
    const message = conflictOf(() => index.locks.acquire('volume:vol'));
    expect(message).toContain(`pid ${process.pid}`);
    expect(message).toContain(hostname());
    expect(message).toMatch(/since \d{4}-\d\d-\d\dT/);
    const other = BlockIndex.open(path);
    expect(conflictOf(() => other.locks.acquire('volume:vol'))).toContain(`pid ${process.pid}`);
    other.close();
    expect(index.locks.acquire('target:/dev/sdb')).toBeDefined(); // other names are free
    lock.release();
    lock.release();
    index.locks.acquire('volume:vol');
  });

  it('releases its locks on close', () => {
    index.locks.acquire('volume:vol');
    index.close();
    expect(holderOf('volume:vol')).toBeUndefined();
    index = BlockIndex.open(path);
    index.locks.acquire('volume:vol');
  });

  it('takes over the lock of a dead process on this host', () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    plantLock('volume:vol', { pid: dead });
    index.locks.acquire('volume:vol');
    expect(holderOf('volume:vol')?.pid).toBe(process.pid);
  });

  it('takes over a lock left by an earlier process that had this pid', () => {
    plantLock('volume:vol', { pid: process.pid, processStartedAt: Date.UTC(2020, 0, 1) });
    index.locks.acquire('volume:vol');
    expect(holderOf('volume:vol')?.token).not.toBe('planted');
  });

  it('refuses a lock held by another live process or another host', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      plantLock('volume:vol', { pid: child.pid! });
      expect(conflictOf(() => index.locks.acquire('volume:vol'))).toContain(`pid ${child.pid} on ${hostname()} since 2026-01-01T00:00:00.000Z`);
    } finally {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill();
      await exited;
    }
    plantLock('volume:other', { pid: 1, host: 'elsewhere.example' });
    expect(conflictOf(() => index.locks.acquire('volume:other'))).toContain('on elsewhere.example');
  });
});
