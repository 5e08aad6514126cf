import type { InputQuantization, ModelSpec, Preprocess } from './manifest.js';
import { nativeVision, type VisionAddon } from './native.js';
import { checkI420, clamp255, KBU, KGU, KGV, KRV, KY, toRgb, type I420Layout } from './yuv.js';

/** An RGB24 image: width*height*3 bytes, rows top to bottom, no padding. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
  format?: 'rgb24';
}

/** A YUV 4:2:0 image (I420, limited range, BT.601: src/vision/types.ts YuvFrame). */
export interface YuvImage {
  width: number;
  height: number;
  data: Uint8Array;
  format: 'yuv420p';
}

/**
 * Resampling weights along one axis: output i is the sum over k < count[i] of
 * weights[i*taps+k] * source[start[i]+k], every such source index inside the axis.
 */
interface AxisTable {
  start: Int32Array;
  count: Int32Array;
  taps: number;
  weights: Float32Array;
}

/**
 * Downscaling averages the source pixels each output pixel covers (area), so small details are not
 * aliased away as plain bilinear sampling would; upscaling interpolates bilinearly with half-pixel centres.
 */
function axisTable(src: number, dst: number): AxisTable {
  const scale = src / dst;
  const taps = scale > 1 ? Math.ceil(scale) + 1 : 2;
  const start = new Int32Array(dst);
  const count = new Int32Array(dst);
  const weights = new Float32Array(dst * taps);
  for (let i = 0; i < dst; i++) {
    if (scale > 1) {
      const lo = i * scale;
      const hi = Math.min((i + 1) * scale, src);
      const first = Math.floor(lo);
      const last = Math.min(Math.ceil(hi), src);
      start[i] = first;
      count[i] = last - first;
      for (let j = first; j < last; j++) weights[i * taps + (j - first)] = (Math.min(j + 1, hi) - Math.max(j, lo)) / (hi - lo);
    } else {
      const pos = Math.min(Math.max((i + 0.5) * scale - 0.5, 0), src - 1);
      const j0 = Math.min(Math.floor(pos), Math.max(src - 2, 0));
      start[i] = j0;
      count[i] = Math.min(2, src);
      weights[i * taps] = 1 - (pos - j0);
      weights[i * taps + 1] = pos - j0;
    }
  }
  return { start, count, taps, weights };
}

/**
 * Per output index along one axis: the two source indices around its centre (half-pixel centres, clamped at
 * the edges) times `unit`, and the weight of the second.
 */
function bilinearTable(src: number, dst: number, unit: number): [Int32Array, Int32Array, Float32Array] {
  const lo = new Int32Array(dst);
  const hi = new Int32Array(dst);
  const w = new Float32Array(dst);
  const scale = src / dst;
  for (let i = 0; i < dst; i++) {
    const pos = Math.min(Math.max((i + 0.5) * scale - 0.5, 0), src - 1);
    const j = Math.floor(pos);
    lo[i] = j * unit;
    hi[i] = Math.min(j + 1, src - 1) * unit;
    w[i] = pos - j;
  }
  return [lo, hi, w];
}

/** How model-input pixels map back to the frame: frame_x = (x − padX) / scaleX, likewise for y. */
export interface InputMapping {
  scaleX: number;
  scaleY: number;
  padX: number;
  padY: number;
}

/**
 * A model input tensor's data: float32 values, or for a model with a quantized input (manifest `input.type`
 * uint8) the same values quantized as ONNX QuantizeLinear does, a quarter of the bytes to write, copy and read.
 */
export type ModelInput = Float32Array | Uint8Array;

/** A model input of `length` values, uint8 for a quantized input, on its own memory or over `buffer` (a shared slot). */
export function modelInput(quantized: boolean, length: number, buffer?: ArrayBufferLike): ModelInput {
  if (quantized) return buffer ? new Uint8Array(buffer, 0, length) : new Uint8Array(length);
  return buffer ? new Float32Array(buffer, 0, length) : new Float32Array(length);
}

/** 1.5 × 2^52: a double plus this and minus it again has no fraction left, rounded half to even. */
const ROUND_EVEN = 6755399441055744;

/**
 * ONNX QuantizeLinear of float32 values into uint8, as onnxruntime computes it: x / scale in float32, rounded
 * half to even, then plus the zero point (so an odd zero point does not move a tie), clamped to 0–255 (the
 * clamped view's store; NaN gives 0). native/vision.c `quantize_row` does the same in C.
 */
