import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { contractProblem, runTail } from '../src/cli/tail.js';
import { HealthSampler, healthPayloadSchema } from '../src/health/index.js';
import { createLogger } from '../src/log.js';
import { Outbox, type OutboxOptions } from '../src/outbox/index.js';
import { Uplink, type UplinkOptions } from '../src/uplink/index.js';
import { contractSchemaFiles } from '../src/uplink/schemas.js';
import { brokerFor, collect, tempDirFor, type Received } from './helpers/mosquitto.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = 'edgepatrol';
const gatewayId = 'gw-1';
const log = createLogger({ level: 'silent' });

function tempDir(tt: Test): string {
  return tempDirFor(tt, 'contract');
}

function broker(tt: Test, opts?: Parameters<typeof brokerFor>[1]): ReturnType<typeof brokerFor> {
  return brokerFor(tt, opts);
}

async function until(what: string, done: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function gateway(tt: Test, url: string, outboxOpts: OutboxOptions = {}, uplinkOpts: Partial<UplinkOptions> = {}) {
  const dir = tempDir(tt);
  const outbox = Outbox.open(join(dir, 'outbox.db'), { alerts: { prefix, gatewayId }, ...outboxOpts });
  const uplink = new Uplink({
    url,
    prefix,
    gatewayId,
    outbox,
    log,
    version: '0.0.0-test',
    reconnect: { initialMs: 200, maxMs: 1_000 },
    maintainMs: 200,
    ...uplinkOpts,
  });
  tt.teardown(async () => {
    await uplink.stop();
    outbox.close();
  });
  const added: { seq: number; id: string; image?: Buffer }[] = [];
  return {
    dir,
    outbox,
    uplink,
    added,
    /** An event message whose payload carries its messageId and seq, optionally with an evidence image of `imageBytes`. */
    add(imageBytes = 0, cameraId = 'cam-1'): void {
      const id = uuidv7();
      let image: Buffer | undefined;
      let evidence = {};
      if (imageBytes > 0) {
        image = randomBytes(imageBytes);
        mkdirSync(join(dir, 'evidence'), { recursive: true });
        writeFileSync(join(dir, 'evidence', `${id}.jpg`), image);
        evidence = { evidencePath: `evidence/${id}.jpg`, evidenceSha256: createHash('sha256').update(image).digest('hex') };
      }
      const { seq } = outbox.add({ id, cameraId, type: 'presence', topic: `${prefix}/${gatewayId}/event/presence`, ...evidence }, (s) => ({
        messageId: id,
        seq: s,
        cameraId,
      }));
      added.push({ seq, id, image });
      uplink.notify();
    },
  };
}

/** Concatenates evidence parts per message id in part order. */
function images(messages: Received[]): Map<string, { image: Buffer; parts: number; sha256: string }> {
  const byId = new Map<string, Received[]>();
  for (const m of messages.filter((x) => x.topic.includes('/evidence/'))) {
    const id = (m.properties!.userProperties as Record<string, string>).messageId!;
    byId.set(id, [...(byId.get(id) ?? []), m]);
  }
  const out = new Map<string, { image: Buffer; parts: number; sha256: string }>();
  for (const [id, parts] of byId) {
    const props = (m: Received) => m.properties!.userProperties as Record<string, string>;
    const n = Number(props(parts[0]!).parts);
    const ordered = Array.from({ length: n }, (_v, i) => parts.find((p) => Number(props(p).part) === i + 1)!);
    out.set(id, { image: Buffer.concat(ordered.map((p) => p.raw)), parts: n, sha256: props(parts[0]!).sha256! });
  }
  return out;
}

t.test("docs/schemas are generated from the code's schemas and the AsyncAPI document names every channel", async (t) => {
  const files = contractSchemaFiles();
  for (const [name, text] of Object.entries(files)) {
    const file = join(root, 'docs/schemas', name);
    if (t.writeSnapshot) {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, text);
    }
    t.equal(readFileSync(file, 'utf8'), text, `${name} is stale: regenerate with \`npx tap --snapshot test/contract.test.ts\``);
  }
  const asyncapi = readFileSync(join(root, 'docs/asyncapi.yaml'), 'utf8');
  t.match(asyncapi, /^asyncapi: 3\.0\.0$/m);
  for (const name of [...Object.keys(files), 'event.schema.json'])
    t.match(asyncapi, `./schemas/${name}`, `asyncapi.yaml references ${name}`);
  for (const channel of [
    'availability',
    'health',
    'event/{type}',
    'alert/{kind}',
    'evidence/{messageId}',
    'ack',
    'request/{verb}',
    'response/{verb}',
  ]) {
    t.match(asyncapi, `'{prefix}/{gatewayId}/${channel}'`, `channel ${channel}`);
  }
});

