/**
 * The acknowledged-up-to watermark (migration 3) and the state counters behind stats(): a file of the previous
 * schema migrates and drains; counters equal a full recount after every kind of write; a claim moves the
 * watermark without rewriting rows and is refused after a replay; a crash between the PUBACKs and the
 * watermark write sends those rows again and loses none. Real SQLite files, a real Mosquitto.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/log.js';
import { Outbox, type OutboxStats } from '../src/outbox/index.js';
import { migrations } from '../src/outbox/migrations.js';
import { Uplink } from '../src/uplink/index.js';
import { brokerFor, collect, tempDirFor } from './helpers/mosquitto.js';

const prefix = 'ep';
const gatewayId = 'gw-1';
const topic = `${prefix}/${gatewayId}/event/presence`;
const log = createLogger({ level: 'silent' });

/**
 * Child mode: drains the outbox to the broker and SIGKILLs itself when the uplink goes to record its second
 * batch of PUBACKs, so those PUBACKs reached it but neither the watermark nor any row says so. The seqs of
 * that batch go to `report` first (synchronously: nothing runs after the kill).
 */
if (process.env.EDGEPATROL_WATERMARK_CHILD) {
  const { url, file, report } = JSON.parse(process.env.EDGEPATROL_WATERMARK_CHILD) as { url: string; file: string; report: string };
  const outbox = Outbox.open(file);
  const record = outbox.recordDelivery.bind(outbox);
  let batches = 0;
  outbox.recordDelivery = (sent, acked, claim) => {
    if (acked.length > 0 && ++batches === 2) {
      writeFileSync(report, JSON.stringify(acked));
      process.kill(process.pid, 'SIGKILL');
    }
    return record(sent, acked, claim);
  };
  new Uplink({ url, prefix, gatewayId, outbox, log, version: '0.0.0-test', window: 8 }).start();
} else {
  tests();
}

function tempDir(tt: Test): string {
  return tempDirFor(tt, 'watermark');
}

function event(
  n: number,
  extra: { evidencePath?: string; evidenceBytes?: number; priority?: 'high' | 'normal' | 'low'; cameraId?: string } = {},
) {
  return { id: uuidv7(), cameraId: extra.cameraId ?? 'cam-1', type: 'presence', topic, payload: { n }, ...extra };
}

/** What stats() says, recounted from every row (the `events` view shows effective states). */
function recount(
  file: string,
  delivery: 'broker' | 'service',
): Pick<OutboxStats, 'pending' | 'sent' | 'acked' | 'confirmed' | 'bytes' | 'oldestPendingTs'> {
  const db = new Database(file, { readonly: true });
  try {
    const count = (state: string) => (db.prepare('SELECT count(*) AS n FROM events WHERE state = ?').get(state) as { n: number }).n;
    const delivered = delivery === 'broker' ? `('acked', 'confirmed')` : `('confirmed')`;
    const oldest = db.prepare(`SELECT created_at AS at FROM events WHERE state NOT IN ${delivered} ORDER BY seq LIMIT 1`).get() as
      | { at: number }
      | undefined;
    const bytes = (
      db
        .prepare(`SELECT coalesce(sum(bytes + CASE WHEN evidence_state = 'kept' THEN evidence_bytes ELSE 0 END), 0) AS n FROM events`)
        .get() as { n: number }
    ).n;
    return {
      pending: count('pending'),
      sent: count('sent'),
      acked: count('acked'),
      confirmed: count('confirmed'),
      bytes,
      oldestPendingTs: oldest?.at ?? null,
    };
  } finally {
    db.close();
  }
}

function counters(s: OutboxStats) {
  return { pending: s.pending, sent: s.sent, acked: s.acked, confirmed: s.confirmed, bytes: s.bytes, oldestPendingTs: s.oldestPendingTs };
}

/** A claim as the uplink makes it: every unacknowledged row from the watermark up to `upTo` was PUBACKed. */
function claimUpTo(outbox: Outbox, upTo: number) {
  const seqs = outbox
    .pending(1_000_000)
    .map((r) => r.seq)
    .filter((s) => s <= upTo);
  return { seqs, claim: { since: outbox.watermark(), upTo } };
}

