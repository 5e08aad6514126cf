// Issue 16 item 1: the ONVIF client against recorded-style vendor answers on a real loopback HTTP server.
import t from 'tap';
import { createServer } from 'node:net';
import { chooseStreams, OnvifDevice, OnvifError, type Profile } from '../src/onvif/index.js';
import { parseChallenges, pickDigest } from '../src/onvif/auth.js';
import { type CameraBehaviour, ptzCameraAnswers, startAnswerCamera } from './helpers/onvif-answers.js';

const USER = 'admin';
const PASSWORD = 'Secr3t-Pa55';

async function camera(t: Tap.Test, b: Partial<CameraBehaviour> = {}) {
  const cam = await startAnswerCamera({ user: USER, password: PASSWORD, ...b, answers: { ...ptzCameraAnswers(), ...b.answers } });
  t.teardown(() => cam.stop());
  return cam;
}

async function rejection(p: Promise<unknown>): Promise<OnvifError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof OnvifError) return err;
    throw err;
  }
  throw new Error('expected an OnvifError, the call succeeded');
}

t.test('reads the clock without auth, then signs WS-Security in the camera time (a camera stuck in 2000)', async (t) => {
  const start = Date.now();
  const camClock = () => new Date(Date.UTC(2000, 0, 1, 0, 0, 0) + (Date.now() - start));
  const cam = await camera(t, { clock: camClock, answers: { GetSystemDateAndTime: 'GetSystemDateAndTime.soap11.xml' } });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  const info = await dev.getDeviceInformation();
  t.same(info, {
    manufacturer: 'AXIS',
    model: 'P5655-E PTZ Dome Network Camera',
    firmwareVersion: '10.12.114',
    serialNumber: 'B8A44F3A1C2D',
    hardwareId: '7F3',
  });
  t.same(
    cam.requests.map((r) => [r.action, r.auth, r.verified]),
    [
      ['GetSystemDateAndTime', 'none', false],
      ['GetDeviceInformation', 'wsse', true],
    ],
  );
  t.match(cam.requests[1]!.created, /^2000-01-01T00:00:0\dZ$/, 'Created is in the camera clock');
  t.ok(dev.clockOffsetMs! < -8e11, 'offset is ~26 years');
  t.equal(dev.authMode, 'wsse');
  t.notOk(
    cam.requests.some((r) => r.body.includes(PASSWORD)),
    'the password never travels',
  );
});

t.test('re-reads the clock and retries once when the camera clock jumped (reboot)', async (t) => {
  let offset = 0;
  const cam = await camera(t, { clock: () => new Date(Date.now() + offset) });
  const dev = new OnvifDevice({ address: `127.0.0.1:${cam.port}`, user: USER, password: PASSWORD });
  await dev.getDeviceInformation();
  offset = -3600_000 * 24 * 400; // rebooted to an old date
  await dev.getDeviceInformation();
  t.same(
    cam.requests.map((r) => r.action),
    ['GetSystemDateAndTime', 'GetDeviceInformation', 'GetDeviceInformation', 'GetSystemDateAndTime', 'GetDeviceInformation'],
  );
  t.same(
    cam.requests.filter((r) => r.action === 'GetDeviceInformation').map((r) => r.verified),
    [true, false, true],
  );
});

t.test('a camera that protects even GetSystemDateAndTime is asked again with credentials', async (t) => {
  const cam = await camera(t, { protectClock: true });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  t.equal((await dev.getDeviceInformation()).manufacturer, 'AXIS');
  t.same(
    cam.requests.map((r) => [r.action, r.auth, r.verified]),
    [
      ['GetSystemDateAndTime', 'none', false],
      ['GetSystemDateAndTime', 'wsse', true],
      ['GetDeviceInformation', 'wsse', true],
    ],
  );
});

t.test('a wrong password is an auth error naming the camera, without the password', async (t) => {
  const cam = await camera(t);
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: 'wrong-pass-771' });
  const err = await rejection(dev.getDeviceInformation());
  t.equal(err.kind, 'auth');
  t.match(err.message, `authentication failed for camera 127.0.0.1:${cam.port}`);
  t.match(err.message, /check --user\/--password-file/);
  t.notMatch(err.message, /wrong-pass-771/);
  t.equal(err.fault?.subcodes[0], 'NotAuthorized');
});

