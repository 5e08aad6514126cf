import { once } from 'node:events';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { gatewayTopics, senderTopics, topicFilterProblem, topicMatches } from '../src/common/topics.js';
import { createLogger } from '../src/log.js';
import { Outbox } from '../src/outbox/index.js';
import { Uplink, type UplinkOptions } from '../src/uplink/index.js';
import { until } from './helpers/agent.js';
import { brokerFor, tempDirFor } from './helpers/mosquitto.js';

const prefix = 'ep';
const gatewayId = 'gw-1';
const topics = gatewayTopics(prefix, gatewayId);

const taskSchema = z.strictObject({ id: z.string().min(1), camera: z.string() });
type Task = z.infer<typeof taskSchema>;

t.test('topics: every topic and filter from one prefix and gateway id', async (t) => {
  t.equal(topics.base, 'ep/gw-1');
  t.equal(topics.event('presence'), 'ep/gw-1/event/presence');
  t.equal(topics.evidence('0190-ab'), 'ep/gw-1/evidence/0190-ab');
  t.equal(topics.health, 'ep/gw-1/health');
  t.equal(topics.availability, 'ep/gw-1/availability');
  t.equal(topics.alert('outbox_drop'), 'ep/gw-1/alert/outbox_drop');
  t.equal(topics.ack, 'ep/gw-1/ack');
  t.equal(topics.task('t-7'), 'ep/gw-1/task/t-7');
  t.equal(topics.taskState('t-7'), 'ep/gw-1/task/t-7/state');
  t.equal(topics.tasks, 'ep/gw-1/task/+');
  t.equal(topics.request('snapshot'), 'ep/gw-1/request/snapshot');
  t.equal(topics.requests, 'ep/gw-1/request/#');
  t.equal(topics.response('snapshot'), 'ep/gw-1/response/snapshot');
  t.equal(gatewayTopics('city/north', 'gw-2').event('dwell'), 'city/north/gw-2/event/dwell', 'a prefix of several levels');

  t.ok(topicMatches(topics.tasks, topics.task('a')));
  t.notOk(topicMatches(topics.tasks, topics.taskState('a')), 'a task state is not a task');
  t.ok(topicMatches(topics.requests, topics.request('snapshot')));
  t.ok(topicMatches('ep/gw-1/#', 'ep/gw-1'), "'#' also matches its parent level");
  t.notOk(topicMatches('ep/gw-1/ack', 'ep/gw-1/ack/x'));
  t.notOk(topicMatches('ep/+/ack', 'ep/gw-1/event/x'));

  t.ok(topics.owns(topics.tasks) && topics.owns(topics.requests) && topics.owns(topics.ack) && topics.owns('ep/gw-1/#'));
  for (const other of ['ep/gw-10/ack', 'ep/gw-2/task/+', 'ep/#', 'ep/gw-1', 'ep/gw-1/', '$share/g/ep/gw-1/ack', 'other/ep/gw-1/ack']) {
    t.notOk(topics.owns(other), `${other} is not the gateway's own`);
  }

  t.equal(topicFilterProblem('ep/gw-1/task/+'), null);
  t.match(topicFilterProblem('ep/gw-1/ta#'), /'#' must be a whole level and the last one/);
  t.match(topicFilterProblem('ep/#/x'), /'#' must be a whole level and the last one/);
  t.match(topicFilterProblem('ep/gw-1/t+'), /'\+' must be a whole level/);
  t.match(topicFilterProblem(''), /must not be empty/);

  for (const bad of ['', 'a/', '/a', 'a//b', 'a/+', 'a#', 'a b']) {
    const rule = "one or more topic levels separated by '/', without '+', '#', spaces, or a leading/trailing '/'";
    t.throws(() => gatewayTopics(bad, 'gw-1'), { message: `topics: prefix ${JSON.stringify(bad)} must be ${rule}` });
  }
  for (const bad of ['', 'a/b', 'gw+', 'gw#', 'g w']) {
    t.throws(() => gatewayTopics('ep', bad), { message: /gateway id .* cannot be a topic level: it must not be empty or contain/ });
  }
  t.throws(() => topics.task('a/b'), { message: /task id "a\/b" cannot be a topic level/ });
  t.throws(() => topics.event(''), { message: /event type "" cannot be a topic level/ });
  t.throws(() => topics.request('#'), { message: /request verb "#" cannot be a topic level/ });

  t.equal(senderTopics('city/north/gw-2/event/dwell')?.ack, 'city/north/gw-2/ack');
  t.equal(senderTopics('ep/gw-1/alert/outbox_drop')?.ack, 'ep/gw-1/ack');
  t.equal(senderTopics('ep/gw-1/health'), null);
  t.equal(senderTopics('gw-1/event/x'), null, 'no prefix');
});

