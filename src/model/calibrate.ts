import * as ort from 'onnxruntime-node';
import { encodeModel, tensorFromProto, type onnx } from './onnx.js';
import type { Range, Ranges } from './quantize.js';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';
export const CALIBRATION_METHODS: readonly CalibrationMethod[] = ['minmax', 'percentile', 'entropy'];

export interface CalibrationOptions {
  method: CalibrationMethod;
  /** Input tensors of the float model, one per calibration frame; called once per pass (histogram methods read twice). */
  inputs: () => AsyncIterable<Float32Array>;
  /** Kept share of |x| for `percentile` (default 99.999, as onnxruntime's own calibrator). */
  percentile?: number;
  /** onnxruntime intra-op threads (default 2). */
  threads?: number;
}

const HISTOGRAM_BINS = 2048;
/** Quantized levels the entropy search compares against (TensorRT's and onnxruntime's choice for 8 bits). */
const ENTROPY_LEVELS = 128;

/**
 * Measures the range of each named tensor by running the float model on real frames in onnxruntime:
 * `minmax` takes the extremes; `percentile` and `entropy` build a histogram of |x| over the extremes in a
 * second pass and clip the tail (at the percentile, or at the threshold whose 128-level quantization loses
 * the least KL divergence), keeping 0 inside the range.
 */
