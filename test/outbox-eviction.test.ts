import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import t, { type Test } from 'tap';
import { v7 as uuidv7 } from 'uuid';
import { alertPayloadSchema, Outbox, type OutboxError, type OutboxOptions, type Priority } from '../src/outbox/index.js';
import { migrations } from '../src/outbox/migrations.js';

function tempDir(tt: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-outbox-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An outbox with a controllable clock, and a helper that adds an event with a real evidence file of `evidence` bytes. */
function rig(tt: Test, opts: OutboxOptions = {}) {
  const dir = tempDir(tt);
  let now = Date.parse('2025-01-01T00:00:00Z');
  const outbox = Outbox.open(join(dir, 'outbox.db'), { now: () => now, alerts: { prefix: 'ep', gatewayId: 'gw-1' }, ...opts });
  tt.teardown(() => outbox.close());
  return {
    dir,
    outbox,
    tick(ms: number) {
      now += ms;
    },
    add(priority: Priority, evidence = 0, payloadBytes = 100) {
      const id = uuidv7();
      let evidencePath: string | undefined;
      if (evidence > 0) {
        evidencePath = `${id}.jpg`;
        writeFileSync(join(dir, evidencePath), Buffer.alloc(evidence, 1));
      }
      const { seq } = outbox.add({
        id,
        cameraId: 'cam-1',
        type: 'presence',
        topic: 'ep/gw-1/event/presence',
        priority,
        payload: 'x'.repeat(payloadBytes),
        evidencePath,
      });
      return { seq, id, evidencePath };
    },
    alerts: () =>
      outbox
        .list({ limit: 1000 })
        .filter((r) => r.cameraId === '_gateway')
        .map((r) => alertPayloadSchema.parse(JSON.parse(r.payload))),
  };
}

function dropCount(outbox: Outbox, what: 'event' | 'evidence', reason: string, priority: Priority): number {
  return outbox.drops().find((d) => d.what === what && d.reason === reason && d.priority === priority)?.count ?? 0;
}

t.test('byte cap: delivered rows go first and are not counted as drops', (t) => {
  const r = rig(t, { maxBytes: 1_000, alerts: undefined });
  const a = r.add('normal', 300);
  const b = r.add('normal', 300);
  r.outbox.markAcked(a.seq);
  r.add('normal', 300);
  t.equal(r.outbox.get(a.seq), undefined, 'the acked row was pruned');
  t.notOk(existsSync(join(r.dir, a.evidencePath!)), 'with its evidence file');
  t.ok(r.outbox.get(b.seq), 'the undelivered row stays');
  t.same(r.outbox.drops(), [], 'pruning delivered rows is no drop');
  t.ok(r.outbox.stats().bytes <= 1_000);
  t.end();
});

t.test('byte cap: evidence before events, low priority before high, oldest first; every drop counted', (t) => {
  const r = rig(t, { maxBytes: 1_900, alerts: undefined });
  const low1 = r.add('low', 400);
  const high1 = r.add('high', 400);
  const low2 = r.add('low', 400);
  t.equal(r.outbox.stats().bytes, 1_500);
  // A normal event of 100 + 400 bytes: 100 over the cap; the oldest low evidence goes, high evidence stays.
  const n1 = r.add('normal', 400);
  t.equal(r.outbox.get(low1.seq)!.evidenceState, 'dropped');
  t.notOk(existsSync(join(r.dir, low1.evidencePath!)), 'evicted evidence file deleted');
  t.equal(r.outbox.get(low2.seq)!.evidenceState, 'kept', 'only as much as needed');
  const n2 = r.add('normal', 400);
  t.equal(r.outbox.get(low2.seq)!.evidenceState, 'dropped', 'all low evidence before any normal evidence');
  t.equal(r.outbox.get(n1.seq)!.evidenceState, 'kept');
  const n3 = r.add('normal', 400);
  t.equal(r.outbox.get(n1.seq)!.evidenceState, 'dropped', 'then the oldest normal evidence');
  t.equal(r.outbox.get(n2.seq)!.evidenceState, 'kept');
  t.equal(r.outbox.get(n3.seq)!.evidenceState, 'kept', 'the newcomer keeps its own while older evidence can go');
  t.equal(r.outbox.get(high1.seq)!.evidenceState, 'kept', 'a normal event never takes high-priority evidence');
  // Payload-only events fill up: low rows are deleted before normal ones, high ones are never touched by normal.
  for (let i = 0; i < 8; i++) r.add('normal', 0, 150);
  t.equal(r.outbox.get(low1.seq), undefined, 'low events evicted');
  t.equal(r.outbox.get(low2.seq), undefined);
  t.ok(r.outbox.get(high1.seq), 'high event kept');
  t.ok(r.outbox.stats().bytes <= 1_900, `under the cap: ${r.outbox.stats().bytes}`);
  t.equal(dropCount(r.outbox, 'event', 'full', 'low'), 2);
  t.equal(dropCount(r.outbox, 'evidence', 'full', 'low'), 2);
  t.ok(dropCount(r.outbox, 'evidence', 'full', 'normal') >= 1);
  t.equal(dropCount(r.outbox, 'event', 'full', 'high') + dropCount(r.outbox, 'evidence', 'full', 'high'), 0);
  const s = r.outbox.stats();
  t.equal(
    s.dropped.events,
    r.outbox
      .drops()
      .filter((d) => d.what === 'event')
      .reduce((n, d) => n + d.count, 0),
    'stats total = sum of counters',
  );
  t.end();
});

t.test('byte cap: an event that cannot fit without displacing higher priority is refused, counted and its evidence deleted', (t) => {
  const r = rig(t, { maxBytes: 1_000, alerts: undefined });
  r.add('high', 0, 900);
  const id = uuidv7();
  writeFileSync(join(r.dir, 'x.jpg'), Buffer.alloc(50));
  const err = t.throws(() =>
    r.outbox.add({
      id,
      cameraId: 'cam-1',
      type: 'p',
      topic: 'ep/gw-1/event/p',
      priority: 'low',
      payload: 'y'.repeat(200),
      evidencePath: 'x.jpg',
    }),
  ) as OutboxError;
  t.equal(err.code, 'full');
  t.match(err.message, /is full/);
  t.equal(r.outbox.get(id), undefined, 'nothing of it committed');
  t.notOk(existsSync(join(r.dir, 'x.jpg')), 'its evidence file is deleted');
  t.equal(dropCount(r.outbox, 'event', 'full', 'low'), 1);
  t.equal(dropCount(r.outbox, 'evidence', 'full', 'low'), 1);
  t.equal(r.outbox.stats().pending, 1, 'the high event is untouched');
  t.end();
});

t.test('drops raise an outbox_drop alert event, at most one per interval, with the counts not yet reported', (t) => {
  const r = rig(t, { maxBytes: 1_000, alerts: { prefix: 'ep', gatewayId: 'gw-1', intervalMs: 60_000 } });
  r.add('low', 500);
  r.add('low', 500);
  const [first] = r.alerts();
  t.ok(first, 'an alert row was written in the eviction');
  t.match(first, {
    kind: 'outbox_drop',
    gatewayId: 'gw-1',
    detail: { dropped: [{ what: 'evidence', reason: 'full', priority: 'low', count: 1 }] },
  });
  const row = r.outbox.get(first!.id)!;
  t.match(row, { topic: 'ep/gw-1/alert/outbox_drop', priority: 'high', cameraId: '_gateway' });
  r.add('low', 500);
  t.equal(r.alerts().length, 1, 'no second alert within the interval');
  r.tick(61_000);
  t.equal(r.outbox.maintain().alerts, 1, 'maintain() reports the rest once the interval has passed');
  const alerts = r.alerts();
  t.equal(alerts.length, 2);
  const reported = alerts.flatMap((a) => (a.detail as { dropped: { count: number }[] }).dropped).reduce((n, d) => n + d.count, 0);
  const total = r.outbox.stats().dropped;
  t.equal(
    reported,
    total.events + total.evidence,
    `together the alerts announce every drop exactly once: ${JSON.stringify(r.outbox.drops())} ${JSON.stringify(alerts.map((a) => a.detail))}`,
  );
  t.equal(r.outbox.maintain().alerts, 0, 'nothing new, no alert');
  t.end();
});

t.test('time-to-live per priority: undelivered rows past it are dropped and counted; delivered and fresh ones stay', (t) => {
  const r = rig(t, { ttlMs: { low: 60_000, normal: 3_600_000 }, alerts: undefined });
  const low = r.add('low', 10);
  const normal = r.add('normal');
  const high = r.add('high');
  const lowAcked = r.add('low');
  r.outbox.markAcked(lowAcked.seq);
  r.tick(61_000);
  const fresh = r.add('low');
  t.same(r.outbox.maintain(), { expired: 1, requeued: 0, alerts: 0 });
  t.equal(r.outbox.get(low.seq), undefined);
  t.notOk(existsSync(join(r.dir, low.evidencePath!)));
  for (const e of [normal, high, lowAcked, fresh]) t.ok(r.outbox.get(e.seq), `seq ${e.seq} kept`);
  t.equal(dropCount(r.outbox, 'event', 'ttl', 'low'), 1);
  t.equal(dropCount(r.outbox, 'evidence', 'ttl', 'low'), 1);
  r.tick(3_600_000);
  t.equal(r.outbox.maintain().expired, 2, 'normal and the second low expire; high has no ttl');
  t.ok(r.outbox.get(high.seq));
  t.end();
});

t.test('delivery: service — acked is not delivered until confirmed; unconfirmed rows are sent again after the timeout', (t) => {
  const r = rig(t, { delivery: 'service', confirmTimeoutMs: 30_000, alerts: undefined });
  const a = r.add('normal');
  const b = r.add('normal');
  r.outbox.markSent([a.seq, b.seq]);
  r.outbox.markAcked(a.seq, b.seq);
  t.match(r.outbox.stats(), { acked: 2, confirmed: 0 });
  t.ok(r.outbox.stats().oldestPendingTs !== null, 'acked rows still count as undelivered');
  t.equal(r.outbox.markConfirmed([a.id, uuidv7()]), 1, 'unknown ids are ignored');
  t.equal(r.outbox.get(a.seq)!.state, 'confirmed');
  r.tick(31_000);
  t.equal(r.outbox.maintain().requeued, 1);
  t.equal(r.outbox.get(b.seq)!.state, 'pending', 'b goes out again');
  t.same(
    r.outbox.pending(10).map((x) => x.seq),
    [b.seq],
  );
  t.equal(r.outbox.markConfirmed([b.id]), 1, 'a confirmation may arrive in any state');
  t.equal(r.outbox.stats().oldestPendingTs, null);
  t.end();
});

t.test('replay, list and get for the CLI', (t) => {
  const r = rig(t, { alerts: undefined });
  const a = r.add('normal');
  r.tick(10_000);
  const b = r.add('high');
  r.outbox.markAcked(a.seq, b.seq);
  t.same(
    r.outbox.list({ state: 'acked' }).map((x) => x.seq),
    [a.seq, b.seq],
  );
  t.equal(r.outbox.get(b.id)!.seq, b.seq, 'by id');
  t.equal(r.outbox.get(String(b.seq))!.id, b.id, 'by seq text');
  t.equal(r.outbox.replay(r.outbox.get(b.seq)!.createdAt), 1, 'since a time');
  t.same(
    r.outbox.pending(10).map((x) => x.seq),
    [b.seq],
  );
  t.equal(r.outbox.replay(), 1, 'all rows not already pending');
  t.same(
    r.outbox.pending(10).map((x) => x.seq),
    [a.seq, b.seq],
  );
  t.end();
});

t.test('addMany commits a batch in one transaction', (t) => {
  const r = rig(t, { alerts: undefined });
  const events = Array.from({ length: 50 }, () => ({ id: uuidv7(), cameraId: 'cam-1', type: 'p', topic: 'ep/gw-1/event/p' }));
  const added = r.outbox.addMany(events, (e, seq) => ({ id: e.id, seq }));
  t.same(
    added.map((x) => x.seq),
    events.map((_e, i) => i + 1),
  );
  const dup = [{ ...events[0]!, id: uuidv7() }, events[3]!];
  t.throws(() => r.outbox.addMany(dup, (e, seq) => ({ id: e.id, seq })), { code: 'duplicate' });
  t.equal(r.outbox.stats().pending, 50, 'a failed batch commits none of its events');
  t.end();
});

t.test('freeDiskSpace deletes evidence files, delivered first, then low priority, and counts the undelivered ones', (t) => {
  const r = rig(t, { alerts: undefined });
  const acked = r.add('high', 1_000);
  const low = r.add('low', 1_000);
  const high = r.add('high', 1_000);
  r.outbox.markAcked(acked.seq);
  t.same(r.outbox.freeDiskSpace(1_500), { files: 2, bytes: 2_000 });
  t.notOk(existsSync(join(r.dir, acked.evidencePath!)));
  t.notOk(existsSync(join(r.dir, low.evidencePath!)));
  t.ok(existsSync(join(r.dir, high.evidencePath!)));
  t.equal(dropCount(r.outbox, 'evidence', 'disk_full', 'low'), 1);
  t.equal(r.outbox.stats().dropped.evidence, 1, 'the delivered one is not a drop');
  t.end();
});

t.test('a corrupt file is moved aside (kept), a fresh outbox made, and an outbox_corrupt alert is its first event', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'outbox.db');
  const first = Outbox.open(file);
  for (let i = 0; i < 300; i++) first.add({ id: uuidv7(), cameraId: 'c', type: 'p', topic: 't', payload: 'z'.repeat(500) });
  first.close();
  // Overwrite a page in the middle of the table with garbage: the header still says SQLite.
  const bytes = readFileSync(file);
  bytes.fill(0xa5, 4096 * 5, 4096 * 7);
  writeFileSync(file, bytes);
  t.throws(() => Outbox.open(file), { code: 'corrupt' }, 'refused by default');
  const outbox = Outbox.open(file, { onCorrupt: 'move-aside', alerts: { prefix: 'ep', gatewayId: 'gw-1' } });
  t.teardown(() => outbox.close());
  const moved = readdirSync(dir).filter((f) => f.startsWith('outbox.db.corrupt-'));
  t.equal(moved.length, 1, `the damaged file is kept: ${moved.join(', ')}`);
  t.same(readFileSync(join(dir, moved[0]!)), bytes, 'byte for byte');
  const [alert] = outbox.pending(10);
  t.match(alert, { seq: 1, topic: 'ep/gw-1/alert/outbox_corrupt', priority: 'high' });
  const payload = alertPayloadSchema.parse(JSON.parse(alert!.payload));
  t.match(payload.detail, { movedTo: join(dir, moved[0]!) });
  t.end();
});

t.test('a version-1 file migrates: rows, states, the seq high-water mark and the byte total carry over', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'outbox.db');
  const raw = new Database(file);
  raw.exec(migrations[0]!);
  raw.pragma('user_version = 1');
  const ins = raw.prepare(`INSERT INTO events (id, camera_id, type, topic, payload, created_at, state) VALUES (?, 'c', 'p', 't', ?, 1, ?)`);
  ins.run(uuidv7(), '{"a":1}', 'acked');
  ins.run(uuidv7(), '{"b":22}', 'pending');
  ins.run(uuidv7(), '{}', 'pending');
  raw.prepare('DELETE FROM events WHERE seq = 3').run();
  raw.close();
  const outbox = Outbox.open(file);
  t.teardown(() => outbox.close());
  t.match(outbox.stats(), { pending: 1, acked: 1, lastSeq: 3, bytes: 7 + 8 });
  t.equal(outbox.add({ id: uuidv7(), cameraId: 'c', type: 'p', topic: 't', payload: {} }).seq, 4, 'seq 3 is never reused');
  t.end();
});
