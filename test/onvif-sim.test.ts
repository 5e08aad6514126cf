import { type ChildProcessByStdio, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { XMLParser } from 'fast-xml-parser';
import t, { type Test } from 'tap';
import { parseAuthParams } from './fixtures/onvif-sim/auth.js';
import { type OnvifSim, type OnvifSimOptions, startOnvifSim } from './fixtures/onvif-sim/server.js';
import { startRtspServer } from './helpers/rtsp.js';

const here = dirname(fileURLToPath(import.meta.url));
const NS_ENV = 'http://www.w3.org/2003/05/soap-envelope';
const DEVICE = 'http://www.onvif.org/ver10/device/wsdl';
const MEDIA = 'http://www.onvif.org/ver10/media/wsdl';
const PTZ = 'http://www.onvif.org/ver20/ptz/wsdl';
const USER = 'operator';
const PASSWORD = 'p&ss<word>';

// Answers are read without prefixes, as a client should: the alt-prefixes flavor must give the same values.
const reader = new XMLParser({ removeNSPrefix: true, ignoreAttributes: false, attributeNamePrefix: '@', parseTagValue: false });
// biome-ignore lint/suspicious/noExplicitAny: a parsed SOAP answer is navigated by name
type Tree = any;

interface Answer {
  status: number;
  text: string;
  headers: Headers;
  body: Tree;
}

function envelope(body: string, header = ''): string {
  return `<?xml version="1.0" encoding="UTF-8"?><s:Envelope xmlns:s="${NS_ENV}">${header ? `<s:Header>${header}</s:Header>` : ''}<s:Body>${body}</s:Body></s:Envelope>`;
}

/** A WS-Security UsernameToken with PasswordDigest, Created at `created` (a camera-clock time for skewed cameras). */
function usernameToken(user: string, password: string, created: Date, nonce = randomBytes(16)): string {
  const createdText = created.toISOString();
  const digest = createHash('sha1')
    .update(Buffer.concat([nonce, Buffer.from(createdText), Buffer.from(password)]))
    .digest('base64');
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  return (
    '<wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd" ' +
    'xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken>' +
    `<wsse:Username>${esc(user)}</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest">${digest}</wsse:Password>` +
    `<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary">${nonce.toString('base64')}</wsse:Nonce>` +
    `<wsu:Created>${createdText}</wsu:Created></wsse:UsernameToken></wsse:Security>`
  );
}

async function post(url: string, xml: string, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/soap+xml; charset=utf-8', ...headers },
    body: xml,
  });
  const text = await res.text();
  let body: Tree;
  try {
    body = reader.parse(text)?.Envelope?.Body;
  } catch {
    body = undefined;
  }
  return { status: res.status, text, headers: res.headers, body };
}

/** HTTP Digest (RFC 7616, MD5, qop=auth) for one request: asks for a challenge first, as clients do. */
async function digestAuthorization(
  url: string,
  method: string,
  user: string,
  password: string,
  nc = 1,
  challenge?: string,
): Promise<string> {
  let www = challenge;
  if (www === undefined) {
    const first = await fetch(url, {
      method,
      headers: { 'Content-Type': 'application/soap+xml' },
      body: method === 'GET' ? undefined : '',
    });
    await first.arrayBuffer();
    www = first.headers.get('www-authenticate') ?? '';
  }
  const c = parseAuthParams(www.replace(/^Digest\s+/i, ''));
  const md5 = (s: string) => createHash('md5').update(s).digest('hex');
  const { pathname, search } = new URL(url);
  const uri = pathname + search;
  const cnonce = randomBytes(8).toString('hex');
  const ncText = nc.toString(16).padStart(8, '0');
  const response = md5(`${md5(`${user}:${c.realm}:${password}`)}:${c.nonce}:${ncText}:${cnonce}:auth:${md5(`${method}:${uri}`)}`);
  return `Digest username="${user}", realm="${c.realm}", nonce="${c.nonce}", uri="${uri}", qop=auth, nc=${ncText}, cnonce="${cnonce}", response="${response}", opaque="${c.opaque}", algorithm=MD5`;
}

function faultCodes(a: Answer): string[] {
  const codes: string[] = [];
  let node = a.body?.Fault?.Code;
  while (node) {
    codes.push(String(node.Value).replace(/^.*:/, ''));
    node = node.Subcode;
  }
  return codes;
}

const service = (cam: OnvifSim, name: 'device' | 'media' | 'ptz') => cam.xaddr.replace('device_service', `${name}_service`);

async function sim(tt: Test, opts: OnvifSimOptions): Promise<OnvifSim> {
  const cam = await startOnvifSim({ user: USER, password: PASSWORD, discovery: false, ...opts });
  tt.teardown(() => cam.stop());
  return cam;
}

