import { attr, type Attr, type GraphBuilder, type onnx } from './onnx.js';
import type { TfAttr, TfGraph, TfNode } from './tfjs.js';
import { numel, reshapeTensor, stridesOf, transposeTensor, withData, type HostTensor } from './tensor.js';

/**
 * A TF tensor as it exists in the ONNX graph being built. TF graphs made by onnx-tf wrap every conv in
 * NCHW↔NHWC Transposes; emitting them all would cost a copy each. Instead a value remembers how its
 * logical (TF) axes map onto the physical axes of the ONNX tensor, and a Pad is held back until its
 * consumer is known, so that it can become the pads of a Conv or MaxPool. Only what an op cannot absorb
 * is emitted, once, when that op needs it.
 */
interface Value {
  kind: 'value';
  /** The ONNX tensor, before any pending pad. */
  name: string;
  /** Logical shape, pending pad included. */
  shape: number[];
  /** Logical axis i is physical axis perm[i] of the ONNX tensor. */
  perm: number[];
  pad?: { pads: [number, number][]; value: number };
  /** The bias-less Conv that produced this tensor, while a bias Add may still fold into it. */
  conv?: onnx.INodeProto;
}
interface Const {
  kind: 'const';
  tensor: HostTensor;
}
type Ref = Value | Const;

/** The layout ONNX Conv, MaxPool and Resize read: logical NHWC stored as physical NCHW. */
const NHWC_AS_NCHW = [0, 2, 3, 1];

const identity = (rank: number): number[] => Array.from({ length: rank }, (_, i) => i);
const invert = (perm: readonly number[]): number[] => {
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => {
    inv[p] = i;
  });
  return inv;
};
const samePerm = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((v, i) => v === b[i]);

export interface ConvertedGraph {
  /** The ONNX tensor holding a TF tensor in its TF layout, emitting whatever that still takes. */
  tensor(tfTensor: string): { name: string; shape: number[] };
}

/**
 * Adds the ONNX equivalent of a TF graph to `g`. `inputs` names the ONNX graph input for each TF
 * placeholder tensor. Throws "unsupported op <op> in node <name>" for anything it cannot translate.
 */
export function convertTfGraph(graph: TfGraph, g: GraphBuilder, inputs: Record<string, string>): ConvertedGraph {
  return new Converter(graph, g, inputs);
}

class Converter implements ConvertedGraph {
  private readonly refs = new Map<string, Ref>();
  private readonly consumers = new Map<string, number>();
  private readonly emitted = new Map<string, string>();

  constructor(
    graph: TfGraph,
    private readonly g: GraphBuilder,
    inputs: Record<string, string>,
  ) {
    for (const [name, tensor] of graph.consts) this.refs.set(name, { kind: 'const', tensor });
    for (const node of graph.nodes) for (const i of node.inputs) this.consumers.set(i, (this.consumers.get(i) ?? 0) + 1);
    for (const spec of graph.inputs) {
      const onnxName = inputs[spec.name];
      if (!onnxName) throw new Error(`no ONNX input given for TF input ${spec.name}`);
      this.g.addInput(onnxName, 'float32', spec.shape);
      this.refs.set(spec.name, { kind: 'value', name: onnxName, shape: spec.shape, perm: identity(spec.shape.length) });
    }
    for (const node of graph.nodes) {
      try {
        this.convert(node);
      } catch (err) {
        const msg = (err as Error).message;
        throw new Error(msg.includes(`node ${node.name}`) ? msg : `node ${node.name} (${node.op}): ${msg}`);
      }
    }
  }

  tensor(tfTensor: string): { name: string; shape: number[] } {
    const v = this.value(tfTensor);
    return { name: this.materialize(v, identity(v.shape.length)), shape: v.shape };
  }

  private ref(tensor: string): Ref {
    const r = this.refs.get(tensor);
    if (!r) throw new Error(`tensor ${tensor} is not produced by any converted node`);
    return r;
  }

  private value(tensor: string): Value {
    const r = this.ref(tensor);
    if (r.kind !== 'value') throw new Error(`tensor ${tensor} is a constant where a computed tensor was expected`);
    return r;
  }

  private constant(tensor: string): HostTensor {
    const r = this.ref(tensor);
    if (r.kind !== 'const') throw new Error(`tensor ${tensor} must be a constant`);
    return r.tensor;
  }

