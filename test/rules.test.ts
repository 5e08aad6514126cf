import t from 'tap';
import { parseConfig, type CameraConfig } from '../src/config/index.js';
import { CameraRules, groundPoint, pointInPolygon, polygonProblem, type RuleHit } from '../src/rules/index.js';
import type { Detection } from '../src/vision/types.js';

const W = 1000;
const H = 500;
const STEP = 500; // 2 fps, as configured below

/** A camera with one zone, by default the lower half of the frame (y ≥ 0.5) between x 0.1 and 0.9. */
function camera(rules: string, polygon: number[][] = [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]): CameraConfig {
  return parseConfig(`
gateway: { id: gw }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: cam
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    zones:
      - id: lower
        polygon: ${JSON.stringify(polygon)}
        rules:
${rules.trim().split('\n').map((l) => `          ${l}`).join('\n')}
`, '/x/gateway.yaml').cameras[0]!;
}

/** A detection from a normalized box: x, y of the top-left corner, width and height. */
function obj(cls: string, x: number, y: number, w = 0.1, h = 0.2, score = 0.9): Detection {
  return { class: cls, classId: 0, score, box: [x * W, y * H, (x + w) * W, (y + h) * H] };
}

/** Runs `frames` frames at 2 fps from t = 0; `at(i)` gives frame i's detections. Returns hits with their frame. */
function run(rules: CameraRules, frames: number, at: (i: number) => Detection[], start = 0): (RuleHit & { frame: number })[] {
  const hits: (RuleHit & { frame: number })[] = [];
  for (let i = 0; i < frames; i++) {
    for (const hit of rules.evaluate(start + i * STEP, W, H, at(i))) hits.push({ ...hit, frame: start / STEP + i });
  }
  return hits;
}

const PRESENCE = '- { kind: presence, type: street_vending, classes: [person], cooldownSeconds: 10 }';
const DWELL = '- { kind: dwell, type: fire_lane_parking, classes: [car, truck], seconds: 30, maxMovement: 0.05, cooldownSeconds: 60 }';

const inside = (cls = 'person', x = 0.4) => obj(cls, x, 0.6); // feet at y = 0.8

t.test('geometry: ground point and point in polygon', async (t) => {
  t.same(groundPoint([0.25, 0.1, 0.75, 0.5]), [0.5, 0.5]);
  const square = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]] as const;
  t.ok(pointInPolygon([0.5, 0.5], square));
  t.notOk(pointInPolygon([0.95, 0.5], square));
  const concave = [[0, 0], [1, 0], [1, 1], [0.5, 0.3], [0, 1]] as const;
  t.notOk(pointInPolygon([0.5, 0.8], concave), 'the notch of a concave zone is outside');
  t.equal(polygonProblem(concave), null);
  t.match(polygonProblem([[0, 0], [1, 1], [1, 0], [0, 1]]), /crosses itself/);
  t.match(polygonProblem([[0, 0], [0.5, 0.5], [1, 1]]), /one line/);
  t.match(polygonProblem([[0, 0], [0, 0], [1, 1], [0, 1]]), /points 0 and 1 are the same/);
  t.match(polygonProblem([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0]]), /crosses itself/, 'an edge doubling back over another');
});

t.test('presence: an object is in the zone by its feet, not by overlap', async (t) => {
  // A fire lane drawn as a band across the middle of the frame.
  const band = new CameraRules(camera(PRESENCE, [[0.1, 0.3], [0.9, 0.3], [0.9, 0.6], [0.1, 0.6]]));
  const inFront = obj('person', 0.4, 0.35, 0.1, 0.45); // body covers the band, feet at y 0.8: in front of it
  const beside = obj('person', 0.0, 0.35, 0.15, 0.2); // box reaches into the band from the left, feet at x 0.075
  t.same(run(band, 4, () => [inFront, beside]), [], 'boxes overlap the zone but their feet are outside');
  const hits = run(band, 1, () => [obj('person', 0.4, 0.2, 0.1, 0.3)], 4 * STEP); // feet at y 0.5
  t.equal(hits.length, 1, 'feet inside the band');
});

