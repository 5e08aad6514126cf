import { nativeVision } from './native.js';
import type { Frame, RgbFrame } from './types.js';

/**
 * YUV 4:2:0 frames (I420, limited range, BT.601), the layout the cameras' frame sources deliver
 * (docs/decisions.md, "Frames stay YUV"). The detector's preprocessing reads them directly (preprocess.ts); only a
 * frame that becomes evidence is converted to RGB, here.
 */

/** Where the planes of a width×height I420 frame lie in its buffer, and its size in bytes. */
export interface I420Layout {
  /** Chroma plane width and height: ⌈width/2⌉, ⌈height/2⌉. */
  cw: number;
  ch: number;
  /** Byte offsets of the U and V planes (Y starts at 0). */
  u: number;
  v: number;
  bytes: number;
}

export function i420Layout(width: number, height: number): I420Layout {
  const cw = (width + 1) >> 1;
  const ch = (height + 1) >> 1;
  const u = width * height;
  return { cw, ch, u, v: u + cw * ch, bytes: u + 2 * cw * ch };
}

/** Bytes of one frame of `format` at width×height. */
export function frameBytes(format: 'rgb24' | 'yuv420p', width: number, height: number): number {
  return format === 'rgb24' ? width * height * 3 : i420Layout(width, height).bytes;
}

/**
 * BT.601 limited range to full-range RGB: R = KY·(Y−16) + KRV·(V−128), G = KY·(Y−16) − KGU·(U−128) − KGV·(V−128),
 * B = KY·(Y−16) + KBU·(U−128), each clamped to 0–255. native/vision.c uses the same numbers.
 */
export const KY = 255 / 219;
export const KRV = 1.402 * (255 / 224);
export const KGU = ((1.772 * 0.114) / 0.587) * (255 / 224);
export const KGV = ((1.402 * 0.299) / 0.587) * (255 / 224);
export const KBU = 1.772 * (255 / 224);

/** A converted channel value held to 0–255. */
export const clamp255 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/** Throws unless `data` holds a whole I420 frame of width×height. */
export function checkI420(width: number, height: number, data: Uint8Array): I420Layout {
  const layout = i420Layout(width, height);
  if (data.length < layout.bytes) throw new RangeError(`frame of ${width}x${height} needs ${layout.bytes} bytes of YUV 4:2:0, got ${data.length}`);
  return layout;
}

/**
 * The frame as RGB24: an RGB frame as it is, a YUV one converted into a new buffer (each chroma sample shared by
 * the 2×2 pixels it covers). In C when the vision addon is built, else in JavaScript.
 */
export function toRgb(frame: Frame): RgbFrame {
  if (frame.format !== 'yuv420p') return frame;
  const { width, height, data, ts } = frame;
  const layout = checkI420(width, height, data);
  const out = Buffer.allocUnsafe(width * height * 3);
  const addon = nativeVision();
  if (addon.ok) addon.addon.i420ToRgb(data, width, height, out);
  else i420ToRgbJs(data, width, height, layout, out);
  return { width, height, data: out, ts };
}

function i420ToRgbJs(data: Uint8Array, width: number, height: number, { cw, u, v }: I420Layout, out: Uint8Array): void {
  for (let y = 0, o = 0; y < height; y++) {
    const crow = (y >> 1) * cw;
    for (let x = 0; x < width; x++, o += 3) {
      const l = KY * (data[y * width + x]! - 16);
      const cu = data[u + crow + (x >> 1)]! - 128;
      const cv = data[v + crow + (x >> 1)]! - 128;
      out[o] = Math.round(clamp255(l + KRV * cv));
      out[o + 1] = Math.round(clamp255(l - KGU * cu - KGV * cv));
      out[o + 2] = Math.round(clamp255(l + KBU * cu));
    }
  }
}
