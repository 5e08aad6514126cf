import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ConfigError, parseConfig, type CameraConfig, type Config } from '../src/config/index.js';
import { CameraRules, cameraWithView, parseView, SceneReferenceError, type RuleHit, type ViewInput } from '../src/rules/index.js';
import { MotionDetector, MotionGate } from '../src/vision/motion.js';
import type { Detection, RgbFrame } from '../src/vision/types.js';
import { encodeJpeg } from '../src/common/jpeg.js';
import { Outbox } from '../src/outbox/index.js';
import { EventRecorder } from '../src/agent/recorder.js';
import { eventPayloadSchema } from '../src/agent/event.js';
import { docSchemaProblems } from './helpers/schemas.js';

const W = 320;
const H = 240;
const STEP = 500; // 2 fps, as configured below
type Polygon = [number, number][];
const LOWER: Polygon = [
  [0.1, 0.5],
  [0.9, 0.5],
  [0.9, 1],
  [0.1, 1],
];
const UPPER: Polygon = [
  [0.1, 0],
  [0.9, 0],
  [0.9, 0.5],
  [0.1, 0.5],
];

/** A PTZ camera whose configured view watches the lower half: people loitering, cars parked for 30 s. */
function config(dir = '/x', zoneExtra = ''): Config {
  return parseConfig(
    `
gateway: { id: gw-views, dataDir: ./data }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
cameras:
  - id: cam-ptz
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    location: { grid: FT-XMH-0101 }
    zones:
      - id: lower
        polygon: ${JSON.stringify(LOWER)}
        rules:
          - { kind: presence, type: loitering, classes: [person], endSeconds: 5, cooldownSeconds: 0 }
          - { preset: fire_lane_parking, seconds: 30 }
${zoneExtra}
`,
    join(dir, 'gateway.yaml'),
  );
}

const camera = (): CameraConfig => config().cameras[0]!;

/** Preset 2 of the PTZ camera: it looks elsewhere, and what it should watch is in the upper half of the picture. */
const PRESET_2: ViewInput = {
  id: 'preset-2',
  zones: [{ id: 'upper', polygon: UPPER, rules: [{ kind: 'presence', type: 'loitering', classes: ['person'], endSeconds: 5 }] }],
};

/** Rules whose event ids are ev1, ev2, … */
function rulesOf(cam: CameraConfig): CameraRules {
  let n = 0;
  return new CameraRules(cam, { newId: () => `ev${++n}` });
}

/** A detection from a normalized box: x, y of the top-left corner, width and height. */
function obj(cls: string, x: number, y: number, w = 0.1, h = 0.2): Detection {
  return { class: cls, classId: 0, score: 0.9, box: [x * W, y * H, (x + w) * W, (y + h) * H] };
}

const below = (cls = 'person') => obj(cls, 0.4, 0.6); // feet at y 0.8: in `lower`
const above = (cls = 'person') => obj(cls, 0.4, 0.2); // feet at y 0.4: in `upper`

type Hit = RuleHit & { frame: number };

/** Frames `from` … `to - 1` at 2 fps; `at(i)` gives frame i's detections. */
function run(rules: CameraRules, from: number, to: number, at: (i: number) => Detection[]): Hit[] {
  const hits: Hit[] = [];
  for (let i = from; i < to; i++) for (const hit of rules.evaluate(i * STEP, W, H, at(i))) hits.push({ ...hit, frame: i });
  return hits;
}

const brief = (hits: Hit[]): [number, string, string, string][] => hits.map((h) => [h.frame, h.state, h.eventId, h.zoneId]);

