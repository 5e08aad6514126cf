import t from 'tap';
import { parseConfig, type CameraConfig } from '../src/config/index.js';
import { CameraRules, groundPoint, pointInPolygon, polygonProblem, sideOf, type RuleHit } from '../src/rules/index.js';
import type { Detection } from '../src/vision/types.js';

const W = 1000;
const H = 500;
const STEP = 500; // 2 fps, as configured below
const LOWER = [
  [0.1, 0.5],
  [0.9, 0.5],
  [0.9, 1],
  [0.1, 1],
];

/** A camera with zones; by default one, `lower`: the lower half of the frame (y ≥ 0.5) between x 0.1 and 0.9. */
function camera(rules: string, polygon: number[][] = LOWER, extra = '', cameraExtra = ''): CameraConfig {
  return parseConfig(
    `
gateway: { id: gw }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: cam
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
${cameraExtra}
    zones:
      - id: lower
        polygon: ${JSON.stringify(polygon)}
${extra}
        rules:
${rules
  .trim()
  .split('\n')
  .map((l) => `          ${l}`)
  .join('\n')}
`,
    '/x/gateway.yaml',
  ).cameras[0]!;
}

/** Rules whose event ids are ev1, ev2, … */
function rulesOf(cam: CameraConfig): CameraRules {
  let n = 0;
  return new CameraRules(cam, { newId: () => `ev${++n}` });
}

/** A detection from a normalized box: x, y of the top-left corner, width and height. */
function obj(cls: string, x: number, y: number, w = 0.1, h = 0.2, score = 0.9): Detection {
  return { class: cls, classId: 0, score, box: [x * W, y * H, (x + w) * W, (y + h) * H] };
}

type Hit = RuleHit & { frame: number };

/** Runs `frames` frames at 2 fps from `start` ms; `at(i)` gives frame i's detections. Returns hits with their frame. */
function run(rules: CameraRules, frames: number, at: (i: number) => Detection[], start = 0): Hit[] {
  const hits: Hit[] = [];
  for (let i = 0; i < frames; i++) {
    for (const hit of rules.evaluate(start + i * STEP, W, H, at(i))) hits.push({ ...hit, frame: start / STEP + i });
  }
  return hits;
}

const brief = (hits: Hit[]): [number, string, string][] => hits.map((h) => [h.frame, h.state, h.eventId]);

const PRESENCE = '- { kind: presence, type: street_vending, classes: [person], cooldownSeconds: 10, endSeconds: 5 }';
const DWELL = '- { kind: dwell, type: fire_lane_parking, classes: [car, truck], seconds: 30, maxMovement: 0.05, cooldownSeconds: 60 }';

const inside = (cls = 'person', x = 0.4) => obj(cls, x, 0.6); // feet at y = 0.8

t.test('geometry: ground point, point in polygon, sides of a directed line', async (t) => {
  t.same(groundPoint([0.25, 0.1, 0.75, 0.5]), [0.5, 0.5]);
  const square = [
    [0.1, 0.1],
    [0.9, 0.1],
    [0.9, 0.9],
    [0.1, 0.9],
  ] as const;
  t.ok(pointInPolygon([0.5, 0.5], square));
  t.notOk(pointInPolygon([0.95, 0.5], square));
  const concave = [
    [0, 0],
    [1, 0],
    [1, 1],
    [0.5, 0.3],
    [0, 1],
  ] as const;
  t.notOk(pointInPolygon([0.5, 0.8], concave), 'the notch of a concave zone is outside');
  t.equal(polygonProblem(concave), null);
  t.match(
    polygonProblem([
      [0, 0],
      [1, 1],
      [1, 0],
      [0, 1],
    ]),
    /crosses itself/,
  );
  t.match(
    polygonProblem([
      [0, 0],
      [0.5, 0.5],
      [1, 1],
    ]),
    /one line/,
  );
  t.match(
    polygonProblem([
      [0, 0],
      [0, 0],
      [1, 1],
      [0, 1],
    ]),
    /points 0 and 1 are the same/,
  );
  t.match(
    polygonProblem([
      [0, 0],
      [1, 0],
      [1, 1],
      [0, 1],
      [0.5, 0],
    ]),
    /crosses itself/,
    'an edge doubling back over another',
  );
  t.ok(sideOf([0.5, 0.8], [0, 0.5], [1, 0.5]) > 0, 'left→right line: forward is down the screen');
  t.ok(sideOf([0.5, 0.2], [0, 0.5], [1, 0.5]) < 0);
  t.ok(sideOf([0.2, 0.5], [0.5, 0], [0.5, 1]) > 0, 'top→bottom line: forward is to the left');
});

