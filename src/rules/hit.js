import { boxArea, groundPoint, pointInPolygon } from './geometry.js';
/**
 * Why a violation ended: `cleared` the rule stopped holding for `endSeconds`; `schedule` its window closed;
 * `agent_stopped` the agent stopped cleanly while it still held (after a restart the rule must hold again, for its
 * full dwell, before a new event starts).
 */
export const END_REASONS = ['cleared', 'schedule', 'agent_stopped'];
/** The zone without its masks. */
export function inZone(p, zone) {
    return pointInPolygon(p, zone.polygon) && !zone.masks.some((m) => pointInPolygon(p, m));
}
export function sight(rule, zone, track) {
    if (!rule.classes.includes(track.class))
        return { kind: 'other' };
    if (track.missed > 0 || track.score < rule.minScore || boxArea(track.box) < rule.minBoxArea)
        return { kind: 'unsure' };
    const at = groundPoint(track.box);
    return { kind: 'seen', inZone: inZone(at, zone), at };
}
export function ruleObject(track) {
    return { class: track.class, score: track.score, box: [...track.box], trackId: track.id };
}
/** Forgets per-track state of tracks the tracker has ended. */
export function dropEnded(state, tracks) {
    if (state.size === 0)
        return;
    const live = new Set(tracks.map((t) => t.id));
    for (const id of state.keys())
        if (!live.has(id))
            state.delete(id);
}