export async function calibrate(model: onnx.IModelProto, tensors: readonly string[], opts: CalibrationOptions): Promise<Ranges> {
  const graph = model.graph!;
  const constants = new Map((graph.initializer ?? []).map((t) => [t.name ?? '', t]));
  const inputName = graph.input?.find((i) => !constants.has(i.name ?? ''))?.name;
  if (!inputName) throw new Error('the model has no input');
  const ranges: Ranges = {};
  // Constants read by quantized nodes have their range right here; only activations need the model to run.
  const measured = tensors.filter((t) => {
    const c = constants.get(t);
    if (!c) return true;
    const v = tensorFromProto(c).data as ArrayLike<number>;
    let min = Infinity,
      max = -Infinity;
    for (let i = 0; i < v.length; i++) {
      min = Math.min(min, v[i]!);
      max = Math.max(max, v[i]!);
    }
    ranges[t] = [min, max];
    return false;
  });
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  const extra = measured.filter((t) => !outputs.has(t) && t !== inputName);
  const probe: onnx.IModelProto = {
    ...model,
    graph: { ...graph, output: [...(graph.output ?? []), ...extra.map((name) => ({ name, type: { tensorType: { elemType: 1 } } }))] },
  };
  const session = await ort.InferenceSession.create(encodeModel(probe), {
    executionProviders: ['cpu'],
    intraOpNumThreads: opts.threads ?? 2,
    // Optimizations would fuse away the very tensors being measured.
    graphOptimizationLevel: 'disabled',
  });
  const shape = graph.input!.find((i) => i.name === inputName)!.type!.tensorType!.shape!.dim!.map((d) => Number(d.dimValue ?? 1));
  const fetch = measured.filter((t) => t !== inputName);
  try {
    const pass = async (visit: (name: string, data: Float32Array) => void): Promise<number> => {
      let frames = 0;
      for await (const input of opts.inputs()) {
        const result = await session.run({ [inputName]: new ort.Tensor('float32', input, shape) }, fetch);
        if (measured.includes(inputName)) visit(inputName, input);
        for (const t of fetch) {
          const v = result[t];
          if (v?.type !== 'float32') throw new Error(`calibration: tensor ${t} is not a float32 output of the model`);
          visit(t, v.data as Float32Array);
        }
        frames++;
      }
      return frames;
    };

    const extremes = new Map<string, Range>();
    const frames = await pass((name, data) => {
      const r = extremes.get(name) ?? [Infinity, -Infinity];
      let min = r[0],
        max = r[1];
      for (let i = 0; i < data.length; i++) {
        const v = data[i]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      extremes.set(name, [min, max]);
    });
    if (frames === 0) throw new Error('calibration: no frames');
    // An empty tensor has no extremes; [0, 0] quantizes it with scale 1, and keeps the record valid JSON.
    for (const [t, [min, max]] of extremes) if (!(min <= max)) extremes.set(t, [0, 0]);
    if (opts.method === 'minmax') {
      for (const [t, r] of extremes) ranges[t] = r;
      return ranges;
    }

    const hists = new Map<string, Float64Array>();
    const tops = new Map<string, number>();
    for (const [t, [min, max]] of extremes) {
      hists.set(t, new Float64Array(HISTOGRAM_BINS));
      tops.set(t, Math.max(Math.abs(min), Math.abs(max)));
    }
    await pass((name, data) => {
      const h = hists.get(name)!;
      const top = tops.get(name)!;
      if (!(top > 0)) return;
      const k = HISTOGRAM_BINS / top;
      for (let i = 0; i < data.length; i++) h[Math.min(HISTOGRAM_BINS - 1, Math.floor(Math.abs(data[i]!) * k))]!++;
    });
    for (const [t, [min, max]] of extremes) {
      const top = tops.get(t)!;
      const h = hists.get(t)!;
      const threshold = !(top > 0)
        ? 0
        : opts.method === 'percentile'
          ? percentileThreshold(h, top, opts.percentile ?? 99.999)
          : entropyThreshold(h, top);
      ranges[t] = [Math.max(min, -threshold), Math.min(max, threshold)];
    }
    return ranges;
  } finally {
    await session.release();
  }
}

/** Upper edge of the bin where the cumulative share of |x| reaches `percentile` %. */
export function percentileThreshold(hist: Float64Array, top: number, percentile: number): number {
  const total = hist.reduce((a, b) => a + b, 0);
  const target = total * (percentile / 100);
  let sum = 0;
  for (let i = 0; i < hist.length; i++) {
    sum += hist[i]!;
    if (sum >= target) return ((i + 1) / hist.length) * top;
  }
  return top;
}

/**
 * The |x| threshold whose clipped distribution, quantized to ENTROPY_LEVELS levels, diverges least (KL) from
 * the measured one: TensorRT's entropy calibration, searched over every bin edge from ENTROPY_LEVELS up.
 */
export function entropyThreshold(hist: Float64Array, top: number): number {
  const n = hist.length;
  let best = n;
  let bestKl = Infinity;
  const p = new Float64Array(n);
  const q = new Float64Array(n);
  for (let i = ENTROPY_LEVELS; i <= n; i++) {
    // Reference P: the first i bins, with the clipped tail folded into the last one.
    let tail = 0;
    for (let k = i; k < n; k++) tail += hist[k]!;
    for (let k = 0; k < i; k++) p[k] = hist[k]!;
    p[i - 1]! += tail;
    // Candidate Q: the first i bins without the folded tail (what quantizing to this threshold keeps), merged into
    // ENTROPY_LEVELS groups, each group's mass spread over the bins where P is non-empty (MXNet's and TensorRT's form).
    const per = i / ENTROPY_LEVELS;
    for (let j = 0; j < ENTROPY_LEVELS; j++) {
      const start = Math.floor(j * per);
      const end = j === ENTROPY_LEVELS - 1 ? i : Math.floor((j + 1) * per);
      let mass = 0,
        nonEmpty = 0;
      for (let k = start; k < end; k++) {
        mass += hist[k]!;
        if (p[k]! > 0) nonEmpty++;
      }
      for (let k = start; k < end; k++) q[k] = p[k]! > 0 ? mass / nonEmpty : 0;
    }
    let pSum = 0,
      qSum = 0;
    for (let k = 0; k < i; k++) {
      pSum += p[k]!;
      qSum += q[k]!;
    }
    if (pSum === 0 || qSum === 0) continue;
    let kl = 0;
    for (let k = 0; k < i; k++) {
      if (p[k]! === 0) continue;
      const pk = p[k]! / pSum;
      // A bin Q left empty where P has mass: smoothed rather than infinite, as TensorRT does.
      const qk = Math.max(q[k]! / qSum, 1e-12);
      kl += pk * Math.log(pk / qk);
    }
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return (best / n) * top;
}
