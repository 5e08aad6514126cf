import type { ObjectRuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import type { RuleKind } from '../config/presets.js';
import { boxArea, groundPoint, pointInPolygon, type Point } from '../common/geometry.js';

/** One object behind a rule hit, as the detector found it in the message's own frame; `box` is normalized (0..1). */
export interface RuleObject {
  class: string;
  score: number;
  box: [number, number, number, number];
  trackId: number;
}

/**
 * An object of the violation that the detector did not find in the message's own frame: hidden (its track coasts
 * through an occlusion), missed by the detector, or gone (an `ended` message). Where and when it was last seen.
 */
export interface UnseenObject {
  class: string;
  trackId: number;
  /** Time of the last frame it was detected in (ms). */
  lastSeenAt: number;
  lastScore: number;
  /** Its box in that frame, normalized; not where it is now. */
  lastBox: [number, number, number, number];
}

/**
 * Where a violation is in its life: `started` once when the rule begins to hold, `updated` at most every
 * `updateMinutes` while it holds, `ended` once when it stopped holding for `endSeconds`; `instant` for a
 * violation that is one moment (a line crossing): a single message, no update and no end.
 */
export type EventState = 'started' | 'updated' | 'ended' | 'instant';

/**
 * Why a violation ended: `cleared` the rule stopped holding for `endSeconds`; `schedule` its window closed;
 * `agent_stopped` the agent stopped cleanly while it still held (after a restart the rule must hold again, for its
 * full dwell, before a new event starts); `view_changed` the camera turned to another view (a PTZ preset), whose
 * zones are not the ones the violation was in; `camera_paused` the camera's rules were paused without a new view;
 * `config_changed` a reload (SIGHUP) changed the camera's settings or removed the camera, so its rules restarted.
 * The last four say "no longer watched", not "cleared".
 */
export const END_REASONS = ['cleared', 'schedule', 'agent_stopped', 'view_changed', 'camera_paused', 'config_changed'] as const;
export type EndReason = (typeof END_REASONS)[number];

/** One message of a violation: the agent turns it into an event message with evidence. Times are ms since the epoch. */
export interface RuleHit {
  /** Stable for the whole violation: its started, updated and ended messages share it. */
  eventId: string;
  state: EventState;
  eventType: string;
  preset?: string;
  /** The view the camera was at: a PTZ preset's id; absent for the camera's own view. */
  view?: string;
  rule: RuleKind;
  ruleId: string;
  zoneId: string;
  /** When the rule began to hold: the earliest object entered (presence), stopped (dwell, left_object), … */
  startedAt: number;
  /** Time of the frame this message is about. */
  ts: number;
  /** For `ended`: the last frame on which the rule still held. */
  endedAt?: number;
  /** For `ended`: why. */
  endReason?: EndReason;
  /** How long the violation has lasted, in seconds: (endedAt or ts) - startedAt. */
  dwellSeconds: number;
  /**
   * The objects that make the rule hold and that the detector found in this frame (for `ended`, those of the last
   * frame it held that are still detected now); none for scene_change. Their boxes are this frame's detections.
   */
  objects: RuleObject[];
  /** The objects that make the rule hold but were not detected in this frame, with where and when they were last seen. */
  unseen: UnseenObject[];
  /** line_cross: crossings counted per direction since the rules started. */
  counts?: { forward: number; backward: number };
  /** scene_change: the fraction of the zone that differs from the reference, and the rule's threshold. */
  change?: { fraction: number; threshold: number };
}

/** What a rule knows about one frame's track: what it learns depends on whether the track can be trusted now. */
export type Sighting =
  /** Detected in this frame with enough score and size; `inZone` by its ground point. */
  | { kind: 'seen'; inZone: boolean; at: Point }
  /** Coasting through an occlusion, or detected too weakly to judge: keep what was known, learn nothing. */
  | { kind: 'unsure' }
  /** Not a class this rule looks at. */
  | { kind: 'other' };

/** The zone without its masks. */
export function inZone(p: Point, zone: ZoneConfig): boolean {
  return pointInPolygon(p, zone.polygon) && !zone.masks.some((m) => pointInPolygon(p, m));
}

export function sight(rule: ObjectRuleConfig, zone: ZoneConfig, track: Track): Sighting {
  if (!rule.classes.includes(track.class)) return { kind: 'other' };
  if (track.missed > 0 || track.score < rule.minScore || boxArea(track.box) < rule.minBoxArea) return { kind: 'unsure' };
  const at = groundPoint(track.box);
  return { kind: 'seen', inZone: inZone(at, zone), at };
}

/**
 * The message's view of a violation's tracks on the frame of `tracks` (every live track of that frame): those
 * detected in it are `objects`, with this frame's box; the others (coasting, or ended by the tracker) are `unseen`,
 * with their last detection. `subjects` may be older than the frame: an `ended` message's are those of the last
 * frame the rule held.
 */
export function sortBySight(subjects: readonly Track[], tracks: readonly Track[]): { objects: RuleObject[]; unseen: UnseenObject[] } {
  const now = new Map(tracks.map((t) => [t.id, t]));
  const objects: RuleObject[] = [];
  const unseen: UnseenObject[] = [];
  for (const subject of subjects) {
    const t = now.get(subject.id);
    if (t?.missed === 0) {
      objects.push({ class: t.class, score: t.score, box: [...t.box], trackId: t.id });
    } else {
      const last = t ?? subject;
      unseen.push({ class: last.class, trackId: last.id, lastSeenAt: last.lastSeen, lastScore: last.score, lastBox: [...last.box] });
    }
  }
  return { objects, unseen };
}

/** Forgets per-track state of tracks the tracker has ended. */
export function dropEnded<V>(state: Map<number, V>, tracks: readonly Track[]): void {
  if (state.size === 0) return;
  const live = new Set(tracks.map((t) => t.id));
  for (const id of state.keys()) if (!live.has(id)) state.delete(id);
}
