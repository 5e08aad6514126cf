import type { DwellRuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import { distance, groundPoint, type Point } from './geometry.js';
import { dropEnded, ruleObject, sight, type RuleHit } from './hit.js';

/**
 * `dwell`: a track stays in the zone and still — its ground point within `maxMovement` of where it stopped —
 * for `seconds`. Fires once per track and stay; moving further restarts the clock. Frames where the track is
 * occluded or weakly detected neither stop nor restart it.
 */
export class DwellRule {
  private readonly dwelling = new Map<number, { since: number; anchor: Point; fired: boolean }>();
  private lastHit = Number.NEGATIVE_INFINITY;

  constructor(private readonly zone: ZoneConfig, private readonly rule: DwellRuleConfig) {}

  evaluate(ts: number, tracks: readonly Track[]): RuleHit | null {
    dropEnded(this.dwelling, tracks);
    const due: Track[] = [];
    for (const track of tracks) {
      const s = sight(this.rule, this.zone, track);
      if (s.kind !== 'seen') continue;
      if (!s.inZone) {
        this.dwelling.delete(track.id);
        continue;
      }
      const at = groundPoint(track.box);
      let d = this.dwelling.get(track.id);
      if (!d) this.dwelling.set(track.id, (d = { since: ts, anchor: at, fired: false }));
      else if (distance(at, d.anchor) > this.rule.maxMovement) {
        d.since = ts;
        d.anchor = at;
      }
      if (!d.fired && ts - d.since >= this.rule.seconds * 1000) due.push(track);
    }
    if (due.length === 0 || ts - this.lastHit < this.rule.cooldownSeconds * 1000) return null;

    this.lastHit = ts;
    let startedAt = ts;
    for (const track of due) {
      const d = this.dwelling.get(track.id)!;
      d.fired = true;
      startedAt = Math.min(startedAt, d.since);
    }
    return {
      eventType: this.rule.type,
      rule: 'dwell',
      ruleId: this.rule.id,
      zoneId: this.zone.id,
      startedAt,
      ts,
      dwellSeconds: (ts - startedAt) / 1000,
      objects: due.map(ruleObject),
    };
  }
}