t.test('setView ends the open violations with view_changed; the old zones fall silent and the new ones fire', async (t) => {
  const rules = rulesOf(camera());
  t.same(brief(run(rules, 0, 4, () => [below()])), [[0, 'started', 'ev1', 'lower']]);

  const ended = await rules.setView(PRESET_2, 3 * STEP + 100);
  t.match(
    ended,
    [
      {
        state: 'ended',
        endReason: 'view_changed',
        eventId: 'ev1',
        zoneId: 'lower',
        ts: 3 * STEP + 100,
        endedAt: 3 * STEP,
        objects: [{ class: 'person', trackId: 1 }],
      },
    ],
    'the loitering ends at the change, its person as the last frame showed them',
  );
  t.equal(ended.length, 1, 'the car rule had nothing open');
  t.equal(rules.view.id, 'preset-2');
  t.notOk(rules.hasTracks(), 'no track survives the change: the motion gate stops refreshing for the old view');

  t.same(
    run(rules, 4, 40, () => [below()]),
    [],
    'a person where the old zone was: no event, and ev1 never ends again',
  );
  t.same(brief(run(rules, 40, 44, () => [above()])), [[40, 'started', 'ev2', 'upper']], "the new view's zone fires");
  t.match(
    run(rules, 44, 70, () => []),
    [{ state: 'ended', eventId: 'ev2', endReason: 'cleared' }],
    'and ends as usual',
  );
});

t.test('a new view starts every rule afresh: a dwell clock and line counts do not carry over', async (t) => {
  const rules = rulesOf(camera());
  t.same(
    run(rules, 0, 40, () => [below('car')]),
    [],
    'the car has stood 20 s of its 30',
  );
  t.same(await rules.setView(rules.view, 40 * STEP), [], 'the same view again: nothing was open');
  const hits = run(rules, 40, 140, () => [below('car')]);
  t.same(brief(hits), [[100, 'started', 'ev1', 'lower']], 'the car must stand its full 30 s in the new view');
  t.equal(hits[0]!.startedAt, 40 * STEP, 'its dwell counts from the change');

  const line: ViewInput = {
    id: 'gate',
    zones: [
      {
        id: 'all',
        polygon: [
          [0, 0],
          [1, 0],
          [1, 1],
          [0, 1],
        ],
        rules: [
          {
            kind: 'line_cross',
            type: 'entry',
            classes: ['person'],
            line: [
              [0, 0.5],
              [1, 0.5],
            ],
          },
        ],
      },
    ],
  };
  const walk = (i: number): Detection[] => [obj('person', 0.4, 0.1 + 0.05 * (i % 10))]; // feet from 0.3 down to 0.75
  const crossing = rulesOf(camera());
  await crossing.setView(line, 0);
  const first = run(crossing, 0, 10, walk);
  t.match(first, [{ state: 'instant', counts: { forward: 1, backward: 0 } }]);
  await crossing.setView(line, 10 * STEP);
  t.match(run(crossing, 10, 20, walk), [{ state: 'instant', counts: { forward: 1, backward: 0 } }], 'counts restart with the view');
});

