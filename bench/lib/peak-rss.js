// Child process of the peak-memory figure: runs one backup or one restore
// against an endpoint in a fresh process, then prints one JSON line with its
// result and the process's peak resident set (VmHWM from /proc/self/status,
// with process.resourceUsage().maxRSS as a cross-check). Hash threads count:
// they live in this process.
//
//   node bench/lib/peak-rss.js '{"op":"backup","endpointUrl":...,"indexPath":...,"source":...}'
//   node bench/lib/peak-rss.js '{"op":"restore","endpointUrl":...,"indexPath":...,"snapshotId":...,"target":...}'
import { readFileSync } from 'node:fs';
import { openSession, sessionBackup as backup, sessionRestore as restore } from 'snapline/internals';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** @type {{ op: 'backup' | 'restore', endpointUrl: string, indexPath: string, concurrency?: number, source?: string, snapshotId?: string, target?: string }} */
const job = JSON.parse(/** @type {string} */ (process.argv[2]));

const session = await openSession({ connection: 'local', endpointUrl: job.endpointUrl, indexPath: job.indexPath, concurrency: job.concurrency });
/** @type {unknown} */
let result;
const started = performance.now();
try {
  result =
    job.op === 'backup'
      ? await backup(session, { source: /** @type {string} */ (job.source), volume: 'peak-rss' })
      : await restore(session, { snapshotId: /** @type {string} */ (job.snapshotId), target: /** @type {string} */ (job.target), force: true });
} finally {
  await session.close();
}
const seconds = (performance.now() - started) / 1000;
const status = readFileSync('/proc/self/status', 'utf8');
const hwmKiB = Number(/^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1] ?? NaN);
process.stdout.write(`${JSON.stringify({ op: job.op, seconds, peakRssBytes: hwmKiB * 1024, maxRssBytes: process.resourceUsage().maxRSS * 1024, result })}\n`);
