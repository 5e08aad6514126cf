import { v7 as uuidv7 } from 'uuid';
import type { CameraConfig, RuleConfig, ZoneConfig } from '../config/index.js';
import type { Detection } from '../vision/types.js';
import { Tracker, type Track, type TrackerOptions } from '../vision/tracker.js';
import { Lifecycle } from './lifecycle.js';
import { CountObserver, DwellObserver, LeftObjectObserver, LineCrossObserver, PresenceObserver, type Observation } from './observe.js';
import { greyThumb, SceneChangeObserver, type Thumb } from './scene.js';
import { inSchedule } from './schedule.js';
import type { EndReason, RuleHit } from './hit.js';
import {
  configView,
  loadReferences,
  parseView,
  referenceKey,
  ruleWhere,
  SceneReferenceError,
  type CameraView,
  type ViewInput,
} from './view.js';

export interface CameraRulesOptions {
  /**
   * Tracker settings over the defaults: tracks coast for OCCLUSION_SECONDS (maxMissedMs), and detections start
   * tracks from the lowest minScore of the view's rules (highThreshold, at most the tracker's 0.5).
   */
  tracker?: TrackerOptions;
  /** Grey thumbnails of the camera's scene_change references, by `referenceKey`; CameraRules.open loads them. */
  references?: ReadonlyMap<string, Thumb>;
  /** Event ids (default UUIDv7); tests pass a counter. */
  newId?: () => string;
}

/** How long an object may go undetected (hidden by a passing bus, a missed detection) and keep its track. */
export const OCCLUSION_SECONDS = 5;

/** The tracker's own threshold for starting tracks; lowered to a rule's minScore when one asks for less. */
const TRACK_START_SCORE = 0.5;

/** Why the rules of a camera stop for a while: the camera is turning to another view, or was paused for another reason. */
export type PauseReason = Extract<EndReason, 'view_changed' | 'camera_paused'>;

type Evaluator = (ts: number, tracks: readonly Track[], thumb: () => Thumb | null) => RuleHit | RuleHit[] | null;

/** Everything that holds for one view: a new view, a pause, replaces it whole, so nothing of the old view's state survives. */
interface ViewRules {
  view: CameraView;
  references: ReadonlyMap<string, Thumb>;
  tracker: Tracker;
  evaluators: Evaluator[];
  lifecycles: Lifecycle[];
}

/**
 * The rules of one camera: tracks its detections and runs every rule of every zone of its current view on each frame.
 *
 * The view (zones, rules, motion masks, scene references: what depends on where the camera looks) can be swapped
 * while the camera runs, and the rules paused; either ends the open violations, which the caller records as it
 * records those close() returns at a stop. The agent's camera pipeline does, for a new view:
 *
 *   const before = cameraWithView(cam, rules.view);      // the zones the ending events were drawn on
 *   const ended = await rules.setView(view, ts);         // throws, changing nothing, on a bad view
 *   for (const hit of ended) await recorder.record(before, lastFrame, hit, model);
 *   gate.reset(rules.view.motionMasks);                  // new masks; the first frame of the new view starts the background
 *   later hits: recorder.record(cameraWithView(cam, rules.view), …)
 *
 * and for a pause `rules.pause(reason, ts)` with the same recording (frames need not be detected until `resume()`;
 * evaluate returns nothing meanwhile), then `resume()` and `gate.reset()`: the scene may have changed while nobody
 * looked. test/views.test.ts shows both.
 */
export class CameraRules {
  private readonly newId: () => string;
  private current: ViewRules;
  private isPaused = false;
  /** The live tracks of the last evaluated frame: what a message about that frame (at a stop) can say was seen. */
  private lastTracks: Track[] = [];

  /** Loads the camera's scene_change references, then builds its rules. */
  static async open(camera: CameraConfig, opts: Omit<CameraRulesOptions, 'references'> = {}): Promise<CameraRules> {
    return new CameraRules(camera, { ...opts, references: await loadReferences(camera, configView(camera)) });
  }

  constructor(
    private readonly camera: CameraConfig,
    private readonly opts: CameraRulesOptions = {},
  ) {
    this.newId = opts.newId ?? uuidv7;
    this.current = this.build(configView(camera), opts.references ?? new Map());
  }

  /** The view the rules run on now. */
  get view(): CameraView {
    return this.current.view;
  }

  /** The violations open now: event id, zone and rule. */
  openEvents(): Array<{ eventId: string; zoneId: string; ruleId: string }> {
    return this.current.lifecycles.flatMap((life) => {
      const eventId = life.openEvent;
      return eventId === undefined ? [] : [{ eventId, ...life.where }];
    });
  }

  /** Whether the rules are paused (evaluate sees nothing) until resume(). */
  get paused(): boolean {
    return this.isPaused;
  }

  /**
   * Swaps the view at `ts`. The view is checked (as config is: ConfigError) and its scene references loaded
   * (SceneReferenceError) before anything changes, so a bad one throws and the old view keeps running. Then
   * every open violation ends with endReason `view_changed` (returned, to be recorded on the last frame with the
   * old view's zones) and the tracker and every rule's state (dwell clocks, counts, line sides, cooldowns) start
   * afresh: an object's place in the old view means nothing in the new one. A paused camera stays paused.
   */
  async setView(input: ViewInput, ts: number): Promise<RuleHit[]> {
    const view = parseView(input, `camera ${this.camera.id}, view ${input.id ?? 'config'}`);
    const next = this.build(view, await loadReferences(this.camera, view));
    const ended = this.end(ts, 'view_changed');
    this.current = next;
    return ended;
  }

