/** A decoded video frame, packed RGB24 (width*height*3 bytes), as ingest hands it to vision. */
export interface RgbFrame {
  width: number;
  height: number;
  data: Buffer;
  /** Capture time, ms since the epoch. */
  ts: number;
}

/** One detected object, box in pixels of the frame it was detected on. */
export interface Detection {
  class: string;
  classId: number;
  score: number;
  /** x1, y1, x2, y2 in pixels of the input frame. */
  box: [number, number, number, number];
}
