import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { makePki } from './helpers/pki.js';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/log.js';
import { Outbox } from '../src/outbox/index.js';
import { Uplink, type UplinkOptions } from '../src/uplink/index.js';
import { brokerFor, collect, tempDirFor, type Received } from './helpers/mosquitto.js';

const prefix = 'ep';
const gatewayId = 'gw-1';
const eventTopic = `${prefix}/${gatewayId}/event/presence`;
const availabilityTopic = `${prefix}/${gatewayId}/availability`;

/** Child mode for the last-will test: a gateway process that the parent SIGKILLs once it is online. */
if (process.env.EDGEPATROL_UPLINK_CHILD) {
  const { url, file } = JSON.parse(process.env.EDGEPATROL_UPLINK_CHILD) as { url: string; file: string };
  const outbox = Outbox.open(file);
  const uplink = new Uplink({ url, prefix, gatewayId, outbox, log: createLogger({ level: 'silent' }), version: '0.0.0-test' });
  uplink.on('connected', () => process.send!('connected'));
  uplink.start();
} else {
  tests();
}

function tempDir(tt: Test): string {
  return tempDirFor(tt, 'uplink');
}

function broker(tt: Test, opts?: Parameters<typeof brokerFor>[1]): ReturnType<typeof brokerFor> {
  return brokerFor(tt, opts);
}

/** An outbox in a temp dir and an uplink on it whose log lines are captured. */
function rig(tt: Test, url: string, extra: Partial<UplinkOptions> = {}) {
  const outbox = Outbox.open(join(tempDir(tt), 'outbox.db'));
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const log = createLogger({ level: 'debug', destination });
  const uplink = new Uplink({
    url,
    prefix,
    gatewayId,
    outbox,
    log,
    version: '0.0.0-test',
    reconnect: { initialMs: 250, maxMs: 1_000 },
    ...extra,
  });
  tt.teardown(async () => {
    await uplink.stop();
    outbox.close();
  });
  const added: { seq: number; id: string }[] = [];
  return {
    outbox,
    uplink,
    added,
    logText: () => lines.join(''),
    /** Adds n events whose payload carries their id and seq, telling the uplink after each, as the agent does. */
    add(n: number): void {
      for (let i = 0; i < n; i++) {
        const id = uuidv7();
        const { seq } = outbox.add({ id, cameraId: 'cam-1', type: 'presence', topic: eventTopic }, (s) => ({ id, seq: s }));
        added.push({ seq, id });
        uplink.notify();
      }
    },
  };
}

function connected(uplink: Uplink): Promise<unknown> {
  return once(uplink, 'connected', { signal: AbortSignal.timeout(20_000) });
}