  private input(node: TfNode, i: number): string {
    const t = node.inputs[i];
    if (t === undefined) throw new Error(`node ${node.name} (${node.op}) lacks input ${i}`);
    return t;
  }

  private set(node: TfNode, ref: Ref, index = 0): void {
    this.refs.set(`${node.name}:${index}`, ref);
  }

  private outName(node: TfNode, index = 0): string {
    return this.g.uniqueName(index ? `${node.name}:${index}` : node.name);
  }

  /** The ONNX name of v with pending pad applied and its physical layout equal to `perm`. */
  private materialize(v: Value, perm: number[]): string {
    const key = `${v.name}|${JSON.stringify(v.pad ?? null)}|${perm.join(',')}`;
    const done = this.emitted.get(key);
    if (done) return done;
    let name = v.name;
    if (v.pad) {
      const rank = v.shape.length;
      const physical = new Array<[number, number]>(rank);
      v.pad.pads.forEach((p, axis) => {
        physical[v.perm[axis]!] = p;
      });
      const pads = this.g.addInitializer(`${v.name}/pads`, {
        dtype: 'int64',
        shape: [2 * rank],
        data: [...physical.map((p) => p[0]), ...physical.map((p) => p[1])],
      });
      const value = this.g.addInitializer(`${v.name}/pad_value`, { dtype: 'float32', shape: [], data: Float32Array.of(v.pad.value) });
      const out = this.g.uniqueName(`${v.name}/padded`);
      this.g.addNode('Pad', [name, pads, value], [out], { mode: attr.string('constant') });
      name = out;
    }
    if (!samePerm(v.perm, perm)) {
      const inv = invert(perm);
      const out = this.g.uniqueName(`${v.name}/transposed`);
      this.g.addNode('Transpose', [name], [out], { perm: attr.ints(inv.map((j) => v.perm[j]!)) });
      name = out;
    }
    this.emitted.set(key, name);
    return name;
  }

  /** A constant broadcast against a value of logical rank `rank`, laid out like physical `perm`. */
  private constantAs(t: HostTensor, rank: number, perm: number[], base: string): string {
    if (t.shape.length > rank) throw new Error(`constant [${t.shape}] has more axes than the tensor it is combined with`);
    const logical = reshapeTensor(t, [...new Array<number>(rank - t.shape.length).fill(1), ...t.shape]);
    return this.g.addInitializer(base, transposeTensor(logical, invert(perm)));
  }

  private convert(node: TfNode): void {
    const { op } = node;
    const inputsConst = node.inputs.length > 0 && node.inputs.every((i) => this.ref(i).kind === 'const');
    if (inputsConst) return this.fold(node);
    switch (op) {
      case 'Placeholder':
        if (!this.refs.has(`${node.name}:0`)) throw new Error(`placeholder ${node.name} is not a declared input`);
        return;
      case 'Identity':
        return this.set(node, this.ref(this.input(node, 0)));
      case 'Transpose':
        return this.transpose(node);
      case 'Pad':
      case 'PadV2':
        return this.pad(node);
      case 'Conv2D':
        return this.conv2d(node);
      case 'MaxPool':
        return this.maxPool(node);
      case 'Add':
      case 'AddV2':
        return this.add(node);
      case 'LeakyRelu':
        return this.unary(node, 'LeakyRelu', { alpha: attr.float(floatAttr(node, 'alpha')) });
      case 'Sigmoid':
        return this.unary(node, 'Sigmoid', {});
      case 'ConcatV2':
        return this.concat(node);
      case 'ResizeBilinear':
        return this.resizeBilinear(node);
      case 'SplitV':
        return this.splitV(node);
      case 'Reshape':
        return this.reshape(node);
      default:
        throw new Error(`unsupported op ${op} in node ${node.name}`);
    }
  }

