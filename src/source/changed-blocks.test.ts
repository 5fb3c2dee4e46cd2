import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../errors.js';
import { readChangedBlocksFile } from './changed-blocks.js';

const dir = mkdtempSync(join(tmpdir(), 'snapline-changed-blocks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let serial = 0;
function fileWith(text: string): string {
  const path = join(dir, `changes-${++serial}.txt`);
  writeFileSync(path, text);
  return path;
}

async function rangesOf(text: string, sourceBytes = 1 << 30) {
  const tracker = await readChangedBlocksFile(fileWith(text), sourceBytes);
  const ranges = [];
  for await (const range of tracker.ranges()) ranges.push(range);
  return { tracker, ranges };
}

describe('the changed-blocks file', () => {
  it('reads decimal and 0x hex ranges, comments, blank lines, tabs and CRLF, in any order, sorted by offset', async () => {
    const { tracker, ranges } = await rangesOf('# written since era 7\r\n0x100000\t0x1000  # hex\r\n\r\n   \n4096 512\n0 1\n0XfF 0x1\n');
    expect(ranges).toEqual([
      { offset: 0, length: 1 },
      { offset: 255, length: 1 },
      { offset: 4096, length: 512 },
      { offset: 0x100000, length: 0x1000 },
    ]);
    expect(tracker).toMatchObject({ kind: 'changed-blocks', description: expect.stringContaining('the changed-blocks file ') });
  });

  it('takes an empty file (nothing changed) and a range ending exactly at the source end', async () => {
    expect((await rangesOf('# nothing\n')).ranges).toEqual([]);
    expect((await rangesOf('1000 24\n', 1024)).ranges).toEqual([{ offset: 1000, length: 24 }]);
  });

  it.each([
    ['1 2 3\n', 1, 'expected OFFSET LENGTH, found 3 fields in "1 2 3"'],
    ['0 1\n4096\n', 2, 'expected OFFSET LENGTH, found 1 field in "4096"'],
    ['-1 5\n', 1, 'offset "-1" is not a non-negative integer (decimal or 0x hex)'],
    ['1.5 5\n', 1, 'offset "1.5" is not a non-negative integer'],
    ['0x 5\n', 1, 'offset "0x" is not a non-negative integer'],
    ['12 0x1g\n', 1, 'length "0x1g" is not a non-negative integer'],
    ['99999999999999999999 1\n', 1, 'offset "99999999999999999999" is not a non-negative integer'],
    ['# c\n\n10 0\n', 3, 'the length is 0: a changed range holds at least one byte'],
    ['0 1\n1020 5\n', 2, 'bytes [1020, 1025) reach past the source\'s end at 1024 bytes'],
    ['1e3 5\n', 1, 'offset "1e3" is not a non-negative integer'],
  ])('refuses %j naming line %i', async (text, line, why) => {
    const path = fileWith(text);
    const err = await readChangedBlocksFile(path, 1024).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, details: { option: 'changedBlocks', line } });
    expect((err as Error).message).toContain(`--changed-blocks ${path} line ${line}: ${why}`);
  });

  it('refuses a file that cannot be read, naming it', async () => {
    const missing = join(dir, 'missing.txt');
    await expect(readChangedBlocksFile(missing, 1024)).rejects.toMatchObject({
      code: ErrorCodes.INVALID_ARGUMENT,
      message: `--changed-blocks ${missing} cannot be read: ENOENT`,
      details: { option: 'changedBlocks' },
    });
  });
});