/** Polls GetStatus until `until` holds; returns every status seen. */
async function statuses(cam: OnvifSim, until: (s: Tree) => boolean, timeoutMs = 8000): Promise<Tree[]> {
  const seen: Tree[] = [];
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const a = await post(service(cam, 'ptz'), envelope(`<GetStatus xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GetStatus>`));
    const s = a.body?.GetStatusResponse?.PTZStatus;
    seen.push(s);
    if (until(s)) return seen;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`GetStatus never reached the expected state; last: ${JSON.stringify(seen.at(-1))}`);
}

t.test('GetSystemDateAndTime needs no auth and tells the camera clock (1970 here)', async (t) => {
  const skew = -Math.floor(Date.now() / 1000) + 3600 * 5;
  const cam = await sim(t, { auth: 'both', clockSkewSeconds: skew });
  const a = await post(cam.xaddr, envelope(`<tds:GetSystemDateAndTime xmlns:tds="${DEVICE}"/>`));
  t.equal(a.status, 200);
  const utc = a.body.GetSystemDateAndTimeResponse.SystemDateAndTime.UTCDateTime;
  t.equal(Number(utc.Date.Year), 1970);
  t.equal(Number(utc.Time.Hour), 5);
  const cameraTime = Date.UTC(+utc.Date.Year, +utc.Date.Month - 1, +utc.Date.Day, +utc.Time.Hour, +utc.Time.Minute, +utc.Time.Second);

  const withCameraClock = await post(
    cam.xaddr,
    envelope(`<GetDeviceInformation xmlns="${DEVICE}"/>`, usernameToken(USER, PASSWORD, new Date(cameraTime))),
  );
  t.equal(withCameraClock.status, 200, 'a token Created on the camera clock passes');
  t.equal(withCameraClock.body.GetDeviceInformationResponse.Manufacturer, 'Edgepatrol');
  const withLocalClock = await post(
    cam.xaddr,
    envelope(`<GetDeviceInformation xmlns="${DEVICE}"/>`, usernameToken(USER, PASSWORD, new Date())),
  );
  t.equal(withLocalClock.status, 400, 'a token Created on the local clock is refused');
  t.same(faultCodes(withLocalClock), ['Sender', 'NotAuthorized']);
  t.match(withLocalClock.text, /from the camera(&#39;|')s clock 1970-/);
});

t.test('every operation answers with WS-Security and with HTTP Digest', async (t) => {
  const cam = await sim(t, { auth: 'both' });
  const calls: Array<[string, 'device' | 'media' | 'ptz', string]> = [
    ['GetDeviceInformation', 'device', `<GetDeviceInformation xmlns="${DEVICE}"/>`],
    ['GetCapabilities', 'device', `<GetCapabilities xmlns="${DEVICE}"><Category>All</Category></GetCapabilities>`],
    ['GetServices', 'device', `<GetServices xmlns="${DEVICE}"><IncludeCapability>true</IncludeCapability></GetServices>`],
    ['GetScopes', 'device', `<GetScopes xmlns="${DEVICE}"/>`],
    ['GetProfiles', 'media', `<GetProfiles xmlns="${MEDIA}"/>`],
    [
      'GetStreamUri',
      'media',
      `<GetStreamUri xmlns="${MEDIA}"><StreamSetup><Stream xmlns="http://www.onvif.org/ver10/schema">RTP-Unicast</Stream><Transport xmlns="http://www.onvif.org/ver10/schema"><Protocol>RTSP</Protocol></Transport></StreamSetup><ProfileToken>MainStream</ProfileToken></GetStreamUri>`,
    ],
    ['GetVideoSources', 'media', `<GetVideoSources xmlns="${MEDIA}"/>`],
    ['GetSnapshotUri', 'media', `<GetSnapshotUri xmlns="${MEDIA}"><ProfileToken>SubStream</ProfileToken></GetSnapshotUri>`],
    ['GetPresets', 'ptz', `<GetPresets xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GetPresets>`],
    ['GetStatus', 'ptz', `<GetStatus xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GetStatus>`],
    ['GetNodes', 'ptz', `<GetNodes xmlns="${PTZ}"/>`],
  ];
  const answers: Record<string, Tree> = {};
  for (const [op, svc, body] of calls) {
    const url = service(cam, svc);
    const wsse = await post(url, envelope(body, usernameToken(USER, PASSWORD, new Date())));
    t.equal(wsse.status, 200, `${op} with WS-Security`);
    t.ok(wsse.body?.[`${op}Response`] !== undefined, `${op} answers ${op}Response`);
    const digest = await post(url, envelope(body), { Authorization: await digestAuthorization(url, 'POST', USER, PASSWORD) });
    t.equal(digest.status, 200, `${op} with HTTP Digest`);
    answers[op] = digest.body[`${op}Response`];
  }
  const services = answers.GetServices.Service.map((s: Tree) => [s.Namespace, s.XAddr]);
  t.same(services, [
    [DEVICE, cam.xaddr],
    [MEDIA, service(cam, 'media')],
    [PTZ, service(cam, 'ptz')],
  ]);
  const ptzCaps = answers.GetServices.Service[2].Capabilities.Capabilities;
  t.equal(ptzCaps['@MoveStatus'], 'true');
  const [main, sub] = answers.GetProfiles.Profiles;
  t.equal(main['@token'], 'MainStream');
  t.same([main.VideoEncoderConfiguration.Encoding, main.VideoEncoderConfiguration.Resolution], ['H264', { Width: '640', Height: '480' }]);
  t.same(sub.VideoEncoderConfiguration.Resolution, { Width: '320', Height: '240' });
  t.equal(main.PTZConfiguration.NodeToken, 'PTZNode_1');
  t.equal(sub.PTZConfiguration, undefined, 'the sub-stream profile has no PTZ');
  t.equal(answers.GetPresets.Preset.length, 3);
  t.match(answers.GetScopes.Scopes.map((s: Tree) => s.ScopeItem).join(' '), /onvif:\/\/www\.onvif\.org\/name\/SimCam/);
  t.equal(answers.GetStreamUri.MediaUri.Uri, 'rtsp://127.0.0.1:554/MainStream');

  const snapshotUri = answers.GetSnapshotUri.MediaUri.Uri as string;
  const unauth = await fetch(snapshotUri);
  t.equal(unauth.status, 401, 'the snapshot needs auth too');
  await unauth.arrayBuffer();
  const jpeg = await fetch(snapshotUri, { headers: { Authorization: await digestAuthorization(snapshotUri, 'GET', USER, PASSWORD) } });
  t.equal(jpeg.headers.get('content-type'), 'image/jpeg');
  const bytes = Buffer.from(await jpeg.arrayBuffer());
  t.same([bytes[0], bytes[1]], [0xff, 0xd8], 'a real JPEG');
  t.ok(bytes.length > 2000);
  t.equal(cam.state.requests.GetProfiles, 2);
});

t.test('wrong credentials, WS-Security-only against a digest camera, replays', async (t) => {
  const cam = await sim(t, { auth: 'both' });
  const body = `<GetDeviceInformation xmlns="${DEVICE}"/>`;
  const wrongWsse = await post(cam.xaddr, envelope(body, usernameToken(USER, 'nope', new Date())));
  t.equal(wrongWsse.status, 400);
  t.same(faultCodes(wrongWsse), ['Sender', 'NotAuthorized']);
  t.notMatch(wrongWsse.text, PASSWORD.replace(/[<>&]/g, ''), 'the password is not echoed');

  const wrongDigest = await post(cam.xaddr, envelope(body), { Authorization: await digestAuthorization(cam.xaddr, 'POST', USER, 'nope') });
  t.equal(wrongDigest.status, 401);
  t.match(wrongDigest.headers.get('www-authenticate') ?? '', /^Digest realm="[^"]+", qop="auth", algorithm=MD5, nonce="/);
  t.same(faultCodes(wrongDigest), ['Sender', 'NotAuthorized']);

  const none = await post(cam.xaddr, envelope(body));
  t.equal(none.status, 401, 'no credentials: a digest challenge');

  const nonce = randomBytes(16);
  const created = new Date();
  const first = await post(cam.xaddr, envelope(body, usernameToken(USER, PASSWORD, created, nonce)));
  const replay = await post(cam.xaddr, envelope(body, usernameToken(USER, PASSWORD, created, nonce)));
  t.equal(first.status, 200);
  t.equal(replay.status, 400, 'a UsernameToken nonce is accepted once');
  t.match(replay.text, /replay/);

  const first401 = await fetch(cam.xaddr, { method: 'POST', body: '' });
  await first401.arrayBuffer();
  const challenge = first401.headers.get('www-authenticate') ?? '';
  const auth1 = await digestAuthorization(cam.xaddr, 'POST', USER, PASSWORD, 1, challenge);
  t.equal((await post(cam.xaddr, envelope(body), { Authorization: auth1 })).status, 200);
  t.equal((await post(cam.xaddr, envelope(body), { Authorization: auth1 })).status, 401, 'a digest nonce count is accepted once');
  const auth2 = await digestAuthorization(cam.xaddr, 'POST', USER, PASSWORD, 2, challenge);
  t.equal((await post(cam.xaddr, envelope(body), { Authorization: auth2 })).status, 200, 'the next nonce count passes');

  cam.setPassword('rotated');
  t.equal((await post(cam.xaddr, envelope(body, usernameToken(USER, PASSWORD, new Date())))).status, 400, 'old password after setPassword');
  t.equal((await post(cam.xaddr, envelope(body, usernameToken(USER, 'rotated', new Date())))).status, 200);
  t.ok(cam.state.authFailures >= 5);

  const digestOnly = await sim(t, { auth: 'digest' });
  const wsseOnly = await post(digestOnly.xaddr, envelope(body, usernameToken(USER, PASSWORD, new Date())));
  t.equal(wsseOnly.status, 401, 'a digest-only camera refuses a good UsernameToken');
  const viaDigest = await post(digestOnly.xaddr, envelope(body), {
    Authorization: await digestAuthorization(digestOnly.xaddr, 'POST', USER, PASSWORD),
  });
  t.equal(viaDigest.status, 200);

  const shortNonces = await sim(t, { auth: 'digest', digestNonceLifetimeMs: 300 });
  const early = await fetch(shortNonces.xaddr, { method: 'POST', body: '' });
  await early.arrayBuffer();
  const oldChallenge = early.headers.get('www-authenticate') ?? '';
  await new Promise((r) => setTimeout(r, 400));
  const stale = await post(shortNonces.xaddr, envelope(body), {
    Authorization: await digestAuthorization(shortNonces.xaddr, 'POST', USER, PASSWORD, 1, oldChallenge),
  });
  t.equal(stale.status, 401);
  t.match(stale.headers.get('www-authenticate') ?? '', /, stale=true$/, 'an expired nonce with the right password: stale=true');
  const fresh = await post(shortNonces.xaddr, envelope(body), {
    Authorization: await digestAuthorization(shortNonces.xaddr, 'POST', USER, PASSWORD, 1, stale.headers.get('www-authenticate') ?? ''),
  });
  t.equal(fresh.status, 200, 'the new nonce passes');

  const wsseCam = await sim(t, { auth: 'wsse' });
  const digestAgainstWsse = await post(wsseCam.xaddr, envelope(body), {
    Authorization: await digestAuthorization(wsseCam.xaddr, 'POST', USER, PASSWORD, 1, challenge),
  });
  t.equal(digestAgainstWsse.status, 400, 'a WS-Security camera ignores HTTP Digest');
});

t.test('PTZ: GotoPreset moves for a while, then rests at the preset; faults', async (t) => {
  const cam = await sim(t, { auth: 'none', move: { baseMs: 600, msPerUnit: 400 } });
  const ptz = service(cam, 'ptz');
  const started = Date.now();
  const go = await post(
    ptz,
    envelope(`<GotoPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>2</PresetToken></GotoPreset>`),
  );
  t.equal(go.status, 200);
  t.ok(Date.now() - started < 300, 'GotoPreset returns at once');
  t.equal(cam.state.moving, true);

  const setWhileMoving = await post(
    ptz,
    envelope(`<SetPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetName>x</PresetName></SetPreset>`),
  );
  t.equal(setWhileMoving.status, 500);
  t.same(faultCodes(setWhileMoving), ['Receiver', 'Action', 'MovingPTZ']);

  const seen = await statuses(cam, (s) => s.MoveStatus.PanTilt === 'IDLE');
  const moving = seen.filter((s) => s.MoveStatus.PanTilt === 'MOVING');
  t.ok(moving.length >= 3, `MOVING reported while it moves (${moving.length} polls)`);
  const pans = moving.map((s) => Number(s.Position.PanTilt['@x']));
  t.ok(
    pans.some((x) => x > 0 && x < 0.8),
    `the position interpolates between home (0) and the preset (0.8): ${pans.join(' ')}`,
  );
  const idle = seen.at(-1);
  t.same([idle.Position.PanTilt['@x'], idle.Position.PanTilt['@y'], idle.Position.Zoom['@x']], ['0.8', '-0.6', '0.3']);
  const took = Date.now() - started;
  const expected = 600 + 400 * Math.hypot(0.8, 0.6, 0.3);
  t.ok(took >= expected - 50 && took < expected + 1500, `the move took ${took} ms (expected ≈${Math.round(expected)})`);
  t.equal(cam.state.preset, '2');

  const set = await post(
    ptz,
    envelope(`<SetPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetName>Here</PresetName></SetPreset>`),
  );
  t.equal(set.body.SetPresetResponse.PresetToken, '4');
  t.same(cam.state.presets.at(-1), { token: '4', name: 'Here', pan: 0.8, tilt: -0.6, zoom: 0.3 });
  const dup = await post(
    ptz,
    envelope(`<SetPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetName>Gate</PresetName></SetPreset>`),
  );
  t.same(faultCodes(dup), ['Sender', 'InvalidArgVal', 'PresetExist']);
  const removed = await post(
    ptz,
    envelope(`<RemovePreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>4</PresetToken></RemovePreset>`),
  );
  t.equal(removed.status, 200);

  const noToken = await post(
    ptz,
    envelope(`<GotoPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>99</PresetToken></GotoPreset>`),
  );
  t.equal(noToken.status, 400);
  t.same(faultCodes(noToken), ['Sender', 'InvalidArgVal', 'NoToken']);
  const noPtzProfile = await post(ptz, envelope(`<GetStatus xmlns="${PTZ}"><ProfileToken>SubStream</ProfileToken></GetStatus>`));
  t.same(faultCodes(noPtzProfile), ['Sender', 'InvalidArgVal', 'NoPTZProfile']);
  const noProfile = await post(ptz, envelope(`<GetPresets xmlns="${PTZ}"><ProfileToken>Nope</ProfileToken></GetPresets>`));
  t.same(faultCodes(noProfile), ['Sender', 'InvalidArgVal', 'NoProfile']);

  await post(ptz, envelope(`<GotoPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>1</PresetToken></GotoPreset>`));
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await post(ptz, envelope(`<Stop xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></Stop>`))).status, 200);
  const halted = (await statuses(cam, () => true)).at(-1);
  const haltedPan = Number(halted.Position.PanTilt['@x']);
  t.equal(halted.MoveStatus.PanTilt, 'IDLE', 'Stop ends the move');
  t.ok(haltedPan < 0.8 && haltedPan > -0.8, `and leaves the head on the way (pan ${haltedPan})`);
  t.equal(cam.state.preset, null);

  const home = await post(ptz, envelope(`<GotoHomePosition xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GotoHomePosition>`));
  t.equal(home.status, 200);
  const back = await statuses(cam, (s) => s.MoveStatus.PanTilt === 'IDLE');
  t.same(back.at(-1).Position.PanTilt['@x'], '0');
  t.equal(cam.state.preset, null);
});

