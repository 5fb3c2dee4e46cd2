/**
 * The layers of DESIGN.md, checked on the sources: every import of every
 * non-test file under src/ (static, type-only, re-exports and import()) is
 * read with the TypeScript parser, and the rules below must hold for the
 * modules each layer reaches, directly or through others.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Imports {
  /** Files of the repository, relative to its root (src/...). */
  files: string[];
  /** Package names (@aws-sdk/client-ebs, node:fs, ...). */
  packages: string[];
}

const cache = new Map<string, Imports>();

/** What one source file imports, in any form. */
function importsOf(file: string): Imports {
  const known = cache.get(file);
  if (known !== undefined) return known;
  const source = ts.createSourceFile(file, readFileSync(join(ROOT, file), 'utf8'), ts.ScriptTarget.Latest, true);
  const found: Imports = { files: [], packages: [] };
  const add = (specifier: string) => {
    if (!specifier.startsWith('.')) {
      found.packages.push(specifier);
      return;
    }
    const target = resolve(dirname(join(ROOT, file)), specifier).replace(/\.js$/, '.ts');
    if (existsSync(target)) found.files.push(relative(ROOT, target));
  };
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] !== undefined && ts.isStringLiteral(node.arguments[0])) {
      add(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  cache.set(file, found);
  return found;
}

/** The non-test .ts files under `folder` (relative to the root), or the one file it names. */
function filesOf(folder: string): string[] {
  if (folder.endsWith('.ts')) return [folder];
  return readdirSync(join(ROOT, folder), { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts') && !name.endsWith('.test.ts'))
    .map((name) => join(folder, name));
}

/** Every file reached from `starts`, each with the chain of imports that first reached it. */
function reach(starts: string[]): Map<string, string[]> {
  const chains = new Map<string, string[]>(starts.map((start) => [start, [start]]));
  const queue = [...starts];
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
    for (const next of importsOf(file).files) {
      if (chains.has(next)) continue;
      chains.set(next, [...chains.get(file)!, next]);
      queue.push(next);
    }
  }
  return chains;
}

/** "a -> b -> c" for every file reached from `from` that lies in one of `forbidden`. */
function violations(from: string[], forbidden: string[]): string[] {
  const chains = reach(from.flatMap(filesOf));
  return [...chains]
    .filter(([file]) => forbidden.some((folder) => file === folder || file.startsWith(`${folder}/`)))
    .map(([, chain]) => chain.join(' -> '));
}

/**
 * The import cycles among `files`: each as "a -> b -> ... -> a", one per
 * group of files that reach each other (a strongly connected component,
 * Tarjan's algorithm), found by following imports from its first member.
 */
function cyclesAmong(files: string[]): string[] {
  const order = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const groups: string[][] = [];
  const visit = (file: string) => {
    order.set(file, order.size);
    low.set(file, order.get(file)!);
    stack.push(file);
    for (const next of importsOf(file).files) {
      if (!order.has(next)) {
        visit(next);
        low.set(file, Math.min(low.get(file)!, low.get(next)!));
      } else if (stack.includes(next)) {
        low.set(file, Math.min(low.get(file)!, order.get(next)!));
      }
    }
    if (low.get(file) !== order.get(file)) return;
    const group = stack.splice(stack.indexOf(file));
    if (group.length > 1 || importsOf(file).files.includes(file)) groups.push(group);
  };
  for (const file of files) if (!order.has(file)) visit(file);
  return groups.map((group) => {
    // The shortest path through the group from its first file back to it, for the message.
    const [first] = group.sort();
    const before = new Map<string, string>();
    const queue = [first!];
    for (let at = queue.shift(); at !== undefined && !before.has(first!); at = queue.shift()) {
      for (const next of importsOf(at).files) {
        if (!group.includes(next) || before.has(next)) continue;
        before.set(next, at);
        queue.push(next);
      }
    }
    const path = [first!];
    for (let at = before.get(first!)!; at !== first; at = before.get(at)!) path.unshift(at);
    return [first!, ...path].join(' -> ');
  });
}

const INNER = ['src/core', 'src/engine', 'src/index', 'src/source', 'src/target', 'src/hashing'];
const OUTER = ['src/aws', 'src/config', 'src/cli', 'src/session.ts', 'src/ecs-session.ts', 'src/schedule-host.ts', 'src/emulator'];

describe('layers (DESIGN.md: dependencies point inward)', () => {
  it('the engine and everything below it reach none of aws, config, cli, the sessions or the endpoint', () => {
    expect(violations(INNER, OUTER)).toEqual([]);
  });

  it('the engine reaches none of the index: it uses the ports it owns (core/index-ports.ts)', () => {
    expect(violations(['src/engine'], ['src/index'])).toEqual([]);
  });

  it('core reaches nothing but core and errors.ts', () => {
    const outside = [...reach(filesOf('src/core')).keys()].filter((file) => !file.startsWith('src/core/') && file !== 'src/errors.ts');
    expect(outside).toEqual([]);
  });

  it('only src/aws imports the AWS SDK', () => {
    const importers = filesOf('src')
      .filter((file) => !file.startsWith('src/aws/'))
      .filter((file) => importsOf(file).packages.some((name) => name.startsWith('@aws-sdk/') || name.startsWith('@smithy/')));
    expect(importers).toEqual([]);
  });

  it('the endpoint reaches none of aws, the engine, the sessions or the cli', () => {
    expect(violations(['src/emulator'], ['src/aws', 'src/engine', 'src/session.ts', 'src/ecs-session.ts', 'src/cli'])).toEqual([]);
  });

  it('the connection settings reach no endpoint code (the session layer hands them a starter)', () => {
    expect(violations(['src/config'], ['src/emulator'])).toEqual([]);
  });

  it('no file under src/ reaches itself through its imports (no import cycles)', () => {
    expect(cyclesAmong(filesOf('src'))).toEqual([]);
  });

  it('the rules see the imports they judge', () => {
    // A rule over an empty graph would pass for any code: the walk must find the known edges.
    expect(reach(['src/session.ts']).has('src/aws/clients.ts')).toBe(true);
    expect(importsOf('src/aws/sdk.ts').packages.some((name) => name.startsWith('@aws-sdk/'))).toBe(true);
    expect(filesOf('src/engine').length).toBeGreaterThan(10);
  });
});