t.test(
  "every message the uplink publishes conforms: evidence split to the broker's packet size, health, alerts, availability, service acks",
  async (t) => {
    const maxPacket = 4_096;
    const b = await broker(t, { extraConfig: [`max_packet_size ${maxPacket}`] });
    const sub = await collect(b.url, `${prefix}/#`);
    t.teardown(() => sub.close());
    // A small cap so the fourth image forces an eviction (an outbox_drop alert); service delivery to exercise acks.
    const g = gateway(t, b.url, { delivery: 'service', maxBytes: 40_000 });
    const confirmed: string[] = [];
    g.uplink.on('confirmed', (ids) => confirmed.push(...ids));
    g.uplink.start();
    await once(g.uplink, 'connected');
    t.equal(g.uplink.status().maxPacketSize, maxPacket, "the uplink read the broker's maximum packet size");
    g.add(10_000);
    g.add(0);
    g.add(15_000, 'cam-2');
    g.add(20_000);
    const sampler = new HealthSampler({ gatewayId, version: '0.0.0-test', dataDir: g.dir });
    t.ok(
      g.uplink.publishHealth(
        sampler.sample({
          outbox: g.outbox,
          uplink: g.uplink.status(),
          cameras: [{ id: 'cam-1', state: 'streaming', framesIn: 10, events: 3 }],
          config: {
            reloads: { applied: 1, refused: 1 },
            lastReload: {
              at: new Date().toISOString(),
              result: 'refused',
              error: 'gw.yaml: 1 config problem: cameras[0].detect.fps: expected a number',
              added: [],
              removed: [],
              restarted: [],
              unchanged: ['cam-1'],
              needsRestart: [],
              durationMs: 3,
            },
          },
        }),
      ),
    );

    await until('all rows acked', () => g.outbox.stats().acked + g.outbox.stats().confirmed === g.outbox.stats().lastSeq, 30_000);
    const published = g.outbox.list({ limit: 100 });
    // The task service's part: ack every event and alert by message id.
    const service = await mqtt.connectAsync(b.url, { protocolVersion: 5 });
    t.teardown(() => service.endAsync(true));
    await service.publishAsync(
      `${prefix}/${gatewayId}/ack`,
      JSON.stringify({ schema: 'edgepatrol.ack/1', ids: published.map((r) => r.id) }),
      { qos: 1 },
    );
    await until('confirmations', () => g.outbox.stats().confirmed === published.length);
    t.same(confirmed.sort(), published.map((r) => r.id).sort(), 'the confirmed event carries the acked ids');
    await g.uplink.stop();
    await sub.waitFor((m) => m.some((x) => x.topic.endsWith('/availability') && JSON.parse(x.payload).state === 'offline'));

    const problems = sub.messages
      .filter((m) => !m.topic.includes('/event/') && !m.topic.endsWith('/ack'))
      .map((m) => [m.topic, contractProblem(m.topic, m.raw, m.properties)])
      .filter(([, p]) => p !== null);
    t.same(problems, [], 'availability, health, alert and evidence messages all match their schemas');
    const kinds = new Set(sub.messages.map((m) => m.topic.split('/')[2]));
    for (const k of ['availability', 'health', 'event', 'evidence', 'alert', 'ack']) t.ok(kinds.has(k), `saw ${k}`);

    const health = healthPayloadSchema.parse(JSON.parse(sub.messages.find((m) => m.topic.endsWith('/health'))!.payload));
    t.equal(health.cameras[0]?.id, 'cam-1');
    t.ok(health.disk && health.disk.totalBytes > 0, 'disk of the data folder');

    const alert = sub.messages.find((m) => m.topic === `${prefix}/${gatewayId}/alert/outbox_drop`);
    t.ok(alert, 'the eviction was announced');
    t.match(JSON.parse(alert!.payload), {
      kind: 'outbox_drop',
      detail: { dropped: [{ what: 'evidence', reason: 'full', priority: 'normal', count: 1 }] },
    });

    const events = sub.messages.filter((m) => m.topic.includes('/event/'));
    for (const row of published.filter((r) => r.cameraId !== '_gateway')) {
      t.equal(
        events.find((m) => JSON.parse(m.payload).messageId === row.id)?.payload,
        row.payload,
        `event seq ${row.seq} published verbatim`,
      );
    }
    const got = images(sub.messages);
    for (const e of g.added.filter((a) => a.image)) {
      const row = g.outbox.get(e.id)!;
      const img = got.get(e.id);
      if (row.evidenceState === 'dropped') continue;
      t.ok(img, `evidence of seq ${e.seq} arrived`);
      t.ok(img!.image.equals(e.image!), `reassembled image of seq ${e.seq} is the file, byte for byte (${img!.parts} parts)`);
      t.equal(createHash('sha256').update(img!.image).digest('hex'), img!.sha256, 'sha256 property matches');
      t.ok(img!.parts >= Math.ceil(e.image!.length / maxPacket), `split to fit ${maxPacket}-byte packets`);
    }
    t.ok(
      sub.messages.filter((m) => m.topic.includes('/evidence/')).every((m) => m.raw.length < maxPacket),
      'every part fits',
    );
    t.ok(
      [...got.keys()].every((id) => g.added.some((a) => a.id === id && a.image)),
      'every image received belongs to an event that had one',
    );
  },
);

