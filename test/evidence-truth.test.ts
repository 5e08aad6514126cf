// Evidence shows what was there (issue 14, item 6): every object an event message lists is found again by the
// detector in that message's own clean evidence frame. The real INT8 detector (the manifest's default), the real
// clip, real evidence files and a real SQLite outbox; the rules are the demo's (examples/demo.yaml) plus rules whose
// messages come while their subject is hidden or gone (dwell, short presence zones that end).
import t from 'tap';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../src/config/index.js';
import { Outbox } from '../src/outbox/index.js';
import { EventRecorder } from '../src/agent/recorder.js';
import { eventPayloadSchema, type EventPayload } from '../src/agent/event.js';
import { CameraRules } from '../src/rules/index.js';
import { decodeImage } from '../src/common/jpeg.js';
import { openDetector, type Detection } from '../src/vision/index.js';
import { readVideoFrames } from '../src/vision/video.js';
import { clip } from './helpers/agent.js';
import { docSchemaProblems } from './helpers/schemas.js';

/** The demo's detector threshold (examples/demo.yaml): the same threshold finds the objects again. */
const SCORE_THRESHOLD = 0.4;
/** Same class and at least this overlap: the detection is the listed object. */
const MATCH_IOU = 0.5;

interface Check {
  payload: EventPayload;
  missing: EventPayload['objects'];
}

t.test("vtest.avi through the demo rules: each listed object is detected again in its message's clean evidence frame", async (t) => {
  const dir = t.testdir({ data: {} });
  const cfg = parseConfig(
    `
gateway: { id: gw-truth, dataDir: ./data, timezone: Asia/Shanghai }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
model: { threads: 2, scoreThreshold: ${SCORE_THRESHOLD} }
cameras:
  - id: cam-plaza
    name: Plaza walkway
    source: { file: ${clip} }
    detect: { fps: 4 }
    location: { grid: FT-XMH-0101 }
    zones:
      - id: plaza
        polygon: [[0.0, 0.35], [1.0, 0.35], [1.0, 1.0], [0.0, 1.0]]
        rules:
          - { kind: presence, type: demo_people_in_plaza, classes: [person], minScore: 0.5, updateMinutes: 0.25 }
          - { kind: dwell, type: standing, classes: [person], minScore: 0.5, seconds: 4, updateMinutes: 0.1, endSeconds: 3 }
      - id: walkway
        polygon: [[0.3, 0.3], [0.7, 0.3], [0.7, 0.8], [0.3, 0.8]]
        rules:
          - { kind: line_cross, type: demo_walkway_crossing, classes: [person], minScore: 0.45, line: [[0.5, 0.3], [0.5, 0.8]], direction: both }
      - id: lawn-left
        polygon: [[0.0, 0.5], [0.3, 0.5], [0.3, 1.0], [0.0, 1.0]]
        rules:
          - { kind: presence, type: on_lawn, classes: [person], minScore: 0.5, updateMinutes: 0.05, endSeconds: 2, cooldownSeconds: 0 }
`,
    join(dir, 'gateway.yaml'),
  );
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
  const detector = await openDetector({ threads: 2, scoreThreshold: SCORE_THRESHOLD });
  t.teardown(() => detector.close());
  const rules = new CameraRules(cam);

  const t0 = Date.parse('2025-06-06T12:00:00Z');
  for await (const frame of readVideoFrames(clip, { fps: cam.detect.fps, startTs: t0 })) {
    const detections = await detector.detect(frame);
    for (const hit of rules.evaluate(frame.ts, frame.width, frame.height, detections, frame)) {
      t.ok(await recorder.record(cam, frame, hit, detector.model), `${hit.eventType} ${hit.state} stored`);
    }
  }

  const checks: Check[] = [];
  for (const row of outbox.list({ limit: 100_000 })) {
    const payload = eventPayloadSchema.parse(JSON.parse(row.payload));
    t.equal(
      docSchemaProblems('event', payload),
      null,
      `${payload.type} ${payload.state} seq ${payload.seq}: valid against docs/schemas/event.schema.json`,
    );
    const clean = await decodeImage(join(dir, 'data', payload.evidence.clean.file));
    const found = (await detector.detect({ ...clean, ts: 0 })).map((d) => normalize(d, clean.width, clean.height));
    const missing = payload.objects.filter((o) => !found.some((d) => d.class === o.class && iou(d.box, o.box) >= MATCH_IOU));
    checks.push({ payload, missing });
  }
  const objects = checks.reduce((n, c) => n + c.payload.objects.length, 0);
  const missing = checks.reduce((n, c) => n + c.missing.length, 0);
  const share = objects ? (objects - missing) / objects : 1;
  const tally = (key: (p: EventPayload) => string): string => {
    const by = new Map<string, [number, number]>();
    for (const c of checks) {
      const [o, m] = by.get(key(c.payload)) ?? [0, 0];
      by.set(key(c.payload), [o + c.payload.objects.length, m + c.missing.length]);
    }
    return [...by].map(([k, [o, m]]) => `${k} ${o - m}/${o}`).join(', ');
  };
  const unseen = checks.flatMap((c) => (c.payload.unseen ?? []).map((u) => ({ ...u, message: c.payload })));
  t.comment(
    `${checks.length} event messages, ${objects} objects, ${objects - missing} (${(share * 100).toFixed(1)} %) found again in their own clean frame; ` +
      `${unseen.length} listed apart as unseen`,
  );
  t.comment(`found/listed by state: ${tally((p) => p.state)}; by type: ${tally((p) => p.type)}`);
  for (const c of checks) {
    for (const o of c.missing)
      t.fail(
        `${c.payload.type} ${c.payload.state} seq ${c.payload.seq} at ${c.payload.detectedAt}: ${o.class} #${o.trackId} ` +
          `[${o.box.join(', ')}] is not in its evidence frame`,
      );
  }
  t.ok(
    checks.some((c) => c.payload.state === 'updated') && checks.some((c) => c.payload.state === 'ended'),
    'started, updated and ended messages were checked',
  );
  t.ok(
    unseen.some((u) => u.message.state === 'updated'),
    'some updated message came while an object of its event was hidden: it is listed apart',
  );
  for (const u of unseen) {
    const ago = Date.parse(u.message.detectedAt) - Date.parse(u.lastSeenAt);
    if (!(ago > 0))
      t.fail(
        `${u.message.type} ${u.message.state} seq ${u.message.seq}: unseen ${u.class} #${u.trackId} last seen ${u.lastSeenAt}, not ` +
          `before its frame ${u.message.detectedAt}`,
      );
    if (u.message.objects.some((o) => o.trackId === u.trackId))
      t.fail(`${u.message.type} seq ${u.message.seq}: track #${u.trackId} both seen and unseen`);
  }
});

function normalize(d: Detection, width: number, height: number): { class: string; box: [number, number, number, number] } {
  return { class: d.class, box: [d.box[0] / width, d.box[1] / height, d.box[2] / width, d.box[3] / height] };
}

function iou(a: readonly number[], b: readonly number[]): number {
  const w = Math.min(a[2]!, b[2]!) - Math.max(a[0]!, b[0]!);
  const h = Math.min(a[3]!, b[3]!) - Math.max(a[1]!, b[1]!);
  if (w <= 0 || h <= 0) return 0;
  const area = (x: readonly number[]): number => (x[2]! - x[0]!) * (x[3]! - x[1]!);
  return (w * h) / (area(a) + area(b) - w * h);
}
