/**
 * Machine tools for the tests that restore onto block devices: loop devices
 * (root only, and only where losetup works) and mounts.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Runs a tool and returns its trimmed stdout; throws with its stderr when it fails. */
export function runTool(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Why loop devices cannot be used here, or undefined when they can (tried on a 1 MiB file). */
export function loopDevicesUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'not root';
  const dir = join(tmpdir(), `snapline-loop-probe-${process.pid}`);
  try {
    mkdirSync(dir, { recursive: true });
    const image = join(dir, 'probe.img');
    closeSync(openSync(image, 'w'));
    truncateSync(image, 1024 * 1024);
    runTool('losetup', ['-d', runTool('losetup', ['-f', '--show', image])]);
    return undefined;
  } catch (err) {
    return `losetup does not work here: ${(err as Error).message.split('\n')[0]}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A loop device over `backing`; detach() is idempotent. */
export function attachLoop(backing: string): { device: string; detach: () => void } {
  const device = runTool('losetup', ['-f', '--show', backing]);
  let attached = true;
  return {
    device,
    detach: () => {
      if (attached) runTool('losetup', ['-d', device]);
      attached = false;
    },
  };
}

/**
 * Runs `fn` with a 1 MiB tmpfs mounted on `mountPoint` (created here) and
 * unmounts it afterwards whatever happens. Where this machine does not let
 * the test mount one, `skip` is called with the reason (vitest's ctx.skip,
 * which ends the test). When `fn` fails, its error is the one thrown; an
 * unmount that fails then too is told on stderr.
 */
export async function withTinyFilesystem<T>(mountPoint: string, skip: (note: string) => void, fn: () => Promise<T>): Promise<T> {
  mkdirSync(mountPoint);
  try {
    runTool('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'snapline-test', mountPoint]);
  } catch (err) {
    skip(`cannot mount a small tmpfs here: ${(err as Error).message.split('\n')[0]}`);
  }
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    try {
      runTool('umount', [mountPoint]);
    } catch (unmount) {
      process.stderr.write(`could not unmount ${mountPoint} after the test failed: ${(unmount as Error).message}\n`);
    }
    throw err;
  }
  runTool('umount', [mountPoint]);
  return result;
}