t.test('cameras without PTZ, without MoveStatus, without Position', async (t) => {
  const noPtz = await sim(t, { auth: 'none', ptz: false });
  const a = await post(service(noPtz, 'ptz'), envelope(`<GetPresets xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GetPresets>`));
  t.equal(a.status, 500);
  t.same(faultCodes(a), ['Receiver', 'ActionNotSupported', 'PTZNotSupported']);
  const services = await post(
    noPtz.xaddr,
    envelope(`<GetServices xmlns="${DEVICE}"><IncludeCapability>false</IncludeCapability></GetServices>`),
  );
  t.same(
    services.body.GetServicesResponse.Service.map((s: Tree) => s.Namespace),
    [DEVICE, MEDIA],
  );
  const profiles = await post(service(noPtz, 'media'), envelope(`<GetProfiles xmlns="${MEDIA}"/>`));
  t.equal(profiles.body.GetProfilesResponse.Profiles[0].PTZConfiguration, undefined);

  const bare = await sim(t, { auth: 'none', status: { moveStatus: false, position: false } });
  const status = await post(
    service(bare, 'ptz'),
    envelope(`<GetStatus xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken></GetStatus>`),
  );
  t.same(Object.keys(status.body.GetStatusResponse.PTZStatus), ['UtcTime'], 'only UtcTime');
  const caps = await post(service(bare, 'ptz'), envelope(`<GetServiceCapabilities xmlns="${PTZ}"/>`));
  t.equal(caps.body.GetServiceCapabilitiesResponse.Capabilities['@MoveStatus'], 'false');
  t.equal(caps.body.GetServiceCapabilitiesResponse.Capabilities['@StatusPosition'], 'false');
});

