import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { eventPayloadSchema } from '../src/agent/event.js';
import { chooseRound, summaryLine } from '../src/cli/patrol.js';
import type { CameraConfig } from '../src/config/index.js';
import { taskStatePayloadSchema } from '../src/tasks/index.js';
import { startOnvifSim } from './fixtures/onvif-sim/server.js';
import { edgepatrol, gatewayConfig, runCli, writeConfig, type RunningAgent } from './helpers/agent.js';
import { brokerFor, tempDirFor } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';

const PASSWORD = 'dome-secret-1';
/** Port 1 is privileged and closed: a command that tried the broker there would exit 4, not 1. */
const NO_BROKER = 'mqtt://127.0.0.1:1';

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

t.test('the round asked for, and the summary of a round that did not succeed (pure)', async (t) => {
  const camera = {
    id: 'dome',
    presets: [{ id: 'centre' }, { id: 'left' }],
    patrols: [{ id: 'r1', stops: [{ preset: 'left', dwellSeconds: 5 }] }],
  } as unknown as CameraConfig;
  t.same(chooseRound(camera, 'gw.yaml'), { id: 'r1', stops: [{ preset: 'left', dwellSeconds: 5 }], label: 'round r1 of dome' });
  t.same(chooseRound(camera, 'gw.yaml', undefined, 'centre:12, left').stops, [
    { preset: 'centre', dwellSeconds: 12 },
    { preset: 'left', dwellSeconds: 30 },
  ]);
  t.throws(() => chooseRound(camera, 'gw.yaml', undefined, 'centre:0'), /the dwell of centre must be seconds above 0/);
  t.throws(() => chooseRound(camera, 'gw.yaml', undefined, 'centre left:5'), /'centre left:5' is not preset:seconds/);
  const failed = {
    schema: 'edgepatrol.task-state/1' as const,
    taskId: 't1',
    state: 'failed' as const,
    at: new Date().toISOString(),
    seq: 4,
    gatewaySeq: 9,
    reason: 'preempted' as const,
    detail: 'a verification took the camera',
    result: {
      stops: [
        { preset: 'centre', events: ['e1', 'e2'] },
        { preset: 'left', events: [], error: 'preempted' },
      ],
    },
  };
  t.equal(
    summaryLine('round r1 of dome', 3, failed, 41.4),
    'round r1 of dome failed (preempted) after 1 of 3 stops and 41 s, 2 events: a verification took the camera',
  );
});

