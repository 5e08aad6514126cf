// Issue 17, requests: the real agent on the real clip answers request/{verb} over a real Mosquitto, as a central
// client (mqtt.js, MQTT 5 and 3.1.1) sees it; then 1,000 seeded fuzzed requests, after which it still streams.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import t from 'tap';
import { contractProblem } from '../src/cli/tail.js';
import { decodeImage } from '../src/common/jpeg.js';
import { gatewayTopics } from '../src/common/topics.js';
import { redact } from '../src/components/index.js';
import { createLogger } from '../src/log.js';
import { Outbox } from '../src/outbox/index.js';
import { REQUEST_VERBS, responseSchemaFor, Uplink } from '../src/uplink/index.js';
import { clip, clipCamera, gatewayConfig, runCli, tempDir, until, writeConfig } from './helpers/agent.js';
import { collect, startMosquitto, tempDirFor, type Received } from './helpers/mosquitto.js';
import { docSchemaProblems } from './helpers/schemas.js';

const base = 'ept/gw-test-01';
const secrets = ['cfgPass4417', 'camSecret7720', 'onvifSecret3311', 'tok3nValue'];

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

/** A seeded PRNG (mulberry32): the fuzz run is the same every time. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Answer extends Received {
  body: { status: 'ok' | 'error'; data?: unknown; error?: { code: string; message: string }; transaction?: unknown };
}

t.test('request topics take two-level verbs; redaction; direct publishes stay on the gateway', async (t) => {
  const topics = gatewayTopics('ep', 'gw-1');
  t.equal(topics.request('camera/snapshot'), 'ep/gw-1/request/camera/snapshot');
  t.equal(topics.response('config/get'), 'ep/gw-1/response/config/get');
  t.equal(topics.verbOf('ep/gw-1/request/camera/list'), 'camera/list');
  t.equal(topics.verbOf('ep/gw-1/response/camera/list'), null);
  t.throws(() => topics.request('a/b/c'), { message: /request verb "a\/b\/c" has more than two levels/ });
  t.throws(() => topics.request('camera/+'), { message: /request verb "\+" cannot be a topic level/ });
  t.throws(() => topics.response('camera/'), { message: /request verb "" cannot be a topic level/ });

  const safe = redact({
    mqtt: { url: 'mqtts://u:p4ss@b:8883', username: 'edge', password: 'pw1', tls: { key: '/etc/k.pem' } },
    cameras: [{ source: { url: 'rtsp://a:b@h/x?token=t0k' }, onvif: { password: 'pw2' }, presets: [{ id: 'g', token: 'preset-1' }] }],
    n: 3,
    on: true,
  });
  t.same(safe, {
    mqtt: { url: 'mqtts://***@b:8883', username: 'edge', password: '***', tls: { key: '/etc/k.pem' } },
    cameras: [{ source: { url: 'rtsp://***@h/x?token=***' }, onvif: { password: '***' }, presets: [{ id: 'g', token: 'preset-1' }] }],
    n: 3,
    on: true,
  });

  const check = (topic: string, body: unknown) => contractProblem(topic, Buffer.from(JSON.stringify(body)), undefined);
  t.match(
    check('ep/gw-1/response/camera/list', { status: 'ok', data: {} }),
    /cameras/,
    "tail --check: an ok answer without its verb's data",
  );
  t.match(check('ep/gw-1/response/camera/list', { status: 'error', error: { code: 'oops', message: 'm' } }), /code/, 'an unknown code');
  t.equal(
    check('ep/gw-1/response/client-9/x', { status: 'error', error: { code: 'busy', message: 'm' } }),
    null,
    'any answer shape on a Response Topic',
  );
  t.not(check('ep/gw-1/response/client-9/x', { status: 'maybe' }), null);

  const outbox = Outbox.open(join(tempDirFor(t, 'requests'), 'outbox.db'));
  t.teardown(() => outbox.close());
  const uplink = new Uplink({
    url: 'mqtt://127.0.0.1:1',
    prefix: 'ep',
    gatewayId: 'gw-1',
    outbox,
    log: createLogger({ level: 'silent' }),
    version: '0',
  });
  for (const topic of ['ep/gw-2/response/x', 'ep/gw-1', 'ep/gw-1/response/#', 'ep/gw-1/response/+/x']) {
    t.throws(() => uplink.publishDirect(topic, '{}'), { message: /cannot publish on/ }, `${topic} is refused`);
  }
  t.equal(await uplink.publishDirect('ep/gw-1/response/x', '{}'), false, 'not connected: nothing sent');
});

t.test('requests to the running agent', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const dir = tempDir('requests');
  const closedPort = await freePort();
  const metricsPort = await freePort();
  const config = gatewayConfig(dir, broker.url, [
    clipCamera('cam-1', { name: 'Gate north' }),
    clipCamera('cam-locked', {
      source: { url: `rtsp://cam:camSecret7720@127.0.0.1:${closedPort}/x?token=tok3nValue` },
      onvif: { url: 'http://127.0.0.1:8899/onvif/device_service', user: 'admin', password: 'onvifSecret3311' },
      presets: [{ id: 'gate' }],
    }),
  ]);
  Object.assign(config.mqtt as object, { username: 'edge', password: 'cfgPass4417' });
  config.metrics = { listen: `127.0.0.1:${metricsPort}` };
  const agent = runCli(['run', '--config', writeConfig(dir, config)]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/agent started/, 90_000);

  const answers = await collect(broker.url, `${base}/response/#`);
  t.teardown(() => answers.close());
  const foreign = await collect(broker.url, 'elsewhere/#');
  t.teardown(() => foreign.close());
  const central = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: `central-${process.pid}` });
  t.teardown(() => central.endAsync(true));

  let next = 0;
  const parsed = (m: Received): Answer => ({ ...m, body: JSON.parse(m.payload) as Answer['body'] });
  /** Publishes a request with a fresh correlation id and resolves with its one answer. */
  async function ask(verb: string, payload: unknown, props: IClientPublishOptions['properties'] = {}, client: MqttClient = central) {
    const id = props.correlationData ?? Buffer.from(`req-${next++}`);
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    await client.publishAsync(`${base}/request/${verb}`, text, { qos: 1, properties: { correlationData: id, ...props } });
    const got = await answers.waitFor((ms) => ms.some((m) => m.properties?.correlationData?.equals(id)), 20_000);
    return parsed(got.find((m) => m.properties?.correlationData?.equals(id))!);
  }
  /** The answer conforms to docs/schemas/response.schema.json, to its verb's schema and to `tail --check`. */
  function conforms(tt: typeof t, a: Answer, verb: string): void {
    tt.equal(docSchemaProblems('response', a.body), null, `${verb}: matches docs/schemas/response.schema.json`);
    tt.ok(responseSchemaFor(verb).safeParse(a.body).success, `${verb}: matches its verb's schema`);
    tt.equal(contractProblem(a.topic, a.raw, a.properties), null, `${verb}: tail --check finds nothing`);
    tt.equal(a.properties?.contentType, 'application/json');
    tt.notOk(a.retain, 'not retained');
  }

  // The subscription is made once the uplink connects: ask until the first answer comes.
  await until(
    'the first answer',
    () => {
      void central.publishAsync(`${base}/request/outbox/stats`, '{"transaction":"probe"}', { qos: 1 });
      return answers.messages.length > 0;
    },
    30_000,
    500,
  );
  await sleep(1_100);

  await t.test('each verb answers with its shape', async (t) => {
    const cfg = await ask('config/get', {});
    conforms(t, cfg, 'config/get');
    t.equal(cfg.topic, `${base}/response/config/get`);
    t.equal(cfg.body.status, 'ok');
    const data = cfg.body.data as { mqtt: Record<string, unknown>; cameras: { id: string; source: { url?: string }; onvif?: object }[] };
    t.equal(data.mqtt.password, '***', 'mqtt.password replaced');
    t.equal(data.mqtt.username, 'edge', 'the user name stays');
    t.match(data.cameras[1], { source: { url: `rtsp://***@127.0.0.1:${closedPort}/x?token=***` }, onvif: { password: '***' } });
    t.equal(data.cameras[0]!.source.url, undefined);
    for (const s of secrets) t.notOk(cfg.payload.includes(s), `config/get does not contain ${s}`);

    const list = await ask('camera/list', {});
    conforms(t, list, 'camera/list');
    const cams = (list.body.data as { cameras: Record<string, unknown>[] }).cameras;
    t.match(cams, [
      { id: 'cam-1', name: 'Gate north', source: { kind: 'file', file: clip }, onvif: null, presets: [] },
      {
        id: 'cam-locked',
        source: { kind: 'rtsp', host: `127.0.0.1:${closedPort}` },
        onvif: { host: '127.0.0.1:8899' },
        presets: ['gate'],
      },
    ]);
    for (const s of secrets) t.notOk(list.payload.includes(s), `camera/list does not contain ${s}`);

    const stats = await ask('outbox/stats', { transaction: 'os-1' });
    conforms(t, stats, 'outbox/stats');
    t.match(stats.body, { status: 'ok', data: { lastSeq: Number, dropped: { events: 0 } }, transaction: 'os-1' });

    const models = await ask('model/list', {});
    conforms(t, models, 'model/list');
    const md = models.body.data as { default: string; models: { name: string; cameras: string[]; sha256: string }[] };
    const inUse = md.models.find((m) => m.name === md.default);
    t.same(inUse?.cameras, ['cam-1', 'cam-locked'], 'the default model serves both cameras');
    t.match(inUse?.sha256, /^[0-9a-f]{64}$/);

    const snap = await ask('camera/snapshot', { camera: 'cam-1' });
    conforms(t, snap, 'camera/snapshot');
    const sd = snap.body.data as { width: number; height: number; contentType: string; jpegBase64: string; camera: string };
    t.match(sd, { camera: 'cam-1', width: 768, height: 576, contentType: 'image/jpeg' }, "the clip's own size, not the detect size");
    const file = join(dir, 'snap.jpg');
    writeFileSync(file, Buffer.from(sd.jpegBase64, 'base64'));
    const img = await decodeImage(file);
    t.same([img.width, img.height], [768, 576], 'the JPEG decodes at the camera size');
    t.ok(
      img.data.some((v) => v > 0),
      'and is not black',
    );
  });

  await t.test('errors carry a code and a message', async (t) => {
    const cases: [string, unknown, string, RegExp][] = [
      ['camera/snapshot', { camera: 'cam-nope' }, 'not_found', /no camera 'cam-nope'.*cam-1, cam-locked/],
      ['camera/snapshot', { camera: 'cam-locked', transaction: 5 }, 'unavailable', /no frame: camera cam-locked/],
      ['camera/reboot', {}, 'unknown_verb', /unknown verb 'camera\/reboot'; the verbs are config\/get, camera\/list/],
      ['config/get', 'not json', 'bad_request', /not JSON/],
      ['config/get', '[1,2]', 'bad_request', /send a JSON object/],
      ['config/get', { verbose: true }, 'bad_request', /config\/get: .*verbose/],
      ['camera/snapshot', {}, 'bad_request', /camera: /],
    ];
    for (const [verb, payload, code, message] of cases) {
      const a = await ask(verb, payload);
      conforms(t, a, verb);
      t.match(a.body, { status: 'error', error: { code, message } }, `${verb} ${JSON.stringify(payload)} → ${code}`);
      t.notOk(
        secrets.some((s) => a.payload.includes(s)),
        'no secret in the message',
      );
    }
  });

  await t.test('correlation data, transaction and Response Topic', async (t) => {
    const corr = randomBytes(16);
    const a = await ask('outbox/stats', { transaction: 'tx-7' }, { correlationData: corr });
    t.ok(a.properties?.correlationData?.equals(corr), 'the correlation data is copied byte for byte');
    t.equal(a.body.transaction, 'tx-7', 'and the transaction echoed');

    const own = `${base}/response/client-9/inbox`;
    const b = await ask('camera/list', {}, { responseTopic: own });
    t.equal(b.topic, own, "the request's Response Topic under the gateway's own response/ is honoured");
    conforms(t, b, 'camera/list');
    for (const other of ['elsewhere/client-9/inbox', `${base}/event/person_presence`, `${base}/availability`]) {
      const c = await ask('outbox/stats', {}, { responseTopic: other });
      t.equal(c.topic, `${base}/response/outbox/stats`, `Response Topic ${other} is ignored: the default topic is used`);
    }
    t.same(
      foreign.messages.map((m) => m.topic),
      [],
      'nothing was published outside the gateway',
    );

    // README's example: mosquitto_rr sets the Response Topic to -e and waits for the answer there.
    const rr = await promisify(execFile)('mosquitto_rr', [
      ...['-h', '127.0.0.1', '-p', String(broker.port), '-W', '10'],
      ...['-t', `${base}/request/camera/list`, '-e', `${base}/response/camera/list`, '-m', '{}'],
    ]);
    t.match(
      JSON.parse(rr.stdout),
      { status: 'ok', data: { cameras: [{ id: 'cam-1' }, { id: 'cam-locked' }] } },
      'mosquitto_rr gets the answer',
    );

    // An MQTT 3.1.1 client has no properties: the transaction is its only way to match an answer.
    const v3 = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: `central-v3-${process.pid}` });
    t.teardown(() => v3.endAsync(true));
    const got: { topic: string; body: Answer['body'] }[] = [];
    v3.on('message', (topic, payload) => got.push({ topic, body: JSON.parse(payload.toString()) }));
    await v3.subscribeAsync(`${base}/response/#`, { qos: 1 });
    await v3.publishAsync(`${base}/request/model/list`, JSON.stringify({ transaction: 42 }), { qos: 1 });
    await until('the MQTT 3 answer', () => got.some((g) => g.body.transaction === 42), 20_000, 50);
    t.match(
      got.find((g) => g.body.transaction === 42),
      { topic: `${base}/response/model/list`, body: { status: 'ok' } },
    );
  });

  await t.test(`a burst above the rate limit is answered busy, then requests work again`, async (t) => {
    await sleep(1_100);
    const ids = Array.from({ length: 60 }, (_v, i) => Buffer.from(`burst-${i}`));
    await Promise.all(
      ids.map((id) => central.publishAsync(`${base}/request/outbox/stats`, '{}', { qos: 1, properties: { correlationData: id } })),
    );
    const got = await answers.waitFor((ms) => ids.every((id) => ms.some((m) => m.properties?.correlationData?.equals(id))), 20_000);
    const bodies = ids.map((id) => parsed(got.find((m) => m.properties?.correlationData?.equals(id))!).body);
    const busy = bodies.filter((b) => b.error?.code === 'busy').length;
    const ok = bodies.filter((b) => b.status === 'ok').length;
    t.equal(ok + busy, 60, 'each one answered ok or busy');
    t.ok(ok >= 15 && ok <= 35, `about a second's worth answered ok (${ok}), the rest busy (${busy})`);
    await sleep(1_100);
    t.equal((await ask('outbox/stats', {})).body.status, 'ok');
  });

  await t.test('1,000 fuzzed requests: each answered, the agent unharmed', async (t) => {
    const rand = prng(17);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
    const verbs = [...REQUEST_VERBS, 'camera', 'camera/list/x', 'x/y/z', 'CONFIG/GET', 'task/list', 'model', 'outbox/stats ', '%', 'é/ü'];
    const ascii = (n: number) => Array.from({ length: n }, () => String.fromCharCode(32 + Math.floor(rand() * 95))).join('');
    const payloads: (() => string | Buffer)[] = [
      () => '{}',
      () => JSON.stringify({ transaction: rand() < 0.5 ? ascii(8) : Math.floor(rand() * 1e6) }),
      () => JSON.stringify({ camera: pick(['cam-1', 'cam-locked', 'nope', '', ascii(300)]) }),
      () => JSON.stringify({ [ascii(5)]: ascii(10), transaction: { nested: true } }),
      () => randomBytes(Math.floor(rand() * 512)),
      () => ascii(Math.floor(rand() * 200)),
      () => '',
      () => pick(['null', '1', '"x"', '[]', 'true', '{"transaction":', '{"__proto__":{"polluted":1}}']),
      () => JSON.stringify({ camera: 'cam-1', pad: 'x'.repeat(200_000 + Math.floor(rand() * 800_000)) }),
      () => `${'['.repeat(5_000)}${']'.repeat(5_000)}`,
    ];
    const propSets: (() => IClientPublishOptions['properties'])[] = [
      () => ({}),
      () => ({ responseTopic: `${base}/response/fuzz/${Math.floor(rand() * 100)}` }),
      () => ({ responseTopic: pick(['elsewhere/x', `${base}/health`, `${base}/response/`, `${base}/response/a//b`, 'ept']) }),
      () => ({ userProperties: { [ascii(4)]: ascii(12) }, contentType: ascii(6) }),
      () => ({ payloadFormatIndicator: true, messageExpiryInterval: 60 }),
    ];
    const sent: { id: Buffer; verb: string }[] = [];
    const start = answers.messages.length;
    for (let i = 0; i < 1_000; i++) {
      const verb = rand() < 0.6 ? pick(REQUEST_VERBS) : pick(verbs);
      const id = Buffer.concat([Buffer.from(`fz-${i}-`), randomBytes(Math.floor(rand() * 16))]);
      const props = { ...pick(propSets)(), correlationData: id };
      sent.push({ id, verb });
      void central.publishAsync(`${base}/request/${verb}`, pick(payloads)(), { qos: 1, properties: props });
      // About 60 a second: three times the rate limit, so both busy and real answers come back.
      if (i % 30 === 29) await sleep(500);
    }
    const answered = () => answers.messages.slice(start).filter((m) => m.properties?.correlationData?.subarray(0, 3).toString() === 'fz-');
    await until('an answer to each fuzzed request', () => answered().length >= 1_000, 60_000, 250);
    await sleep(500);
    const byId = new Map<string, Answer[]>();
    for (const m of answered()) {
      const key = m.properties!.correlationData!.toString('hex');
      byId.set(key, [...(byId.get(key) ?? []), parsed(m)]);
    }
    const missing = sent.filter((s) => byId.get(s.id.toString('hex'))?.length !== 1);
    t.same(
      missing.map((s) => s.verb),
      [],
      'every fuzzed request got exactly one answer',
    );
    const all = [...byId.values()].flat();
    t.same(
      all.map((a) => docSchemaProblems('response', a.body)).filter(Boolean),
      [],
      'every answer matches docs/schemas/response.schema.json',
    );
    t.notOk(
      all.some((a) => !a.topic.startsWith(`${base}/response/`)),
      'every answer stayed under the response topics',
    );
    const codes = new Map<string, number>();
    for (const a of all)
      codes.set(
        a.body.status === 'ok' ? 'ok' : a.body.error!.code,
        (codes.get(a.body.status === 'ok' ? 'ok' : a.body.error!.code) ?? 0) + 1,
      );
    t.comment(`fuzz answers: ${JSON.stringify(Object.fromEntries(codes))}`);
    for (const code of ['ok', 'busy', 'bad_request', 'unknown_verb']) t.ok((codes.get(code) ?? 0) > 0, `some answered ${code}`);
    t.same(foreign.messages, [], 'nothing went outside the gateway');
    t.equal(agent.proc.exitCode, null, 'the agent still runs');

    await sleep(1_100);
    const framesIn = async () => {
      const a = await ask('camera/list', {});
      return (a.body.data as { cameras: { id: string; framesIn: number; state: string }[] }).cameras.find((c) => c.id === 'cam-1')!;
    };
    const before = await framesIn();
    await sleep(3_000);
    const after = await framesIn();
    t.equal(after.state, 'streaming');
    t.ok(after.framesIn > before.framesIn, `cam-1 still decodes (framesIn ${before.framesIn} → ${after.framesIn})`);
    const snap = await ask('camera/snapshot', { camera: 'cam-1', transaction: 'after' });
    t.match(snap.body, { status: 'ok', transaction: 'after', data: { width: 768 } }, 'and still answers a good request');

    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    t.match(metrics, /edgepatrol_requests_total\{verb="other",status="unknown_verb"\} [1-9]/, 'unknown verbs counted as other');
    t.match(metrics, /edgepatrol_requests_total\{verb="camera\/snapshot",status="ok"\} [1-9]/);
    t.match(metrics, /edgepatrol_requests_total\{verb="config\/get",status="busy"\} [1-9]/);
    t.notMatch(metrics, /verb="x\/y\/z"/, 'no series per made-up verb');
  });

  const exit = await agent.stop('SIGTERM');
  t.equal(exit.code, 0, 'the agent stops cleanly');
  const log = agent.stderr();
  t.notMatch(log, /uncaught|unhandled|"level":(50|60)/i, 'the log shows no uncaught error');
  for (const s of secrets) t.notOk(log.includes(s), `the log does not contain ${s}`);
  t.match(log, /requests answered, by verb and status/);
  t.notMatch(log, /ignored a message on ept\/gw-test-01\/request/, 'refused requests are answered, not logged at warn');
});

