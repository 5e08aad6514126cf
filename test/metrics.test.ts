// Prometheus metrics against the real agent (real clip, ffmpeg, model, Mosquitto) with the default components:
// /metrics is scraped and parsed as the text exposition format; the camera, inference, outbox, uplink and event
// series are there and move; a busy port stops the start naming the component; no metrics.listen, no server.
import { createServer, type Server } from 'node:net';
import t from 'tap';
import { Agent } from '../src/agent/index.js';
import { defaultComponents } from '../src/components/index.js';
import { ConfigError, loadConfig, parseConfig } from '../src/config/index.js';
import { createLogger } from '../src/log.js';
import { clipCamera, ffmpegChildren, gatewayConfig, tempDir, until, writeConfig } from './helpers/agent.js';
import { brokerFor } from './helpers/mosquitto.js';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface Scrape {
  samples: Sample[];
  /** # TYPE of each metric family. */
  types: Map<string, string>;
  /** # HELP of each metric family. */
  help: Map<string, string>;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: \d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** The text exposition format (0.0.4): `# HELP`/`# TYPE` comments and `name{label="value",…} value` lines. */
function parseExposition(text: string): Scrape {
  const scrape: Scrape = { samples: [], types: new Map(), help: new Map() };
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const comment = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (comment) {
      (comment[1] === 'TYPE' ? scrape.types : scrape.help).set(comment[2]!, comment[3]!);
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new Error(`not a sample line of the text format: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(LABEL)) labels[k!] = v!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
    if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`not a sample value: ${line}`);
    scrape.samples.push({ name: m[1]!, labels, value });
  }
  return scrape;
}

async function scrape(url: string): Promise<Scrape> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`GET ${url}: ${res.status}`);
  if (!res.headers.get('content-type')?.startsWith('text/plain; version=0.0.4'))
    throw new Error(`content type ${res.headers.get('content-type')}`);
  return parseExposition(await res.text());
}

/** The value of the one sample with this name whose labels include `labels`; undefined when there is none. */
function value(s: Scrape, name: string, labels: Record<string, string> = {}): number | undefined {
  const found = s.samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]?.value;
}

/** A port nothing listens on: the kernel picks one for a listener on port 0, which then closes. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function configFor(dir: string, mqttUrl: string, metrics?: Record<string, unknown>) {
  const raw = gatewayConfig(dir, mqttUrl, [clipCamera('cam-a')]);
  const mqtt = { ...(raw.mqtt as Record<string, unknown>), reconnect: { initialMs: 200, maxMs: 1000 } };
  return loadConfig(writeConfig(dir, { ...raw, mqtt, ...(metrics && { metrics }) }));
}

const silent = createLogger({ level: 'silent' });

t.test('metrics.listen is validated as host:port, with its path; absent means off', async (t) => {
  const base = `gateway: { id: gw-1 }\nmqtt: { url: mqtt://127.0.0.1:1883 }\ncameras:\n  - id: cam-01\n    source: { file: ./clip.avi }\n`;
  t.equal(parseConfig(base, '/srv/gw/gateway.yaml').metrics.listen, undefined, 'off by default');
  for (const good of ['127.0.0.1:9464', 'localhost:9464', '[::1]:9464', '0.0.0.0:1']) {
    t.equal(parseConfig(`${base}metrics: { listen: "${good}" }\n`, '/srv/gw/gateway.yaml').metrics.listen, good, good);
  }
  for (const bad of ['nonsense', '127.0.0.1', ':9464', '127.0.0.1:0', '127.0.0.1:70000', 'http://127.0.0.1:9464']) {
    const err = t.throws(() => parseConfig(`${base}metrics: { listen: "${bad}" }\n`, '/srv/gw/gateway.yaml')) as unknown as ConfigError;
    t.ok(err instanceof ConfigError, `${bad}: a config error`);
    t.match(err.issues, [{ path: 'metrics.listen', message: /expected host:port with a port 1\.\.65535, e\.g\. 127\.0\.0\.1:9464/ }], bad);
  }
});

t.test('/metrics on the running agent: scraped, parsed, and the series move', async (t) => {
  const broker = await brokerFor(t);
  const dir = tempDir('metrics');
  const port = await freePort();
  const config = configFor(dir, broker.url, { listen: `127.0.0.1:${port}` });
  const agent = await Agent.start({ config, log: silent, components: defaultComponents() });
  t.teardown(() => agent.stop());
  const url = `http://127.0.0.1:${port}/metrics`;
  t.ok(process.getActiveResourcesInfo().includes('TCPServerWrap'), 'a listening socket (what the metrics-off test counts)');

  await until('the camera streams and frames are detected', () => {
    const [cam] = agent.cameraStatus();
    return cam?.state === 'streaming' && cam.totals.detected > 0;
  });
  const first = await scrape(url);
  const cam = { camera: 'cam-a' };
  for (const name of ['frames_decoded', 'frames_detected', 'frames_skipped', 'frames_motion']) {
    t.equal(first.types.get(`edgepatrol_camera_${name}_total`), 'counter', `${name}: a counter`);
    t.ok(value(first, `edgepatrol_camera_${name}_total`, cam)! >= 0, `${name}: has a sample for cam-a`);
  }
  t.ok(value(first, 'edgepatrol_camera_frames_detected_total', cam)! > 0, 'frames were detected');
  t.equal(value(first, 'edgepatrol_camera_state', { ...cam, state: 'streaming' }), 1, 'the state gauge: streaming');
  t.equal(value(first, 'edgepatrol_camera_state', { ...cam, state: 'stalled' }), 0, '… and not stalled');
  t.equal(first.types.get('edgepatrol_inference_seconds'), 'histogram', 'inference time: a histogram');
  t.ok(value(first, 'edgepatrol_inference_seconds_count', cam)! > 0, 'inference times observed');
  t.ok(value(first, 'edgepatrol_inference_seconds_sum', cam)! > 0, 'and they take time');
  t.equal(
    value(first, 'edgepatrol_inference_seconds_bucket', { ...cam, le: '+Inf' }),
    value(first, 'edgepatrol_inference_seconds_count', cam),
    'its +Inf bucket holds every observation',
  );
  for (const name of ['outbox_pending', 'outbox_sent', 'outbox_bytes', 'outbox_oldest_pending_age_seconds', 'uplink_in_flight']) {
    t.equal(first.types.get(`edgepatrol_${name}`), 'gauge', `${name}: a gauge`);
    t.ok(value(first, `edgepatrol_${name}`)! >= 0, `${name}: has a value`);
  }
  t.equal(value(first, 'edgepatrol_outbox_dropped_total', { what: 'event' }), 0, 'no event dropped');
  t.equal(value(first, 'edgepatrol_outbox_dropped_total', { what: 'evidence' }), 0, 'no evidence dropped');
  t.equal(value(first, 'edgepatrol_uplink_connected'), 1, 'the uplink is connected');
  t.equal(value(first, 'edgepatrol_uplink_reconnects_total'), 0, 'and has not reconnected');
  t.ok(
    first.samples.every((s) => s.name.startsWith('edgepatrol_')),
    'every name is prefixed edgepatrol_',
  );

  await until('an event stored', () => agent.cameraStatus()[0]!.totals.events > 0, 120_000);
  const detectedBefore = value(first, 'edgepatrol_camera_frames_detected_total', cam)!;
  await until('more frames detected', () => agent.cameraStatus()[0]!.totals.detected > detectedBefore + 1, 60_000);
  const second = await scrape(url);
  for (const name of ['frames_decoded', 'frames_detected']) {
    const n = `edgepatrol_camera_${name}_total`;
    t.ok(value(second, n, cam)! > value(first, n, cam)!, `${name} went up between two scrapes`);
  }
  const inferenceCount = (s: Scrape): number => value(s, 'edgepatrol_inference_seconds_count', cam)!;
  t.ok(inferenceCount(second) > inferenceCount(first), 'more inference times observed');
  const stored = second.samples.filter((s) => s.name === 'edgepatrol_events_total');
  t.match(stored, [{ labels: { camera: 'cam-a', type: 'person_presence', state: /^(started|updated|ended|instant)$/ } }], 'events by type');
  t.ok(
    stored.every((s) => s.value >= 1),
    'each counts at least one event',
  );

  await broker.restart();
  let afterRestart = await scrape(url);
  const end = Date.now() + 30_000;
  while (value(afterRestart, 'edgepatrol_uplink_reconnects_total') !== 1 || value(afterRestart, 'edgepatrol_uplink_connected') !== 1) {
    if (Date.now() > end) throw new Error('no reconnect in the metrics within 30 s of the broker restart');
    await new Promise((r) => setTimeout(r, 200));
    afterRestart = await scrape(url);
  }
  t.pass('a broker restart: one reconnect, connected again');

  const notFound = await fetch(`http://127.0.0.1:${port}/`);
  t.equal(notFound.status, 404, 'only /metrics is served');
  await notFound.text();
  const post = await fetch(url, { method: 'POST' });
  t.equal(post.status, 404, 'and only to GET');
  await post.text();

  await agent.stop();
  await t.rejects(fetch(url), 'the server closed with the agent');
});

t.test('a busy metrics port: Agent.start rejects naming the component and the address', async (t) => {
  const broker = await brokerFor(t);
  const dir = tempDir('metrics-busy');
  const busy: Server = createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise((resolve) => busy.close(resolve)));
  const { port } = busy.address() as { port: number };
  const config = configFor(dir, broker.url, { listen: `127.0.0.1:${port}` });
  await t.rejects(Agent.start({ config, log: silent, components: defaultComponents() }), {
    message: new RegExp(
      `^component metrics failed to start: metrics\\.listen 127\\.0\\.0\\.1:${port}: cannot listen: the address is already in use`,
    ),
  });
  t.same(ffmpegChildren(), [], 'the agent stopped cleanly: no ffmpeg left');
});

t.test('no metrics.listen: the default components serve nothing', async (t) => {
  const broker = await brokerFor(t);
  const dir = tempDir('metrics-off');
  const config = configFor(dir, broker.url);
  t.equal(config.metrics.listen, undefined, 'off when absent');
  const handles = (): number => process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap').length;
  const before = handles();
  const agent = await Agent.start({ config, log: silent, components: defaultComponents() });
  t.teardown(() => agent.stop());
  t.equal(handles(), before, 'no listening socket was opened');
  await agent.stop();
});
