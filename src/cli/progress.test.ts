import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ThrottleWatch, type RetryClock } from '../aws/retry.js';
import type { RemoteSession } from '../session.js';
import { throttleAwareProgress } from './commands/common.js';
import { Output } from './output.js';

/** A terminal that keeps what was drawn on it. */
function terminal(): { stream: PassThrough; drawn: () => string } {
  const stream = Object.assign(new PassThrough(), { isTTY: true });
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  return { stream, drawn: () => text };
}

describe('the progress line of a throttled run', () => {
  it('says for how long the run has been throttled, redrawn at each throttled retry, and stops saying it once the calls land', async () => {
    const clock: RetryClock = { now: () => now, sleep: () => Promise.resolve() };
    let now = 0;
    const watch = new ThrottleWatch(clock);
    const { stream, drawn } = terminal();
    const output = new Output({ json: false, progress: true, verbose: false }, new PassThrough(), stream);
    const progress = throttleAwareProgress(output);
    const display = progress.display({ throttling: watch } as unknown as RemoteSession);
    const lastLine = async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return drawn().split('\r\x1b[2K').at(-1)!;
    };

    display.update({ label: 'backup', done: 1024, total: 4096, detail: 'uploaded 2 blocks' });
    expect(await lastLine()).toMatch(/uploaded 2 blocks$/);

    const call = {};
    watch.begin(call, now);
    now += 500;
    progress.onThrottled();
    // Half a second of throttling is the normal flow: not mentioned.
    expect(await lastLine()).toMatch(/uploaded 2 blocks$/);
    now += 124_500;
    progress.onThrottled();
    expect(await lastLine()).toMatch(/uploaded 2 blocks, throttled, retrying for 2m05s so far$/);

    watch.end(call);
    display.update({ label: 'backup', done: 2048, total: 4096, detail: 'uploaded 3 blocks' });
    expect(await lastLine()).toMatch(/uploaded 3 blocks$/);
  });
});
