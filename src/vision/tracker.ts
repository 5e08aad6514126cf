/**
 * A small IoU-greedy multi-object tracker: each frame's detections are matched to the live tracks of the same
 * class, best overlap first. A track that finds no detection coasts on its last box for up to `maxMissed`
 * frames (a passing bus hides a parked car), then ends. Pure; boxes may be in pixels or normalized, as long
 * as one tracker always gets the same kind.
 *
 * The interface is kept to `update(ts, detections) → tracks` so a ByteTrack-style tracker can replace it.
 */

export type TrackBox = [number, number, number, number];

export interface TrackerOptions {
  /** Minimum overlap (intersection over union) for a detection to continue a track. Default 0.3. */
  iouThreshold?: number;
  /** Frames a track may go undetected before it ends. Default 5. */
  maxMissed?: number;
}

export interface TrackInput {
  class: string;
  score: number;
  box: readonly [number, number, number, number];
}

export interface Track {
  /** Stable for the life of the track, unique per tracker, increasing from 1. */
  id: number;
  class: string;
  /** Score of the latest matched detection. */
  score: number;
  /** Box of the latest matched detection. */
  box: TrackBox;
  /** Box of the detection that started the track. */
  firstBox: TrackBox;
  firstSeen: number;
  /** Time of the latest matched detection. */
  lastSeen: number;
  /** Consecutive frames without a matching detection; 0 when seen in the latest frame. */
  missed: number;
}

function iou(a: TrackBox, b: readonly number[]): number {
  const w = Math.min(a[2], b[2]!) - Math.max(a[0], b[0]!);
  const h = Math.min(a[3], b[3]!) - Math.max(a[1], b[1]!);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const area = (x: readonly number[]): number => (x[2]! - x[0]!) * (x[3]! - x[1]!);
  return inter / (area(a) + area(b) - inter);
}

export class Tracker {
  private readonly iouThreshold: number;
  private readonly maxMissed: number;
  private tracks: Track[] = [];
  private nextId = 1;

  constructor(opts: TrackerOptions = {}) {
    this.iouThreshold = opts.iouThreshold ?? 0.3;
    this.maxMissed = opts.maxMissed ?? 5;
  }

  /**
   * Feeds one frame's detections (call it only for frames the detector ran on) and returns every live track:
   * those seen in this frame (`missed === 0`) and those coasting. The returned objects are copies.
   */
  update(ts: number, detections: readonly TrackInput[]): Track[] {
    const pairs: { t: number; d: number; iou: number }[] = [];
    this.tracks.forEach((track, t) => {
      detections.forEach((det, d) => {
        if (det.class !== track.class) return;
        const overlap = iou(track.box, det.box);
        if (overlap >= this.iouThreshold) pairs.push({ t, d, iou: overlap });
      });
    });
    pairs.sort((a, b) => b.iou - a.iou);

    const trackTaken = new Set<number>();
    const detTaken = new Set<number>();
    for (const { t, d } of pairs) {
      if (trackTaken.has(t) || detTaken.has(d)) continue;
      trackTaken.add(t);
      detTaken.add(d);
      const track = this.tracks[t]!;
      const det = detections[d]!;
      track.box = [...det.box];
      track.score = det.score;
      track.lastSeen = ts;
      track.missed = 0;
    }

    this.tracks.forEach((track, t) => {
      if (!trackTaken.has(t)) track.missed++;
    });
    this.tracks = this.tracks.filter((track) => track.missed <= this.maxMissed);

    detections.forEach((det, d) => {
      if (detTaken.has(d)) return;
      this.tracks.push({
        id: this.nextId++,
        class: det.class,
        score: det.score,
        box: [...det.box],
        firstBox: [...det.box],
        firstSeen: ts,
        lastSeen: ts,
        missed: 0,
      });
    });

    return this.tracks.map((track) => ({ ...track, box: [...track.box], firstBox: [...track.firstBox] }));
  }
}
