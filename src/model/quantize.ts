import { attr, tensorFromProto, tensorToProto, type onnx } from './onnx.js';
import type { HostTensor } from './tensor.js';

/**
 * Static INT8 quantization of an fp32 ONNX graph in QDQ form, the form onnxruntime fuses into
 * QLinearConv / QLinearAdd / QLinearConcat / QLinearLeakyRelu kernels:
 * - Conv weights int8, per output channel, symmetric (zero point 0); bias int32 with scale in_scale × w_scale;
 * - activations uint8, per tensor, asymmetric, from calibrated [min, max] ranges;
 * - ops that only move or pick values (MaxPool, Resize, Split, Slice) keep their input's scale, so onnxruntime
 *   runs them on uint8 directly instead of dequantizing around them;
 * - the decoder head (layout ops, their descendants, and the convs that only feed them) stays float.
 * The rewrite is pure arithmetic on the fp32 weights and the ranges, so the same inputs give the same bytes on
 * every machine; only calibration (src/model/calibrate.ts) runs the model.
 */

/** Ops that get their own calibrated output range when quantized. */
const OWN_RANGE_OPS = new Set(['Conv', 'LeakyRelu', 'Relu', 'Clip', 'Concat', 'Add', 'Mul', 'Sigmoid', 'AveragePool']);
/** Ops whose output values are a selection or interpolation of their input's: the output keeps the input's scale. */
const SHARED_RANGE_OPS = new Set(['MaxPool', 'Resize', 'Split', 'Slice']);
/** Ops that reshape feature maps into the decoder's layout; they and everything after them are the decoder head. */
const HEAD_START_OPS = new Set([
  'Reshape',
  'Transpose',
  'Flatten',
  'Softmax',
  'Squeeze',
  'Unsqueeze',
  'Gather',
  'MatMul',
  'TopK',
  'NonMaxSuppression',
]);

/** Which inputs of a quantized node carry activations (the rest are weights, shapes or scales). */
function activationInputs(node: onnx.INodeProto): string[] {
  const inputs = (node.input ?? []).filter((n) => n !== '');
  switch (node.opType) {
    case 'Conv':
    case 'MaxPool':
    case 'Resize':
    case 'Split':
    case 'Slice':
    case 'LeakyRelu':
    case 'Relu':
    case 'Clip':
    case 'Sigmoid':
    case 'AveragePool':
      return inputs.slice(0, 1);
    default:
      return inputs;
  }
}

export type Range = [min: number, max: number];
/** Calibrated activation ranges by tensor name. */
export type Ranges = Record<string, Range>;

export interface QuantizeOptions {
  /** Nodes kept in float, by node name or by the name of (one of) their outputs. */
  keepFloat?: readonly string[];
  /** Also quantize the convs whose outputs only feed the decoder head (default false: they stay float). */
  quantizeHeadConvs?: boolean;
}

export interface QuantizationPlan {
  /** Names of the nodes that run quantized. */
  quantized: string[];
  /** Names of the nodes kept float as the decoder head (layout ops and their descendants, plus the convs feeding them). */
  head: string[];
  /** Names of the nodes kept float because the caller asked. */
  keptFloat: string[];
  /** Tensors whose range calibration must measure, in graph order. */
  calibrate: string[];
  /** Tensors quantized with another tensor's range (output → the calibrated tensor whose range it uses). */
  shared: Record<string, string>;
}

interface GraphIndex {
  nodes: onnx.INodeProto[];
  names: string[];
  producer: Map<string, number>;
  consumers: Map<string, number[]>;
  initializers: Map<string, onnx.ITensorProto>;
  outputs: Set<string>;
}

function indexGraph(graph: onnx.IGraphProto): GraphIndex {
  const nodes = graph.node ?? [];
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const o of n.output ?? []) producer.set(o, i);
    for (const inp of n.input ?? []) {
      if (inp === '') continue;
      const list = consumers.get(inp) ?? [];
      list.push(i);
      consumers.set(inp, list);
    }
  });
  const names = nodes.map((n, i) => n.name || n.output?.[0] || `node${i}`);
  return {
    nodes,
    names,
    producer,
    consumers,
    initializers: new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t])),
    outputs: new Set((graph.output ?? []).map((o) => o.name ?? '')),
  };
}

