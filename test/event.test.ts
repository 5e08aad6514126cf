import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import sharp from 'sharp';
import { parseConfig } from '../src/config/index.js';
import { Outbox } from '../src/outbox/index.js';
import { EventRecorder } from '../src/agent/recorder.js';
import { eventPayloadSchema, renderEventJsonSchema, type EventPayload } from '../src/agent/event.js';
import { CameraRules } from '../src/rules/index.js';
import { pruneEvidence, storeEvidence } from '../src/evidence/store.js';
import { unseenCaption } from '../src/evidence/annotate.js';
import { docSchemaProblems } from './helpers/schemas.js';
import type { RgbFrame } from '../src/vision/types.js';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const W = 320;
const H = 240;

/** A grey frame with a darker rectangle (normalized x1, y1, x2, y2) painted on it. */
function frame(ts: number, patch?: readonly [number, number, number, number], level = 160): RgbFrame {
  const data = Buffer.alloc(W * H * 3, level);
  if (patch) {
    for (let y = Math.round(patch[1] * H); y < Math.round(patch[3] * H); y++) {
      data.fill(40, (y * W + Math.round(patch[0] * W)) * 3, (y * W + Math.round(patch[2] * W)) * 3);
    }
  }
  return { width: W, height: H, data, ts };
}

function setup(t: Tap.Test, rules: string) {
  const dir = t.testdir({ data: {} });
  const ref = join(dir, 'ref.png');
  const cfg = parseConfig(
    `
gateway: { id: gw-ev, dataDir: ./data, timezone: Asia/Shanghai }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
evidence: { maxBytes: 1000000, maxAgeDays: 2 }
cameras:
  - id: cam-1
    name: Bin corner
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    location: { lat: 22.54, lon: 114.03, address: Xiangmihu Rd 1, grid: FT-XMH-0101 }
    zones:
      - id: z
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
        masks: [[[0.1, 0.1], [0.2, 0.1], [0.2, 0.2], [0.1, 0.2]]]
        rules:
${rules}
`,
    join(dir, 'gateway.yaml'),
  );
  const outbox = Outbox.open(join(dir, 'data', 'outbox.db'));
  t.teardown(() => outbox.close());
  let nudges = 0;
  const recorder = new EventRecorder({
    config: cfg,
    dataDir: join(dir, 'data'),
    outbox,
    uplink: {
      notify: () => {
        nudges++;
      },
    },
    log: pino({ level: 'silent' }),
  });
  const model = { name: 'nanodet-m', sha256: 'ab'.repeat(32) };
  return { dir, ref, cfg, cam: cfg.cameras[0]!, outbox, recorder, model, nudges: () => nudges };
}

declare global {
  namespace Tap {
    type Test = import('tap').Test;
  }
}

function payloads(outbox: Outbox): EventPayload[] {
  return outbox.list({ limit: 1000 }).map((r) => eventPayloadSchema.parse(JSON.parse(r.payload)));
}

t.test('docs/schemas/event.schema.json is generated from src/agent/event.ts', async (t) => {
  const file = join(root, 'docs/schemas/event.schema.json');
  const rendered = renderEventJsonSchema();
  if (t.writeSnapshot) writeFileSync(file, rendered);
  t.equal(readFileSync(file, 'utf8'), rendered, 'stale: regenerate with `npx tap --snapshot test/event.test.ts`');
  const schema = JSON.parse(rendered) as { required: string[]; properties: Record<string, { enum?: string[] }> };
  t.same(schema.properties.state?.enum, ['started', 'updated', 'ended', 'instant']);
  for (const key of [
    'id',
    'messageId',
    'state',
    'seq',
    'camera',
    'zone',
    'rule',
    'startedAt',
    'objects',
    'location',
    'model',
    'evidence',
  ]) {
    t.ok(schema.required.includes(key), `${key} is required`);
  }
});

