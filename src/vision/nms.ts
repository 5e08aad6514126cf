/**
 * Scored boxes before suppression, in flat typed arrays that a decoder refills every frame.
 * Box i is boxes[4i..4i+3] = x1, y1, x2, y2.
 */
export class Candidates {
  count = 0;
  boxes: Float32Array;
  scores: Float32Array;
  classIds: Int32Array;
  private order: Int32Array;

  constructor(capacity = 256) {
    this.boxes = new Float32Array(capacity * 4);
    this.scores = new Float32Array(capacity);
    this.classIds = new Int32Array(capacity);
    this.order = new Int32Array(capacity);
  }

  clear(): void {
    this.count = 0;
  }

  push(x1: number, y1: number, x2: number, y2: number, score: number, classId: number): void {
    if (this.count === this.scores.length) this.grow();
    const i = this.count++;
    this.boxes[i * 4] = x1;
    this.boxes[i * 4 + 1] = y1;
    this.boxes[i * 4 + 2] = x2;
    this.boxes[i * 4 + 3] = y2;
    this.scores[i] = score;
    this.classIds[i] = classId;
  }

  /** Indices 0..count-1 sorted by descending score, in a buffer reused between calls. */
  sortedByScore(): Int32Array {
    const order = this.order.subarray(0, this.count);
    for (let i = 0; i < this.count; i++) order[i] = i;
    const scores = this.scores;
    order.sort((a, b) => scores[b]! - scores[a]! || a - b);
    return order;
  }

  private grow(): void {
    const capacity = this.scores.length * 2;
    const boxes = new Float32Array(capacity * 4);
    boxes.set(this.boxes);
    const scores = new Float32Array(capacity);
    scores.set(this.scores);
    const classIds = new Int32Array(capacity);
    classIds.set(this.classIds);
    this.boxes = boxes;
    this.scores = scores;
    this.classIds = classIds;
    this.order = new Int32Array(capacity);
  }
}

/** Intersection over union of boxes i and j of a flat x1,y1,x2,y2 array. */
export function iou(boxes: Float32Array, i: number, j: number): number {
  const ax1 = boxes[i * 4]!,
    ay1 = boxes[i * 4 + 1]!,
    ax2 = boxes[i * 4 + 2]!,
    ay2 = boxes[i * 4 + 3]!;
  const bx1 = boxes[j * 4]!,
    by1 = boxes[j * 4 + 1]!,
    bx2 = boxes[j * 4 + 2]!,
    by2 = boxes[j * 4 + 3]!;
  const iw = Math.min(ax2, bx2) - Math.max(ax1, bx1);
  const ih = Math.min(ay2, by2) - Math.max(ay1, by1);
  if (iw <= 0 || ih <= 0) return 0;
  const inter = iw * ih;
  const union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter;
  return union > 0 ? inter / union : 0;
}

/**
 * Class-wise greedy non-maximum suppression: a box is dropped when a higher-scoring kept box of the
 * same class overlaps it by more than `iouThreshold`; boxes of different classes never suppress each
 * other. Returns the kept indices by descending score, at most `topK` of them.
 */
export function nms(c: Candidates, iouThreshold: number, topK = Infinity): number[] {
  const kept: number[] = [];
  if (c.count === 0 || topK <= 0) return kept;
  const order = c.sortedByScore();
  for (let n = 0; n < order.length; n++) {
    const i = order[n]!;
    const cls = c.classIds[i]!;
    let suppressed = false;
    for (const k of kept) {
      if (c.classIds[k] === cls && iou(c.boxes, i, k) > iouThreshold) {
        suppressed = true;
        break;
      }
    }
    if (suppressed) continue;
    kept.push(i);
    if (kept.length >= topK) break;
  }
  return kept;
}
