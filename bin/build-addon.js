#!/usr/bin/env node
// The package's install script: builds the hole-seeking addon (binding.gyp,
// native/holes.c) with npm's node-gyp into build/Release/holes.node, unless
// one newer than its sources loads in this Node already. When it
// cannot be built (no compiler, no Node headers, not Linux), it says why and
// how to build it later, and the install goes on: snapline runs without it,
// reading the holes of sparse images as data (the same snapshots, slower).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const addon = join(root, 'build', 'Release', 'holes.node');

/** @returns {boolean} true when the addon is newer than its sources and loads in this Node (the same ABI) */
function upToDate() {
  try {
    const sources = Math.max(statSync(join(root, 'native', 'holes.c')).mtimeMs, statSync(join(root, 'binding.gyp')).mtimeMs);
    if (statSync(addon).mtimeMs < sources) return false;
    createRequire(import.meta.url)(addon);
    return true;
  } catch {
    return false;
  }
}

// npm runs this again for npx in a clone and for npm rebuild: a build that is current stays.
if (upToDate()) process.exit(0);
const args = ['rebuild'];
// Headers installed with Node itself (a distribution's package, the official tarballs) spare node-gyp a download.
const nodePrefix = dirname(dirname(process.execPath));
if (!process.env.npm_config_nodedir && existsSync(join(nodePrefix, 'include', 'node', 'node.h'))) args.push(`--nodedir=${nodePrefix}`);
// npm names its own node-gyp in npm_config_node_gyp; outside npm, one on the PATH.
const gyp = process.env.npm_config_node_gyp;
const run = gyp ? spawnSync(process.execPath, [gyp, ...args], { cwd: root, encoding: 'utf8' }) : spawnSync('node-gyp', args, { cwd: root, encoding: 'utf8' });

if (run.status === 0) {
  process.stdout.write('snapline: built the hole-seeking addon (build/Release/holes.node)\n');
} else {
  const reason = run.error ? `node-gyp could not be started: ${run.error.message}` : `node-gyp exited with ${run.status ?? run.signal}`;
  const said = `${run.stdout ?? ''}${run.stderr ?? ''}`.trim().split('\n').slice(-12);
  process.stderr.write(
    [
      `snapline: warning: the hole-seeking addon was not built (${reason}).`,
      'snapline works without it: the holes of sparse images are read as data, which gives the same snapshots, more slowly.',
      'To build it, install python3, make and a C compiler, then run: npm rebuild snapline (for a global install: npm rebuild -g snapline)',
      ...(said.length > 0 && said[0] !== '' ? ['node-gyp said:', ...said.map((line) => `  ${line}`)] : []),
      '',
    ].join('\n'),
  );
}
