import { pointInPolygon, type Point } from '../common/geometry.js';
import type { Frame } from './types.js';
import { KY } from './yuv.js';

/**
 * Motion gating, as Frigate does it: the detector runs only on frames where something moved. Each frame is
 * shrunk to a small grey image (block averages of a few samples per block, so a 1280×720 frame costs about as
 * much as a 640×480 one), compared with a slowly updated background, and the pixels that differ by more than
 * `threshold` are counted outside the masks. Pure apart from its own buffers; no allocation per frame.
 */
export interface MotionOptions {
  /** Width of the grey image motion is computed on; the height keeps the frame's aspect. Default 160. */
  width?: number;
  /** A pixel changed when its grey level differs from the background by more than this (0..255). Default 25. */
  threshold?: number;
  /** Motion when the changed pixels cover at least this fraction of the unmasked image. Default 0.002. */
  minArea?: number;
  /**
   * Time constant of the background, seconds: a change that stays about this long (a car that parked, a
   * shadow that moved) fades into the background. Default 10.
   */
  backgroundSeconds?: number;
  /** Above this changed fraction the whole scene changed (lights, IR switch, camera knocked): the background restarts. Default 0.6. */
  resetArea?: number;
  /** Polygons in normalized frame coordinates where motion is ignored (trees, a clock overlay, a road outside the zones). */
  masks?: readonly (readonly Point[])[];
}

export interface MotionResult {
  motion: boolean;
  /** Fraction of the unmasked image that changed. */
  changed: number;
  /** Normalized bounding box of the changed pixels, when any changed. */
  box?: [number, number, number, number];
  /** The background was (re)started on this frame: the first frame, a size change, or a whole-scene change. */
  reset: boolean;
}

/** At most this many samples per block side: enough to average out noise, cheap at any resolution. */
const MAX_SAMPLES = 4;

export class MotionDetector {
  private readonly w: number;
  private readonly threshold: number;
  private readonly minArea: number;
  private readonly tauMs: number;
  private readonly resetArea: number;
  private masks: readonly (readonly Point[])[];
  private h = 0;
  private srcW = 0;
  private srcH = 0;
  private grey = new Float32Array(0);
  private background = new Float32Array(0);
  /** 1 where motion counts. */
  private active = new Uint8Array(0);
  private activeCount = 0;
  /** Whether the layout is for YUV frames (grey read from the Y plane) rather than RGB. */
  private yuv = false;
  /** Source byte offsets of each small column's sample columns (×3 for RGB), and each small row's sample rows. */
  private colSamples: Int32Array = new Int32Array(0);
  private rowSamples: Int32Array = new Int32Array(0);
  private colN = 0;
  private rowN = 0;
  private lastTs = 0;
  /** Whether `background` holds a frame of the current layout. */
  private primed = false;

  constructor(opts: MotionOptions = {}) {
    this.w = opts.width ?? 160;
    this.threshold = opts.threshold ?? 25;
    this.minArea = opts.minArea ?? 0.002;
    this.tauMs = (opts.backgroundSeconds ?? 10) * 1000;
    this.resetArea = opts.resetArea ?? 0.6;
    this.masks = opts.masks ?? [];
  }

  /**
   * Forgets the background, as when the camera turned to another view or was paused: the old background would make
   * the whole new view one big change. The next frame starts the background again and counts as motion (a reset),
   * as the first frame does, so the detector looks at the new view at once: objects already standing in it do not
   * move. With `masks`, motion there is ignored from that frame on.
   */
  reset(masks?: readonly (readonly Point[])[]): void {
    this.primed = false;
    if (!masks) return;
    this.masks = masks;
    if (this.h > 0) this.applyMasks();
  }

