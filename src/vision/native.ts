import { loadAddon, type Addon } from '../native.js';

/** native/vision.c: loops of the frame path in C, run on tables and buffers the TypeScript side prepares. */
export interface VisionAddon {
  /**
   * `Preprocessor`'s bilinear resize + normalisation into the model's planes; into a Uint8Array (a quantized
   * input) each value is then quantized with `scale` and `zeroPoint` as onnxruntime's QuantizeLinear does.
   */
  bilinear(
    src: Uint8Array,
    srcStride: number,
    out: Float32Array | Uint8Array,
    outWidth: number,
    line0: number,
    planes: Int32Array,
    x0: Int32Array,
    x1: Int32Array,
    wx: Float32Array,
    y0: Int32Array,
    y1: Int32Array,
    wy: Float32Array,
    gain: Float32Array,
    offset: Float32Array,
    scale?: number,
    zeroPoint?: number,
  ): void;
  /** The same from a YUV 4:2:0 frame: Y and chroma planes sampled with their own tables, converted to RGB at the output size. */
  bilinearI420(
    src: Uint8Array,
    width: number,
    height: number,
    out: Float32Array | Uint8Array,
    outWidth: number,
    line0: number,
    planes: Int32Array,
    x0: Int32Array,
    x1: Int32Array,
    wx: Float32Array,
    y0: Int32Array,
    y1: Int32Array,
    wy: Float32Array,
    cx0: Int32Array,
    cx1: Int32Array,
    cwx: Float32Array,
    cy0: Int32Array,
    cy1: Int32Array,
    cwy: Float32Array,
    gain: Float32Array,
    offset: Float32Array,
    scale?: number,
    zeroPoint?: number,
  ): void;
  /** A whole YUV 4:2:0 frame to RGB24 into `dst` (width*height*3 bytes). */
  i420ToRgb(src: Uint8Array, width: number, height: number, dst: Uint8Array): void;
  /** Per row of `stride` floats, its best of `classes` scores from `first` when above `threshold`; returns how many. */
  bestClasses(
    out: Float32Array,
    rows: number,
    stride: number,
    first: number,
    classes: number,
    threshold: number,
    cells: Int32Array,
    best: Int32Array,
    scores: Float32Array,
  ): number;
}

/**
 * The addon, once per thread, or why not: the bilinear resize took 2–3 ms of the agent's main thread per
 * 768×576 frame in JavaScript, the class scan of a NanoDet output 0.3–0.5 ms of the detector's worker
 * (docs/decisions/0026-preprocessing-in-c.md). EDGEPATROL_NATIVE_VISION=off keeps both in JavaScript; the two
 * paths give the same results to within float rounding (test/vision.test.ts).
 */
export function nativeVision(): Addon<VisionAddon> {
  return loadAddon<VisionAddon>('vision', 'EDGEPATROL_NATIVE_VISION');
}
