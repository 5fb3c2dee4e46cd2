/**
 * `snapline report --html` opened in headless Chromium (Debian's chromium
 * package): the page renders to a screenshot, needs nothing from the
 * network, the numbers of its status table are those `status --json`
 * gives, its retention calendar says what `prune --dry-run --json` decides,
 * and its drills are those `drill --json` recorded. Skipped, saying why,
 * where chromium is not installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import type { PruneResult } from '../../src/engine/lineage/prune.js';
import type { StatusResult, VolumeStatus } from '../../src/engine/ops/status.js';
import { ExitCodes } from '../../src/errors.js';
import { BlockIndex } from '../../src/index/index.js';
import { runCli, type CliResult } from '../support/cli.js';
import { overwriteBlocks, writeImage } from '../support/images.js';

const chromium = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'chromium')).find((path) => existsSync(path));
if (chromium === undefined) console.log('report.test.ts: skipped: no chromium on PATH (Debian: apt-get install chromium)');

let work: string;
let endpoint: RunningEmulator;

function cli(args: string[]): Promise<CliResult> {
  return runCli(['--connection', 'local', '--endpoint-url', endpoint.url, '--index', join(work, 'index.db'), '--no-progress', '--json', ...args], { dataDir: join(work, 'data'), cwd: work });
}

/** The page as headless Chromium builds it (--dump-dom), with a screenshot when `shot` is given. */
function renderedDom(html: string, shot?: string): string {
  const browser = spawnSync(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', ...(shot === undefined ? [] : [`--screenshot=${shot}`]), '--window-size=1280,1600', '--dump-dom', pathToFileURL(html).href], {
    encoding: 'utf8',
    timeout: 120_000,
    maxBuffer: 64 << 20,
  });
  expect(browser.status, browser.stderr).toBe(0);
  return browser.stdout;
}

/** The section of one volume in the dumped DOM. */
function sectionOf(dom: string, volume: string): string {
  return new RegExp(`<section data-volume="${volume}">([\\s\\S]*?)</section>`).exec(dom)![1]!;
}

/** Snapshot id -> the text of its "Kept by" cell, from a volume's section. */
function keptByCells(section: string): Map<string, string> {
  return new Map([...section.matchAll(/<tr data-snapshot="([^"]+)"[^>]*>[\s\S]*?<td data-field="keptBy">([^<]*)<\/td>/g)].map(([, id, text]) => [id!, text!]));
}

/** What the page should say of each snapshot prune decided: the rules keeping it, or that it goes. */
function pruneWords(result: PruneResult, volume: string): Map<string, string> {
  const decided = result.volumes.find((v) => v.volume === volume)!;
  return new Map(decided.snapshots.map((s) => [s.snapshotId, s.removed ? 'removed at the next prune' : s.keptBy.join(', ')]));
}

/** The value at a dotted path of status --json's volume, as the page writes it in data-value. */
function valueAt(volume: VolumeStatus, path: string): string {
  const value = path.split('.').reduce<unknown>((at, key) => (at === null || at === undefined ? null : (at as Record<string, unknown>)[key]), volume);
  return value === null || value === undefined ? '' : String(value);
}

/** data-field -> data-value of each status row of the dumped DOM, by volume. */
function statusRows(dom: string): Map<string, Map<string, string>> {
  const table = /<table id="status">([\s\S]*?)<\/table>/.exec(dom)?.[1] ?? '';
  const rows = new Map<string, Map<string, string>>();
  for (const [, volume, cells] of table.matchAll(/<tr data-volume="([^"]*)">([\s\S]*?)<\/tr>/g)) {
    rows.set(volume!, new Map([...cells!.matchAll(/<td data-field="([^"]+)" data-value="([^"]*)"/g)].map(([, field, value]) => [field!, value!.replace(/&amp;/g, '&')])));
  }
  return rows;
}

