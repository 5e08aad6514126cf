import type {
  CountRuleConfig,
  DwellRuleConfig,
  LeftObjectRuleConfig,
  LineCrossRuleConfig,
  PresenceRuleConfig,
  ZoneConfig,
} from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import { crossingPoint, distance, distanceToBox, groundPoint, segmentsIntersect, sideOf, type Point } from '../common/geometry.js';
import { dropEnded, inZone, sight } from './hit.js';

/**
 * Per-kind conditions over tracked objects, one frame at a time. Each says whether its condition holds on this
 * frame, since when, and because of which objects; the lifecycle (lifecycle.ts) turns that into events.
 */
export interface Observation {
  holds: boolean;
  /** When the condition began to hold without a break (ms); meaningful when `holds`. */
  since: number;
  /** The tracks that make it hold: seen in this frame, or coasting through an occlusion. */
  subjects: Track[];
}

const NOTHING: Observation = { holds: false, since: 0, subjects: [] };

function observation(entries: { since: number; track: Track }[]): Observation {
  if (entries.length === 0) return NOTHING;
  return {
    holds: true,
    since: Math.min(...entries.map((e) => e.since)),
    subjects: entries.map((e) => e.track),
  };
}

/**
 * Tracks whose ground point is in the zone, and since when. A track coasting through an occlusion or detected
 * too weakly keeps its place; a track seen outside the zone, or ended by the tracker, loses it.
 */
class Occupancy {
  private readonly inside = new Map<number, number>();

  constructor(
    private readonly zone: ZoneConfig,
    private readonly rule: PresenceRuleConfig | CountRuleConfig,
  ) {}

  update(ts: number, tracks: readonly Track[]): { since: number; track: Track }[] {
    dropEnded(this.inside, tracks);
    const present: { since: number; track: Track }[] = [];
    for (const track of tracks) {
      const s = sight(this.rule, this.zone, track);
      if (s.kind === 'other') continue;
      if (s.kind === 'seen') {
        if (!s.inZone) this.inside.delete(track.id);
        else if (!this.inside.has(track.id)) this.inside.set(track.id, ts);
      }
      const since = this.inside.get(track.id);
      if (since !== undefined) present.push({ since, track });
    }
    return present;
  }
}

/** `presence`: holds while at least one matching object is in the zone. */
export class PresenceObserver {
  private readonly occupancy: Occupancy;
  constructor(zone: ZoneConfig, rule: PresenceRuleConfig) {
    this.occupancy = new Occupancy(zone, rule);
  }
  observe(ts: number, tracks: readonly Track[]): Observation {
    return observation(this.occupancy.update(ts, tracks));
  }
}

/** `count`: holds once at least `min` matching objects have been in the zone together for `seconds`. */
export class CountObserver {
  private readonly occupancy: Occupancy;
  private reachedAt: number | null = null;
  constructor(
    zone: ZoneConfig,
    private readonly rule: CountRuleConfig,
  ) {
    this.occupancy = new Occupancy(zone, rule);
  }
  observe(ts: number, tracks: readonly Track[]): Observation {
    const present = this.occupancy.update(ts, tracks);
    if (present.length < this.rule.min) {
      this.reachedAt = null;
      return NOTHING;
    }
    this.reachedAt ??= ts;
    if (ts - this.reachedAt < this.rule.seconds * 1000) return NOTHING;
    return { holds: true, since: this.reachedAt, subjects: present.map((p) => p.track) };
  }
}

/**
 * Tracks standing still in the zone: the ground point stays within `maxMovement` of where it stopped; moving
 * further restarts the clock, leaving the zone forgets the track. Occluded or weak frames change nothing.
 */
class Stillness {
  readonly still = new Map<number, { since: number; anchor: Point }>();

  constructor(
    private readonly zone: ZoneConfig,
    private readonly rule: DwellRuleConfig | LeftObjectRuleConfig,
  ) {}

