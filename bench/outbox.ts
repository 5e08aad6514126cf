/**
 * Outbox benchmark, in one run on one machine:
 *  - durable enqueue rate: `addMany` batches (one fsync per batch, WAL + synchronous=FULL) and, for reference,
 *    one `add` per event (one fsync each), of event-sized JSON payloads;
 *  - drain rate: a backlog of pending rows published by the Uplink to a local Mosquitto until every PUBACK is
 *    recorded in the outbox, divided by a raw mqtt.js QoS 1 publish loop of the same payloads with the same
 *    number of publishes in flight (the broker's Receive Maximum − 1).
 *
 *   node dist/bench/outbox.js [--events 5000] [--batch 100]
 *   (or: node --import @tapjs/typescript/import bench/outbox.ts)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/log.js';
import { Outbox, type NewEvent } from '../src/outbox/index.js';
import { Uplink } from '../src/uplink/index.js';
import { startMosquitto } from '../test/helpers/mosquitto.js';

const { values } = parseArgs({ options: { events: { type: 'string', default: '5000' }, batch: { type: 'string', default: '100' } } });
const n = Number(values.events);
const batchSize = Number(values.batch);
const topic = 'bench/gw-1/event/presence';
const log = createLogger({ level: 'silent' });

/** An event-sized payload (≈ 900 bytes, like a presence event with two objects and its evidence reference). */
function payload(id: string, seq: number): object {
  return {
    schema: 'edgepatrol.event/1', id, messageId: id, state: 'started', seq, gatewayId: 'gw-1', type: 'presence',
    camera: { id: 'cam-1', name: 'North gate' }, zone: 'walkway', rule: { id: 'presence', kind: 'presence' },
    startedAt: new Date().toISOString(), detectedAt: new Date().toISOString(), dwellSeconds: 12.5,
    objects: [{ class: 'person', score: 0.812, box: [0.1, 0.2, 0.3, 0.6], trackId: 17 }, { class: 'person', score: 0.644, box: [0.5, 0.2, 0.6, 0.7], trackId: 18 }],
    location: { lat: 22.5431, lon: 114.0579, address: 'Xiangmihu, Futian', grid: 'FT-XMH-0412' },
    model: { name: 'nanodet-m', sha256: 'b'.repeat(64) },
    evidence: { annotated: { file: `evidence/2025-01-01/${id}-annotated.jpg`, sha256: 'a'.repeat(64), bytes: 48211, width: 640, height: 480, contentType: 'image/jpeg' } },
    agentVersion: '0.1.0',
  };
}

function events(count: number): NewEvent[] {
  return Array.from({ length: count }, () => ({ id: uuidv7(), cameraId: 'cam-1', type: 'presence', topic }));
}

const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-bench-outbox-'));
const broker = await startMosquitto();
try {
  // Enqueue, batched.
  const batched = Outbox.open(join(dir, 'batched.db'));
  const all = events(n);
  let t0 = performance.now();
  for (let i = 0; i < n; i += batchSize) batched.addMany(all.slice(i, i + batchSize), (e, seq) => payload(e.id, seq));
  const batchedRate = n / ((performance.now() - t0) / 1000);
  // Enqueue, one transaction (one fsync) per event; fewer events, it is slow by design.
  const single = Outbox.open(join(dir, 'single.db'));
  const few = events(Math.min(n, 500));
  t0 = performance.now();
  for (const e of few) single.add(e, (seq) => payload(e.id, seq));
  const singleRate = few.length / ((performance.now() - t0) / 1000);
  single.close();

  // Drain: the batched outbox's backlog through the Uplink.
  const payloads = batched.pending(n).map((r) => r.payload);
  const uplink = new Uplink({ url: broker.url, prefix: 'bench', gatewayId: 'gw-1', outbox: batched, log, version: 'bench' });
  // Counted from the uplink's acked events (each one is recorded in the outbox): polling stats() would scan the table.
  let acked = 0;
  const done = new Promise<void>((resolve) => uplink.on('acked', () => { if (++acked === n) resolve(); }));
  t0 = performance.now();
  uplink.start();
  await done;
  const drainRate = n / ((performance.now() - t0) / 1000);
  const window = uplink.status().window;
  await uplink.stop();
  batched.close();

  // Raw mqtt.js: the same payloads, QoS 1, the same number in flight, no outbox.
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: window }, async () => {
    while (next < payloads.length) {
      const p = payloads[next++]!;
      await client.publishAsync(topic, p, { qos: 1, properties: { contentType: 'application/json', payloadFormatIndicator: true } });
    }
  }));
  const rawRate = payloads.length / ((performance.now() - t0) / 1000);
  await client.endAsync();

  const bytes = Buffer.byteLength(payloads[0] ?? '');
  console.log(`outbox bench: ${n} events of ${bytes} bytes, WAL + synchronous=FULL (every commit fsynced), ${tmpdir()}`);
  console.log(`  enqueue, addMany batches of ${batchSize}: ${Math.round(batchedRate)} events/s   (target ≥ 5000)`);
  console.log(`  enqueue, one add per event:         ${Math.round(singleRate)} events/s   (one fsync each, for reference)`);
  console.log(`  drain through the Uplink:           ${Math.round(drainRate)} events/s   (window ${window}, PUBACKs recorded in the outbox)`);
  console.log(`  raw mqtt.js QoS 1 loop:             ${Math.round(rawRate)} events/s   (${window} in flight, nothing recorded)`);
  console.log(`  drain / raw:                        ${(drainRate / rawRate).toFixed(2)}   (target ≥ 0.8)`);
} finally {
  await broker.stop();
  rmSync(dir, { recursive: true, force: true });
}
