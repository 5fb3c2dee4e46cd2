import { describe, expect, it } from 'vitest';
import { TaskWindow } from './task-window.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('TaskWindow', () => {
  it('never has more than `size` tasks unsettled', async () => {
    const window = new TaskWindow(3);
    let running = 0;
    let peak = 0;
    for (let i = 0; i < 20; i += 1) {
      await window.add(async () => {
        running += 1;
        peak = Math.max(peak, running);
        await tick();
        running -= 1;
      });
    }
    await window.drain();
    expect(peak).toBe(3);
    expect(running).toBe(0);
  });

  it('keeps the first failure, starts nothing after it, and still awaits the running tasks', async () => {
    const window = new TaskWindow(4);
    let finished = 0;
    await window.add(async () => {
      await tick();
      throw new Error('first');
    });
    await window.add(async () => {
      await tick();
      await tick();
      finished += 1;
    });
    await tick();
    await tick();
    await expect(window.add(async () => undefined)).rejects.toThrow('first');
    await expect(window.drain()).rejects.toThrow('first');
    expect(finished).toBe(1);
    expect(window.failed).toBe(true);
  });

  it('run: a failing producer stops, its error is thrown only once the tasks it started have settled', async () => {
    const window = new TaskWindow(4);
    let finished = 0;
    const run = window.run(async () => {
      await window.add(async () => {
        await tick();
        await tick();
        finished += 1;
      });
      throw new Error('producer');
    });
    await expect(run).rejects.toThrow('producer');
    expect(finished).toBe(1);
  });

  it('run: a task failure stops the producer at its next add, and is the one thrown', async () => {
    const window = new TaskWindow(1);
    let added = 0;
    const run = window.run(async () => {
      for (let i = 0; i < 10; i += 1) {
        await window.add(async () => {
          await tick();
          if (i === 1) throw new Error(`task ${i}`);
        });
        added += 1;
      }
    });
    await expect(run).rejects.toThrow('task 1');
    expect(added).toBe(2);
  });
});