function headNodes(g: GraphIndex): { head: Set<number>; headConvs: Set<number> } {
  const head = new Set<number>();
  // Forward: every node reachable from a layout op.
  const stack: number[] = [];
  g.nodes.forEach((n, i) => {
    if (HEAD_START_OPS.has(n.opType ?? '')) stack.push(i);
  });
  while (stack.length) {
    const i = stack.pop()!;
    if (head.has(i)) continue;
    head.add(i);
    for (const o of g.nodes[i]!.output ?? []) for (const c of g.consumers.get(o) ?? []) stack.push(c);
  }
  // Backward: nodes whose every output goes only to the head or out of the graph (Split → Sigmoid → Reshape).
  const feedsOnlyHead = (i: number): boolean =>
    (g.nodes[i]!.output ?? []).every((o) => (g.consumers.get(o) ?? []).every((c) => head.has(c)));
  const headConvs = new Set<number>();
  for (let changed = true; changed; ) {
    changed = false;
    for (let i = g.nodes.length - 1; i >= 0; i--) {
      if (head.has(i) || headConvs.has(i) || !feedsOnlyHead(i)) continue;
      if (g.nodes[i]!.opType === 'Conv') headConvs.add(i);
      else {
        head.add(i);
        changed = true;
      }
    }
  }
  return { head, headConvs };
}

/** Decides which nodes run quantized and which tensors need a calibrated range. */
export function planQuantization(model: onnx.IModelProto, opts: QuantizeOptions = {}): QuantizationPlan {
  const graph = model.graph;
  if (!graph) throw new Error('the model has no graph');
  const g = indexGraph(graph);
  const { head, headConvs } = headNodes(g);
  const wanted = new Set(opts.keepFloat ?? []);
  const matched = new Set<string>();
  const quantized = new Set<number>();
  const keptFloat: string[] = [];
  g.nodes.forEach((n, i) => {
    const keys = [g.names[i]!, ...(n.output ?? [])];
    const keep = keys.filter((k) => wanted.has(k));
    for (const k of keep) matched.add(k);
    if (keep.length) {
      keptFloat.push(g.names[i]!);
      return;
    }
    if (head.has(i) || (headConvs.has(i) && !opts.quantizeHeadConvs)) return;
    const op = n.opType ?? '';
    if (!OWN_RANGE_OPS.has(op) && !SHARED_RANGE_OPS.has(op)) return;
    // A conv is quantized only with a constant weight, which is what gets the per-channel int8 form.
    if (op === 'Conv' && !g.initializers.has(n.input?.[1] ?? '')) return;
    quantized.add(i);
  });
  const unknown = [...wanted].filter((k) => !matched.has(k));
  if (unknown.length) throw new Error(`--keep-float names no node or node output of this model: ${unknown.join(', ')}`);

  // Each quantized tensor either gets its own range or borrows the one of the tensor a shared-range op read.
  const calibrate: string[] = [];
  const shared: Record<string, string> = {};
  const known = new Set<string>();
  const root = (t: string): string => shared[t] ?? t;
  const own = (t: string): void => {
    if (known.has(t)) return;
    known.add(t);
    calibrate.push(t);
  };
  g.nodes.forEach((n, i) => {
    if (!quantized.has(i)) return;
    for (const t of activationInputs(n)) own(t);
    const op = n.opType ?? '';
    for (const o of n.output ?? []) {
      if (o === '' || known.has(o)) continue;
      known.add(o);
      if (SHARED_RANGE_OPS.has(op)) shared[o] = root(n.input![0]!);
      else calibrate.push(o);
    }
  });
  // A float node may also read a quantized tensor; it then reads the dequantized value, which is the point of QDQ.
  return {
    quantized: [...quantized].map((i) => g.names[i]!),
    head: [...head, ...headConvs]
      .sort((a, b) => a - b)
      .map((i) => g.names[i]!)
      .filter((name) => !keptFloat.includes(name)),
    keptFloat,
    calibrate,
    shared,
  };
}

/**
 * Conv weight precision. 7 bits keep every sum of two u8×s8 products inside int16 (2 × 255 × 63 = 32130), so
 * x86 CPUs without VNNI, whose kernels add such pairs with int16 saturation (pmaddubsw), compute exactly what VNNI
 * and arm64 compute; with 8 bits they clip (docs/decisions/0034-int8-7-bit-weights.md).
 */
export type WeightBits = 7 | 8;

export interface QuantParams {
  scale: number;
  zeroPoint: number;
}

/** uint8 asymmetric parameters covering [min, max] and 0 (so zero pads and ReLU zeros are exact). */
export function uint8Params([min, max]: Range): QuantParams {
  const lo = Math.min(0, min);
  const hi = Math.max(0, max);
  const scale = Math.fround((hi - lo) / 255);
  if (!(scale > 0) || !Number.isFinite(scale)) return { scale: 1, zeroPoint: 0 };
  return { scale, zeroPoint: Math.min(255, Math.max(0, Math.round(-lo / scale))) };
}