  update(frame: Frame): MotionResult {
    const yuv = frame.format === 'yuv420p';
    if (frame.width !== this.srcW || frame.height !== this.srcH || yuv !== this.yuv) this.layout(frame.width, frame.height, yuv);
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
        if (active[i] && Math.abs(grey[i]! - background[i]!) > threshold) {
          changed++;
          if (x < x1) x1 = x;
          if (x > x2) x2 = x;
          if (y < y1) y1 = y;
          if (y > y2) y2 = y;
        }
      }
    }
    const fraction = this.activeCount > 0 ? changed / this.activeCount : 0;
    if (fraction > this.resetArea) {
      background.set(grey);
      return { motion: true, changed: fraction, box: [0, 0, 1, 1], reset: true };
    }
    const alpha = 1 - Math.exp(-dt / this.tauMs);
    for (let i = 0; i < grey.length; i++) background[i] = background[i]! + alpha * (grey[i]! - background[i]!);
    const result: MotionResult = { motion: changed > 0 && fraction >= this.minArea, changed: fraction, reset: false };
    if (changed > 0) result.box = [x1 / w, y1 / h, (x2 + 1) / w, (y2 + 1) / h];
    return result;
  }

  private layout(srcW: number, srcH: number, yuv: boolean): void {
    this.srcW = srcW;
    this.srcH = srcH;
    this.yuv = yuv;
    const w = this.w;
    const h = Math.max(1, Math.round((w * srcH) / srcW));
    this.h = h;
    this.grey = new Float32Array(w * h);
    this.background = new Float32Array(w * h);
    this.primed = false;
    const samples = (src: number, dst: number, n: number, scale: number): Int32Array => {
      const out = new Int32Array(dst * n);
      for (let i = 0; i < dst; i++) {
        const lo = (i * src) / dst;
        const span = src / dst;
        for (let k = 0; k < n; k++) out[i * n + k] = Math.min(src - 1, Math.floor(lo + ((k + 0.5) * span) / n)) * scale;
      }
      return out;
    };
    this.colN = Math.max(1, Math.min(MAX_SAMPLES, Math.floor(srcW / w)));
    this.rowN = Math.max(1, Math.min(MAX_SAMPLES, Math.floor(srcH / h)));
    // A YUV frame is sampled in its Y plane (one byte a pixel), an RGB one in its pixels of three.
    this.colSamples = samples(srcW, w, this.colN, yuv ? 1 : 3);
    this.rowSamples = samples(srcH, h, this.rowN, srcW * (yuv ? 1 : 3));
    this.active = new Uint8Array(w * h);
    this.applyMasks();
  }

  /** Where motion counts: the small image's pixels whose centre is outside every mask. */
  private applyMasks(): void {
    const { w, h } = this;
    this.activeCount = 0;
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        const centre: Point = [(x + 0.5) / w, (y + 0.5) / h];
        const masked = this.masks.some((m) => pointInPolygon(centre, m));
        this.active[i] = masked ? 0 : 1;
        if (!masked) this.activeCount++;
      }
    }
  }

  /**
   * Block-average grey into `grey`, 0–255: BT.601 weights of an RGB frame, or a YUV frame's Y stretched from its
   * limited range (16–235), which is the same grey for the same picture, so thresholds mean one thing for both.
   */
  private shrink(frame: Frame): void {
    const { w, h, grey, colSamples, rowSamples, colN, rowN } = this;
    const data = frame.data;
    if (this.yuv) {
      const norm = KY / (colN * rowN);
      for (let y = 0, i = 0; y < h; y++) {
        for (let x = 0; x < w; x++, i++) {
          let sum = 0;
          for (let r = 0; r < rowN; r++) {
            const row = rowSamples[y * rowN + r]!;
            for (let c = 0; c < colN; c++) sum += data[row + colSamples[x * colN + c]!]!;
          }
          grey[i] = sum * norm - 16 * KY;
        }
      }
      return;
    }
    const norm = 1 / (colN * rowN * 256);
    for (let y = 0, i = 0; y < h; y++) {
      for (let x = 0; x < w; x++, i++) {
        let sum = 0;
        for (let r = 0; r < rowN; r++) {
          const row = rowSamples[y * rowN + r]!;
          for (let c = 0; c < colN; c++) {
            const o = row + colSamples[x * colN + c]!;
            sum += data[o]! * 77 + data[o + 1]! * 150 + data[o + 2]! * 29;
          }
        }
        grey[i] = sum * norm;
      }
    }
  }
}

export interface GateOptions {
  /** While tracked objects are present and nothing moves, detect anyway every this many ms (a parked car's dwell keeps counting). */
  refreshMs: number;
}

export type GateDecision = 'motion' | 'refresh' | 'skip';

/**
 * Decides per frame whether the detector runs: on motion, or at the refresh rate while the last detection
 * left objects being tracked. `motion` null turns gating off (every frame is detected).
 */
export class MotionGate {
  private lastDetectAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly motion: MotionDetector | null,
    private readonly opts: GateOptions,
  ) {}

  decide(frame: Frame, objectsTracked: boolean): { decision: GateDecision; result?: MotionResult } {
    if (!this.motion) return { decision: 'motion' };
    const result = this.motion.update(frame);
    if (result.motion) return { decision: 'motion', result };
    if (objectsTracked && frame.ts - this.lastDetectAt >= this.opts.refreshMs) return { decision: 'refresh', result };
    return { decision: 'skip', result };
  }

  /** The camera's view changed or it resumes after a pause: see MotionDetector.reset; `masks` are the new view's. */
  reset(masks?: readonly (readonly Point[])[]): void {
    this.motion?.reset(masks);
  }

  /** The detector ran on a frame taken at `ts` (it may have been dropped from the queue instead). */
  detected(ts: number): void {
    this.lastDetectAt = ts;
  }
}