  /**
   * Pauses the rules at `ts`: every open violation ends with endReason `reason` (returned, to be recorded as
   * close()'s are), and evaluate returns nothing until resume(). The rules start afresh on the same view.
   */
  pause(reason: PauseReason, ts: number): RuleHit[] {
    if (this.isPaused) return [];
    const ended = this.end(ts, reason);
    this.current = this.build(this.current.view, this.current.references);
    this.isPaused = true;
    return ended;
  }

  /** Ends a pause: the next frame is the first the rules see, as at a start. */
  resume(): void {
    this.isPaused = false;
  }

  private build(view: CameraView, references: ReadonlyMap<string, Thumb>): ViewRules {
    // A track must exist for a rule to see its object: a rule with minScore 0.4 must get objects scoring 0.4-0.5.
    const minScores = view.zones.flatMap((z) => z.rules.flatMap((r) => (r.kind === 'scene_change' ? [] : [r.minScore])));
    // Expiry by time, not by detector runs: with motion gating the runs come at irregular intervals.
    const tracker = new Tracker({
      highThreshold: Math.min(TRACK_START_SCORE, ...minScores),
      maxMissedMs: OCCLUSION_SECONDS * 1000,
      ...this.opts.tracker,
    });
    const evaluators: Evaluator[] = [];
    const lifecycles: Lifecycle[] = [];
    for (const zone of view.zones) {
      for (const rule of zone.rules) {
        const life = new Lifecycle(zone, rule, this.newId, view.id === 'config' ? undefined : view.id);
        lifecycles.push(life);
        evaluators.push(this.evaluator(view, references, zone, rule, life));
      }
    }
    return { view, references, tracker, evaluators, lifecycles };
  }

  private evaluator(
    view: CameraView,
    references: ReadonlyMap<string, Thumb>,
    zone: ZoneConfig,
    rule: RuleConfig,
    life: Lifecycle,
  ): Evaluator {
    const timeZone = this.camera.timezone ?? 'UTC';
    const scheduled = (ts: number): boolean => inSchedule(rule.schedule, ts, timeZone);
    const over =
      (observer: { observe(ts: number, tracks: readonly Track[]): Observation }): Evaluator =>
      (ts, tracks) =>
        life.step(ts, tracks, observer.observe(ts, tracks), scheduled(ts));
    switch (rule.kind) {
      case 'presence':
        return over(new PresenceObserver(zone, rule));
      case 'dwell':
        return over(new DwellObserver(zone, rule));
      case 'count':
        return over(new CountObserver(zone, rule));
      case 'left_object':
        return over(new LeftObjectObserver(zone, rule));
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
        const reference = references.get(referenceKey(zone, rule));
        if (!reference) {
          const where = ruleWhere(this.camera, view, zone, rule);
          const fix = 'create the rules with CameraRules.open()';
          throw new SceneReferenceError(`${where}: the scene_change reference ${rule.reference} is not loaded; ${fix}`);
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
  evaluate(
    ts: number,
    width: number,
    height: number,
    detections: readonly Detection[],
    frame?: { data: Uint8Array; format?: 'rgb24' | 'yuv420p' },
  ): RuleHit[] {
    if (this.isPaused) return [];
    const clamp = (v: number): number => Math.min(1, Math.max(0, v));
    const normalized = detections.map((d) => ({
      class: d.class,
      score: d.score,
      box: [clamp(d.box[0] / width), clamp(d.box[1] / height), clamp(d.box[2] / width), clamp(d.box[3] / height)] as const,
    }));
    const tracks = this.current.tracker.update(ts, normalized);
    this.lastTracks = tracks;
    let thumb: Thumb | null | undefined;
    const lazyThumb = (): Thumb | null =>
      thumb === undefined
        ? (thumb = frame ? greyThumb({ width, height, data: frame.data, ...(frame.format && { format: frame.format }) }) : null)
        : thumb;
    const hits: RuleHit[] = [];
    for (const evaluate of this.current.evaluators) {
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
    return this.current.tracker.size > 0;
  }

  /**
   * Ends every open violation because the agent stops (`ended` with endReason `agent_stopped`, or `config_changed` when a
   * reload restarts or removes the camera; `endedAt` the last
   * frame the rule held); the rules are not used after it. `ts` is the time of the stop. The messages describe the
   * last evaluated frame, which their evidence shows: the objects detected in it, the others unseen.
   */
  close(ts: number, reason: Extract<EndReason, 'agent_stopped' | 'config_changed'> = 'agent_stopped'): RuleHit[] {
    return this.end(ts, reason);
  }

  /** Ends every open violation of the current view for `reason`, as seen on the last evaluated frame. */
  private end(ts: number, reason: EndReason): RuleHit[] {
    const ended = this.current.lifecycles.flatMap((life) => life.close(ts, this.lastTracks, reason) ?? []);
    this.lastTracks = [];
    return ended;
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
