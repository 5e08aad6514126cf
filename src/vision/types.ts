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

/** One detected object, box in pixels of the frame it was detected on. */
export interface Detection {
  class: string;
  classId: number;
  score: number;
  /** x1, y1, x2, y2 in pixels of the input frame. */
  box: [number, number, number, number];
}
