import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { eventPayloadSchema } from '../src/agent/event.js';
import { readStatus } from '../src/agent/stats.js';
import { stringify } from 'yaml';
import { contractProblem } from '../src/cli/tail.js';
import { OnvifDevice } from '../src/onvif/index.js';
import { taskStatePayloadSchema, type TaskStatePayload } from '../src/tasks/index.js';
import { startOnvifSim } from './fixtures/onvif-sim/server.js';
import { gatewayConfig, runCli, writeConfig, type RunningAgent } from './helpers/agent.js';
import { brokerFor, collect, tempDirFor, type Collector } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';

const base = 'ept/gw-test-01';
const PASSWORD = 'dome-secret-1';

/** A zone over the whole view with a presence rule on people: each preset's rule has its own event type. */
const zone = (id: string, type: string) => ({
  id,
  polygon: [
    [0, 0],
    [1, 0],
    [1, 1],
    [0, 1],
  ],
  rules: [
    { id: 'people', kind: 'presence', type, classes: ['person'], minScore: 0.4, cooldownSeconds: 1, endSeconds: 2, updateMinutes: 10 },
  ],
});

t.test('PTZ patrol rounds and verification against the ONVIF simulator, the RTSP server, Mosquitto and a real agent', async (t) => {
  const broker = await brokerFor(t, { persistence: true });
  const rtsp = await startRtspServer({ mounts: ['dome'] });
  t.teardown(() => rtsp.stop());
  // Two presets on the paths people walk (the centre, the left); home is the whole lawn at the bottom right.
  const sim = await startOnvifSim({
    user: 'admin',
    password: PASSWORD,
    rtsp: { server: rtsp, mount: 'dome' },
    discovery: false,
    presets: [
      { token: '11', name: 'Centre', pan: 0, tilt: 0.1, zoom: 0 },
      { token: '12', name: 'Left', pan: -1, tilt: 0.2, zoom: 0.2 },
    ],
    move: { baseMs: 800, msPerUnit: 400 },
  });
  t.teardown(() => sim.stop());

  const dir = tempDirFor(t, 'patrol');
  const dataDir = join(dir, 'data');
  const cfg = gatewayConfig(dir, broker.url, [
    {
      id: 'dome',
      source: { url: rtsp.url('dome') },
      detect: { fps: 3, width: 640, height: 480 },
      motion: { enabled: false },
      onvif: { url: sim.xaddr, user: 'admin', password: PASSWORD },
      presets: [
        { id: 'centre', token: '11', zones: [zone('centre-path', 'centre_presence')] },
        { id: 'left', token: '12', zones: [zone('left-path', 'left_presence')] },
      ],
      ptz: { settleSeconds: 1, driftCheckSeconds: 1, manualHoldSeconds: 600 },
      patrols: [
        {
          id: 'round1',
          stops: [
            { preset: 'centre', dwellSeconds: 6 },
            { preset: 'left', dwellSeconds: 6 },
          ],
        },
      ],
    },
    // A fixed camera whose stream never comes: a verification there cannot conclude.
    {
      id: 'dead',
      source: { url: 'rtsp://127.0.0.1:9/none' },
      detect: { fps: 2, width: 320, height: 240 },
      zones: [zone('gate', 'gate_presence')],
    },
  ]);
  const config = writeConfig(dir, cfg);

  const sub: Collector = await collect(broker.url, `${base}/#`, { session: `patrol-test-${process.pid}` });
  t.teardown(() => sub.close());

  let agent: RunningAgent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/agent started/, 60_000);
  await agent.waitForLog(/camera dome: at home/, 30_000);
  await new Promise((r) => setTimeout(r, 1000));

  const states = (id: string): TaskStatePayload[] => {
    const seen = new Set<number>();
    return sub.messages
      .filter((m) => m.topic === `${base}/task/${id}/state`)
      .map((m) => taskStatePayloadSchema.parse(JSON.parse(m.payload)))
      .filter((s) => !seen.has(s.seq) && seen.add(s.seq));
  };
  const names = (id: string): string[] => states(id).map((s) => (s.reason ? `${s.state}:${s.reason}` : s.state));
  const finalOf = async (id: string, ms = 90_000): Promise<TaskStatePayload> => {
    await sub.waitFor(() => states(id).some((s) => ['succeeded', 'failed', 'rejected', 'expired', 'canceled'].includes(s.state)), ms);
    return states(id).at(-1)!;
  };
  const send = async (id: string, fields: Record<string, unknown>): Promise<void> => {
    const body = { schema: 'edgepatrol.task/1', id, issuedAt: new Date().toISOString(), ...fields };
    await sub.client.publishAsync(`${base}/task/${id}`, JSON.stringify(body), { qos: 1 });
  };
  /** Waits for a log line matching `re` beyond the `before` such lines there were (count(re) before the action). */
  const count = (re: RegExp): number => (agent.stderr().match(new RegExp(re.source, 'g')) ?? []).length;
  const waitNew = async (re: RegExp, before: number, ms = 30_000): Promise<void> => {
    const end = Date.now() + ms;
    while (count(re) <= before) {
      if (Date.now() > end) throw new Error(`no new log line ${re} within ${ms} ms:\n${agent.stderr().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const atLeft = /camera dome: at preset left/;
  const atCentre = /camera dome: at preset centre/;
  const events = () =>
    sub.messages.filter((m) => m.topic.startsWith(`${base}/event/`)).map((m) => eventPayloadSchema.parse(JSON.parse(m.payload)));

  await t.test('a round visits the presets in order; events come only from each preset’s own zones, while it is there', async (t) => {
    const gotoBefore = sim.state.requests.GotoPreset ?? 0;
    await send('round-1', { kind: 'patrol', camera: 'dome', round: 'round1' });
    const last = await finalOf('round-1');
    t.same(names('round-1'), ['accepted', 'running', 'progress', 'succeeded'], agent.stderr().slice(-3000));
    t.equal(states('round-1')[2]!.progress, 0.5, 'progress after the first of two stops');
    const result = last.result as {
      stops: Array<{
        preset: string;
        from: string;
        to: string;
        events: string[];
        evidence: { file: string; sha256: string };
        arrived: { by: string };
      }>;
      home: boolean;
    };
    t.same(
      result.stops.map((s) => s.preset),
      ['centre', 'left'],
      'stops in order',
    );
    t.equal(result.home, true, 'the camera went home afterwards');
    t.equal((sim.state.requests.GotoPreset ?? 0) - gotoBefore, 2, 'two GotoPreset calls');
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'the simulator is at home');
    for (const stop of result.stops) {
      t.equal(stop.arrived.by, 'move-status', `${stop.preset}: arrival by MoveStatus`);
      const jpeg = readFileSync(join(dataDir, stop.evidence.file));
      t.equal(createHash('sha256').update(jpeg).digest('hex'), stop.evidence.sha256, `${stop.preset}: evidence kept with its sha256`);
      t.ok(stop.events.length >= 1, `${stop.preset}: people seen at the stop (${stop.events.length} events)`);
    }
    const started = events().filter((e) => e.state === 'started');
    t.ok(started.length >= 2, `${started.length} events started`);
    for (const e of started) {
      const stop = result.stops.find((s) => s.preset === e.view);
      t.ok(stop, `event ${e.id} names its view (${e.view})`);
      if (!stop) continue;
      t.equal(e.zone, `${stop.preset}-path`, "the preset's own zone");
      t.equal(e.type, `${stop.preset}_presence`, "the preset's own rule");
      const at = Date.parse(e.detectedAt);
      t.ok(at >= Date.parse(stop.from) - 500 && at <= Date.parse(stop.to) + 500, `detected while at ${stop.preset}, not while moving`);
    }
    const ended = events().filter((e) => e.state === 'ended');
    t.ok(
      ended.some((e) => e.endReason === 'view_changed'),
      'an event open when the camera turned away ended view_changed',
    );
    for (const m of sub.messages.filter((m) => m.topic.includes('/task/') || m.topic.includes('/event/')))
      t.equal(contractProblem(m.topic, m.raw, m.properties), null, `tail --check passes ${m.topic}`);
  });

  let centreEvent = '';
  await t.test('verify after disposal: still_present while people walk there, resolved once the scene is empty', async (t) => {
    const e = events().find((x) => x.view === 'centre' && x.state === 'started');
    t.ok(e, 'an event of the centre preset to verify');
    centreEvent = e!.id;
    await send('verify-1', { kind: 'verify', camera: 'dome', eventId: centreEvent, seconds: 10 });
    const first = await finalOf('verify-1');
    t.equal(first.state, 'succeeded', JSON.stringify(first));
    const r1 = first.result as {
      verdict: string;
      preset: string;
      evidence: { file: string; sha256: string };
      original?: { sha256: string };
    };
    t.equal(r1.verdict, 'still_present', JSON.stringify(r1));
    t.equal(r1.preset, 'centre', "went to the event's view");
    t.ok(r1.original?.sha256, "the original evidence's sha256 beside the fresh one");
    t.equal(
      createHash('sha256')
        .update(readFileSync(join(dataDir, r1.evidence.file)))
        .digest('hex'),
      r1.evidence.sha256,
      'fresh evidence kept',
    );

    await sim.setEmpty(true);
    t.teardown(() => sim.setEmpty(false));
    await send('verify-2', { kind: 'verify', camera: 'dome', eventId: centreEvent, seconds: 10 });
    const second = await finalOf('verify-2');
    const r2 = second.result as { verdict: string; detections: number; frames: number };
    t.equal(r2.verdict, 'resolved', JSON.stringify(second));
    t.ok(r2.detections > 0 && r2.frames > 0, `the rule ran (${r2.detections} detections on ${r2.frames} frames)`);
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'home again after verifying');

    // A covered lens: the check cannot tell, and says why.
    await sim.setCovered(true);
    await send('verify-covered', { kind: 'verify', camera: 'dome', eventId: centreEvent, seconds: 6 });
    const covered = await finalOf('verify-covered');
    await sim.setCovered(false);
    t.match(covered.result, { verdict: 'inconclusive', why: 'view_blocked' }, 'a covered lens: inconclusive, view_blocked');

    await send('verify-dead', { kind: 'verify', camera: 'dead', zone: 'gate', rule: 'people', seconds: 5 });
    const dead = await finalOf('verify-dead');
    t.match(dead.result, { verdict: 'inconclusive', why: 'stream_down', frames: 0 }, 'no stream: inconclusive, stream_down');

    await send('snap-left', { kind: 'snapshot', camera: 'dome', preset: 'left' });
    const snap = await finalOf('snap-left');
    const r3 = snap.result as { preset: string; file: string; sha256: string; arrived: { by: string } };
    t.equal(snap.state, 'succeeded', JSON.stringify(snap));
    t.match(r3, { preset: 'left', arrived: { by: 'move-status' } }, 'a snapshot from a preset');
    t.equal(
      createHash('sha256')
        .update(readFileSync(join(dataDir, r3.file)))
        .digest('hex'),
      r3.sha256,
    );
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'home after the snapshot');
  });

  await t.test('a verification takes the camera from a patrol (preempted); manual control stops a patrol', async (t) => {
    let before = count(atLeft);
    await send('round-2', { kind: 'patrol', camera: 'dome', stops: [{ preset: 'left', dwellSeconds: 120 }] });
    await waitNew(atLeft, before);
    await send('verify-3', { kind: 'verify', camera: 'dome', zone: 'centre-path', rule: 'people', preset: 'centre', seconds: 5 });
    const patrol = await finalOf('round-2');
    t.equal(`${patrol.state}:${patrol.reason}`, 'failed:preempted', JSON.stringify(patrol));
    const verify = await finalOf('verify-3');
    t.equal(verify.state, 'succeeded', JSON.stringify(verify));

    // A person steers the dome (another ONVIF client, as `edgepatrol camera goto` is) during a round.
    before = count(atCentre);
    await send('round-3', { kind: 'patrol', camera: 'dome', stops: [{ preset: 'centre', dwellSeconds: 120 }] });
    await waitNew(atCentre, before);
    const technician = new OnvifDevice({ address: sim.xaddr, user: 'admin', password: PASSWORD });
    await technician.gotoPreset('MainStream', '12');
    const manual = await finalOf('round-3', 30_000);
    t.equal(`${manual.state}:${manual.reason}`, 'failed:manual_control', JSON.stringify(manual));
    await send('round-4', { kind: 'patrol', camera: 'dome', round: 'round1' });
    const refused = await finalOf('round-4', 30_000);
    t.equal(`${refused.state}:${refused.reason}`, 'failed:manual_control', 'the next round leaves the camera alone too');
    // Away from home with nobody holding it: the camera's own rules pause (they would judge the wrong scene).
    const end = Date.now() + 15_000;
    const dome = () => readStatus(dataDir).cameras.find((c) => c.id === 'dome');
    while (dome()?.paused !== 'view_changed' && Date.now() < end) await new Promise((r) => setTimeout(r, 250));
    t.equal(dome()?.paused, 'view_changed', 'rules paused while the dome is away from home');

    // The request camera/list shows the hold, so the centre knows why its tasks fail.
    const asked = sub.messages.length;
    await sub.client.publishAsync(`${base}/request/camera/list`, JSON.stringify({ transaction: 'ptz-1' }), { qos: 1 });
    await sub.waitFor(() => sub.messages.slice(asked).some((m) => m.topic === `${base}/response/camera/list`), 15_000);
    const answer = JSON.parse(sub.messages.slice(asked).find((m) => m.topic === `${base}/response/camera/list`)!.payload) as {
      data: { cameras: Array<{ id: string; ptz?: { manualUntil?: string; movesLastHour: number } }> };
    };
    const ptz = answer.data.cameras.find((c) => c.id === 'dome')?.ptz;
    t.ok(ptz?.manualUntil && Date.parse(ptz.manualUntil) > Date.now(), `camera/list shows the manual hold (${ptz?.manualUntil})`);
    t.ok((ptz?.movesLastHour ?? 0) >= 8, `and the moves of the last hour (${ptz?.movesLastHour})`);
    t.equal(answer.data.cameras.find((c) => c.id === 'dead')?.ptz, undefined, 'a fixed camera has no ptz state');
  });

  await t.test('SIGKILL in the middle of a patrol: after the restart it is failed interrupted and the camera goes home', async (t) => {
    // Restart without the manual hold of the last test.
    await agent.stop('SIGKILL');
    agent = runCli(['run', '--config', config]);
    await agent.waitForLog(/agent started/, 60_000);
    await agent.waitForLog(/camera dome: at home/, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    await send('round-5', { kind: 'patrol', camera: 'dome', stops: [{ preset: 'left', dwellSeconds: 120 }] });
    await agent.waitForLog(atLeft, 30_000);
    await agent.stop('SIGKILL');
    t.ok(sim.state.position.pan < -0.5, 'the camera was left at the preset');
    agent = runCli(['run', '--config', config]);
    const last = await finalOf('round-5', 60_000);
    t.equal(`${last.state}:${last.reason}`, 'failed:interrupted');
    await agent.waitForLog(/camera dome: at home/, 30_000);
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'sent home at the start');

    // A running round can be canceled: it stops at once, says what it did, and the camera goes home.
    const before = count(atLeft);
    await send('round-6', { kind: 'patrol', camera: 'dome', stops: [{ preset: 'left', dwellSeconds: 120 }] });
    await waitNew(atLeft, before);
    await send('cancel-6', { kind: 'cancel', target: 'round-6' });
    const canceled = await finalOf('round-6', 30_000);
    t.equal(`${canceled.state}:${canceled.reason}`, 'canceled:canceled', JSON.stringify(canceled));
    t.match(canceled.result, { stops: [{ preset: 'left' }], home: true }, 'the stop it made, and home');
    t.equal((await finalOf('cancel-6')).state, 'succeeded');
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'home after the cancel');
  });

  await t.test('a scheduled round runs by itself; the hourly move cap stops the next one (SIGHUP reload)', async (t) => {
    const cam = (cfg.cameras as Array<Record<string, unknown>>)[0]!;
    const scheduled = {
      ...cfg,
      cameras: [
        {
          ...cam,
          ptz: { ...(cam.ptz as object), maxMovesPerHour: 4 },
          patrols: [
            {
              id: 'round1',
              schedule: '*/15 * * * * *',
              stops: [
                { preset: 'centre', dwellSeconds: 2 },
                { preset: 'left', dwellSeconds: 2 },
              ],
            },
          ],
        },
      ],
    };
    writeFileSync(config, stringify(scheduled), { mode: 0o600 });
    const done = /patrol round1 done: 2 stops/;
    const capped = /patrol round1 skipped or cut short \(moves_capped\)/;
    agent.proc.kill('SIGHUP');
    await agent.waitForLog(/config reloaded: removed dead, restarted dome/, 30_000);
    await agent.waitForLog(done, 60_000);
    t.pass('the round ran on its schedule');
    // Home at the mover start, centre, left, home: 4 moves; the next round is refused before it moves.
    await agent.waitForLog(capped, 40_000);
    t.match(agent.stderr(), /4 moves in the last hour reach ptz\.maxMovesPerHour \(4\); not moving to preset centre/, 'the cap says why');
    t.same(sim.state.position, { pan: 0, tilt: 0, zoom: 0 }, 'the capped round did not move the camera off home');
  });

  await t.test('bad patrol and verify tasks are rejected with a reason', async (t) => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['bad-1', { kind: 'patrol', camera: 'dome', round: 'nope' }, 'rejected:unknown_round'],
      ['bad-2', { kind: 'patrol', camera: 'dome', stops: [{ preset: 'roof', dwellSeconds: 5 }] }, 'rejected:unknown_preset'],
      ['bad-3', { kind: 'patrol', camera: 'dome' }, 'rejected:bad_task'],
      ['bad-4', { kind: 'verify', camera: 'dome', eventId: 'no-such-event' }, 'rejected:unknown_event'],
      ['bad-5', { kind: 'verify', camera: 'dome', zone: 'centre-path', rule: 'people', preset: 'roof' }, 'rejected:unknown_preset'],
      ['bad-6', { kind: 'verify', camera: 'dome', zone: 'nowhere', rule: 'people', preset: 'centre' }, 'rejected:bad_task'],
      ['bad-7', { kind: 'verify', camera: 'dome', seconds: 1, zone: 'centre-path', rule: 'people' }, 'rejected:bad_task'],
      ['bad-8', { kind: 'snapshot', camera: 'dome', preset: 'roof' }, 'rejected:unknown_preset'],
    ];
    for (const [id, fields] of cases) await send(id, fields);
    for (const [id, , want] of cases) {
      await finalOf(id, 30_000);
      t.equal(names(id).join(','), want, id);
    }
  });
});
