/**
 * The ONVIF client choice (docs/decisions/0042-onvif-client.md): npm `onvif` 0.8.3, `node-onvif` 0.1.7 and our
 * src/onvif run through the same things on loopback: (a) the 500 seeded mutated answers of the fuzz test, counting
 * crashes (uncaught exceptions, unhandled rejections), hangs (no answer in 10 s), clean errors and results; (b) the
 * vendor-quirk fixtures; (c) whether an external entity or billion laughs is expanded; (d) install size.
 *
 * The two libraries are not dependencies: install them outside the repo first,
 *   mkdir -p /tmp/onvif-eval && cd /tmp/onvif-eval && npm init -y && npm i onvif@0.8.3 node-onvif@0.1.7
 * then `npm run build && node dist/bench/onvif-clients.js [/tmp/onvif-eval] [--clients=ours,onvif,node-onvif] [--no-fuzz]`.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { parse as parseUrl } from 'node:url';
import { OnvifDevice } from '../src/onvif/index.js';
import { type CameraBehaviour, fixture, ptzCameraAnswers, startAnswerCamera } from '../test/helpers/onvif-answers.js';
import { type CorpusCase, corpus, type Op, startCorpusCamera } from '../test/helpers/onvif-corpus.js';
import { mutate, prng } from '../test/helpers/onvif-mutate.js';

const evalDir = resolve(process.argv.slice(2).find((a) => !a.startsWith('--')) ?? '/tmp/onvif-eval');
const req = createRequire(join(evalDir, 'package.json'));
const N = 500;
const CALL_TIMEOUT_MS = 800;
const HANG_MS = 10_000;
const USER = 'admin';
const PASSWORD = 'Secr3t-Pa55';
const passwd = readFileSync('/etc/passwd', 'utf8').split('\n')[0]!;

/** One client under test: how to run an op against a device service URL. */
interface Client {
  name: string;
  op(url: string, op: Op, auth?: { user: string; password: string }): Promise<unknown>;
  /** Connect the way an application would (clock first), then device information. */
  info(url: string, auth?: { user: string; password: string }, opts?: Record<string, unknown>): Promise<unknown>;
  /** Connect and read the first profile's stream URI (follows the camera's service addresses). */
  stream(url: string, auth?: { user: string; password: string }, opts?: Record<string, unknown>): Promise<unknown>;
  /** Stream URI of a profile the camera does not have: the error text. */
  faultText(url: string): Promise<string>;
}

const cb = <T>(fn: (done: (err: unknown, v?: T) => void) => void): Promise<T> =>
  new Promise((res, rej) => fn((err, v) => (err ? rej(err) : res(v as T))));

function ours(): Client {
  const dev = (url: string, a?: { user: string; password: string }) =>
    new OnvifDevice({ address: url, user: a?.user, password: a?.password, timeoutMs: CALL_TIMEOUT_MS });
  return {
    name: 'edgepatrol src/onvif',
    op: (url, op, a) => {
      const d = dev(url, a);
      return {
        GetSystemDateAndTime: () => d.getSystemDateAndTime(),
        GetDeviceInformation: () => d.getDeviceInformation(),
        GetServices: () => d.getServices(),
        GetProfiles: () => d.getProfiles(),
        GetStreamUri: () => d.getStreamUri('Profile_1'),
        GetStatus: () => d.getStatus('Profile_1'),
        GetPresets: () => d.getPresets('Profile_1'),
      }[op]();
    },
    info: (url, a) => dev(url, a).getDeviceInformation(),
    stream: async (url, a) => {
      const d = dev(url, a);
      return d.getStreamUri((await d.getProfiles())[0]!.token);
    },
    faultText: (url) =>
      dev(url)
        .getStreamUri('nope')
        .then(
          () => '',
          (e: Error) => e.message,
        ),
  };
}

