// Issue 17, item 4 (config) and the requests task/list and task/cancel: a real agent process on the real clip, a
// real Mosquitto and the config file on disk. The centre's side is mqtt.js, as an integrator's client would be.
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createServer } from 'node:net';
import t from 'tap';
import { contractProblem } from '../src/cli/tail.js';
import { keepRedacted, parseConfig, redact, redactedLeft, StagedConfig } from '../src/config/index.js';
import { taskStatePayloadSchema, type TaskStatePayload } from '../src/tasks/index.js';
import { responseSchemaFor } from '../src/uplink/index.js';
import { clipCamera, gatewayConfig, runCli, until, writeConfig } from './helpers/agent.js';
import { brokerFor, collect, tempDirFor } from './helpers/mosquitto.js';
import { docSchemaProblems } from './helpers/schemas.js';

const base = 'ept/gw-test-01';

/** A gateway config as the tests edit it: the cameras' zones and detect settings, the rest as it is. */
interface Cfg {
  cameras: {
    id: string;
    state?: string;
    zones?: { id: string; [k: string]: unknown }[];
    detect?: Record<string, unknown>;
    [k: string]: unknown;
  }[];
  [k: string]: unknown;
}
/** What the tests read of the answers' data (the schemas check the rest). */
interface Data extends Cfg {
  tasks: { id: string; kind: string; state: string; reason: string | null }[];
}

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

t.test('a config read with config/get and sent back keeps the secrets it showed as ***', async (t) => {
  const running = {
    mqtt: { url: 'mqtts://edge:brokerPw@b:8883', password: 'pw1' },
    cameras: [
      { id: 'a', source: { url: 'rtsp://admin:camPw@10.0.0.5/main?token=t0k' }, onvif: { password: 'onvifPw' } },
      { id: 'b', source: { url: 'rtsp://viewer:bPw@10.0.0.6/main' } },
    ],
  };
  const shown = redact(running) as typeof running;
  // The centre swaps the cameras' order, moves camera a to another host and adds camera c.
  const sent = {
    mqtt: shown.mqtt,
    cameras: [
      shown.cameras[1],
      { ...shown.cameras[0], source: { url: 'rtsp://***@10.0.0.9/main' } },
      { id: 'c', source: { url: 'rtsp://***@10.0.0.7/main' }, onvif: { password: '***' } },
    ],
  };
  const kept = keepRedacted(sent, running) as typeof running;
  t.same(kept.mqtt, running.mqtt, 'mqtt password and URL credentials kept');
  t.same(kept.cameras[0], running.cameras[1], 'camera b keeps its own URL, matched by id');
  t.equal(kept.cameras[1]!.onvif!.password, 'onvifPw', "camera a's ONVIF password kept");
  t.equal(kept.cameras[1]!.source.url, 'rtsp://***@10.0.0.9/main', 'a changed URL is not given the old credentials');
  t.same(redactedLeft(kept), ['cameras[1].source.url', 'cameras[2].source.url', 'cameras[2].onvif.password']);
  t.same(redactedLeft({ cameras: [{ name: 'gate ***' }] }), [], 'a *** that is no redaction is left alone');
});

t.test('a staged config: private, committed over the file with the old one kept, or discarded; leftovers removed', async (t) => {
  const dir = tempDirFor(t, 'staged');
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, 'old: 1\n', { mode: 0o640 });
  const one = StagedConfig.write(file, 'new: 2\n');
  t.equal(statSync(one.path).mode & 0o777, 0o600, 'written private');
  t.equal(readFileSync(file, 'utf8'), 'old: 1\n', 'the file is untouched until commit');
  one.commit();
  t.equal(readFileSync(file, 'utf8'), 'new: 2\n');
  t.equal(readFileSync(`${file}.previous`, 'utf8'), 'old: 1\n');
  t.equal(statSync(`${file}.previous`).mode & 0o777, 0o600, 'the old file, which may hold secrets, kept private');
  StagedConfig.write(file, 'other: 3\n').discard();
  t.equal(readFileSync(file, 'utf8'), 'new: 2\n', 'a discarded text changes nothing');
  StagedConfig.write(file, 'crashed: 4\n');
  writeFileSync(join(dir, 'gateway.yaml.previous.0badc0de.tmp'), 'x');
  writeFileSync(join(dir, '.other.yaml.0badc0de.new'), 'x');
  StagedConfig.removeLeftovers(file);
  t.same(readdirSync(dir).sort(), ['.other.yaml.0badc0de.new', 'gateway.yaml', 'gateway.yaml.previous'], "only this file's leftovers go");
});