function tests(): void {
  t.test('a claim moves the watermark without rewriting rows; the view, get, list and stats show them acked', (t) => {
    let clock = 1_000_000;
    const file = join(tempDir(t), 'outbox.db');
    const outbox = Outbox.open(file, { now: () => clock });
    t.teardown(() => outbox.close());
    const seqs = outbox.addMany(Array.from({ length: 10 }, (_, i) => event(i))).map((r) => r.seq);
    clock += 500;
    outbox.markSent([seqs[0]!]);
    const { seqs: acked, claim } = claimUpTo(outbox, seqs[5]!);
    t.same(acked, seqs.slice(0, 6));
    // Rows 1..6 handed over once in this batch (row 1 already recorded as sent), row 8 PUBACKed out of order.
    const result = outbox.recordDelivery(seqs.slice(1, 6), [...acked, seqs[7]!], claim);
    t.same(result, { acked: 7, watermark: { upTo: seqs[5], epoch: 0 } });

    const raw = new Database(file, { readonly: true });
    t.teardown(() => raw.close());
    const stored = raw.prepare('SELECT seq, state, attempts FROM event_rows ORDER BY seq').all() as {
      seq: number;
      state: string;
      attempts: number;
    }[];
    t.same(
      stored.slice(0, 6).map((r) => r.state),
      ['sent', 'pending', 'pending', 'pending', 'pending', 'pending'],
      'rows under the watermark were not rewritten',
    );
    t.equal(stored[7]!.state, 'acked', 'a row acked above the watermark is written on its own');
    const view = raw.prepare('SELECT seq, state, attempts, acked_at FROM events ORDER BY seq').all() as {
      state: string;
      attempts: number;
      acked_at: number | null;
    }[];
    t.same(
      view.map((r) => r.state),
      ['acked', 'acked', 'acked', 'acked', 'acked', 'acked', 'pending', 'acked', 'pending', 'pending'],
    );
    t.ok(
      view.slice(0, 6).every((r) => r.attempts === 1 && r.acked_at === clock),
      'one attempt each, acked at the advance',
    );
    t.match(outbox.get(seqs[2]!), { state: 'acked', attempts: 1, ackedAt: clock });
    t.same(
      outbox.list({ state: 'acked' }).map((r) => r.seq),
      [...seqs.slice(0, 6), seqs[7]],
    );
    t.same(
      outbox.pending(100).map((r) => r.seq),
      [seqs[6], seqs[8], seqs[9]],
      'the drain reads only what is unacknowledged',
    );
    t.match(outbox.stats(), { pending: 3, sent: 0, acked: 7, confirmed: 0 });
    t.same(counters(outbox.stats()), recount(file, 'broker'));

    t.equal(outbox.recordDelivery([], [seqs[6]!], claim).watermark, null, 'a claim against an old watermark is refused');
    t.equal(outbox.get(seqs[6]!)!.state, 'acked', 'and the row is written on its own');
    t.end();
  });

  t.test('a replay lowers the watermark, keeps earlier rows acked with their times, and voids a claim in flight', (t) => {
    let clock = 5_000;
    const file = join(tempDir(t), 'outbox.db');
    const outbox = Outbox.open(file, { now: () => clock });
    t.teardown(() => outbox.close());
    const first = outbox.addMany(Array.from({ length: 4 }, (_, i) => event(i))).map((r) => r.seq);
    const a = claimUpTo(outbox, first[1]!);
    outbox.recordDelivery([], a.seqs, a.claim);
    const firstAck = clock;
    clock = 10_000;
    const second = outbox.addMany(Array.from({ length: 4 }, (_, i) => event(i + 4))).map((r) => r.seq);
    const b = claimUpTo(outbox, second[3]!);
    clock = 11_000;
    outbox.recordDelivery([], b.seqs, b.claim);
    t.equal(outbox.stats().acked, 8);
    const stale = outbox.watermark();

    t.equal(outbox.replay(10_000), 4, 'the rows created since then go back to pending');
    t.same(
      outbox.pending(100).map((r) => r.seq),
      second,
    );
    t.ok(outbox.watermark().upTo <= first[3]!, 'the watermark is below the replayed rows');
    t.notSame(outbox.watermark().epoch, stale.epoch);
    t.same(
      first.map((s) => outbox.get(s)!.state),
      ['acked', 'acked', 'acked', 'acked'],
    );
    t.same(
      first.map((s) => outbox.get(s)!.ackedAt),
      [firstAck, firstAck, clock, clock],
      'each keeps the time of the advance that acked it',
    );
    t.same(counters(outbox.stats()), recount(file, 'broker'));
    t.equal(
      outbox.recordDelivery([], second, { since: stale, upTo: second[3]! + 1 }).watermark,
      null,
      'a claim made before the replay is refused',
    );
    t.same(counters(outbox.stats()), recount(file, 'broker'));
    t.end();
  });

  t.test('stats() counters equal a full recount after every kind of write (broker and service)', async (t) => {
    for (const delivery of ['broker', 'service'] as const) {
      await t.test(delivery, (t) => {
        let clock = 1_000;
        const dir = tempDir(t);
        const file = join(dir, 'outbox.db');
        const outbox = Outbox.open(file, { delivery, now: () => clock, maxBytes: 4_000, ttlMs: { low: 5_000 }, confirmTimeoutMs: 1_000 });
        t.teardown(() => outbox.close());
        let step = 0;
        const check = (what: string) => {
          t.same(counters(outbox.stats()), recount(file, delivery), `${++step}: ${what}`);
        };
        // Seeded so a failure can be replayed; the sequence mixes every writer the outbox has.
        let seed = 7;
        const rnd = (n: number) => {
          seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
          return seed % n;
        };
        for (let round = 0; round < 60; round++) {
          clock += 300;
          const op = rnd(8);
          if (op <= 1) {
            const evidence = rnd(2) === 0;
            const file2 = join(dir, `e-${round}.jpg`);
            if (evidence) writeFileSync(file2, Buffer.alloc(150 + rnd(200)));
            try {
              outbox.add(
                event(round, { priority: (['low', 'normal', 'high'] as const)[rnd(3)], ...(evidence ? { evidencePath: file2 } : {}) }),
              );
            } catch (err) {
              t.match(err, { code: 'full' });
            }
            check('add (with eviction under the cap)');
          } else if (op === 2) {
            const rows = outbox.pending(1 + rnd(6));
            outbox.markSent(rows.map((r) => r.seq));
            check('markSent');
          } else if (op === 3) {
            const rows = outbox.pending(1 + rnd(8));
            const last = rows.at(-1);
            const res = outbox.recordDelivery(
              rows.map((r) => r.seq),
              rows.map((r) => r.seq),
              last ? { since: outbox.watermark(), upTo: last.seq } : undefined,
            );
            if (delivery === 'service') t.equal(res.watermark, null, 'service: no watermark');
            check('recordDelivery with a claim');
          } else if (op === 4) {
            const rows = outbox.pending(3);
            outbox.recordDelivery(
              [],
              rows.slice(1).map((r) => r.seq),
            );
            check('recordDelivery, out of order');
          } else if (op === 5) {
            const rows = outbox.list({ limit: 1000 }).filter(() => rnd(3) === 0);
            outbox.markConfirmed(rows.map((r) => r.id));
            check('markConfirmed');
          } else if (op === 6) {
            outbox.replay(clock - 300 * rnd(10));
            check('replay');
          } else {
            outbox.maintain();
            check('maintain (time-to-live, service-ack timeout, drop alerts)');
          }
        }
        t.end();
      });
    }
  });

  t.test('a file of schema version 2 migrates without losing a row, keeps its states and drains', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'outbox.db');
    const raw = new Database(file);
    raw.pragma('journal_mode = WAL');
    for (const [v, sql] of migrations.slice(0, 2).entries()) {
      raw.exec(sql);
      raw.pragma(`user_version = ${v + 1}`);
    }
    const ins = raw.prepare(`INSERT INTO events (id, camera_id, type, topic, payload, bytes, state, attempts, acked_at, created_at)
      VALUES (?, 'cam-1', 'presence', ?, ?, ?, ?, ?, ?, ?)`);
    const states = ['acked', 'confirmed', 'pending', 'sent', 'acked', 'pending', 'pending', 'pending'];
    const ids = states.map(() => uuidv7());
    states.forEach((state, i) => {
      const payload = JSON.stringify({ id: ids[i], seq: i + 1 });
      ins.run(
        ids[i],
        topic,
        payload,
        payload.length,
        state,
        state === 'pending' ? 0 : 1,
        state === 'acked' || state === 'confirmed' ? 100 + i : null,
        1_000 + i,
      );
    });
    raw.close();

    const outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    t.same(
      outbox.list({ limit: 100 }).map((r) => [r.id, r.state]),
      ids.map((id, i) => [id, states[i]]),
      'every row, with its state',
    );
    t.match(outbox.stats(), { pending: 4, sent: 1, acked: 2, confirmed: 1, lastSeq: 8, oldestPendingTs: 1_002 });
    t.same(counters(outbox.stats()), recount(file, 'broker'));
    const check = new Database(file, { readonly: true });
    t.equal(check.pragma('user_version', { simple: true }), migrations.length);
    check.close();
    t.equal(outbox.add(event(9)).seq, 9, 'seq goes on');

    const broker = await brokerFor(t);
    const sub = await collect(broker.url, `${prefix}/${gatewayId}/event/#`);
    t.teardown(() => sub.close());
    const uplink = new Uplink({ url: broker.url, prefix, gatewayId, outbox, log, version: '0.0.0-test' });
    t.teardown(() => uplink.stop());
    uplink.start();
    const expected = [3, 4, 6, 7, 8, 9];
    await sub.waitFor(expected.length);
    await uplink.stop();
    t.same(
      sub.messages.map((m) => (JSON.parse(m.payload) as { seq?: number; n?: number }).seq ?? 9),
      expected,
      'the unacknowledged rows, in seq order',
    );
    t.match(outbox.stats(), { pending: 0, sent: 0, acked: 8, confirmed: 1 });
    t.ok(outbox.watermark().upTo >= 9, 'recorded by the watermark');
    t.same(counters(outbox.stats()), recount(file, 'broker'));
    t.end();
  });

  t.test('reopened with delivery: service, rows the watermark acked get their own state and time', (t) => {
    let clock = 2_000;
    const file = join(tempDir(t), 'outbox.db');
    let outbox = Outbox.open(file, { now: () => clock });
    const seqs = outbox.addMany(Array.from({ length: 5 }, (_, i) => event(i))).map((r) => r.seq);
    const c = claimUpTo(outbox, seqs[2]!);
    outbox.recordDelivery([], c.seqs, c.claim);
    outbox.close();
    clock = 3_000;
    outbox = Outbox.open(file, { delivery: 'service', now: () => clock, confirmTimeoutMs: 500 });
    t.teardown(() => outbox.close());
    t.equal(outbox.watermark().upTo, 0);
    const raw = new Database(file, { readonly: true });
    t.same(
      raw.prepare('SELECT state, acked_at AS at FROM event_rows ORDER BY seq LIMIT 3').all(),
      [0, 1, 2].map(() => ({ state: 'acked', at: 2_000 })),
    );
    raw.close();
    t.same(counters(outbox.stats()), recount(file, 'service'));
    t.equal(outbox.maintain().requeued, 3, 'unconfirmed past the timeout: sent again, as before the watermark');
    t.same(counters(outbox.stats()), recount(file, 'service'));
    t.end();
  });

  t.test('a crash between the PUBACKs and the watermark write: those rows are sent again, none is lost', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'outbox.db');
    const n = 400;
    const report = join(dir, 'unrecorded.json');
    const setup = Outbox.open(file);
    setup.addMany(
      Array.from({ length: n }, (_, i) => event(i)),
      (e, seq) => ({ id: e.id, seq }),
    );
    const all = setup.list({ limit: n }).map((r) => r.id);
    setup.close();

    const broker = await brokerFor(t);
    const sub = await collect(broker.url, `${prefix}/${gatewayId}/event/#`);
    t.teardown(() => sub.close());
    const execArgv = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^_?TAP/.test(k)));
    const child = spawn(process.execPath, [...execArgv, fileURLToPath(import.meta.url)], {
      env: { ...env, EDGEPATROL_WATERMARK_CHILD: JSON.stringify({ url: broker.url, file, report }) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      stderr += s;
    });
    t.teardown(() => {
      child.kill('SIGKILL');
    });
    const [, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
      child.once('exit', (code, sig) => resolve([code, sig])),
    );
    t.equal(signal, 'SIGKILL', `the child killed itself while recording (stderr: ${stderr.slice(0, 500)})`);
    const unrecorded = JSON.parse(readFileSync(report, 'utf8')) as number[];
    t.ok(unrecorded.length > 0, `${unrecorded.length} PUBACKed row(s) were not recorded`);

    const outbox = Outbox.open(file);
    t.teardown(() => outbox.close());
    const unacked = new Set(outbox.pending(n).map((r) => r.seq));
    t.ok(
      unrecorded.every((seq) => unacked.has(seq)),
      'PUBACKed but unrecorded rows are unacknowledged after the crash, not acked',
    );
    t.same(counters(outbox.stats()), recount(file, 'broker'));

    const uplink = new Uplink({ url: broker.url, prefix, gatewayId, outbox, log, version: '0.0.0-test' });
    t.teardown(() => uplink.stop());
    uplink.start();
    await sub.waitFor((m) => new Set(m.map((x) => (JSON.parse(x.payload) as { id: string }).id)).size === n, 30_000);
    await uplink.stop();
    const received = sub.messages.map((m) => JSON.parse(m.payload) as { id: string; seq: number });
    t.same([...new Set(received.map((r) => r.id))].sort(), [...all].sort(), 'every event arrived');
    const bySeq = new Map<number, string>();
    for (const r of received) {
      if (bySeq.has(r.seq)) t.equal(bySeq.get(r.seq), r.id, `seq ${r.seq}: a duplicate has the same id`);
      bySeq.set(r.seq, r.id);
    }
    t.ok(
      unrecorded.every((seq) => received.filter((r) => r.seq === seq).length >= 2),
      'the unrecorded rows were sent again',
    );
    t.match(outbox.stats(), { pending: 0, sent: 0, acked: n });
    t.end();
  });
}