function onvifLib(): Client {
  // biome-ignore lint/suspicious/noExplicitAny: an untyped CommonJS library loaded at run time
  const { Cam } = req('onvif') as any;
  const make = (url: string, a?: { user: string; password: string }, opts: Record<string, unknown> = {}) => {
    const u = new URL(url);
    const cam = new Cam({
      hostname: u.hostname,
      port: Number(u.port),
      path: u.pathname,
      username: a?.user,
      password: a?.password,
      timeout: CALL_TIMEOUT_MS,
      autoconnect: false,
      ...opts,
    });
    return cam;
  };
  const connect = async (url: string, a?: { user: string; password: string }, opts: Record<string, unknown> = {}) => {
    const cam = make(url, a, opts);
    await cb((d) => cam.connect(d));
    return cam;
  };
  return {
    name: 'npm onvif 0.8.3',
    op: (url, op, a) => {
      const cam = make(url, a);
      const p = parseUrl(url);
      cam.uri = { device: p, media: p, ptz: p };
      return cb((d) => {
        switch (op) {
          case 'GetSystemDateAndTime':
            return cam.getSystemDateAndTime(d);
          case 'GetDeviceInformation':
            return cam.getDeviceInformation(d);
          case 'GetServices':
            return cam.getServices(false, d);
          case 'GetProfiles':
            return cam.getProfiles(d);
          case 'GetStreamUri':
            return cam.getStreamUri({ protocol: 'RTSP', profileToken: 'Profile_1' }, d);
          case 'GetStatus':
            return cam.getStatus({ profileToken: 'Profile_1' }, d);
          case 'GetPresets':
            return cam.getPresets({ profileToken: 'Profile_1' }, d);
        }
      });
    },
    info: async (url, a, opts) => {
      const cam = await connect(url, a, opts);
      return cb((d) => cam.getDeviceInformation(d));
    },
    stream: async (url, a, opts) => {
      const cam = await connect(url, a, opts);
      // Profiles read explicitly: connect() also tries Media2 and GetVideoSources, which the answer camera lacks.
      const profiles = await cb<{ $: { token: string } }[]>((d) => cam.getProfiles(d));
      const profileToken = profiles[0]?.$.token;
      return (await cb<{ uri: string }>((d) => cam.getStreamUri({ protocol: 'RTSP', profileToken }, d))).uri;
    },
    faultText: async (url) => {
      const cam = make(url);
      cam.uri = { media: parseUrl(url) };
      return cb((d) => cam.getStreamUri({ protocol: 'RTSP', profileToken: 'nope' }, d)).then(
        () => '',
        (e: Error) => e.message,
      );
    },
  };
}

function nodeOnvif(): Client {
  const soap = req('node-onvif/lib/modules/soap.js');
  soap.HTTP_TIMEOUT = CALL_TIMEOUT_MS;
  const Device = req('node-onvif/lib/modules/service-device.js');
  const Media = req('node-onvif/lib/modules/service-media.js');
  const Ptz = req('node-onvif/lib/modules/service-ptz.js');
  const OnvifDevice2 = req('node-onvif').OnvifDevice;
  const p = (url: string, a?: { user: string; password: string }) => ({
    xaddr: url,
    user: a?.user ?? '',
    pass: a?.password ?? '',
    time_diff: 0,
  });
  return {
    name: 'npm node-onvif 0.1.7',
    op: (url, op, a) => {
      switch (op) {
        case 'GetSystemDateAndTime':
          return new Device(p(url, a)).getSystemDateAndTime();
        case 'GetDeviceInformation':
          return new Device(p(url, a)).getDeviceInformation();
        case 'GetServices':
          return new Device(p(url, a)).getServices({ IncludeCapability: false });
        case 'GetProfiles':
          return new Media(p(url, a)).getProfiles();
        case 'GetStreamUri':
          return new Media(p(url, a)).getStreamUri({ ProfileToken: 'Profile_1', Protocol: 'RTSP' });
        case 'GetStatus':
          return new Ptz(p(url, a)).getStatus({ ProfileToken: 'Profile_1' });
        case 'GetPresets':
          return new Ptz(p(url, a)).getPresets({ ProfileToken: 'Profile_1' });
      }
    },
    info: async (url, a) => {
      const d = new OnvifDevice2({ xaddr: url, user: a?.user, pass: a?.password });
      return d.init();
    },
    stream: async (url, a) => {
      const d = new OnvifDevice2({ xaddr: url, user: a?.user, pass: a?.password });
      await d.init();
      return d.getCurrentProfile()?.stream?.rtsp;
    },
    faultText: (url) =>
      new Media(p(url)).getStreamUri({ ProfileToken: 'nope', Protocol: 'RTSP' }).then(
        () => '',
        (e: Error) => e.message,
      ),
  };
}