for (const algs of [['MD5'], ['SHA-256', 'MD5']] as const) {
  t.test(`digest-only camera (${algs.join(', ')}): 401 challenge, nc counting, remembered`, async (t) => {
    const cam = await camera(t, { auth: 'digest', digestAlgorithms: [...algs] });
    const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
    await dev.getDeviceInformation();
    const profiles = await dev.getProfiles();
    t.equal(profiles.length, 2);
    t.equal(dev.authMode, 'digest');
    const digestReqs = cam.requests.filter((r) => r.auth === 'digest');
    t.ok(digestReqs.length >= 3, 'device info, services, profiles');
    t.ok(
      digestReqs.every((r) => r.verified),
      'every digest verified by the camera',
    );
    t.same(
      digestReqs.map((r) => r.nc),
      digestReqs.map((_, i) => (i + 1).toString(16).padStart(8, '0')),
      'nc counts up on one nonce',
    );
    const challenged = cam.requests.filter((r) => r.auth !== 'digest' && r.action !== 'GetSystemDateAndTime');
    t.equal(challenged.length, 1, 'only the first protected call is challenged');
    t.notOk(
      cam.requests.some((r) => r.scheme === 'Basic'),
      'never Basic',
    );
  });
}

t.test('a stale nonce is renewed once (stale=true)', async (t) => {
  const cam = await camera(t, { auth: 'digest', nonceUses: 1 });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  await dev.getDeviceInformation();
  await dev.getDeviceInformation();
  await dev.getDeviceInformation();
  t.equal(cam.requests.filter((r) => r.auth === 'digest' && r.verified).length, 3);
});

t.test('a camera that refuses WS-Security with a fault falls back to digest', async (t) => {
  const cam = await camera(t, { auth: 'either', maxSkewSeconds: -1 });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  t.equal((await dev.getDeviceInformation()).manufacturer, 'AXIS');
  t.equal(dev.authMode, 'digest');
  await dev.getDeviceInformation();
  t.equal(cam.requests.at(-1)!.auth, 'digest', 'remembered: the next call goes straight to digest');
  t.equal(cam.requests.filter((r) => r.auth === 'wsse').length, 2, 'wsse tried twice (once after a clock re-read), then no more');
});

t.test('a camera that offers only Basic over http is refused, and no Basic header is ever sent', async (t) => {
  const cam = await camera(t, {
    auth: 'none',
    answers: { GetDeviceInformation: { status: 401, body: 'no', headers: { 'WWW-Authenticate': 'Basic realm="cam"' } } },
  });
  const err = await rejection(new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD }).getDeviceInformation());
  t.equal(err.kind, 'unsupported');
  t.match(err.message, /only Basic/);
  t.notOk(cam.requests.some((r) => r.scheme === 'Basic'));
});

t.test('services: GetServices with foreign host rebased to the address we used, ports and paths kept', async (t) => {
  const cam = await camera(t);
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  const s = await dev.services();
  const base = `http://127.0.0.1:${cam.port}/onvif`;
  t.same(s, {
    device: `${base}/device_service`,
    media: `${base}/media_service`,
    media2: `${base}/media2_service`,
    events: `${base}/event_service`,
    ptz: `${base}/ptz_service`,
  });
  await dev.getProfiles();
  t.equal(cam.requests.at(-1)!.path, '/onvif/media_service', 'media calls go to the media XAddr');
});

t.test('services: falls back to GetCapabilities (ns1: prefix, NAT address) when GetServices is not supported', async (t) => {
  const cam = await camera(t, { answers: { GetServices: { status: 400, body: '' } } });
  cam.behaviour.answers.GetServices = 'Fault.action-not-supported.xml';
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  const s = await dev.services();
  t.equal(s.media, `http://127.0.0.1:${cam.port}/onvif/Media`);
  t.equal(s.ptz, `http://127.0.0.1:${cam.port}/onvif/PTZ`);
  t.equal(s.device, `http://127.0.0.1:${cam.port}/onvif/device_service`);
});