t.test('the documented ACL: a gateway works under it and cannot publish outside its own topics', async (t) => {
  const dir = tempDir(t);
  const doc = readFileSync(join(root, 'docs/delivery.md'), 'utf8');
  const acl = /## Broker ACL[\s\S]*?```conf\n([\s\S]*?)```/.exec(doc)?.[1];
  t.ok(acl, 'docs/delivery.md has the ACL block');
  writeFileSync(join(dir, 'acl'), acl!);
  const b = await broker(t, { extraConfig: [`acl_file ${join(dir, 'acl')}`] });
  const central = await collect(b.url, `${prefix}/+/event/#`, { clientOptions: { username: 'task-service' } });
  t.teardown(() => central.close());
  const g = gateway(t, b.url, { delivery: 'service' }, { username: gatewayId });
  g.uplink.start();
  await once(g.uplink, 'connected');
  g.add(0);
  g.add(2_000);
  await central.waitFor(2);
  await until('broker acks', () => g.outbox.stats().acked === 2);
  await central.client.publishAsync(`${prefix}/${gatewayId}/ack`, JSON.stringify({ ids: g.added.map((a) => a.id) }), { qos: 1 });
  await until("the service's acks reach the gateway through the ACL", () => g.outbox.stats().confirmed === 2);

  const rogue = await mqtt.connectAsync(b.url, { protocolVersion: 5, username: gatewayId });
  t.teardown(() => rogue.endAsync(true));
  for (const topic of [`${prefix}/gw-2/event/presence`, `${prefix}/${gatewayId}/ack`, 'elsewhere/x']) {
    await t.rejects(rogue.publishAsync(topic, '{}', { qos: 1 }), /not authorized/i, `gateway ${gatewayId} may not publish on ${topic}`);
  }
  // Mosquitto grants the subscription and filters on delivery: what counts is that nothing arrives.
  const snooped: string[] = [];
  rogue.on('message', (topic) => snooped.push(topic));
  await rogue.subscribeAsync(`${prefix}/gw-2/ack`, { qos: 1 });
  await central.client.publishAsync(`${prefix}/gw-2/ack`, JSON.stringify({ ids: [uuidv7()] }), { qos: 1 });
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.same(snooped, [], "it does not receive another gateway's acks");
  t.equal(central.messages.length, 2, 'nothing from the rogue publishes reached the central consumer');
});

