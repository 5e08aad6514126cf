import { v7 as uuidv7 } from 'uuid';
import { Tracker } from '../vision/tracker.js';
import { decodeImage } from '../evidence/jpeg.js';
import { Lifecycle } from './lifecycle.js';
import { CountObserver, DwellObserver, LeftObjectObserver, LineCrossObserver, PresenceObserver, } from './observe.js';
import { greyThumb, SceneChangeObserver } from './scene.js';
import { inSchedule } from './schedule.js';
/** How long an object may go undetected (hidden by a passing bus, a missed detection) and keep its track. */
export const OCCLUSION_SECONDS = 5;
/** The tracker's own threshold for starting tracks; lowered to a rule's minScore when one asks for less. */
const TRACK_START_SCORE = 0.5;
/** Key of a scene_change rule's reference in CameraRulesOptions.references. */
export function referenceKey(zone, rule) {
    return `${zone.id}/${rule.id}`;
}
/** A scene_change reference that cannot be used; the message names camera, zone, rule and file. */
export class SceneReferenceError extends Error {
    name = 'SceneReferenceError';
}
/** The rules of one camera: tracks its detections and runs every rule of every zone on each frame. */
export class CameraRules {
    tracker;
    evaluators = [];
    lifecycles = [];
    timeZone;
    /** Loads the camera's scene_change references, then builds its rules. */
    static async open(camera, opts = {}) {
        const references = new Map();
        for (const zone of camera.zones) {
            for (const rule of zone.rules) {
                if (rule.kind === 'scene_change')
                    references.set(referenceKey(zone, rule), await loadReference(camera, zone, rule));
            }
        }
        return new CameraRules(camera, { ...opts, references });
    }
    constructor(camera, opts = {}) {
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
    evaluator(camera, zone, rule, life, references) {
        const scheduled = (ts) => inSchedule(rule.schedule, ts, this.timeZone);
        const over = (observer) => (ts, tracks) => life.step(ts, observer.observe(ts, tracks), scheduled(ts));
        switch (rule.kind) {
            case 'presence': return over(new PresenceObserver(zone, rule));
            case 'dwell': return over(new DwellObserver(zone, rule));
            case 'count': return over(new CountObserver(zone, rule));
            case 'left_object': return over(new LeftObjectObserver(zone, rule));
            case 'line_cross': {
                const observer = new LineCrossObserver(zone, rule);
                return (ts, tracks) => {
                    const on = scheduled(ts);
                    const hits = [];
                    for (const c of observer.observe(tracks)) {
                        if (rule.direction !== 'both' && c.direction !== rule.direction)
                            continue;
                        const hit = life.instant(ts, [c.object], on, { counts: { ...observer.counts } });
                        if (hit)
                            hits.push(hit);
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
                    if (!current)
                        return null;
                    const obs = observer.observe(ts, current, tracks);
                    return life.step(ts, obs, scheduled(ts), { change: { fraction: round3(observer.fraction), threshold: rule.threshold } });
                };
            }
        }
    }
    /**
     * Feeds the detections of one frame (call it for every frame the detector ran on, in time order; `ts` in ms)
     * and returns the event messages of this frame. Boxes are in pixels of a width × height frame. `frame` (the
     * RGB pixels) is needed only by scene_change rules, which skip frames evaluated without it.
     */
    evaluate(ts, width, height, detections, frame) {
        const clamp = (v) => Math.min(1, Math.max(0, v));
        const normalized = detections.map((d) => ({
            class: d.class,
            score: d.score,
            box: [clamp(d.box[0] / width), clamp(d.box[1] / height), clamp(d.box[2] / width), clamp(d.box[3] / height)],
        }));
        const tracks = this.tracker.update(ts, normalized);
        let thumb;
        const lazyThumb = () => (thumb === undefined ? (thumb = frame ? greyThumb({ width, height, data: frame.data }) : null) : thumb);
        const hits = [];
        for (const evaluate of this.evaluators) {
            const out = evaluate(ts, tracks, lazyThumb);
            if (Array.isArray(out))
                hits.push(...out);
            else if (out)
                hits.push(out);
        }
        return hits;
    }
    /**
     * Whether any object is tracked now, seen or coasting through an occlusion: while one is, the agent's motion
     * gate keeps the detector refreshing, so a parked car's dwell goes on counting without motion.
     */
    hasTracks() {
        return this.tracker.size > 0;
    }
    /**
     * Ends every open violation because the agent stops (`ended` with endReason `agent_stopped`, `endedAt` the last
     * frame the rule held); the rules are not used after it. `ts` is the time of the stop.
     */
    close(ts) {
        return this.lifecycles.flatMap((life) => life.close(ts) ?? []);
    }
}
function round3(x) { return Math.round(x * 1000) / 1000; }
/** Aspect ratios further apart than this mean the reference shows another view (or a crop) of the camera. */
const ASPECT_TOLERANCE = 0.03;
async function loadReference(camera, zone, rule) {
    const where = `camera ${camera.id}, zone ${zone.id}, rule ${rule.id}`;
    const fix = `take one with: edgepatrol camera snapshot ${camera.id} --out ${rule.reference}`;
    let img;
    try {
        img = await decodeImage(rule.reference);
    }
    catch (err) {
        throw new SceneReferenceError(`${where}: cannot read the scene_change reference ${rule.reference} (${err.message}); ${fix}`);
    }
    const want = camera.detect.width / camera.detect.height;
    if (Math.abs(img.width / img.height - want) / want > ASPECT_TOLERANCE) {
        throw new SceneReferenceError(`${where}: the reference ${rule.reference} is ${img.width}×${img.height}, not the camera's aspect ratio ${camera.detect.width}:${camera.detect.height}; it must show the whole camera view; ${fix}`);
    }
    return greyThumb(img);
}