const crashes: unknown[] = [];
process.on('uncaughtException', (e) => crashes.push(e));
process.on('unhandledRejection', (e) => crashes.push(e));

async function within<T>(p: Promise<T>, ms: number): Promise<{ v: T } | { e: unknown } | 'hang'> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((r) => {
    timer = setTimeout(() => r('hang'), ms);
  });
  try {
    return await Promise.race([
      p.then(
        (v) => ({ v }),
        (e: unknown) => ({ e }),
      ),
      hang,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const expanded = (x: unknown): boolean => {
  const s = x instanceof Error ? x.message : (JSON.stringify(x) ?? '');
  return s.includes(passwd) || /(lol){20}/.test(s);
};

async function fuzz(client: Client): Promise<Record<string, unknown>> {
  let cases: CorpusCase[] = [];
  const cam = await startCorpusCamera(() => cases);
  cases = corpus(N, cam.port);
  const c0 = crashes.length;
  const out = { results: 0, cleanErrors: 0, crashes: 0, hangs: 0, expanded: 0 };
  const hangKinds: Record<string, number> = {};
  const queue = [...cases];
  await Promise.all(
    Array.from({ length: 50 }, async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        let r: Awaited<ReturnType<typeof within>>;
        try {
          r = await within(
            Promise.resolve().then(() =>
              client.op(`http://127.0.0.1:${cam.port}/m/${c.index}/onvif/device_service`, c.op, { user: USER, password: PASSWORD }),
            ),
            HANG_MS,
          );
        } catch (e) {
          r = { e };
        }
        if (r === 'hang') {
          out.hangs++;
          hangKinds[c.kind] = (hangKinds[c.kind] ?? 0) + 1;
        } else if ('e' in r) {
          out.cleanErrors++;
          if (expanded(r.e)) out.expanded++;
        } else {
          out.results++;
          if (expanded(r.v)) out.expanded++;
        }
      }
    }),
  );
  await new Promise((r) => setTimeout(r, 500));
  out.crashes = crashes.length - c0;
  await cam.stop();
  return { ...out, hangKinds };
}

async function quirk(
  name: string,
  b: Partial<CameraBehaviour>,
  run: (url: string) => Promise<unknown>,
  ok: (v: unknown) => boolean,
): Promise<string> {
  // Only the NAT quirk advertises unreachable service addresses; the others isolate their own quirk.
  const reachable = (file: string) => () => ({
    body: fixture(file)
      .replace(/\{\{PORT\}\}/g, String(cam.port))
      .replace(/10\.0\.0\.64|192\.168\.1\.100/g, '127.0.0.1'),
  });
  const direct: CameraBehaviour['answers'] = name.startsWith('nat')
    ? {}
    : { GetCapabilities: reachable('GetCapabilities.nat.xml'), GetServices: reachable('GetServices.hanwha.xml') };
  const cam = await startAnswerCamera({
    user: USER,
    password: PASSWORD,
    ...b,
    answers: { ...ptzCameraAnswers(), ...direct, ...b.answers },
  });
  try {
    const r = await within(
      Promise.resolve().then(() => run(cam.url)),
      HANG_MS,
    );
    if (r === 'hang') return 'hang';
    if ('e' in r) return `error: ${String((r.e as Error)?.message ?? r.e).slice(0, 160)}`;
    return ok(r.v) ? (name.startsWith('nat') ? `ok (${r.v})` : 'ok') : `wrong: ${JSON.stringify(r.v).slice(0, 90)}`;
  } finally {
    await cam.stop();
  }
}

async function quirks(client: Client): Promise<Record<string, string>> {
  const auth = { user: USER, password: PASSWORD };
  const start = Date.now();
  const mfr = (want: string) => (v: unknown) => JSON.stringify(v).includes(want);
  const lib = client.name.includes('npm onvif');
  return {
    'SOAP 1.1, default namespaces': await quirk(
      'soap11',
      { answers: { GetSystemDateAndTime: 'GetSystemDateAndTime.soap11.xml', GetDeviceInformation: 'GetDeviceInformation.dahua.xml' } },
      (u) => client.info(u, auth),
      mfr('Dahua'),
    ),
    'fault Subcode chain (NoProfile)': await quirk(
      'fault',
      { auth: 'none', answers: { GetStreamUri: 'Fault.no-profile.xml' } },
      (u) => client.faultText(u),
      (v) => /NoProfile/.test(String(v)),
    ),
    'NAT XAddrs (other host in GetServices/GetCapabilities)': await quirk(
      'nat',
      {},
      (u) => client.stream(u, auth),
      (v) => String(v).startsWith('rtsp://'),
    ),
    ...(lib
      ? {
          'NAT XAddrs with preserveAddress': await quirk(
            'nat2',
            {},
            (u) => client.stream(u, auth, { preserveAddress: true }),
            (v) => String(v).startsWith('rtsp://'),
          ),
        }
      : {}),
    'digest-only camera': await quirk('digest', { auth: 'digest' }, (u) => client.info(u, auth), mfr('AXIS')),
    ...(lib
      ? {
          'digest-only with useWSSecurity:false': await quirk(
            'digest2',
            { auth: 'digest' },
            (u) => client.info(u, auth, { useWSSecurity: false }),
            mfr('AXIS'),
          ),
        }
      : {}),
    'camera clock in 2000-01-01': await quirk(
      'clock',
      { clock: () => new Date(Date.UTC(2000, 0, 1) + Date.now() - start) },
      (u) => client.info(u, auth),
      mfr('AXIS'),
    ),
  };
}

async function entities(client: Client): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const good = fixture('GetDeviceInformation.dahua.xml');
  for (const kind of ['xxe', 'billion-laughs'] as const) {
    const body = (mutate(good, prng(1), kind).reply as { body: string }).body;
    const cam = await startAnswerCamera({ auth: 'none', answers: { ...ptzCameraAnswers(), GetDeviceInformation: { body } } });
    const t0 = Date.now();
    const r = await within(
      Promise.resolve().then(() => client.op(cam.url, 'GetDeviceInformation')),
      HANG_MS,
    );
    await cam.stop();
    const what =
      r === 'hang'
        ? 'hang'
        : 'e' in r
          ? expanded(r.e)
            ? 'EXPANDED (in error)'
            : 'refused/error'
          : expanded(r.v)
            ? 'EXPANDED'
            : 'not expanded';
    out[kind] = `${what}, ${Date.now() - t0} ms`;
  }
  return out;
}

