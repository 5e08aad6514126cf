import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { numel, type HostTensor } from './tensor.js';

/** A decoded TF attribute value (strings from base64, ints from their decimal strings). */
export type TfAttr = string | number | boolean | number[] | string[];

export interface TfNode {
  name: string;
  op: string;
  /** Data inputs as "node:index" (control inputs dropped). */
  inputs: string[];
  attr: Record<string, TfAttr>;
}

export interface TfTensorSpec {
  /** "node:index" */
  name: string;
  shape: number[];
}

/** A TFJS graph model: its non-constant nodes in topological order and its constants, decoded. */
export interface TfGraph {
  nodes: TfNode[];
  consts: Map<string, HostTensor>;
  inputs: TfTensorSpec[];
  outputs: TfTensorSpec[];
}

interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

interface ModelJson {
  format?: string;
  modelTopology?: { node?: RawNode[] };
  weightsManifest?: { paths: string[]; weights: WeightSpec[] }[];
  signature?: { inputs?: Record<string, RawSpec>; outputs?: Record<string, RawSpec> };
}
interface RawNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, RawAttr>;
}
interface RawAttr {
  s?: string;
  i?: string;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { i?: string[]; s?: string[] };
}
interface RawSpec {
  name: string;
  tensorShape?: { dim?: { size?: string }[] };
}

/** "x" and "x:0" name the same tensor; everything here uses the explicit form. */
export function tensorName(ref: string): string {
  return /:\d+$/.test(ref) ? ref : `${ref}:0`;
}

export function nodeOf(tensor: string): string {
  return tensor.replace(/:\d+$/, '');
}

function decodeAttr(raw: RawAttr): TfAttr | undefined {
  if (raw.s !== undefined) return Buffer.from(raw.s, 'base64').toString('utf8');
  if (raw.i !== undefined) return Number(raw.i);
  if (raw.f !== undefined) return raw.f;
  if (raw.b !== undefined) return raw.b;
  if (raw.type !== undefined) return raw.type;
  if (raw.list?.i) return raw.list.i.map(Number);
  if (raw.list?.s) return raw.list.s.map((s) => Buffer.from(s, 'base64').toString('utf8'));
  if (raw.list) return [];
  return undefined; // shapes and tensors: their values come from the weights manifest
}

function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function decodeWeight(spec: WeightSpec, bytes: Buffer, file: string): HostTensor {
  const n = numel(spec.shape);
  const q = spec.quantization;
  if (q) {
    if (q.dtype !== 'float16' || spec.dtype !== 'float32') {
      throw new Error(`${file}: weight ${spec.name} uses ${q.dtype} quantization of ${spec.dtype}, which is not supported`);
    }
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = float16ToFloat32(bytes.readUInt16LE(i * 2));
    return { dtype: 'float32', shape: spec.shape, data };
  }
  if (spec.dtype === 'float32') {
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = bytes.readFloatLE(i * 4);
    return { dtype: 'float32', shape: spec.shape, data };
  }
  if (spec.dtype === 'int32') {
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) data[i] = bytes.readInt32LE(i * 4);
    return { dtype: 'int32', shape: spec.shape, data };
  }
  throw new Error(`${file}: weight ${spec.name} has dtype ${spec.dtype}, which is not supported`);
}

function byteSize(spec: WeightSpec): number {
  const bytesPer = spec.quantization?.dtype === 'float16' ? 2 : 4;
  return numel(spec.shape) * bytesPer;
}

function specs(raw: Record<string, RawSpec> | undefined): TfTensorSpec[] {
  return Object.values(raw ?? {}).map((s) => ({
    name: tensorName(s.name),
    shape: (s.tensorShape?.dim ?? []).map((d) => Number(d.size ?? -1)),
  }));
}

function topologicalOrder(nodes: TfNode[], file: string): TfNode[] {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const state = new Map<string, 'visiting' | 'done'>();
  const order: TfNode[] = [];
  const visit = (node: TfNode): void => {
    const s = state.get(node.name);
    if (s === 'done') return;
    if (s === 'visiting') throw new Error(`${file}: graph has a cycle through node ${node.name}`);
    state.set(node.name, 'visiting');
    for (const input of node.inputs) {
      const producer = byName.get(nodeOf(input));
      if (producer) visit(producer);
    }
    state.set(node.name, 'done');
    order.push(node);
  };
  for (const node of nodes) visit(node);
  return order;
}

/** Reads a TFJS graph model (model.json plus the weight files it names, from the same folder). */
export async function readTfjsGraph(jsonFile: string): Promise<TfGraph> {
  let model: ModelJson;
  try {
    model = JSON.parse(await readFile(jsonFile, 'utf8')) as ModelJson;
  } catch (err) {
    throw new Error(`${jsonFile}: cannot read the TFJS model: ${(err as Error).message}`);
  }
  if (model.format !== 'graph-model' || !model.modelTopology?.node) {
    throw new Error(`${jsonFile}: not a TFJS graph model (format ${String(model.format)})`);
  }

  const consts = new Map<string, HostTensor>();
  for (const group of model.weightsManifest ?? []) {
    const buffers = await Promise.all(
      group.paths.map(async (p) => {
        const file = join(dirname(jsonFile), p);
        try {
          return await readFile(file);
        } catch (err) {
          throw new Error(`${file}: cannot read the weights of ${jsonFile}: ${(err as Error).message}`);
        }
      }),
    );
    const data = Buffer.concat(buffers);
    let offset = 0;
    for (const spec of group.weights) {
      const size = byteSize(spec);
      if (offset + size > data.length) throw new Error(`${jsonFile}: weight ${spec.name} runs past the end of ${group.paths.join(', ')}`);
      consts.set(tensorName(spec.name), decodeWeight(spec, data.subarray(offset, offset + size), jsonFile));
      offset += size;
    }
    if (offset !== data.length)
      throw new Error(`${jsonFile}: ${data.length - offset} bytes of ${group.paths.join(', ')} are not described by the manifest`);
  }

  const nodes: TfNode[] = [];
  for (const raw of model.modelTopology.node) {
    if (raw.op === 'Const') {
      if (!consts.has(tensorName(raw.name))) throw new Error(`${jsonFile}: Const ${raw.name} has no weights`);
      continue;
    }
    const attr: Record<string, TfAttr> = {};
    for (const [k, v] of Object.entries(raw.attr ?? {})) {
      const value = decodeAttr(v);
      if (value !== undefined) attr[k] = value;
    }
    nodes.push({
      name: raw.name,
      op: raw.op,
      inputs: (raw.input ?? []).filter((i) => !i.startsWith('^')).map(tensorName),
      attr,
    });
  }
  return {
    nodes: topologicalOrder(nodes, jsonFile),
    consts,
    inputs: specs(model.signature?.inputs),
    outputs: specs(model.signature?.outputs),
  };
}