t.test('config tasks, task/list and task/cancel against a real agent, broker and config file', async (t) => {
  const broker = await brokerFor(t);
  const dir = tempDirFor(t, 'cfgtask');
  const closedPort = await freePort();
  const cfg = gatewayConfig(dir, broker.url, [clipCamera('cam1'), clipCamera('cam2')]);
  cfg.tasks = { configTimeoutSeconds: 4 };
  const file = writeConfig(dir, cfg);
  const original = readFileSync(file, 'utf8');

  const states = await collect(broker.url, `${base}/task/+/state`);
  t.teardown(() => states.close());
  const answers = await collect(broker.url, `${base}/response/#`);
  t.teardown(() => answers.close());
  const agent = runCli(['run', '--config', file]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/agent started/, 60_000);

  const of = (id: string): TaskStatePayload[] =>
    states.messages.filter((m) => m.topic === `${base}/task/${id}/state`).map((m) => taskStatePayloadSchema.parse(JSON.parse(m.payload)));
  const names = (id: string): string[] => of(id).map((s) => (s.reason ? `${s.state}:${s.reason}` : s.state));
  const final = async (id: string, ms = 30_000): Promise<TaskStatePayload> => {
    await states.waitFor(() => of(id).some((s) => !['accepted', 'running', 'progress'].includes(s.state)), ms);
    return of(id).at(-1)!;
  };
  const send = (id: string, config: unknown): Promise<unknown> =>
    states.client.publishAsync(
      `${base}/task/${id}`,
      JSON.stringify({ schema: 'edgepatrol.task/1', id, issuedAt: new Date().toISOString(), kind: 'config', config }),
      { qos: 1 },
    );
  let next = 0;
  const ask = async (verb: string, payload: Record<string, unknown>) => {
    const transaction = `tx-${next++}`;
    await answers.client.publishAsync(`${base}/request/${verb}`, JSON.stringify({ ...payload, transaction }), { qos: 1 });
    const got = await answers.waitFor((ms) => ms.some((m) => JSON.parse(m.payload).transaction === transaction), 20_000);
    const m = got.find((x) => JSON.parse(x.payload).transaction === transaction)!;
    const body = JSON.parse(m.payload) as { status: string; data: Data; error?: { code: string; message: string }; transaction?: string };
    t.equal(docSchemaProblems('response', body), null, `${verb}: matches docs/schemas/response.schema.json`);
    t.ok(responseSchemaFor(verb).safeParse(body).success, `${verb}: matches its verb's schema`);
    t.equal(contractProblem(m.topic, m.raw, m.properties), null, `${verb}: tail --check finds nothing`);
    return body;
  };
  // The tasks and requests subscriptions are made once the uplink connects: ask until the first answer comes.
  await until(
    'the first answer',
    () => {
      void answers.client.publishAsync(`${base}/request/outbox/stats`, '{}', { qos: 1 });
      return answers.messages.length > 0;
    },
    30_000,
    500,
  );
  const reloads = (): number =>
    agent
      .stderr()
      .split('\n')
      .filter((l) => l.includes('config reloaded')).length;
  const zoneIds = (config: Cfg, cam: string): string[] => config.cameras.find((c) => c.id === cam)!.zones!.map((z) => z.id);

  await t.test('a config that adds a zone to cam1: cam1 restarts, cam2 runs on, the file is replaced (0600)', async (t) => {
    // As the centre would: read the running config, edit it, send it back.
    const running = (await ask('config/get', {})).data;
    running.cameras[0]!.zones!.push({
      id: 'gate',
      polygon: [
        [0, 0],
        [0.5, 0],
        [0.5, 0.5],
        [0, 0.5],
      ],
      rules: [{ kind: 'presence', type: 'person_presence', classes: ['person'] }],
    });
    await send('cfg-zone', running);
    const end = await final('cfg-zone');
    t.same(names('cfg-zone'), ['accepted', 'running', 'succeeded']);
    t.same(end.result, { added: [], removed: [], changed: ['cam1'], unchanged: ['cam2'], needsRestart: [] });
    t.match(agent.stderr(), /config reloaded: restarted cam1, 1 unchanged/);
    t.same(zoneIds((await ask('config/get', {})).data, 'cam1'), ['walkway', 'gate'], 'the agent runs the new zone');
    const cams = (await ask('camera/list', {})).data.cameras as { id: string; state: string }[];
    t.same(
      cams.map((c) => c.id),
      ['cam1', 'cam2'],
    );
    t.equal(statSync(file).mode & 0o777, 0o600, 'the new file is private to its owner');
    t.same(zoneIds(parseConfig(readFileSync(file, 'utf8'), file), 'cam1'), ['walkway', 'gate'], 'the file holds the new zone');
    t.match(readFileSync(file, 'utf8'), /^# Written by edgepatrol for config task cfg-zone/);
    t.equal(readFileSync(`${file}.previous`, 'utf8'), original, 'the file it replaced is kept as .previous');
    t.equal(statSync(`${file}.previous`).mode & 0o777, 0o600);
    for (const m of states.messages) t.equal(contractProblem(m.topic, m.raw, m.properties), null, 'tail --check passes the state');
  });

  await t.test('an invalid config: failed invalid_config naming the problem; nothing changes', async (t) => {
    const before = readFileSync(file, 'utf8');
    const count = reloads();
    const bad = structuredClone(cfg) as unknown as Cfg;
    bad.cameras[1]!.zones![0]!.polygon = [[0, 0]];
    bad.cameras[1]!.detect!.fsp = 3;
    await send('cfg-bad', bad);
    const end = await final('cfg-bad');
    t.same(names('cfg-bad'), ['accepted', 'running', 'failed:invalid_config']);
    t.match(end.detail, /cameras\[1\]\.zones\[0\]\.polygon: a zone polygon needs at least 3 points/);
    t.match(end.detail, /cameras\[1\]\.detect\.fsp: unknown key \(did you mean 'fps'\?\)/);
    t.notMatch(end.detail, /\.new/, 'the staged file is not named');
    t.equal(readFileSync(file, 'utf8'), before, 'the file is unchanged');
    t.equal(reloads(), count, 'no reload ran');
    t.same(zoneIds((await ask('config/get', {})).data, 'cam1'), ['walkway', 'gate'], 'the running config is unchanged');
  });

  await t.test(
    'a new camera that never streams: rolled back, the old config running, the file unchanged; a queued task canceled',
    async (t) => {
      const before = readFileSync(file, 'utf8');
      const withDead = (await ask('config/get', {})).data;
      withDead.cameras.push({ id: 'cam3', source: { url: `rtsp://viewer:deadPw@127.0.0.1:${closedPort}/x` }, detect: { fps: 1 } });
      const started = Date.now();
      await send('cfg-dead', withDead);
      // Queued behind cfg-dead (config tasks run one at a time), then canceled by a request.
      await send('cfg-queued', cfg);
      await states.waitFor(() => names('cfg-queued').includes('accepted'));
      const canceled = await ask('task/cancel', { id: 'cfg-queued' });
      t.same(canceled, { status: 'ok', data: { id: 'cfg-queued', state: 'canceled' }, transaction: canceled.transaction });
      const again = await ask('task/cancel', { id: 'cfg-queued' });
      t.equal(again.error?.code, 'not_cancelable');
      t.match(again.error?.message, /cfg-queued is canceled/);
      t.equal((await ask('task/cancel', { id: 'nope' })).error?.code, 'unknown_target');

      const end = await final('cfg-dead');
      t.same(names('cfg-dead'), ['accepted', 'running', 'failed:rolled_back']);
      t.ok(Date.now() - started >= 4000, 'it waited tasks.configTimeoutSeconds');
      t.match(end.detail, /not streaming 4 s after the reload: camera cam3 \(/);
      t.match(end.detail, /the previous config runs again/);
      t.notMatch(end.detail, /deadPw/, 'no credentials in the detail');
      t.match(agent.stderr(), /config reloaded: added cam3, 2 unchanged/);
      t.match(agent.stderr(), /config reloaded: removed cam3, 2 unchanged/);
      t.same(names('cfg-queued'), ['accepted', 'canceled:canceled'], 'the canceled task never ran');
      t.equal(readFileSync(file, 'utf8'), before, 'the file is as before');
      const cams = (await ask('camera/list', {})).data.cameras as { id: string; state: string }[];
      t.same(
        cams.map((c) => c.id),
        ['cam1', 'cam2'],
        'cam3 is gone again',
      );
      t.same(zoneIds((await ask('config/get', {})).data, 'cam1'), ['walkway', 'gate'], 'the config before the task runs');
      t.same(
        cams.map((c) => c.state),
        ['streaming', 'streaming'],
        'cam1 and cam2 streamed on',
      );
    },
  );

  await t.test('task/list: newest first, filtered by state, limited', async (t) => {
    const all = (await ask('task/list', {})).data.tasks as { id: string; kind: string; state: string; reason: string | null }[];
    t.same(
      all.map((x) => [x.id, x.kind, x.state, x.reason]),
      [
        ['cfg-queued', 'config', 'canceled', 'canceled'],
        ['cfg-dead', 'config', 'failed', 'rolled_back'],
        ['cfg-bad', 'config', 'failed', 'invalid_config'],
        ['cfg-zone', 'config', 'succeeded', null],
      ],
    );
    const failed = (await ask('task/list', { state: 'failed' })).data.tasks as { id: string }[];
    t.same(
      failed.map((x) => x.id),
      ['cfg-dead', 'cfg-bad'],
    );
    t.same(
      (await ask('task/list', { limit: 1 })).data.tasks.map((x: { id: string }) => x.id),
      ['cfg-queued'],
    );
    t.equal((await ask('task/list', { limit: 1001 })).error?.code, 'bad_request');
    t.equal((await ask('task/list', { state: 'progress' })).error?.code, 'bad_request');
  });

  await t.test('the inbox keeps a config task as its sha256: secrets stay out of the outbox file', async (t) => {
    const { code } = await agent.stop();
    t.equal(code, 0, 'the agent stops cleanly');
    t.same(readdirSync(dir).sort(), ['data', 'gateway.yaml', 'gateway.yaml.previous'], 'no staged file left beside the config');
    for (const name of ['outbox.db', 'outbox.db-wal']) {
      const bytes = existsSync(`${dir}/data/${name}`) ? readFileSync(`${dir}/data/${name}`) : Buffer.alloc(0);
      t.notOk(bytes.includes('deadPw'), `the camera password is not in ${name}`);
    }
  });
});
