import type { SceneChangeRuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import { KY } from '../vision/yuv.js';
import type { Box } from '../common/geometry.js';
import { inZone } from './hit.js';
import type { Observation } from './observe.js';

/**
 * `scene_change` compares the zone with a reference image on small grey thumbnails: averaging 4×4 blocks of a
 * 640×480 frame smooths sensor noise and JPEG artefacts and makes a comparison cost well under a millisecond.
 */
export const THUMB_WIDTH = 160;
export const THUMB_HEIGHT = 120;

/** A THUMB_WIDTH × THUMB_HEIGHT grey image, one byte a pixel. */
export type Thumb = Uint8Array;

/**
 * An image of any size → its grey thumbnail (area average, BT.601 luma): RGB24, or YUV 4:2:0 whose Y plane,
 * stretched from its limited range, is the same grey.
 */
export function greyThumb(img: { width: number; height: number; data: Uint8Array; format?: 'rgb24' | 'yuv420p' }): Thumb {
  const out = new Uint8Array(THUMB_WIDTH * THUMB_HEIGHT);
  const { width, height, data } = img;
  const yuv = img.format === 'yuv420p';
  for (let ty = 0; ty < THUMB_HEIGHT; ty++) {
    const y0 = Math.floor((ty * height) / THUMB_HEIGHT);
    const y1 = Math.max(y0 + 1, Math.floor(((ty + 1) * height) / THUMB_HEIGHT));
    for (let tx = 0; tx < THUMB_WIDTH; tx++) {
      const x0 = Math.floor((tx * width) / THUMB_WIDTH);
      const x1 = Math.max(x0 + 1, Math.floor(((tx + 1) * width) / THUMB_WIDTH));
      let sum = 0;
      const n = (y1 - y0) * (x1 - x0);
      if (yuv) {
        for (let y = y0; y < y1; y++) for (let o = y * width + x0, end = o + x1 - x0; o < end; o++) sum += data[o]!;
        out[ty * THUMB_WIDTH + tx] = Math.round(Math.min(255, Math.max(0, (sum / n - 16) * KY)));
        continue;
      }
      for (let y = y0; y < y1; y++) {
        let o = (y * width + x0) * 3;
        for (let x = x0; x < x1; x++, o += 3) sum += 299 * data[o]! + 587 * data[o + 1]! + 114 * data[o + 2]!;
      }
      out[ty * THUMB_WIDTH + tx] = Math.round(sum / (n * 1000));
    }
  }
  return out;
}

/** Below this share of the zone left visible (passers-by cover the rest), a frame is not judged at all. */
const MIN_VISIBLE = 0.3;

/**
 * How much of a zone differs from its reference. Overall brightness is matched first (the current zone scaled by
 * the median ratio of reference to current brightness), so dusk or a cloud does not count as change; pixels under
 * `exclude` boxes are left out.
 */
export function sceneDifference(
  current: Thumb,
  reference: Thumb,
  zonePixels: readonly number[],
  exclude: readonly Box[],
  pixelThreshold: number,
): { fraction: number; visible: number } {
  const covered = (i: number): boolean => {
    const x = ((i % THUMB_WIDTH) + 0.5) / THUMB_WIDTH;
    const y = (Math.floor(i / THUMB_WIDTH) + 0.5) / THUMB_HEIGHT;
    return exclude.some((b) => x >= b[0] && x <= b[2] && y >= b[1] && y <= b[3]);
  };
  const used = exclude.length ? zonePixels.filter((i) => !covered(i)) : zonePixels;
  if (used.length === 0 || used.length < zonePixels.length * MIN_VISIBLE)
    return { fraction: 0, visible: used.length / Math.max(1, zonePixels.length) };
  // The median brightness ratio, not the ratio of means: a large change (a heap of rubbish) must not
  // shift the brightness match of the unchanged rest of the zone.
  const ratios = new Float32Array(used.length);
  used.forEach((i, k) => {
    ratios[k] = (reference[i]! + 1) / (current[i]! + 1);
  });
  ratios.sort();
  const gain = ratios[ratios.length >> 1]!;
  const limit = pixelThreshold * 255;
  let changed = 0;
  for (const i of used) if (Math.abs(current[i]! * gain - reference[i]!) > limit) changed++;
  return { fraction: changed / used.length, visible: used.length / zonePixels.length };
}

/** Indices of the thumbnail pixels whose centre is in the zone and outside its masks. */
export function zonePixels(zone: ZoneConfig): number[] {
  const out: number[] = [];
  for (let y = 0; y < THUMB_HEIGHT; y++) {
    for (let x = 0; x < THUMB_WIDTH; x++) {
      if (inZone([(x + 0.5) / THUMB_WIDTH, (y + 0.5) / THUMB_HEIGHT], zone)) out.push(y * THUMB_WIDTH + x);
    }
  }
  return out;
}

/**
 * `scene_change`: holds once more than `threshold` of the zone has differed from the reference for `seconds`.
 * Frames where passers-by hide most of the zone are skipped: they neither start nor break the clock.
 */
export class SceneChangeObserver {
  private readonly pixels: number[];
  private differentSince: number | null = null;
  /** The latest judged difference, for the event. */
  fraction = 0;

  constructor(
    zone: ZoneConfig,
    private readonly rule: SceneChangeRuleConfig,
    private readonly reference: Thumb,
  ) {
    this.pixels = zonePixels(zone);
  }

  observe(ts: number, current: Thumb, tracks: readonly Track[]): Observation {
    const exclude = tracks.filter((t) => this.rule.ignoreClasses.includes(t.class)).map((t) => t.box);
    const { fraction, visible } = sceneDifference(current, this.reference, this.pixels, exclude, this.rule.pixelThreshold);
    if (visible >= MIN_VISIBLE) {
      this.fraction = fraction;
      if (fraction <= this.rule.threshold) this.differentSince = null;
      else this.differentSince ??= ts;
    }
    const holds = this.differentSince !== null && ts - this.differentSince >= this.rule.seconds * 1000;
    return { holds, since: this.differentSince ?? ts, subjects: [] };
  }
}
