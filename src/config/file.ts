import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';
import { ErrorCodes, SnaplineError } from '../errors.js';
import { isMapping, locate, Section, type FileContext, type Problem } from './fields.js';
import { readConnection, type ConnectionConfig } from './schema.js';
import { readVolumes, type VolumeEntry } from './volumes.js';

/** The name of the connection that is built in and cannot be defined in a file. */
export const BUILT_IN_CONNECTION = 'local';
const CONNECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** A config file is small; anything larger is refused rather than parsed. */
const MAX_FILE_BYTES = 1024 * 1024;

/**
 * The YAML parser, loaded when a config file is there to be parsed: a run
 * without one does not pay for it. The package is CommonJS: require loads it
 * synchronously, the same instance an import would give.
 */
const require = createRequire(import.meta.url);
let yamlModule: typeof Yaml | undefined;
const yaml = (): typeof Yaml => (yamlModule ??= require('yaml') as typeof Yaml);

/** One connection of a file: its settings when they are valid, else the errors. */
export interface ConnectionEntry {
  name: string;
  config: ConnectionConfig | undefined;
  errors: string[];
  warnings: string[];
  /** "file:line: connection NAME: field: message", for problems found later (an unreadable CA bundle). */
  locate(field: string, message: string): string;
}

export interface ConfigFile {
  path: string;
  /** False when the file is absent (only allowed for the default path). */
  exists: boolean;
  connections: Map<string, ConnectionEntry>;
  /** Settings per volume (`volumes:`), each valid or with its errors. */
  volumes: Map<string, VolumeEntry>;
  /** About the file as a whole: permissions, unknown top-level keys. */
  warnings: string[];
}

/**
 * Reads and checks a config file. A missing file is an empty one unless
 * `required` (a path the user named). Syntax and structure errors throw
 * CONFIG_INVALID listing every problem; errors inside one connection are
 * kept on its entry, so the other connections stay usable. No message
 * quotes the file's text: it may hold secrets.
 */
export function loadConfigFile(path: string, options: { required: boolean }): ConfigFile {
  const read = readConfigText(path, options.required);
  if (read === undefined) return { path, exists: false, connections: new Map(), volumes: new Map(), warnings: [] };
  const warnings: string[] = [];
  if (process.platform !== 'win32' && (read.mode & 0o077) !== 0) {
    const mode = (read.mode & 0o777).toString(8).padStart(4, '0');
    warnings.push(`${path}: the config file is accessible by group or others (mode ${mode}) and may hold secrets; run: chmod 600 ${path}`);
  }

  const { LineCounter, parseDocument } = yaml();
  const lineCounter = new LineCounter();
  const doc = parseDocument(read.text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const problems = doc.errors.slice(0, 5).map((err) => {
      const { line, col } = lineCounter.linePos(err.pos[0]);
      return `${path}:${line}:${col}: YAML syntax error: ${describeYamlError(err.code)}`;
    });
    throw invalid(path, problems);
  }
  const file: FileContext = { path, lineOf: (fieldPath) => lineOf(doc, lineCounter, fieldPath) };

  let root: unknown;
  try {
    root = doc.toJS({ maxAliasCount: 100 });
  } catch {
    throw invalid(path, [`${path}: YAML aliases expand too far`]);
  }
  const connections = new Map<string, ConnectionEntry>();
  if (root === null || root === undefined) return { path, exists: true, connections, volumes: new Map(), warnings };
  const fileProblems: Problem[] = [];
  if (!isMapping(root)) throw invalid(path, [`${path}: the file must be a mapping with a "connections" key`]);
  const top = new Section(file, undefined, [], root, fileProblems);
  const named = top.section('connections');
  const volumes = top.section('volumes') === undefined ? new Map<string, VolumeEntry>() : readVolumes(file, root.volumes as Record<string, unknown>);
  top.finish();
  const raw = isMapping(root.connections) ? root.connections : {};
  if (named !== undefined) {
    for (const [name, value] of Object.entries(raw)) {
      if (!CONNECTION_NAME.test(name)) {
        named.error(name, 'is not a valid connection name: letters, digits, dots, dashes and underscores, 64 at most');
        continue;
      }
      if (name === BUILT_IN_CONNECTION) {
        named.error(name, `the connection "${BUILT_IN_CONNECTION}" is built in; give yours another name`);
        continue;
      }
      connections.set(name, readEntry(file, name, value));
    }
  }
  const errors = inFileOrder(fileProblems.filter((p) => p.severity === 'error'));
  if (errors.length > 0) throw invalid(path, errors);
  warnings.push(...inFileOrder(fileProblems));
  return { path, exists: true, connections, volumes, warnings };
}