t.test('a bad view throws the error a bad config gives, naming camera and view, and the old view keeps running', async (t) => {
  const rules = rulesOf(camera());
  t.same(brief(run(rules, 0, 4, () => [below()])), [[0, 'started', 'ev1', 'lower']]);

  const bowtie: Polygon = [
    [0.1, 0.1],
    [0.9, 0.9],
    [0.9, 0.1],
    [0.1, 0.9],
  ];
  const crossed = await rules.setView({ id: 'bad-1', zones: [{ id: 'upper', polygon: bowtie, rules: [] }] }, 4 * STEP).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(crossed instanceof ConfigError, 'a ConfigError, as for the config file');
  const configSays = (() => {
    try {
      config('/x', `      - id: upper\n        polygon: ${JSON.stringify(bowtie)}`);
      return null;
    } catch (err) {
      return (err as ConfigError).issues.find((i) => i.path === 'cameras[0].zones[1].polygon')?.message;
    }
  })();
  t.match(configSays, /crosses itself/);
  t.same((crossed as ConfigError).issues, [{ path: 'zones[0].polygon', message: configSays }], 'the same words as for the config file');
  t.match((crossed as Error).message, /^camera cam-ptz, view bad-1: 1 config problem: zones\[0\]\.polygon: /);

  const twice = await rules
    .setView(
      {
        id: 'bad-2',
        zones: [
          { id: 'z', polygon: bowtie },
          { id: 'z', polygon: LOWER },
        ],
      },
      4 * STEP,
    )
    .then(
      () => null,
      (e: unknown) => e,
    );
  t.match(
    (twice as ConfigError).issues,
    [
      { path: 'zones[0].polygon', message: /crosses itself/ },
      { path: 'zones[1].id', message: /duplicate zone id 'z'/ },
    ],
    'every problem in one pass',
  );
  const bin = { preset: 'bin_overflow', reference: '/nowhere/bin.jpg' };
  const binView: ViewInput = { id: 'bad-3', zones: [{ id: 'bin', polygon: UPPER, rules: [bin] }] };
  const missing = await rules.setView(binView, 4 * STEP).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(missing instanceof SceneReferenceError, 'a missing reference file');
  t.match(
    (missing as Error).message,
    /^camera cam-ptz, view bad-3, zone bin, rule bin_overflow: cannot read the scene_change reference \/nowhere\/bin\.jpg .*/,
  );
  t.match((missing as Error).message, /take one with: edgepatrol camera snapshot cam-ptz --out \/nowhere\/bin\.jpg$/, 'and what to do');

  t.equal(rules.view.id, 'config', 'still the old view');
  t.same(
    run(rules, 4, 10, () => [below()]),
    [],
    'ev1 goes on, unended',
  );
  t.same(
    run(rules, 10, 30, () => []).map((h) => [h.frame, h.state, h.eventId, h.endReason]),
    [[29, 'ended', 'ev1', 'cleared']],
    'and ends as usual when the person leaves',
  );
});

