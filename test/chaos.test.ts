/**
 * Chaos and soak, bounded (`npm run chaos`, and part of the tap suite): a gateway child (test/chaos-producer.ts:
 * the real Outbox + Uplink) commits ~5,000 events while it is SIGKILLed and restarted 10 times at random moments,
 * Mosquitto is restarted 5 times (once with an outage long enough to fill the outbox's byte cap), and a persistent
 * subscriber records everything. Then: 0 committed events lost except by the stated eviction rule, every drop
 * counted and announced, duplicates only as copies of the same message, order per camera preserved.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { Outbox } from '../src/outbox/index.js';
import type { ChaosConfig, Committed } from './chaos-producer.js';
import { collect, startMosquitto } from './helpers/mosquitto.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const target = Number(process.env.EDGEPATROL_CHAOS_EVENTS ?? 5_000);
const kills = 10;
const brokerRestarts = 5;
const prefix = 'chaos';
const gatewayId = 'gw-c';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

async function until(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`chaos: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The producer compiled once to plain JS beside the tests (a child starts in a fraction of a second, not through the TS loader). */
function buildProducer(): string {
  const out = mkdtempSync(join(root, 'test', 'chaos-build-'));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(
    process.execPath,
    [
      tsc,
      '--outDir',
      out,
      '--rootDir',
      root,
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--skipLibCheck',
      '--types',
      'node',
      '--strict',
      join(root, 'test', 'chaos-producer.ts'),
    ],
    { stdio: 'pipe' },
  );
  return out;
}