function readEntry(file: FileContext, name: string, value: unknown): ConnectionEntry {
  const problems: Problem[] = [];
  const texts = (severity: Problem['severity']) => inFileOrder(problems.filter((p) => p.severity === severity));
  const entry = (config: ConnectionConfig | undefined): ConnectionEntry => ({
    name,
    config,
    errors: texts('error'),
    warnings: texts('warning'),
    locate: (field, message) => locate(file, ['connections', name, ...field.split('.')], name, message),
  });
  if (!isMapping(value)) {
    const path = ['connections', name];
    problems.push({ severity: 'error', line: file.lineOf(path), text: locate(file, path, name, `must be a mapping of settings, got ${value === null ? 'nothing' : 'a value'}`) });
    return entry(undefined);
  }
  const config = readConnection(new Section(file, name, ['connections', name], value, problems), file.path);
  return entry(problems.some((p) => p.severity === 'error') ? undefined : config);
}

/** The texts of `problems` by line (stable for problems on one line). */
function inFileOrder(problems: Problem[]): string[] {
  return problems
    .map((problem, i) => ({ problem, i }))
    .sort((a, b) => (a.problem.line ?? 0) - (b.problem.line ?? 0) || a.i - b.i)
    .map(({ problem }) => problem.text);
}

function readConfigText(path: string, required: boolean): { text: string; mode: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return undefined;
    const reason = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'cannot be read (permission denied)' : `cannot be opened (${code ?? 'error'})`;
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `config file ${path} ${reason}`, {
      hint: code === 'ENOENT' ? 'check --config or SNAPLINE_CONFIG; the README (Connections) shows an example file' : undefined,
    });
  }
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `config file ${path} is a directory`);
    if (stat.size > MAX_FILE_BYTES) throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `config file ${path} is larger than 1 MiB`);
    const buffer = Buffer.alloc(stat.size);
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, length);
      if (n === 0) break;
      length += n;
    }
    return { text: buffer.subarray(0, length).toString('utf8'), mode: stat.mode };
  } catch (err) {
    if (err instanceof SnaplineError) throw err;
    throw new SnaplineError(ErrorCodes.CONFIG_INVALID, `config file ${path} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  } finally {
    closeSync(fd);
  }
}

function invalid(path: string, problems: string[]): SnaplineError {
  const message = problems.length === 1 ? problems[0]! : `config file ${path} has ${problems.length} problems:\n  ${problems.join('\n  ')}`;
  return new SnaplineError(ErrorCodes.CONFIG_INVALID, message, { details: { configFile: path, problems } });
}

/** The line of the key or item at `path`, or of the deepest part of it that exists. */
function lineOf(doc: Yaml.Document, counter: Yaml.LineCounter, path: readonly (string | number)[]): number | undefined {
  const { isMap, isScalar, isSeq } = yaml();
  let node: unknown = doc.contents;
  let offset: number | undefined;
  for (const part of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(part));
      if (pair === undefined) break;
      offset = isScalar(pair.key) ? pair.key.range?.[0] : offset;
      node = pair.value;
    } else if (isSeq(node) && typeof part === 'number') {
      const item: unknown = node.items[part];
      if (item === undefined) break;
      offset = isScalar(item) || isMap(item) || isSeq(item) ? (item.range?.[0] ?? offset) : offset;
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : counter.linePos(offset).line;
}

/**
 * What a YAML error code means, in words. The parser's own messages can
 * quote the text around the error, which may be a secret: they are not used.
 */
function describeYamlError(code: string): string {
  const words: Record<string, string> = {
    BAD_INDENT: 'bad indentation',
    TAB_AS_INDENT: 'a tab used for indentation (use spaces)',
    DUPLICATE_KEY: 'a key given twice in one mapping',
    MISSING_CHAR: 'a missing character (a quote, comma, colon or bracket)',
    UNEXPECTED_TOKEN: 'unexpected text',
    BLOCK_AS_IMPLICIT_KEY: 'a nested block where a key was expected',
    MULTILINE_IMPLICIT_KEY: 'a key that runs over several lines (is a colon missing?)',
    BAD_SCALAR_START: 'a value that starts with a reserved character (put it in quotes)',
    BAD_DQ_ESCAPE: 'an invalid escape in a double-quoted string',
    MULTIPLE_DOCS: 'more than one YAML document',
    BAD_ALIAS: 'an alias to an unknown anchor',
    ALIAS_PROPS: 'an alias with a tag or anchor',
    BLOCK_IN_FLOW: 'a block inside a flow collection',
    KEY_OVER_1024_CHARS: 'a key longer than 1024 characters',
    TAG_RESOLVE_FAILED: 'an unknown tag',
  };
  return `${words[code] ?? 'invalid YAML'} (${code})`;
}
