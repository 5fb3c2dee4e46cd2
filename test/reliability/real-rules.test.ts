/**
 * Everything at once on AWS's real behaviour, as the local endpoint imitates
 * it on a clock 600 times faster than the wall: EC2 DescribeSnapshots a
 * second behind the EBS direct APIs, the endpoint's clock 20 minutes ahead
 * of this host (past every service's signing-time window, so every client
 * must correct its clock), signatures checked, EBS encryption by default,
 * and every EBS request throttled for three minutes of the endpoint's clock
 * at the start of each step. The sessions' retries run on the same scaled
 * time, so their budget (10 minutes) and the throttling they report are in
 * the endpoint's minutes. Under all of that: a full backup, an encrypted
 * incremental, an interrupted incremental resumed, a restore right after a
 * backup, an S3 archive in a Glacier class with its restore and its
 * rehydration onto a file and into a snapshot (its CompleteSnapshot answer
 * lost) restored right after, and an ECS restore (tasks that run `snapline
 * worker shard` as processes of the endpoint; dist/ is built by the global
 * setup) each come out byte-identical. Real SDK over HTTP, real worker threads, a SQLite index.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleepFor } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RetryClock } from '../../src/aws/retry.js';
import { openEcsSession } from '../../src/ecs-session.js';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import { createArchive } from '../../src/engine/archive/archive.js';
import { archiveStatus, restoreArchive } from '../../src/engine/archive/jobs.js';
import { rehydrate } from '../../src/engine/archive/rehydrate.js';
import { backup, type BackupOptions, type BackupResult } from '../../src/engine/backup/backup.js';
import type { SettleWait } from '../../src/engine/blocks/committer.js';
import { ecsRestore } from '../../src/engine/ecs/restore.js';
import { restore } from '../../src/engine/restore/restore.js';
import type { SnapshotWriter } from '../../src/core/ports.js';
import { ErrorCodes, SnaplineError } from '../../src/errors.js';
import type { Session, SessionOptions } from '../../src/session.js';
import { overwriteBlocks, writeImage } from '../support/images.js';
import { localSessionOptions, withLocalSession } from '../support/local-endpoint.js';
import { rejection } from '../support/rejection.js';
import { expectSameBytes } from '../support/same-bytes.js';

const TIME_SCALE = 600;
const MINUTE = 60_000;
/** The credentials of the built-in `local` connection. */
const LOCAL_KEY = { accessKeyId: 'snapline-local', secretAccessKey: 'snapline-local-secret' };
const BUCKET = 'snapline-real-rules';

/** The wall clock run TIME_SCALE times faster: what the sessions' retries measure and sleep in. */
const scaledRetryClock: RetryClock = {
  now: () => performance.now() * TIME_SCALE,
  sleep: (ms, signal) => sleepFor(ms / TIME_SCALE, undefined, signal === undefined ? undefined : { signal }),
};

let work: string;
let endpoint: RunningEmulator;
let image: string;
let bytes: Buffer;
/** The longest a call was throttled, as the sessions reported it (scaled ms). */
let longestThrottled = 0;
const settling: SettleWait[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'snapline-real-rules-'));
  endpoint = await startEmulator({
    dataDir: join(work, 'endpoint'),
    auth: [LOCAL_KEY],
    timeScale: TIME_SCALE,
    ec2LagMs: 1000,
    clockSkewS: 20 * 60,
    encryptionByDefault: true,
    log: () => undefined,
  });
  image = join(work, 'disk.img');
  bytes = writeImage(image, { label: 'real-rules', blocks: 24, zeroBlocks: [5, 6, 20], tailBytes: 4096 });
});

afterAll(async () => {
  await endpoint?.close();
  await rm(work, { recursive: true, force: true });
});

/** Every EBS request throttled for three minutes of the endpoint's clock, from the next one on. */
function throttleForThreeMinutes(): void {
  endpoint.setFaults({ throttleForS: 180 });
}

function sessionOptions(): Partial<SessionOptions> {
  return {
    retryClock: scaledRetryClock,
    archive: { bucket: BUCKET },
    onThrottled: (throttledForMs) => {
      longestThrottled = Math.max(longestThrottled, throttledForMs);
    },
  };
}

/** `fn` in a session of its own, as each command opens one. */
function inSession<T>(fn: (session: Session) => Promise<T>): Promise<T> {
  return withLocalSession(endpoint, join(work, 'index.db'), fn, sessionOptions());
}

function backedUp(options: Partial<BackupOptions> = {}): Promise<BackupResult> {
  throttleForThreeMinutes();
  return inSession((session) => backup(session, { source: image, volume: 'disk', ...options }));
}

/** Restores `snapshotId` to a fresh file right away (EC2 may not show it completed yet) and compares it with the image. */
async function expectRestoresToImage(snapshotId: string, name: string): Promise<void> {
  throttleForThreeMinutes();
  const target = join(work, `${name}.restored`);
  await inSession((session) => restore(session, { snapshotId, target, onSettling: (wait) => settling.push(wait) }));
  await expectSameBytes(target, image);
}