/** Bytes on disk and package count of a package and everything it depends on, from a node_modules folder. */
function installSize(nodeModules: string, name: string): { packages: number; kib: number } {
  const seen = new Set<string>();
  const walk = (n: string): void => {
    if (seen.has(n)) return;
    seen.add(n);
    const pkg = JSON.parse(readFileSync(join(nodeModules, n, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const d of Object.keys(pkg.dependencies ?? {})) walk(d);
  };
  walk(name);
  const du = (p: string): number => {
    const s = statSync(p);
    return s.isDirectory() ? readdirSync(p).reduce((a, f) => a + du(join(p, f)), 0) : s.size;
  };
  return { packages: seen.size, kib: Math.round([...seen].reduce((a, n) => a + du(join(nodeModules, n)), 0) / 1024) };
}

const only = (process.argv.find((a) => a.startsWith('--clients='))?.slice(10) ?? 'ours,onvif,node-onvif').split(',');
const skipFuzz = process.argv.includes('--no-fuzz');
const clients = [
  ['ours', ours],
  ['onvif', onvifLib],
  ['node-onvif', nodeOnvif],
] as const;
for (const [key, make] of clients) {
  if (!only.includes(key)) continue;
  const c = make();
  const t0 = Date.now();
  console.log(`\n## ${c.name}`);
  if (!skipFuzz)
    console.log(`fuzz (${N} answers, seed 16): ${JSON.stringify(await fuzz(c))} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  for (const [k, v] of Object.entries(await quirks(c))) console.log(`quirk ${k}: ${v}`);
  for (const [k, v] of Object.entries(await entities(c))) console.log(`entity ${k}: ${v}`);
}
console.log('\n## install (package and its dependencies)');
console.log(`fast-xml-parser 5.12.1 (ours): ${JSON.stringify(installSize(resolve(process.cwd(), 'node_modules'), 'fast-xml-parser'))}`);
console.log(`onvif 0.8.3: ${JSON.stringify(installSize(join(evalDir, 'node_modules'), 'onvif'))}`);
console.log(`node-onvif 0.1.7: ${JSON.stringify(installSize(join(evalDir, 'node_modules'), 'node-onvif'))}`);
process.exit(0);