  /** Ops whose inputs are all constants are evaluated here, so the ONNX graph never sees them. */
  private fold(node: TfNode): void {
    const c = (i: number): HostTensor => this.constant(this.input(node, i));
    switch (node.op) {
      case 'SparseToDense': {
        const indices = c(0);
        const shape = Array.from(c(1).data);
        const values = c(2);
        const fill = c(3).data[0] ?? 0;
        const dense = new Array<number>(numel(shape)).fill(fill);
        const strides = stridesOf(shape);
        const rank = indices.shape.length === 2 ? indices.shape[1]! : 1;
        const count = indices.shape[0] ?? 0;
        for (let k = 0; k < count; k++) {
          let off = 0;
          for (let a = 0; a < rank; a++) off += indices.data[k * rank + a]! * strides[a]!;
          dense[off] = values.shape.length === 0 ? values.data[0]! : values.data[k]!;
        }
        return this.set(node, { kind: 'const', tensor: withData(values, shape, dense) });
      }
      case 'Add':
      case 'AddV2': {
        const a = c(0);
        const b = c(1);
        if (a.shape.join() !== b.shape.join()) throw new Error(`constant Add of [${a.shape}] and [${b.shape}] is not supported`);
        return this.set(node, {
          kind: 'const',
          tensor: withData(
            a,
            a.shape,
            Array.from(a.data, (v, i) => v + b.data[i]!),
          ),
        });
      }
      default:
        throw new Error(`unsupported op ${node.op} in node ${node.name} (on constants)`);
    }
  }

  private transpose(node: TfNode): void {
    const v = this.value(this.input(node, 0));
    const p = Array.from(this.constant(this.input(node, 1)).data);
    this.set(node, {
      kind: 'value',
      name: v.name,
      shape: p.map((a) => v.shape[a]!),
      perm: p.map((a) => v.perm[a]!),
      ...(v.pad ? { pad: { pads: p.map((a) => v.pad!.pads[a]!), value: v.pad.value } } : {}),
    });
  }

  private pad(node: TfNode): void {
    const src = this.value(this.input(node, 0));
    const v: Value = src.pad ? { kind: 'value', name: this.materialize(src, src.perm), shape: src.shape, perm: src.perm } : src;
    const paddings = this.constant(this.input(node, 1));
    const value = node.op === 'PadV2' ? this.constant(this.input(node, 2)).data[0]! : 0;
    const pads = v.shape.map((_, a): [number, number] => [paddings.data[2 * a]!, paddings.data[2 * a + 1]!]);
    this.set(node, {
      kind: 'value',
      name: v.name,
      shape: v.shape.map((d, a) => d + pads[a]![0] + pads[a]![1]),
      perm: v.perm,
      pad: { pads, value },
    });
  }

  /** ONNX [top, left, bottom, right] pads for a conv/pool, taken from x's pending pad when it allows. */
  private spatialPads(node: TfNode, x: Value, accepts: (padValue: number) => boolean): { input: string; pads: number[] } {
    if (stringAttr(node, 'data_format') !== 'NHWC') throw new Error(`data_format ${stringAttr(node, 'data_format')} is not supported`);
    const padding = stringAttr(node, 'padding');
    if (padding !== 'VALID') throw new Error(`padding ${padding} is not supported`);
    const p = x.pad;
    if (p && accepts(p.value) && p.pads[0]!.every((n) => n === 0) && p.pads[3]!.every((n) => n === 0)) {
      const [[t, b], [l, r]] = [p.pads[1]!, p.pads[2]!];
      const unpadded: Value = { kind: 'value', name: x.name, shape: x.shape, perm: x.perm };
      return { input: this.materialize(unpadded, NHWC_AS_NCHW), pads: [t, l, b, r] };
    }
    return { input: this.materialize(x, NHWC_AS_NCHW), pads: [0, 0, 0, 0] };
  }

  private conv2d(node: TfNode): void {
    const x = this.value(this.input(node, 0));
    const w = this.constant(this.input(node, 1));
    const [kh, kw, cin, cout] = w.shape as [number, number, number, number];
    const [n, , , c] = x.shape as [number, number, number, number];
    if (c % cin !== 0) throw new Error(`input has ${c} channels, filter expects a multiple of ${cin}`);
    const strides = intsAttr(node, 'strides');
    const dilations = intsAttr(node, 'dilations');
    const s = [strides[1]!, strides[2]!];
    const d = [dilations[1]!, dilations[2]!];
    const { input, pads } = this.spatialPads(node, x, (v) => v === 0);
    const weights = this.g.addInitializer(`${node.name}/weights`, transposeTensor(w, [3, 2, 0, 1]));
    const out = this.outName(node);
    const conv = this.g.addNode(
      'Conv',
      [input, weights],
      [out],
      {
        kernel_shape: attr.ints([kh, kw]),
        strides: attr.ints(s),
        dilations: attr.ints(d),
        pads: attr.ints(pads),
        group: attr.int(c / cin),
      },
      node.name,
    );
    this.set(node, {
      kind: 'value',
      name: out,
      perm: NHWC_AS_NCHW,
      conv,
      shape: [n, convOut(x, 1, pads[0]! + pads[2]!, kh, s[0]!, d[0]!), convOut(x, 2, pads[1]! + pads[3]!, kw, s[1]!, d[1]!), cout],
    });
  }

