import { pointInPolygon } from '../rules/geometry.js';
/** At most this many samples per block side: enough to average out noise, cheap at any resolution. */
const MAX_SAMPLES = 4;
export class MotionDetector {
    w;
    threshold;
    minArea;
    tauMs;
    resetArea;
    masks;
    h = 0;
    srcW = 0;
    srcH = 0;
    grey = new Float32Array(0);
    background = new Float32Array(0);
    /** 1 where motion counts. */
    active = new Uint8Array(0);
    activeCount = 0;
    /** Source byte offsets of each small column's sample columns (×3), and each small row's sample rows. */
    colSamples = new Int32Array(0);
    rowSamples = new Int32Array(0);
    colN = 0;
    rowN = 0;
    lastTs = 0;
    /** Whether `background` holds a frame of the current layout. */
    primed = false;
    constructor(opts = {}) {
        this.w = opts.width ?? 160;
        this.threshold = opts.threshold ?? 25;
        this.minArea = opts.minArea ?? 0.002;
        this.tauMs = (opts.backgroundSeconds ?? 10) * 1000;
        this.resetArea = opts.resetArea ?? 0.6;
        this.masks = opts.masks ?? [];
    }
    update(frame) {
        if (frame.width !== this.srcW || frame.height !== this.srcH)
            this.layout(frame.width, frame.height);
        this.shrink(frame);
        const dt = Math.max(0, frame.ts - this.lastTs);
        this.lastTs = frame.ts;
        if (!this.primed) {
            this.primed = true;
            this.background.set(this.grey);
            return { motion: true, changed: 1, reset: true };
        }
        const { w, h, grey, background, active, threshold } = this;
        let changed = 0;
        let x1 = w;
        let y1 = h;
        let x2 = -1;
        let y2 = -1;
        for (let y = 0, i = 0; y < h; y++) {
            for (let x = 0; x < w; x++, i++) {
                if (active[i] && Math.abs(grey[i] - background[i]) > threshold) {
                    changed++;
                    if (x < x1)
                        x1 = x;
                    if (x > x2)
                        x2 = x;
                    if (y < y1)
                        y1 = y;
                    if (y > y2)
                        y2 = y;
                }
            }
        }
        const fraction = this.activeCount > 0 ? changed / this.activeCount : 0;
        if (fraction > this.resetArea) {
            background.set(grey);
            return { motion: true, changed: fraction, box: [0, 0, 1, 1], reset: true };
        }
        const alpha = 1 - Math.exp(-dt / this.tauMs);
        for (let i = 0; i < grey.length; i++)
            background[i] = background[i] + alpha * (grey[i] - background[i]);
        const result = { motion: changed > 0 && fraction >= this.minArea, changed: fraction, reset: false };
        if (changed > 0)
            result.box = [x1 / w, y1 / h, (x2 + 1) / w, (y2 + 1) / h];
        return result;
    }
    layout(srcW, srcH) {
        this.srcW = srcW;
        this.srcH = srcH;
        const w = this.w;
        const h = Math.max(1, Math.round((w * srcH) / srcW));
        this.h = h;
        this.grey = new Float32Array(w * h);
        this.background = new Float32Array(w * h);
        this.primed = false;
        const samples = (src, dst, n, scale) => {
            const out = new Int32Array(dst * n);
            for (let i = 0; i < dst; i++) {
                const lo = (i * src) / dst;
                const span = src / dst;
                for (let k = 0; k < n; k++)
                    out[i * n + k] = Math.min(src - 1, Math.floor(lo + ((k + 0.5) * span) / n)) * scale;
            }
            return out;
        };
        this.colN = Math.max(1, Math.min(MAX_SAMPLES, Math.floor(srcW / w)));
        this.rowN = Math.max(1, Math.min(MAX_SAMPLES, Math.floor(srcH / h)));
        this.colSamples = samples(srcW, w, this.colN, 3);
        this.rowSamples = samples(srcH, h, this.rowN, srcW * 3);
        this.active = new Uint8Array(w * h);
        this.activeCount = 0;
        for (let y = 0, i = 0; y < h; y++) {
            for (let x = 0; x < w; x++, i++) {
                const centre = [(x + 0.5) / w, (y + 0.5) / h];
                const masked = this.masks.some((m) => pointInPolygon(centre, m));
                this.active[i] = masked ? 0 : 1;
                if (!masked)
                    this.activeCount++;
            }
        }
    }
    /** Block-average grey (BT.601 weights) of the frame into `grey`. */
    shrink(frame) {
        const { w, h, grey, colSamples, rowSamples, colN, rowN } = this;
        const data = frame.data;
        const norm = 1 / (colN * rowN * 256);
        for (let y = 0, i = 0; y < h; y++) {
            for (let x = 0; x < w; x++, i++) {
                let sum = 0;
                for (let r = 0; r < rowN; r++) {
                    const row = rowSamples[y * rowN + r];
                    for (let c = 0; c < colN; c++) {
                        const o = row + colSamples[x * colN + c];
                        sum += data[o] * 77 + data[o + 1] * 150 + data[o + 2] * 29;
                    }
                }
                grey[i] = sum * norm;
            }
        }
    }
}
/**
 * Decides per frame whether the detector runs: on motion, or at the refresh rate while the last detection
 * left objects being tracked. `motion` null turns gating off (every frame is detected).
 */
export class MotionGate {
    motion;
    opts;
    lastDetectAt = Number.NEGATIVE_INFINITY;
    constructor(motion, opts) {
        this.motion = motion;
        this.opts = opts;
    }
    decide(frame, objectsTracked) {
        if (!this.motion)
            return { decision: 'motion' };
        const result = this.motion.update(frame);
        if (result.motion)
            return { decision: 'motion', result };
        if (objectsTracked && frame.ts - this.lastDetectAt >= this.opts.refreshMs)
            return { decision: 'refresh', result };
        return { decision: 'skip', result };
    }
    /** The detector ran on a frame taken at `ts` (it may have been dropped from the queue instead). */
    detected(ts) {
        this.lastDetectAt = ts;
    }
}
