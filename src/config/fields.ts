import { closest, didYouMean } from './suggest.js';

/** A problem found in a config file, located by line, connection and field. */
export interface Problem {
  severity: 'error' | 'warning';
  /** For ordering problems as they appear in the file. */
  line: number | undefined;
  /** `file:line: connection NAME: field: message`, ready to print; never holds a secret value. */
  text: string;
}

/** Where things are in one config file: its path and the line of a field path. */
export interface FileContext {
  path: string;
  /** 1-based line of the key (or item) at `path`, when known. */
  lineOf(path: readonly (string | number)[]): number | undefined;
}

/** Formats a location and message the same way everywhere. */
export function locate(file: FileContext, path: readonly (string | number)[], connection: string | undefined, message: string): string {
  const line = file.lineOf(path);
  const field = fieldName(path.slice(connection === undefined ? 0 : 2));
  return `${file.path}${line === undefined ? '' : `:${line}`}: ${connection === undefined ? '' : `connection ${connection}: `}${field === '' ? '' : `${field}: `}${message}`;
}

/** a.b[2].c */
export function fieldName(path: readonly (string | number)[]): string {
  return path.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? part : `.${part}`)).join('');
}

/** What a value is, for messages that must not print the value itself. */
export function kindOf(value: unknown): string {
  if (value === null || value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'boolean') return `${value}`;
  if (typeof value === 'number') return 'a number';
  return `a ${typeof value}`;
}

export interface StringRule {
  /** Never printed in messages. */
  secret?: boolean;
  pattern?: RegExp;
  /** What the pattern asks for, said in a message. */
  expected?: string;
}

/**
 * Reads the keys of one YAML mapping, checking each value's type and range.
 * Every read names the key as known; finish() warns about the keys nobody
 * read, suggesting the nearest known one. A bad value is an error and the
 * read returns undefined; a null value counts as absent. Values of secret
 * fields never appear in a problem's text.
 */
export class Section {
  readonly #file: FileContext;
  readonly #connection: string | undefined;
  readonly #path: readonly (string | number)[];
  readonly #value: Record<string, unknown>;
  readonly #problems: Problem[];
  readonly #known = new Set<string>();

  constructor(file: FileContext, connection: string | undefined, path: readonly (string | number)[], value: Record<string, unknown>, problems: Problem[]) {
    this.#file = file;
    this.#connection = connection;
    this.#path = path;
    this.#value = value;
    this.#problems = problems;
  }

  /** True when the key is present with a non-null value (and marks it known). */
  has(key: string): boolean {
    return this.#raw(key) !== undefined;
  }

  /** The value as the file has it (null counts as absent), for fields of more than one type. */
  raw(key: string): unknown {
    return this.#raw(key);
  }

  error(key: string | (string | number)[], message: string): void {
    this.#report('error', key, message);
  }

  warn(key: string | (string | number)[], message: string): void {
    this.#report('warning', key, message);
  }

  string(key: string, rule: StringRule = {}): string | undefined {
    return this.#string(key, this.#raw(key), rule);
  }

