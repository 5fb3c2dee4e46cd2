/**
 * A strict reader of the Prometheus text exposition format (0.0.4), as
 * node_exporter's textfile collector takes it: every line a HELP, a TYPE or a
 * sample; a family's TYPE before its samples, once; its samples together; no
 * label set twice; label values with only the \\, \" and \n escapes; counters
 * named *_total. Throws on the first line that breaks a rule, naming it.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string | undefined;
  type: 'counter' | 'gauge' | 'untyped' | 'summary' | 'histogram';
  samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = ['counter', 'gauge', 'untyped', 'summary', 'histogram'] as const;

export function parsePrometheusText(text: string): Map<string, Family> {
  if (text.length > 0 && !text.endsWith('\n')) throw new Error('the text does not end with a newline');
  const families = new Map<string, Family>();
  const finished = new Set<string>();
  let current: string | undefined;
  const lines = text.split('\n').slice(0, -1);
  lines.forEach((line, i) => {
    const where = `line ${i + 1} (${JSON.stringify(line)})`;
    const enter = (name: string) => {
      if (current !== name) {
        if (current !== undefined) finished.add(current);
        if (finished.has(name)) throw new Error(`${where}: the family ${name} is split`);
        current = name;
      }
      let family = families.get(name);
      if (family === undefined) {
        family = { name, help: undefined, type: 'untyped', samples: [] };
        families.set(name, family);
      }
      return family;
    };
    if (line.startsWith('#')) {
      const match = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
      if (match === null) throw new Error(`${where}: a comment that is neither HELP nor TYPE`);
      const [, kind, name, rest] = match as unknown as [string, 'HELP' | 'TYPE', string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name`);
      const family = enter(name);
      if (kind === 'HELP') {
        if (family.help !== undefined) throw new Error(`${where}: second HELP`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`${where}: bad escape in HELP`);
        family.help = rest;
      } else {
        if (family.samples.length > 0) throw new Error(`${where}: TYPE after samples`);
        if (!(TYPES as readonly string[]).includes(rest)) throw new Error(`${where}: unknown type`);
        if (family.type !== 'untyped' || lines.slice(0, i).some((l) => l === `# TYPE ${name} ${rest}`)) throw new Error(`${where}: second TYPE`);
        family.type = rest as Family['type'];
        if (family.type === 'counter' && !name.endsWith('_total')) throw new Error(`${where}: a counter not named *_total`);
      }
      return;
    }
    const sample = parseSample(line, where);
    const family = enter(sample.name);
    const key = JSON.stringify(Object.entries(sample.labels).sort());
    if (family.samples.some((s) => JSON.stringify(Object.entries(s.labels).sort()) === key)) throw new Error(`${where}: the same labels twice`);
    family.samples.push(sample);
  });
  return families;
}

function parseSample(line: string, where: string): Sample {
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
  if (name === undefined) throw new Error(`${where}: no metric name`);
  let at = name.length;
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at += 1;
    while (line[at] !== '}') {
      const labelName = /^[^=]*/.exec(line.slice(at))![0];
      if (!LABEL_NAME.test(labelName) || labelName.startsWith('__')) throw new Error(`${where}: bad label name ${JSON.stringify(labelName)}`);
      if (labelName in labels) throw new Error(`${where}: label ${labelName} twice`);
      at += labelName.length;
      if (line.slice(at, at + 2) !== '="') throw new Error(`${where}: label ${labelName} without ="`);
      at += 2;
      let value = '';
      for (;;) {
        const c = line[at];
        if (c === undefined) throw new Error(`${where}: unterminated label value`);
        at += 1;
        if (c === '"') break;
        if (c === '\\') {
          const next = line[at];
          at += 1;
          if (next === '\\') value += '\\';
          else if (next === '"') value += '"';
          else if (next === 'n') value += '\n';
          else throw new Error(`${where}: bad escape \\${next}`);
        } else {
          value += c;
        }
      }
      labels[labelName] = value;
      if (line[at] === ',') at += 1;
      else if (line[at] !== '}') throw new Error(`${where}: expected , or } after a label`);
    }
    at += 1;
  }
  const rest = line.slice(at);
  const match = /^ (\S+)(?: (-?\d+))?$/.exec(rest);
  if (match === null) throw new Error(`${where}: expected " value [timestamp]"`);
  const text = match[1]!;
  const value = text === '+Inf' ? Infinity : text === '-Inf' ? -Infinity : text === 'NaN' ? NaN : Number(text);
  if (!/^(?:[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN)$/.test(text)) throw new Error(`${where}: bad value`);
  return { name, labels, value };
}
