/**
 * Outbox benchmark, in one run on one machine:
 *  - durable enqueue rate: `addMany` batches (one fsync per batch, WAL + synchronous=FULL) and, for reference,
 *    one `add` per event (one fsync each), of event-sized JSON payloads;
 *  - drain rate: a backlog of pending rows published by the Uplink to a local Mosquitto until every PUBACK is
 *    recorded in the outbox, divided by a raw mqtt.js QoS 1 publish loop of the same payloads with the same
 *    number of publishes in flight (the window the Uplink chose: the broker's Receive Maximum − 1). Both are
 *    timed from an established connection (the Uplink's 'connected' event; mqtt.js's connectAsync) to the
 *    last PUBACK, so connection set-up is outside both windows. Both share the machine with the broker, and
 *    other load moves absolute rates a lot on a shared box, so the two run alternately for --rounds rounds
 *    (drain first in odd rounds, raw first in even ones, after one untimed warm-up of each) and the ratio
 *    printed is the median of the per-round ratios.
 *  - `Outbox.stats()` on an outbox of --stats-rows rows (half of them acked), from the counters the writing
 *    transactions keep, beside the full recount it replaced (the previous stats query, run on the same file);
 *  - the event loop's delay during a drain (p99, the stalls the frame path would feel), with WAL checkpoints in
 *    the Outbox's background worker (`checkpoint: 'background'`, what the agent uses; also for the ratio above)
 *    and inline in the committing thread (SQLite's default): each round drains one more backlog inline.
 *
 *   node dist/bench/outbox.js [--events 5000] [--batch 100] [--rounds 5] [--stats-rows 30000] [--receive-maximum N]
 *   (or: node --import @tapjs/typescript/import bench/outbox.ts)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/log.js';
import { Outbox, type NewEvent } from '../src/outbox/index.js';
import { Uplink } from '../src/uplink/index.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '5000' },
    batch: { type: 'string', default: '100' },
    rounds: { type: 'string', default: '5' },
    'stats-rows': { type: 'string', default: '30000' },
    'receive-maximum': { type: 'string' },
  },
});
const n = Number(values.events);
const batchSize = Number(values.batch);
const rounds = Number(values.rounds);
const topic = 'bench/gw-1/event/presence';
const log = createLogger({ level: 'silent' });

/** An event-sized payload (≈ 900 bytes, like a presence event with two objects and its evidence reference). */
function payload(id: string, seq: number): object {
  return {
    schema: 'edgepatrol.event/1',
    id,
    messageId: id,
    state: 'started',
    seq,
    gatewayId: 'gw-1',
    type: 'presence',
    camera: { id: 'cam-1', name: 'North gate' },
    zone: 'walkway',
    rule: { id: 'presence', kind: 'presence' },
    startedAt: new Date().toISOString(),
    detectedAt: new Date().toISOString(),
    dwellSeconds: 12.5,
    objects: [
      { class: 'person', score: 0.812, box: [0.1, 0.2, 0.3, 0.6], trackId: 17 },
      { class: 'person', score: 0.644, box: [0.5, 0.2, 0.6, 0.7], trackId: 18 },
    ],
    location: { lat: 22.5431, lon: 114.0579, address: 'Xiangmihu, Futian', grid: 'FT-XMH-0412' },
    model: { name: 'nanodet-m', sha256: 'b'.repeat(64) },
    evidence: {
      annotated: {
        file: `evidence/2025-01-01/${id}-annotated.jpg`,
        sha256: 'a'.repeat(64),
        bytes: 48211,
        width: 640,
        height: 480,
        contentType: 'image/jpeg',
      },
    },
    agentVersion: '0.1.0',
  };
}