t.test('profiles, stream and snapshot URIs from Hikvision- and Dahua-style answers', async (t) => {
  const cam = await camera(t);
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  const hik = await dev.getProfiles();
  t.same(hik, [
    { token: 'Profile_1', name: 'mainStream', encoding: 'H264', width: 2560, height: 1440, ptz: true },
    { token: 'Profile_2', name: 'subStream', encoding: 'H264', width: 640, height: 360, ptz: true },
  ]);
  t.equal(await dev.getStreamUri('Profile_2'), 'rtsp://127.0.0.1:554/Streaming/Channels/101?transportmode=unicast&profile=Profile_1');
  t.match(cam.requests.at(-1)!.body, /<trt:ProfileToken>Profile_2<\/trt:ProfileToken>/);
  t.match(cam.requests.at(-1)!.body, /RTP-Unicast.*RTSP/);
  t.equal(await dev.getSnapshotUri('Profile_1'), 'http://127.0.0.1/images/snapshot.jpg?chn=0&token=abc');
  cam.behaviour.answers.GetStreamUri = 'GetStreamUri.noname-cdata.xml';
  t.equal(
    await dev.getStreamUri('Profile_1'),
    'rtsp://127.0.0.1:554/user=admin_password=_channel=1_stream=1.sdp?real_stream&x=1',
    'CDATA, comments and unknown elements of a no-name stack',
  );
  cam.behaviour.answers.GetProfiles = 'GetProfiles.dahua.xml';
  const dahua = await dev.getProfiles();
  t.same(
    dahua.map((p) => [p.token, p.encoding, p.width, p.ptz]),
    [
      ['MediaProfile000', 'H265', 3840, false],
      ['MediaProfile001', 'H264', 704, false],
      ['MediaProfile002', 'JPEG', 352, false],
      ['MediaProfile003', undefined, undefined, false],
    ],
  );
  const choice = chooseStreams(dahua)!;
  t.equal(choice.detect.token, 'MediaProfile001');
  t.equal(choice.evidence.token, 'MediaProfile000');
});

t.test('PTZ: presets, set, goto with speed, home, status with and without optional parts', async (t) => {
  const cam = await camera(t, { values: { PAN: '0.25', TILT: '-0.5', ZOOM: '0.1', MOVE: 'MOVING' } });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  t.same(await dev.getPresets('Profile_1'), [
    { token: '1', name: 'Gate & crossing', position: { pan: 0.25, tilt: -0.5, zoom: 0.1 } },
    { token: '2', name: 'Car park', position: undefined },
  ]);
  t.equal(await dev.setPreset('Profile_1', { name: 'new <one>' }), '7');
  t.match(cam.requests.at(-1)!.body, /<tptz:PresetName>new &lt;one&gt;<\/tptz:PresetName>/);
  await dev.gotoPreset('Profile_1', '2', { speed: 0.5 });
  t.match(
    cam.requests.at(-1)!.body,
    /<tptz:PresetToken>2<\/tptz:PresetToken><tptz:Speed><tt:PanTilt x="0.5" y="0.5"\/><tt:Zoom x="0.5"\/>/,
  );
  await dev.gotoHomePosition('Profile_1');
  t.equal(cam.requests.at(-1)!.action, 'GotoHomePosition');
  t.same(await dev.getStatus('Profile_1'), {
    moveStatus: { panTilt: 'MOVING', zoom: 'MOVING' },
    position: { pan: 0.25, tilt: -0.5, zoom: 0.1 },
    error: undefined,
  });
  cam.behaviour.answers.GetStatus = 'GetStatus.bare.xml';
  t.same(await dev.getStatus('Profile_1'), { moveStatus: undefined, position: undefined, error: undefined });
  cam.behaviour.answers.GetStatus = 'GetStatus.legacy.xml';
  t.same(await dev.getStatus('Profile_1'), { moveStatus: { panTilt: 'MOVING', zoom: undefined }, position: undefined, error: 'none' });
});

t.test('waitUntilArrived: by MoveStatus, by Position, by time; never before minSettleMs; gives up at the timeout', async (t) => {
  const cam = await camera(t);
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  let polls = 0;
  cam.behaviour.answers.GetStatus = () => {
    polls++;
    cam.behaviour.values = { MOVE: polls < 4 ? 'MOVING' : 'IDLE' };
    return 'GetStatus.full.xml';
  };
  let r = await dev.waitUntilArrived('Profile_1', '1', { minSettleMs: 100, pollMs: 50, timeoutMs: 5000 });
  t.same([r.arrived, r.by], [true, 'move-status']);
  t.equal(polls, 4, 'arrived on the first IDLE');

  polls = 0;
  cam.behaviour.answers.GetStatus = () => {
    polls++;
    cam.behaviour.values = polls < 3 ? { PAN: '0.9', TILT: '0', ZOOM: '0' } : { PAN: '0.2549', TILT: '-0.5', ZOOM: '0.1' };
    return 'GetStatus.position-only.xml';
  };
  r = await dev.waitUntilArrived('Profile_1', '1', { minSettleMs: 0, pollMs: 50, tolerance: 0.01 });
  t.same([r.arrived, r.by, polls], [true, 'position', 3]);

  cam.behaviour.answers.GetStatus = 'GetStatus.bare.xml';
  r = await dev.waitUntilArrived('Profile_1', '1', { minSettleMs: 400, pollMs: 50 });
  t.same([r.arrived, r.by], [true, 'time']);
  t.ok(r.elapsedMs >= 400 && r.elapsedMs < 1500, `by time after minSettleMs (${r.elapsedMs} ms)`);

  cam.behaviour.values = { MOVE: 'MOVING' };
  cam.behaviour.answers.GetStatus = 'GetStatus.full.xml';
  r = await dev.waitUntilArrived('Profile_1', '1', { timeoutMs: 300, pollMs: 50, minSettleMs: 0 });
  t.same([r.arrived, r.by], [false, 'move-status']);
  t.ok(r.elapsedMs < 1000);
});