export function quantizeInput(src: Float32Array, q: InputQuantization, dst: Uint8Array): void {
  const out = new Uint8ClampedArray(dst.buffer, dst.byteOffset, dst.length);
  const scale = Math.fround(q.scale);
  const zp = q.zeroPoint;
  for (let i = 0; i < src.length; i++) out[i] = Math.fround(src[i]! / scale) + ROUND_EVEN - ROUND_EVEN + zp;
}

/**
 * How the frame is resampled to the model input. `area` averages every source pixel an output pixel covers
 * (two separable passes through a float buffer); `bilinear` blends the 2×2 source pixels nearest each output
 * pixel's centre in one pass, reading about a third of the pixels a 768×576 → 416×416 area resize reads.
 * bench/detect.ts `--compare-resize` measures both (time and detections); the figures are in bench/RESULTS.md,
 * "Issue 4, 2026-11-29: detector in a worker thread, bilinear resize".
 */
export type ResizeFilter = 'area' | 'bilinear';

/**
 * Turns frames into the model's NCHW input: resize to the input size (`stretch`, or `letterbox`: aspect kept,
 * centred, borders filled with `pad`), channel order, (v − mean) / std, and for a quantized input what the
 * model's QuantizeLinear did with that float (`quantizeInput`; in C row by row). Buffers and weight tables are
 * kept between calls, so a stream of same-sized frames allocates nothing; `run` returns the same buffer every
 * time (valid until the next call) unless given one to fill, and `mapping` says how to map boxes back.
 */
export class Preprocessor {
  /** The model input `run` fills by default: Float32Array, or Uint8Array for a quantized input. */
  readonly output: ModelInput;
  private readonly planeOf: Int32Array;
  private readonly gain: Float32Array;
  private readonly offset: Float32Array;
  private srcWidth = 0;
  private srcHeight = 0;
  private xTable: AxisTable | undefined;
  private yTable: AxisTable | undefined;
  private rows = new Float32Array(0);
  private readonly acc: Float32Array;
  private readonly letterbox: boolean;
  private readonly pad: number;
  /** Bilinear tables: per output column the source byte offset (×3) and weight of the right pixel; per row likewise. */
  private bx0: Int32Array = new Int32Array(0);
  private bx1: Int32Array = new Int32Array(0);
  private bwx: Float32Array = new Float32Array(0);
  private by0: Int32Array = new Int32Array(0);
  private by1: Int32Array = new Int32Array(0);
  private bwy: Float32Array = new Float32Array(0);
  /** For YUV frames: the same tables in Y-plane pixels (unit 1) and in the chroma planes. */
  private yuv:
    | {
        x0: Int32Array;
        x1: Int32Array;
        wx: Float32Array;
        y0: Int32Array;
        y1: Int32Array;
        wy: Float32Array;
        cx0: Int32Array;
        cx1: Int32Array;
        cwx: Float32Array;
        cy0: Int32Array;
        cy1: Int32Array;
        cwy: Float32Array;
      }
    | undefined;
  /** Output offset of each source channel's plane, for the native loop. */
  private planes = new Int32Array(3);
  private readonly addon: VisionAddon | null;
  mapping: InputMapping = { scaleX: 1, scaleY: 1, padX: 0, padY: 0 };
  /** Caller buffers whose letterbox border is filled for the current frame size (`output` has its own). */
  private bordered = new WeakSet<ModelInput>();
  /** For a quantized input filled in JavaScript: the float input, quantized into the output at the end. */
  private scratch: Float32Array | undefined;

  /**
   * `native` false keeps the bilinear loop in JavaScript even where the addon is built (tests compare the two);
   * the area filter always runs in JavaScript. `quantized`: the model takes a uint8 input quantized so.
   */
  constructor(
    readonly width: number,
    readonly height: number,
    preprocess: Preprocess,
    readonly filter: ResizeFilter = 'area',
    native = true,
    readonly quantized?: InputQuantization,
  ) {
    const addon = native && filter === 'bilinear' ? nativeVision() : null;
    this.addon = addon?.ok ? addon.addon : null;
    this.letterbox = preprocess.resize === 'letterbox';
    this.pad = preprocess.pad ?? 114;
    this.output = modelInput(quantized !== undefined, 3 * width * height);
    this.acc = new Float32Array(width * 3);
    // planeOf[source channel] = output plane; gain/offset indexed by source channel, folded from mean/std.
    const order = preprocess.channels === 'rgb' ? [0, 1, 2] : [2, 1, 0];
    this.planeOf = new Int32Array(3);
    this.gain = new Float32Array(3);
    this.offset = new Float32Array(3);
    for (let plane = 0; plane < 3; plane++) {
      const c = order[plane]!;
      this.planeOf[c] = plane;
      this.gain[c] = 1 / preprocess.std[plane]!;
      this.offset[c] = -preprocess.mean[plane]! / preprocess.std[plane]!;
    }
    // The JavaScript loops write floats and quantize them after (the C loop quantizes as it goes).
    if (quantized && !this.addon) this.scratch = new Float32Array(3 * width * height);
  }

