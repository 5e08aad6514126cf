import type { PresenceRuleConfig, ZoneConfig } from '../config/index.js';
import type { Track } from '../vision/tracker.js';
import { dropEnded, ruleObject, sight, type RuleHit } from './hit.js';

/**
 * `presence`: a matching object stands in the zone. Each track is reported once per stay in the zone; an
 * object that arrives while the rule cools down is reported when the cooldown ends, if it is still there.
 */
export class PresenceRule {
  /** Track id → when it entered the zone, and whether this stay has been reported. */
  private readonly inside = new Map<number, { since: number; reported: boolean }>();
  private lastHit = Number.NEGATIVE_INFINITY;

  constructor(private readonly zone: ZoneConfig, private readonly rule: PresenceRuleConfig) {}

  evaluate(ts: number, tracks: readonly Track[]): RuleHit | null {
    dropEnded(this.inside, tracks);
    const fresh: Track[] = [];
    for (const track of tracks) {
      const s = sight(this.rule, this.zone, track);
      if (s.kind !== 'seen') continue;
      if (!s.inZone) {
        this.inside.delete(track.id);
        continue;
      }
      let stay = this.inside.get(track.id);
      if (!stay) this.inside.set(track.id, (stay = { since: ts, reported: false }));
      if (!stay.reported) fresh.push(track);
    }
    if (fresh.length === 0 || ts - this.lastHit < this.rule.cooldownSeconds * 1000) return null;

    this.lastHit = ts;
    let startedAt = ts;
    for (const track of fresh) {
      const stay = this.inside.get(track.id)!;
      stay.reported = true;
      startedAt = Math.min(startedAt, stay.since);
    }
    return {
      eventType: this.rule.type,
      rule: 'presence',
      ruleId: this.rule.id,
      zoneId: this.zone.id,
      startedAt,
      ts,
      dwellSeconds: (ts - startedAt) / 1000,
      objects: fresh.map(ruleObject),
    };
  }
}
