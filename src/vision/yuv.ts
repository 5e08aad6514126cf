import { nativeVision } from './native.js';
import { i420Layout, type Frame, type I420Layout, type RgbFrame } from '../common/frame.js';

export { frameBytes, i420Layout, type I420Layout } from '../common/frame.js';

/**
 * YUV 4:2:0 frames (I420, limited range, BT.601), the layout the cameras' frame sources deliver
 * (docs/decisions/0029-frames-stay-yuv.md). The detector's preprocessing reads them directly (preprocess.ts);
 * only a frame that becomes evidence is converted to RGB, here.
 */

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
// biome-ignore lint/complexity/useMathMinMax: two comparisons, no call: this runs three times per pixel of an evidence frame
export const clamp255 = (v: number): number => (v < 0 ? 0 : v > 255 ? 255 : v);

/** Throws unless `data` holds a whole I420 frame of width×height. */
export function checkI420(width: number, height: number, data: Uint8Array): I420Layout {
  const layout = i420Layout(width, height);
  if (data.length < layout.bytes)
    throw new RangeError(`frame of ${width}x${height} needs ${layout.bytes} bytes of YUV 4:2:0, got ${data.length}`);
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