function events(count: number): NewEvent[] {
  return Array.from({ length: count }, () => ({ id: uuidv7(), cameraId: 'cam-1', type: 'presence', topic }));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** A fresh outbox holding `count` pending events, enqueued with addMany; returns it with its enqueue rate. */
function backlog(file: string, count: number, checkpoint: 'background' | 'inline' = 'background'): { outbox: Outbox; rate: number } {
  const outbox = Outbox.open(file, { checkpoint });
  const all = events(count);
  const t0 = performance.now();
  for (let i = 0; i < count; i += batchSize) outbox.addMany(all.slice(i, i + batchSize), (e, seq) => payload(e.id, seq));
  return { outbox, rate: count / ((performance.now() - t0) / 1000) };
}

/**
 * stats() from the counters vs the full recount that stats() ran before migration 3 (the same query, on the
 * `events` view that shows effective states), on one file of `rows` rows, half of them acked by the watermark.
 */
function statsCost(rows: number): { rows: number; counters: number; recount: number } {
  const { outbox } = backlog(nextFile(), rows);
  const half = outbox.outgoing(Math.floor(rows / 2)).map((r) => r.seq);
  outbox.recordDelivery([], half, { since: outbox.watermark(), upTo: half.at(-1)! });
  const timeUs = (times: number, f: () => unknown): number =>
    median(
      Array.from({ length: times }, () => {
        const t0 = performance.now();
        f();
        return (performance.now() - t0) * 1000;
      }),
    );
  const counters = timeUs(200, () => outbox.stats());
  const db = new Database(outbox.file, { readonly: true });
  const previous = db.prepare(`SELECT
    (SELECT count(*) FROM events WHERE state = 'pending') AS pending,
    (SELECT count(*) FROM events WHERE state = 'sent') AS sent,
    (SELECT count(*) FROM events WHERE state = 'acked') AS acked,
    (SELECT count(*) FROM events WHERE state = 'confirmed') AS confirmed,
    (SELECT min(created_at) FROM events WHERE NOT (state IN ('acked', 'confirmed'))) AS oldestPendingTs,
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'event_rows'), 0) AS lastSeq,
    (SELECT bytes FROM usage WHERE id = 1) AS bytes,
    coalesce((SELECT sum(count) FROM drops WHERE what = 'event'), 0) AS droppedEvents,
    coalesce((SELECT sum(count) FROM drops WHERE what = 'evidence'), 0) AS droppedEvidence`);
  const recount = timeUs(5, () => previous.get());
  db.close();
  outbox.close();
  return { rows, counters, recount };
}

const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-bench-outbox-'));
// Mosquitto announces its max_inflight_messages (default 20) as the Receive Maximum that sets both windows.
const receiveMaximum = values['receive-maximum'];
const broker = await startMosquitto(
  receiveMaximum === undefined ? {} : { extraConfig: [`max_inflight_messages ${Number(receiveMaximum)}`] },
);
let file = 0;
const nextFile = () => join(dir, `outbox-${file++}.db`);

/** Drains a backlog of `count` events through the Uplink; events/s from 'connected' to the last recorded ack, and the window it used. */
async function drain(
  count: number,
  checkpoint: 'background' | 'inline' = 'background',
): Promise<{ rate: number; window: number; payloads: string[]; delayP99Ms: number }> {
  const { outbox } = backlog(nextFile(), count, checkpoint);
  const payloads = outbox.pending(count).map((r) => r.payload);
  const uplink = new Uplink({ url: broker.url, prefix: 'bench', gatewayId: 'gw-1', outbox, log, version: 'bench' });
  // Counted from the uplink's acked events (each one is recorded in the outbox): polling stats() would scan the table.
  let acked = 0;
  let t0 = 0;
  const delay = monitorEventLoopDelay({ resolution: 5 });
  uplink.once('connected', () => {
    t0 = performance.now();
    delay.enable();
  });
  const done = new Promise<void>((resolve) =>
    uplink.on('acked', () => {
      if (++acked === count) resolve();
    }),
  );
  uplink.start();
  await done;
  const rate = count / ((performance.now() - t0) / 1000);
  delay.disable();
  const window = uplink.status().window;
  await uplink.stop();
  outbox.close();
  return { rate, window, payloads, delayP99Ms: delay.percentile(99) / 1e6 };
}

/** The same payloads with plain mqtt.js, QoS 1, `window` publishes awaiting PUBACK, nothing recorded. */
async function raw(payloads: readonly string[], window: number): Promise<number> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < payloads.length) {
        const p = payloads[next++]!;
        await client.publishAsync(topic, p, { qos: 1, properties: { contentType: 'application/json', payloadFormatIndicator: true } });
      }
    }),
  );
  const rate = payloads.length / ((performance.now() - t0) / 1000);
  await client.endAsync();
  return rate;
}

