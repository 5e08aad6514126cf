import { v7 as uuidv7 } from 'uuid';
import type { CameraConfig, RuleConfig, SceneChangeRuleConfig, ZoneConfig } from '../config/index.js';
import type { Detection } from '../vision/types.js';
import { Tracker, type Track, type TrackerOptions } from '../vision/tracker.js';
import { decodeImage } from '../common/jpeg.js';
import { Lifecycle } from './lifecycle.js';
import {
  CountObserver, DwellObserver, LeftObjectObserver, LineCrossObserver, PresenceObserver, type Observation,
} from './observe.js';
import { greyThumb, SceneChangeObserver, type Thumb } from './scene.js';
import { inSchedule } from './schedule.js';
import type { RuleHit } from './hit.js';

export interface CameraRulesOptions {
  /**
   * Tracker settings over the defaults: tracks coast for OCCLUSION_SECONDS (maxMissedMs), and detections start
   * tracks from the lowest minScore of the camera's rules (highThreshold, at most the tracker's 0.5).
   */
  tracker?: TrackerOptions;
  /** Grey thumbnails of the scene_change references, by `referenceKey`; CameraRules.open loads them. */
  references?: ReadonlyMap<string, Thumb>;
  /** Event ids (default UUIDv7); tests pass a counter. */
  newId?: () => string;
}

/** How long an object may go undetected (hidden by a passing bus, a missed detection) and keep its track. */
export const OCCLUSION_SECONDS = 5;

/** The tracker's own threshold for starting tracks; lowered to a rule's minScore when one asks for less. */
const TRACK_START_SCORE = 0.5;

/** Key of a scene_change rule's reference in CameraRulesOptions.references. */
export function referenceKey(zone: ZoneConfig, rule: RuleConfig): string {
  return `${zone.id}/${rule.id}`;
}

/** A scene_change reference that cannot be used; the message names camera, zone, rule and file. */
export class SceneReferenceError extends Error {
  override name = 'SceneReferenceError';
}

type Evaluator = (ts: number, tracks: readonly Track[], thumb: () => Thumb | null) => RuleHit | RuleHit[] | null;

/** The rules of one camera: tracks its detections and runs every rule of every zone on each frame. */
export class CameraRules {
  private readonly tracker: Tracker;
  private readonly evaluators: Evaluator[] = [];
  private readonly lifecycles: Lifecycle[] = [];
  private readonly timeZone: string;
  /** The live tracks of the last evaluated frame: what a message about that frame (at a stop) can say was seen. */
  private lastTracks: Track[] = [];

  /** Loads the camera's scene_change references, then builds its rules. */
  static async open(camera: CameraConfig, opts: Omit<CameraRulesOptions, 'references'> = {}): Promise<CameraRules> {
    const references = new Map<string, Thumb>();
    for (const zone of camera.zones) {
      for (const rule of zone.rules) {
        if (rule.kind === 'scene_change') references.set(referenceKey(zone, rule), await loadReference(camera, zone, rule));
      }
    }
    return new CameraRules(camera, { ...opts, references });
  }

  constructor(camera: CameraConfig, opts: CameraRulesOptions = {}) {
    // A track must exist for a rule to see its object: a rule with minScore 0.4 must get objects scoring 0.4-0.5.
    const minScores = camera.zones.flatMap((z) => z.rules.flatMap((r) => (r.kind === 'scene_change' ? [] : [r.minScore])));
    // Expiry by time, not by detector runs: with motion gating the runs come at irregular intervals.
    this.tracker = new Tracker({
      highThreshold: Math.min(TRACK_START_SCORE, ...minScores),
      maxMissedMs: OCCLUSION_SECONDS * 1000,
      ...opts.tracker,
    });
    this.timeZone = camera.timezone ?? 'UTC';
    const newId = opts.newId ?? uuidv7;
    for (const zone of camera.zones) {
      for (const rule of zone.rules) {
        const life = new Lifecycle(zone, rule, newId);
        this.lifecycles.push(life);
        this.evaluators.push(this.evaluator(camera, zone, rule, life, opts.references));
      }
    }
  }

