// The agent end to end: real clip → ffmpeg → real model → rules → SQLite outbox → real Mosquitto → a subscriber.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, existsSync, copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startMosquitto, collect, type Received } from './helpers/mosquitto.js';
import { clipCamera, gatewayConfig, outboxRows, root, runCli, tempDir, until, writeConfig } from './helpers/agent.js';
import { eventPayloadSchema } from '../src/agent/event.js';
import { healthPayloadSchema } from '../src/health/index.js';
import { docSchemaProblems } from './helpers/schemas.js';

const events = (msgs: Received[]): Received[] => msgs.filter((m) => m.topic.includes('/event/'));
/** Outbox rows are messages: each event state (started, updated, ended) is one, keyed by its messageId. */
const ids = (msgs: Received[]): string[] => events(msgs).map((m) => (JSON.parse(m.payload) as { messageId: string }).messageId);

async function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}

t.test('a subscriber receives the events with the documented payload, evidence on disk matches', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('e2e');
  const dataDir = join(dir, 'data');
  const config = writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-a', { name: 'Walkway A' })]));

  const agent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await sub.waitFor((m) => events(m).length >= 3, 90_000);

  const online = sub.messages.find((m) => m.topic === 'ept/gw-test-01/availability');
  t.ok(online?.retain || online, 'availability published');
  t.match(JSON.parse(online!.payload), { state: 'online', version: /^\d+\.\d+\.\d+/ });

  for (const m of events(sub.messages)) {
    t.equal(docSchemaProblems('event', JSON.parse(m.payload)), null, 'valid against docs/schemas/event.schema.json');
    const ev = eventPayloadSchema.parse(JSON.parse(m.payload));
    t.equal(m.topic, `ept/gw-test-01/event/${ev.type}`, 'topic is {prefix}/{gateway}/event/{type}');
    t.equal(ev.camera.id, 'cam-a');
    t.equal(ev.camera.name, 'Walkway A');
    t.equal(ev.location.grid, 'FT-XMH-0101');
    t.ok(
      ev.objects.every((o) => o.class === 'person'),
      'only people fire the person rule',
    );
    const file = join(dataDir, ev.evidence.annotated.file);
    t.ok(existsSync(file), `evidence ${ev.evidence.annotated.file} exists`);
    t.equal(createHash('sha256').update(readFileSync(file)).digest('hex'), ev.evidence.annotated.sha256, 'evidence sha256 matches');
    t.equal(readFileSync(file).subarray(0, 2).toString('hex'), 'ffd8', 'evidence is a JPEG');
  }
  const seqs = events(sub.messages).map((m) => (JSON.parse(m.payload) as { seq: number }).seq);
  t.same(
    seqs,
    [...seqs].sort((a, b) => a - b),
    'events arrive in seq order',
  );

  await sub.waitFor((m) => m.some((x) => x.topic === 'ept/gw-test-01/health'), 30_000);
  const healthJson = JSON.parse(sub.messages.find((x) => x.topic === 'ept/gw-test-01/health')!.payload) as unknown;
  t.equal(docSchemaProblems('health', healthJson), null, 'valid against docs/schemas/health.schema.json');
  t.equal(docSchemaProblems('availability', JSON.parse(online!.payload)), null, 'valid against docs/schemas/availability.schema.json');
  const health = healthPayloadSchema.parse(healthJson);
  t.equal(health.cameras[0]?.id, 'cam-a', 'health carries the camera');
  t.equal(health.cameras[0]?.state, 'streaming');
  const evidence = sub.messages.filter((m) => m.topic.startsWith('ept/gw-test-01/evidence/'));
  t.ok(evidence.length >= 1, `${evidence.length} evidence messages`);
  t.equal(evidence[0]!.properties?.contentType, 'image/jpeg', 'evidence has a content type');

  const exit = await agent.stop('SIGTERM');
  t.equal(exit.code, 0, 'SIGTERM stops the agent cleanly');
  await sub.waitFor((m) => m.some((x) => x.topic.endsWith('/availability') && x.payload.includes('"offline"')), 10_000);
  const rows = outboxRows(dataDir);
  t.ok(rows.length >= 3, `${rows.length} events in the outbox`);
  const last = JSON.parse(rows.at(-1)!.payload) as { state: string; endReason?: string };
  t.match(last, { state: 'ended', endReason: 'agent_stopped' }, 'a clean stop ends the open event');
  await sub.waitFor((m) => events(m).some((x) => (JSON.parse(x.payload) as { state: string }).state === 'ended'), 10_000);
  t.pass('the ended message reached the subscriber before the agent exited');
  const received = new Set(ids(sub.messages));
  t.ok(
    rows.filter((r) => r.state === 'acked').every((r) => received.has(r.id)),
    'every acked row reached the subscriber',
  );
  t.notOk(agent.stderr().includes('"level":50'), 'no error logged');
});

