import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.js';

export interface ConfigIssue {
  /** Where in the file, e.g. `cameras[1].zones[0].polygon`; empty for the file as a whole. */
  path: string;
  /** What is wrong and what is expected. */
  message: string;
  /** 1-based line in the file, when known. */
  line?: number;
  column?: number;
}

/** The config file cannot be used; `issues` lists every problem found, not only the first. */
export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly issues: ConfigIssue[],
  ) {
    super(
      `${file}: ${issues.length} config problem${issues.length === 1 ? '' : 's'}: ` +
        `${issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`,
    );
    this.name = 'ConfigError';
  }
}

/** A readable report for the technician: one line per problem, with the file, line and config path. */
export function formatConfigError(err: ConfigError): string {
  const n = err.issues.length;
  const lines = [`config ${err.file} has ${n} problem${n === 1 ? '' : 's'}:`];
  for (const issue of err.issues) {
    const where = issue.line === undefined ? '' : `line ${issue.line}${issue.column === undefined ? '' : `:${issue.column}`}  `;
    lines.push(`  ${where}${issue.path ? `${issue.path}: ` : ''}${issue.message}`);
  }
  lines.push('See docs/config.md for every key, its default and an example.');
  return lines.join('\n');
}

/** `['cameras', 1, 'zones', 0]` → `cameras[1].zones[0]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

const KIND_NAMES: Record<string, string> = {
  object: 'a mapping (key: value)',
  array: 'a list',
  tuple: 'a list',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
};

function describeInput(input: unknown): string {
  if (input === null) return 'an empty value';
  if (Array.isArray(input)) return 'a list';
  if (typeof input === 'object') return 'a mapping';
  // Values are not echoed: a wrong-typed field may hold a password.
  if (typeof input === 'number') return Number.isInteger(input) ? 'a whole number' : 'a fraction';
  return `a ${typeof input}`;
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** Unknown keys get one message per key, separated by this, so each can point at its own line. */
export const KEY_SEPARATOR = '\u0000';

/** Messages that say what is wrong and what is expected, in the words of the config file (a zod error map). */
export function configMessage(iss: z.core.$ZodRawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type': {
      const expected = KIND_NAMES[iss.expected] ?? iss.expected;
      return iss.input === undefined ? `missing; expected ${expected}` : `expected ${expected}, got ${describeInput(iss.input)}`;
    }
    case 'too_small': {
      const min = Number(iss.minimum);
      if (iss.origin === 'array') return `needs at least ${min} item${min === 1 ? '' : 's'}`;
      if (iss.origin === 'string') return min === 1 ? 'must not be empty' : `must be at least ${min} characters long`;
      return `must be ${iss.inclusive ? 'at least' : 'greater than'} ${min}, got ${String(iss.input)}`;
    }
    case 'too_big': {
      const max = Number(iss.maximum);
      if (iss.origin === 'array') return `allows at most ${max} item${max === 1 ? '' : 's'}`;
      if (iss.origin === 'string') return `must be at most ${max} characters long`;
      return `must be ${iss.inclusive ? 'at most' : 'less than'} ${max}, got ${String(iss.input)}`;
    }
    case 'invalid_value':
      return `expected ${iss.values.map((v) => JSON.stringify(v)).join(' or ')}`;
    case 'invalid_union': {
      if (!('discriminator' in iss) || !iss.discriminator) return undefined;
      const options = ('options' in iss && Array.isArray(iss.options) ? iss.options : []).map(String).join(', ');
      const value = (iss.input as Record<string, unknown> | undefined)?.[iss.discriminator];
      return value === undefined
        ? `missing; expected one of: ${options}`
        : `unknown ${iss.discriminator} '${String(value)}'; expected one of: ${options}`;
    }
    case 'unrecognized_keys': {
      const shape = (iss.inst?._zod.def as { shape?: Record<string, unknown> } | undefined)?.shape;
      const allowed = shape ? Object.keys(shape) : [];
      return iss.keys
        .map((key) => {
          const hint = closest(key, allowed);
          return `unknown key${hint ? ` (did you mean '${hint}'?)` : ''}; allowed here: ${allowed.join(', ')}`;
        })
        .join(KEY_SEPARATOR);
    }
    default:
      return undefined;
  }
}

type YamlPath = (string | number)[];

function positionOf(doc: Document, lines: LineCounter, path: YamlPath): { line: number; column: number } | undefined {
  // A missing key has no node; point at the nearest enclosing one that exists.
  for (let n = path.length; n >= 0; n--) {
    const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
    if (node?.range) {
      const { line, col } = lines.linePos(node.range[0]);
      return { line, column: col };
    }
  }
  return undefined;
}

function zodIssues(error: z.ZodError, doc: Document, lines: LineCounter): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  for (const iss of error.issues) {
    const path = iss.path.filter((k): k is string | number => typeof k !== 'symbol');
    const split =
      iss.code === 'unrecognized_keys'
        ? iss.keys.map((key, i) => ({ path: [...path, key], message: iss.message.split(KEY_SEPARATOR)[i] ?? 'unknown key' }))
        : [{ path, message: iss.message }];
    for (const one of split) out.push({ path: formatPath(one.path), message: one.message, ...positionOf(doc, lines, one.path) });
  }
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
}

function withAbsoluteReferences<Z extends Config['cameras'][number]['zones'][number]>(zones: Z[], abs: (p: string) => string): Z[] {
  return zones.map((zone) => ({
    ...zone,
    rules: zone.rules.map((rule) => (rule.kind === 'scene_change' ? { ...rule, reference: abs(rule.reference) } : rule)),
  }));
}