t.test('presence: an object is in the zone by its feet, not by overlap', async (t) => {
  const band = rulesOf(
    camera(PRESENCE, [
      [0.1, 0.3],
      [0.9, 0.3],
      [0.9, 0.6],
      [0.1, 0.6],
    ]),
  );
  const inFront = obj('person', 0.4, 0.35, 0.1, 0.45); // body covers the band, feet at y 0.8: in front of it
  const beside = obj('person', 0.0, 0.35, 0.15, 0.2); // box reaches into the band from the left, feet at x 0.075
  t.same(
    run(band, 4, () => [inFront, beside]),
    [],
    'boxes overlap the zone but their feet are outside',
  );
  const hits = run(band, 1, () => [obj('person', 0.4, 0.2, 0.1, 0.3)], 4 * STEP); // feet at y 0.5
  t.same(brief(hits), [[4, 'started', 'ev1']], 'feet inside the band');
});

t.test('a vehicle parked across the zone edge counts by where its wheels are', async (t) => {
  // Fire lane: x 0.1..0.9, y ≥ 0.5. A car whose box is mostly inside but whose bottom-centre is right of the lane:
  const mostlyIn = obj('car', 0.6, 0.5, 0.36, 0.3); // bottom-centre x 0.78: inside
  const mostlyOut = obj('car', 0.75, 0.5, 0.4, 0.3); // box 0.75..1.15 clamps to 1.0 → bottom-centre x 0.875: inside
  const wheelsOut = obj('car', 0.05, 0.2, 0.3, 0.29); // front over the lane, bottom at y 0.49: outside
  t.same(
    run(rulesOf(camera(DWELL)), 100, () => [wheelsOut]),
    [],
    'bonnet over the lane, wheels outside: no event',
  );
  t.same(brief(run(rulesOf(camera(DWELL)), 61, () => [mostlyIn])), [[60, 'started', 'ev1']]);
  t.same(brief(run(rulesOf(camera(DWELL)), 61, () => [mostlyOut])), [[60, 'started', 'ev1']], 'clamped to the frame first');
});

t.test('masks: feet in a masked part of the zone do not count', async (t) => {
  const masked = rulesOf(camera(PRESENCE, LOWER, '        masks: [[[0.3, 0.5], [0.6, 0.5], [0.6, 1], [0.3, 1]]]'));
  t.same(
    run(masked, 10, () => [inside('person', 0.4)]),
    [],
    'feet at x 0.45, in the mask',
  );
  t.same(brief(run(masked, 1, () => [inside('person', 0.7)], 10 * STEP)), [[10, 'started', 'ev1']], 'outside the mask');
});