t.test('broker down: events stay in SQLite and all arrive, in order, when it is back', async (t) => {
  const broker = await startMosquitto({ persistence: true });
  t.teardown(() => broker.stop());
  // A persistent session, so the broker keeps what is published while this subscriber is away.
  const session = `central-${process.pid}`;
  const first = await collect(broker.url, 'ept/+/event/#', { session });
  await first.close();
  await broker.stop({ signal: 'SIGTERM' });

  const dir = tempDir('outage');
  const dataDir = join(dir, 'data');
  const config = writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-a')]));
  const agent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await until('4 events stored while the broker is down', () => outboxRows(dataDir).length >= 4, 90_000);
  t.ok(
    outboxRows(dataDir).every((r) => r.state === 'pending'),
    'nothing is acked while the broker is down',
  );

  await broker.restart();
  const sub = await collect(broker.url, 'ept/+/event/#', { session });
  t.teardown(() => sub.close());
  await until(
    'the outage backlog acked',
    () => {
      const rows = outboxRows(dataDir);
      return rows.slice(0, 4).every((r) => r.state === 'acked');
    },
    60_000,
  );
  const stopped = await agent.stop('SIGTERM');
  t.equal(stopped.code, 0);

  const rows = outboxRows(dataDir).filter((r) => r.state === 'acked');
  await sub.waitFor((m) => rows.every((r) => ids(m).includes(r.id)), 30_000);
  const firstSeen: number[] = [];
  for (const m of events(sub.messages)) {
    const { seq } = JSON.parse(m.payload) as { seq: number };
    if (!firstSeen.includes(seq)) firstSeen.push(seq);
  }
  t.same(
    firstSeen,
    [...firstSeen].sort((a, b) => a - b),
    'first copies arrive in seq order',
  );
  t.ok(firstSeen.length >= 4, `${firstSeen.length} events delivered after the outage`);
  const byId = new Map<string, string>();
  for (const m of events(sub.messages)) {
    const ev = JSON.parse(m.payload) as { messageId: string };
    if (byId.has(ev.messageId)) t.equal(m.payload, byId.get(ev.messageId), 'a duplicate carries the same payload');
    byId.set(ev.messageId, m.payload);
  }
});

t.test('SIGKILL and restart: nothing committed is lost, the last will says offline', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('kill');
  const dataDir = join(dir, 'data');
  const config = writeConfig(dir, gatewayConfig(dir, broker.url, [clipCamera('cam-a')]));

  const a1 = runCli(['run', '--config', config]);
  t.teardown(() => a1.stop('SIGKILL'));
  await until('3 events stored', () => outboxRows(dataDir).length >= 3, 90_000);
  const killed = await a1.stop('SIGKILL');
  t.equal(killed.signal, 'SIGKILL');
  await sub.waitFor((m) => m.some((x) => x.topic === 'ept/gw-test-01/availability' && x.payload.includes('"offline"')), 20_000);
  const before = outboxRows(dataDir);

  const a2 = runCli(['run', '--config', config]);
  t.teardown(() => a2.stop('SIGKILL'));
  await until('2 more events after the restart', () => outboxRows(dataDir).length >= before.length + 2, 90_000);
  await until('everything acked', () => outboxRows(dataDir).every((r) => r.state === 'acked'), 60_000);
  t.equal((await a2.stop('SIGTERM')).code, 0);

  const rows = outboxRows(dataDir);
  t.same(
    rows.slice(0, before.length).map((r) => r.id),
    before.map((r) => r.id),
    'rows committed before the kill are still there',
  );
  await sub.waitFor((m) => rows.every((r) => ids(m).includes(r.id)), 30_000);
  t.pass(`all ${rows.length} committed events reached the subscriber`);
  for (const r of rows) t.ok(existsSync(join(dataDir, r.evidence_path)), `evidence of seq ${r.seq} kept`);
  const seqs = rows.map((r) => r.seq);
  t.same(
    seqs,
    [...new Set(seqs)].sort((a, b) => a - b),
    'seq strictly increasing across the restart',
  );
});

