import { nativeVision } from './native.js';
import type { Candidates } from './nms.js';

/** What the decoder needs to know about a NanoDet (GFL head) output of shape [1, N, numClasses + 4·(regMax+1)]. */
export interface NanodetLayout {
  inputWidth: number;
  inputHeight: number;
  strides: readonly number[];
  regMax: number;
  numClasses: number;
}

/** Number of cells N: per stride a ceil(H/s) × ceil(W/s) grid, strides in the given order. */
export function nanodetCellCount(layout: NanodetLayout): number {
  return layout.strides.reduce((n, s) => n + Math.ceil(layout.inputHeight / s) * Math.ceil(layout.inputWidth / s), 0);
}

/**
 * Expected bin index of one side's distribution: softmax over regMax+1 logits starting at `at`,
 * then Σ p_k · k. Max-subtracted so large logits do not overflow.
 */
function expectedBin(out: Float32Array, at: number, bins: number): number {
  let max = -Infinity;
  for (let k = 0; k < bins; k++) max = Math.max(max, out[at + k]!);
  let sum = 0;
  let weighted = 0;
  for (let k = 0; k < bins; k++) {
    const e = Math.exp(out[at + k]! - max);
    sum += e;
    weighted += e * k;
  }
  return weighted / sum;
}

/** Rows that passed the class scan (native/vision.c), reused between calls: decoding is synchronous. */
let passed = { cells: new Int32Array(0), best: new Int32Array(0), scores: new Float32Array(0) };

/**
 * Decodes a NanoDet output into `into` (cleared first): for each cell whose best class score passes
 * `scoreThreshold`, one candidate of that class (one label per box, as the tracker and rules expect),
 * box = cell centre ((x+0.5)·s, (y+0.5)·s) minus/plus the expected l, t, r, b distances × s,
 * clipped to the input, in model input pixels. Scores are used as given (the model already applied sigmoid).
 * The scan for each cell's best class runs in C where the addon is built, unless `native` is false (tests).
 */
export function decodeNanodet(
  output: Float32Array,
  layout: NanodetLayout,
  scoreThreshold: number,
  into: Candidates,
  native = true,
): Candidates {
  const { inputWidth: iw, inputHeight: ih, strides, regMax, numClasses } = layout;
  const bins = regMax + 1;
  const stride = numClasses + 4 * bins;
  const cells = nanodetCellCount(layout);
  if (output.length < cells * stride) {
    throw new RangeError(`NanoDet output has ${output.length} values; ${cells} cells × ${stride} need ${cells * stride}`);
  }
  into.clear();
  const push = (cell: number, gx: number, gy: number, s: number, best: number, score: number): void => {
    const reg = cell * stride + numClasses;
    const cx = (gx + 0.5) * s;
    const cy = (gy + 0.5) * s;
    const x1 = Math.max(0, cx - expectedBin(output, reg, bins) * s);
    const y1 = Math.max(0, cy - expectedBin(output, reg + bins, bins) * s);
    const x2 = Math.min(iw, cx + expectedBin(output, reg + 2 * bins, bins) * s);
    const y2 = Math.min(ih, cy + expectedBin(output, reg + 3 * bins, bins) * s);
    into.push(x1, y1, x2, y2, score, best);
  };
  const vision = native ? nativeVision() : null;
  if (vision?.ok) {
    if (passed.cells.length < cells)
      passed = { cells: new Int32Array(cells), best: new Int32Array(cells), scores: new Float32Array(cells) };
    const n = vision.addon.bestClasses(output, cells, stride, 0, numClasses, scoreThreshold, passed.cells, passed.best, passed.scores);
    // Cells come in order; walk the strides' grids alongside.
    let level = 0;
    let levelStart = 0;
    let gw = Math.ceil(iw / strides[0]!);
    let levelCells = gw * Math.ceil(ih / strides[0]!);
    for (let i = 0; i < n; i++) {
      const cell = passed.cells[i]!;
      while (cell >= levelStart + levelCells) {
        levelStart += levelCells;
        level++;
        gw = Math.ceil(iw / strides[level]!);
        levelCells = gw * Math.ceil(ih / strides[level]!);
      }
      const local = cell - levelStart;
      push(cell, local % gw, Math.floor(local / gw), strides[level]!, passed.best[i]!, passed.scores[i]!);
    }
    return into;
  }
  let cell = 0;
  for (const s of strides) {
    const gw = Math.ceil(iw / s);
    const gh = Math.ceil(ih / s);
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++, cell++) {
        const base = cell * stride;
        let best = -1;
        let bestScore = scoreThreshold;
        for (let c = 0; c < numClasses; c++) {
          const v = output[base + c]!;
          if (v > bestScore) {
            bestScore = v;
            best = c;
          }
        }
        if (best >= 0) push(cell, gx, gy, s, best, bestScore);
      }
    }
  }
  return into;
}