t.test("parseView: a view is written like a camera's zones, presets applied, references relative to its file", async (t) => {
  const bin = { preset: 'bin_overflow', reference: 'refs/bin.jpg' };
  const written = { id: 'preset-3', zones: [{ id: 'bin', polygon: UPPER, rules: [bin] }] };
  const view = parseView(written, '/etc/edgepatrol/presets.yaml', '/etc/edgepatrol');
  t.match(view.zones[0]!.rules[0], {
    kind: 'scene_change',
    id: 'bin_overflow',
    type: 'bin_overflow',
    threshold: 0.2,
    reference: '/etc/edgepatrol/refs/bin.jpg',
  });
  t.same(view.motionMasks, []);
  t.throws(() => parseView({ zones: [{ id: 'bin', polygon: UPPER, rule: [] }] }, '/etc/edgepatrol/presets.yaml'), {
    name: 'ConfigError',
    message: /^\/etc\/edgepatrol\/presets\.yaml: 1 config problem: zones\[0\]\.rule: unknown key \(did you mean 'rules/,
  });
});

t.test('pause ends open violations and keeps the rules quiet until resume, which starts clean', async (t) => {
  const rules = rulesOf(camera());
  t.same(brief(run(rules, 0, 4, () => [below()])), [[0, 'started', 'ev1', 'lower']]);
  t.match(rules.pause('camera_paused', 4 * STEP), [{ state: 'ended', eventId: 'ev1', endReason: 'camera_paused', endedAt: 3 * STEP }]);
  t.ok(rules.paused);
  t.same(rules.pause('view_changed', 5 * STEP), [], 'pausing again: nothing open');
  t.same(
    run(rules, 4, 40, () => [below(), below('car')]),
    [],
    'nothing while paused, however long the car stands',
  );
  t.notOk(rules.hasTracks(), 'no tracks while paused: the gate does not refresh the detector for them');
  t.same(await rules.setView(PRESET_2, 40 * STEP), [], 'a view change while paused ends nothing');
  t.ok(rules.paused, 'and leaves the camera paused');

  rules.resume();
  t.notOk(rules.paused);
  t.same(brief(run(rules, 40, 42, () => [above()])), [[40, 'started', 'ev2', 'upper']]);
  t.match(
    rules.pause('view_changed', 42 * STEP),
    [{ eventId: 'ev2', endReason: 'view_changed' }],
    'a pause for a move ends with view_changed',
  );
  t.same(rules.close(43 * STEP), [], 'a stop after the pause has nothing left to end');
});

t.test('scene_change references swap with the view', async (t) => {
  const dir = t.testdir({});
  const grey = Buffer.alloc(W * H * 3, 128);
  // Preset 2's reference shows something bright over the left 40 % of the picture that the scene now lacks.
  const marked = Buffer.from(grey);
  for (let y = 0; y < H; y++) marked.fill(250, y * W * 3, Math.round(0.4 * W) * 3 + y * W * 3);
  writeFileSync(join(dir, 'ref-config.jpg'), await encodeJpeg({ width: W, height: H, data: grey }));
  writeFileSync(join(dir, 'ref-2.jpg'), await encodeJpeg({ width: W, height: H, data: marked }));
  const scene = (ref: string): string =>
    `[{ kind: scene_change, type: bin_overflow, reference: ${ref}, seconds: 0, threshold: 0.25, cooldownSeconds: 0 }]`;
  const zone = `      - id: all\n        polygon: [[0, 0], [1, 0], [1, 1], [0, 1]]\n        rules: ${scene('./ref-config.jpg')}`;
  const cam = config(dir, zone).cameras[0]!;
  const rules = await CameraRules.open(cam);
  const frames = (from: number, to: number): RuleHit[] => {
    const hits: RuleHit[] = [];
    for (let i = from; i < to; i++) hits.push(...rules.evaluate(i * STEP, W, H, [], { data: grey }));
    return hits;
  };
  t.same(frames(0, 4), [], "the scene looks like the configured view's reference");

  const preset = parseView(
    {
      id: 'preset-2',
      zones: [
        {
          id: 'all',
          polygon: [
            [0, 0],
            [1, 0],
            [1, 1],
            [0, 1],
          ],
          rules: [
            {
              kind: 'scene_change',
              type: 'bin_overflow',
              reference: 'ref-2.jpg',
              seconds: 0,
              threshold: 0.25,
              cooldownSeconds: 0,
            },
          ],
        },
      ],
    },
    join(dir, 'presets.yaml'),
    dir,
  );
  t.same(await rules.setView(preset, 4 * STEP), []);
  t.match(
    frames(4, 5),
    [{ state: 'started', zoneId: 'all', change: { threshold: 0.25 } }],
    "the same scene differs from preset 2's reference",
  );
  t.ok(rules.evaluate(5 * STEP, W, H, [], { data: grey }).length === 0, 'one event, not one a frame');
});

const SQUARE = (y0: number, y1: number): [number, number][] => [
  [0, y0],
  [1, y0],
  [1, y1],
  [0, y1],
];

/** A picture with detail everywhere (motion needs something to differ from), `seed` choosing which. */
function texture(seed: number): Buffer {
  const out = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) out.fill((((x * 7 + y * 13) * seed) % 200) + 30, (y * W + x) * 3, (y * W + x + 1) * 3);
  }
  return out;
}

function withBlock(src: Buffer, x: number, y: number, w = 30, h = 30): Buffer {
  const out = Buffer.from(src);
  for (let r = y; r < y + h; r++) out.fill(255, (r * W + x) * 3, (r * W + x + w) * 3);
  return out;
}