t.test('a violation is one event id over started, updated and ended, each a message with its own evidence', async (t) => {
  const s = setup(t, '          - { kind: presence, type: loitering, classes: [person], updateMinutes: 1, endSeconds: 2 }');
  const rules = new CameraRules(s.cam);
  const person = { class: 'person', classId: 0, score: 0.9, box: [100, 60, 140, 180] as [number, number, number, number] };
  const t0 = Date.parse('2025-06-06T12:00:00Z');
  for (let i = 0; i < 180; i++) {
    const ts = t0 + i * 500;
    const f = frame(ts);
    for (const hit of rules.evaluate(ts, W, H, i < 150 ? [person] : [], f)) t.ok(await s.recorder.record(s.cam, f, hit, s.model));
  }
  const events = payloads(s.outbox);
  t.same(
    events.map((e) => e.state),
    ['started', 'updated', 'ended'],
  );
  t.equal(new Set(events.map((e) => e.id)).size, 1, 'one event id');
  t.equal(new Set(events.map((e) => e.messageId)).size, 3, 'each message its own id');
  t.same(
    events.map((e) => e.seq),
    [1, 2, 3],
  );
  t.same(
    s.outbox.list({ limit: 10 }).map((r) => r.id),
    events.map((e) => e.messageId),
    'the outbox row is the message',
  );
  t.match(events[0], {
    schema: 'edgepatrol.event/1',
    gatewayId: 'gw-ev',
    type: 'loitering',
    camera: { id: 'cam-1', name: 'Bin corner' },
    zone: 'z',
    rule: { id: 'loitering', kind: 'presence' },
    startedAt: '2025-06-06T12:00:00.000Z',
    detectedAt: '2025-06-06T12:00:00.000Z',
    dwellSeconds: 0,
    objects: [{ class: 'person', score: 0.9, box: [0.3125, 0.25, 0.4375, 0.75], trackId: 1 }],
    location: { lat: 22.54, lon: 114.03, address: 'Xiangmihu Rd 1', grid: 'FT-XMH-0101' },
    model: { name: 'nanodet-m' },
  });
  t.equal(events[1]!.detectedAt, '2025-06-06T12:01:00.000Z', 'updated after updateMinutes');
  t.match(
    events[2],
    { endedAt: new Date(t0 + (149 + 10) * 500).toISOString() },
    'ended: the last frame it held (its track coasted 10 frames, 5 s)',
  );
  t.equal(s.outbox.list({ limit: 10 })[0]!.topic, 'ept/gw-ev/event/loitering');
  t.equal(s.nudges(), 3, 'the uplink is nudged once per message');

  for (const e of events) {
    for (const image of [e.evidence.annotated, e.evidence.clean]) {
      const bytes = readFileSync(join(s.dir, 'data', image.file));
      t.equal(createHash('sha256').update(bytes).digest('hex'), image.sha256, `${image.file}: sha256`);
      t.equal(bytes.length, image.bytes);
      const meta = await sharp(bytes).metadata();
      t.same([meta.format, meta.width, meta.height], ['jpeg', W, H]);
    }
    t.not(e.evidence.annotated.sha256, e.evidence.clean.sha256, 'annotated differs from the clean frame');
    t.equal(e.evidence.reference, undefined);
  }
  const clean = await sharp(readFileSync(join(s.dir, 'data', events[0]!.evidence.clean.file)))
    .raw()
    .toBuffer();
  t.ok(Math.abs(clean[0]! - 160) <= 3, 'the clean image is the frame as it was');
  const annotated = await sharp(readFileSync(join(s.dir, 'data', events[0]!.evidence.annotated.file)))
    .raw()
    .toBuffer();
  const at = (x: number, y: number) => [...annotated.subarray((y * W + x) * 3, (y * W + x) * 3 + 3)];
  const zoneEdge = at(160, Math.round(0.9 * H));
  t.ok(zoneEdge[0]! - zoneEdge[2]! > 60 && zoneEdge[1]! - zoneEdge[2]! > 40, `zone outline drawn in yellow on grey (${zoneEdge})`);
  t.same(
    at(160, 120).map((v) => Math.abs(v - 160) <= 4),
    [true, true, true],
    'inside the zone the frame is untouched',
  );
});

t.test('an update while the subject is hidden lists it apart (lastSeenAt) and draws no box where it was', async (t) => {
  const s = setup(t, '          - { kind: presence, type: loitering, classes: [person], updateMinutes: 0.05, endSeconds: 2 }');
  const rules = new CameraRules(s.cam);
  const box = [0.3125, 0.25, 0.4375, 0.75] as const;
  const person = { class: 'person', classId: 0, score: 0.9, box: [100, 60, 140, 180] as [number, number, number, number] };
  const t0 = Date.parse('2025-06-06T12:00:00Z');
  // Seen over frames 0-4 (0-2 s), then hidden: the update due at 3 s finds the track coasting (kept 5 s).
  for (let i = 0; i < 7; i++) {
    const ts = t0 + i * 500;
    const f = frame(ts, i < 5 ? box : undefined);
    for (const hit of rules.evaluate(ts, W, H, i < 5 ? [person] : [], f)) t.ok(await s.recorder.record(s.cam, f, hit, s.model));
  }
  const [started, updated] = payloads(s.outbox);
  t.same([started?.state, updated?.state], ['started', 'updated']);
  t.match(started, { objects: [{ class: 'person', trackId: 1 }] });
  t.equal(started!.unseen, undefined, 'nothing unseen: the field is left out, as before it existed');
  t.same(updated!.objects, [], "nobody is detected in the update's frame");
  t.same(updated!.unseen, [
    { class: 'person', trackId: 1, lastSeenAt: new Date(t0 + 4 * 500).toISOString(), lastScore: 0.9, lastBox: [...box] },
  ]);
  t.equal(docSchemaProblems('event', updated), null, 'valid against docs/schemas/event.schema.json');

  const pixels = async (p: EventPayload) =>
    sharp(readFileSync(join(s.dir, 'data', p.evidence.annotated.file)))
      .raw()
      .toBuffer();
  const grey = (img: Buffer, x: number, y: number) =>
    [...img.subarray((y * W + x) * 3, (y * W + x) * 3 + 3)].every((v) => Math.abs(v - 160) <= 6);
  const boxEdge = [Math.round(box[2] * W), Math.round(((box[1] + box[3]) / 2) * H)] as const; // the right edge, on grey ground
  const [first, update] = [await pixels(started!), await pixels(updated!)];
  t.notOk(grey(first, ...boxEdge), 'started: the person is boxed');
  t.ok(grey(update, ...boxEdge), 'updated: no box around the empty ground where the person was');
  t.ok(grey(first, 1, H - 1), 'started: no caption along the bottom');
  const caption = [...update.subarray(((H - 1) * W + 1) * 3, ((H - 1) * W + 1) * 3 + 3)]; // its black padding
  t.ok(
    caption.every((v) => v < 40),
    `updated: a caption along the bottom names the unseen person (${caption})`,
  );
  t.same(
    unseenCaption(
      updated!.unseen!.map((u) => ({ ...u, lastSeenAt: Date.parse(u.lastSeenAt) })),
      Date.parse(updated!.detectedAt),
    ),
    ['not detected in this frame: person #1 (last seen 1.0 s ago)'],
  );
});