try {
  // Enqueue, batched (one fsync per addMany), on a fresh file each round; the median is printed.
  const enqueue = Array.from({ length: rounds }, () => {
    const { outbox, rate } = backlog(nextFile(), n);
    outbox.close();
    return rate;
  });
  // Enqueue, one transaction (one fsync) per event; fewer events, it is slow by design.
  const single = Outbox.open(nextFile());
  const few = events(Math.min(n, 500));
  const t0 = performance.now();
  for (const e of few) single.add(e, (seq) => payload(e.id, seq));
  const singleRate = few.length / ((performance.now() - t0) / 1000);
  single.close();

  // Warm-up of both paths (JIT, broker), untimed, at full size: a shorter one left the first timed drain slower.
  const warm = await drain(n);
  await raw(warm.payloads, warm.window);

  const drains: number[] = [];
  const raws: number[] = [];
  const ratios: number[] = [];
  const delays = { background: [] as number[], inline: [] as number[] };
  let window = warm.window;
  let payloads: string[] = [];
  for (let r = 0; r < rounds; r++) {
    let d: number;
    let w: number;
    if (r % 2 === 0) {
      const got = await drain(n);
      d = got.rate;
      window = got.window;
      payloads = got.payloads;
      delays.background.push(got.delayP99Ms);
      w = await raw(payloads, window);
      delays.inline.push((await drain(n, 'inline')).delayP99Ms);
    } else {
      delays.inline.push((await drain(n, 'inline')).delayP99Ms);
      // The previous round's payloads: the same sizes and seqs as this round's backlog, other event ids.
      w = await raw(payloads, window);
      const got = await drain(n);
      d = got.rate;
      delays.background.push(got.delayP99Ms);
    }
    drains.push(d);
    raws.push(w);
    ratios.push(d / w);
  }

  const statsAt = statsCost(Number(values['stats-rows']));

  const bytes = Buffer.byteLength(JSON.stringify(payload(uuidv7(), n)));
  const list = (xs: number[]) => xs.map((x) => Math.round(x)).join(', ');
  console.log(
    `outbox bench: ${n} events of ~${bytes} bytes, ${rounds} rounds, WAL + synchronous=FULL for adds (every add/addMany commit fsynced), ${tmpdir()}`,
  );
  console.log(
    `  enqueue, addMany batches of ${batchSize}: ${Math.round(median(enqueue))} events/s median   (rounds: ${list(enqueue)}; target ≥ 5000)`,
  );
  console.log(`  enqueue, one add per event:         ${Math.round(singleRate)} events/s   (one fsync each, for reference)`);
  console.log(
    `  drain through the Uplink:           ${Math.round(median(drains))} events/s median   (rounds: ${list(drains)}; window ${window}, ` +
      `every PUBACK recorded in the outbox)`,
  );
  console.log(
    `  raw mqtt.js QoS 1 loop:             ${Math.round(median(raws))} events/s median   (rounds: ${list(raws)}; ${window} in flight, nothing recorded)`,
  );
  console.log(`  drain / raw, per round:             ${ratios.map((x) => x.toFixed(2)).join(', ')}`);
  console.log(`  drain / raw, median:                ${median(ratios).toFixed(2)}   (target ≥ 0.8)`);
  console.log(
    `  stats() at ${statsAt.rows} rows:         ${statsAt.counters.toFixed(0)} µs median (counters)   vs ${statsAt.recount.toFixed(0)} ` +
      `µs (full recount, the previous query): ÷${(statsAt.recount / statsAt.counters).toFixed(0)}`,
  );
  const ms = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  console.log(
    `  event-loop delay p99 during a drain, checkpoints in the background worker: ${median(delays.background).toFixed(1)} ms median ` +
      `(rounds: ${ms(delays.background)})`,
  );
  console.log(
    `  event-loop delay p99 during a drain, checkpoints inline (SQLite default):   ${median(delays.inline).toFixed(1)} ms median ` +
      `(rounds: ${ms(delays.inline)})`,
  );
  console.log(`  inline / background:                ${(median(delays.inline) / median(delays.background)).toFixed(2)}`);
} finally {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}