t.test('faults: Subcode chains and reasons, SOAP 1.1, unsupported actions, missing PTZ', async (t) => {
  const cam = await camera(t, { answers: { GetStreamUri: 'Fault.no-profile.xml' } });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD });
  let err = await rejection(dev.getStreamUri('nope'));
  t.equal(err.kind, 'fault');
  t.same(err.fault, {
    code: 'Sender',
    subcodes: ['InvalidArgVal', 'NoProfile'],
    reason: 'The requested profile token ProfileToken does not exist.',
  });
  t.match(err.message, `camera 127.0.0.1:${cam.port} refused GetStreamUri (Sender/InvalidArgVal/NoProfile`);
  cam.behaviour.answers.GetSnapshotUri = 'Fault.action-not-supported.xml';
  err = await rejection(dev.getSnapshotUri('Profile_1'));
  t.equal(err.kind, 'unsupported');

  const cam11 = await camera(t, { answers: { GetDeviceInformation: 'Fault.soap11-auth.xml' }, auth: 'none' });
  err = await rejection(new OnvifDevice({ address: cam11.url }).getDeviceInformation());
  t.equal(err.kind, 'auth', 'a SOAP 1.1 wsse:FailedAuthentication without a user asks for credentials');

  const fixed = await camera(t, {
    answers: { GetServices: 'Fault.action-not-supported.xml', GetCapabilities: 'GetSystemDateAndTime.hikvision.xml' },
  });
  err = await rejection(new OnvifDevice({ address: fixed.url, user: USER, password: PASSWORD }).getPresets('x'));
  t.equal(err.kind, 'malformed', 'a wrong answer to GetCapabilities is malformed');
  const noPtz = await camera(t, { answers: { GetServices: 'GetServices.hanwha.xml' } });
  noPtz.behaviour.answers.GetServices = {
    body: (await import('./helpers/onvif-answers.js')).fixture('GetServices.hanwha.xml').replace(/ver20\/ptz/g, 'ver20/other'),
  };
  err = await rejection(new OnvifDevice({ address: noPtz.url, user: USER, password: PASSWORD }).gotoPreset('Profile_1', '1'));
  t.equal(err.kind, 'unsupported');
  t.match(err.message, /has no PTZ service/);
});

t.test('timeouts: a camera that never answers fails within the stated time', async (t) => {
  const cam = await camera(t, { answers: { GetSystemDateAndTime: { hang: true } } });
  const dev = new OnvifDevice({ address: cam.url, user: USER, password: PASSWORD, timeoutMs: 1000 });
  const t0 = Date.now();
  const err = await rejection(dev.getDeviceInformation());
  const ms = Date.now() - t0;
  t.equal(err.kind, 'timeout');
  t.equal(err.message, `camera 127.0.0.1:${cam.port} did not answer within 1 s (check the address and that ONVIF is enabled)`);
  t.ok(ms >= 950 && ms < 1500, `failed after ${ms} ms`);

  // A TCP listener that accepts and never speaks HTTP: the default 5 s.
  const silent = createServer(() => {});
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => silent.close());
  const port = (silent.address() as { port: number }).port;
  const t1 = Date.now();
  const err2 = await rejection(new OnvifDevice({ address: `127.0.0.1:${port}` }).getSystemDateAndTime());
  t.equal(err2.kind, 'timeout');
  t.match(err2.message, 'within 5 s');
  t.ok(Date.now() - t1 < 5600);
});

