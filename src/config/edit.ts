/**
 * Changes to the config file made by commands (`camera add`, `zones set`), written so that everything the change
 * does not touch stays as the technician wrote it, byte for byte: comments, key order, quoting, flow or block style.
 *
 * The yaml Document finds where a change goes (the node's offsets in the text); the change is spliced into the
 * text there. The result is parsed again and must be the old data with exactly the change applied (else the
 * file's layout is one the splice does not handle, and nothing is written), then validated by the config loader.
 * It is written atomically: a temporary file in the same folder, fsync, rename over the original.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Document, isMap, isScalar, isSeq, parseDocument, visit, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import { parseConfig, secretsIn } from './load.js';
import type { Config } from './schema.js';

/** A change that cannot be made (unknown camera, duplicate id, a layout the editor cannot change safely). */
export class ConfigEditError extends Error {
  override name = 'ConfigEditError';
}

type Polygon = [number, number][];
type Json = Record<string, unknown>;

interface Loaded {
  file: string;
  text: string;
  doc: Document.Parsed;
  data: Json;
}

function load(file: string): Loaded {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigEditError(`cannot read the config file ${file}: ${(err as Error).message}`);
  }
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length) throw new ConfigEditError(`${file} is not valid YAML (${doc.errors[0]!.message.split('\n')[0]}); fix it first`);
  const data = doc.toJS({ maxAliasCount: 100 }) as unknown;
  if (!isRecord(data)) throw new ConfigEditError(`${file} is not a config mapping (gateway, mqtt, cameras); see docs/config.md`);
  return { file, text, doc, data };
}

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Column of the first character of the line holding `offset`. */
function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

/** Where to insert a new line after `node`: the end of the line its last non-blank character is on. */
function afterNode(text: string, node: Node): number {
  let end = node.range![1];
  while (end > 0 && /\s/.test(text[end - 1]!)) end--;
  const nl = text.indexOf('\n', end);
  return nl === -1 ? text.length : nl;
}

/** Makes point lists and short number lists flow style (`[[0.1, 0.2], …]`), as people write polygons. */
function render(value: unknown, style: 'block' | 'flow', padding = false): string {
  const doc = new Document(value);
  visit(doc, {
    Seq(_, seq) {
      if (style === 'flow' || seq.items.every((i) => isScalar(i) || (isSeq(i) && i.items.every(isScalar)))) seq.flow = true;
    },
    Map(_, map) {
      if (style === 'flow') map.flow = true;
    },
  });
  return doc.toString({ lineWidth: 0, flowCollectionPadding: padding }).replace(/\n$/, '');
}

/** `text` with `item` appended to the sequence `seq` (block or flow) in the text. */
function appendToSeq(text: string, seq: YAMLSeq, item: unknown): string {
  if (seq.flow) {
    const close = text.lastIndexOf(']', seq.range![1] - 1);
    return spliceFlow(text, seq.range![0] + 1, close, render(item, 'flow', padded(text, seq)));
  }
  const last = seq.items.at(-1) as Node;
  const first = seq.items[0] as Node;
  const dash = text.lastIndexOf('-', first.range![0]);
  const indent = ' '.repeat(dash - lineStart(text, dash));
  const body = render(item, 'block')
    .split('\n')
    .map((line, i) => (i === 0 ? `${indent}- ${line}` : `${indent}  ${line}`))
    .join('\n');
  const at = afterNode(text, last);
  return `${text.slice(0, at)}\n${body}${text.slice(at)}`;
}

/** `text` with `entry` added as the last entry of the flow collection whose content runs from `open` to `close`. */
function spliceFlow(text: string, open: number, close: number, entry: string): string {
  const content = text.slice(open, close);
  const kept = content.trimEnd();
  const sep = kept.trim() === '' ? (content.startsWith(' ') ? ' ' : '') : kept.endsWith(',') ? ' ' : ', ';
  const pad = content.length > kept.length || content.startsWith(' ') ? ' ' : '';
  return `${text.slice(0, open)}${kept}${sep}${entry}${kept.trim() === '' ? '' : pad}${text.slice(close)}`;
}