t.test('presence lifecycle: one event per stay; ended after endSeconds; re-entry is a new event, not before the cooldown', async (t) => {
  // Walks up out of the zone in small steps (so the tracker keeps the track), waits, walks back in, then leaves the picture.
  const y = (i: number) => (i < 20 ? 0.61 : i < 30 ? 0.61 - 0.05 * (i - 19) : i < 60 ? 0.11 : Math.min(0.61, 0.11 + 0.05 * (i - 59)));
  const feetIn = (i: number) => y(i) + 0.2 > 0.5;
  const exit = Array.from({ length: 100 }, (_, i) => i).find((i) => !feetIn(i))!;
  const back = Array.from({ length: 100 }, (_, i) => i).find((i) => i > exit && feetIn(i))!;
  const hits = run(rulesOf(camera(PRESENCE)), 140, (i) => (i < 90 ? [obj('person', 0.4, y(i))] : []));
  t.same(
    hits.map((h) => [h.state, h.eventId]),
    [
      ['started', 'ev1'],
      ['ended', 'ev1'],
      ['started', 'ev2'],
      ['ended', 'ev2'],
    ],
  );
  t.same(
    hits.map((h) => h.frame),
    [0, exit - 1 + 10, back, 89 + 10 + 10],
    'ends 5 s after the last frame in the zone; the last stay also coasts 5 s (occlusion tolerance) after the person vanished',
  );
  t.match(hits[1], { endedAt: (exit - 1) * STEP, dwellSeconds: ((exit - 1) * STEP) / 1000, objects: [{ class: 'person', trackId: 1 }] });
  t.match(hits[2], { startedAt: back * STEP, dwellSeconds: 0, objects: [{ trackId: 1 }] }, 'the same track, a new stay');

  const early = run(rulesOf(camera(PRESENCE.replace('cooldownSeconds: 10', 'cooldownSeconds: 40'))), 140, (i) => [
    obj('person', 0.4, y(i)),
  ]);
  t.same(
    early.map((h) => [h.frame, h.state]),
    [
      [0, 'started'],
      [exit - 1 + 10, 'ended'],
      [exit - 1 + 10 + 80, 'started'],
    ],
    'came back during the 40 s cooldown: the event starts when the cooldown is over',
  );
  t.equal(early[2]!.startedAt, back * STEP, 'with the time it really came back');
});

t.test(
  'a message lists as objects only what is detected in its own frame; hidden objects of the violation apart, with lastSeenAt',
  async (t) => {
    // Updates every 3 s (6 frames): at frames 6, 12, 18, 24. A stands in view throughout; B is hidden (a passer-by, a
    // bus: no detection) over frames 10-15, so the update at 12 comes while B's track coasts; from 20 both are hidden.
    const rules = rulesOf(camera(PRESENCE.replace('endSeconds: 5', 'endSeconds: 5, updateMinutes: 0.05')));
    const a = inside('person', 0.2);
    const b = inside('person', 0.6);
    const hits = run(rules, 28, (i) => (i >= 20 ? [] : i >= 10 && i < 16 ? [a] : [a, b]));
    t.same(
      hits.map((h) => [h.frame, h.state, h.objects.map((o) => o.trackId), h.unseen.map((o) => o.trackId)]),
      [
        [0, 'started', [1, 2], []],
        [6, 'updated', [1, 2], []],
        [12, 'updated', [1], [2]],
        [18, 'updated', [1, 2], []],
        [24, 'updated', [], [1, 2]],
      ],
    );
    const occluded = hits[2]!;
    const normalized = (d: Detection) => d.box.map((v, i) => v / (i % 2 ? H : W));
    t.same(occluded.objects[0]!.box, normalized(a), 'A with the box of this frame');
    t.same(
      occluded.unseen,
      [{ class: 'person', trackId: 2, lastSeenAt: 9 * STEP, lastScore: 0.9, lastBox: normalized(b) }],
      'B: not among the objects, listed apart with its last detection',
    );
    t.same(
      hits[4]!.unseen.map((o) => o.lastSeenAt),
      [19 * STEP, 19 * STEP],
      'nobody visible: the update says when each was last seen',
    );

    t.test("ended at a stop: the last frame's detections are objects, a hidden subject is unseen", async (t) => {
      const stop = rulesOf(camera(PRESENCE));
      run(stop, 12, (i) => (i >= 10 ? [a] : [a, b]));
      const [ended] = stop.close(12 * STEP);
      t.match(ended, {
        state: 'ended',
        endReason: 'agent_stopped',
        objects: [{ trackId: 1 }],
        unseen: [{ trackId: 2, lastSeenAt: 9 * STEP }],
      });
      t.equal(ended!.objects.length, 1);
    });
  },
);