  /** The preprocessing a model's manifest entry asks for, into the input type it takes. */
  static forModel(spec: ModelSpec, filter: ResizeFilter = 'area', native = true): Preprocessor {
    const [, , height, width] = spec.input.shape;
    return new Preprocessor(width, height, spec.preprocess, filter, native, spec.input.quantization);
  }

  /** Whether `run` resizes in C (bilinear filter and the addon loaded). */
  get native(): boolean {
    return this.addon !== null;
  }

  /**
   * Writes the model input for `image` into `out` (default: `output`, which is returned), so a caller can fill
   * a buffer it is about to hand to another thread without copying it. A YUV image is read as it is by the
   * bilinear filter (converted to RGB at the output size only); the area filter converts it to RGB first.
   */
  run(image: RgbImage | YuvImage, out: ModelInput = this.output): ModelInput {
    const { width: sw, height: sh, data } = image;
    const layout = image.format === 'yuv420p' ? checkI420(sw, sh, data) : undefined;
    if (!layout && data.length < sw * sh * 3) {
      throw new RangeError(`frame of ${sw}x${sh} needs ${sw * sh * 3} bytes of RGB24, got ${data.length}`);
    }
    if (out.length !== this.output.length || out.constructor !== this.output.constructor) {
      throw new RangeError(
        `input buffer is a ${out.constructor.name} of ${out.length}, the model takes a ${this.output.constructor.name} of ${this.output.length}`,
      );
    }
    if (sw !== this.srcWidth || sh !== this.srcHeight || !this.xTable || !this.yTable) this.resize(sw, sh);
    if (this.letterbox && out !== this.output && !this.bordered.has(out)) {
      out.set(this.output);
      this.bordered.add(out);
    }
    if (layout) {
      if (this.filter === 'bilinear') return this.runBilinearYuv(data, sw, sh, layout, out);
      return this.run(
        toRgb({ width: sw, height: sh, data: Buffer.from(data.buffer, data.byteOffset, data.byteLength), ts: 0, format: 'yuv420p' }),
        out,
      );
    }
    if (this.filter === 'bilinear') return this.runBilinear(data, sw, out);
    const dst = this.floatTarget(out);
    const { padX, padY } = this.mapping;
    const dw = this.xTable!.start.length;
    const dh = this.yTable!.start.length;
    const rows = this.rows;

    // Horizontal pass: every source row resampled to the output width, interleaved RGB floats.
    const { start: xStart, count: xCount, taps: xTaps, weights: xWeights } = this.xTable!;
    for (let y = 0; y < sh; y++) {
      const srcRow = y * sw * 3;
      const dstRow = y * dw * 3;
      for (let x = 0; x < dw; x++) {
        let r = 0;
        let g = 0;
        let b = 0;
        let p = srcRow + xStart[x]! * 3;
        const wBase = x * xTaps;
        const n = xCount[x]!;
        for (let k = 0; k < n; k++, p += 3) {
          const w = xWeights[wBase + k]!;
          r += data[p]! * w;
          g += data[p + 1]! * w;
          b += data[p + 2]! * w;
        }
        const o = dstRow + x * 3;
        rows[o] = r;
        rows[o + 1] = g;
        rows[o + 2] = b;
      }
    }

    // Vertical pass: accumulate weighted rows, then normalise into the three output planes.
    const { start: yStart, count: yCount, taps: yTaps, weights: yWeights } = this.yTable!;
    const acc = this.acc;
    const plane = this.width * this.height;
    const rowLen = dw * 3;
    const p0 = this.planeOf[0]! * plane;
    const p1 = this.planeOf[1]! * plane;
    const p2 = this.planeOf[2]! * plane;
    const g0 = this.gain[0]!,
      g1 = this.gain[1]!,
      g2 = this.gain[2]!;
    const o0 = this.offset[0]!,
      o1 = this.offset[1]!,
      o2 = this.offset[2]!;
    for (let y = 0; y < dh; y++) {
      const wBase = y * yTaps;
      let src = yStart[y]! * rowLen;
      const w0 = yWeights[wBase]!;
      for (let i = 0; i < rowLen; i++) acc[i] = rows[src + i]! * w0;
      const n = yCount[y]!;
      for (let k = 1; k < n; k++) {
        const w = yWeights[wBase + k]!;
        src += rowLen;
        for (let i = 0; i < rowLen; i++) acc[i]! += rows[src + i]! * w;
      }
      const line = (y + padY) * this.width + padX;
      for (let x = 0; x < dw; x++) {
        dst[p0 + line + x] = acc[x * 3]! * g0 + o0;
        dst[p1 + line + x] = acc[x * 3 + 1]! * g1 + o1;
        dst[p2 + line + x] = acc[x * 3 + 2]! * g2 + o2;
      }
    }
    return this.finish(dst, out);
  }