  /** One of `values`; the wrong one is quoted (these are never secrets). */
  oneOf<T extends string>(key: string, values: readonly T[]): T | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as T;
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : kindOf(value);
    this.error(key, `must be one of ${values.join(', ')}, got ${shown}${typeof value === 'string' ? didYouMean(value, values) : ''}`);
    return undefined;
  }

  boolean(key: string): boolean | undefined {
    const value = this.#raw(key);
    if (value === undefined || typeof value === 'boolean') return value;
    this.error(key, `must be true or false, got ${kindOf(value)}`);
    return undefined;
  }

  integer(key: string, min: number, max: number): number | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    this.error(key, `must be a whole number from ${min} to ${max}, got ${typeof value === 'number' ? value : kindOf(value)}`);
    return undefined;
  }

  /** A number of seconds above 0 and at most `max`. */
  seconds(key: string, max: number): number | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isFinite(value) && value > 0 && value <= max) return value;
    this.error(key, `must be a number of seconds above 0 and at most ${max}, got ${typeof value === 'number' ? value : kindOf(value)}`);
    return undefined;
  }

  /** A list of strings (a single string is not a list). */
  strings(key: string, rule: StringRule = {}): string[] | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      this.error(key, `must be a list, got ${kindOf(value)}`);
      return undefined;
    }
    const out: string[] = [];
    value.forEach((item, i) => {
      const checked = this.#string([key, i], item ?? null, rule);
      if (checked !== undefined) out.push(checked);
    });
    return out.length === value.length ? out : undefined;
  }

  /** A list of mappings, each read by `read`. */
  sections<T>(key: string, read: (item: Section) => T | undefined): T[] | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (!Array.isArray(value)) {
      this.error(key, `must be a list, got ${kindOf(value)}`);
      return undefined;
    }
    const out: T[] = [];
    value.forEach((item, i) => {
      if (!isMapping(item)) {
        this.error([key, i], `must be a mapping, got ${kindOf(item)}`);
        return;
      }
      const section = new Section(this.#file, this.#connection, [...this.#path, key, i], item, this.#problems);
      const parsed = read(section);
      section.finish();
      if (parsed !== undefined) out.push(parsed);
    });
    return out.length === value.length ? out : undefined;
  }

  /** A nested mapping; the caller reads it and calls finish(). */
  section(key: string): Section | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (!isMapping(value)) {
      this.error(key, `must be a mapping, got ${kindOf(value)}`);
      return undefined;
    }
    return new Section(this.#file, this.#connection, [...this.#path, key], value, this.#problems);
  }

  /** A mapping of free-form names to strings; `secret(name)` says which values must never be printed. */
  stringMap(key: string, namePattern: RegExp, nameExpected: string, secret: (name: string) => boolean): Record<string, string> | undefined {
    const value = this.#raw(key);
    if (value === undefined) return undefined;
    if (!isMapping(value)) {
      this.error(key, `must be a mapping, got ${kindOf(value)}`);
      return undefined;
    }
    const out: Record<string, string> = {};
    let ok = true;
    for (const [name, item] of Object.entries(value)) {
      if (!namePattern.test(name)) {
        this.error([key, name], `is not a valid name: ${nameExpected}`);
        ok = false;
        continue;
      }
      const checked = this.#string([key, name], item ?? null, { secret: secret(name) });
      if (checked === undefined) ok = false;
      else out[name] = checked;
    }
    return ok ? out : undefined;
  }

  /**
   * Reports every key no read asked for: an error when it looks like a
   * misspelling of a key this mapping leaves out (the setting meant would
   * silently fall back to the environment or its default), else a warning,
   * with the nearest known key when there is one.
   */
  finish(): void {
    for (const key of Object.keys(this.#value)) {
      if (this.#known.has(key)) continue;
      const meant = closest(key, this.#known);
      if (meant !== undefined && this.#raw(meant) === undefined) this.error(key, `unknown key (did you mean ${meant}?)`);
      else this.warn(key, `unknown key, ignored${meant === undefined ? '' : ` (did you mean ${meant}?)`}`);
    }
  }

  #raw(key: string): unknown {
    this.#known.add(key);
    const value = this.#value[key];
    return value === null ? undefined : value;
  }

  /** undefined is an absent key; null (an empty list item or map value) is an error. */
  #string(key: string | (string | number)[], value: unknown, rule: StringRule): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string') {
      const quote = typeof value === 'number' || typeof value === 'boolean' ? ' (put it in quotes)' : '';
      this.error(key, `must be a string, got ${kindOf(value)}${quote}`);
      return undefined;
    }
    if (value === '') {
      this.error(key, 'must not be empty');
      return undefined;
    }
    if (rule.pattern !== undefined && !rule.pattern.test(value)) {
      const shown = rule.secret ? '' : `, got ${JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value)}`;
      this.error(key, `must be ${rule.expected ?? `a string matching ${rule.pattern}`}${shown}`);
      return undefined;
    }
    return value;
  }

  #report(severity: Problem['severity'], key: string | (string | number)[], message: string): void {
    const path = [...this.#path, ...(Array.isArray(key) ? key : [key])];
    this.#problems.push({ severity, line: this.#file.lineOf(path), text: locate(this.#file, path, this.#connection, message) });
  }
}

export function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