t.test('presence: a short gap keeps one event; a step out shorter than endSeconds too', async (t) => {
  const rules = rulesOf(camera(PRESENCE));
  const y = (i: number) => (i >= 20 && i < 26 ? 0.2 : 0.6); // 3 s out of the zone, endSeconds 5
  const hits = run(rules, 60, (i) => (i >= 40 && i < 46 ? [] : [obj('person', 0.4, y(i))]));
  t.same(brief(hits), [[0, 'started', 'ev1']], 'no ended/started pair for the step out or the 3 s without detections');
});

t.test(
  'dwell: a parked car is one event: started at T, updated every updateMinutes with fresh objects, ended when it leaves',
  async (t) => {
    const rules = rulesOf(camera(DWELL.replace('cooldownSeconds: 60', 'cooldownSeconds: 60, updateMinutes: 10')));
    const jitter = (i: number) => (i % 2 ? 0.003 : -0.003); // detector noise well below maxMovement
    const minutes = 25;
    const parked = minutes * 120;
    const hits = run(rules, parked + 40, (i) => (i < parked ? [obj('car', 0.3 + jitter(i), 0.6, 0.2, 0.2, i === 1260 ? 0.8 : 0.9)] : []));
    t.same(
      hits.map((h) => [h.frame, h.state]),
      [
        [60, 'started'],
        [60 + 1200, 'updated'],
        [60 + 2400, 'updated'],
        [parked - 1 + 10 + 20, 'ended'],
      ],
      'updates at 10:30 and 20:30; ended 15 s after the car was last seen: its track coasts 5 s (occlusion tolerance), then endSeconds 10 s',
    );
    t.same(new Set(hits.map((h) => h.eventId)).size, 1, 'one stable id');
    t.match(hits[0], {
      eventType: 'fire_lane_parking',
      rule: 'dwell',
      ruleId: 'fire_lane_parking',
      zoneId: 'lower',
      startedAt: 0,
      ts: 30_000,
      dwellSeconds: 30,
    });
    t.equal(hits[1]!.dwellSeconds, 630);
    t.same(hits[3]!.objects, [], 'ended: the car is not in the end frame, so nothing is listed as seen in it');
    t.match(
      hits[3]!.unseen,
      [{ class: 'car', trackId: 1, lastSeenAt: (parked - 1) * STEP }],
      'it is listed apart, with when it was last seen',
    );
  },
);

t.test('dwell: a car that keeps moving never dwells; one that stops does, from where it stopped', async (t) => {
  const crawl = run(rulesOf(camera(DWELL)), 150, (i) => [obj('car', 0.1 + i * 0.004, 0.6, 0.15, 0.2)]); // 0.4 in 75 s
  t.same(crawl, [], 'moving 0.004 per frame: never still for 30 s');
  const hits = run(rulesOf(camera(DWELL)), 120, (i) => [obj('car', 0.1 + Math.min(i, 20) * 0.01, 0.6, 0.15, 0.2)]);
  t.equal(hits.length, 1);
  t.ok(hits[0]!.startedAt >= 15 * STEP && hits[0]!.startedAt <= 20 * STEP, 'the clock started when it stopped moving');
});

