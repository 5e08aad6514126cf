/**
 * A ByteTrack-style multi-object tracker (Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every
 * Detection Box", 2022), without its Kalman filter: a constant-velocity prediction of each box, then two rounds
 * of optimal (Hungarian) assignment on IoU —
 *   1. confident detections (score ≥ highThreshold) against every live track, lost ones included;
 *   2. weak detections (lowThreshold ≤ score < highThreshold) against the tracks seen last time that round 1
 *      left unmatched: a half-hidden or blurred object scores low, and that low box still carries its track.
 * Only confident detections start tracks; a track that finds no detection coasts on its predicted box for up
 * to `maxMissed` updates (or `maxMissedMs`), then ends. Matching is per class (one label per box, see src/vision/nanodet.ts).
 *
 * Pure; boxes may be in pixels or normalized, as long as one tracker always gets the same kind. Times are ms.
 */

export type TrackBox = [number, number, number, number];

export interface TrackerOptions {
  /** Minimum overlap (IoU) of a confident detection with a track's predicted box to continue it. Default 0.3. */
  iouThreshold?: number;
  /** Minimum overlap for a weak detection (round 2); stricter because weak boxes are often false. Default 0.5. */
  lowIouThreshold?: number;
  /** Detections scoring at least this start tracks and are matched first. Default 0.5. */
  highThreshold?: number;
  /** Detections scoring below this are ignored. Default 0.1. */
  lowThreshold?: number;
  /** Updates a track may go unmatched before it ends. Default 5. Ignored when `maxMissedMs` is given. */
  maxMissed?: number;
  /**
   * Time a track may go unmatched before it ends, for callers whose detector runs at irregular intervals (a
   * motion gate): the track ends on the first update more than this after it was last seen, but never on its
   * first missed update, because with sparse runs one missed detection may span longer than this.
   */
  maxMissedMs?: number;
  /**
   * A track is stationary once its box centre has stayed within this fraction of the box's diagonal of
   * where it stopped for `stationaryMs`. Default 0.25.
   */
  stationaryDistance?: number;
  /** Default 3000. */
  stationaryMs?: number;
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
  /** Consecutive updates without a matching detection; 0 when seen in the latest update. */
  missed: number;
  /** Since when the box centre has stayed put (see TrackerOptions.stationaryDistance). */
  stillSince: number;
  /** Still for at least `stationaryMs`: a parked car, a standing vendor. */
  stationary: boolean;
}

interface TrackState extends Track {
  /** Box centre velocity, units per ms, smoothed over matches. */
  vx: number;
  vy: number;
  /** Where the centre was when it stopped moving. */
  anchorX: number;
  anchorY: number;
  /** The box this update's matching uses: `box` moved by the velocity to the update's time. */
  predicted: TrackBox;
}

/** Weight of the newest measured velocity; the rest is the previous estimate (detector jitter is large). */
const VELOCITY_GAIN = 0.5;
/**
 * Prediction never extrapolates further than this: with motion gating the detector may not run for seconds,
 * and a pedestrian's old velocity says little about where they are 10 s later.
 */
const MAX_PREDICT_MS = 3000;

function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!);
  const h = Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const area = (x: readonly number[]): number => (x[2]! - x[0]!) * (x[3]! - x[1]!);
  return inter / (area(a) + area(b) - inter);
}

/**
 * Minimum-cost assignment of rows to columns (Hungarian method with potentials, O(n²·m)); `cost[r][c]`,
 * n rows ≤ m columns. Returns the column of each row.
 */
