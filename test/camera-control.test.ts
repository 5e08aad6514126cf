// Control of a running camera through the components' context, on the real agent (real clip, ffmpeg, model,
// Mosquitto): a view swap ends the open event with view_changed and the new view's zones fire; a bad view changes
// nothing; a pause ends events with camera_paused and stops detection until resume.
import t from 'tap';
import { Agent, type AgentEvents, type Component, type ComponentContext } from '../src/agent/index.js';
import { loadConfig } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import type { ViewInput } from '../src/rules/index.js';
import { clipCamera, gatewayConfig, tempDir, until, writeConfig } from './helpers/agent.js';
import { startMosquitto } from './helpers/mosquitto.js';

class Recorder implements Component {
  readonly name = 'recorder';
  ctx!: ComponentContext;
  readonly hits: AgentEvents['rule.hit'][] = [];
  readonly stored: AgentEvents['event.stored'][] = [];

  start(ctx: ComponentContext): void {
    this.ctx = ctx;
    ctx.bus.on('rule.hit', (h) => {
      this.hits.push(h);
    });
    ctx.bus.on('event.stored', (e) => {
      this.stored.push(e);
    });
  }

  stop(): void {}

  /** The stored event message of `seq`, parsed. */
  payload(seq: number): { state: string; endReason?: string; zone: string; eventId: string } {
    return JSON.parse(this.ctx.outbox.get(seq)!.payload as string);
  }
}

const presence = {
  kind: 'presence',
  type: 'person_presence',
  classes: ['person'],
  minScore: 0.45,
  cooldownSeconds: 2,
  updateMinutes: 0.05,
};
/** vtest.avi's people walk in the lower two thirds: a thin strip at the top never has feet in it. */
const topStrip: ViewInput = {
  id: 'preset-2',
  zones: [
    {
      id: 'top-strip',
      polygon: [
        [0, 0],
        [1, 0],
        [1, 0.04],
        [0, 0.04],
      ],
      rules: [presence],
    },
  ],
};
const walkway: ViewInput = {
  id: 'preset-1',
  zones: [
    {
      id: 'lower',
      polygon: [
        [0, 0.33],
        [1, 0.33],
        [1, 1],
        [0, 1],
      ],
      rules: [presence],
    },
  ],
};

t.test('a running camera swaps its view, refuses a bad one, pauses and resumes', async (t) => {
  const b = await startMosquitto();
  t.teardown(() => b.stop());
  const dir = tempDir('camera-control');
  const config = loadConfig(writeConfig(dir, gatewayConfig(dir, b.url, [clipCamera('cam-a')])));
  const probe = new Recorder();
  const agent = await Agent.start({ config, log: createLogger({ level: 'silent' }), components: [probe] });
  t.teardown(() => agent.stop());
  const cams = probe.ctx.cameras;
  const detected = (): number => cams.status()[0]!.totals.detected;

  await until('the walkway event started', () => probe.stored.some((e) => e.state === 'started'), 120_000);
  const first = probe.stored.find((e) => e.state === 'started')!;
  t.equal(probe.payload(first.seq).zone, 'walkway');

  await cams.setView('cam-a', topStrip);
  await until('the walkway event ended', () => probe.stored.some((e) => e.eventId === first.eventId && e.state === 'ended'), 10_000);
  const ended = probe.stored.find((e) => e.eventId === first.eventId && e.state === 'ended')!;
  t.match(
    probe.payload(ended.seq),
    { state: 'ended', endReason: 'view_changed', zone: 'walkway' },
    'ended with view_changed, drawn with its own zone',
  );
  t.equal(cams.status()[0]!.view, 'preset-2', 'status names the view');
  const hitsAtSwap = probe.hits.length;
  const at = detected();
  await until('four frames detected on the new view', () => detected() >= at + 4, 60_000);
  t.same(
    probe.hits.slice(hitsAtSwap).map((h) => h.hit.zoneId),
    [],
    'no hit on the new view: nobody walks in the top strip, the old zone is gone',
  );

  await t.rejects(
    cams.setView('cam-a', {
      id: 'broken',
      zones: [
        {
          id: 'z',
          polygon: [
            [0, 0],
            [1, 1],
          ],
          rules: [presence],
        },
      ],
    }),
    /camera cam-a, view broken[\s\S]*zones\[0\]\.polygon/,
    'a bad view is refused, naming the camera, the view and the path',
  );
  t.equal(cams.status()[0]!.view, 'preset-2', 'and the old view keeps running');
  t.throws(() => cams.resume('cam-x'), /no camera 'cam-x' in this agent \(cameras: cam-a\)/, 'an unknown camera is named');

  await cams.setView('cam-a', walkway);
  await until('an event on the new view', () => probe.stored.some((e) => e.state === 'started' && e.eventId !== first.eventId), 60_000);
  const second = probe.stored.find((e) => e.state === 'started' && e.eventId !== first.eventId)!;
  t.equal(probe.payload(second.seq).zone, 'lower', "the new view's zone fires");

  await cams.pause('cam-a', 'camera_paused');
  await until('the second event ended', () => probe.stored.some((e) => e.eventId === second.eventId && e.state === 'ended'), 10_000);
  const paused = probe.stored.find((e) => e.eventId === second.eventId && e.state === 'ended')!;
  t.equal(probe.payload(paused.seq).endReason, 'camera_paused');
  t.equal(cams.status()[0]!.paused, 'camera_paused', 'status says why the camera is paused');
  // Frames already in the inference queue may still be detected; then nothing more is.
  await new Promise((r) => setTimeout(r, 1500));
  const whilePaused = detected();
  const hitsWhilePaused = probe.hits.length;
  await new Promise((r) => setTimeout(r, 3000));
  t.equal(detected(), whilePaused, 'no frame detected while paused');
  t.equal(probe.hits.length, hitsWhilePaused, 'no hit while paused');
  t.equal(cams.status()[0]!.state, 'streaming', 'the stream keeps running');

  cams.resume('cam-a');
  t.notOk('paused' in cams.status()[0]!, 'status no longer says paused');
  await until(
    'an event after resume',
    () => probe.stored.some((e) => e.state === 'started' && ![first.eventId, second.eventId].includes(e.eventId)),
    60_000,
  );
  t.pass('detection resumed');
});