  private maxPool(node: TfNode): void {
    const x = this.value(this.input(node, 0));
    const k = intsAttr(node, 'ksize');
    const strides = intsAttr(node, 'strides');
    const { input, pads } = this.spatialPads(node, x, (v) => v === -Infinity);
    const out = this.outName(node);
    this.g.addNode(
      'MaxPool',
      [input],
      [out],
      {
        kernel_shape: attr.ints([k[1]!, k[2]!]),
        strides: attr.ints([strides[1]!, strides[2]!]),
        pads: attr.ints(pads),
      },
      node.name,
    );
    this.set(node, {
      kind: 'value',
      name: out,
      perm: NHWC_AS_NCHW,
      shape: [
        x.shape[0]!,
        convOut(x, 1, pads[0]! + pads[2]!, k[1]!, strides[1]!, 1),
        convOut(x, 2, pads[1]! + pads[3]!, k[2]!, strides[2]!, 1),
        x.shape[3]!,
      ],
    });
  }

  private add(node: TfNode): void {
    const a = this.ref(this.input(node, 0));
    const b = this.ref(this.input(node, 1));
    const valueInput = this.input(node, a.kind === 'value' ? 0 : 1);
    const [v, c] = a.kind === 'value' ? [a, b] : [b as Value, a];
    if (c.kind === 'const') {
      const channels = v.shape[v.shape.length - 1]!;
      const sole = this.consumers.get(valueInput) === 1;
      if (v.conv && sole && numel(c.tensor.shape) === channels && c.tensor.shape.every((d, i, all) => i === all.length - 1 || d === 1)) {
        const bias = this.g.addInitializer(`${v.name}/bias`, reshapeTensor(c.tensor, [channels]));
        v.conv.input = [...(v.conv.input ?? []), bias];
        return this.set(node, { kind: 'value', name: v.name, shape: v.shape, perm: v.perm });
      }
      const x = this.materialize(v, v.perm);
      const k = this.constantAs(c.tensor, v.shape.length, v.perm, `${node.name}/b`);
      const out = this.outName(node);
      this.g.addNode('Add', [x, k], [out], {}, node.name);
      return this.set(node, { kind: 'value', name: out, shape: v.shape, perm: v.perm });
    }
    const w = c as Value;
    if (v.shape.length !== w.shape.length)
      throw new Error(`Add of rank ${v.shape.length} and rank ${w.shape.length} tensors is not supported`);
    const out = this.outName(node);
    this.g.addNode('Add', [this.materialize(v, v.perm), this.materialize(w, v.perm)], [out], {}, node.name);
    this.set(node, { kind: 'value', name: out, shape: broadcast(v.shape, w.shape), perm: v.perm });
  }

  private unary(node: TfNode, opType: string, attrs: Record<string, Attr>): void {
    const v = this.value(this.input(node, 0));
    const out = this.outName(node);
    this.g.addNode(opType, [this.materialize(v, v.perm)], [out], attrs, node.name);
    this.set(node, { kind: 'value', name: out, shape: v.shape, perm: v.perm });
  }

  private concat(node: TfNode): void {
    const parts = node.inputs.slice(0, -1).map((i) => this.value(i));
    const first = parts[0];
    if (!first) throw new Error('concat of nothing');
    const rank = first.shape.length;
    const axis = normAxis(this.constant(this.input(node, node.inputs.length - 1)).data[0]!, rank);
    const out = this.outName(node);
    this.g.addNode(
      'Concat',
      parts.map((p) => this.materialize(p, first.perm)),
      [out],
      { axis: attr.int(first.perm[axis]!) },
      node.name,
    );
    const shape = [...first.shape];
    shape[axis] = parts.reduce((sum, p) => sum + p.shape[axis]!, 0);
    this.set(node, { kind: 'value', name: out, shape, perm: first.perm });
  }