t.test('two `tail --share` consumers split the stream: together every event exactly once, byte for byte', async (t) => {
  const b = await broker(t);
  const outputs = [[] as string[], [] as string[]];
  let subscribed = 0;
  const stop = new AbortController();
  const tails = outputs.map((lines) =>
    runTail(
      { url: b.url, prefix, share: 'central', ack: false, check: false },
      {
        out: (s) => lines.push(...s.split('\n').filter(Boolean)),
        err: (s) => {
          if (s.includes('subscribed to $share/central/')) subscribed++;
        },
        signal: stop.signal,
      },
    ),
  );
  // Both members must be subscribed before the first publish, or the first one gets everything.
  await until('both consumers subscribed', () => subscribed === 2);
  const g = gateway(t, b.url);
  g.uplink.start();
  for (let i = 0; i < 200; i++) g.add(0, `cam-${i % 3}`);
  const eventLines = () => outputs.flat().filter((l) => l.includes('/event/'));
  await until('200 events across the group', () => eventLines().length >= 200, 30_000);
  await new Promise((resolve) => setTimeout(resolve, 300));
  stop.abort();
  const codes = await Promise.all(tails);
  t.same(codes, [0, 0], 'both exit cleanly');
  const received = eventLines().map((l) => l.slice(l.indexOf(' ') + 1));
  const expected = g.outbox.list({ limit: 1000 }).map((r) => r.payload);
  t.same([...received].sort(), [...expected].sort(), 'the union is every event exactly once, payloads as published');
  const split = outputs.map((lines) => lines.filter((l) => l.includes('/event/')).length);
  t.ok(
    split.every((n) => n > 0),
    `both consumers got a share: ${split.join(' + ')}`,
  );
  for (const lines of outputs) {
    const seqs = lines.filter((l) => l.includes('/event/')).map((l) => (JSON.parse(l.slice(l.indexOf(' ') + 1)) as { seq: number }).seq);
    t.same(
      seqs,
      [...seqs].sort((a, c) => a - c),
      'each consumer sees its share in seq order',
    );
  }
});

t.test('tail --ack confirms events for delivery: service, and --save-evidence reassembles and checks images', async (t) => {
  const b = await broker(t, { extraConfig: ['max_packet_size 2048'] });
  const dir = tempDir(t);
  const lines: string[] = [];
  const stop = new AbortController();
  const tail = runTail(
    { url: b.url, prefix, ack: true, check: false, saveEvidence: join(dir, 'saved') },
    { out: (s) => lines.push(s), err: () => {}, signal: stop.signal },
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  const g = gateway(t, b.url, { delivery: 'service' });
  g.uplink.start();
  g.add(7_000);
  g.add(0);
  await until('confirmed by tail', () => g.outbox.stats().confirmed === 2);
  await until('the image saved', () => lines.some((l) => l.startsWith('saved evidence')));
  stop.abort();
  t.equal(await tail, 0);
  const saved = readdirSync(join(dir, 'saved'));
  t.same(saved, [`${g.added[0]!.id}.jpg`]);
  t.ok(readFileSync(join(dir, 'saved', saved[0]!)).equals(g.added[0]!.image!), 'byte for byte');
});