t.test('edgepatrol patrol run against the ONVIF simulator, the RTSP server, Mosquitto and a real agent', async (t) => {
  const broker = await brokerFor(t);
  const rtsp = await startRtspServer({ mounts: ['dome'] });
  t.teardown(() => rtsp.stop());
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

  const dir = tempDirFor(t, 'patrol-cli');
  const dome = {
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
          { preset: 'centre', dwellSeconds: 4 },
          { preset: 'left', dwellSeconds: 4 },
        ],
      },
    ],
  };
  const config = writeConfig(dir, gatewayConfig(dir, broker.url, [dome]));

  await t.test('what the config rules out is refused before the broker is contacted', async (t) => {
    const other = join(dir, 'checks');
    const signedDir = join(dir, 'signed');
    mkdirSync(other);
    mkdirSync(signedDir);
    // A fixed camera (no onvif, no presets) and a second round on the dome; the broker cannot be reached.
    const fixed = { id: 'gate', source: { url: 'rtsp://127.0.0.1:9/gate' }, detect: { fps: 1, width: 320, height: 240 } };
    const twoRounds = { ...dome, patrols: [...dome.patrols, { id: 'round2', stops: [{ preset: 'left', dwellSeconds: 3 }] }] };
    const checks = writeConfig(other, gatewayConfig(other, NO_BROKER, [twoRounds, fixed]));
    const cases: Array<[string[], RegExp]> = [
      [['nope'], /^edgepatrol patrol run: no camera 'nope' in .*gateway\.yaml \(cameras: dome, gate\)$/],
      [['gate'], /^edgepatrol patrol run: camera gate in .*gateway\.yaml is not a PTZ camera \(no onvif section\)/],
      [
        ['dome', '--round', 'round9'],
        /^edgepatrol patrol run: camera dome has no patrol round9 in .*gateway\.yaml \(its patrols: round1, round2\)$/,
      ],
      [['dome'], /^edgepatrol patrol run: camera dome has 2 patrols in .*gateway\.yaml \(round1, round2\): choose one with --round$/],
      [
        ['dome', '--stops', 'centre:5,roof:5'],
        /^edgepatrol patrol run: camera dome in .*gateway\.yaml has no preset roof \(its presets: centre, left\)$/,
      ],
    ];
    for (const [args, want] of cases) {
      const r = await edgepatrol('patrol', 'run', ...args, '--config', checks);
      t.same([r.code, r.out], [1, ''], `${args.join(' ')}: exit 1, nothing on stdout`);
      t.match(r.err.split('\n')[0], want, `${args.join(' ')}: ${r.err.split('\n')[0]}`);
    }
    const both = await edgepatrol('patrol', 'run', 'dome', '--round', 'round1', '--stops', 'left:3', '--config', checks);
    t.same([both.code, both.err.split('\n')[0]], [1, 'edgepatrol patrol run: give --round or --stops, not both']);

    // A gateway that takes signed tasks only: no --key, or a key that is not its, is refused here.
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const stranger = join(other, 'stranger.pem');
    writeFileSync(stranger, generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const own = join(other, 'service.pem');
    writeFileSync(own, privateKey.export({ format: 'pem', type: 'pkcs8' }));
    const signed = writeConfig(signedDir, {
      ...gatewayConfig(signedDir, NO_BROKER, [dome]),
      tasks: { publicKey: publicKey.export({ format: 'pem', type: 'spki' }).toString() },
    });
    const unsigned = await edgepatrol('patrol', 'run', 'dome', '--config', signed);
    t.equal(unsigned.code, 1);
    t.match(unsigned.err, /takes signed tasks only \(tasks\.requireSignature in .*\): give --key/);
    const wrong = await edgepatrol('patrol', 'run', 'dome', '--config', signed, '--key', stranger);
    t.equal(wrong.code, 1);
    t.match(wrong.err, new RegExp(`the key ${stranger} does not match tasks\\.publicKey`));
    const right = await edgepatrol('patrol', 'run', 'dome', '--config', signed, '--key', own);
    t.equal(right.code, 4, 'with the right key it goes on to the broker, which is not there: exit 4');
    t.match(right.err, /^edgepatrol patrol run: cannot connect to the broker of .*: mqtt:\/\/127\.0\.0\.1:1: connection refused; /);

    const broken = join(other, 'broken.yaml');
    writeFileSync(broken, 'gateway: { id: 7 }\n');
    t.equal((await edgepatrol('patrol', 'run', 'dome', '--config', broken)).code, 2, 'an invalid config: exit 2');
  });

  await t.test('nobody answers (the agent is not running): exit 11 after --timeout', async (t) => {
    const r = await edgepatrol('patrol', 'run', 'dome', '--config', config, '--timeout', '2');
    t.equal(r.code, 11, r.err);
    t.equal(r.out, '');
    t.match(r.err, /sent task \S+ for round round1 of dome \(centre 4 s, left 4 s\) to gw-test-01/);
    t.match(r.err, /no final state of task \S+ within 2 s; is the agent of gateway gw-test-01 running/);
    t.ok(r.ms < 15_000, `gave up in time (${r.ms} ms)`);
  });

  const agent: RunningAgent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/agent started/, 60_000);
  await agent.waitForLog(/camera dome: at home/, 30_000);

  await t.test('patrol run dome --round round1: the states, the stops in order, the events and a summary; exit 0', async (t) => {
    const r = await edgepatrol('patrol', 'run', 'dome', '--round', 'round1', '--config', config);
    t.equal(r.code, 0, r.err);
    const lines = r.out.trimEnd().split('\n');
    const steps = lines.filter((l) => !/^\d\d:\d\d:\d\d event /.test(l)).map((l) => l.replace(/^\d\d:\d\d:\d\d /, '').replace(/:.*$/, ''));
    t.same(steps.slice(0, -1), ['accepted', 'running', 'stop 1/2 centre', 'stop 2/2 left', 'succeeded'], r.out);
    t.match(r.out, /stop 1\/2 centre: arrived by move-status in \d+\.\d s, \d+ events?, evidence evidence\/\S+centre\S*\.jpg\n/);
    t.match(r.out, /event centre_presence started: zone centre-path, view centre\n/, 'the events of the camera meanwhile');
    t.match(lines.at(-1), /^round round1 of dome succeeded in \d+ s: 2 of 2 stops, \d+ events?, the camera is home$/);
    t.match(r.err, /^edgepatrol patrol run: sent task /);
  });

  await t.test('--json with --stops: one JSON line per state and event, as published, the final state last', async (t) => {
    const r = await edgepatrol('patrol', 'run', 'dome', '--stops', 'left:3', '--json', '--config', config);
    t.equal(r.code, 0, r.err);
    t.equal(r.err, '', 'nothing on stderr');
    const docs = r.out
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as { schema: string });
    const states = docs.filter((d) => d.schema === 'edgepatrol.task-state/1').map((d) => taskStatePayloadSchema.parse(d));
    const events = docs.filter((d) => d.schema !== 'edgepatrol.task-state/1').map((d) => eventPayloadSchema.parse(d));
    t.same(
      states.map((s) => s.state),
      ['accepted', 'running', 'succeeded'],
    );
    t.equal(
      docs.at(-1),
      docs.find((d) => (d as { state?: string }).state === 'succeeded'),
      'the final state is the last line',
    );
    t.same(
      (states.at(-1)!.result as { stops: { preset: string }[] }).stops.map((s) => s.preset),
      ['left'],
    );
    t.ok(
      events.every((e) => e.camera.id === 'dome'),
      `only events of dome (${events.length})`,
    );
  });

  await t.test('Ctrl-C stops watching: exit 130, and the round goes on on the agent', async (t) => {
    const watch = runCli(['patrol', 'run', 'dome', '--stops', 'centre:3', '--config', config]);
    const until = Date.now() + 30_000;
    while (!/running\n/.test(watch.stdout()) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    watch.proc.kill('SIGINT');
    const { code } = await watch.exited;
    t.equal(code, 130, watch.stderr());
    const id = /sent task (\S+)/.exec(watch.stderr())?.[1];
    t.match(watch.stderr(), /stopped watching; an ad-hoc round of dome goes on on the agent \(task \S+\)/);
    const list = async (): Promise<string> => (await edgepatrol('task', 'list', '--config', config, '--json')).out;
    const end = Date.now() + 60_000;
    while (!(await list()).includes(`"id":"${id}","kind":"patrol","camera":"dome","state":"succeeded"`) && Date.now() < end)
      await new Promise((r) => setTimeout(r, 500));
    t.match(await list(), `"id":"${id}","kind":"patrol","camera":"dome","state":"succeeded"`, 'the round ended on the agent');
  });
});