  private evaluator(camera: CameraConfig, zone: ZoneConfig, rule: RuleConfig, life: Lifecycle, references: ReadonlyMap<string, Thumb> | undefined): Evaluator {
    const scheduled = (ts: number): boolean => inSchedule(rule.schedule, ts, this.timeZone);
    const over = (observer: { observe(ts: number, tracks: readonly Track[]): Observation }): Evaluator =>
      (ts, tracks) => life.step(ts, tracks, observer.observe(ts, tracks), scheduled(ts));
    switch (rule.kind) {
      case 'presence': return over(new PresenceObserver(zone, rule));
      case 'dwell': return over(new DwellObserver(zone, rule));
      case 'count': return over(new CountObserver(zone, rule));
      case 'left_object': return over(new LeftObjectObserver(zone, rule));
      case 'line_cross': {
        const observer = new LineCrossObserver(zone, rule);
        return (ts, tracks) => {
          const on = scheduled(ts);
          const hits: RuleHit[] = [];
          for (const c of observer.observe(tracks)) {
            if (rule.direction !== 'both' && c.direction !== rule.direction) continue;
            const hit = life.instant(ts, tracks, [c.track], on, { counts: { ...observer.counts } });
            if (hit) hits.push(hit);
          }
          return hits;
        };
      }
      case 'scene_change': {
        const reference = references?.get(referenceKey(zone, rule));
        if (!reference) {
          throw new SceneReferenceError(`camera ${camera.id}, zone ${zone.id}, rule ${rule.id}: the scene_change reference ${rule.reference} is not loaded; create the rules with CameraRules.open()`);
        }
        const observer = new SceneChangeObserver(zone, rule, reference);
        return (ts, tracks, thumb) => {
          const current = thumb();
          if (!current) return null;
          const obs = observer.observe(ts, current, tracks);
          return life.step(ts, tracks, obs, scheduled(ts), { change: { fraction: round3(observer.fraction), threshold: rule.threshold } });
        };
      }
    }
  }

  /**
   * Feeds the detections of one frame (call it for every frame the detector ran on, in time order; `ts` in ms)
   * and returns the event messages of this frame. Boxes are in pixels of a width × height frame. `frame` (the
   * pixels, RGB24 or YUV 4:2:0) is needed only by scene_change rules, which skip frames evaluated without it.
   */
  evaluate(ts: number, width: number, height: number, detections: readonly Detection[], frame?: { data: Uint8Array; format?: 'rgb24' | 'yuv420p' }): RuleHit[] {
    const clamp = (v: number): number => Math.min(1, Math.max(0, v));
    const normalized = detections.map((d) => ({
      class: d.class,
      score: d.score,
      box: [clamp(d.box[0] / width), clamp(d.box[1] / height), clamp(d.box[2] / width), clamp(d.box[3] / height)] as const,
    }));
    const tracks = this.tracker.update(ts, normalized);
    this.lastTracks = tracks;
    let thumb: Thumb | null | undefined;
    const lazyThumb = (): Thumb | null => (thumb === undefined ? (thumb = frame ? greyThumb({ width, height, data: frame.data, ...(frame.format && { format: frame.format }) }) : null) : thumb);
    const hits: RuleHit[] = [];
    for (const evaluate of this.evaluators) {
      const out = evaluate(ts, tracks, lazyThumb);
      if (Array.isArray(out)) hits.push(...out);
      else if (out) hits.push(out);
    }
    return hits;
  }

  /**
   * Whether any object is tracked now, seen or coasting through an occlusion: while one is, the agent's motion
   * gate keeps the detector refreshing, so a parked car's dwell goes on counting without motion.
   */
  hasTracks(): boolean {
    return this.tracker.size > 0;
  }

  /**
   * Ends every open violation because the agent stops (`ended` with endReason `agent_stopped`, `endedAt` the last
   * frame the rule held); the rules are not used after it. `ts` is the time of the stop. The messages describe the
   * last evaluated frame, which their evidence shows: the objects detected in it, the others unseen.
   */
  close(ts: number): RuleHit[] {
    return this.lifecycles.flatMap((life) => life.close(ts, this.lastTracks) ?? []);
  }
}

function round3(x: number): number { return Math.round(x * 1000) / 1000; }

/** Aspect ratios further apart than this mean the reference shows another view (or a crop) of the camera. */
const ASPECT_TOLERANCE = 0.03;

async function loadReference(camera: CameraConfig, zone: ZoneConfig, rule: SceneChangeRuleConfig): Promise<Thumb> {
  const where = `camera ${camera.id}, zone ${zone.id}, rule ${rule.id}`;
  const fix = `take one with: edgepatrol camera snapshot ${camera.id} --out ${rule.reference}`;
  let img;
  try {
    img = await decodeImage(rule.reference);
  } catch (err) {
    throw new SceneReferenceError(`${where}: cannot read the scene_change reference ${rule.reference} (${(err as Error).message}); ${fix}`);
  }
  const want = camera.detect.width / camera.detect.height;
  if (Math.abs(img.width / img.height - want) / want > ASPECT_TOLERANCE) {
    throw new SceneReferenceError(`${where}: the reference ${rule.reference} is ${img.width}×${img.height}, not the camera's aspect ratio ${camera.detect.width}:${camera.detect.height}; it must show the whole camera view; ${fix}`);
  }
  return greyThumb(img);
}
