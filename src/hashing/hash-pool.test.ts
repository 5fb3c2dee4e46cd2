import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createHash, randomFillSync } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { BLOCK_SIZE } from '../core/constants.js';
import { ZERO_BLOCK_DIGEST, treeHash } from '../core/checksum.js';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { HashPool, startBlockThreadsEarly } from './index.js';

let pool: HashPool;

beforeAll(() => {
  pool = new HashPool({ threads: 2 });
});

afterAll(async () => {
  await pool.destroy();
});

/** A shared buffer of `layout.length` blocks after `lead` bytes: 'r' random, 'z' zeros, 'o' zeros but one byte. */
function sharedBlocks(layout: string, lead = 0): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(lead + layout.length * BLOCK_SIZE);
  const bytes = new Uint8Array(buffer);
  randomFillSync(bytes, 0, lead);
  [...layout].forEach((kind, i) => {
    const block = bytes.subarray(lead + i * BLOCK_SIZE, lead + (i + 1) * BLOCK_SIZE);
    if (kind === 'r') randomFillSync(block);
    if (kind === 'o') block[BLOCK_SIZE - 1] = 1;
  });
  return buffer;
}

function expected(buffer: SharedArrayBuffer, offset: number, blockCount: number): { digests: Buffer; zero: number[] } {
  const digests: Buffer[] = [];
  const zero: number[] = [];
  for (let i = 0; i < blockCount; i += 1) {
    const block = new Uint8Array(buffer, offset + i * BLOCK_SIZE, BLOCK_SIZE);
    digests.push(createHash('sha256').update(block).digest());
    zero.push(block.every((byte) => byte === 0) ? 1 : 0);
  }
  return { digests: Buffer.concat(digests), zero };
}

