/**
 * The life of one rule's violations: one event while the rule holds, with a stable id. `started` when the rule
 * holds (in schedule, and `cooldownSeconds` after the previous event ended); `updated` at most every
 * `updateMinutes` while it holds; `ended` once it has not held for `endSeconds` (short gaps, such as a missed
 * detection or a passer-by covering the scene, do not split one violation in two), or when the schedule window
 * closes. Pure apart from the id generator it is given.
 */
export class Lifecycle {
    zone;
    rule;
    newId;
    active = null;
    lastEnd = Number.NEGATIVE_INFINITY;
    lastInstant = Number.NEGATIVE_INFINITY;
    constructor(zone, rule, newId) {
        this.zone = zone;
        this.rule = rule;
        this.newId = newId;
    }
    /** Feeds one frame's observation; returns the message this frame makes, if any. */
    step(ts, obs, scheduled, extra = {}) {
        const a = this.active;
        if (a) {
            if (obs.holds && scheduled) {
                a.lastHeld = ts;
                a.objects = obs.objects;
                a.extra = extra;
                if (ts - a.lastMessage < this.rule.updateMinutes * 60_000)
                    return null;
                a.lastMessage = ts;
                return this.hit('updated', a.eventId, a.startedAt, ts, a.objects, extra);
            }
            if (scheduled && ts - a.lastHeld < this.rule.endSeconds * 1000)
                return null;
            return this.end(a, ts, scheduled ? 'cleared' : 'schedule');
        }
        if (!obs.holds || !scheduled || ts - this.lastEnd < this.rule.cooldownSeconds * 1000)
            return null;
        const eventId = this.newId();
        this.active = { eventId, startedAt: obs.since, lastHeld: ts, lastMessage: ts, objects: obs.objects, extra };
        return this.hit('started', eventId, obs.since, ts, obs.objects, extra);
    }
    /** Ends the open violation, if there is one, because the agent stops; the lifecycle is not used after it. */
    close(ts) {
        return this.active ? this.end(this.active, ts, 'agent_stopped') : null;
    }
    end(a, ts, endReason) {
        this.active = null;
        this.lastEnd = ts;
        return { ...this.hit('ended', a.eventId, a.startedAt, ts, a.objects, a.extra), endedAt: a.lastHeld, dwellSeconds: (a.lastHeld - a.startedAt) / 1000, endReason };
    }
    /** A violation that is one moment (a line crossing): one `instant` message, at most one per cooldown. */
    instant(ts, objects, scheduled, extra = {}) {
        if (!scheduled || ts - this.lastInstant < this.rule.cooldownSeconds * 1000)
            return null;
        this.lastInstant = ts;
        return this.hit('instant', this.newId(), ts, ts, objects, extra);
    }
    hit(state, eventId, startedAt, ts, objects, extra) {
        return {
            eventId,
            state,
            eventType: this.rule.type,
            ...(this.rule.preset !== undefined && { preset: this.rule.preset }),
            rule: this.rule.kind,
            ruleId: this.rule.id,
            zoneId: this.zone.id,
            startedAt,
            ts,
            dwellSeconds: (ts - startedAt) / 1000,
            objects,
            ...extra,
        };
    }
}
