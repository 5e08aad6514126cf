/**
 * Agreement of a detector `a` with a reference detector `b` on the same frames: b's detections are the
 * ground truth, a match is the same class at IoU ≥ 0.5, each reference box matched at most once.
 * Pure functions over detection lists; src/cli/model.ts runs the detectors.
 */

export interface Box {
  classId: number;
  score: number;
  box: readonly [number, number, number, number];
}

export interface FrameDetections {
  /** a's detections at the operating threshold (precision, recall, F1, score drift). */
  a: readonly Box[];
  /** a's detections at a low threshold, ranked by score (average precision). */
  aAll: readonly Box[];
  /** The reference: b's detections at the operating threshold. */
  b: readonly Box[];
}

/** Detections scored against reference boxes (another model's, or hand labels). */
export interface DetectionScores {
  detections: number;
  truePositives: number;
  precision: number;
  recall: number;
  f1: number;
  /** Mean over the reference's classes of the all-point interpolated AP at IoU 0.5. */
  map50: number;
}

export interface Agreement extends DetectionScores {
  frames: number;
  reference: number;
  /** Per class: reference count and AP. */
  perClass: Record<number, { reference: number; ap: number }>;
  /** Over matched pairs: mean of score_a − score_b, and mean and max of its absolute value. */
  scoreDrift: { mean: number; meanAbs: number; maxAbs: number; pairs: number };
}

export function boxIou(a: Box['box'], b: Box['box']): number {
  const iw = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const ih = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Greedy matching by descending score of `dets`: each takes the unmatched reference box of its class with
 * the highest IoU, if that IoU ≥ `iouThreshold`. Returns, per detection, the index of its reference box or -1.
 */
export function matchDetections(dets: readonly Box[], ref: readonly Box[], iouThreshold = 0.5): number[] {
  const order = dets.map((_, i) => i).sort((i, j) => dets[j]!.score - dets[i]!.score || i - j);
  const taken = new Uint8Array(ref.length);
  const match = new Array<number>(dets.length).fill(-1);
  for (const i of order) {
    const d = dets[i]!;
    let best = -1;
    let bestIou = iouThreshold;
    ref.forEach((r, k) => {
      if (taken[k] || r.classId !== d.classId) return;
      const v = boxIou(d.box, r.box);
      if (v >= bestIou) {
        bestIou = v;
        best = k;
      }
    });
    if (best >= 0) {
      taken[best] = 1;
      match[i] = best;
    }
  }
  return match;
}

/** All-point interpolated average precision of ranked hits (true/false), given the number of reference boxes. */
export function averagePrecision(hits: readonly boolean[], references: number): number {
  if (references === 0) return 0;
  const precision: number[] = [];
  const recall: number[] = [];
  let tp = 0;
  hits.forEach((hit, i) => {
    if (hit) tp++;
    precision.push(tp / (i + 1));
    recall.push(tp / references);
  });
  // Precision envelope from the right, then area under the recall steps.
  for (let i = precision.length - 2; i >= 0; i--) precision[i] = Math.max(precision[i]!, precision[i + 1]!);
  let ap = 0;
  let prevRecall = 0;
  recall.forEach((r, i) => {
    ap += (r - prevRecall) * precision[i]!;
    prevRecall = r;
  });
  return ap;
}

export function compareDetections(frames: readonly FrameDetections[], iouThreshold = 0.5): Agreement {
  let reference = 0,
    detections = 0,
    tp = 0;
  const drifts: number[] = [];
  const ranked = new Map<number, { score: number; hit: boolean }[]>();
  const refCount = new Map<number, number>();
  for (const f of frames) {
    reference += f.b.length;
    detections += f.a.length;
    for (const r of f.b) refCount.set(r.classId, (refCount.get(r.classId) ?? 0) + 1);
    matchDetections(f.a, f.b, iouThreshold).forEach((k, i) => {
      if (k < 0) return;
      tp++;
      drifts.push(f.a[i]!.score - f.b[k]!.score);
    });
    // Matching per frame, then ranking across frames per class, as VOC and COCO evaluation do.
    matchDetections(f.aAll, f.b, iouThreshold).forEach((k, i) => {
      const d = f.aAll[i]!;
      const list = ranked.get(d.classId) ?? [];
      list.push({ score: d.score, hit: k >= 0 });
      ranked.set(d.classId, list);
    });
  }
  const perClass: Agreement['perClass'] = {};
  for (const [classId, n] of refCount) {
    const list = (ranked.get(classId) ?? []).sort((x, y) => y.score - x.score);
    perClass[classId] = {
      reference: n,
      ap: averagePrecision(
        list.map((x) => x.hit),
        n,
      ),
    };
  }
  const aps = Object.values(perClass).map((c) => c.ap);
  const precision = detections ? tp / detections : reference ? 0 : 1;
  const recall = reference ? tp / reference : 1;
  const abs = drifts.map(Math.abs);
  return {
    frames: frames.length,
    reference,
    detections,
    truePositives: tp,
    precision,
    recall,
    f1: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0,
    map50: aps.length ? aps.reduce((x, y) => x + y, 0) / aps.length : 1,
    perClass,
    scoreDrift: {
      mean: drifts.length ? drifts.reduce((x, y) => x + y, 0) / drifts.length : 0,
      meanAbs: abs.length ? abs.reduce((x, y) => x + y, 0) / abs.length : 0,
      maxAbs: abs.length ? Math.max(...abs) : 0,
      pairs: drifts.length,
    },
  };
}
