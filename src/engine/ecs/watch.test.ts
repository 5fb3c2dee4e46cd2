import { describe, expect, it } from 'vitest';
import type { LogLine, LogReader } from '../../core/ports.js';
import { TaskLog } from './watch.js';

type Page = { lines: string[]; token: string | undefined; restarted?: boolean };

/** A LogReader that answers the pages it is given, one a call, and records the tokens it was asked with. */
class ScriptedReader implements LogReader {
  readonly asked: Array<string | undefined> = [];
  constructor(private readonly pages: Page[]) {}

  async readForward(_group: string, _stream: string, token: string | undefined): Promise<{ lines: LogLine[]; token: string | undefined; restarted?: boolean }> {
    this.asked.push(token);
    const page = this.pages.shift() ?? { lines: [], token };
    return { ...page, lines: page.lines.map((message) => ({ timestamp: new Date(0), message })) };
  }
}

const WORKER = { name: 'worker', logGroup: '/snapline/worker', logStreamPrefix: 'snapline' };
const ARN = 'arn:aws:ecs:us-east-1:123456789012:task/restores/abc';

function follow(pages: Page[]): { log: TaskLog; reader: ScriptedReader; seen: string[] } {
  const reader = new ScriptedReader(pages);
  const seen: string[] = [];
  return { log: new TaskLog(reader, WORKER, ARN, (line) => seen.push(line)), reader, seen };
}

describe('TaskLog.pump', () => {
  it('reads on past an empty page while the token moves (a page may be empty and not be the end), and stops when the token comes back unchanged', async () => {
    const { log, reader, seen } = follow([
      { lines: ['one'], token: 't1' },
      { lines: [], token: 't2' },
      { lines: ['two'], token: 't3' },
      { lines: [], token: 't3' },
    ]);
    expect(await log.pump()).toBe(true);
    expect(seen).toEqual(['one', 'two']);
    expect(reader.asked).toEqual([undefined, 't1', 't2', 't3']);
    expect(await log.pump()).toBe(false);
    expect(reader.asked.at(-1)).toBe('t3');
  });

  it('after the reader started the stream again (its token refused), the lines already passed on are passed over', async () => {
    const { log, seen } = follow([
      { lines: ['one', 'two'], token: 't1' },
      { lines: [], token: 't1' },
      { lines: ['one'], token: 'r1', restarted: true },
      { lines: ['two', 'three'], token: 'r2' },
      { lines: [], token: 'r2' },
    ]);
    await log.pump();
    expect(seen).toEqual(['one', 'two']);
    expect(await log.pump()).toBe(true);
    expect(seen).toEqual(['one', 'two', 'three']);
    expect(log.lastLines).toEqual(['one', 'two', 'three']);
  });
});
