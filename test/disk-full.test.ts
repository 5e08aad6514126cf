/**
 * A full disk, for real: the data folder on a small tmpfs mounted for this test (root only). The recorder writes
 * events with evidence until the disk is full, then the disk is filled to the last byte by something else. Events
 * must all be kept, in order; evidence goes (oldest first), each drop counted and announced, with a log line that
 * says what happened and what to do.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseConfig } from '../src/config/index.js';
import { EventRecorder } from '../src/agent/recorder.js';
import { eventPayloadSchema } from '../src/agent/event.js';
import { GATEWAY_STREAM, Outbox } from '../src/outbox/index.js';
import type { RuleHit } from '../src/rules/index.js';
import type { RgbFrame } from '../src/vision/types.js';

const W = 640;
const H = 480;
/** Well above SQLite's WAL at its checkpoint size (1,000 pages, 4 MiB): it is the images that fill this disk. */
const DISK = 12 * 1024 * 1024;

function run(cmd: string, args: string[]): { ok: boolean; why: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { ok: r.status === 0, why: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
}

/** Free bytes on the file system holding `dir`. */
function free(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

/** Writes to `file` until the file system says ENOSPC or only `leave` bytes are free; returns the bytes written. */
function fill(file: string, leave: number): number {
  const fd = openSync(file, 'a');
  const chunk = Buffer.alloc(4096, 1);
  let written = 0;
  try {
    while (free(file.replace(/\/[^/]+$/, '')) > leave) written += writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    closeSync(fd);
  }
  return written;
}

/** Noise compresses badly: each evidence JPEG is tens of kB, so a few dozen events fill the disk. */
function noiseFrame(ts: number): RgbFrame {
  return { width: W, height: H, data: randomBytes(W * H * 3), ts };
}

function hit(i: number, ts: number): RuleHit {
  return {
    eventId: `00000000-0000-7000-8000-${String(i).padStart(12, '0')}`,
    state: 'instant',
    eventType: 'fire_lane_parking',
    rule: 'presence',
    ruleId: 'r',
    zoneId: 'z',
    startedAt: ts,
    ts,
    dwellSeconds: 0,
    objects: [{ class: 'car', score: 0.9, box: [0.2, 0.3, 0.5, 0.8], trackId: i }],
    unseen: [],
  };
}

// Not t.testdir(): tap removes that before teardowns run, while the tmpfs is still mounted on it.
const mount = mkdtempSync(join(tmpdir(), 'edgepatrol-disk-full-'));
t.teardown(() => rmSync(mount, { recursive: true, force: true }));
if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to mount a tmpfs of a known size (run the suite as root, as CI does)');
} else {
  const mounted = run('mount', ['-t', 'tmpfs', '-o', `size=${DISK}`, 'tmpfs', mount]);
  if (!mounted.ok) {
    t.plan(0, `mount -t tmpfs refused here (${mounted.why}); a container needs CAP_SYS_ADMIN for this test`);
  } else {
    t.teardown(() => {
      const unmounted = run('umount', [mount]);
      if (!unmounted.ok) throw new Error(`umount ${mount}: ${unmounted.why}`);
    });
    t.test('full disk: events kept in order, evidence dropped oldest first and counted, a clear log line', async (t) => {
      const dataDir = join(mount, 'data');
      mkdirSync(dataDir);
      const cfg = parseConfig(
        `
gateway: { id: gw-df, dataDir: ${dataDir} }
mqtt: { url: mqtt://127.0.0.1, prefix: ept }
# No free-space floor: this test is about the disk filling to its last byte (test/disk-floor.test.ts has the floor).
evidence: { minFreeBytes: 0 }
cameras:
  - id: cam-1
    name: Fire lane
    source: { file: x.avi }
    detect: { fps: 2, width: ${W}, height: ${H} }
    location: { lat: 22.54, lon: 114.03, address: Xiangmihu Rd 1, grid: FT-XMH-0101 }
    zones:
      - id: z
        polygon: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]
        rules:
          - { id: r, kind: presence, type: fire_lane_parking, classes: [car] }
`,
        join(dataDir, 'gateway.yaml'),
      );
      const lines: { level: number; msg: string; err?: unknown }[] = [];
      const log = pino(
        { level: 'info' },
        {
          write: (line: string) => {
            lines.push(JSON.parse(line));
          },
        },
      );
      const outbox = Outbox.open(join(dataDir, 'outbox.db'), { log, alerts: { prefix: 'ept', gatewayId: 'gw-df', intervalMs: 0 } });
      t.teardown(() => outbox.close());
      const recorder = new EventRecorder({ config: cfg, dataDir, outbox, uplink: { notify: () => {} }, log });
      const cam = cfg.cameras[0]!;
      const model = { name: 'nanodet-m', sha256: 'ab'.repeat(32) };
      const t0 = Date.parse('2026-03-01T08:00:00Z');
      const events = () => outbox.list({ limit: 10_000 }).filter((r) => r.cameraId === cam.id);
      const diskFullDrops = () =>
        outbox
          .drops()
          .filter((d) => d.reason === 'disk_full')
          .reduce((n, d) => n + d.count, 0);

      // 1. Events with evidence until well past the disk's size: the recorder frees the oldest images.
      const n = 60;
      for (let i = 0; i < n; i++) {
        const ts = t0 + i * 1000;
        t.ok(await recorder.record(cam, noiseFrame(ts), hit(i, ts), model), `event ${i} recorded`, {
          errors: lines.filter((l) => l.level >= 50).slice(-2),
        });
      }
      let rows = events();
      t.equal(rows.length, n, 'every event is in the outbox');
      t.same(
        rows.map((r) => JSON.parse(r.payload).id),
        Array.from({ length: n }, (_v, i) => hit(i, 0).eventId),
        'in the order they were recorded',
      );
      t.equal(outbox.stats().dropped.events, 0, 'no event dropped');
      const dropped = rows.filter((r) => r.evidenceState === 'dropped');
      const kept = rows.filter((r) => r.evidenceState === 'kept');
      t.ok(dropped.length > 0, `the disk filled: ${dropped.length} of ${n} images dropped`);
      t.ok(kept.length > 0, `${kept.length} images still kept`);
      t.ok(
        Math.max(...dropped.map((r) => r.seq)) < Math.min(...kept.slice(-1).map((r) => r.seq)),
        'the newest image is kept; the dropped ones are older',
      );
      t.equal(diskFullDrops(), dropped.length, 'every dropped image counted as a disk_full drop');
      for (const r of kept) {
        const bytes = readFileSync(outbox.evidenceFile(r.evidencePath!));
        t.equal(createHash('sha256').update(bytes).digest('hex'), r.evidenceSha256, `kept image of seq ${r.seq} is intact`);
      }
      for (const r of dropped)
        t.notOk(existsSync(outbox.evidenceFile(r.evidencePath!)), `dropped image of seq ${r.seq} is gone from the disk`);
      const line = lines.find((l) =>
        /^disk full under .+: dropped \d+ evidence image\(s\) \(\d+ bytes\) to keep events; free space on that disk$/.test(l.msg),
      );
      t.ok(line, `log: ${line?.msg}`);
      t.equal(line?.level, 50, 'logged as an error');
      t.ok(line?.msg.includes(dataDir), 'the line names the data folder');

      const alerts = outbox.list({ limit: 10_000 }).filter((r) => r.cameraId === GATEWAY_STREAM && r.type === 'outbox_drop');
      const announced = alerts
        .flatMap(
          (a) => (JSON.parse(a.payload) as { detail: { dropped: { what: string; reason: string; count: number }[] } }).detail.dropped,
        )
        .filter((d) => d.what === 'evidence' && d.reason === 'disk_full')
        .reduce((s, d) => s + d.count, 0);
      t.equal(announced, diskFullDrops(), 'outbox_drop alert events announce every disk_full drop');

      // 2. Something else takes every byte left: the next event's image can only be stored by dropping older ones.
      fill(join(mount, 'filler'), 0);
      t.ok(
        await recorder.record(cam, noiseFrame(t0 + n * 1000), hit(n, t0 + n * 1000), model),
        'an event recorded on a completely full disk',
      );
      rows = events();
      t.equal(rows.length, n + 1, 'kept');
      t.equal(rows.at(-1)!.evidenceState, 'kept', 'its image was stored after older images were dropped');

      // 3. No image left to drop and no room for a new one (an image is ~200 kB), but room for a row (96 kB): the
      // event is kept without its image.
      outbox.freeDiskSpace(Number.MAX_SAFE_INTEGER);
      for (const f of readdirSync(join(dataDir, 'evidence'), { recursive: true, withFileTypes: true })) {
        if (f.isFile()) unlinkSync(join(f.parentPath, f.name));
      }
      fill(join(mount, 'filler'), 96 * 1024);
      const before = diskFullDrops();
      const ts = t0 + (n + 1) * 1000;
      t.ok(await recorder.record(cam, noiseFrame(ts), hit(n + 1, ts), model), 'recorded', {
        errors: lines.filter((l) => l.level >= 40).slice(-3),
      });
      rows = events();
      const last = rows.at(-1)!;
      t.equal(rows.length, n + 2, 'kept');
      t.match(last, { evidenceState: 'dropped', evidencePath: null }, 'stored without its image');
      t.equal(diskFullDrops(), before + 1, 'and the image counted as a disk_full drop');
      const payload = eventPayloadSchema.parse(JSON.parse(last.payload));
      t.equal(payload.evidence.annotated.bytes, last.evidenceBytes, 'the payload still describes the image, as for an evicted one');
      t.ok(
        lines.some((l) => l.msg.includes('not stored, the event is kept without it; free space on that disk')),
        'log says the image was not stored',
      );

      const parts = readdirSync(join(dataDir, 'evidence'), { recursive: true })
        .map(String)
        .filter((f) => f.endsWith('.part'));
      t.same(parts, [], 'no partial files left behind');
      unlinkSync(join(mount, 'filler'));
    });
  }
}
