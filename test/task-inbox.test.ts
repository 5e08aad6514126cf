import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import { gatewayTopics } from '../src/common/topics.js';
import { createLogger } from '../src/log.js';
import { Subscriptions } from '../src/uplink/inbound.js';
import { canonicalJson, parsePrivateKey, parsePublicKey, signTask, verifyTask } from '../src/common/signing.js';
import { parseConfig } from '../src/config/load.js';
import { migrations } from '../src/outbox/migrations.js';
import { Outbox, type StateMessage } from '../src/outbox/index.js';
import { taskSchema } from '../src/tasks/index.js';
import { tempDirFor } from './helpers/mosquitto.js';

const stateMessage = (taskId: string, state: string): StateMessage => ({
  topic: `ep/gw/task/${taskId}/state`,
  build: (seq, at, gatewaySeq) => ({ taskId, state, seq, at, gatewaySeq }),
});

t.test('canonical JSON: sorted keys at every depth, no white space', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 'é' }], c: null } }), '{"a":{"c":null,"d":[3,{"y":"é","z":1}]},"b":1}');
  t.equal(canonicalJson({ a: undefined, b: true }), '{"b":true}', 'an undefined field is left out, as JSON.stringify does');
  t.throws(() => canonicalJson({ a: Number.NaN }), /no JSON form/);
});

t.test('Ed25519: sign and verify a task; any change, another key or a malformed signature fails', async (t) => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const pem = publicKey.export({ format: 'pem', type: 'spki' }).toString();
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64');
  const task = { schema: 'edgepatrol.task/1', id: 't-1', kind: 'snapshot', camera: 'cam1', issuedAt: '2026-01-01T00:00:00Z' };
  const signed = signTask(task, parsePrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()));
  for (const key of [parsePublicKey(pem), parsePublicKey(raw)]) {
    t.ok(verifyTask(signed, key), 'verifies with the PEM and the raw base64 form of the key');
    t.ok(verifyTask(Object.fromEntries(Object.entries(signed).reverse()), key), 'key order does not matter');
    t.notOk(verifyTask({ ...signed, camera: 'cam2' }, key), 'a changed field fails');
    t.notOk(verifyTask({ ...signed, extra: 1 }, key), 'an added field fails');
    t.notOk(verifyTask({ ...signed, signature: 'AAAA' }, key), 'a short signature fails');
    t.notOk(verifyTask({ ...signed, signature: 'not base64!' }, key), 'a malformed signature fails');
    t.notOk(verifyTask(task, key), 'no signature fails');
  }
  t.notOk(verifyTask(signed, generateKeyPairSync('ed25519').publicKey), 'another key fails');
  t.throws(() => parsePublicKey('abc'), /base64 of a raw 32-byte Ed25519 key/);
  t.throws(() => parsePublicKey('-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----'), /not a readable PEM public key/);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'pem', type: 'spki' }).toString();
  t.throws(() => parsePublicKey(rsa), /expected an Ed25519 key, got rsa/);
  t.ok(taskSchema.safeParse(signed).success, 'the signed task matches the contract');
});

t.test('config: tasks.requireSignature follows tasks.publicKey unless set; a bad key is named', async (t) => {
  const base = 'gateway: { id: gw-1, dataDir: /tmp/x }\nmqtt: { url: "mqtt://127.0.0.1:1883" }\ncameras: []\n';
  t.same(parseConfig(base, 'a.yaml').tasks, { requireSignature: false, clockSkewSeconds: 600, configTimeoutSeconds: 30 });
  const raw = Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x!, 'base64url').toString('base64');
  t.equal(parseConfig(`${base}tasks: { publicKey: "${raw}" }\n`, 'a.yaml').tasks.requireSignature, true);
  t.equal(parseConfig(`${base}tasks: { publicKey: "${raw}", requireSignature: false }\n`, 'a.yaml').tasks.requireSignature, false);
  t.throws(() => parseConfig(`${base}tasks: { publicKey: "abc" }\n`, 'a.yaml'), /tasks\.publicKey[\s\S]*32-byte Ed25519/);
  t.throws(() => parseConfig(`${base}tasks: { requireSignature: true }\n`, 'a.yaml'), /no publicKey is set/);
});

