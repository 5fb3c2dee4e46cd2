/**
 * Real NBD servers for tests: qemu-nbd serving images made with qemu-img
 * and qemu-io, on a Unix socket or on a free TCP port of 127.0.0.1.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

/** Why the qemu tools cannot be used here, or undefined when they can. */
export const qemuMissing: string | undefined = (() => {
  for (const tool of ['qemu-nbd', 'qemu-img', 'qemu-io']) {
    const probe = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (probe.error !== undefined || probe.status !== 0) return `${tool} is not installed (apt-get install qemu-utils)`;
  }
  return undefined;
})();

if (qemuMissing !== undefined) console.warn(`skipping the tests that need qemu-nbd: ${qemuMissing}`);

/** Runs qemu-img with `args`; throws with its stderr when it fails. */
export function qemuImg(...args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Runs qemu-io commands (such as "write -P 0xab 1M 2M") on an image. */
export function qemuIo(image: string, format: 'raw' | 'qcow2', ...commands: string[]): void {
  execFileSync('qemu-io', ['-f', format, ...commands.flatMap((command) => ['-c', command]), image], { stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The image's guest-visible bytes, as `qemu-img convert -O raw` writes them. */
export function rawBytesOf(image: string, format: 'raw' | 'qcow2', dir: string): Buffer {
  const raw = join(dir, `converted-${process.hrtime.bigint()}.raw`);
  qemuImg('convert', '-f', format, '-O', 'raw', image, raw);
  try {
    return readFileSync(raw);
  } finally {
    rmSync(raw, { force: true });
  }
}

export interface QemuNbdOptions {
  image: string;
  format: 'raw' | 'qcow2';
  /** -x; default none (the default export, ""). */
  exportName?: string;
  /** -r (default true). */
  readOnly?: boolean;
  /** -B: export this persistent dirty bitmap as qemu:dirty-bitmap:NAME. */
  bitmap?: string;
  /** Listen on 127.0.0.1 on a free port instead of a Unix socket in `dir`. */
  tcp?: boolean;
  /** The Unix socket's path (default a new one in `dir`), so that a restarted server keeps its URL. */
  socket?: string;
  /** A folder with ca-cert.pem, server-cert.pem and server-key.pem: TLS required. */
  tlsDir?: string;
  /** -e: clients served at once (default 8; qemu-nbd's own default is 1). */
  shared?: number;
}

export interface RunningQemuNbd {
  /** nbd+unix:///EXPORT?socket=... or nbd://127.0.0.1:PORT/EXPORT (nbds for TLS). */
  url: string;
  process: ChildProcess;
  /** Kills the server and waits for it to exit; idempotent. */
  stop(): Promise<void>;
}

let serial = 0;

/** Starts qemu-nbd serving `options.image` (persistent, up to `shared` clients) and waits until it accepts connections. */
export async function startQemuNbd(dir: string, options: QemuNbdOptions): Promise<RunningQemuNbd> {
  const args = ['-f', options.format, '-t', '-e', String(options.shared ?? 8)];
  if (options.readOnly !== false) args.push('-r');
  if (options.exportName !== undefined) args.push('-x', options.exportName);
  if (options.bitmap !== undefined) args.push('-B', options.bitmap);
  if (options.tlsDir !== undefined) {
    args.push('--object', `tls-creds-x509,id=tls0,endpoint=server,verify-peer=off,dir=${options.tlsDir}`, '--tls-creds', 'tls0');
  }
  const scheme = options.tlsDir === undefined ? 'nbd' : 'nbds';
  const name = encodeURIComponent(options.exportName ?? '');
  let url: string;
  let reach: () => ReturnType<typeof connect>;
  if (options.tcp) {
    const port = await freePort();
    args.push('-b', '127.0.0.1', '-p', String(port));
    url = `${scheme}://127.0.0.1:${port}/${name}`;
    reach = () => connect({ host: '127.0.0.1', port });
  } else {
    const socket = options.socket ?? join(dir, `nbd-${process.pid}-${++serial}.sock`);
    args.push('-k', socket);
    url = `${scheme}+unix:///${name}?socket=${socket}`;
    reach = () => connect({ path: socket });
  }
  args.push(options.image);
  const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    await waitUntilListening(reach, child, () => stderr);
  } catch (err) {
    await stop();
    throw err;
  }
  return { url, process: child, stop };
}

async function waitUntilListening(reach: () => ReturnType<typeof connect>, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let attempt = 0; attempt < 500; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`qemu-nbd exited with ${child.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = reach();
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`qemu-nbd did not start listening: ${stderr()}`);
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