/** An outbox in a temp dir and a factory of uplinks on it (a new one per start, as after an agent restart). */
function rig(tt: Test, url: string) {
  const outbox = Outbox.open(join(tempDirFor(tt, 'inbound'), 'outbox.db'));
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const log = createLogger({ level: 'debug', destination });
  const uplinks: Uplink[] = [];
  tt.teardown(async () => {
    for (const u of uplinks) await u.stop();
    outbox.close();
  });
  return {
    outbox,
    logText: () => lines.join(''),
    uplink(extra: Partial<UplinkOptions> = {}): Uplink {
      const reconnect = { initialMs: 100, maxMs: 500 };
      const u = new Uplink({ url, prefix, gatewayId, outbox, log, version: '0.0.0-test', reconnect, ...extra });
      uplinks.push(u);
      return u;
    },
  };
}

function connected(uplink: Uplink): Promise<unknown> {
  return once(uplink, 'connected', { signal: AbortSignal.timeout(20_000) });
}

/** The central side: a plain MQTT 5 client that sends work down to the gateway. */
async function central(tt: Test, url: string): Promise<mqtt.MqttClient> {
  const clientId = `central-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId });
  tt.teardown(() => client.endAsync(true));
  return client;
}

/**
 * Waits until the gateway's task subscription is in force at the broker: probes (task id `probe`) are sent until
 * one arrives. A probe still on its way may arrive later; the tests leave probes out of what they compare.
 */
async function subscribed(received: () => number, url: string, tt: Test): Promise<void> {
  const probe = await central(tt, url);
  const before = received();
  let n = 0;
  await until('the subscription to take effect', () => {
    if (received() > before) return true;
    if (n++ % 10 === 0) void probe.publishAsync(topics.task('probe'), JSON.stringify({ id: 'probe', camera: 'probe' }), { qos: 1 });
    return false;
  });
}

t.test('a task sent while the gateway is offline arrives when it starts again (persistent session)', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const first = r.uplink();
  const seen: Task[] = [];
  first.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task);
  });
  first.start();
  await connected(first);
  await subscribed(() => seen.length, b.url, t);
  await first.stop();

  const service = await central(t, b.url);
  await service.publishAsync(topics.task('t-1'), JSON.stringify({ id: 't-1', camera: 'cam-1' }), { qos: 1 });
  await service.publishAsync(topics.task('t-2'), JSON.stringify({ id: 't-2', camera: 'cam-2' }), { qos: 1 });

  const second = r.uplink();
  const after: { task: Task; topic: string }[] = [];
  second.subscribe(topics.tasks, taskSchema, (task, topic) => {
    if (task.id !== 'probe') after.push({ task, topic });
  });
  second.start();
  await until('both tasks sent while offline', () => after.length >= 2);
  t.same(after, [
    { task: { id: 't-1', camera: 'cam-1' }, topic: 'ep/gw-1/task/t-1' },
    { task: { id: 't-2', camera: 'cam-2' }, topic: 'ep/gw-1/task/t-2' },
  ]);
  t.match(second.status().inbound, { rejected: 0, filters: { 'ep/gw-1/task/+': { rejected: 0 } } });
  t.ok(second.status().inbound.received >= 2, 'counted as received');
  t.match(r.logText(), /"sessionPresent":true/, 'the broker kept the session');
});

t.test('mqtt.sessionExpirySeconds 0: a task sent while offline is not kept', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const first = r.uplink({ sessionExpirySeconds: 0 });
  const seen: Task[] = [];
  first.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task);
  });
  first.start();
  await connected(first);
  await subscribed(() => seen.length, b.url, t);
  await first.stop();
  const service = await central(t, b.url);
  await service.publishAsync(topics.task('t-1'), JSON.stringify({ id: 't-1', camera: 'cam-1' }), { qos: 1 });
  const second = r.uplink({ sessionExpirySeconds: 0 });
  const after: Task[] = [];
  second.subscribe(topics.tasks, taskSchema, (task) => {
    after.push(task);
  });
  second.start();
  await connected(second);
  await subscribed(() => after.length, b.url, t);
  t.same(
    after.filter((x) => x.id !== 'probe'),
    [],
    'the task sent while offline is gone with the session',
  );
});

t.test('subscriptions are applied again after a broker restart that lost the session', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const uplink = r.uplink();
  const seen: Task[] = [];
  uplink.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task);
  });
  uplink.start();
  await connected(uplink);
  await subscribed(() => seen.length, b.url, t);
  // Listen before the restart: the uplink may be back while restart() still waits for the broker (as uplink.test's
  // restart test does), so the reconnect is awaited from the disconnect on.
  const back = once(uplink, 'disconnected', { signal: AbortSignal.timeout(30_000) }).then(() => connected(uplink));
  // No persistence: the restarted broker knows nothing of the gateway's session or its subscriptions.
  await b.restart();
  await back;
  const service = await central(t, b.url);
  const before = seen.length;
  await until('a task after the restart', () => {
    if (seen.some((x, i) => i >= before && x.id === 't-9')) return true;
    void service.publishAsync(topics.task('t-9'), JSON.stringify({ id: 't-9', camera: 'cam-1' }), { qos: 1 });
    return false;
  });
  t.match(r.logText(), /"sessionPresent":false/, 'the broker had lost the session');
  t.pass('the subscription was applied again on reconnect');
});

t.test('a bad payload is logged and counted, never thrown; the next good one is handled', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const uplink = r.uplink();
  const seen: Task[] = [];
  uplink.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task);
  });
  uplink.start();
  await connected(uplink);
  await subscribed(() => seen.length, b.url, t);
  const base = uplink.status().inbound;
  const probes = (): number => seen.filter((x) => x.id === 'probe').length;
  const baseProbes = probes();
  const service = await central(t, b.url);
  await service.publishAsync(topics.task('a'), 'not json {', { qos: 1 });
  await service.publishAsync(topics.task('b'), JSON.stringify({ id: 'b', camera: 7 }), { qos: 1 });
  await service.publishAsync(topics.task('c'), JSON.stringify({ id: 'c', camera: 'cam-1', extra: true }), { qos: 1 });
  await service.publishAsync(topics.task('d'), JSON.stringify({ id: 'd', camera: 'cam-1' }), { qos: 1 });
  await until('the good task', () => seen.some((x) => x.id === 'd'));
  t.same(
    seen.filter((x) => x.id !== 'probe').map((x) => x.id),
    ['d'],
    'only the valid payload reached the handler',
  );
  const s = uplink.status();
  t.equal(s.inbound.received - base.received - (probes() - baseProbes), 4, 'all four counted as received');
  t.equal(s.inbound.rejected - base.rejected, 3);
  t.equal(s.inbound.filters['ep/gw-1/task/+']!.rejected, 3, 'counted per filter');
  t.ok(s.connected, 'still connected');
  const log = r.logText();
  t.match(log, /ignored a message on ep\/gw-1\/task\/a: not JSON/);
  t.match(log, /ignored a message on ep\/gw-1\/task\/b: camera: [^"]*expected string/);
  t.match(log, /ignored a message on ep\/gw-1\/task\/c: Unrecognized key: \\"extra\\"/);
});

t.test('a throwing handler is logged and counted; later messages are still handled', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const uplink = r.uplink();
  const seen: string[] = [];
  uplink.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task.id);
    if (task.id === 'boom') throw new Error('handler bug');
  });
  uplink.subscribe(topics.requests, z.object({ verb: z.string() }), async ({ verb }) => {
    seen.push(verb);
    await Promise.resolve();
    if (verb === 'reject') throw new Error('async handler bug');
  });
  uplink.start();
  await connected(uplink);
  await subscribed(() => seen.length, b.url, t);
  const base = uplink.status().inbound.rejected;
  const service = await central(t, b.url);
  await service.publishAsync(topics.task('boom'), JSON.stringify({ id: 'boom', camera: 'cam-1' }), { qos: 1 });
  await service.publishAsync(topics.request('reject'), JSON.stringify({ verb: 'reject' }), { qos: 1 });
  await service.publishAsync(topics.task('ok'), JSON.stringify({ id: 'ok', camera: 'cam-1' }), { qos: 1 });
  await service.publishAsync(topics.request('fine'), JSON.stringify({ verb: 'fine' }), { qos: 1 });
  await until('the later messages', () => seen.includes('ok') && seen.includes('fine'));
  await until('both failures counted', () => uplink.status().inbound.rejected - base === 2);
  t.match(uplink.status().inbound.filters, { 'ep/gw-1/task/+': { rejected: 1 }, 'ep/gw-1/request/#': { rejected: 1 } });
  t.match(r.logText(), /the handler of ep\/gw-1\/task\/\+ failed on a message on ep\/gw-1\/task\/boom: handler bug/);
  t.match(r.logText(), /the handler of ep\/gw-1\/request\/# failed on a message on ep\/gw-1\/request\/reject: async handler bug/);
  t.ok(uplink.status().connected);
});

t.test('unsubscribing stops the handler', async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const uplink = r.uplink();
  const seen: string[] = [];
  const off = uplink.subscribe(topics.tasks, taskSchema, (task) => {
    seen.push(task.id);
  });
  const requests: string[] = [];
  uplink.subscribe(topics.requests, z.object({ verb: z.string() }), ({ verb }) => {
    requests.push(verb);
  });
  uplink.start();
  await connected(uplink);
  await subscribed(() => seen.length, b.url, t);
  off();
  const service = await central(t, b.url);
  await service.publishAsync(topics.task('late'), JSON.stringify({ id: 'late', camera: 'cam-1' }), { qos: 1 });
  await service.publishAsync(topics.request('after'), JSON.stringify({ verb: 'after' }), { qos: 1 });
  await until('the request sent after the task', () => requests.includes('after'));
  t.notOk(seen.includes('late'), 'the task filter no longer reaches its handler');
});

t.test("only the gateway's own topics can be subscribed", async (t) => {
  const b = await brokerFor(t);
  const r = rig(t, b.url);
  const uplink = r.uplink();
  for (const filter of ['ep/gw-2/task/+', 'ep/+/task/+', 'ep/#', 'other/gw-1/task/+', '$share/g/ep/gw-1/task/+', 'ep/gw-1']) {
    t.throws(() => uplink.subscribe(filter, taskSchema, () => {}), {
      message: `uplink: cannot subscribe to ${filter}: only topics under ep/gw-1/ are this gateway's; messages for it must be sent there`,
    });
  }
  t.throws(() => uplink.subscribe('ep/gw-1/task/t#', taskSchema, () => {}), {
    message: /cannot subscribe to ep\/gw-1\/task\/t#: '#' must be a whole level/,
  });
  t.same(uplink.status().inbound.filters, {}, 'nothing subscribed');
});

t.test('the service ack topic is subscribed only with delivery: service', async (t) => {
  const b = await brokerFor(t);
  const broker = rig(t, b.url).uplink();
  t.same(broker.status().inbound.filters, {});
  const dir = tempDirFor(t, 'inbound-service');
  const outbox = Outbox.open(join(dir, 'outbox.db'), { delivery: 'service' });
  const uplink = new Uplink({ url: b.url, prefix, gatewayId, outbox, log: createLogger({ level: 'silent' }), version: '0.0.0-test' });
  t.teardown(async () => {
    await uplink.stop();
    outbox.close();
  });
  t.same(Object.keys(uplink.status().inbound.filters), ['ep/gw-1/ack']);
});