t.test('unreachable, oversize and not-ONVIF answers', async (t) => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise((r) => closed.close(r));
  let err = await rejection(new OnvifDevice({ address: `127.0.0.1:${port}` }).getSystemDateAndTime());
  t.equal(err.kind, 'unreachable');
  t.match(err.message, `camera 127.0.0.1:${port} refused the connection`);

  const cam = await camera(t, { auth: 'none', answers: { GetDeviceInformation: { stream: 'x'.repeat(65536), repeat: 100 } } });
  const t0 = Date.now();
  err = await rejection(new OnvifDevice({ address: cam.url, maxResponseBytes: 1024 * 1024 }).getDeviceInformation());
  t.equal(err.kind, 'malformed');
  t.match(err.message, 'larger than 1048576 bytes');
  t.ok(Date.now() - t0 < 2000);

  cam.behaviour.answers.GetDeviceInformation = { status: 404, body: '<html><body>Not Found</body></html>' };
  err = await rejection(new OnvifDevice({ address: cam.url }).getDeviceInformation());
  t.equal(err.kind, 'malformed');
  t.match(err.message, /did not answer with a SOAP envelope/);

  t.throws(() => new OnvifDevice({ address: 'ftp://cam' }), /not an ONVIF address/);
  t.throws(() => new OnvifDevice({ address: 'http://u:p@cam/onvif/device_service' }), /not inside the address/);
  t.equal(new OnvifDevice({ address: '192.0.2.10' }).url.href, 'http://192.0.2.10/onvif/device_service');
  t.equal(new OnvifDevice({ address: '192.0.2.10:8080' }).camera, '192.0.2.10:8080');
});

t.test('WWW-Authenticate parsing: several challenges, commas in quotes, SHA-256 preferred', async (t) => {
  const c = parseChallenges([
    'Basic realm="a, b"',
    'Digest realm="x, \\"y\\"", nonce="n1", qop="auth,auth-int", algorithm=MD5, Digest realm="x", nonce="n2", algorithm=SHA-256',
  ]);
  t.same(
    c.map((x) => [x.scheme, x.params.realm, x.params.nonce]),
    [
      ['basic', 'a, b', undefined],
      ['digest', 'x, "y"', 'n1'],
      ['digest', 'x', 'n2'],
    ],
  );
  t.equal(pickDigest(c)!.params.nonce, 'n2');
  t.equal(pickDigest(parseChallenges(['Digest realm="x", nonce="n", algorithm=SHA-512-256'])), undefined);
});

t.test('chooseStreams: detection sub-stream and evidence main stream', async (t) => {
  const p = (token: string, encoding: string | undefined, width?: number, height?: number): Profile => ({
    token,
    name: token,
    encoding,
    width,
    height,
    ptz: false,
  });
  t.equal(chooseStreams([]), undefined);
  const one = chooseStreams([p('a', 'H264', 1920, 1080)])!;
  t.same([one.detect.token, one.evidence.token], ['a', 'a']);
  let c = chooseStreams([p('main', 'H264', 1920, 1080), p('sub', 'H264', 640, 480), p('tiny', 'H264', 176, 144)])!;
  t.same([c.detect.token, c.evidence.token], ['sub', 'main'], 'smallest at least 320 wide');
  c = chooseStreams([p('main', 'H265', 2560, 1440), p('sub265', 'H265', 640, 360), p('sub264', 'H264', 704, 576)])!;
  t.same([c.detect.token, c.evidence.token], ['sub264', 'main'], 'H.264 preferred among sub-streams');
  c = chooseStreams([p('main', 'H264', 3840, 2160), p('sub', 'H265', 640, 360)])!;
  t.same([c.detect.token, c.evidence.token], ['sub', 'main'], 'an H.264 main stream does not win detection over an H.265 sub-stream');
  c = chooseStreams([p('mjpeg', 'JPEG', 640, 480), p('h264', 'H264', 1280, 720)])!;
  t.same([c.detect.token, c.evidence.token], ['h264', 'h264'], 'JPEG only when nothing else');
  c = chooseStreams([p('small', 'H264', 176, 144), p('smaller', 'H264', 160, 120)])!;
  t.same([c.detect.token, c.evidence.token], ['small', 'small'], 'all too small: the largest');
  c = chooseStreams([p('unknown', 'H264'), p('known', 'H264', 640, 480)])!;
  t.same([c.detect.token, c.evidence.token], ['known', 'known'], 'unknown size ranks below known');
  c = chooseStreams([p('a', 'MPEG4', 640, 480), p('b', 'JPEG', 1280, 720)])!;
  t.same([c.detect.token, c.evidence.token], ['a', 'b'], 'no H.26x: still a choice');
});