t.test('chaos: SIGKILLs, broker restarts and a full outbox lose no committed event beyond the counted evictions', async (t) => {
  const build = buildProducer();
  t.teardown(() => rmSync(build, { recursive: true, force: true }));
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-chaos-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const broker = await startMosquitto({ persistence: true });
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, `${prefix}/${gatewayId}/#`, { session: `chaos-central-${process.pid}` });
  t.teardown(() => sub.close());

  const cfg: ChaosConfig = { url: broker.url, dir, prefix, gatewayId, maxBytes: 400_000, batch: 10, tickMs: 20 };
  const committed = new Map<string, Committed>();
  let refused = 0;
  let child: ChildProcess | undefined;
  let drained: unknown;
  const startChild = (): ChildProcess => {
    const c = spawn(process.execPath, [join(build, 'test', 'chaos-producer.js')], {
      env: { ...process.env, EDGEPATROL_CHAOS: JSON.stringify(cfg) },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    c.on('message', (m: { committed?: Committed[]; refused?: string; drained?: unknown }) => {
      for (const e of m.committed ?? []) committed.set(e.id, e);
      if (m.refused) refused++;
      if (m.drained) drained = m.drained;
    });
    return c;
  };
  t.teardown(() => {
    child?.kill('SIGKILL');
  });

  child = startChild();
  const started = performance.now();
  // Kills spread over the production; broker restarts after every second kill, the third one a long outage.
  for (let k = 1; k <= kills; k++) {
    await until('production to go on', () => committed.size >= (target * k) / (kills + 2), 120_000);
    await sleep(between(0, 300));
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
    if (k % 2 === 0) {
      const r = k / 2;
      await broker.stop();
      child = startChild();
      if (r === 3) {
        // Restart 3: down until the gateway has produced well over the byte cap (400 kB ≈ 400 pending events
        // here), counted in events rather than seconds so a slow machine reaches the cap too.
        const before = committed.size;
        await until('the outage to overfill the byte cap', () => committed.size >= before + 900, 90_000);
      } else {
        await sleep(between(100, 500));
      }
      await broker.restart();
      t.comment(`kill ${k}, broker restart ${r}/${brokerRestarts}`);
    } else {
      child = startChild();
      t.comment(`kill ${k}`);
    }
  }
  await until(`${target} committed events`, () => committed.size >= target, 120_000);
  child.send('finish');
  await until('the outbox to drain', () => drained !== undefined, 120_000);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
  const productionS = (performance.now() - started) / 1000;

  const outbox = Outbox.open(join(dir, 'outbox.db'));
  t.teardown(() => outbox.close());
  const drops = outbox.drops();
  const stats = outbox.stats();
  t.comment(`outbox: ${JSON.stringify(stats)}; drops: ${JSON.stringify(drops)}`);
  t.ok(
    drops.every((d) => d.reason === 'full'),
    'the only drops are byte-cap evictions (no ttl configured, disk not full)',
  );
  t.ok(stats.dropped.events + stats.dropped.evidence > 0, 'the byte cap was reached');

  const droppedEvents = drops.filter((d) => d.what === 'event');
  t.ok(
    droppedEvents.every((d) => d.priority === 'low'),
    `evicted events are low priority only: ${JSON.stringify(droppedEvents)}`,
  );
  const allowedMissing = droppedEvents.reduce((n, d) => n + d.count, 0) + refused * cfg.batch;

  const eventTopic = `${prefix}/${gatewayId}/event/presence`;
  // Everything committed and not evicted must arrive: wait for it, bounded.
  const received = () =>
    new Set(sub.messages.filter((m) => m.topic === eventTopic).map((m) => (JSON.parse(m.payload) as { messageId: string }).messageId));
  await until(
    'the subscriber to receive every committed event that was not evicted',
    () => {
      const got = received();
      let missing = 0;
      for (const id of committed.keys()) if (!got.has(id)) missing++;
      return missing <= allowedMissing;
    },
    60_000,
  ).catch(() => {});
  const got = received();
  const missing = [...committed.values()].filter((e) => !got.has(e.id));
  t.ok(
    missing.every((e) => e.priority === 'low'),
    `every missing event is a low-priority one the cap evicted (${missing.length} missing)`,
  );
  t.ok(missing.length <= allowedMissing, `missing (${missing.length}) ≤ counted event drops (${allowedMissing})`);
  t.equal(missing.filter((e) => e.priority !== 'low').length, 0, '0 normal or high events lost');

  const events = sub.messages.filter((m) => m.topic === eventTopic);
  const byId = new Map<string, string>();
  let duplicates = 0;
  let conflicting = 0;
  for (const m of events) {
    const id = (JSON.parse(m.payload) as { messageId: string }).messageId;
    const first = byId.get(id);
    if (first === undefined) byId.set(id, m.payload);
    else {
      duplicates++;
      if (first !== m.payload) conflicting++;
    }
  }
  t.equal(conflicting, 0, `duplicates (${duplicates}) are exact copies of the same message`);
  const unknown = [...byId.keys()].filter((id) => !committed.has(id));
  t.comment(`${unknown.length} event(s) arrived that the child committed but was killed before reporting`);

  const lastSeqPerCamera = new Map<string, number>();
  let outOfOrder = 0;
  const seen = new Set<string>();
  for (const m of events) {
    const p = JSON.parse(m.payload) as { messageId: string; seq: number; camera: string };
    if (seen.has(p.messageId)) continue;
    seen.add(p.messageId);
    if (p.seq < (lastSeqPerCamera.get(p.camera) ?? 0)) outOfOrder++;
    lastSeqPerCamera.set(p.camera, p.seq);
  }
  t.equal(outOfOrder, 0, 'first copies arrive in seq order per camera');

  const alerts = sub.messages.filter((m) => m.topic === `${prefix}/${gatewayId}/alert/outbox_drop`);
  const alertIds = new Set<string>();
  let announced = 0;
  for (const a of alerts) {
    const p = JSON.parse(a.payload) as { id: string; detail: { dropped: { count: number }[] } };
    if (alertIds.has(p.id)) continue;
    alertIds.add(p.id);
    announced += p.detail.dropped.reduce((n, d) => n + d.count, 0);
  }
  t.equal(announced, stats.dropped.events + stats.dropped.evidence, `the ${alertIds.size} drop alert(s) announce every drop exactly once`);

  t.comment(
    `chaos: ${committed.size} events committed in ${productionS.toFixed(1)} s through ${kills} SIGKILLs and ${brokerRestarts} broker restarts; ` +
      `${byId.size} distinct received, ${duplicates} duplicates, ${missing.length} evicted (low), ${stats.dropped.evidence} evidence images evicted`,
  );
});
