import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { ByteRange, ChangedRanges } from '../core/changed-ranges.js';
import { ErrorCodes, SnaplineError } from '../errors.js';

/**
 * The changed-blocks file: the answer of any change tracker (dm-era,
 * thin_delta, a storage array's API) in a form snapline reads.
 *
 *     # anything after a # is a comment; blank lines are ignored
 *     OFFSET LENGTH
 *
 * One range of changed bytes a line: two non-negative integers, decimal or
 * 0x hexadecimal, separated by spaces or tabs, the length at least 1 and
 * the range inside the source. Ranges may come in any order and overlap.
 * Anything else is refused with the line's number.
 */
export async function readChangedBlocksFile(path: string, sourceBytes: number): Promise<ChangedRanges> {
  const ranges: ByteRange[] = [];
  let lineNumber = 0;
  const bad = (why: string) =>
    new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--changed-blocks ${path} line ${lineNumber}: ${why}`, {
      hint: 'write one changed range a line as "OFFSET LENGTH" in bytes (decimal or 0x hex); # starts a comment',
      details: { option: 'changedBlocks', path, line: lineNumber },
    });
  const stream = createReadStream(path, { encoding: 'utf8' });
  try {
    for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
      lineNumber += 1;
      const text = line.replace(/#.*$/, '').trim();
      if (text === '') continue;
      const fields = text.split(/[ \t]+/);
      if (fields.length !== 2) throw bad(`expected OFFSET LENGTH, found ${fields.length} field${fields.length === 1 ? '' : 's'} in "${line.trim()}"`);
      const offset = parseByteCount(fields[0]!);
      const length = parseByteCount(fields[1]!);
      if (offset === undefined) throw bad(`offset "${fields[0]}" is not a non-negative integer (decimal or 0x hex)`);
      if (length === undefined) throw bad(`length "${fields[1]}" is not a non-negative integer (decimal or 0x hex)`);
      if (length === 0) throw bad('the length is 0: a changed range holds at least one byte');
      if (offset + length > sourceBytes) throw bad(`bytes [${offset}, ${offset + length}) reach past the source's end at ${sourceBytes} bytes`);
      ranges.push({ offset, length });
    }
  } catch (err) {
    if (err instanceof SnaplineError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new SnaplineError(ErrorCodes.INVALID_ARGUMENT, `--changed-blocks ${path} cannot be read: ${code}`, { cause: err, details: { option: 'changedBlocks', path } });
  } finally {
    stream.destroy();
  }
  ranges.sort((a, b) => a.offset - b.offset);
  return {
    kind: 'changed-blocks',
    name: path,
    description: `the changed-blocks file ${path}`,
    ranges: () => ranges,
  };
}

/** A decimal or 0x hexadecimal byte count that is a safe integer; undefined for anything else. */
function parseByteCount(text: string): number | undefined {
  const value = /^0[xX][0-9a-fA-F]+$/.test(text) ? Number.parseInt(text.slice(2), 16) : /^[0-9]+$/.test(text) ? Number(text) : NaN;
  return Number.isSafeInteger(value) ? value : undefined;
}