t.test('dwell: a short occlusion does not restart the clock; weak detections neither; a long absence does', async (t) => {
  const hidden = (i: number) => i >= 20 && i < 28; // 4 s without detections, within the 5 s tolerance
  const hits = run(rulesOf(camera(DWELL)), 100, (i) => (hidden(i) ? [] : [obj('car', 0.3, 0.6, 0.2, 0.2)]));
  t.same(
    hits.map((h) => [h.frame, h.startedAt, h.objects[0]!.trackId]),
    [[60, 0, 1]],
  );
  const weak = run(rulesOf(camera(DWELL)), 100, (i) => [obj('car', 0.3, 0.6, 0.2, 0.2, i >= 20 && i < 40 ? 0.3 : 0.9)]);
  t.same(
    weak.map((h) => h.frame),
    [60],
    'detections below minScore neither stop nor restart it',
  );
  const gone = run(rulesOf(camera(DWELL)), 120, (i) => (i >= 20 && i < 40 ? [] : [obj('car', 0.3, 0.6, 0.2, 0.2)]));
  t.same(
    gone.map((h) => [h.frame, h.startedAt / 1000, h.objects[0]!.trackId]),
    [[100, 20, 2]],
    'after 10 s away it is a new track',
  );
});

t.test('cooldown: after an event ends, the next waits cooldownSeconds; two cars at once are one violation', async (t) => {
  const rules = rulesOf(camera(DWELL));
  // Car A parked frames 0-99, gone; car B parks at frame 130 (A's event ended at ~frame 129).
  const hits = run(rules, 400, (i) => [
    ...(i < 100 ? [obj('car', 0.12, 0.6, 0.15, 0.2)] : []),
    ...(i >= 130 ? [obj('truck', 0.6, 0.6, 0.2, 0.25)] : []),
  ]);
  t.same(
    hits.map((h) => [h.frame, h.state, [...h.objects, ...h.unseen][0]!.class]),
    [
      [60, 'started', 'car'],
      [129, 'ended', 'car'],
      [249, 'started', 'truck'],
    ],
    'B was due at frame 190, the 60 s cooldown from the end at frame 129 holds it to 249',
  );
  t.same(hits[2]!.startedAt, 130 * STEP, 'startedAt stays when B stopped');

  const pair = run(rulesOf(camera(DWELL)), 100, (i) => [
    obj('car', 0.12, 0.6, 0.15, 0.2),
    ...(i >= 10 ? [obj('truck', 0.6, 0.6, 0.2, 0.25)] : []),
  ]);
  t.same(
    pair.map((h) => [h.frame, h.state]),
    [[60, 'started']],
    'the truck joins the running event instead of starting another',
  );
});

t.test('two violations at once: separate zones and rules keep separate events', async (t) => {
  const cam = parseConfig(
    `
gateway: { id: gw }
mqtt: { url: mqtt://127.0.0.1 }
cameras:
  - id: cam
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    zones:
      - id: lane-west
        polygon: [[0, 0.5], [0.5, 0.5], [0.5, 1], [0, 1]]
        rules: [{ preset: fire_lane_parking, seconds: 30 }]
      - id: lane-east
        polygon: [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]
        rules: [{ preset: fire_lane_parking, seconds: 30 }, { kind: presence, type: loitering, classes: [person] }]
`,
    '/x/gateway.yaml',
  ).cameras[0]!;
  const hits = run(rulesOf(cam), 80, () => [
    obj('car', 0.1, 0.6, 0.2, 0.2),
    obj('truck', 0.7, 0.6, 0.2, 0.2),
    obj('person', 0.6, 0.7, 0.05, 0.2),
  ]);
  t.same(
    hits.map((h) => [h.frame, h.zoneId, h.ruleId, h.state, h.eventId]),
    [
      [0, 'lane-east', 'loitering', 'started', 'ev1'],
      [60, 'lane-west', 'fire_lane_parking', 'started', 'ev2'],
      [60, 'lane-east', 'fire_lane_parking', 'started', 'ev3'],
    ],
    'each zone and rule has its own event, ids handed out as events start',
  );
  t.match(hits[1], { preset: 'fire_lane_parking', objects: [{ class: 'car' }] });
  t.match(hits[2], { objects: [{ class: 'truck' }] });
});

