export type { RgbFrame, YuvFrame, Frame } from '../common/frame.js';

/** One detected object, box in pixels of the frame it was detected on. */
export interface Detection {
  class: string;
  classId: number;
  score: number;
  /** x1, y1, x2, y2 in pixels of the input frame. */
  box: [number, number, number, number];
}
