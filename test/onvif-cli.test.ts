import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { edgepatrol } from './helpers/agent.js';
import { tempDirFor } from './helpers/mosquitto.js';
import { startRtspServer } from './helpers/rtsp.js';
import { startOnvifSim } from './fixtures/onvif-sim/server.js';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

const PASSWORD = 'ladder-42';
const rtsp = await startRtspServer({ mounts: ['dome', 'dome-sub'] });
t.teardown(() => rtsp.stop());
// A dome whose clock is an hour behind, with WS-Discovery on a port of its own (unicast probes reach loopback).
const sim = await startOnvifSim({
  user: 'tech',
  password: PASSWORD,
  rtsp: { server: rtsp, mount: 'dome', subMount: 'dome-sub' },
  clockSkewSeconds: -3600,
  discovery: { port: await freePortUdp() },
});
t.teardown(() => sim.stop());

async function freePortUdp(): Promise<number> {
  const { createSocket } = await import('node:dgram');
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const dir = tempDirFor(t, 'onvif-cli');
const pwFile = join(dir, 'dome.pw');
writeFileSync(pwFile, `${PASSWORD}\n`, { mode: 0o600 });
const wrongPw = join(dir, 'wrong.pw');
writeFileSync(wrongPw, 'not-it\n', { mode: 0o600 });
const config = join(dir, 'gateway.yaml');
const header = '# Gateway at the north gate. Keep this comment.\n';
writeFileSync(
  config,
  `${header}gateway: { id: gw-north, dataDir: ${join(dir, 'data')} }\nmqtt: { url: mqtt://127.0.0.1, prefix: ept }\ncameras: []\n`,
  {
    mode: 0o600,
  },
);
const host = `127.0.0.1:${sim.port}`;

t.test('discover: a unicast probe finds the dome; with a login its serial number', async (t) => {
  const r = await edgepatrol(
    'discover',
    '--host',
    '127.0.0.1',
    '--port',
    String(sim.discoveryPort),
    '--timeout',
    '2',
    '--user',
    'tech',
    '--password-file',
    pwFile,
    '--json',
  );
  t.equal(r.code, 0, r.err);
  const { cameras } = JSON.parse(r.out) as {
    cameras: { address: string; port: number; manufacturer: string; model: string; serialNumber: string; xaddrs: string[] }[];
  };
  t.equal(cameras.length, 1, 'one camera answered');
  t.match(cameras[0], { address: '127.0.0.1', port: sim.port, manufacturer: /\S/, model: /\S/, serialNumber: /\S/ });
  t.ok(cameras[0]!.xaddrs.includes(sim.xaddr), 'its device service address is listed');

  const text = await edgepatrol('discover', '--host', '127.0.0.1', '--port', String(sim.discoveryPort), '--timeout', '2');
  t.equal(text.code, 0);
  t.match(text.out, new RegExp(`^127\\.0\\.0\\.1 +${sim.port} +`, 'm'), 'a table row with the address and port');
  t.match(text.out, /\(needs --user\)/, 'says a serial number needs a login');

  const none = await edgepatrol('discover', '--host', '127.0.0.1', '--port', String(await freePortUdp()), '--timeout', '1');
  t.equal(none.code, 9, 'nobody answers: exit 9');
  t.match(none.err, /no camera answered on 127\.0\.0\.1 within 1 s/);
});

t.test('camera add: wrong password exits 8, nothing written; an unreachable or silent camera exits 9 within its timeout', async (t) => {
  const before = readFileSync(config, 'utf8');
  const wrong = await edgepatrol('camera', 'add', host, '--user', 'tech', '--password-file', wrongPw, '--config', config);
  t.equal(wrong.code, 8, 'exit 8');
  t.match(wrong.err, new RegExp(`authentication failed for camera 127\\.0\\.0\\.1:${sim.port}.*\\(check --user/--password-file\\)`));
  t.notMatch(wrong.err + wrong.out, /not-it/, 'the password is not echoed');
  t.equal(readFileSync(config, 'utf8'), before, 'the config is unchanged');

  const closed = await freePort();
  const refused = await edgepatrol('camera', 'add', `127.0.0.1:${closed}`, '--user', 'tech', '--password-file', pwFile, '--config', config);
  t.equal(refused.code, 9, 'connection refused: exit 9');
  t.match(refused.err, new RegExp(`camera 127\\.0\\.0\\.1:${closed}`));

  // Accepts the connection, never answers.
  const silent = createHttpServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    silent.closeAllConnections();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const hang = await edgepatrol(
    'camera',
    'add',
    `127.0.0.1:${port}`,
    '--user',
    'tech',
    '--password-file',
    pwFile,
    '--config',
    config,
    '--timeout',
    '2',
  );
  t.equal(hang.code, 9, 'no answer: exit 9');
  t.match(hang.err, new RegExp(`camera 127\\.0\\.0\\.1:${port} did not answer within 2 s`));
  t.ok(hang.ms < 8000, `gave up after ${hang.ms} ms (timeout 2 s, plus starting node)`);
  t.equal(readFileSync(config, 'utf8'), before, 'still unchanged');
});

t.test('camera add writes the camera (streams, onvif, mode 600, comments kept); the same id again is refused', async (t) => {
  const r = await edgepatrol(
    'camera',
    'add',
    host,
    '--user',
    'tech',
    '--password-file',
    pwFile,
    '--id',
    'dome',
    '--name',
    'North gate dome',
    '--config',
    config,
    '--json',
  );
  t.equal(r.code, 0, r.err);
  t.notMatch(r.out + r.err, new RegExp(PASSWORD), 'the password is neither printed nor logged');
  const result = JSON.parse(r.out) as {
    camera: { detect: { token: string; width: number }; evidence: { token: string; width: number }; ptz: boolean };
    clockOffsetSeconds: number;
  };
  t.ok(result.camera.detect.width < result.camera.evidence.width, 'the smaller stream for detection, the larger for evidence');
  t.equal(result.camera.ptz, true, 'PTZ found');
  t.ok(Math.abs(result.clockOffsetSeconds + 3600) < 5, `the camera's clock offset: ${result.clockOffsetSeconds} s`);

  const text = readFileSync(config, 'utf8');
  t.ok(text.startsWith(header), 'the comment at the top is kept');
  t.equal(statSync(config).mode & 0o777, 0o600, 'mode 600: it holds passwords');
  const cam = (parse(text) as { cameras: { source: { url: string; detectUrl: string } }[] }).cameras[0]!;
  t.match(cam, {
    id: 'dome',
    name: 'North gate dome',
    onvif: { url: sim.xaddr, user: 'tech', password: PASSWORD, profile: result.camera.detect.token },
  });
  t.equal(cam.source.url, rtsp.url('dome').replace('rtsp://', `rtsp://tech:${PASSWORD}@`), 'evidence from the main stream, with the login');
  t.equal(cam.source.detectUrl, rtsp.url('dome-sub').replace('rtsp://', `rtsp://tech:${PASSWORD}@`), 'detection on the sub-stream');

  const again = await edgepatrol('camera', 'add', host, '--user', 'tech', '--password-file', pwFile, '--id', 'dome', '--config', config);
  t.equal(again.code, 1);
  t.match(again.err, /camera 'dome' already exists in .*gateway\.yaml; choose another --id or remove it first/);
  t.equal(readFileSync(config, 'utf8'), text, 'the config is unchanged');

  const list = await edgepatrol('camera', 'list', '--config', config);
  t.match(list.out, /^dome +North gate dome +rtsp 127\.0\.0\.1:\d+ /m, 'camera list shows it');
  t.notMatch(list.out, new RegExp(PASSWORD));
});

t.test('camera test, presets, goto: a frame, a rate, the detector; presets listed; a move waited for', async (t) => {
  const test = await edgepatrol('camera', 'test', 'dome', '--config', config, '--seconds', '2', '--json');
  t.equal(test.code, 0, test.err);
  const r = JSON.parse(test.out) as {
    onvif: { clockOffsetSeconds: number };
    firstFrameMs: number;
    width: number;
    height: number;
    fps: number;
    detector: { model: string };
  };
  t.ok(r.firstFrameMs > 0 && r.width > 0 && r.height > 0, `first frame after ${r.firstFrameMs} ms, ${r.width}×${r.height}`);
  t.ok(r.fps > 1, `${r.fps} fps measured`);
  t.equal(r.detector.model, 'nanodet-m-int8', 'the default model ran on the frame');
  t.ok(Math.abs(r.onvif.clockOffsetSeconds + 3600) < 5, 'logged in over ONVIF with the skewed clock');

  const presets = await edgepatrol('camera', 'presets', 'dome', '--config', config, '--json');
  t.equal(presets.code, 0, presets.err);
  const list = JSON.parse(presets.out) as { presets: { token: string; name: string; configured: boolean }[] };
  t.same(
    list.presets.map((p) => p.name),
    sim.state.presets.map((p) => p.name),
    'the presets the camera stores, in its order',
  );
  t.ok(
    list.presets.every((p) => !p.configured),
    'none has zones in the config yet',
  );

  const target = list.presets[1]!;
  const go = await edgepatrol('camera', 'goto', 'dome', target.name, '--config', config, '--json');
  t.equal(go.code, 0, go.err);
  t.match(JSON.parse(go.out), { preset: { token: target.token, name: target.name }, arrived: true, by: 'move-status' });
  t.equal(sim.state.preset, target.token, 'the simulated head is at the preset');

  const unknown = await edgepatrol('camera', 'goto', 'dome', 'Nowhere', '--config', config);
  t.equal(unknown.code, 1);
  t.match(unknown.err, /camera dome has no preset 'Nowhere' \(presets: .*Gate.*; or home\)/);

  const noCam = await edgepatrol('camera', 'presets', 'gate-9', '--config', config);
  t.equal(noCam.code, 1);
  t.match(noCam.err, /no camera 'gate-9' in .*gateway\.yaml \(cameras: dome\)/);
});

t.test('camera add and test against another stack: other prefixes, HTTP Digest only, no PTZ, a clock in 1970', async (t) => {
  const other = await startOnvifSim({
    user: 'operator',
    password: PASSWORD,
    auth: 'digest',
    flavor: 'alt-prefixes',
    ptz: false,
    clockSkewSeconds: -Math.floor(Date.now() / 1000) + 86_400,
    streamUrl: rtsp.url('dome'),
    discovery: false,
  });
  t.teardown(() => other.stop());
  const add = await edgepatrol(
    'camera',
    'add',
    `127.0.0.1:${other.port}`,
    '--user',
    'operator',
    '--password-file',
    pwFile,
    '--id',
    'fixed',
    '--config',
    config,
    '--json',
  );
  t.equal(add.code, 0, add.err);
  t.match(JSON.parse(add.out), { auth: 'digest', camera: { ptz: false } }, 'logged in with HTTP Digest; no PTZ');
  t.ok(JSON.parse(add.out).clockOffsetSeconds < -1e9, 'a camera clock in 1970 is no obstacle');

  const test = await edgepatrol('camera', 'test', 'fixed', '--config', config, '--seconds', '1', '--json');
  t.equal(test.code, 0, test.err);
  t.match(JSON.parse(test.out), { onvif: { auth: 'digest' }, width: Number });

  const presets = await edgepatrol('camera', 'presets', 'fixed', '--config', config);
  t.equal(presets.code, 1);
  t.match(presets.err, /camera 'fixed' \(127\.0\.0\.1:\d+\) has no media profile with PTZ: it cannot be moved/);
});