t.test('bad requests get faults, never a crash; a slow camera; other prefixes', async (t) => {
  const cam = await sim(t, { auth: 'none' });
  const unknown = await post(cam.xaddr, envelope(`<GetFrobnicator xmlns="${DEVICE}"/>`));
  t.equal(unknown.status, 500);
  t.same(faultCodes(unknown), ['Receiver', 'ActionNotSupported']);
  const malformed = await post(cam.xaddr, '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><a></s:Body>');
  t.equal(malformed.status, 400);
  t.same(faultCodes(malformed), ['Sender', 'WellFormed']);
  const bomb = await post(
    cam.xaddr,
    `<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>${envelope(`<GetScopes xmlns="${DEVICE}">&lol2;</GetScopes>`)}`,
  );
  t.same(faultCodes(bomb), ['Sender', 'WellFormed'], 'a DOCTYPE is refused');
  const soap11 = await post(
    cam.xaddr,
    `<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><GetScopes xmlns="${DEVICE}"/></e:Body></e:Envelope>`,
  );
  t.same(faultCodes(soap11), ['VersionMismatch']);
  const undeclared = await post(cam.xaddr, envelope('<x:GetScopes/>'));
  t.same(faultCodes(undeclared), ['Sender', 'WellFormed']);
  const badSetup = await post(
    service(cam, 'media'),
    envelope(
      `<GetStreamUri xmlns="${MEDIA}"><StreamSetup><Stream>RTP-Multicast</Stream><Transport><Protocol>UDP</Protocol></Transport></StreamSetup><ProfileToken>MainStream</ProfileToken></GetStreamUri>`,
    ),
  );
  t.same(faultCodes(badSetup), ['Sender', 'InvalidArgVal', 'InvalidStreamSetup']);
  const big = await fetch(cam.xaddr, {
    method: 'POST',
    body: envelope(`<GetScopes xmlns="${DEVICE}">${'x'.repeat(1024 * 1024)}</GetScopes>`),
  });
  t.equal(big.status, 413);
  await big.arrayBuffer();
  t.equal((await fetch(cam.xaddr.replace('/onvif/device_service', '/nothing'), { method: 'POST', body: '' })).status, 404);
  t.equal((await post(cam.xaddr, envelope(`<GetScopes xmlns="${DEVICE}"/>`))).status, 200, 'still answering');

  const slow = await sim(t, { auth: 'none', delayMs: 400 });
  const t0 = Date.now();
  t.equal((await post(slow.xaddr, envelope(`<GetSystemDateAndTime xmlns="${DEVICE}"/>`))).status, 200);
  const took = Date.now() - t0;
  t.ok(took >= 390 && took < 1500, `a slow answer took ${took} ms`);

  const alt = await sim(t, { auth: 'none', flavor: 'alt-prefixes' });
  const a = await post(service(alt, 'media'), envelope(`<GetProfiles xmlns="${MEDIA}"/>`));
  t.match(a.text, /^<\?xml[^>]*>\s*<SOAP-ENV:Envelope /);
  t.match(a.text, /<ns2:GetProfilesResponse><ns2:Profiles token="MainStream"/);
  t.equal(a.body.GetProfilesResponse.Profiles[0].VideoEncoderConfiguration.Encoding, 'H264', 'same content under other prefixes');
  const f = await post(alt.xaddr, envelope(`<Nope xmlns="${DEVICE}"/>`));
  t.match(f.text, /<SOAP-ENV:Value>ns9:ActionNotSupported<\/SOAP-ENV:Value>/);
});