t.test('scene_change: evidence puts the reference beside the current view; line_cross events are instant with counts', async (t) => {
  const s = setup(
    t,
    `          - { preset: bin_overflow, reference: ./ref.png, seconds: 5, endSeconds: 2 }
          - { kind: line_cross, type: crossing, classes: [person], line: [[0.5, 0.1], [0.5, 0.9]], cooldownSeconds: 0 }`,
  );
  const blank = frame(0);
  await sharp(blank.data, { raw: { width: W, height: H, channels: 3 } })
    .png()
    .toFile(s.ref);
  const rules = await CameraRules.open(s.cam);
  const t0 = Date.parse('2025-06-06T12:00:00Z');
  const hits = [];
  for (let i = 0; i < 60; i++) {
    const ts = t0 + i * 500;
    // Rubbish piles up over 40 % of the zone from frame 10; dusk dims the whole scene by 30 % from frame 30.
    const f = frame(ts, i >= 10 ? [0.3, 0.4, 0.9, 0.9] : undefined, i >= 30 ? 112 : 160);
    const walker = { class: 'person', classId: 0, score: 0.9, box: [40 + i * 8, 40, 70 + i * 8, 120] as [number, number, number, number] };
    for (const hit of rules.evaluate(ts, W, H, i < 30 ? [walker] : [], f)) {
      hits.push(hit);
      t.ok(await s.recorder.record(s.cam, f, hit, s.model));
    }
  }
  const events = payloads(s.outbox);
  t.same(
    events.map((e) => [e.type, e.state, e.rule.kind]),
    [
      ['crossing', 'instant', 'line_cross'],
      ['bin_overflow', 'started', 'scene_change'],
    ],
  );
  t.match(
    events[0],
    { counts: { forward: 0, backward: 1 }, objects: [{ class: 'person' }] },
    'left to right across a downward line is backward',
  );
  const scene = events[1]!;
  t.match(scene, { preset: 'bin_overflow', objects: [], change: { threshold: 0.2 }, dwellSeconds: 5 });
  t.ok(scene.change!.fraction > 0.35 && scene.change!.fraction < 0.5, `about 40 % of the zone changed (${scene.change!.fraction})`);
  t.equal(scene.evidence.annotated.width, 2 * W + 8, 'reference | gap | now');
  t.equal(scene.evidence.reference!.width, W);
  t.ok(existsSync(join(s.dir, 'data', scene.evidence.reference!.file)));
});

t.test('retention: oldest and too old evidence go, never that of undelivered messages', async (t) => {
  const dir = t.testdir({});
  const now = Date.parse('2025-06-10T00:00:00Z');
  const jpeg = Buffer.alloc(300_000, 1);
  const files = ['a', 'b', 'c', 'd', 'e'].map((name, i) => {
    const ts = now - (5 - i) * 86_400_000; // a: 5 days old … e: 1 day old
    const f = storeEvidence(dir, `${name}-annotated`, ts, jpeg).file;
    utimesSync(join(dir, f), ts / 1000, ts / 1000);
    return f;
  });
  const result = pruneEvidence(dir, { maxBytes: 700_000, maxAgeDays: 4.5, now, keep: (f) => f.includes('b-') });
  t.same(
    result,
    { files: 3, bytes: 900_000, keptBytes: 600_000 },
    'a: too old; c, d: over the byte cap; b kept (undelivered) although over the cap',
  );
  t.same(
    files.map((f) => existsSync(join(dir, f))),
    [false, true, false, false, true],
  );
  t.same(readdirSync(join(dir, 'evidence')).sort(), ['2025-06-06', '2025-06-09'], 'empty day folders removed');
  t.same(pruneEvidence(join(dir, 'nothing'), { maxBytes: 1, maxAgeDays: 1, now }), { files: 0, bytes: 0, keptBytes: 0 });
});