/** onnx.TensorProto.DataType.UINT8. */
const UINT8 = 2;

const scalar = (dtype: 'float32' | 'uint8', v: number): HostTensor =>
  dtype === 'float32' ? { dtype, shape: [], data: Float32Array.of(v) } : { dtype, shape: [], data: Uint8Array.of(v) };

/** Rounds half away from zero, the same on every CPU (plain double arithmetic). */
const roundAway = (x: number): number => Math.sign(x) * Math.round(Math.abs(x));

/**
 * Per-output-channel symmetric int8 weights with `bits` of magnitude and sign: scale_c = max|w_c| / qmax,
 * qmax = 2^(bits-1) − 1 (127 for 8 bits, 63 for 7). A channel of zeros gets scale 1, which dequantizes it to
 * zeros as well.
 */
export function quantizeWeights(w: Float32Array, channels: number, bits: WeightBits = 8): { q: Int8Array; scales: Float32Array } {
  const qmax = 2 ** (bits - 1) - 1;
  const per = w.length / channels;
  const q = new Int8Array(w.length);
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    let absMax = 0;
    for (let k = c * per; k < (c + 1) * per; k++) absMax = Math.max(absMax, Math.abs(w[k]!));
    const scale = absMax > 0 ? Math.fround(absMax / qmax) : 1;
    scales[c] = scale;
    for (let k = c * per; k < (c + 1) * per; k++) q[k] = Math.max(-qmax, Math.min(qmax, roundAway(w[k]! / scale)));
  }
  return { q, scales };
}

/**
 * The quantization of the graph's (first) input, when quantized nodes read it: what a uint8 input built with
 * `uint8Input` expects the caller to have applied.
 */
export function inputQuantization(model: onnx.IModelProto, plan: QuantizationPlan, ranges: Ranges): QuantParams | undefined {
  const name = model.graph?.input?.[0]?.name;
  if (!name || !plan.calibrate.includes(name) || !ranges[name]) return undefined;
  return uint8Params(ranges[name]);
}

/**
 * Builds the QDQ model from the fp32 model, the plan and a range for every tensor in `plan.calibrate`. With
 * `uint8Input`, a graph input read by quantized nodes becomes uint8 and is read through its DequantizeLinear
 * alone: the caller quantizes (the preprocessing does, into a quarter of the bytes) instead of the model's first
 * QuantizeLinear.
 */
