/** Number of cells N: per stride a ceil(H/s) × ceil(W/s) grid, strides in the given order. */
export function nanodetCellCount(layout) {
    return layout.strides.reduce((n, s) => n + Math.ceil(layout.inputHeight / s) * Math.ceil(layout.inputWidth / s), 0);
}
/**
 * Expected bin index of one side's distribution: softmax over regMax+1 logits starting at `at`,
 * then Σ p_k · k. Max-subtracted so large logits do not overflow.
 */
function expectedBin(out, at, bins) {
    let max = -Infinity;
    for (let k = 0; k < bins; k++)
        max = Math.max(max, out[at + k]);
    let sum = 0;
    let weighted = 0;
    for (let k = 0; k < bins; k++) {
        const e = Math.exp(out[at + k] - max);
        sum += e;
        weighted += e * k;
    }
    return weighted / sum;
}
/**
 * Decodes a NanoDet output into `into` (cleared first): for each cell whose best class score passes
 * `scoreThreshold`, one candidate of that class (one label per box, as the tracker and rules expect),
 * box = cell centre ((x+0.5)·s, (y+0.5)·s) minus/plus the expected l, t, r, b distances × s,
 * clipped to the input, in model input pixels. Scores are used as given (the model already applied sigmoid).
 */
export function decodeNanodet(output, layout, scoreThreshold, into) {
    const { inputWidth: iw, inputHeight: ih, strides, regMax, numClasses } = layout;
    const bins = regMax + 1;
    const stride = numClasses + 4 * bins;
    const cells = nanodetCellCount(layout);
    if (output.length < cells * stride) {
        throw new RangeError(`NanoDet output has ${output.length} values; ${cells} cells × ${stride} need ${cells * stride}`);
    }
    into.clear();
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
                    const v = output[base + c];
                    if (v > bestScore) {
                        bestScore = v;
                        best = c;
                    }
                }
                if (best < 0)
                    continue;
                const reg = base + numClasses;
                const cx = (gx + 0.5) * s;
                const cy = (gy + 0.5) * s;
                const x1 = Math.max(0, cx - expectedBin(output, reg, bins) * s);
                const y1 = Math.max(0, cy - expectedBin(output, reg + bins, bins) * s);
                const x2 = Math.min(iw, cx + expectedBin(output, reg + 2 * bins, bins) * s);
                const y2 = Math.min(ih, cy + expectedBin(output, reg + 3 * bins, bins) * s);
                into.push(x1, y1, x2, y2, bestScore, best);
            }
        }
    }
    return into;
}