  /** Where the JavaScript loops write: `out` itself, or for a quantized input the float scratch. */
  private floatTarget(out: ModelInput): Float32Array {
    return out instanceof Float32Array ? out : this.scratch!;
  }

  /** Quantizes the scratch into `out` when the loops wrote there (the letterbox border included). */
  private finish(written: Float32Array, out: ModelInput): ModelInput {
    if (!(out instanceof Float32Array)) quantizeInput(written, this.quantized!, out);
    return out;
  }

  private runBilinear(data: Uint8Array, sw: number, out: ModelInput): ModelInput {
    const { padX, padY } = this.mapping;
    const dw = this.bx0.length;
    const dh = this.by0.length;
    const { bx0, bx1, bwx, by0, by1, bwy } = this;
    const plane = this.width * this.height;
    const p0 = this.planeOf[0]! * plane;
    const p1 = this.planeOf[1]! * plane;
    const p2 = this.planeOf[2]! * plane;
    const g0 = this.gain[0]!,
      g1 = this.gain[1]!,
      g2 = this.gain[2]!;
    const o0 = this.offset[0]!,
      o1 = this.offset[1]!,
      o2 = this.offset[2]!;
    const stride = sw * 3;
    if (this.addon) {
      this.addon.bilinear(
        data,
        stride,
        out,
        this.width,
        padY * this.width + padX,
        this.planes,
        bx0,
        bx1,
        bwx,
        by0,
        by1,
        bwy,
        this.gain,
        this.offset,
        this.quantized?.scale,
        this.quantized?.zeroPoint,
      );
      return out;
    }
    const dst = this.floatTarget(out);
    for (let y = 0; y < dh; y++) {
      const top = by0[y]! * stride;
      const bottom = by1[y]! * stride;
      const wy = bwy[y]!;
      const line = (y + padY) * this.width + padX;
      for (let x = 0; x < dw; x++) {
        const a = top + bx0[x]!;
        const b = top + bx1[x]!;
        const c = bottom + bx0[x]!;
        const d = bottom + bx1[x]!;
        const wx = bwx[x]!;
        let u = data[a]! + (data[b]! - data[a]!) * wx;
        let l = data[c]! + (data[d]! - data[c]!) * wx;
        dst[p0 + line + x] = (u + (l - u) * wy) * g0 + o0;
        u = data[a + 1]! + (data[b + 1]! - data[a + 1]!) * wx;
        l = data[c + 1]! + (data[d + 1]! - data[c + 1]!) * wx;
        dst[p1 + line + x] = (u + (l - u) * wy) * g1 + o1;
        u = data[a + 2]! + (data[b + 2]! - data[a + 2]!) * wx;
        l = data[c + 2]! + (data[d + 2]! - data[c + 2]!) * wx;
        dst[p2 + line + x] = (u + (l - u) * wy) * g2 + o2;
      }
    }
    return this.finish(dst, out);
  }