/** `text` with `key: value` added as the last entry of the mapping `map` (block or flow). */
function addToMap(text: string, map: YAMLMap, key: string, value: unknown): string {
  if (map.flow) {
    const close = text.lastIndexOf('}', map.range![1] - 1);
    return spliceFlow(text, map.range![0] + 1, close, `${key}: ${render(value, 'flow', padded(text, map))}`);
  }
  const first = map.items[0]!.key as Node;
  const indent = ' '.repeat(first.range![0] - lineStart(text, first.range![0]));
  const rendered = render(value, 'block');
  // A list or mapping goes under its key even when it renders on one line ("- preset: x" after "rules:" would not parse).
  const scalar = value === null || typeof value !== 'object';
  const body =
    scalar && !rendered.includes('\n')
      ? `${indent}${key}: ${rendered}`
      : `${indent}${key}:\n${rendered
          .split('\n')
          .map((line) => `${indent}  ${line}`)
          .join('\n')}`;
  const last = map.items.at(-1)!;
  const at = afterNode(text, (last.value ?? last.key) as Node);
  return `${text.slice(0, at)}\n${body}${text.slice(at)}`;
}

/** Whether the flow collections in `node`'s text are written `{ a: 1 }` rather than `{a: 1}`, to write new ones alike. */
function padded(text: string, node: Node): boolean {
  return /[[{] /.test(text.slice(node.range![0], node.range![1]));
}

/** `text` with the value node `node` replaced by `value` written flow style (the lines after it kept). */
function replaceNode(text: string, node: Node, value: unknown): string {
  let end = node.range![1];
  while (end > node.range![0] && /\s/.test(text[end - 1]!)) end--;
  return text.slice(0, node.range![0]) + render(value, 'flow', padded(text, node)) + text.slice(end);
}

function cameraNode(loaded: Loaded, cameraId: string): { index: number; map: YAMLMap } {
  const cameras = loaded.doc.get('cameras', true);
  const list = Array.isArray(loaded.data.cameras) ? (loaded.data.cameras as unknown[]) : [];
  const index = list.findIndex((c) => isRecord(c) && c.id === cameraId);
  if (index === -1 || !isSeq(cameras)) {
    const ids = list.flatMap((c) => (isRecord(c) && typeof c.id === 'string' ? [c.id] : []));
    throw new ConfigEditError(
      `no camera '${cameraId}' in ${loaded.file}; ${ids.length ? `its cameras are: ${ids.join(', ')}` : 'it has no cameras'}`,
    );
  }
  const map = cameras.items[index];
  if (!isMap(map)) throw new ConfigEditError(`cameras[${index}] in ${loaded.file} is not a mapping; fix it first`);
  return { index, map };
}

/**
 * Checks the spliced text: parsed again it must be exactly `expected` (the old data with the change applied),
 * then valid for the config loader. Throws ConfigEditError or the loader's ConfigError; returns the config.
 */
function check(loaded: Loaded, text: string, expected: Json): Config {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length || !isDeepStrictEqual(doc.toJS({ maxAliasCount: 100 }), expected)) {
    throw new ConfigEditError(
      `cannot change ${loaded.file} without rewriting parts of it (anchors, aliases or an unusual layout); make the change by hand`,
    );
  }
  return parseConfig(text, loaded.file);
}

/**
 * Writes `text` to `file` atomically: a temporary file beside it (same file system, so rename is atomic), synced,
 * renamed over it. Mode 600 when the text holds a secret, else the file's mode. The temporary file never stays.
 */
export function writeFileAtomic(file: string, text: string, secret: boolean): void {
  let mode = 0o600;
  try {
    mode = secret ? 0o600 : statSync(file).mode & 0o777;
  } catch {
    // A new file: private, like the installer's.
  }
  const tmp = join(dirname(file), `.${basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', mode);
    writeSync(fd, text);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, file);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // Not created, or already renamed.
    }
    throw new ConfigEditError(`cannot write ${file}: ${(err as Error).message}`);
  }
  // The rename is durable once the folder is synced; a folder that cannot be opened (some file systems) is left.
  try {
    const dir = openSync(dirname(file), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch {
    // Best effort.
  }
}

function commit(loaded: Loaded, text: string, expected: Json): Config {
  const config = check(loaded, text, expected);
  writeFileAtomic(loaded.file, text, secretsIn(expected).length > 0);
  return config;
}

/**
 * Appends a camera (as a person would write it: `{ id, source, … }`) to the config file's `cameras`. Refuses an
 * id that is already there; the result must be a valid config. Returns the new config.
 */
export function addCamera(file: string, cameraInput: Json): Config {
  // What YAML can hold: undefined keys dropped, as writing would drop them.
  const camera = JSON.parse(JSON.stringify(cameraInput)) as Json;
  const loaded = load(file);
  const list = Array.isArray(loaded.data.cameras) ? (loaded.data.cameras as unknown[]) : [];
  if (list.some((c) => isRecord(c) && c.id === camera.id)) {
    throw new ConfigEditError(`camera '${String(camera.id)}' already exists in ${file}; choose another --id or remove it first`);
  }
  const cameras = loaded.doc.get('cameras', true);
  let text: string;
  if (isSeq(cameras) && (cameras.items.length || cameras.flow)) text = appendToSeq(loaded.text, cameras, camera);
  else if (loaded.doc.has('cameras') || !isMap(loaded.doc.contents))
    throw new ConfigEditError(`cameras in ${file} is not a list; fix it first`);
  else text = addToMap(loaded.text, loaded.doc.contents, 'cameras', [camera]);
  return commit(loaded, text, { ...loaded.data, cameras: [...list, camera] });
}

export interface SetZoneOptions {
  /** Put the zone into this PTZ preset's view (the preset is created when missing), not the camera's own. */
  preset?: string;
}

/**
 * Sets the outline of zone `zoneId` of camera `cameraId`: an existing zone keeps its rules, masks and everything
 * else, only `polygon` is replaced; a new zone is added with no rules. With `preset`, the zone is the preset's.
 * Returns the new config.
 */
export function setZone(file: string, cameraId: string, zoneId: string, polygon: Polygon, opts: SetZoneOptions = {}): Config {
  const loaded = load(file);
  const { index, map: camMap } = cameraNode(loaded, cameraId);
  const expected = structuredClone(loaded.data);
  const camData = (expected.cameras as Json[])[index]!;

  // The mapping that holds `zones`: the camera, or its preset.
  let holder: YAMLMap = camMap;
  let holderData: Json = camData;
  let text = loaded.text;
  if (opts.preset !== undefined) {
    const presets = camMap.get('presets', true);
    const presetsData = Array.isArray(camData.presets) ? (camData.presets as Json[]) : undefined;
    const pi = presetsData?.findIndex((p) => isRecord(p) && p.id === opts.preset) ?? -1;
    if (pi === -1) {
      const preset = { id: opts.preset, zones: [{ id: zoneId, polygon }] };
      if (presetsData && isSeq(presets) && (presets.items.length || presets.flow)) {
        text = appendToSeq(text, presets, preset);
        presetsData.push(preset);
      } else if (presets === undefined) {
        text = addToMap(text, camMap, 'presets', [preset]);
        camData.presets = [preset];
      } else throw new ConfigEditError(`cameras[${index}].presets in ${file} is not a list; fix it first`);
      return commit(loaded, text, expected);
    }
    const presetNode = isSeq(presets) ? presets.items[pi] : undefined;
    if (!isMap(presetNode)) throw new ConfigEditError(`cameras[${index}].presets[${pi}] in ${file} is not a mapping; fix it first`);
    holder = presetNode;
    holderData = presetsData![pi]!;
  }

  const zones = holder.get('zones', true);
  const zonesData = Array.isArray(holderData.zones) ? (holderData.zones as Json[]) : undefined;
  const zi = zonesData?.findIndex((z) => isRecord(z) && z.id === zoneId) ?? -1;
  if (zi !== -1) {
    const zoneNode = isSeq(zones) ? zones.items[zi] : undefined;
    const polygonNode = isMap(zoneNode) ? zoneNode.get('polygon', true) : undefined;
    if (!isMap(zoneNode)) throw new ConfigEditError(`zone '${zoneId}' of camera ${cameraId} in ${file} is not a mapping; fix it first`);
    if (polygonNode && typeof polygonNode === 'object' && 'range' in polygonNode && polygonNode.range) {
      text = replaceNode(text, polygonNode as Node, polygon);
    } else text = addToMap(text, zoneNode, 'polygon', polygon);
    zonesData![zi]!.polygon = polygon;
  } else {
    const zone = { id: zoneId, polygon };
    if (zonesData && isSeq(zones) && (zones.items.length || zones.flow)) {
      text = appendToSeq(text, zones, zone);
      zonesData.push(zone);
    } else if (zones === undefined) {
      text = addToMap(text, holder, 'zones', [zone]);
      holderData.zones = [zone];
    } else throw new ConfigEditError(`the zones of camera ${cameraId} in ${file} are not a list; fix them first`);
  }
  return commit(loaded, text, expected);
}

/**
 * Adds a rule made from governance preset `rulePreset` (docs/rules.md, e.g. street_vending) to zone `zoneId` of camera
 * `cameraId` (of PTZ preset `opts.preset`'s view), of the preset's kind or `opts.kind`, unless the zone already has
 * such a rule. The zone must
 * exist (setZone first). Returns the new config, or the unchanged one when the rule was there.
 */
export function addZoneRule(
  file: string,
  cameraId: string,
  zoneId: string,
  rulePreset: string,
  opts: SetZoneOptions & { kind?: string } = {},
): Config {
  const loaded = load(file);
  const { index, map: camMap } = cameraNode(loaded, cameraId);
  const expected = structuredClone(loaded.data);
  const camData = (expected.cameras as Json[])[index]!;
  let holder: YAMLMap = camMap;
  let holderData: Json = camData;
  if (opts.preset !== undefined) {
    const presets = camMap.get('presets', true);
    const presetsData = Array.isArray(camData.presets) ? (camData.presets as Json[]) : [];
    const pi = presetsData.findIndex((p) => isRecord(p) && p.id === opts.preset);
    const node = isSeq(presets) ? presets.items[pi] : undefined;
    if (pi === -1 || !isMap(node))
      throw new ConfigEditError(`camera ${cameraId} in ${file} has no preset '${opts.preset}'; set a zone of it first`);
    holder = node;
    holderData = presetsData[pi]!;
  }
  const zones = holder.get('zones', true);
  const zonesData = Array.isArray(holderData.zones) ? (holderData.zones as Json[]) : [];
  const zi = zonesData.findIndex((z) => isRecord(z) && z.id === zoneId);
  const zoneNode = isSeq(zones) ? zones.items[zi] : undefined;
  if (zi === -1 || !isMap(zoneNode)) throw new ConfigEditError(`camera ${cameraId} in ${file} has no zone '${zoneId}'; set it first`);
  const zoneData = zonesData[zi]!;
  const rulesData = Array.isArray(zoneData.rules) ? (zoneData.rules as Json[]) : undefined;
  if (rulesData?.some((r) => isRecord(r) && r.preset === rulePreset && (opts.kind === undefined || r.kind === opts.kind)))
    return parseConfig(loaded.text, file);
  const rule = opts.kind === undefined ? { preset: rulePreset } : { preset: rulePreset, kind: opts.kind };
  const rules = zoneNode.get('rules', true);
  let text: string;
  if (rulesData && isSeq(rules) && (rules.items.length || rules.flow)) {
    text = appendToSeq(loaded.text, rules, rule);
    rulesData.push(rule);
  } else if (rules === undefined) {
    text = addToMap(loaded.text, zoneNode, 'rules', [rule]);
    zoneData.rules = [rule];
  } else throw new ConfigEditError(`the rules of zone '${zoneId}' of camera ${cameraId} in ${file} are not a list; fix them first`);
  return commit(loaded, text, expected);
}
