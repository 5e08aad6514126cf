import type { Candidates } from './nms.js';

/** Input size the boxes are clipped to, and the number of classes of a YOLO output. */
export interface YoloLayout {
  inputWidth: number;
  inputHeight: number;
  numClasses: number;
}

/**
 * YOLOv5 output [1, N, 5 + C]: per box cx, cy, w, h in input pixels, objectness, then C class scores, all
 * already sigmoided by the export. One candidate per box (its best class), score = objectness × class score,
 * kept when it passes `scoreThreshold`; boxes clipped to the input. `into` is cleared first.
 */
export function decodeYolov5(
  output: Float32Array,
  boxes: number,
  layout: YoloLayout,
  scoreThreshold: number,
  into: Candidates,
): Candidates {
  const { inputWidth: iw, inputHeight: ih, numClasses } = layout;
  const stride = 5 + numClasses;
  if (output.length < boxes * stride)
    throw new RangeError(`YOLOv5 output has ${output.length} values, ${boxes} boxes x ${stride} need ${boxes * stride}`);
  into.clear();
  for (let n = 0; n < boxes; n++) {
    const base = n * stride;
    const objectness = output[base + 4]!;
    // The class score is at most 1, so a box whose objectness fails the threshold cannot pass it.
    if (objectness <= scoreThreshold) continue;
    let best = -1;
    let bestScore = scoreThreshold;
    for (let c = 0; c < numClasses; c++) {
      const v = objectness * output[base + 5 + c]!;
      if (v > bestScore) {
        bestScore = v;
        best = c;
      }
    }
    if (best < 0) continue;
    pushCentreBox(into, output[base]!, output[base + 1]!, output[base + 2]!, output[base + 3]!, iw, ih, bestScore, best);
  }
  return into;
}

/**
 * YOLOv8 / YOLO11 output [1, 4 + C, N], channel-major: row k holds value k of every box; rows 0–3 are
 * cx, cy, w, h in input pixels, rows 4… the class scores (already sigmoided, no objectness). One candidate
 * per box (its best class) when that score passes `scoreThreshold`; boxes clipped to the input.
 */
export function decodeYolov8(
  output: Float32Array,
  boxes: number,
  layout: YoloLayout,
  scoreThreshold: number,
  into: Candidates,
): Candidates {
  const { inputWidth: iw, inputHeight: ih, numClasses } = layout;
  const need = boxes * (4 + numClasses);
  if (output.length < need)
    throw new RangeError(`YOLOv8 output has ${output.length} values, ${4 + numClasses} rows x ${boxes} boxes need ${need}`);
  into.clear();
  for (let n = 0; n < boxes; n++) {
    let best = -1;
    let bestScore = scoreThreshold;
    for (let c = 0; c < numClasses; c++) {
      const v = output[(4 + c) * boxes + n]!;
      if (v > bestScore) {
        bestScore = v;
        best = c;
      }
    }
    if (best < 0) continue;
    pushCentreBox(into, output[n]!, output[boxes + n]!, output[2 * boxes + n]!, output[3 * boxes + n]!, iw, ih, bestScore, best);
  }
  return into;
}

function pushCentreBox(
  into: Candidates,
  cx: number,
  cy: number,
  w: number,
  h: number,
  iw: number,
  ih: number,
  score: number,
  classId: number,
): void {
  const x1 = Math.max(0, cx - w / 2);
  const y1 = Math.max(0, cy - h / 2);
  const x2 = Math.min(iw, cx + w / 2);
  const y2 = Math.min(ih, cy + h / 2);
  if (x2 > x1 && y2 > y1) into.push(x1, y1, x2, y2, score, classId);
}
