/**
 * What evidence encoding costs the frame path: ms per message (annotated + clean JPEG of a 640×480 frame of
 * vtest.avi) and how long the event loop is blocked meanwhile — sharp encodes on libuv's pool, only drawing the
 * annotations (a frame copy + boxes + text) runs on the main thread. Run: npm run build && node dist/bench/evidence.js
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { annotateEvidence, drawAnnotations } from '../src/evidence/annotate.js';
import { encodeJpeg } from '../src/common/jpeg.js';
import type { Canvas } from '../src/evidence/draw.js';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), process.argv[1]?.includes('/dist/') ? '../..' : '..');
const W = 640;
const H = 480;
const raw = execFileSync(
  'ffmpeg',
  [
    '-loglevel',
    'error',
    '-ss',
    '10',
    '-i',
    join(root, 'assets/vtest.avi'),
    '-frames:v',
    '1',
    '-vf',
    `scale=${W}:${H}`,
    '-f',
    'rawvideo',
    '-pix_fmt',
    'rgb24',
    'pipe:1',
  ],
  { maxBuffer: 64 << 20 },
);
const frame: Canvas = { width: W, height: H, data: raw };
const drawing = {
  title: 'Plaza walkway | fire_lane_parking | 2025-06-06 12:00:00 GMT+8',
  zone: [
    [0.8, 0.1],
    [1, 0.1],
    [1, 0.25],
    [0.8, 0.25],
  ] as const,
  objects: [
    { class: 'truck', score: 0.58, box: [0.85, 0.07, 0.95, 0.17] as const, trackId: 4 },
    { class: 'car', score: 0.53, box: [0.95, 0.09, 1, 0.16] as const, trackId: 5 },
  ],
};
const N = 100;

// Warm-up, so the JIT and sharp's thread pool are not what is measured.
for (let i = 0; i < 10; i++) await annotateEvidence(frame, { ...drawing, quality: 80 });

// Main-thread part alone: copy + draw.
let t0 = performance.now();
for (let i = 0; i < N; i++) drawAnnotations({ width: W, height: H, data: Buffer.from(frame.data) }, drawing);
const drawMs = (performance.now() - t0) / N;

// A whole message's evidence, one after another, with the event loop watched.
const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
t0 = performance.now();
for (let i = 0; i < N; i++) await Promise.all([annotateEvidence(frame, { ...drawing, quality: 80 }), encodeJpeg(frame, 80)]);
const messageMs = (performance.now() - t0) / N;
h.disable();

console.log(`evidence for one message (annotated + clean JPEG q80, ${W}x${H}), ${N} runs:`);
console.log(`  wall time per message:            ${messageMs.toFixed(2)} ms`);
console.log(`  main thread (copy + draw):        ${drawMs.toFixed(2)} ms  (${((100 * drawMs) / messageMs).toFixed(0)} % of it)`);
console.log(
  `  event-loop delay while encoding:  p50 ${(h.percentile(50) / 1e6).toFixed(2)} ms, p99 ${(h.percentile(99) / 1e6).toFixed(2)} ms, max ` +
    `${(h.max / 1e6).toFixed(2)} ms`,
);