export function quantizeModel(
  model: onnx.IModelProto,
  plan: QuantizationPlan,
  ranges: Ranges,
  docString?: string,
  opts: { uint8Input?: boolean; weightBits?: WeightBits } = {},
): onnx.IModelProto {
  const graph = model.graph;
  if (!graph) throw new Error('the model has no graph');
  const opset = (model.opsetImport ?? []).find((o) => !o.domain)?.version;
  if (opset === undefined || Number(opset) < 13) {
    throw new Error(
      `the model uses ONNX opset ${String(opset)}; per-channel QDQ needs opset 13 or later: export the model again with opset ≥ 13`,
    );
  }
  const missing = plan.calibrate.filter((t) => !ranges[t]);
  if (missing.length) throw new Error(`no calibrated range for ${missing.length} tensors (first: ${missing[0]}); calibrate again`);
  const g = indexGraph(graph);
  const quantized = new Set(plan.quantized);
  const inits: onnx.ITensorProto[] = [];
  const addInit = (name: string, t: HostTensor): string => {
    inits.push(tensorToProto(name, t));
    return name;
  };

  // One scale/zero-point pair per calibrated tensor; shared-range tensors point at the same initializers.
  const params = new Map<string, { p: QuantParams; scale: string; zp: string }>();
  for (const t of plan.calibrate) {
    const p = uint8Params(ranges[t]!);
    params.set(t, {
      p,
      scale: addInit(`${t}_scale`, scalar('float32', p.scale)),
      zp: addInit(`${t}_zero_point`, scalar('uint8', p.zeroPoint)),
    });
  }
  const paramsOf = (t: string): { p: QuantParams; scale: string; zp: string } | undefined => params.get(plan.shared[t] ?? t);

  const out: onnx.INodeProto[] = [];
  const rename = new Map<string, string>();
  /** Q then DQ of `source`, the DQ writing `target`. */
  const qdq = (source: string, target: string, t: string): void => {
    const q = paramsOf(t)!;
    out.push({ name: `${t}_QuantizeLinear`, opType: 'QuantizeLinear', input: [source, q.scale, q.zp], output: [`${t}_quantized`] });
    out.push({ name: `${t}_DequantizeLinear`, opType: 'DequantizeLinear', input: [`${t}_quantized`, q.scale, q.zp], output: [target] });
  };
  // Graph inputs and constants read by quantized nodes have no producer to rename: their readers are rewired.
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name ?? ''));
  const uint8Inputs = new Set<string>();
  const unproduced = [...plan.calibrate].filter((t) => !g.producer.has(t));
  for (const t of unproduced) {
    rename.set(t, `${t}_dequantized`);
    if (opts.uint8Input && graphInputs.has(t)) {
      const q = paramsOf(t)!;
      out.push({ name: `${t}_DequantizeLinear`, opType: 'DequantizeLinear', input: [t, q.scale, q.zp], output: [`${t}_dequantized`] });
      uint8Inputs.add(t);
    } else {
      qdq(t, `${t}_dequantized`, t);
    }
  }
  const removedInits = new Set<string>();

  g.nodes.forEach((node, i) => {
    const n: onnx.INodeProto = { ...node, input: (node.input ?? []).map((x) => rename.get(x) ?? x), output: [...(node.output ?? [])] };
    const name = g.names[i]!;
    if (quantized.has(name) && n.opType === 'Conv') {
      const wName = node.input![1]!;
      const w = tensorFromProto(g.initializers.get(wName)!);
      if (w.dtype !== 'float32') throw new Error(`conv ${name}: weight ${wName} is ${w.dtype}, expected float32`);
      const channels = w.shape[0]!;
      const { q, scales } = quantizeWeights(w.data, channels, opts.weightBits);
      const wq = addInit(`${wName}_quantized`, { dtype: 'int8', shape: w.shape, data: q });
      const ws = addInit(`${wName}_scale`, { dtype: 'float32', shape: [channels], data: scales });
      const wz = addInit(`${wName}_zero_point`, { dtype: 'int8', shape: [channels], data: new Int8Array(channels) });
      out.push({
        name: `${wName}_DequantizeLinear`,
        opType: 'DequantizeLinear',
        input: [wq, ws, wz],
        output: [`${wName}_dequantized`],
        attribute: [{ name: 'axis', ...attr.int(0) }],
      });
      n.input![1] = `${wName}_dequantized`;
      removedInits.add(wName);
      const bName = node.input?.[2];
      if (bName) {
        const b = tensorFromProto(g.initializers.get(bName) ?? {});
        if (b.dtype !== 'float32' || b.data.length !== channels) throw new Error(`conv ${name}: bias ${bName} is not float32[${channels}]`);
        const inScale = paramsOf(node.input![0]!)!.p.scale;
        const bScales = scales.map((s) => Math.fround(inScale * s));
        const bq = Int32Array.from(b.data, (v, c) => Math.max(-2147483647, Math.min(2147483647, roundAway(v / bScales[c]!))));
        const bqn = addInit(`${bName}_quantized`, { dtype: 'int32', shape: [channels], data: bq });
        const bsn = addInit(`${bName}_scale`, { dtype: 'float32', shape: [channels], data: bScales });
        const bzn = addInit(`${bName}_zero_point`, { dtype: 'int32', shape: [channels], data: new Int32Array(channels) });
        out.push({
          name: `${bName}_DequantizeLinear`,
          opType: 'DequantizeLinear',
          input: [bqn, bsn, bzn],
          output: [`${bName}_dequantized`],
          attribute: [{ name: 'axis', ...attr.int(0) }],
        });
        n.input![2] = `${bName}_dequantized`;
        removedInits.add(bName);
      }
    }
    // A quantized tensor's producer writes `<t>_float`; the DQ after it writes `<t>` for every reader.
    const after: [string, string][] = [];
    n.output = n.output!.map((o) => {
      if (!paramsOf(o)) return o;
      after.push([`${o}_float`, o]);
      return `${o}_float`;
    });
    out.push(n);
    for (const [source, t] of after) qdq(source, t, t);
  });

  // A weight still read by a float node (shared weights) stays.
  const stillRead = new Set(out.flatMap((n) => n.input ?? []));
  return {
    ...model,
    producerName: 'edgepatrol',
    docString: docString ?? model.docString ?? '',
    graph: {
      ...graph,
      input: (graph.input ?? []).map((i) =>
        uint8Inputs.has(i.name ?? '') ? { ...i, type: { tensorType: { ...i.type?.tensorType, elemType: UINT8 } } } : i,
      ),
      node: out,
      initializer: [...(graph.initializer ?? []).filter((t) => !removedInits.has(t.name ?? '') || stillRead.has(t.name ?? '')), ...inits],
      // Stale shape annotations of renamed tensors would only mislead onnxruntime's shape inference.
      valueInfo: [],
    },
  };
}
