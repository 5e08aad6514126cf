/** Decoded video frames as the frame sources deliver them, and their byte layouts: shared by ingest, vision and evidence. */

/** A decoded video frame, packed RGB24 (width*height*3 bytes): what snapshots, clips read whole and evidence use. */
export interface RgbFrame {
  width: number;
  height: number;
  data: Buffer;
  /** Capture time, ms since the epoch. */
  ts: number;
  format?: 'rgb24';
}

/**
 * A decoded video frame as ffmpeg decodes H.264 and the cameras' frame sources pass it on: planar YUV 4:2:0
 * (I420), the Y plane (width×height) then U then V (each ⌈width/2⌉×⌈height/2⌉), limited range (Y 16–235),
 * BT.601. Half the bytes of RGB24, and no conversion for frames the queue drops (src/vision/yuv.ts).
 */
export interface YuvFrame {
  width: number;
  height: number;
  data: Buffer;
  /** Capture time, ms since the epoch. */
  ts: number;
  format: 'yuv420p';
}

/** A frame in either layout; `format === 'yuv420p'` tells them apart. */
export type Frame = RgbFrame | YuvFrame;

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