describe(`the endpoint at time scale ${TIME_SCALE}, EC2 1 s behind, its clock 20 minutes ahead, encrypting by default, throttling for minutes`, () => {
  let head: string;

  it('a full backup and an encrypted incremental, each restored byte-identical right after it', async () => {
    const full = await backedUp();
    // Encrypted, so its zero blocks are written too (they would not read back as zeros otherwise).
    expect(full.blocksUploaded).toBe(25);
    await expectRestoresToImage(full.snapshotId!, 'full');

    overwriteBlocks(image, bytes, [1, 13, 24], 'second');
    const incremental = await backedUp();
    expect(incremental).toMatchObject({ parentSnapshotId: full.snapshotId, blocksUploaded: 3 });
    await expectRestoresToImage(incremental.snapshotId!, 'incremental');
    const [remote] = await inSession((session) => session.catalog.describeSnapshots([incremental.snapshotId!]));
    expect(remote).toMatchObject({ state: 'completed', encrypted: true });
    head = incremental.snapshotId!;

    // Throttled for minutes of the scaled clock, and more often than the attempts other errors get.
    expect(longestThrottled).toBeGreaterThanOrEqual(MINUTE);
    expect(endpoint.stats().faults.throttled).toBeGreaterThan(10);
  });

  it('an incremental interrupted after its first upload, resumed by the next run, restored byte-identical', async () => {
    overwriteBlocks(image, bytes, [0, 7, 8, 9, 22], 'third');
    const controller = new AbortController();
    throttleForThreeMinutes();
    const interrupted = await rejection(
      inSession((session) => {
        // Ctrl-C as the first block lands in the snapshot: that upload and every one after it end INTERRUPTED.
        const writer: SnapshotWriter = {
          startSnapshot: (input) => session.writer.startSnapshot(input),
          putBlock: async (...args) => {
            await session.writer.putBlock(...args);
            controller.abort(new SnaplineError(ErrorCodes.INTERRUPTED, 'interrupted by the test'));
            throw controller.signal.reason as SnaplineError;
          },
          completeSnapshot: (...args) => session.writer.completeSnapshot(...args),
        };
        const deps = { index: session.index, writer, reader: session.reader, catalog: session.catalog, hashPool: session.hashPool, slabs: session.slabs };
        return backup(deps, { source: image, volume: 'disk', signal: controller.signal });
      }),
    );
    expect(interrupted.code).toBe(ErrorCodes.INTERRUPTED);

    const resumed = await backedUp();
    expect(resumed).toMatchObject({ resumed: true, parentSnapshotId: head });
    await expectRestoresToImage(resumed.snapshotId!, 'resumed');
    head = resumed.snapshotId!;
  });

  it('an S3 archive in a Glacier class, its restore job, and the archive brought back onto a file and into a snapshot restored right after: byte-identical', async () => {
    throttleForThreeMinutes();
    const created = await inSession((session) => createArchive(session, { snapshotId: head, to: 's3', storageClass: 'GLACIER', createBucket: true }));
    expect(created).toMatchObject({ snapshotId: head, target: 's3', location: BUCKET });
    await inSession(async (session) => {
      await restoreArchive(session, { archive: created.archiveId, tier: 'Standard' });
      await archiveStatus(session, { archive: created.archiveId, wait: true, pollMs: { first: 20, max: 200 } });
    });
    throttleForThreeMinutes();
    const target = join(work, 'archive.restored');
    await inSession((session) => rehydrate(session, { archive: created.archiveId, toFile: target }));
    await expectSameBytes(target, image);

    // Into a new snapshot, the answer to its CompleteSnapshot lost, and that snapshot restored straight afterwards.
    endpoint.setFaults({ throttleForS: 180, completionLostResponses: 1 });
    const lost = endpoint.stats().faults.lostCompletions;
    const rehydrated = await inSession((session) => rehydrate(session, { archive: created.archiveId, toSnapshot: true }));
    expect(endpoint.stats().faults.lostCompletions).toBe(lost + 1);
    await expectRestoresToImage(rehydrated.snapshotId!, 'rehydrated');
  });

  it('an ECS restore of the newest snapshot into a new one, restored byte-identical right after it', async () => {
    throttleForThreeMinutes();
    const ecs = await openEcsSession(localSessionOptions(endpoint, join(work, 'index.db'), sessionOptions()));
    let report;
    try {
      report = await ecsRestore(ecs.deps, { source: head, shards: 2, pacing: { pollFirstMs: 20, pollMaxMs: 100, logSettleMs: 1000 } });
    } finally {
      await ecs.close();
    }
    expect(report.state).toBe('completed');
    expect(report.shards.map((s) => s.state)).toEqual(['succeeded', 'succeeded']);
    await expectRestoresToImage(report.snapshotId!, 'ecs');
  });

  it('the restores right after a backup waited for EC2 to show the snapshot completed', () => {
    expect(settling.length).toBeGreaterThan(0);
  });
});
