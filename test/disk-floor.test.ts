// The disk's free-space floor (issue 18 item 7): below evidence.minFreeBytes no evidence image is written, events
// are still stored and published, each image counted as a disk_floor drop, and health says so. The real agent on
// the real clip with a real Mosquitto; the floor is set above this disk's free space rather than filling a disk.
import t from 'tap';
import { existsSync, readdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { collect, startMosquitto } from './helpers/mosquitto.js';
import { clipCamera, gatewayConfig, outboxRows, runCli, tempDir, writeConfig } from './helpers/agent.js';

interface Health {
  disk: { freeBytes: number; floorBytes: number; evidencePaused: boolean } | null;
  outbox: { drops: { what: string; reason: string; count: number }[] };
}

t.test('below the floor: events kept and published without images, drops counted, health says evidencePaused', async (t) => {
  const broker = await startMosquitto();
  t.teardown(() => broker.stop());
  const sub = await collect(broker.url, 'ept/#');
  t.teardown(() => sub.close());
  const dir = tempDir('disk-floor');
  const s = statfsSync(dir);
  // Far above what this disk has free: every image is below the floor.
  const floor = s.blocks * s.bsize * 2;
  const config = writeConfig(dir, { ...gatewayConfig(dir, broker.url, [clipCamera('cam-a')]), evidence: { minFreeBytes: floor } });
  const agent = runCli(['run', '--config', config]);
  t.teardown(() => agent.stop('SIGKILL'));

  const health = (): Health[] =>
    sub.messages.filter((m) => m.topic === 'ept/gw-test-01/health').map((m) => JSON.parse(m.payload) as Health);
  await sub.waitFor(
    (m) =>
      m.filter((x) => x.topic.includes('/event/')).length >= 2 &&
      health().some((h) => h.outbox.drops.some((d) => d.reason === 'disk_floor')),
    120_000,
  );
  const events = sub.messages.filter((m) => m.topic.includes('/event/'));
  t.ok(events.length >= 2, `${events.length} events published below the floor`);
  t.same(
    sub.messages.filter((m) => m.topic.includes('/evidence/')),
    [],
    'no evidence image published: none was written',
  );
  const dataDir = join(dir, 'data');
  const evidenceDir = join(dataDir, 'evidence');
  const files = existsSync(evidenceDir) ? readdirSync(evidenceDir, { recursive: true }).filter((f) => String(f).endsWith('.jpg')) : [];
  t.same(files, [], 'no image file on disk');
  const rows = outboxRows(dataDir);
  t.ok(rows.length >= 2, `${rows.length} events in the outbox`);
  t.ok(
    rows.every((r) => r.evidence_path === null),
    'the rows have no evidence file',
  );
  const payload = JSON.parse(rows[0]!.payload) as { evidence: { annotated: { sha256: string; bytes: number } } };
  t.match(
    payload.evidence.annotated,
    { sha256: /^[0-9a-f]{64}$/, bytes: Number },
    'the payload still describes the image that was not kept',
  );

  const last = health().at(-1)!;
  t.match(last.disk, { floorBytes: floor, evidencePaused: true }, 'health: the floor and evidencePaused');
  t.ok(
    last.outbox.drops.some((d) => d.what === 'evidence' && d.reason === 'disk_floor' && d.count >= 1),
    'health: evidence drops with reason disk_floor',
  );
  t.match(
    agent.stderr(),
    /below its floor \([0-9]+ bytes free, evidence.minFreeBytes [0-9]+\): evidence images are not written, events are kept/,
  );
  t.equal(agent.stderr().match(/below its floor/g)?.length, 1, 'said once, not per image');
  t.same(await agent.stop('SIGTERM'), { code: 0, signal: null });
});