/** ffmpeg reading the RTSP stream as 80×60 grey frames, 5 a second, with their arrival times. */
function watch(url: string): { frames: Array<{ at: number; data: Buffer }>; proc: ChildProcessByStdio<null, Readable, Readable> } {
  const size = 80 * 60;
  const proc = spawn(
    'ffmpeg',
    [
      '-loglevel',
      'error',
      '-rtsp_transport',
      'tcp',
      '-i',
      url,
      '-an',
      '-vf',
      'fps=5,scale=80:60',
      '-pix_fmt',
      'gray',
      '-f',
      'rawvideo',
      'pipe:1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const frames: Array<{ at: number; data: Buffer }> = [];
  let pending = Buffer.alloc(0);
  proc.stdout.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= size) {
      frames.push({ at: Date.now(), data: pending.subarray(0, size) });
      pending = pending.subarray(size);
    }
  });
  return { frames, proc };
}

function meanAbsDiff(a: Buffer, b: Buffer): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i]! - b[i]!);
  return sum / a.length;
}

t.test('the RTSP picture changes with the preset; clients stay connected', async (t) => {
  const rtsp = await startRtspServer({ mounts: ['cam1'] });
  t.teardown(() => rtsp.stop());
  const cam = await sim(t, { auth: 'none', rtsp: { server: rtsp, mount: 'cam1' }, move: { baseMs: 1500, msPerUnit: 300 } });
  const home = cam.state.picture;
  t.ok(home, 'the mount plays the home picture from the start');
  const viewer = watch(rtsp.url('cam1'));
  t.teardown(() => viewer.proc.kill('SIGKILL'));
  const waitFrames = async (n: number) => {
    const end = Date.now() + 15_000;
    while (viewer.frames.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    if (viewer.frames.length < n) throw new Error(`only ${viewer.frames.length} frames from the RTSP stream`);
  };
  await waitFrames(8);
  const atHome = viewer.frames.slice(-6);
  // People walk through the scene: the median step between frames at rest is its noise.
  const steps = atHome
    .slice(1)
    .map((f, i) => meanAbsDiff(f.data, atHome[i]!.data))
    .sort((a, b) => a - b);
  const noise = steps[Math.floor(steps.length / 2)]!;

  const before = viewer.frames.length;
  const ptz = service(cam, 'ptz');
  await post(ptz, envelope(`<GotoPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>2</PresetToken></GotoPreset>`));
  await statuses(cam, (s) => s.MoveStatus.PanTilt === 'IDLE');
  await cam.pictureSettled();
  const arrived = viewer.frames.length;
  await waitFrames(arrived + 8);
  const moving = viewer.frames.slice(before + 3, arrived - 1);
  const atPreset = viewer.frames.slice(-4);
  const change = meanAbsDiff(atHome.at(-1)!.data, atPreset.at(-1)!.data);
  t.ok(
    change > 3 * noise && change > 12,
    `preset 2 looks different: mean abs diff ${change.toFixed(1)} vs frame-to-frame ${noise.toFixed(1)} at rest`,
  );
  const sweep = Math.max(...moving.slice(1).map((f, i) => meanAbsDiff(f.data, moving[i]!.data)));
  t.ok(moving.length >= 3 && sweep > noise, `the picture pans while moving (${moving.length} frames, largest step ${sweep.toFixed(1)})`);

  await post(ptz, envelope(`<GotoPreset xmlns="${PTZ}"><ProfileToken>MainStream</ProfileToken><PresetToken>3</PresetToken></GotoPreset>`));
  await statuses(cam, (s) => s.MoveStatus.PanTilt === 'IDLE');
  await cam.pictureSettled();
  const third = viewer.frames.length;
  await waitFrames(third + 6);
  const change3 = meanAbsDiff(atPreset.at(-1)!.data, viewer.frames.at(-1)!.data);
  t.ok(change3 > 3 * noise && change3 > 12, `preset 3 differs from preset 2: ${change3.toFixed(1)}`);

  t.equal(viewer.proc.exitCode, null, 'the viewer never lost the stream');
  const gaps = viewer.frames.slice(1).map((f, i) => f.at - viewer.frames[i]!.at);
  t.ok(Math.max(...gaps) < 1500, `frames kept coming through the switches (largest gap ${Math.max(...gaps)} ms)`);
  t.same(cam.state.pictureErrors, []);

  // A restarted server keeps playing the clip the mount was last switched to.
  const atThird = viewer.frames.at(-1)!.data;
  viewer.proc.kill('SIGKILL');
  await rtsp.restart();
  const again = watch(rtsp.url('cam1'));
  t.teardown(() => again.proc.kill('SIGKILL'));
  const end = Date.now() + 15_000;
  while (again.frames.length < 3 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  const afterRestart = meanAbsDiff(atThird, again.frames.at(-1)!.data);
  t.ok(afterRestart < change3 / 2, `after restart() the mount still shows preset 3 (diff ${afterRestart.toFixed(1)})`);
});

// Multicast does not reach loopback in the default namespace here: the camera and the prober run in a network
// namespace of their own with only lo, multicast on and 224.0.0.0/4 routed to it (shared/notes/infra-facts.md).
const netns = `onvifsim${process.pid}`;
const ipOk = spawnSync('ip', ['netns', 'list']).status === 0 && process.getuid?.() === 0;
t.test(
  'WS-Discovery: multicast and unicast Probes in a network namespace',
  { skip: ipOk ? false : '`ip netns` is not available (needs root and iproute2)' },
  async (t) => {
    t.teardown(() => {
      spawnSync('ip', ['netns', 'delete', netns]);
    });
    const added = spawnSync('ip', ['netns', 'add', netns], { encoding: 'utf8' });
    t.equal(added.status, 0, `ip netns add ${netns} ${added.stderr}`);
    for (const args of [
      ['link', 'set', 'lo', 'up'],
      ['link', 'set', 'lo', 'multicast', 'on'],
      ['route', 'add', '224.0.0.0/4', 'dev', 'lo'],
    ]) {
      const r = spawnSync('ip', ['-n', netns, ...args], { encoding: 'utf8' });
      t.equal(r.status, 0, `ip -n ${netns} ${args.join(' ')} ${r.stderr}`);
    }
    const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^_?TAP/.test(k))), TS_NODE_TRANSPILE_ONLY: '1' };
    const camera = spawn(
      'ip',
      [
        'netns',
        'exec',
        netns,
        process.execPath,
        '--import',
        '@tapjs/typescript/import',
        join(here, 'fixtures', 'onvif-sim', 'main.ts'),
        '--port',
        '8080',
        '--discovery-port',
        '3702',
        '--discovery-delay-ms',
        '100',
        '--name',
        'Gate 4',
        '--location',
        'north',
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], env, cwd: join(here, '..') },
    );
    t.teardown(() => {
      camera.kill('SIGKILL');
    });
    let out = '';
    camera.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const ready = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`simulator not ready in the netns: ${out}`)), 30_000);
      camera.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/READY .*\n/.test(out)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      camera.once('exit', (code) => reject(new Error(`simulator exited (${code}): ${out}`)));
    });
    t.match(ready, /READY port=8080 discovery=3702 multicast=yes xaddr=http:\/\/127\.0\.0\.1:8080\/onvif\/device_service/);

    // The prober: plain JS in the same namespace, one Probe per line of its argument list, answers as JSON.
    const probe = `
    import { createSocket } from 'node:dgram';
    const [dest, ...probes] = JSON.parse(process.argv[1]);
    const s = createSocket('udp4');
    const got = [];
    s.on('message', (m, r) => got.push({ from: r.address + ':' + r.port, xml: m.toString() }));
    s.bind(0, '127.0.0.1', () => {
      for (const p of probes) s.send(p, 3702, dest);
      setTimeout(async () => {
        const res = await fetch('http://127.0.0.1:8080/onvif/device_service', { method: 'POST', headers: { 'Content-Type': 'application/soap+xml' },
          body: '<e:Envelope xmlns:e="${NS_ENV}"><e:Body><GetSystemDateAndTime xmlns="${DEVICE}"/></e:Body></e:Envelope>' });
        console.log(JSON.stringify({ got, http: res.status }));
        s.close();
      }, 1200);
    });`;
    const probeXml = (id: string, types: string, scopes = '') =>
      `<?xml version="1.0" encoding="UTF-8"?><e:Envelope xmlns:e="${NS_ENV}" xmlns:w="http://schemas.xmlsoap.org/ws/2004/08/addressing" ` +
      `xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="${DEVICE}" xmlns:x="urn:other">` +
      `<e:Header><w:MessageID>${id}</w:MessageID><w:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</w:To>` +
      `<w:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</w:Action></e:Header>` +
      `<e:Body><d:Probe><d:Types>${types}</d:Types>${scopes ? `<d:Scopes>${scopes}</d:Scopes>` : ''}</d:Probe></e:Body></e:Envelope>`;
    const runProbe = (dest: string, probes: string[]) => {
      const r = spawnSync(
        'ip',
        ['netns', 'exec', netns, process.execPath, '--input-type=module', '-e', probe, JSON.stringify([dest, ...probes])],
        {
          encoding: 'utf8',
          timeout: 20_000,
        },
      );
      if (r.status !== 0) throw new Error(`prober failed: ${r.stderr}`);
      return JSON.parse(r.stdout) as { got: Array<{ from: string; xml: string }>; http: number };
    };

    const ids = ['urn:uuid:11111111-1111-4111-8111-111111111111', 'urn:uuid:22222222-2222-4222-8222-222222222222'];
    const multicast = runProbe('239.255.255.250', [
      probeXml(ids[0]!, 'dn:NetworkVideoTransmitter'),
      probeXml('urn:uuid:33333333-3333-4333-8333-333333333333', 'x:Printer'),
      probeXml('urn:uuid:44444444-4444-4444-8444-444444444444', 'tds:Device', 'onvif://www.onvif.org/location/south'),
      probeXml(ids[1]!, 'tds:Device', 'onvif://www.onvif.org/location/north onvif://www.onvif.org/name'),
    ]);
    t.equal(multicast.http, 200, 'the XAddr answers inside the namespace');
    const matches = multicast.got.map((g) => ({ from: g.from, env: reader.parse(g.xml).Envelope }));
    t.same(
      matches.map((m) => m.env.Header.RelatesTo).sort(),
      ids,
      'only the two matching probes are answered (not another type, not another location), each once',
    );
    for (const m of matches) {
      t.equal(m.from, '127.0.0.1:3702', 'unicast back from the discovery port');
      t.equal(m.env.Header.Action, 'http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches');
      const match = m.env.Body.ProbeMatches.ProbeMatch;
      t.match(match.EndpointReference.Address, /^urn:uuid:[0-9a-f-]{36}$/);
      t.match(match.Types, /\bdn:NetworkVideoTransmitter\b/);
      t.same(String(match.XAddrs).split(' '), ['http://127.0.0.1:8080/onvif/device_service', 'http://localhost:8080/onvif/device_service']);
      const scopes = String(match.Scopes).split(' ');
      t.ok(scopes.includes('onvif://www.onvif.org/name/Gate%204'), 'name scope');
      t.ok(scopes.includes('onvif://www.onvif.org/location/north'), 'location scope');
      t.ok(
        scopes.some((s) => s.startsWith('onvif://www.onvif.org/hardware/')),
        'hardware scope',
      );
      t.equal(String(match.MetadataVersion), '1');
    }
    t.equal(
      matches[0]?.env.Body.ProbeMatches.ProbeMatch.EndpointReference.Address,
      matches[1]?.env.Body.ProbeMatches.ProbeMatch.EndpointReference.Address,
    );

    const unicast = runProbe('127.0.0.1', [probeXml('urn:uuid:55555555-5555-4555-8555-555555555555', '')]);
    t.equal(unicast.got.length, 1, 'a unicast Probe to the camera is answered');
    t.equal(reader.parse(unicast.got[0]!.xml).Envelope.Header.RelatesTo, 'urn:uuid:55555555-5555-4555-8555-555555555555');

    camera.stdin.end();
    const code = await new Promise<number | null>((resolve) => camera.once('exit', (c) => resolve(c)));
    t.equal(code, 0, 'the simulator stops at the end of its stdin');
  },
);