async function until(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Rows the broker has not acknowledged yet: never handed to MQTT, or handed over without a PUBACK. */
function unacked(outbox: Outbox): number {
  const s = outbox.stats();
  return s.pending + s.sent;
}

function eventsIn(messages: Received[]): { id: string; seq: number }[] {
  return messages.filter((m) => m.topic === eventTopic).map((m) => JSON.parse(m.payload) as { id: string; seq: number });
}

/** Every added event arrived; first copies in seq order; any duplicate is a copy of the same event. */
function checkDelivery(tt: Test, messages: Received[], added: { seq: number; id: string }[]): void {
  const got = eventsIn(messages);
  const seqOf = new Map(added.map((e) => [e.id, e.seq]));
  tt.ok(
    got.every((e) => seqOf.get(e.id) === e.seq),
    'every message is an added event carrying its own seq',
  );
  const firstCopies = [...new Set(got.map((e) => e.seq))];
  tt.same(
    firstCopies,
    added.map((e) => e.seq),
    `all ${added.length} events arrived, in seq order`,
  );
  tt.comment(`${got.length - firstCopies.length} duplicate(s)`);
}

/**
 * A TCP relay between the uplink and the broker that can stop passing the uplink's packets on (they vanish, as on a
 * dead link) and cut its connections; new connections pass everything again.
 */
async function relay(tt: Test, brokerPort: number): Promise<{ url: string; holdUpstream(): void; dropConnections(): void }> {
  const sockets = new Set<Socket>();
  let hold = false;
  const server = createServer((client) => {
    const upstream = createConnection({ port: brokerPort, host: '127.0.0.1' });
    sockets.add(client).add(upstream);
    client.on('data', (chunk) => {
      if (!hold) upstream.write(chunk);
    });
    upstream.pipe(client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  tt.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    holdUpstream: () => {
      hold = true;
    },
    dropConnections: () => {
      hold = false;
      for (const s of sockets) s.destroy();
    },
  };
}

function tests(): void {
  t.test('events reach a separate subscriber with their payload and are acked in the outbox', async (t) => {
    const b = await broker(t);
    const sub = await collect(b.url, `${prefix}/${gatewayId}/#`);
    t.teardown(() => sub.close());
    const r = rig(t, b.url);
    const acked: number[] = [];
    r.uplink.on('acked', (seq) => acked.push(seq));
    r.uplink.start();
    await connected(r.uplink);
    r.add(3);
    await sub.waitFor((m) => eventsIn(m).length >= 3);
    checkDelivery(t, sub.messages, r.added);
    const first = sub.messages.find((m) => m.topic === eventTopic)!;
    t.equal(first.properties?.contentType, 'application/json');
    await until('3 acks', () => acked.length === 3);
    t.same(acked, [1, 2, 3]);
    t.match(r.outbox.stats(), { pending: 0, acked: 3, lastSeq: 3 });
    t.ok(r.outbox.pending(10).length === 0);
  });

  t.test('availability: retained online on connect, retained offline on stop', async (t) => {
    const b = await broker(t);
    const live = await collect(b.url, availabilityTopic);
    t.teardown(() => live.close());
    const r = rig(t, b.url);
    r.uplink.start();
    await live.waitFor(1);
    const online = await collect(b.url, availabilityTopic);
    await online.waitFor(1);
    await online.close();
    t.equal(online.messages[0]!.retain, true, 'online is retained');
    t.match(JSON.parse(online.messages[0]!.payload), { state: 'online', version: '0.0.0-test', since: /^\d{4}-\d\d-\d\dT/ });

    await r.uplink.stop();
    await live.waitFor(2);
    const offline = await collect(b.url, availabilityTopic);
    await offline.waitFor(1);
    await offline.close();
    t.equal(offline.messages[0]!.retain, true, 'offline is retained');
    t.match(JSON.parse(offline.messages[0]!.payload), { state: 'offline', version: '0.0.0-test', since: /^\d{4}-/ });
    t.equal(live.messages.length, 2, 'a clean stop does not also fire the last will');
  });

  t.test('last will: availability goes offline when the gateway process is SIGKILLed', async (t) => {
    const b = await broker(t);
    const live = await collect(b.url, availabilityTopic);
    t.teardown(() => live.close());
    // Only the TypeScript loader: the child must not report into this test run.
    const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^_?TAP/.test(k)));
    const child = spawn(process.execPath, [...execArgv, fileURLToPath(import.meta.url)], {
      env: { ...env, EDGEPATROL_UPLINK_CHILD: JSON.stringify({ url: b.url, file: join(tempDir(t), 'outbox.db') }) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    const exited = once(child, 'exit');
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    await Promise.race([
      once(child, 'message'),
      exited.then(() => {
        throw new Error(`gateway child exited before connecting: ${stderr}`);
      }),
    ]);
    await live.waitFor((m) => m.some((x) => JSON.parse(x.payload).state === 'online'));
    child.kill('SIGKILL');
    await exited;
    await live.waitFor((m) => m.some((x) => JSON.parse(x.payload).state === 'offline'));
    const will = JSON.parse(live.messages.at(-1)!.payload) as Record<string, unknown>;
    t.same(will, { state: 'offline', version: '0.0.0-test' }, 'the will carries no since: the broker sends it as registered');
    const late = await collect(b.url, availabilityTopic);
    await late.waitFor(1);
    await late.close();
    t.equal(late.messages[0]!.retain, true);
    t.equal(JSON.parse(late.messages[0]!.payload).state, 'offline', 'offline is retained after the will');
  });

  t.test('broker down: events added meanwhile are all delivered in order after a restart on the same port', async (t) => {
    // Persistence keeps the subscriber's session across the restart, as a central service's broker would.
    const b = await broker(t, { persistence: true });
    const sub = await collect(b.url, `${prefix}/${gatewayId}/event/#`, { session: `central-${process.pid}` });
    t.teardown(() => sub.close());
    const r = rig(t, b.url);
    r.uplink.start();
    await connected(r.uplink);
    r.add(300);
    // Stop the broker in the middle of the drain, so some publishes are in flight when it goes.
    await until('some acks', () => r.outbox.stats().acked >= 20);
    const down = once(r.uplink, 'disconnected', { signal: AbortSignal.timeout(20_000) });
    await b.stop();
    await down;
    t.ok(unacked(r.outbox) > 0, `events still unacknowledged while down: ${unacked(r.outbox)}`);
    r.add(50);
    t.equal(r.uplink.status().inFlight, 0, 'nothing is published while the broker is down');
    const port = b.port;
    await b.restart();
    t.equal(b.port, port);
    await until('the outbox to drain', () => unacked(r.outbox) === 0, 60_000);
    await sub.waitFor((m) => new Set(eventsIn(m).map((e) => e.id)).size >= 350, 30_000);
    checkDelivery(t, sub.messages, r.added);
    t.match(r.outbox.stats(), { pending: 0, acked: 350 });
  });

  t.test('a backlog of 2,000 pending rows drains in order with a bounded in-flight window', async (t) => {
    const b = await broker(t);
    const sub = await collect(b.url, `${prefix}/${gatewayId}/event/#`);
    t.teardown(() => sub.close());
    const window = 32;
    const r = rig(t, b.url, { window });
    r.add(2_000);
    let largestRead = 0;
    let largestInFlight = 0;
    const pending = r.outbox.pending.bind(r.outbox);
    r.outbox.pending = (limit, afterSeq) => {
      largestRead = Math.max(largestRead, limit);
      return pending(limit, afterSeq);
    };
    const sample = (): void => {
      largestInFlight = Math.max(largestInFlight, r.uplink.status().inFlight);
    };
    const sampler = setInterval(sample, 1);
    r.uplink.on('acked', sample);
    t.teardown(() => clearInterval(sampler));
    const started = performance.now();
    r.uplink.start();
    await until('the backlog to drain', () => unacked(r.outbox) === 0, 120_000);
    const ms = performance.now() - started;
    await sub.waitFor((m) => eventsIn(m).length >= 2_000, 30_000);
    checkDelivery(t, sub.messages, r.added);
    t.ok(largestRead <= window, `never read more than a window of rows at once (${largestRead} ≤ ${window})`);
    t.ok(largestInFlight <= window, `never more than the window in flight (${largestInFlight} ≤ ${window})`);
    t.comment(
      `drained 2000 events in ${Math.round(ms)} ms (${Math.round(2000 / (ms / 1000))} events/s, window ${r.uplink.status().window})`,
    );
  });

  t.test('credentials never appear in the log, through connect, outage and reconnect', async (t) => {
    const b = await broker(t);
    const user = 'edge-user-7f3a';
    const password = 's3cret-pass-91c2';
    const url = b.url.replace('mqtt://', `mqtt://${user}:${password}@`);
    const r = rig(t, url, { username: user, password });
    r.uplink.start();
    await connected(r.uplink);
    r.add(2);
    await until('acks', () => unacked(r.outbox) === 0);
    await b.stop();
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    // Listen before the restart: the uplink may reconnect while restart() is still waiting for the broker.
    const again = connected(r.uplink);
    await b.restart();
    await again;
    await r.uplink.stop();
    const text = r.logText();
    t.match(text, /mqtt connected/);
    t.match(text, /mqtt connection lost/);
    t.match(text, /\*\*\*@127\.0\.0\.1/, 'the broker is logged without its credentials');
    t.notMatch(text, password);
    t.notMatch(text, user);
  });

  t.test('an event the broker refuses stays pending and is retried; the others are not held back', async (t) => {
    const dir = tempDir(t);
    const acl = join(dir, 'acl');
    writeFileSync(acl, `topic readwrite ${availabilityTopic}\ntopic readwrite ${eventTopic}\n`);
    const b = await broker(t, { extraConfig: [`acl_file ${acl}`] });
    const sub = await collect(b.url, `${prefix}/${gatewayId}/event/#`);
    t.teardown(() => sub.close());
    const r = rig(t, b.url, { retryMs: 200 });
    r.uplink.start();
    await connected(r.uplink);
    r.add(1);
    const forbidden = r.outbox.add({
      id: uuidv7(),
      cameraId: 'cam-1',
      type: 'x',
      topic: `${prefix}/${gatewayId}/event/forbidden`,
      payload: {},
    });
    r.uplink.notify();
    r.add(1);
    await sub.waitFor((m) => eventsIn(m).length >= 2);
    await until('a few retries', () => (r.outbox.pending(1)[0]?.attempts ?? 0) >= 3, 20_000);
    const [row] = r.outbox.pending(10);
    t.equal(row?.seq, forbidden.seq, 'only the refused event is still pending');
    t.match(r.outbox.stats(), { pending: 0, sent: 1, acked: 2 });
    t.match(r.logText(), /broker refused a message/);
  });

  t.test('a resumed session re-sends the events in flight once, from the outbox only (not also from mqtt.js memory)', async (t) => {
    const b = await broker(t);
    const proxy = await relay(t, b.port);
    const sub = await collect(b.url, `${prefix}/${gatewayId}/event/#`);
    t.teardown(() => sub.close());
    const r = rig(t, proxy.url);
    r.uplink.start();
    await connected(r.uplink);
    r.add(5);
    await sub.waitFor((m) => eventsIn(m).length >= 5);
    await until('5 acks', () => r.outbox.stats().acked === 5);
    // Publishes now go nowhere and get no PUBACK: a full window is in flight when the connection drops.
    proxy.holdUpstream();
    r.add(50);
    await until('a full window in flight', () => r.uplink.status().inFlight === r.uplink.status().window);
    const back = once(r.uplink, 'connected', { signal: AbortSignal.timeout(20_000) });
    proxy.dropConnections();
    await back;
    await until('the outbox to drain', () => unacked(r.outbox) === 0);
    await sub.waitFor((m) => eventsIn(m).length >= 55);
    await new Promise((resolve) => setTimeout(resolve, 300));
    checkDelivery(t, sub.messages, r.added);
    t.equal(eventsIn(sub.messages).length, 55, 'no event arrived twice: the copies mqtt.js held were not sent as well');
    t.match(r.outbox.stats(), { pending: 0, sent: 0, acked: 55 });
    t.match(r.logText(), /"sessionPresent":true/, 'the broker had kept the session');
  });

  t.test('stop() while the broker is unreachable returns promptly and keeps events pending', async (t) => {
    const b = await broker(t);
    const r = rig(t, b.url);
    await b.stop();
    r.add(3);
    r.uplink.start();
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    const started = performance.now();
    await r.uplink.stop();
    t.ok(performance.now() - started < 2_000, 'no wait for a broker that is not there');
    t.match(r.outbox.stats(), { pending: 3, acked: 0 });
  });

  t.test('an unreadable TLS file stops start() with the file named', async (t) => {
    const r = rig(t, 'mqtts://127.0.0.1:1', { tls: { ca: '/nonexistent/ca.pem' } });
    t.throws(() => r.uplink.start(), /TLS CA file \/nonexistent\/ca\.pem/);
  });

  t.test('mutual TLS: client certificate required by the broker', async (t) => {
    const dir = tempDir(t);
    const pki = makePki(dir, 'edgepatrol', gatewayId);
    const b = await broker(t, { tls: { cafile: pki.ca, certfile: pki.serverCert, keyfile: pki.serverKey } });
    const tlsClient = { ca: pki.caPem(), cert: pki.clientPem().cert, key: pki.clientPem().key };
    const sub = await collect(b.url, `${prefix}/${gatewayId}/#`, { clientOptions: tlsClient });
    t.teardown(() => sub.close());

    await t.rejects(
      mqtt.connectAsync(b.url, { protocolVersion: 5, ca: tlsClient.ca, reconnectPeriod: 0, connectTimeout: 10_000 }),
      'a client without a certificate is refused',
    );

    const r = rig(t, b.url, { tls: { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey } });
    r.uplink.start();
    await connected(r.uplink);
    r.add(5);
    await sub.waitFor((m) => eventsIn(m).length >= 5);
    checkDelivery(t, sub.messages, r.added);
    await until('acks', () => unacked(r.outbox) === 0);
  });
}