t.test('presence: fires once when a track appears, not again while it stays', async (t) => {
  const rules = new CameraRules(camera(PRESENCE));
  const hits = run(rules, 60, () => [inside()]);
  t.equal(hits.length, 1);
  t.match(hits[0], {
    eventType: 'street_vending', rule: 'presence', ruleId: 'street_vending', zoneId: 'lower',
    startedAt: 0, ts: 0, dwellSeconds: 0, frame: 0,
    objects: [{ class: 'person', score: 0.9, trackId: 1 }],
  });
  t.same(hits[0]!.objects[0]!.box.map((v) => +v.toFixed(6)), [0.4, 0.6, 0.5, 0.8], 'box normalized to the frame');
});

t.test('presence: enter, leave, re-enter; cooldown per rule', async (t) => {
  // Steps up out of the zone (feet above y 0.5 at frames 9-10) and back in at frame 11, 5.5 s after the hit.
  const ys = [0.62, 0.62, 0.62, 0.62, 0.56, 0.5, 0.44, 0.38, 0.32, 0.26, 0.26, 0.32];
  const rules = new CameraRules(camera(PRESENCE));
  const hits = run(rules, 40, (i) => [obj('person', 0.4, ys[i] ?? 0.32)]);
  t.same(hits.map((h) => h.frame), [0, 20], 'came back within the 10 s cooldown: reported when it ends, being still there');
  t.same(hits.map((h) => h.objects[0]!.trackId), [1, 1]);
  t.equal(hits[1]!.startedAt, 11 * STEP, 'startedAt is when it came back');
  t.equal(hits[1]!.dwellSeconds, 4.5);

  // Walks up out of the zone in small steps (so the tracker keeps it), waits, and walks back in.
  const y = (i: number) => (i < 4 ? 0.6 : i < 14 ? 0.6 - 0.05 * (i - 3) : i < 30 ? 0.1 : Math.min(0.6, 0.1 + 0.05 * (i - 29)));
  const again = new CameraRules(camera(PRESENCE));
  const far = run(again, 60, (i) => [obj('person', 0.4, y(i))]);
  t.equal(far.length, 2, 're-entering after the cooldown fires again');
  t.equal(far[0]!.frame, 0);
  t.ok(far[1]!.frame > 30 && far[1]!.frame <= 36, 'on the frame it came back in');
  t.equal(far[1]!.objects[0]!.trackId, far[0]!.objects[0]!.trackId, 'same track');
});

t.test('presence: two objects appearing together make one hit with both', async (t) => {
  const rules = new CameraRules(camera(PRESENCE));
  const hits = run(rules, 30, (i) => [inside('person', 0.2), inside('person', 0.6), ...(i >= 5 ? [inside('person', 0.75)] : [])]);
  t.equal(hits.length, 2);
  t.same(hits[0]!.objects.map((o) => o.trackId), [1, 2]);
  t.same(hits.map((h) => h.frame), [0, 20], 'the third arrived during the cooldown and is reported when it ends');
  t.same(hits[1]!.objects.map((o) => o.trackId), [3], 'only objects not yet reported');
  t.same(run(new CameraRules(camera(PRESENCE)), 5, () => [inside('car'), inside('dog', 0.6)]), [], 'other classes ignored');
});

t.test('dwell: a parked car fires exactly once when it reaches T', async (t) => {
  const rules = new CameraRules(camera(DWELL));
  const jitter = (i: number) => (i % 2 ? 0.003 : -0.003); // detector noise well below maxMovement
  const hits = run(rules, 200, (i) => [obj('car', 0.3 + jitter(i), 0.6, 0.2, 0.2)]);
  t.equal(hits.length, 1);
  t.match(hits[0], { eventType: 'fire_lane_parking', rule: 'dwell', ruleId: 'fire_lane_parking', zoneId: 'lower', startedAt: 0, ts: 30_000, dwellSeconds: 30, frame: 60 });
  t.equal(hits[0]!.objects.length, 1);
});