describe.skipIf(chromium === undefined)('snapline report --html in headless Chromium', () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'snapline-report-'));
    endpoint = await startEmulator({ dataDir: join(work, 'endpoint') });
  });

  afterAll(async () => {
    await endpoint?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('renders a screenshot, fetches nothing, and shows the numbers status --json gives', async () => {
    const image = join(work, 'web.img');
    const bytes = writeImage(image, { label: 'report', blocks: 8, zeroBlocks: [2, 3, 4, 5] });
    expect((await cli(['backup', image, '--volume', 'web'])).code).toBe(ExitCodes.OK);
    overwriteBlocks(image, bytes, [6, 7], 'report-2');
    expect((await cli(['backup', image, '--volume', 'web'])).code).toBe(ExitCodes.OK);
    expect((await cli(['backup', join(work, 'missing.img'), '--volume', 'db'])).code).toBe(ExitCodes.USAGE);

    const status = await cli(['status', '--expect-every', '1d']);
    expect(status.code).toBe(ExitCodes.DIFFERENCES);
    const volumes = (JSON.parse(status.stdout) as StatusResult).volumes;
    const html = join(work, 'report.html');
    const report = await cli(['report', '--html', html, '--expect-every', '1d']);
    expect({ code: report.code, stderr: report.stderr }).toMatchObject({ code: ExitCodes.OK });
    expect(JSON.parse(report.stdout).html).toBe(html);

    const page = readFileSync(html, 'utf8');
    // Self-contained: no script, stylesheet, image or frame from anywhere, no URL but the SVG namespace.
    expect(page).not.toMatch(/<(script|link|img|iframe)\b/i);
    expect(page.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toMatch(/https?:\/\//);

    const shot = join(work, 'report.png');
    const dom = renderedDom(html, shot);
    expect(statSync(shot).size).toBeGreaterThan(1000);
    expect(readFileSync(shot).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

    const rows = statusRows(dom);
    expect([...rows.keys()]).toEqual(volumes.map((v) => v.volume));
    for (const volume of volumes) {
      const row = rows.get(volume.volume)!;
      for (const [field, value] of row) {
        if (field === 'newestGoodSnapshot.ageSeconds') {
          // The page was made after status ran: as old or older.
          if (value !== '') expect(Number(value)).toBeGreaterThanOrEqual(Number(valueAt(volume, field)));
          continue;
        }
        expect({ volume: volume.volume, field, value }).toEqual({ volume: volume.volume, field, value: valueAt(volume, field) });
      }
    }
    expect(rows.get('web')!.get('snapshotCount')).toBe('2');
    expect(rows.get('web')!.get('ebsSpace.estimatedBytes')).toBe(String(6 * 524288));
    expect(rows.get('db')!.get('lastBackup.result')).toBe('failure');

    // The web volume's charts: a bar per backup, the last snapshot-count bar as status says.
    const web = sectionOf(dom, 'web');
    const charts = [...web.matchAll(/<svg[\s\S]*?<\/svg>/g)].map(([svg]) => [...svg.matchAll(/<rect [^>]*data-value="([^"]+)"/g)].map(([, v]) => Number(v)));
    expect(charts.map((bars) => bars.length)).toEqual([2, 2, 2, 2]);
    expect(charts[0]).toEqual([4 * 524288, 2 * 524288]);
    expect(charts[3]!.at(-1)).toBe(volumes.find((v) => v.volume === 'web')!.snapshotCount);
    expect(web).toMatch(/<td class="snap" data-day="\d{4}-\d\d-\d\d"[^>]*>2<\/td>/);
  });

  it("the retention calendar says what prune --dry-run decides, by the config file's policy or the options; the drills show recovery time and result", async () => {
    const image = join(work, 'web.img');
    expect((await cli(['backup', image, '--volume', 'web'])).code).toBe(ExitCodes.OK);
    const config = join(work, 'config.yaml');
    writeFileSync(config, 'volumes:\n  web:\n    retention:\n      keep_last: 2\n', { mode: 0o600 });

    const drilled = await cli(['drill', 'web']);
    expect({ code: drilled.code, stderr: drilled.stderr }).toMatchObject({ code: ExitCodes.OK });
    const passed = JSON.parse(drilled.stdout) as { snapshotId: string; recoveryMs: number; blocksRead: number; passed: boolean };
    expect(passed.passed).toBe(true);
    // A failed drill as the index records one (making a block fail to read takes half a minute of retries: dr-cli.test.ts does that).
    const index = BlockIndex.open(join(work, 'index.db'));
    try {
      const at = new Date();
      index.drills.record({ volume: 'web', snapshotId: passed.snapshotId, kind: 'read', startedAt: at, finishedAt: at, passed: false, recoveryMs: 4321, blocksRead: 8, mismatchedBlocks: 1, message: 'block 6 differs' });
    } finally {
      index.close();
    }

    const html = join(work, 'retention.html');
    expect((await cli(['--config', config, 'report', '--html', html])).code).toBe(ExitCodes.OK);
    const dom = renderedDom(html);
    const dryRun = await cli(['--config', config, 'prune', '--dry-run']);
    expect(dryRun.code).toBe(ExitCodes.OK);
    const planned = JSON.parse(dryRun.stdout) as PruneResult;
    const web = sectionOf(dom, 'web');
    const cells = keptByCells(web);
    expect(cells).toEqual(pruneWords(planned, 'web'));
    expect([...cells.values()].filter((text) => text === 'removed at the next prune')).toHaveLength(1);
    expect(web).toContain(`Policy: keep last 2 (periods in ${planned.timeZone}).`);
    expect([...keptByCells(sectionOf(dom, 'db')).values()]).toEqual([]);
    expect(sectionOf(dom, 'db')).toContain('No retention policy applies to this volume');

    // The options replace the config file's policy, as they do for prune.
    const byOptions = join(work, 'options.html');
    expect((await cli(['--config', config, 'report', '--html', byOptions, '--keep-last', '1', '--utc'])).code).toBe(ExitCodes.OK);
    const optionsDryRun = JSON.parse((await cli(['--config', config, 'prune', '--dry-run', '--keep-last', '1', '--utc'])).stdout) as PruneResult;
    const optionsCells = keptByCells(sectionOf(renderedDom(byOptions), 'web'));
    expect(optionsCells).toEqual(pruneWords(optionsDryRun, 'web'));
    expect([...optionsCells.values()].filter((text) => text === 'removed at the next prune')).toHaveLength(2);
    // A report deletes nothing.
    expect((JSON.parse((await cli(['status'])).stdout) as StatusResult).volumes.find((v) => v.volume === 'web')!.snapshotCount).toBe(3);

    // The drills, newest first in the table, oldest first in the chart (the failed one red).
    const drills = [...web.matchAll(/<tr data-drill="\d+">([\s\S]*?)<\/tr>/g)].map(([, row]) => ({
      result: /<td data-field="result"[^>]*>([^<]*)</.exec(row!)![1],
      recoveryMs: Number(/<td data-field="recoveryMs" data-value="(\d+)"/.exec(row!)![1]),
      blocksRead: Number(/<td data-field="blocksRead" data-value="(\d+)"/.exec(row!)![1]),
    }));
    expect(drills).toEqual([
      { result: 'FAILED', recoveryMs: 4321, blocksRead: 8 },
      { result: 'passed', recoveryMs: passed.recoveryMs, blocksRead: passed.blocksRead },
    ]);
    const chart = /<svg[^>]*aria-label="Recovery time per drill">[\s\S]*?<\/svg>/.exec(web)![0];
    expect([...chart.matchAll(/<rect class="(\w+)"[^>]*data-value="([^"]+)"/g)].map(([, cls, v]) => [cls, Number(v)])).toEqual([
      ['bar', passed.recoveryMs / 1000],
      ['bad', 4.321],
    ]);
    expect(sectionOf(dom, 'db')).toContain('No restore drills recorded');
  }, 240_000);

  it('--html is required, and --volume narrows the page to one volume', async () => {
    const missing = await cli(['report']);
    expect(missing.code).toBe(ExitCodes.USAGE);
    expect(JSON.parse(missing.stdout).error.message).toMatch(/--html/);
    const html = join(work, 'one.html');
    expect((await cli(['report', '--volume', 'web', '--html', html])).code).toBe(ExitCodes.OK);
    expect(statusRows(readFileSync(html, 'utf8')).size).toBe(1);
  });
});