describe('HashPool.hashBlocks', () => {
  it.each([
    ['random', 'rrrrr'],
    ['zero', 'zzz'],
    ['mixed', 'rzorzzr'],
    ['a single block', 'o'],
  ])('gives node:crypto digests and zero flags for %s data', async (_name, layout) => {
    const buffer = sharedBlocks(layout);
    const result = await pool.hashBlocks(buffer, 0, layout.length);
    const want = expected(buffer, 0, layout.length);
    expect(Buffer.from(result.digests).equals(want.digests)).toBe(true);
    expect([...result.zero]).toEqual(want.zero);
  });

  it('gives the zero-block digest for all-zero blocks', async () => {
    const result = await pool.hashBlocks(sharedBlocks('zz'), 0, 2);
    expect(Buffer.from(result.digests.subarray(32, 64)).equals(ZERO_BLOCK_DIGEST)).toBe(true);
  });

  it('hashes blocks at an offset, leaving the bytes around them out', async () => {
    const lead = 4097;
    const buffer = sharedBlocks('rzrr', lead);
    const result = await pool.hashBlocks(buffer, lead + BLOCK_SIZE, 2);
    const want = expected(buffer, lead + BLOCK_SIZE, 2);
    expect(Buffer.from(result.digests).equals(want.digests)).toBe(true);
    expect([...result.zero]).toEqual([1, 0]);
  });

  it('serves many calls at once, each with its own blocks', async () => {
    const buffers = ['rz', 'zr', 'rrr', 'z', 'ror'].map((layout) => sharedBlocks(layout));
    const results = await Promise.all(buffers.map((buffer) => pool.hashBlocks(buffer, 0, buffer.byteLength / BLOCK_SIZE)));
    results.forEach((result, i) => {
      const buffer = buffers[i]!;
      expect(Buffer.from(result.digests).equals(expected(buffer, 0, buffer.byteLength / BLOCK_SIZE).digests)).toBe(true);
    });
  });

  it('reads the shared buffer in place: a changed block gives a new digest', async () => {
    const buffer = sharedBlocks('z');
    const before = await pool.hashBlocks(buffer, 0, 1);
    new Uint8Array(buffer)[7] = 9;
    const after = await pool.hashBlocks(buffer, 0, 1);
    expect([...before.zero, ...after.zero]).toEqual([1, 0]);
    expect(Buffer.from(after.digests).equals(expected(buffer, 0, 1).digests)).toBe(true);
  });

  it('gives empty results for no blocks', async () => {
    const result = await pool.hashBlocks(new SharedArrayBuffer(0), 0, 0);
    expect(result.digests.byteLength).toBe(0);
    expect(result.zero.byteLength).toBe(0);
  });

  it('refuses ranges outside the buffer and buffers that are not shared', async () => {
    const buffer = new SharedArrayBuffer(2 * BLOCK_SIZE);
    await expect(pool.hashBlocks(buffer, 1, 2)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(pool.hashBlocks(buffer, -1, 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(pool.hashBlocks(buffer, 0, 1.5)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    const plain = new ArrayBuffer(BLOCK_SIZE) as unknown as SharedArrayBuffer;
    await expect(pool.hashBlocks(plain, 0, 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('rejects with INTERRUPTED (or the SnaplineError reason) on abort, and keeps working afterwards', async () => {
    const buffer = sharedBlocks('rrrrrrrr');
    await expect(pool.hashBlocks(buffer, 0, 8, AbortSignal.abort())).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED });
    const controller = new AbortController();
    const reason = new SnaplineError(ErrorCodes.INTERRUPTED, 'stopped by SIGINT');
    const running = pool.hashBlocks(buffer, 0, 8, controller.signal);
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
    const result = await pool.hashBlocks(buffer, 0, 8);
    expect(Buffer.from(result.digests).equals(expected(buffer, 0, 8).digests)).toBe(true);
  });
});

describe('HashPool.treeHash', () => {
  it.each([0, 1, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024, 5 * 1024 * 1024 + 77])(
    'equals core treeHash for %i bytes at an offset',
    async (length) => {
      const lead = 13;
      const buffer = new SharedArrayBuffer(lead + length + 5);
      randomFillSync(new Uint8Array(buffer));
      const result = await pool.treeHash(buffer, lead, length);
      expect(result.byteLength).toBe(32);
      expect(Buffer.from(result).equals(treeHash(new Uint8Array(buffer, lead, length)))).toBe(true);
    },
  );

  it('refuses a range outside the buffer', async () => {
    await expect(pool.treeHash(new SharedArrayBuffer(10), 5, 6)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });
});

describe('HashPool lifecycle', () => {
  it('defaults to one thread a core, refuses a bad thread count, and refuses work after destroy', async () => {
    expect(() => new HashPool({ threads: 0 })).toThrow(/threads/);
    const own = new HashPool();
    expect(own.threads).toBeGreaterThanOrEqual(1);
    const result = await own.hashBlocks(sharedBlocks('z'), 0, 1);
    expect([...result.zero]).toEqual([1]);
    await own.destroy();
    await own.destroy();
    await expect(own.hashBlocks(sharedBlocks('z'), 0, 1)).rejects.toMatchObject({ code: ErrorCodes.INTERNAL });
  });
});

describe('HashPool.sha256', () => {
  it('hashes bytes in shared memory in place and any other buffer through a copy, many at once', async () => {
    const shared = new Uint8Array(sharedBlocks('rr', 100), 100 + 17, BLOCK_SIZE);
    const plain = Array.from({ length: 100 }, (_, i) => randomFillSync(Buffer.alloc(i % 2 === 0 ? BLOCK_SIZE : 1000 + i)));
    const digests = await Promise.all([shared, ...plain].map((data) => pool.sha256(data)));
    for (const [i, data] of [shared, ...plain].entries()) {
      expect(Buffer.from(digests[i]!).equals(createHash('sha256').update(data).digest()), `buffer ${i}`).toBe(true);
    }
  });

  it('hashes an empty buffer and one larger than a block', async () => {
    expect(Buffer.from(await pool.sha256(new Uint8Array(0))).equals(createHash('sha256').update(Buffer.alloc(0)).digest())).toBe(true);
    const large = randomFillSync(Buffer.alloc(3 * BLOCK_SIZE + 5));
    expect(Buffer.from(await pool.sha256(large)).equals(createHash('sha256').update(large).digest())).toBe(true);
  });

  it('the zero block gives the zero-block digest', async () => {
    expect(Buffer.from(await pool.sha256(Buffer.alloc(BLOCK_SIZE))).equals(ZERO_BLOCK_DIGEST)).toBe(true);
  });
});

describe('HashPool.sha256Moving', () => {
  it('moves a buffer that owns its memory to a worker and back, without a copy', async () => {
    const blocks = Array.from({ length: 20 }, () => randomFillSync(Buffer.allocUnsafeSlow(BLOCK_SIZE)));
    const copies = blocks.map((b) => Buffer.from(b));
    const results = await Promise.all(blocks.map((b) => pool.sha256Moving(b)));
    for (const [i, { digest, data }] of results.entries()) {
      expect(blocks[i]!.byteLength, 'the buffer given is detached').toBe(0);
      expect(data.equals(copies[i]!)).toBe(true);
      expect(Buffer.from(digest).equals(createHash('sha256').update(copies[i]!).digest())).toBe(true);
    }
  });

  it('hashes a view into a larger buffer, or into shared memory, through sha256 and hands it back as it is', async () => {
    const backing = randomFillSync(Buffer.alloc(3 * BLOCK_SIZE));
    const view = backing.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE);
    const shared = Buffer.from(sharedBlocks('r'));
    for (const data of [view, shared]) {
      const result = await pool.sha256Moving(data);
      expect(result.data).toBe(data);
      expect(Buffer.from(result.digest).equals(createHash('sha256').update(data).digest())).toBe(true);
    }
  });
});

describe('HashPool.readAndHashBlocks', () => {
  it('reads blocks of a file into the buffer and hashes them, the tail past the available bytes zeros', async () => {
    const { mkdtemp, open, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'snapline-read-hash-'));
    try {
      const data = randomFillSync(Buffer.alloc(5 * BLOCK_SIZE + 100));
      data.fill(0, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE);
      const path = join(dir, 'source.raw');
      const file = await open(path, 'w+');
      await file.write(data, 0, data.byteLength, 0);
      const buffer = sharedBlocks('rrrrr', 64);
      // Blocks 2..5 of the file (the last one 100 bytes), at byte 64 of the buffer; the buffer held random bytes before.
      const result = await pool.readAndHashBlocks(file.fd, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE + 100, buffer, 64, 4);
      const expectedBytes = Buffer.alloc(4 * BLOCK_SIZE);
      data.copy(expectedBytes, 0, 2 * BLOCK_SIZE);
      expect(Buffer.from(buffer, 64, 4 * BLOCK_SIZE).equals(expectedBytes)).toBe(true);
      expect(result.digests).toEqual(new Uint8Array(expected(buffer, 64, 4).digests));
      expect([...result.zero]).toEqual([1, 0, 0, 0]);

      // Asking for more than the file holds: the source ended early.
      const short = await pool.readAndHashBlocks(file.fd, 4 * BLOCK_SIZE, 2 * BLOCK_SIZE, buffer, 0, 2).catch((err: unknown) => err);
      expect(short).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { endedAt: 5 * BLOCK_SIZE + 100 } });
      await file.close();
      // A descriptor that is not open: IO_FAILED with its errno, as a value across the thread.
      const failed = await pool.readAndHashBlocks(2 ** 30, 0, BLOCK_SIZE, buffer, 0, 1).catch((err: unknown) => err);
      expect(failed).toMatchObject({ code: ErrorCodes.IO_FAILED, details: { position: 0, errno: 'EBADF' } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('writes into the buffer only the blocks keep asks for, and hashes every block the same', async () => {
    const { mkdtemp, open, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'snapline-read-keep-'));
    try {
      // Blocks: random, zeros, random, random, then a short last block of 100 bytes.
      const data = randomFillSync(Buffer.alloc(4 * BLOCK_SIZE + 100));
      data.fill(0, BLOCK_SIZE, 2 * BLOCK_SIZE);
      const file = await open(join(dir, 'source.raw'), 'w+');
      await file.write(data, 0, data.byteLength, 0);
      const fileBlocks = Buffer.alloc(5 * BLOCK_SIZE);
      data.copy(fileBlocks);
      const digestOf = (i: number) => createHash('sha256').update(fileBlocks.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)).digest();
      // One thread: its own buffer holds a full random block when it reads the short last one, whose tail must still hash as zeros.
      const one = new HashPool({ threads: 1 });
      try {
        const run = async (keep: 'none' | Uint8Array) => {
          const buffer = sharedBlocks('rrrrr');
          const before = Buffer.from(new Uint8Array(buffer).slice());
          const result = await one.readAndHashBlocks(file.fd, 0, data.byteLength, buffer, 0, 5, { keep });
          expect(Buffer.from(result.digests)).toEqual(Buffer.concat([0, 1, 2, 3, 4].map(digestOf)));
          expect([...result.zero]).toEqual([0, 1, 0, 0, 0]);
          const held = (i: number) => Buffer.from(buffer, i * BLOCK_SIZE, BLOCK_SIZE);
          return [0, 1, 2, 3, 4].map((i) => (held(i).equals(fileBlocks.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)) ? 'read' : held(i).equals(before.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)) ? 'as before' : 'other'));
        };
        expect(await run('none')).toEqual(['as before', 'as before', 'as before', 'as before', 'as before']);
        // Block 0 matches its digest, block 1 the zero digest (read into the buffer all the same, as a block
        // never written before would be), block 2 has none, block 3 does not match, block 4 matches.
        const keep = new Uint8Array(33 * 5);
        keep.set(digestOf(0), 0);
        keep.set(ZERO_BLOCK_DIGEST, 32);
        keep.set(digestOf(2), 96);
        keep.set(digestOf(4), 128);
        keep.set([1, 1, 0, 1, 1], 160);
        expect(await run(keep)).toEqual(['as before', 'read', 'read', 'read', 'as before']);
        const wrongLength = await one.readAndHashBlocks(file.fd, 0, data.byteLength, sharedBlocks('rrrrr'), 0, 5, { keep: keep.subarray(1) }).catch((err: unknown) => err);
        expect(wrongLength).toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      } finally {
        await one.destroy();
        await file.close();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('HashPool block batches', () => {
  let dir: string;
  let file: import('node:fs/promises').FileHandle;
  /** Seven blocks of the source file: random but the third, which is zeros. */
  const data = randomFillSync(Buffer.alloc(7 * BLOCK_SIZE)).fill(0, 2 * BLOCK_SIZE, 3 * BLOCK_SIZE);

  beforeAll(async () => {
    const { mkdtemp, open, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    dir = await mkdtemp(join(tmpdir(), 'snapline-batches-'));
    await writeFile(join(dir, 'source.raw'), data);
    file = await open(join(dir, 'source.raw'), 'r');
  });

  afterAll(async () => {
    const { rm } = await import('node:fs/promises');
    await file.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('gives each batch its own results in block order, however the threads share them', async () => {
    const three = new HashPool({ threads: 3 });
    try {
      const buffers = Array.from({ length: 12 }, (_, i) => sharedBlocks('rrzrrrorrrrrr'.slice(0, 1 + i)));
      const reads = Array.from({ length: 6 }, () => new SharedArrayBuffer(7 * BLOCK_SIZE));
      const [hashed, read] = await Promise.all([
        Promise.all(buffers.map((buffer) => three.hashBlocks(buffer, 0, buffer.byteLength / BLOCK_SIZE))),
        Promise.all(reads.map((buffer, i) => three.readAndHashBlocks(file.fd, i * BLOCK_SIZE, (7 - i) * BLOCK_SIZE, buffer, 0, 7 - i))),
      ]);
      hashed.forEach((result, i) => {
        const want = expected(buffers[i]!, 0, i + 1);
        expect(Buffer.from(result.digests).equals(want.digests), `batch ${i}`).toBe(true);
        expect([...result.zero]).toEqual(want.zero);
      });
      read.forEach((result, i) => {
        expect(Buffer.from(reads[i]!, 0, (7 - i) * BLOCK_SIZE).equals(data.subarray(i * BLOCK_SIZE)), `read ${i}`).toBe(true);
        expect(Buffer.from(result.digests).equals(expected(reads[i]!, 0, 7 - i).digests), `read ${i}`).toBe(true);
        expect([...result.zero]).toEqual([0, 0, 1, 0, 0, 0, 0].slice(i));
      });
    } finally {
      await three.destroy();
    }
  });

  it('reports the first failed block of a batch, whichever thread failed first', async () => {
    // Blocks 7 to 9 lie past the end of the file: each thread that claims one fails.
    for (let round = 0; round < 10; round += 1) {
      const failed = await pool.readAndHashBlocks(file.fd, 0, 10 * BLOCK_SIZE, new SharedArrayBuffer(10 * BLOCK_SIZE), 0, 10).catch((err: unknown) => err);
      expect(failed).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { endedAt: 7 * BLOCK_SIZE } });
    }
    // Every block past the end: the threads fail at once, each on the first block it claims.
    for (let round = 0; round < 30; round += 1) {
      const failed = await pool.readAndHashBlocks(file.fd, 7 * BLOCK_SIZE, 4 * BLOCK_SIZE, new SharedArrayBuffer(4 * BLOCK_SIZE), 0, 4).catch((err: unknown) => err);
      expect(failed).toMatchObject({ code: ErrorCodes.SOURCE_UNUSABLE, details: { endedAt: 7 * BLOCK_SIZE } });
    }
    // The pool goes on serving batches after a failure.
    const buffer = new SharedArrayBuffer(2 * BLOCK_SIZE);
    const result = await pool.readAndHashBlocks(file.fd, BLOCK_SIZE, 2 * BLOCK_SIZE, buffer, 0, 2);
    expect([...result.zero]).toEqual([0, 1]);
  });

  it('finishes the reads of a batch aborted after its start, so the buffer is complete when it settles', async () => {
    const controller = new AbortController();
    const buffer = new SharedArrayBuffer(7 * BLOCK_SIZE);
    const running = pool.readAndHashBlocks(file.fd, 0, 7 * BLOCK_SIZE, buffer, 0, 7, { signal: controller.signal });
    controller.abort();
    const result = await running;
    expect(Buffer.from(buffer).equals(data)).toBe(true);
    expect([...result.zero]).toEqual([0, 0, 1, 0, 0, 0, 0]);
  });

  it('lets the batches out finish before destroy() stops the threads: an aborted one, and reads whose buffer is complete after it', async () => {
    const own = new HashPool({ threads: 2 });
    const controller = new AbortController();
    const aborted = own.hashBlocks(sharedBlocks('rrrrrrrrrrrrrrrr'), 0, 16, controller.signal);
    const buffer = new SharedArrayBuffer(7 * BLOCK_SIZE);
    const reading = own.readAndHashBlocks(file.fd, 0, 7 * BLOCK_SIZE, buffer, 0, 7);
    controller.abort();
    await expect(aborted).rejects.toMatchObject({ code: ErrorCodes.INTERRUPTED });
    await own.destroy();
    expect(Buffer.from(buffer).equals(data)).toBe(true);
    expect([...(await reading).zero]).toEqual([0, 0, 1, 0, 0, 0, 0]);
    await expect(own.readAndHashBlocks(file.fd, 0, BLOCK_SIZE, new SharedArrayBuffer(BLOCK_SIZE), 0, 1)).rejects.toMatchObject({ code: ErrorCodes.INTERNAL });
  });

  it('hashes on the threads started early when it has as many, and starts its own otherwise', async () => {
    /** The id the next thread of this process gets. */
    const nextThreadId = async () => {
      const probe = new Worker('', { eval: true });
      const id = probe.threadId;
      await probe.terminate();
      return id + 1;
    };
    const receiversOf = async (threads: number) => {
      const own = new HashPool({ threads });
      const posted = vi.spyOn(Worker.prototype, 'postMessage');
      try {
        const buffer = sharedBlocks('rrrr');
        expect(Buffer.from((await own.hashBlocks(buffer, 0, 4)).digests)).toEqual(expected(buffer, 0, 4).digests);
        return new Set(posted.mock.contexts.map((worker) => (worker as Worker).threadId));
      } finally {
        posted.mockRestore();
        await own.destroy();
      }
    };
    const early = await nextThreadId();
    startBlockThreadsEarly(2);
    expect(await receiversOf(2)).toEqual(new Set([early, early + 1]));
    // Early threads of another number are stopped, not used.
    startBlockThreadsEarly(3);
    const afterThree = early + 2 + 3;
    expect(await receiversOf(2)).toEqual(new Set([afterThree, afterThree + 1]));
  });

  it('lets a process that started threads early and never used them exit', async () => {
    const { execFile } = await import('node:child_process');
    const { promisify } = await import('node:util');
    const module = new URL('../../dist/src/hashing/index.js', import.meta.url).href;
    const script = `import(${JSON.stringify(module)}).then(({ startBlockThreadsEarly }) => startBlockThreadsEarly(2))`;
    // A thread that kept the process alive would hold it past the timeout.
    await expect(promisify(execFile)(process.execPath, ['-e', script], { timeout: 20_000 })).resolves.toMatchObject({ stderr: '' });
  });

  it('fails the batches out when a thread dies only once the other threads have stopped writing their buffers, and later batches at once', async () => {
    const own = new HashPool({ threads: 2 });
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    try {
      const running = own.hashBlocks(sharedBlocks('r'.repeat(128)), 0, 128);
      const threads = posted.mock.contexts as Worker[];
      expect(threads).toHaveLength(2);
      void threads[0]!.terminate();
      const failure = await running.catch((err: unknown) => err);
      expect(failure).toMatchObject({ code: ErrorCodes.INTERNAL });
      // A thread no longer running has the id -1.
      expect(threads.map((thread) => thread.threadId)).toEqual([-1, -1]);
      await expect(own.hashBlocks(sharedBlocks('r'), 0, 1)).rejects.toMatchObject({ code: ErrorCodes.INTERNAL });
    } finally {
      posted.mockRestore();
      await own.destroy();
    }
  });

  it('gives batches of fewer blocks than threads to the threads in turn, not all to the first', async () => {
    const own = new HashPool({ threads: 2 });
    const posted = vi.spyOn(Worker.prototype, 'postMessage');
    try {
      const buffer = sharedBlocks('rr');
      await Promise.all([own.hashBlocks(buffer, 0, 1), own.hashBlocks(buffer, BLOCK_SIZE, 1), own.hashBlocks(buffer, 0, 1), own.hashBlocks(buffer, BLOCK_SIZE, 1)]);
      const receivers = posted.mock.contexts.map((worker) => (worker as Worker).threadId);
      expect(receivers).toHaveLength(4);
      expect(new Set(receivers).size).toBe(2);
    } finally {
      posted.mockRestore();
      await own.destroy();
    }
  });
});