t.test('schedule: windows in the camera time zone, across midnight, on their days', async (t) => {
  // Asia/Shanghai is UTC+8 with no DST. 2025-06-06 is a Friday.
  const at = (local: string): number => Date.parse(`${local}+08:00`);
  const rules = (schedule: string) =>
    rulesOf(
      camera(
        `- { kind: presence, type: street_vending, classes: [person], cooldownSeconds: 0, endSeconds: 5, schedule: ${schedule} }`,
        LOWER,
        '',
        '    timezone: Asia/Shanghai',
      ),
    );
  const night = rules('[{ from: "22:00", to: "06:00", days: [fri] }]');
  const evening = run(night, 40, () => [inside()], at('2025-06-06T21:59:50'));
  t.same(
    evening.map((h) => [new Date(h.ts).toISOString(), h.state, h.startedAt === at('2025-06-06T21:59:50')]),
    [['2025-06-06T14:00:00.000Z', 'started', true]],
    'present from 21:59:50, started at 22:00:00 with its real start',
  );
  const morning = run(night, 40, () => [inside()], at('2025-06-07T05:59:50'));
  t.same(
    morning.map((h) => [new Date(h.ts).toISOString(), h.state, h.eventId]),
    [
      ['2025-06-06T21:59:50.000Z', 'updated', 'ev1'],
      ['2025-06-06T22:00:00.000Z', 'ended', 'ev1'],
    ],
    "still there through the night (an update, the last one 8 h ago); Friday's window closes Saturday 06:00: the event ends",
  );
  t.same(
    run(rules('[{ from: "22:00", to: "06:00", days: [fri] }]'), 20, () => [inside()], at('2025-06-07T22:00:00')),
    [],
    'not on Saturday night',
  );
  t.same(
    run(rules('[{ from: "22:00", to: "06:00", days: [fri] }]'), 20, () => [inside()], at('2025-06-06T05:00:00')),
    [],
    "Friday 05:00 belongs to Thursday's window, which is not scheduled",
  );
  const day = rules('[{ from: "07:00", to: "22:00" }]');
  t.same(
    run(day, 20, () => [inside()], at('2025-06-08T06:59:55')).map((h) => [new Date(h.ts).toISOString(), h.state]),
    [['2025-06-07T23:00:00.000Z', 'started']],
    'Sunday 07:00, every day',
  );
});

t.test('count: at least N objects together for the hold time', async (t) => {
  const rules = rulesOf(camera('- { kind: count, type: crowd, classes: [person], min: 3, seconds: 5, endSeconds: 2 }'));
  const people = (n: number) => [0.15, 0.35, 0.55, 0.75].slice(0, n).map((x) => inside('person', x));
  const n = (i: number) => (i < 10 ? 2 : i < 30 ? 3 : i < 40 ? 4 : 1);
  const hits = run(rules, 60, (i) => people(n(i)));
  t.same(
    hits.map((h) => [h.frame, h.state, h.objects.length, h.unseen.length]),
    [
      [20, 'started', 3, 0],
      [40 + 9 + 4, 'ended', 1, 3],
    ],
    '3 from frame 10, held 5 s; at 40 three vanish, coast 5 s (last held at 49), endSeconds 2 s; the one left is seen, the three are unseen',
  );
});

