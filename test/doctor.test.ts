import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { makePki } from './helpers/pki.js';
import t from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { Outbox } from '../src/outbox/index.js';
import { clip, gatewayConfig, root, writeConfig, edgepatrol } from './helpers/agent.js';
import { brokerFor, tempDirFor } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';
import { startOnvifSim } from './fixtures/onvif-sim/server.js';

interface Check {
  check: string;
  camera: string | null;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  fix: string | null;
}

interface Report {
  config: string;
  checks: Check[];
  ok: number;
  warn: number;
  fail: number;
}

async function doctor(config: string, ...args: string[]): Promise<{ code: number | null; report: Report; err: string }> {
  const r = await edgepatrol('doctor', '--config', config, '--json', '--timeout', '3', ...args);
  let report: Report;
  try {
    report = JSON.parse(r.out) as Report;
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${r.code}): ${r.out} ${r.err}`);
  }
  return { code: r.code, report, err: r.err };
}

function find(report: Report, check: string, camera: string | null = null): Check {
  const found = report.checks.find((c) => c.check === check && c.camera === camera);
  if (!found) throw new Error(`no check ${check}${camera === null ? '' : ` of camera ${camera}`} in ${JSON.stringify(report)}`);
  return found;
}

const rtsp = await startRtspServer({ mounts: ['gate'] });
t.teardown(() => rtsp.stop());
// A PTZ camera that speaks real ONVIF (SOAP over HTTP with WS-Security), its clock 2 hours behind.
const sim = await startOnvifSim({
  user: 'tech',
  password: 'ladder-42',
  discovery: false,
  clockSkewSeconds: -7200,
  streamUrl: rtsp.url('gate'),
});
t.teardown(() => sim.stop());

/** A gateway with an RTSP camera, a file camera and a PTZ camera with onvif; extra config merged in. */
function setup(
  t: Tap.Test,
  mqttUrl: string,
  extra: Record<string, unknown> = {},
  opts: { wrongOnvifPassword?: boolean } = {},
): { dir: string; config: string; dataDir: string } {
  const dir = tempDirFor(t, 'doctor');
  const base = gatewayConfig(dir, mqttUrl, [
    { id: 'gate', source: { url: rtsp.url('gate') } },
    { id: 'bench', source: { file: clip } },
    { id: 'ptz', source: { url: rtsp.url('gate') }, onvif: { url: sim.xaddr, user: 'tech', password: 'ladder-42' } },
    ...(opts.wrongOnvifPassword
      ? [{ id: 'ptz-wrong', source: { url: rtsp.url('gate') }, onvif: { url: sim.xaddr, user: 'tech', password: 'not-it' } }]
      : []),
  ]);
  const config = writeConfig(dir, { ...base, outbox: { maxBytes: 1_000_000 }, ...extra });
  return { dir, config, dataDir: join(dir, 'data') };
}

/** A real outbox with two events waiting and one acked. */
function fillOutbox(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  const file = join(dataDir, 'outbox.db');
  const outbox = Outbox.open(file, { maxBytes: 1_000_000 });
  for (let i = 0; i < 3; i++) {
    const id = uuidv7();
    outbox.add({ id, cameraId: 'gate', type: 'presence', topic: 'ept/gw-test-01/event/presence' }, (seq) => ({
      id,
      seq,
      pad: 'x'.repeat(3000),
    }));
  }
  outbox.markAcked(1, 1);
  outbox.close();
  return file;
}

t.test('all ok against a real broker, RTSP server, model, outbox and ONVIF camera; a wrong ONVIF password fails; exit 7', async (t) => {
  const broker = await brokerFor(t);
  const { config, dataDir } = setup(t, broker.url, {}, { wrongOnvifPassword: true });
  const missing = await doctor(config);
  t.match(find(missing.report, 'outbox'), { status: 'ok', detail: /^not created yet/ }, 'no outbox yet: ok');

  fillOutbox(dataDir);
  const { code, report, err } = await doctor(config);
  t.equal(code, 7, `the wrong ONVIF password fails the run: ${err}`);
  t.same(
    report.checks.filter((c) => c.status === 'fail').map((c) => `${c.check} ${c.camera}`),
    ['onvif ptz-wrong'],
    'the only failure is the camera with the wrong password',
  );
  t.match(find(report, 'onvif', 'ptz-wrong'), {
    status: 'fail',
    detail: /authentication failed for camera 127\.0\.0\.1:\d+/,
    fix: /check onvif\.user and onvif\.password of camera ptz-wrong/,
  });
  t.notMatch(JSON.stringify(report), /ladder-42|not-it/, 'no password in the report');
  for (const [check, camera, detail] of [
    ['ffmpeg', null, /^ffmpeg \S+ with select, zscale, scale$/],
    ['models', null, /^nanodet-m-int8: sha256 matches .*manifest\.json$/],
    ['broker', null, new RegExp(`^connected to ${broker.url.replace(/\./g, '\\.')} in \\d+ ms$`)],
    ['disk', null, /MiB free where the outbox and evidence live/],
    ['outbox', null, /outbox\.db: 2 events waiting to be sent, the oldest \d+ s old$/],
    ['reachable', 'gate', `RTSP 127.0.0.1:${rtsp.port} accepts connections`],
    ['reachable', 'bench', `file ${clip} is readable`],
    ['reachable', 'ptz', `RTSP 127.0.0.1:${rtsp.port} accepts connections`],
  ] as const) {
    t.match(find(report, check, camera), { status: 'ok', detail, fix: null }, `${check} ${camera ?? ''}: ok`);
  }
  t.match(
    find(report, 'onvif', 'ptz'),
    // ONVIF's clock has whole seconds: 2 h behind reads as -7200.x or, at a second's edge, -7201.0.
    { status: 'warn', detail: /logged in \((WS-Security|HTTP digest)\), clock -720[01]\.\d s$/, fix: /set the camera's clock/ },
    "logged in, signing in the camera's own time; its clock 2 hours off is a warning",
  );
  t.notOk(
    report.checks.some((c) => c.check === 'onvif' && !c.camera?.startsWith('ptz')),
    'the onvif check only for the cameras with onvif',
  );
  t.ok(['ok', 'warn'].includes(find(report, 'clock').status), 'the clock: synchronized, or unknown in a container');
  t.equal(report.checks.length, 12, '6 of the gateway, 4 cameras reachable, 2 onvif');

  const text = await edgepatrol('doctor', '--config', config);
  t.equal(text.code, 7);
  t.match(text.out, /^ok {4}ffmpeg +ffmpeg /m);
  t.match(text.out, /^FAIL {2}camera ptz-wrong onvif +authentication failed for camera [^\n]+\n +fix: check onvif\.user/m);
  t.match(text.out, /\n\d+ ok, \d+ warn, 1 fail\n$/);
});

t.test('broker down, camera port closed, corrupted outbox, a model with the wrong hash: each fails with a fix; exit 7', async (t) => {
  const broker = await brokerFor(t);
  const url = broker.url;
  await broker.stop();
  const dir = tempDirFor(t, 'doctor-fail');
  // Port 1 is privileged and closed: the camera's connection is refused.
  const dead = { id: 'dead', source: { url: 'rtsp://user:pw@127.0.0.1:1/stream1' } };
  const config = writeConfig(dir, { ...gatewayConfig(dir, url, [dead]), outbox: { maxBytes: 1_000_000 } });
  const dataDir = join(dir, 'data');

  const outbox = fillOutbox(dataDir);
  // Damage a page in the middle of the file, as a bad SD card would: the header stays readable.
  const size = statSync(outbox).size;
  const fd = openSync(outbox, 'r+');
  writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 4096 / 2) * 4096);
  closeSync(fd);

  const models = join(dir, 'models');
  mkdirSync(models);
  const manifest = JSON.parse(readFileSync(join(root, 'models', 'manifest.json'), 'utf8')) as {
    default: string;
    models: Record<string, { file: string }>;
  };
  copyFileSync(join(root, 'models', 'manifest.json'), join(models, 'manifest.json'));
  const modelFile = manifest.models[manifest.default]!.file;
  const bytes = readFileSync(join(root, 'models', modelFile));
  bytes[bytes.length - 10]! ^= 0xff;
  writeFileSync(join(models, modelFile), bytes);

  const { code, report } = await doctor(config, '--models-dir', models);
  t.equal(code, 7, 'at least one check failed');
  t.match(find(report, 'broker'), { status: 'fail', detail: `${url}: connection refused`, fix: /broker runs/ });
  t.match(find(report, 'reachable', 'dead'), {
    status: 'fail',
    detail: 'RTSP 127.0.0.1:1: connection refused',
    fix: /camera dead is powered and on the network/,
  });
  t.match(find(report, 'outbox'), { status: 'fail', detail: /outbox\.db/, fix: /move .*outbox\.db.* aside/ });
  t.match(find(report, 'models'), { status: 'fail', detail: /does not match its manifest: sha256 expected/, fix: /scripts\/setup\.sh/ });
  t.equal(report.fail, 4);
  t.notMatch(JSON.stringify(report), ':pw@', 'no camera password in the report');

  const text = await edgepatrol('doctor', '--config', config, '--models-dir', models, '--timeout', '3');
  t.equal(text.code, 7);
  t.match(text.out, /^FAIL {2}broker +mqtt:\/\/127\.0\.0\.1:\d+: connection refused\n +fix: check that the broker runs/m);
  t.match(text.out, /, 4 fail\n$/);
});

t.test('TLS with client certificates: ok with the right CA, a TLS failure naming the CA with another', async (t) => {
  const dir = tempDirFor(t, 'doctor-pki');
  const pki = makePki(dir, 'site');
  const other = makePki(dir, 'other');
  const broker = await brokerFor(t, { tls: { cafile: pki.ca, certfile: pki.serverCert, keyfile: pki.serverKey } });
  const tls = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };

  const good = setup(t, broker.url, { mqtt: { url: broker.url, prefix: 'ept', tls } });
  const ok = await doctor(good.config);
  t.match(find(ok.report, 'broker'), { status: 'ok', detail: /^connected to mqtts:\/\/127\.0\.0\.1:\d+ over TLS in \d+ ms$/ });
  t.equal(ok.code, 0);

  const wrongCa = setup(t, broker.url, { mqtt: { url: broker.url, prefix: 'ept', tls: { ...tls, ca: other.ca } } });
  const bad = await doctor(wrongCa.config);
  t.equal(bad.code, 7);
  t.match(find(bad.report, 'broker'), {
    status: 'fail',
    detail: /^TLS to mqtts:\/\/127\.0\.0\.1:\d+ failed: .*(certificate|self.signed)/i,
    fix: /mqtt\.tls\.ca is the CA that signed the broker's certificate/,
  });

  const noCert = setup(t, broker.url, { mqtt: { url: broker.url, prefix: 'ept', tls: { ca: pki.ca } } });
  const refused = await doctor(noCert.config);
  t.equal(refused.code, 7);
  t.match(find(refused.report, 'broker'), {
    status: 'fail',
    detail: /^TLS to mqtts:\/\/127\.0\.0\.1:\d+ failed: the broker asks for a client certificate/,
    fix: /mqtt\.tls\.cert and mqtt\.tls\.key/,
  });
});

t.test('an invalid config exits 2 before any check; a bad --timeout is a usage error', async (t) => {
  const dir = tempDirFor(t, 'doctor-bad');
  const config = join(dir, 'gateway.yaml');
  writeFileSync(config, 'gateway: { id: gw-1 }\nmqtt: { url: 127.0.0.1 }\ncameras: []\n');
  const r = await edgepatrol('doctor', '--config', config, '--json');
  t.same([r.code, r.out], [2, '']);
  t.match(r.err, `config ${config} has 1 problem`);
  const usage = await edgepatrol('doctor', '--timeout', '0');
  t.same([usage.code, usage.err.split('\n')[0]], [1, "edgepatrol doctor: --timeout must be a positive number of seconds, got '0'"]);
});