  private resizeBilinear(node: TfNode): void {
    const x = this.value(this.input(node, 0));
    const [h, w] = Array.from(this.constant(this.input(node, 1)).data) as [number, number];
    const mode = boolAttr(node, 'align_corners') ? 'align_corners' : boolAttr(node, 'half_pixel_centers') ? 'half_pixel' : 'asymmetric';
    const [n, , , c] = x.shape as [number, number, number, number];
    const sizes = this.g.addInitializer(`${node.name}/sizes`, { dtype: 'int64', shape: [4], data: [n, c, h, w] });
    const out = this.outName(node);
    this.g.addNode(
      'Resize',
      [this.materialize(x, NHWC_AS_NCHW), '', '', sizes],
      [out],
      {
        mode: attr.string('linear'),
        coordinate_transformation_mode: attr.string(mode),
      },
      node.name,
    );
    this.set(node, { kind: 'value', name: out, shape: [n, h, w, c], perm: NHWC_AS_NCHW });
  }

  private splitV(node: TfNode): void {
    const v = this.value(this.input(node, 0));
    const sizes = Array.from(this.constant(this.input(node, 1)).data);
    const axis = normAxis(this.constant(this.input(node, 2)).data[0]!, v.shape.length);
    if (sizes.some((s) => s < 0)) throw new Error('SplitV with an inferred (-1) size is not supported');
    const split = this.g.addInitializer(`${node.name}/split`, { dtype: 'int64', shape: [sizes.length], data: sizes });
    const outs = sizes.map((_, i) => this.outName(node, i));
    this.g.addNode('Split', [this.materialize(v, v.perm), split], outs, { axis: attr.int(v.perm[axis]!) }, node.name);
    sizes.forEach((size, i) => {
      const shape = [...v.shape];
      shape[axis] = size;
      this.set(node, { kind: 'value', name: outs[i]!, shape, perm: v.perm }, i);
    });
  }

  private reshape(node: TfNode): void {
    const v = this.value(this.input(node, 0));
    const target = Array.from(this.constant(this.input(node, 1)).data);
    const known = target.reduce((p, d) => (d === -1 ? p : p * (d === 0 ? 1 : d)), 1);
    const shape = target.map((d, i) => (d === -1 ? numel(v.shape) / known : d === 0 ? v.shape[i]! : d));
    if (numel(shape) !== numel(v.shape)) throw new Error(`cannot reshape [${v.shape}] to [${target}]`);
    const dims = this.g.addInitializer(`${node.name}/shape`, { dtype: 'int64', shape: [shape.length], data: shape });
    const out = this.outName(node);
    this.g.addNode('Reshape', [this.materialize(v, identity(v.shape.length)), dims], [out], {}, node.name);
    this.set(node, { kind: 'value', name: out, shape, perm: identity(shape.length) });
  }
}

function convOut(x: Value, axis: number, padTotal: number, k: number, stride: number, dilation: number): number {
  const unpadded = x.shape[axis]! - (x.pad ? x.pad.pads[axis]![0] + x.pad.pads[axis]![1] : 0);
  return Math.floor((unpadded + padTotal - dilation * (k - 1) - 1) / stride) + 1;
}

function broadcast(a: number[], b: number[]): number[] {
  const rank = Math.max(a.length, b.length);
  return Array.from({ length: rank }, (_, i) => {
    const x = a[i - rank + a.length] ?? 1;
    const y = b[i - rank + b.length] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    return Math.max(x, y);
  });
}

function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function attrOf(node: TfNode, name: string): TfAttr {
  const v = node.attr[name];
  if (v === undefined) throw new Error(`attribute ${name} is missing`);
  return v;
}
function stringAttr(node: TfNode, name: string): string {
  const v = attrOf(node, name);
  if (typeof v !== 'string') throw new Error(`attribute ${name} is not a string`);
  return v;
}
function floatAttr(node: TfNode, name: string): number {
  const v = attrOf(node, name);
  if (typeof v !== 'number') throw new Error(`attribute ${name} is not a number`);
  return v;
}
function boolAttr(node: TfNode, name: string): boolean {
  return node.attr[name] === true;
}
function intsAttr(node: TfNode, name: string): number[] {
  const v = attrOf(node, name);
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'number')) throw new Error(`attribute ${name} is not a list of ints`);
  return v as number[];
}