  update(ts: number, tracks: readonly Track[]): { since: number; track: Track }[] {
    dropEnded(this.still, tracks);
    const out: { since: number; track: Track }[] = [];
    for (const track of tracks) {
      const s = sight(this.rule, this.zone, track);
      if (s.kind === 'other') continue;
      if (s.kind === 'seen') {
        const d = this.still.get(track.id);
        if (!s.inZone) this.still.delete(track.id);
        else if (!d) this.still.set(track.id, { since: ts, anchor: s.at });
        else if (distance(s.at, d.anchor) > this.rule.maxMovement) {
          d.since = ts;
          d.anchor = s.at;
        }
      }
      const d = this.still.get(track.id);
      if (d) out.push({ since: d.since, track });
    }
    return out;
  }
}

/** `dwell`: holds while at least one matching object has stood still in the zone for `seconds`. */
export class DwellObserver {
  private readonly stillness: Stillness;
  constructor(
    zone: ZoneConfig,
    private readonly rule: DwellRuleConfig,
  ) {
    this.stillness = new Stillness(zone, rule);
  }
  observe(ts: number, tracks: readonly Track[]): Observation {
    return observation(this.stillness.update(ts, tracks).filter((e) => ts - e.since >= this.rule.seconds * 1000));
  }
}

/**
 * `left_object`: an object of `classes` stands still in the zone for `seconds` while no person has been within
 * `nearDistance` of it for `ownerAbsentSeconds` (a bag at its owner's feet is not left). Once left, it stays left
 * while its track lives, whoever walks by later.
 */
export class LeftObjectObserver {
  private readonly stillness: Stillness;
  /** Track id → last time a person was near it, and whether it has been found left. */
  private readonly watch = new Map<number, { personNear: number; left: boolean }>();

  constructor(
    zone: ZoneConfig,
    private readonly rule: LeftObjectRuleConfig,
  ) {
    this.stillness = new Stillness(zone, rule);
  }

  observe(ts: number, tracks: readonly Track[]): Observation {
    dropEnded(this.watch, tracks);
    const people = tracks.filter((t) => this.rule.personClasses.includes(t.class) && t.missed === 0).map((t) => groundPoint(t.box));
    const left: { since: number; track: Track }[] = [];
    for (const e of this.stillness.update(ts, tracks)) {
      let w = this.watch.get(e.track.id);
      if (!w) this.watch.set(e.track.id, (w = { personNear: ts, left: false }));
      if (!w.left && people.some((p) => distanceToBox(p, e.track.box) <= this.rule.nearDistance)) w.personNear = ts;
      if (!w.left && ts - e.since >= this.rule.seconds * 1000 && ts - w.personNear >= this.rule.ownerAbsentSeconds * 1000) w.left = true;
      if (w.left) left.push(e);
    }
    for (const id of this.watch.keys()) if (!this.stillness.still.has(id)) this.watch.delete(id);
    return observation(left);
  }
}

export type Direction = 'forward' | 'backward';

/**
 * `line_cross`: counts tracks whose ground point passes the directed line, per direction. A side is taken only
 * when the point is more than LINE_MARGIN from the line, so a person standing on it (box jitter) counts once,
 * not on every frame; the crossing point must lie on the drawn segment and inside the zone (without masks).
 */
export const LINE_MARGIN = 0.01;

export class LineCrossObserver {
  /** Track id → the last side it was clearly on, and where. */
  private readonly sides = new Map<number, { side: 1 | -1; at: Point }>();
  readonly counts = { forward: 0, backward: 0 };

  constructor(
    private readonly zone: ZoneConfig,
    private readonly rule: LineCrossRuleConfig,
  ) {}

  observe(tracks: readonly Track[]): { direction: Direction; track: Track }[] {
    dropEnded(this.sides, tracks);
    const [a, b] = this.rule.line;
    const out: { direction: Direction; track: Track }[] = [];
    for (const track of tracks) {
      const s = sight(this.rule, this.zone, track);
      if (s.kind !== 'seen') continue;
      const d = sideOf(s.at, a, b);
      if (Math.abs(d) <= LINE_MARGIN) continue;
      const side = d > 0 ? 1 : -1;
      const last = this.sides.get(track.id);
      this.sides.set(track.id, { side, at: s.at });
      if (!last || last.side === side) continue;
      if (!segmentsIntersect(last.at, s.at, a, b) || !inZone(crossingPoint(last.at, s.at, a, b), this.zone)) continue;
      const direction: Direction = side > 0 ? 'forward' : 'backward';
      this.counts[direction]++;
      out.push({ direction, track });
    }
    return out;
  }
}