t.test('line_cross: counts per direction, once per crossing, on the segment and in the zone', async (t) => {
  // A line across the zone from left to right at y 0.75; forward = down the screen.
  const LINE =
    '- { kind: line_cross, type: ebike_entry, classes: [bicycle, person], line: [[0.2, 0.75], [0.8, 0.75]], direction: forward }';
  const rules = rulesOf(camera(LINE));
  // A bicycle comes down across it, a person goes up across it, then one stands on the line with jittering feet.
  const walk = (from: number, to: number, i: number, n: number) => from + ((to - from) * Math.min(i, n)) / n;
  const hits = run(rules, 40, (i) => [
    obj('bicycle', 0.3, walk(0.45, 0.65, i, 20), 0.1, 0.2), // feet 0.65 → 0.85
    obj('person', 0.6, walk(0.7, 0.5, i, 20), 0.1, 0.2), // feet 0.9 → 0.7
    obj('dog', 0.45, 0.55, 0.05, 0.2), // not a class of the rule
  ]);
  t.same(
    hits.map((h) => [h.state, h.objects[0]!.class, h.counts]),
    [['instant', 'bicycle', { forward: 1, backward: 0 }]],
    'the forward crossing is an event; the backward one only counted',
  );
  const later = run(rules, 40, (i) => [obj('person', 0.6, 0.55 + (i % 2 ? 0.004 : -0.004), 0.1, 0.2)], 40 * STEP);
  t.same(later, [], 'feet jittering 0.004 about the line (margin 0.01): no crossings');
  const off = rulesOf(camera(LINE));
  t.same(
    run(off, 30, (i) => [obj('bicycle', 0.82, walk(0.45, 0.65, i, 20), 0.05, 0.2)]),
    [],
    'passing beside the end of the segment',
  );
  const both = rulesOf(camera(LINE.replace('direction: forward', 'direction: both')));
  const twice = run(both, 60, (i) => [obj('person', 0.3, i < 30 ? walk(0.45, 0.65, i, 20) : walk(0.65, 0.45, i - 30, 20), 0.1, 0.2)]);
  t.same(
    twice.map((h) => h.counts),
    [
      { forward: 1, backward: 0 },
      { forward: 1, backward: 1 },
    ],
    'both directions, each an event',
  );
  t.not(twice[0]!.eventId, twice[1]!.eventId, 'each crossing is its own event');
});

t.test('left_object: an object left with nobody near; not while its owner stays; passers-by later change nothing', async (t) => {
  const LEFT =
    '- { kind: left_object, type: illegal_dumping, classes: [suitcase], seconds: 20, ownerAbsentSeconds: 15, nearDistance: 0.1 }';
  const bag = obj('suitcase', 0.4, 0.7, 0.08, 0.1); // box x 0.4..0.48, bottom y 0.8
  const owner = obj('person', 0.5, 0.55, 0.08, 0.3); // feet at (0.54, 0.85): 0.06 from the bag
  const stays = run(rulesOf(camera(LEFT)), 200, () => [bag, owner]);
  t.same(stays, [], 'the owner stays beside it');
  // The owner leaves at frame 20 (walks out of the frame); the bag is left after max(20 s still, 15 s alone) = frame 50.
  const hits = run(rulesOf(camera(LEFT)), 160, (i) => [
    bag,
    ...(i < 20 ? [owner] : []),
    ...(i >= 80 && i < 90 ? [obj('person', 0.45, 0.6, 0.08, 0.25)] : []),
  ]);
  t.same(
    hits.map((h) => [h.frame, h.state, h.objects[0]!.class]),
    [[19 + 30, 'started', 'suitcase']],
    'alone 15 s after the owner was last near (frame 19); a passer-by at frame 80 does not end it',
  );
  t.equal(hits[0]!.startedAt, 0, 'started when the bag was put down');
});