t.test('an invalid config exits 2 and lists every error with its path; nothing starts', async (t) => {
  const dir = tempDir('badcfg');
  const config = writeConfig(dir, {
    gateway: { id: 'gw 1', dataDir: join(dir, 'data') },
    mqtt: { url: 'http://broker' },
    cameras: [
      clipCamera('cam-a'),
      {
        ...clipCamera('cam-b'),
        zones: [
          {
            id: 'z',
            polygon: [
              [0, 0],
              [1.5, 0],
              [1, 1],
            ],
            rules: [],
          },
        ],
      },
    ],
  });
  const run = runCli(['run', '--config', config]);
  const { code } = await run.exited;
  t.equal(code, 2);
  const err = run.stderr();
  t.match(err, config, 'names the file');
  t.match(err, 'gateway.id');
  t.match(err, 'mqtt.url');
  t.match(err, /cameras\[1\]\.zones\[0\]\.polygon/);
  t.notOk(existsSync(join(dir, 'data')), 'no data folder created');

  const unknownClass = writeConfig(
    dir,
    gatewayConfig(dir, 'mqtt://127.0.0.1:1', [
      clipCamera('cam-a', {
        zones: [
          {
            id: 'z',
            polygon: [
              [0, 0],
              [1, 0],
              [1, 1],
            ],
            rules: [{ kind: 'presence', type: 'x', classes: ['persn'] }],
          },
        ],
      }),
    ]),
  );
  const run2 = runCli(['run', '--config', unknownClass]);
  t.equal((await run2.exited).code, 2);
  t.match(run2.stderr(), /cameras\[0\]\.zones\[0\]\.rules\[0\]\.classes\[0\]/, 'an unknown class is named by path');
});

t.test('a missing video and a bad RTSP URL are named per camera; the other camera keeps producing events', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('badcam');
  const missing = join(dir, 'no-such-clip.avi');
  const port = await freePort();
  const config = writeConfig(
    dir,
    gatewayConfig(dir, broker.url, [
      clipCamera('cam-missing', { source: { file: missing } }),
      clipCamera('cam-refused', { source: { url: `rtsp://admin:secret@127.0.0.1:${port}/stream1` } }),
      clipCamera('cam-good'),
    ]),
  );
  const agent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));
  await agent.waitForLog(/cam-missing: failed[^\n]*no-such-clip\.avi/);
  await agent.waitForLog(/cam-refused: backoff[^\n]*(refused|Connection)/i);
  await sub.waitFor((m) => events(m).length >= 2, 90_000);
  t.ok(
    events(sub.messages).every((m) => JSON.parse(m.payload).camera.id === 'cam-good'),
    'events come from the good camera',
  );
  t.notMatch(agent.stderr(), 'secret', 'the camera password never reaches the log');
  t.equal((await agent.stop('SIGTERM')).code, 0);
});

t.test('a missing model and a model whose sha256 does not match are refused, naming the file', async (t) => {
  const dir = tempDir('badmodel');
  const models = join(dir, 'models');
  mkdirSync(models);
  copyFileSync(join(root, 'models', 'manifest.json'), join(models, 'manifest.json'));
  const manifest = JSON.parse(readFileSync(join(models, 'manifest.json'), 'utf8')) as {
    default: string;
    models: Record<string, { file: string }>;
  };
  const modelFile = manifest.models[manifest.default]!.file;
  const config = writeConfig(dir, gatewayConfig(dir, 'mqtt://127.0.0.1:1', [clipCamera('cam-a')]));

  const r1 = runCli(['run', '--config', config, '--models-dir', models]);
  t.equal((await r1.exited).code, 3, 'missing model: exit 3');
  t.match(r1.stderr(), join(models, modelFile), 'names the missing file');
  t.match(r1.stderr(), /setup/, 'says how to get it');

  const bytes = readFileSync(join(root, 'models', modelFile));
  const at = bytes.length - 100;
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(join(models, modelFile), bytes);
  const r2 = runCli(['run', '--config', config, '--models-dir', models]);
  t.equal((await r2.exited).code, 3, 'hash mismatch: exit 3');
  t.match(r2.stderr(), /sha256/);
  t.match(r2.stderr(), join(models, modelFile));
  t.notOk(existsSync(join(dir, 'data', 'outbox.db')), 'nothing started');
});