/** Makes every path in the config absolute, relative paths counting from the config file's folder. */
function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string): string => resolve(baseDir, p);
  const tls = config.mqtt.tls;
  return {
    ...config,
    gateway: { ...config.gateway, dataDir: abs(config.gateway.dataDir) },
    mqtt: tls
      ? {
          ...config.mqtt,
          tls: {
            ...tls,
            ...(tls.ca !== undefined && { ca: abs(tls.ca) }),
            ...(tls.cert !== undefined && { cert: abs(tls.cert) }),
            ...(tls.key !== undefined && { key: abs(tls.key) }),
          },
        }
      : config.mqtt,
    cameras: config.cameras.map((cam) => ({
      ...cam,
      source: cam.source.file === undefined ? cam.source : { file: abs(cam.source.file), loop: cam.source.loop },
      zones: withAbsoluteReferences(cam.zones, abs),
      ...(cam.presets && { presets: cam.presets.map((p) => ({ ...p, zones: withAbsoluteReferences(p.zones, abs) })) }),
    })),
  };
}

/**
 * Parses and validates config text. `file` names the file in errors and anchors relative paths.
 * Pure apart from path resolution: file permissions are checked by loadConfig.
 */
export function parseConfig(text: string, file: string): Config {
  const { config, issues } = parseWithIssues(text, file);
  if (!config) throw new ConfigError(file, issues);
  return config;
}

function parseWithIssues(text: string, file: string): { config?: Config; raw?: unknown; issues: ConfigIssue[] } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length) {
    return {
      issues: doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          path: '',
          message: `YAML syntax: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
          ...(pos && { line: pos.line, column: pos.col }),
        };
      }),
    };
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined) {
    return {
      issues: [{ path: '', message: 'the file is empty; expected a mapping with gateway, mqtt and cameras (see examples/gateway.yaml)' }],
    };
  }
  const result = configSchema.safeParse(raw, { error: configMessage });
  if (!result.success) return { raw, issues: zodIssues(result.error, doc, lines) };
  return { raw, config: resolvePaths(result.data, dirname(resolve(file))), issues: [] };
}

function hasCredentials(url: unknown): boolean {
  if (typeof url !== 'string') return false;
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/**
 * Config paths of the secrets written in the file itself (passwords, URLs with credentials). A file holding any
 * must be private to its owner: loadConfig refuses it otherwise, and the editor (edit.ts) writes it mode 600.
 */
export function secretsIn(raw: unknown): string[] {
  const found: string[] = [];
  const root = raw as { mqtt?: { url?: unknown; password?: unknown }; cameras?: unknown } | null;
  if (root?.mqtt?.password !== undefined) found.push('mqtt.password');
  if (hasCredentials(root?.mqtt?.url)) found.push('mqtt.url');
  if (Array.isArray(root?.cameras)) {
    root.cameras.forEach(
      (cam: { source?: { url?: unknown; detectUrl?: unknown }; onvif?: { url?: unknown; password?: unknown } } | null, i) => {
        if (hasCredentials(cam?.source?.url)) found.push(`cameras[${i}].source.url`);
        if (hasCredentials(cam?.source?.detectUrl)) found.push(`cameras[${i}].source.detectUrl`);
        if (cam?.onvif?.password !== undefined) found.push(`cameras[${i}].onvif.password`);
        if (hasCredentials(cam?.onvif?.url)) found.push(`cameras[${i}].onvif.url`);
      },
    );
  }
  return found;
}

function modeOf(file: string): number | undefined {
  try {
    return statSync(file).mode & 0o777;
  } catch {
    return undefined;
  }
}

const PRIVATE_BITS = 0o077;

/** File checks: a file holding a secret must be private to its owner, and the TLS files must exist. */
function fileIssues(file: string, raw: unknown, config: Config | undefined): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  const secrets = secretsIn(raw);
  const mode = modeOf(file);
  if (secrets.length && mode !== undefined && (mode & PRIVATE_BITS) !== 0) {
    issues.push({
      path: '',
      message: `holds secrets (${secrets.join(', ')}) but is readable by group or others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${file}`,
    });
  }
  const tls = config?.mqtt.tls;
  if (tls) {
    for (const key of ['ca', 'cert', 'key'] as const) {
      const path = tls[key];
      if (path === undefined) continue;
      const tlsMode = modeOf(path);
      if (tlsMode === undefined)
        issues.push({
          path: `mqtt.tls.${key}`,
          message: `file ${path} not found or not readable; check the path (relative paths count from the config file's folder)`,
        });
      else if (key === 'key' && (tlsMode & PRIVATE_BITS) !== 0) {
        issues.push({
          path: 'mqtt.tls.key',
          message: `private key ${path} is readable by group or others (mode ${tlsMode.toString(8).padStart(4, '0')}); run: chmod 600 ${path}`,
        });
      }
    }
  }
  return issues;
}

/** Reads, parses and validates a config file; throws ConfigError listing every problem. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied; run as the user that owns it' : (err as Error).message;
    throw new ConfigError(file, [{ path: '', message: `cannot read the config file: ${why}` }]);
  }
  const { config, raw, issues } = parseWithIssues(text, file);
  const all = [...fileIssues(file, raw, config), ...issues];
  if (!config || all.length) throw new ConfigError(file, all);
  return config;
}