t.test('ended says why: cleared, schedule, agent_stopped; close() ends each open violation once', async (t) => {
  const cleared = run(rulesOf(camera(PRESENCE)), 40, (i) => (i < 10 ? [inside()] : []));
  t.same(
    cleared.map((h) => [h.state, h.endReason]),
    [
      ['started', undefined],
      ['ended', 'cleared'],
    ],
  );

  const at = (local: string): number => Date.parse(`${local}+08:00`);
  const vending = rulesOf(
    camera(
      '- { kind: presence, type: street_vending, classes: [person], endSeconds: 5, schedule: [{ from: "07:00", to: "22:00" }] }',
      LOWER,
      '',
      '    timezone: Asia/Shanghai',
    ),
  );
  t.same(
    run(vending, 40, () => [inside()], at('2025-06-06T21:59:50')).map((h) => [h.state, h.endReason, new Date(h.ts).toISOString()]),
    [
      ['started', undefined, '2025-06-06T13:59:50.000Z'],
      ['ended', 'schedule', '2025-06-06T14:00:00.000Z'],
    ],
    'the window closed at 22:00 with the person still there',
  );

  const rules = rulesOf(camera(`${PRESENCE}\n${DWELL}`));
  const hits = run(rules, 80, () => [inside(), obj('car', 0.3, 0.6, 0.2, 0.2)]);
  t.same(
    hits.map((h) => [h.state, h.eventType]),
    [
      ['started', 'street_vending'],
      ['started', 'fire_lane_parking'],
    ],
  );
  const stopAt = 80 * STEP;
  const stopped = rules.close(stopAt);
  t.same(
    stopped.map((h) => [h.state, h.eventId, h.endReason]),
    [
      ['ended', 'ev1', 'agent_stopped'],
      ['ended', 'ev2', 'agent_stopped'],
    ],
    'both open violations end, each under its own id',
  );
  t.match(
    stopped[1],
    { ts: stopAt, endedAt: 79 * STEP, dwellSeconds: (79 * STEP) / 1000, objects: [{ class: 'car' }] },
    'endedAt is the last frame it held',
  );
  t.same(rules.close(stopAt + 1000), [], 'nothing left open');
  t.same(rulesOf(camera(PRESENCE)).close(0), [], 'no violation, no message');
});

t.test("tracks start from the lowest minScore of the camera's rules, so a rule with minScore 0.4 sees a 0.45 object", async (t) => {
  const person = () => [obj('person', 0.4, 0.6, 0.1, 0.2, 0.45)];
  t.same(run(rulesOf(camera(PRESENCE)), 4, person), [], 'minScore 0.5 (default): below it');
  t.same(
    brief(run(rulesOf(camera(PRESENCE.replace('endSeconds: 5', 'endSeconds: 5, minScore: 0.4'))), 4, person)),
    [[0, 'started', 'ev1']],
    'minScore 0.4: the 0.45 detection starts a track and the rule fires on the first frame',
  );
  const custom = new CameraRules(camera(PRESENCE.replace('endSeconds: 5', 'endSeconds: 5, minScore: 0.4')), {
    tracker: { highThreshold: 0.5 },
  });
  t.same(custom.evaluate(0, W, H, person()), [], 'tracker options given by the caller win');
});

t.test('hasTracks: objects seen or coasting; expiry is by time when the motion gate makes detector runs sparse', async (t) => {
  const rules = rulesOf(camera(DWELL));
  t.equal(rules.hasTracks(), false);
  const car = [obj('car', 0.3, 0.6, 0.2, 0.2)];
  // The motion gate runs the detector only once per refreshSeconds (5 s) while nothing moves.
  const hits: RuleHit[] = [];
  for (let s = 0; s <= 60; s += 5) hits.push(...rules.evaluate(s * 1000, W, H, s === 40 ? [] : car));
  t.equal(rules.hasTracks(), true);
  t.same(
    hits.map((h) => [h.state, h.ts, h.startedAt, h.objects[0]!.trackId]),
    [['started', 30_000, 0, 1]],
    'one missed run (40 s) neither ends the track nor restarts the dwell',
  );
  hits.push(...rules.evaluate(65_000, W, H, []));
  t.equal(rules.hasTracks(), true, 'coasting after one missed run');
  hits.push(...rules.evaluate(70_000, W, H, []));
  t.equal(rules.hasTracks(), false, 'two missed runs, 10 s unseen: the track has ended');
  hits.push(...rules.evaluate(75_000, W, H, []));
  t.same(
    hits.slice(1).map((h) => [h.state, h.ts, h.endedAt]),
    [['ended', 75_000, 65_000]],
    'the violation ends endSeconds after the last run its track still lived',
  );
});
