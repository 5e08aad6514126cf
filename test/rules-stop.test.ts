import t from 'tap';
import { join } from 'node:path';
import { pino } from 'pino';
import { parseConfig } from '../src/config/index.js';
import { Outbox } from '../src/outbox/index.js';
import { EventRecorder } from '../src/agent/recorder.js';
import { eventPayloadSchema } from '../src/agent/event.js';
import { CameraRules } from '../src/rules/index.js';
import type { RgbFrame } from '../src/vision/types.js';

const W = 320;
const H = 240;

function frame(ts: number): RgbFrame {
  return { width: W, height: H, data: Buffer.alloc(W * H * 3, 128), ts };
}

t.test('a clean stop ends each open violation once, as a valid ended message with endReason agent_stopped and evidence', async (t) => {
  const dir = t.testdir({ data: {} });
  const cfg = parseConfig(
    `
gateway: { id: gw-stop, dataDir: ./data }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
cameras:
  - id: cam-1
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    location: { grid: FT-XMH-0101 }
    zones:
      - id: lane
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
        rules:
          - { preset: fire_lane_parking, seconds: 5 }
          - { kind: presence, type: loitering, classes: [person] }
`,
    join(dir, 'gateway.yaml'),
  );
  const cam = cfg.cameras[0]!;
  const outbox = Outbox.open(join(dir, 'data', 'outbox.db'));
  t.teardown(() => outbox.close());
  const stopAt = Date.parse('2025-06-06T12:00:30Z');
  const recorder = new EventRecorder({
    config: cfg,
    dataDir: join(dir, 'data'),
    outbox,
    uplink: { notify: () => undefined },
    log: pino({ level: 'silent' }),
    now: () => stopAt,
  });
  const model = { name: 'nanodet-m', sha256: 'ab'.repeat(32) };
  const rules = new CameraRules(cam);
  const t0 = Date.parse('2025-06-06T12:00:00Z');
  let last: RgbFrame | undefined;
  for (let i = 0; i < 20; i++) {
    last = frame(t0 + i * 500);
    const car = { class: 'car', classId: 2, score: 0.9, box: [0.3 * W, 0.5 * H, 0.5 * W, 0.7 * H] as [number, number, number, number] };
    for (const hit of rules.evaluate(last.ts, W, H, [car], last)) t.ok(await recorder.record(cam, last, hit, model));
  }
  t.equal(outbox.list({ limit: 100 }).length, 1, 'the parked car started one event; nobody loitered');

  t.equal(await recorder.recordStop(cam, rules, last, model), 1);
  const payloads = outbox.list({ limit: 100 }).map((r) => eventPayloadSchema.parse(JSON.parse(r.payload)));
  t.same(
    payloads.map((p) => [p.state, p.type, p.endReason]),
    [
      ['started', 'fire_lane_parking', undefined],
      ['ended', 'fire_lane_parking', 'agent_stopped'],
    ],
  );
  const [started, ended] = payloads;
  t.equal(ended!.id, started!.id, 'the same violation');
  t.equal(ended!.detectedAt, new Date(stopAt).toISOString(), 'at the stop');
  t.equal(ended!.endedAt, new Date(t0 + 19 * 500).toISOString(), 'the last frame it held');
  t.ok(ended!.evidence.annotated.bytes > 0 && ended!.evidence.clean.bytes > 0, 'with evidence of the last frame');
  t.equal(await recorder.recordStop(cam, rules, last, model), 0, 'a second stop has nothing left to end');

  const idle = new CameraRules(cam);
  t.equal(await recorder.recordStop(cam, idle, undefined, model), 0, 'a camera that saw nothing: no message, no frame needed');
});
