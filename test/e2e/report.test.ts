/**
 * `snapline report --html` opened in headless Chromium (Debian's chromium
 * package): the page renders to a screenshot, needs nothing from the
 * network, and the numbers of its status table are those `status --json`
 * gives. Skipped, saying why, where chromium is not installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulator, type RunningEmulator } from '../../src/emulator/index.js';
import type { StatusResult, VolumeStatus } from '../../src/engine/ops/status.js';
import { ExitCodes } from '../../src/errors.js';
import { runCli, type CliResult } from '../support/cli.js';
import { overwriteBlocks, writeImage } from '../support/images.js';

const chromium = (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'chromium')).find((path) => existsSync(path));
if (chromium === undefined) console.log('report.test.ts: skipped: no chromium on PATH (Debian: apt-get install chromium)');

let work: string;
let endpoint: RunningEmulator;

function cli(args: string[]): Promise<CliResult> {
  return runCli(['--connection', 'local', '--endpoint-url', endpoint.url, '--index', join(work, 'index.db'), '--no-progress', '--json', ...args], { dataDir: join(work, 'data'), cwd: work });
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
    const browser = spawnSync(chromium!, ['--headless', '--no-sandbox', '--disable-gpu', `--screenshot=${shot}`, '--window-size=1280,1600', '--dump-dom', pathToFileURL(html).href], {
      encoding: 'utf8',
      timeout: 120_000,
      maxBuffer: 64 << 20,
    });
    expect(browser.status, browser.stderr).toBe(0);
    expect(statSync(shot).size).toBeGreaterThan(1000);
    expect(readFileSync(shot).subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

    const rows = statusRows(browser.stdout);
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
    const web = /<section data-volume="web">([\s\S]*?)<\/section>/.exec(browser.stdout)![1]!;
    const charts = [...web.matchAll(/<svg[\s\S]*?<\/svg>/g)].map(([svg]) => [...svg.matchAll(/<rect [^>]*data-value="([^"]+)"/g)].map(([, v]) => Number(v)));
    expect(charts.map((bars) => bars.length)).toEqual([2, 2, 2, 2]);
    expect(charts[0]).toEqual([4 * 524288, 2 * 524288]);
    expect(charts[3]!.at(-1)).toBe(volumes.find((v) => v.volume === 'web')!.snapshotCount);
    expect(web).toMatch(/<td class="snap" data-day="\d{4}-\d\d-\d\d"[^>]*>2<\/td>/);
  });

  it('--html is required, and --volume narrows the page to one volume', async () => {
    const missing = await cli(['report']);
    expect(missing.code).toBe(ExitCodes.USAGE);
    expect(JSON.parse(missing.stdout).error.message).toMatch(/--html/);
    const html = join(work, 'one.html');
    expect((await cli(['report', '--volume', 'web', '--html', html])).code).toBe(ExitCodes.OK);
    expect(statusRows(readFileSync(html, 'utf8')).size).toBe(1);
  });
});
