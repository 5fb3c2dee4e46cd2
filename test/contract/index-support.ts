import { afterEach, beforeEach, expect } from 'vitest';
import type { BeginRunInput, IndexPorts } from '../../src/core/index-ports.js';
import { type ErrorCode, SnaplineError } from '../../src/errors.js';

/**
 * What the index port contracts (test/contract/*.contract.ts) run against:
 * a fresh, empty index for every test, closed after it.
 */
export interface IndexUnderTest {
  index: IndexPorts;
  close?: () => void;
}

export type IndexSetup = () => IndexUnderTest;

/** The index of the running test: a fresh one for each. */
export function freshIndex(setup: IndexSetup): () => IndexPorts {
  let current: IndexUnderTest | undefined;
  beforeEach(() => {
    current = setup();
  });
  afterEach(() => {
    current?.close?.();
    current = undefined;
  });
  return () => current!.index;
}

/** The code of the SnaplineError `fn` throws; fails the test when it returns or throws anything else. */
export function codeOf(fn: () => unknown): ErrorCode {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(SnaplineError);
    return (err as SnaplineError).code;
  }
  throw new Error('expected a SnaplineError, the call returned');
}

/** A 32-byte digest whose every byte is `fill`. */
export function digest(fill: number): Buffer {
  return Buffer.alloc(32, fill);
}

/** A volume `name` of `gib` GiB, in the index. */
export function volumeOf(index: Pick<IndexPorts, 'lineage'>, name = 'vol', gib = 1): string {
  index.lineage.ensureVolume({ name, sourcePath: `/images/${name}.img`, sizeBytes: gib * 1024 ** 3 });
  return name;
}

/** beginRun's input for a 1 GiB run of `volume` on `base` (parent and base alike), with neither description nor options unless given. */
export function runInput(volume: string, snapshotId: string, base: string | null = null, extra: Partial<BeginRunInput> = {}): BeginRunInput {
  return {
    volume,
    snapshotId,
    parentSnapshotId: base,
    baseSnapshotId: base,
    volumeSizeGiB: 1,
    sourceBytes: 1024 ** 3,
    encrypted: false,
    description: null,
    runOptions: null,
    ...extra,
  };
}

/** Runs a backup run to completion: begin, record `blocks` (index -> digest fill), commit. */
export function committedRun(
  index: Pick<IndexPorts, 'runs'>,
  volume: string,
  snapshotId: string,
  blocks: Record<number, number>,
  base: string | null = null,
): void {
  index.runs.beginRun(runInput(volume, snapshotId, base));
  index.runs.recordBlocks(snapshotId, Object.entries(blocks).map(([i, fill]) => ({ index: Number(i), digest: digest(fill) })));
  index.runs.markCompleting(snapshotId);
  index.runs.commitRun(snapshotId);
}

/** A map read as { index: first digest byte }. */
export function mapOf(entries: Iterable<{ index: number; digest: Buffer }>): Record<number, number> {
  const out: Record<number, number> = {};
  for (const e of entries) out[e.index] = e.digest[0]!;
  return out;
}
