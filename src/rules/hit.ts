import type { PresenceRuleConfig, DwellRuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import { boxArea, groundPoint, pointInPolygon } from './geometry.js';

/** One object behind a rule hit; `box` is normalized to the frame (0..1). */
export interface RuleObject {
  class: string;
  score: number;
  box: [number, number, number, number];
  trackId: number;
}

/** A rule fired: the agent turns this into an event with evidence. Times are ms since the epoch. */
export interface RuleHit {
  eventType: string;
  rule: 'presence' | 'dwell';
  ruleId: string;
  zoneId: string;
  /** When the earliest object of the hit entered the zone (presence) or stopped moving in it (dwell). */
  startedAt: number;
  /** Time of the frame the rule fired on. */
  ts: number;
  /** (ts - startedAt) in seconds. */
  dwellSeconds: number;
  objects: RuleObject[];
}

/** What a rule knows about one frame's track: what it learns depends on whether the track can be trusted now. */
export type Sighting =
  /** Detected in this frame with enough score and size; `inZone` by its ground point. */
  | { kind: 'seen'; inZone: boolean }
  /** Coasting through an occlusion, or detected too weakly to judge: keep what was known, learn nothing. */
  | { kind: 'unsure' }
  /** Not a class this rule looks at. */
  | { kind: 'other' };

export function sight(rule: PresenceRuleConfig | DwellRuleConfig, zone: ZoneConfig, track: Track): Sighting {
  if (!rule.classes.includes(track.class)) return { kind: 'other' };
  if (track.missed > 0 || track.score < rule.minScore || boxArea(track.box) < rule.minBoxArea) return { kind: 'unsure' };
  return { kind: 'seen', inZone: pointInPolygon(groundPoint(track.box), zone.polygon) };
}

export function ruleObject(track: Track): RuleObject {
  return { class: track.class, score: track.score, box: [...track.box], trackId: track.id };
}

/** Forgets per-track state of tracks the tracker has ended. */
export function dropEnded<V>(state: Map<number, V>, tracks: readonly Track[]): void {
  if (state.size === 0) return;
  const live = new Set(tracks.map((t) => t.id));
  for (const id of state.keys()) if (!live.has(id)) state.delete(id);
}