t.test('inbox: a state change and its state row commit together, with seq per task and high priority', async (t) => {
  const outbox = Outbox.open(join(tempDirFor(t, 'inbox'), 'outbox.db'));
  t.teardown(() => outbox.close());
  const rec = { id: 'a', kind: 'snapshot', cameraId: 'cam1', payload: '{"id":"a"}', version: 1 };
  t.equal(outbox.tasks.insert(rec, 'accepted', null, stateMessage('a', 'accepted')), 1);
  t.equal(outbox.tasks.move('a', 'running', null, stateMessage('a', 'running')), 2);
  t.throws(() => outbox.tasks.insert(rec, 'accepted', null, stateMessage('a', 'accepted')), /UNIQUE/, 'an id is stored once');
  t.throws(() => outbox.tasks.move('nope', 'failed', 'x', stateMessage('nope', 'failed')), /no task nope/);
  t.equal(outbox.tasks.replace({ ...rec, version: 2 }, 'accepted', null, stateMessage('a', 'accepted')), 3);
  const rows = outbox.list();
  t.same(
    rows.map((r) => [r.topic, r.priority, JSON.parse(r.payload).seq, JSON.parse(r.payload).gatewaySeq]),
    [
      ['ep/gw/task/a/state', 'high', 1, rows[0]!.seq],
      ['ep/gw/task/a/state', 'high', 2, rows[1]!.seq],
      ['ep/gw/task/a/state', 'high', 3, rows[2]!.seq],
    ],
    'one state row per change (none for the refused ones), in order',
  );
  t.match(outbox.tasks.get('a'), { state: 'accepted', version: 2, stateSeq: 3 });
  t.same(
    outbox.tasks.open().map((r) => r.id),
    ['a'],
  );
  outbox.tasks.saveCheckpoint('a', { step: 2 });
  t.equal(outbox.tasks.get('a')!.checkpoint, '{"step":2}');
});

t.test('inbox: task states outlive low-priority events under the byte cap', async (t) => {
  const outbox = Outbox.open(join(tempDirFor(t, 'inbox-cap'), 'outbox.db'), { maxBytes: 20_000 });
  t.teardown(() => outbox.close());
  const low = (i: number) => ({
    id: uuidv7(),
    cameraId: 'cam1',
    type: 'x',
    topic: 'ep/gw/event/x',
    priority: 'low' as const,
    payload: { i, pad: 'p'.repeat(900) },
  });
  for (let i = 0; i < 5; i++) outbox.add(low(i));
  for (const id of ['s1', 's2', 's3'])
    outbox.tasks.insert(
      { id, kind: 'snapshot', cameraId: 'cam1', payload: '{}', version: 1 },
      'accepted',
      null,
      stateMessage(id, 'accepted'),
    );
  for (let i = 5; i < 60; i++) outbox.add(low(i));
  const rows = outbox.list({ limit: 1000 });
  t.equal(rows.filter((r) => r.topic.endsWith('/state')).length, 3, 'every task state kept');
  t.ok(outbox.stats().dropped.events > 0, 'low events were evicted to make room');
});

t.test('a version 3 outbox migrates to 4 (the inbox) without losing a row', async (t) => {
  const file = join(tempDirFor(t, 'inbox-mig'), 'outbox.db');
  const raw = new Database(file);
  raw.pragma('journal_mode = WAL');
  for (const [v, sql] of migrations.slice(0, 3).entries()) {
    raw.exec(sql);
    raw.pragma(`user_version = ${v + 1}`);
  }
  const id = uuidv7();
  raw
    .prepare(
      `INSERT INTO event_rows (id, camera_id, type, topic, payload, bytes, created_at) VALUES (?, 'cam1', 'x', 'ep/gw/event/x', '{}', 2, 1)`,
    )
    .run(id);
  raw.close();
  const outbox = Outbox.open(file);
  t.teardown(() => outbox.close());
  t.equal(outbox.get(id)?.id, id, 'the event row is kept');
  t.same(outbox.tasks.list(), [], 'an empty inbox');
  outbox.tasks.insert(
    { id: 't', kind: null, cameraId: null, payload: 'x', version: 1 },
    'rejected',
    'bad_task',
    stateMessage('t', 'rejected'),
  );
  t.equal(outbox.tasks.get('t')?.reason, 'bad_task');
});

t.test('messages the persistent session delivers before their subscription exists wait for it until ready()', async (t) => {
  const topics = gatewayTopics('ep', 'gw');
  const subs = new Subscriptions(topics, createLogger({ level: 'silent' }));
  const got: string[] = [];
  subs.route(topics.task('early'), Buffer.from('{"n":1}'), undefined);
  subs.route('ep/other-gw/task/x', Buffer.from('{}'), undefined);
  subs.add(topics.tasks, z.unknown(), (_p, topic) => {
    got.push(topic);
  });
  t.same(got, [topics.task('early')], 'the held task is handed over when the tasks filter is subscribed');
  subs.route(topics.request('x'), Buffer.from('{}'), undefined);
  subs.ready();
  subs.add(topics.requests, z.unknown(), (_p, topic) => {
    got.push(topic);
  });
  subs.route(topics.task('late'), Buffer.from('{}'), undefined);
  t.same(
    got,
    [topics.task('early'), topics.task('late')],
    'after ready() nothing is held: a message without a subscription then is dropped',
  );
});