function assignRows(cost: number[][], n: number, m: number): number[] {
  const u = new Float64Array(n + 1);
  const v = new Float64Array(m + 1);
  const p = new Int32Array(m + 1); // p[col] = row (1-based) assigned to col, 0 = none
  const way = new Int32Array(m + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(m + 1).fill(Infinity);
    const used = new Uint8Array(m + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= m; j++) {
        if (used[j]) continue;
        const cur = cost[i0 - 1]![j - 1]! - u[i0]! - v[j]!;
        if (cur < minv[j]!) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= m; j++) {
        if (used[j]) {
          u[p[j]!] = u[p[j]!]! + delta;
          v[j] = v[j]! - delta;
        } else minv[j] = minv[j]! - delta;
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const colOf = new Array<number>(n).fill(-1);
  for (let j = 1; j <= m; j++) if (p[j]! > 0) colOf[p[j]! - 1] = j - 1;
  return colOf;
}

/**
 * The pairs (track index, detection index) of the assignment that maximises total IoU among pairs of one class
 * overlapping at least `threshold`.
 */
function match(tracks: readonly TrackState[], dets: readonly TrackInput[], threshold: number): [number, number][] {
  if (tracks.length === 0 || dets.length === 0) return [];
  const overlap = tracks.map((t) => dets.map((d) => (d.class === t.class ? iou(t.predicted, d.box) : 0)));
  // A pair below the threshold costs more than any valid assignment could save, so it is chosen only when a
  // row has no valid column left, and is dropped below.
  const forbidden = 1 + Math.min(tracks.length, dets.length);
  const cost = (ti: number, di: number): number => {
    const o = overlap[ti]![di]!;
    return o >= threshold ? 1 - o : forbidden;
  };
  const rowsAreTracks = tracks.length <= dets.length;
  const n = rowsAreTracks ? tracks.length : dets.length;
  const m = rowsAreTracks ? dets.length : tracks.length;
  const matrix = Array.from({ length: n }, (_, r) => Array.from({ length: m }, (_, c) => (rowsAreTracks ? cost(r, c) : cost(c, r))));
  const pairs: [number, number][] = [];
  assignRows(matrix, n, m).forEach((c, r) => {
    const [ti, di] = rowsAreTracks ? [r, c] : [c, r];
    if (c >= 0 && overlap[ti]![di]! >= threshold) pairs.push([ti, di]);
  });
  return pairs;
}

const centre = (b: readonly number[]): [number, number] => [(b[0]! + b[2]!) / 2, (b[1]! + b[3]!) / 2];

export class Tracker {
  private readonly iouThreshold: number;
  private readonly lowIouThreshold: number;
  private readonly highThreshold: number;
  private readonly lowThreshold: number;
  private readonly maxMissed: number;
  private readonly maxMissedMs: number | undefined;
  private readonly stationaryDistance: number;
  private readonly stationaryMs: number;
  private tracks: TrackState[] = [];
  private nextId = 1;

  constructor(opts: TrackerOptions = {}) {
    this.iouThreshold = opts.iouThreshold ?? 0.3;
    this.lowIouThreshold = opts.lowIouThreshold ?? 0.5;
    this.highThreshold = opts.highThreshold ?? 0.5;
    this.lowThreshold = opts.lowThreshold ?? 0.1;
    this.maxMissed = opts.maxMissed ?? 5;
    this.maxMissedMs = opts.maxMissedMs;
    this.stationaryDistance = opts.stationaryDistance ?? 0.25;
    this.stationaryMs = opts.stationaryMs ?? 3000;
  }

  /** Live tracks right now (the same as the last update returned). */
  get size(): number {
    return this.tracks.length;
  }

  /**
   * Feeds one frame's detections (call it only for frames the detector ran on, in time order) and returns
   * every live track: those seen in this frame (`missed === 0`) and those coasting. The returned objects are
   * copies.
   */
  update(ts: number, detections: readonly TrackInput[]): Track[] {
    for (const t of this.tracks) this.predict(t, ts);
    const high: number[] = [];
    const low: number[] = [];
    detections.forEach((d, i) => {
      if (d.score >= this.highThreshold) high.push(i);
      else if (d.score >= this.lowThreshold) low.push(i);
    });

    const matched = new Set<TrackState>();
    const used = new Set<number>();
    const apply = (candidates: TrackState[], detIdx: number[], threshold: number): void => {
      for (const [ti, di] of match(
        candidates,
        detIdx.map((i) => detections[i]!),
        threshold,
      )) {
        const track = candidates[ti]!;
        this.observe(track, ts, detections[detIdx[di]!]!);
        matched.add(track);
        used.add(detIdx[di]!);
      }
    };
    apply(this.tracks, high, this.iouThreshold);
    apply(
      this.tracks.filter((t) => !matched.has(t) && t.missed === 0),
      low,
      this.lowIouThreshold,
    );

    for (const t of this.tracks) if (!matched.has(t)) t.missed++;
    this.tracks = this.tracks.filter((t) => !this.expired(t, ts));
    for (const i of high) if (!used.has(i)) this.tracks.push(this.start(ts, detections[i]!));

    return this.tracks.map((t) => ({
      id: t.id,
      class: t.class,
      score: t.score,
      box: [...t.box],
      firstBox: [...t.firstBox],
      firstSeen: t.firstSeen,
      lastSeen: t.lastSeen,
      missed: t.missed,
      stillSince: t.stillSince,
      stationary: t.stationary,
    }));
  }

  private expired(t: TrackState, ts: number): boolean {
    if (this.maxMissedMs === undefined) return t.missed > this.maxMissed;
    return t.missed >= 2 && ts - t.lastSeen > this.maxMissedMs;
  }

  private start(ts: number, det: TrackInput): TrackState {
    const [cx, cy] = centre(det.box);
    return {
      id: this.nextId++,
      class: det.class,
      score: det.score,
      box: [...det.box],
      firstBox: [...det.box],
      predicted: [...det.box],
      firstSeen: ts,
      lastSeen: ts,
      missed: 0,
      vx: 0,
      vy: 0,
      anchorX: cx,
      anchorY: cy,
      stillSince: ts,
      stationary: false,
    };
  }

  private predict(t: TrackState, ts: number): void {
    const dt = Math.min(ts - t.lastSeen, MAX_PREDICT_MS);
    const dx = t.vx * dt;
    const dy = t.vy * dt;
    t.predicted = [t.box[0] + dx, t.box[1] + dy, t.box[2] + dx, t.box[3] + dy];
  }

  private observe(t: TrackState, ts: number, det: TrackInput): void {
    const dt = ts - t.lastSeen;
    const [px, py] = centre(t.box);
    const [cx, cy] = centre(det.box);
    if (dt > 0) {
      const first = t.lastSeen === t.firstSeen;
      t.vx = first ? (cx - px) / dt : VELOCITY_GAIN * ((cx - px) / dt) + (1 - VELOCITY_GAIN) * t.vx;
      t.vy = first ? (cy - py) / dt : VELOCITY_GAIN * ((cy - py) / dt) + (1 - VELOCITY_GAIN) * t.vy;
    }
    t.box = [...det.box];
    t.score = det.score;
    t.lastSeen = ts;
    t.missed = 0;
    const diagonal = Math.hypot(det.box[2] - det.box[0], det.box[3] - det.box[1]);
    if (Math.hypot(cx - t.anchorX, cy - t.anchorY) > this.stationaryDistance * diagonal) {
      t.anchorX = cx;
      t.anchorY = cy;
      t.stillSince = ts;
    }
    t.stationary = ts - t.stillSince >= this.stationaryMs;
  }
}