t.test('dwell: a car that keeps moving never dwells; one that stops does, from where it stopped', async (t) => {
  const rules = new CameraRules(camera(DWELL));
  const crawl = run(rules, 150, (i) => [obj('car', 0.1 + i * 0.004, 0.6, 0.15, 0.2)]); // 0.4 in 75 s, always in the zone
  t.same(crawl, [], 'moving 0.004 per frame: never still for 30 s');

  const parks = new CameraRules(camera(DWELL));
  const hits = run(parks, 120, (i) => [obj('car', 0.1 + Math.min(i, 20) * 0.01, 0.6, 0.15, 0.2)]);
  t.equal(hits.length, 1);
  t.ok(hits[0]!.startedAt >= 15 * STEP && hits[0]!.startedAt <= 20 * STEP, 'the clock started when it stopped moving');
  t.equal(hits[0]!.dwellSeconds, 30);
});

t.test('dwell: a short occlusion does not restart the clock; a long absence does', async (t) => {
  const rules = new CameraRules(camera(DWELL));
  const hidden = (i: number) => i >= 20 && i < 28; // 4 s without detections, within the 5 s tolerance
  const hits = run(rules, 100, (i) => (hidden(i) ? [] : [obj('car', 0.3, 0.6, 0.2, 0.2)]));
  t.same(hits.map((h) => [h.frame, h.startedAt, h.objects[0]!.trackId]), [[60, 0, 1]]);

  const weak = new CameraRules(camera(DWELL));
  const weakHits = run(weak, 100, (i) => [obj('car', 0.3, 0.6, 0.2, 0.2, i >= 20 && i < 40 ? 0.3 : 0.9)]);
  t.same(weakHits.map((h) => h.frame), [60], 'detections below minScore neither stop nor restart it');

  const gone = new CameraRules(camera(DWELL));
  const goneHits = run(gone, 120, (i) => (i >= 20 && i < 40 ? [] : [obj('car', 0.3, 0.6, 0.2, 0.2)]));
  t.same(goneHits.map((h) => [h.frame, h.startedAt / 1000, h.objects[0]!.trackId]), [[100, 20, 2]], 'after 10 s away it is a new track');
});

t.test('dwell: leaving the zone ends the stay; cooldown per rule holds a second car back', async (t) => {
  const rules = new CameraRules(camera(DWELL));
  // Parked in the zone 20 s, out of it 10 s (parked above the zone), back in: the clock starts again.
  const hits = run(rules, 200, (i) => [i >= 40 && i < 60 ? obj('car', 0.3, 0.25, 0.2, 0.2) : obj('car', 0.3, 0.6, 0.2, 0.2)]);
  t.same(hits.map((h) => h.frame), [120]);

  const two = new CameraRules(camera(DWELL));
  const pair = run(two, 300, (i) => [obj('car', 0.12, 0.6, 0.15, 0.2), ...(i >= 20 ? [obj('truck', 0.6, 0.6, 0.2, 0.25)] : [])]);
  t.same(pair.map((h) => [h.frame, h.objects[0]!.class, h.dwellSeconds]), [[60, 'car', 30], [180, 'truck', 80]],
    'the truck was due at 40 s but the 60 s cooldown holds it to 90 s');
});

t.test('rules of several zones and kinds run side by side', async (t) => {
  const rules = new CameraRules(camera(`${PRESENCE}\n${DWELL}`));
  const hits = run(rules, 80, () => [inside('person', 0.2), obj('car', 0.5, 0.6, 0.2, 0.2)]);
  t.same(hits.map((h) => [h.frame, h.rule, h.objects[0]!.class]), [[0, 'presence', 'person'], [60, 'dwell', 'car']]);
});
