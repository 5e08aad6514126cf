import type { CameraConfig } from '../config/index.js';
import type { Detection } from '../vision/types.js';
import { Tracker, type TrackerOptions } from '../vision/tracker.js';
import { DwellRule } from './dwell.js';
import { PresenceRule } from './presence.js';
import type { RuleHit } from './hit.js';

export interface CameraRulesOptions {
  /** Tracker settings; maxMissed defaults to OCCLUSION_SECONDS worth of frames at the camera's detect fps. */
  tracker?: TrackerOptions;
}

/** How long an object may go undetected (hidden by a passing bus, a missed detection) and keep its track. */
export const OCCLUSION_SECONDS = 5;

/** The rules of one camera: tracks its detections and evaluates every rule of every zone on each frame. */
export class CameraRules {
  private readonly tracker: Tracker;
  private readonly rules: (PresenceRule | DwellRule)[] = [];

  constructor(camera: CameraConfig, opts: CameraRulesOptions = {}) {
    this.tracker = new Tracker({
      iouThreshold: opts.tracker?.iouThreshold,
      maxMissed: opts.tracker?.maxMissed ?? Math.max(1, Math.ceil(camera.detect.fps * OCCLUSION_SECONDS)),
    });
    for (const zone of camera.zones) {
      for (const rule of zone.rules) {
        this.rules.push(rule.kind === 'presence' ? new PresenceRule(zone, rule) : new DwellRule(zone, rule));
      }
    }
  }

  /**
   * Feeds the detections of one frame (call it for every frame the detector ran on, in time order; `ts` in
   * ms) and returns the rule hits of this frame. Boxes are in pixels of a width × height frame.
   */
  evaluate(ts: number, width: number, height: number, detections: readonly Detection[]): RuleHit[] {
    const clamp = (v: number): number => Math.min(1, Math.max(0, v));
    const normalized = detections.map((d) => ({
      class: d.class,
      score: d.score,
      box: [clamp(d.box[0] / width), clamp(d.box[1] / height), clamp(d.box[2] / width), clamp(d.box[3] / height)] as const,
    }));
    const tracks = this.tracker.update(ts, normalized);
    const hits: RuleHit[] = [];
    for (const rule of this.rules) {
      const hit = rule.evaluate(ts, tracks);
      if (hit) hits.push(hit);
    }
    return hits;
  }
}
