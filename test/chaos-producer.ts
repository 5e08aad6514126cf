/**
 * The chaos test's gateway: the real Outbox and Uplink, fed at a steady rate with events of the agent's shape
 * (message id, per-gateway seq, camera, priority, an evidence file for some). test/chaos.test.ts compiles it and
 * runs it as a child that it SIGKILLs and restarts; every committed event is reported to the parent over IPC
 * after `addMany` returned, so the parent knows what must arrive.
 */
import { randomBytes, createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { v7 as uuidv7 } from 'uuid';
import { createLogger } from '../src/log.js';
import { Outbox, type NewEvent, type Priority } from '../src/outbox/index.js';
import { Uplink } from '../src/uplink/index.js';

export interface ChaosConfig {
  url: string;
  dir: string;
  prefix: string;
  gatewayId: string;
  maxBytes: number;
  /** Events per tick and ms between ticks. */
  batch: number;
  tickMs: number;
}

export interface Committed {
  id: string;
  seq: number;
  camera: string;
  priority: Priority;
}

const cfg = JSON.parse(process.env.EDGEPATROL_CHAOS ?? '{}') as ChaosConfig;
const log = createLogger({ level: process.env.EDGEPATROL_CHAOS_LOG ?? 'silent' });
const send = (m: unknown): void => {
  process.send?.(m);
};
const outbox = Outbox.open(join(cfg.dir, 'outbox.db'), {
  log,
  maxBytes: cfg.maxBytes,
  onCorrupt: 'move-aside',
  alerts: { prefix: cfg.prefix, gatewayId: cfg.gatewayId, intervalMs: 300 },
});
const uplink = new Uplink({
  url: cfg.url,
  prefix: cfg.prefix,
  gatewayId: cfg.gatewayId,
  outbox,
  log,
  version: '0.0.0-chaos',
  reconnect: { initialMs: 100, maxMs: 800 },
  maintainMs: 300,
});
uplink.start();
mkdirSync(join(cfg.dir, 'evidence'), { recursive: true });

let k = 0;
/** 30 % low, 60 % normal, 10 % high; every fifth event has a 3 kB evidence file. */
function next(): NewEvent {
  const i = k++;
  const id = uuidv7();
  const priority: Priority = i % 10 < 3 ? 'low' : i % 10 === 9 ? 'high' : 'normal';
  const camera = `cam-${i % 4}`;
  const e: NewEvent = { id, cameraId: camera, type: 'presence', topic: `${cfg.prefix}/${cfg.gatewayId}/event/presence`, priority };
  if (i % 5 === 0) {
    const image = randomBytes(3_000);
    const path = join('evidence', `${id}.jpg`);
    writeFileSync(join(cfg.dir, path), image);
    return { ...e, evidencePath: path, evidenceSha256: createHash('sha256').update(image).digest('hex'), evidenceBytes: image.length };
  }
  return e;
}

const timer = setInterval(() => {
  const batch = Array.from({ length: cfg.batch }, next);
  let added: { seq: number }[];
  try {
    added = outbox.addMany(batch, (e, seq) => ({ messageId: e.id, seq, camera: e.cameraId, priority: e.priority, pad: 'x'.repeat(100) }));
  } catch (err) {
    // A refused batch (the cap with nothing lower to evict) is counted by the outbox; the run goes on.
    send({ refused: (err as Error).message });
    return;
  }
  uplink.notify();
  send({
    committed: batch.map((e, i): Committed => ({ id: e.id, seq: added[i]!.seq, camera: e.cameraId, priority: e.priority ?? 'normal' })),
  });
}, cfg.tickMs);

process.on('message', (m: string) => {
  if (m !== 'finish') return;
  clearInterval(timer);
  const poll = setInterval(() => {
    outbox.maintain();
    const s = outbox.stats();
    if (s.pending + s.sent === 0) {
      clearInterval(poll);
      send({ drained: s });
    }
  }, 100);
});
process.once('SIGTERM', () => {
  clearInterval(timer);
  void uplink.stop().then(() => {
    outbox.close();
    process.exit(0);
  });
});
