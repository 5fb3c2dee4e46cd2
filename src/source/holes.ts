import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * lseek(SEEK_DATA / SEEK_HOLE) on a file descriptor, from the native addon
 * (native/holes.c). Both calls are synchronous and cheap (an extent lookup in
 * the kernel) and move the descriptor's file position, which positioned reads
 * do not use. They throw an Error with an errno `code` (EINVAL where the
 * filesystem cannot tell holes apart).
 */
export interface HoleSeeker {
  /** Offset of the first data byte at or after `offset`; -1 when only a hole follows up to the end. */
  nextData(fd: number, offset: number): number;
  /** Offset of the first hole byte at or after `offset` (the end of the file counts as a hole); -1 past the end. */
  nextHole(fd: number, offset: number): number;
}

/** The addon as node-gyp builds it, seen from src/source/ (tests) and from dist/src/source/ (build). */
const ADDON_CANDIDATES = ['../../build/Release/holes.node', '../../../build/Release/holes.node'];

let loaded: { seeker: HoleSeeker | undefined } | undefined;

/**
 * The native hole seeker, or undefined when the addon was not built (for
 * example `npm ci --ignore-scripts`) or cannot load: callers then read holes
 * like data. Loaded once.
 */
export function nativeHoleSeeker(): HoleSeeker | undefined {
  loaded ??= { seeker: loadAddon() };
  return loaded.seeker;
}

function loadAddon(): HoleSeeker | undefined {
  const require = createRequire(import.meta.url);
  for (const candidate of ADDON_CANDIDATES) {
    try {
      const addon = require(fileURLToPath(new URL(candidate, import.meta.url))) as Partial<HoleSeeker>;
      if (typeof addon.nextData === 'function' && typeof addon.nextHole === 'function') {
        return { nextData: addon.nextData, nextHole: addon.nextHole };
      }
    } catch {
      // Not built there: try the next place, then do without.
    }
  }
  return undefined;
}