t.test("a snapshot larger than the broker's maximum packet size is answered unavailable, and the gateway stays connected", async (t) => {
  const broker = await startMosquitto({ extraConfig: ['max_packet_size 20000'] });
  t.teardown(() => broker.stop());
  const dir = tempDir('requests-small');
  const agent = runCli(['run', '--config', writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-1')]))]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/mqtt connected/, 90_000);
  const answers = await collect(broker.url, `${base}/response/#`);
  t.teardown(() => answers.close());
  await until(
    'an answer',
    () => {
      void answers.client.publishAsync(`${base}/request/camera/snapshot`, '{"camera":"cam-1","transaction":"big"}', { qos: 1 });
      return answers.messages.length > 0;
    },
    30_000,
    1_000,
  );
  const body = JSON.parse(answers.messages[0]!.payload);
  t.match(body, { status: 'error', error: { code: 'unavailable', message: /maximum packet size/ }, transaction: 'big' });
  await answers.client.publishAsync(`${base}/request/outbox/stats`, '{"transaction":"after"}', { qos: 1 });
  await answers.waitFor((ms) => ms.some((m) => JSON.parse(m.payload).transaction === 'after'));
  t.notMatch(agent.stderr(), /mqtt connection lost/, 'the oversized answer was never sent');
  t.equal((await agent.stop('SIGTERM')).code, 0);
});