t.test('motion: a view change swaps the masks and starts the background again from the new view', async (t) => {
  const gate = new MotionGate(new MotionDetector({ masks: [SQUARE(0, 0.3)] }), { refreshMs: 5000 });
  const viewA = texture(1);
  // The camera turned a little: the left half of the picture is new, too little to look like a whole-scene change.
  const viewB = Buffer.from(viewA);
  const other = texture(3);
  for (let y = 0; y < H; y++) other.copy(viewB, y * W * 3, y * W * 3, (y * W + W / 2) * 3);
  const at = (data: Buffer, i: number): RgbFrame => ({ width: W, height: H, data, ts: i * STEP });
  t.equal(gate.decide(at(viewA, 0), false).decision, 'motion', 'the first frame starts the background');
  t.equal(gate.decide(at(viewA, 1), false).decision, 'skip');
  t.equal(gate.decide(at(withBlock(viewA, 100, 20), 2), false).decision, 'skip', 'view A masks the top');
  t.equal(gate.decide(at(withBlock(viewA, 100, 200), 3), false).decision, 'motion', 'and watches the bottom');

  gate.reset([SQUARE(0.7, 1)]);
  t.match(gate.decide(at(viewB, 4), false), { decision: 'motion', result: { reset: true } }, "the new view's first frame is looked at");
  t.match(
    gate.decide(at(viewB, 5), false),
    { decision: 'skip', result: { reset: false, changed: 0 } },
    'then the new view is the background, not a change from the old one',
  );
  t.equal(gate.decide(at(withBlock(viewB, 100, 200), 6), false).decision, 'skip', 'view B masks the bottom');
  t.equal(gate.decide(at(withBlock(viewB, 100, 20), 7), false).decision, 'motion', 'and watches the top');

  gate.reset();
  t.match(gate.decide(at(viewB, 8), false), { decision: 'motion', result: { reset: true } }, 'a resume starts the background again too');
  t.equal(gate.decide(at(withBlock(viewB, 100, 200), 9), false).decision, 'skip', 'with the masks it had');
});

t.test('the caller records view_changed and camera_paused endings as schema-valid event messages on the old view', async (t) => {
  const dir = t.testdir({ data: {} });
  const cfg = config(dir);
  const cam = cfg.cameras[0]!;
  const outbox = Outbox.open(join(dir, 'data', 'outbox.db'));
  t.teardown(() => outbox.close());
  const recorder = new EventRecorder({
    config: cfg,
    dataDir: join(dir, 'data'),
    outbox,
    uplink: { notify: () => undefined },
    log: pino({ level: 'silent' }),
  });
  const model = { name: 'nanodet-m', sha256: 'ab'.repeat(32) };
  const t0 = Date.parse('2025-06-06T12:00:00Z');
  const frameAt = (i: number): RgbFrame => ({ width: W, height: H, data: Buffer.alloc(W * H * 3, 128), ts: t0 + i * STEP });

  // The agent's camera pipeline, as CameraRules documents it.
  const rules = new CameraRules(cam);
  let current = cameraWithView(cam, rules.view);
  let last: RgbFrame | undefined;
  const feed = async (from: number, to: number, at: () => Detection[]): Promise<void> => {
    for (let i = from; i < to; i++) {
      last = frameAt(i);
      for (const hit of rules.evaluate(last.ts, W, H, at(), last)) t.ok(await recorder.record(current, last, hit, model));
    }
  };
  await feed(0, 4, () => [below()]);
  const before = current;
  const ended = await rules.setView(PRESET_2, t0 + 4 * STEP);
  for (const hit of ended) t.ok(await recorder.record(before, last!, hit, model));
  current = cameraWithView(cam, rules.view);
  t.same(
    current.zones.map((z) => z.id),
    ['upper'],
    "later events are drawn on the new view's zones",
  );
  await feed(4, 8, () => [above()]);
  for (const hit of rules.pause('camera_paused', t0 + 8 * STEP)) t.ok(await recorder.record(current, last!, hit, model));

  const rows = outbox.list({ limit: 100 });
  const payloads = rows.map((r) => JSON.parse(r.payload) as unknown);
  for (const p of payloads) t.equal(docSchemaProblems('event', p), null, 'valid against docs/schemas/event.schema.json');
  const events = payloads.map((p) => eventPayloadSchema.parse(p));
  t.same(
    events.map((e) => [e.state, e.zone, e.endReason]),
    [
      ['started', 'lower', undefined],
      ['ended', 'lower', 'view_changed'],
      ['started', 'upper', undefined],
      ['ended', 'upper', 'camera_paused'],
    ],
  );
  t.equal(events[1]!.id, events[0]!.id, 'the view change ends the violation it started');
  t.equal(events[1]!.endedAt, new Date(t0 + 3 * STEP).toISOString(), 'the last frame it held');
  t.ok(events[1]!.evidence.annotated.bytes > 0, 'with evidence of the last frame');
});