  private runBilinearYuv(data: Uint8Array, sw: number, sh: number, { u: uAt, v: vAt, cw }: I420Layout, out: ModelInput): ModelInput {
    const { padX, padY } = this.mapping;
    const t = (this.yuv ??= this.yuvTables(sw, sh));
    const planes = this.planes;
    if (this.addon) {
      this.addon.bilinearI420(
        data,
        sw,
        sh,
        out,
        this.width,
        padY * this.width + padX,
        planes,
        t.x0,
        t.x1,
        t.wx,
        t.y0,
        t.y1,
        t.wy,
        t.cx0,
        t.cx1,
        t.cwx,
        t.cy0,
        t.cy1,
        t.cwy,
        this.gain,
        this.offset,
        this.quantized?.scale,
        this.quantized?.zeroPoint,
      );
      return out;
    }
    const g0 = this.gain[0]!,
      g1 = this.gain[1]!,
      g2 = this.gain[2]!;
    const o0 = this.offset[0]!,
      o1 = this.offset[1]!,
      o2 = this.offset[2]!;
    const dst = this.floatTarget(out);
    const lerp2 = (at: number, stride: number, r0: number, r1: number, wr: number, c0: number, c1: number, wc: number): number => {
      const top = data[at + r0 * stride + c0]! + (data[at + r0 * stride + c1]! - data[at + r0 * stride + c0]!) * wc;
      const bottom = data[at + r1 * stride + c0]! + (data[at + r1 * stride + c1]! - data[at + r1 * stride + c0]!) * wc;
      return top + (bottom - top) * wr;
    };
    for (let y = 0; y < t.y0.length; y++) {
      const line = (y + padY) * this.width + padX;
      for (let x = 0; x < t.x0.length; x++) {
        const luma = KY * (lerp2(0, sw, t.y0[y]!, t.y1[y]!, t.wy[y]!, t.x0[x]!, t.x1[x]!, t.wx[x]!) - 16);
        const cu = lerp2(uAt, cw, t.cy0[y]!, t.cy1[y]!, t.cwy[y]!, t.cx0[x]!, t.cx1[x]!, t.cwx[x]!) - 128;
        const cv = lerp2(vAt, cw, t.cy0[y]!, t.cy1[y]!, t.cwy[y]!, t.cx0[x]!, t.cx1[x]!, t.cwx[x]!) - 128;
        dst[planes[0]! + line + x] = clamp255(luma + KRV * cv) * g0 + o0;
        dst[planes[1]! + line + x] = clamp255(luma - KGU * cu - KGV * cv) * g1 + o1;
        dst[planes[2]! + line + x] = clamp255(luma + KBU * cu) * g2 + o2;
      }
    }
    return this.finish(dst, out);
  }

  /**
   * Bilinear tables for a YUV frame of sw×sh: in the Y plane, and in the chroma planes (⌈sw/2⌉×⌈sh/2⌉), each with
   * half-pixel centres, so a chroma sample is taken as centred on the 2×2 pixels it covers.
   */
  private yuvTables(sw: number, sh: number): NonNullable<Preprocessor['yuv']> {
    const iw = this.bx0.length;
    const ih = this.by0.length;
    const [x0, x1, wx] = bilinearTable(sw, iw, 1);
    const [y0, y1, wy] = bilinearTable(sh, ih, 1);
    const [cx0, cx1, cwx] = bilinearTable((sw + 1) >> 1, iw, 1);
    const [cy0, cy1, cwy] = bilinearTable((sh + 1) >> 1, ih, 1);
    return { x0, x1, wx, y0, y1, wy, cx0, cx1, cwx, cy0, cy1, cwy };
  }

  /** New weight tables for a new frame size; with letterbox also the border, which later frames never overwrite. */
  private resize(sw: number, sh: number): void {
    let iw = this.width;
    let ih = this.height;
    let padX = 0;
    let padY = 0;
    if (this.letterbox) {
      const scale = Math.min(this.width / sw, this.height / sh);
      iw = Math.max(1, Math.min(this.width, Math.round(sw * scale)));
      ih = Math.max(1, Math.min(this.height, Math.round(sh * scale)));
      padX = (this.width - iw) >> 1;
      padY = (this.height - ih) >> 1;
      const plane = this.width * this.height;
      // A uint8 output gets the float border quantized, as every other value.
      const border = this.output instanceof Float32Array ? this.output : (this.scratch ?? new Float32Array(3 * plane));
      for (let c = 0; c < 3; c++) {
        border.fill(this.pad * this.gain[c]! + this.offset[c]!, this.planeOf[c]! * plane, (this.planeOf[c]! + 1) * plane);
      }
      if (!(this.output instanceof Float32Array)) quantizeInput(border, this.quantized!, this.output);
    }
    this.xTable = axisTable(sw, iw);
    this.yTable = axisTable(sh, ih);
    if (this.filter === 'bilinear') {
      [this.bx0, this.bx1, this.bwx] = bilinearTable(sw, iw, 3);
      [this.by0, this.by1, this.bwy] = bilinearTable(sh, ih, 1);
      const plane = this.width * this.height;
      this.planes = Int32Array.from(this.planeOf, (p) => p * plane);
    } else {
      this.rows = new Float32Array(sh * iw * 3);
    }
    this.yuv = undefined;
    this.bordered = new WeakSet();
    this.srcWidth = sw;
    this.srcHeight = sh;
    this.mapping = { scaleX: iw / sw, scaleY: ih / sh, padX, padY };
  }
}
