import t from 'tap';
import { MotionDetector, MotionGate } from '../src/vision/motion.js';
import type { RgbFrame } from '../src/vision/types.js';
import { readFrames } from './helpers/frames.js';
import { defaultClip } from './helpers/rtsp.js';

const W = 640;
const H = 360;
/** 12 s of the real clip at its native 10 fps, and one still frame of it. */
const clip = await readFrames(defaultClip, { width: W, height: H, count: 120 });
const still = clip[0]!;

/** Deterministic noise of ±amplitude grey levels per byte, as a camera sensor and H.264 add to a still scene. */
function noisy(src: Buffer, amplitude: number, seed: number): Buffer {
  const out = Buffer.from(src);
  let s = seed >>> 0;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = Math.min(255, Math.max(0, out[i]! + ((s >>> 24) % (2 * amplitude + 1)) - amplitude));
  }
  return out;
}

/** Paints a solid rectangle (pixels) into a copy of the frame. */
function withBlock(src: Buffer, x: number, y: number, w: number, h: number, grey = 20): Buffer {
  const out = Buffer.from(src);
  for (let r = y; r < y + h; r++) out.fill(grey, (r * W + x) * 3, (r * W + x + w) * 3);
  return out;
}

const frame = (data: Buffer, ts: number): RgbFrame => ({ width: W, height: H, data, ts });

t.test('a still scene with sensor noise: no motion after the first frame', async (t) => {
  const md = new MotionDetector();
  const results = Array.from({ length: 50 }, (_, i) => md.update(frame(noisy(still, 6, i), 1000 + i * 200)));
  t.match(results[0], { motion: true, reset: true }, 'the first frame starts the background and counts as motion');
  t.same(results.slice(1).filter((r) => r.motion).length, 0);
  t.ok(
    results.slice(1).every((r) => r.changed < 0.002),
    'noise changes (almost) nothing',
  );
});

t.test('an object moving across a still scene: motion on every frame, boxed where it is', async (t) => {
  const md = new MotionDetector();
  md.update(frame(still, 0));
  for (let i = 1; i <= 20; i++) {
    const x = 40 + i * 25;
    const r = md.update(frame(noisy(withBlock(still, x, 150, 30, 80), 6, i), i * 200));
    t.ok(r.motion, `frame ${i}: motion`);
    const [bx1, by1, bx2, by2] = r.box!;
    t.ok(
      bx1 * W <= x + 4 && bx2 * W >= x + 26 && by1 * H <= 154 && by2 * H >= 226,
      `frame ${i}: box ${r.box!.map((v) => v.toFixed(2))} covers the object`,
    );
  }
});

t.test('motion inside a mask is ignored; outside it still counts', async (t) => {
  const md = new MotionDetector({
    masks: [
      [
        [0, 0.3],
        [1, 0.3],
        [1, 0.75],
        [0, 0.75],
      ],
    ],
  });
  md.update(frame(still, 0));
  let masked = 0;
  for (let i = 1; i <= 20; i++) if (md.update(frame(withBlock(still, 40 + i * 25, 150, 30, 80), i * 200)).motion) masked++;
  t.equal(masked, 0, 'the object moves inside the masked band');
  t.ok(md.update(frame(withBlock(still, 300, 20, 40, 60), 4400)).motion, 'an object above the band is seen');
});

t.test('something that arrives and stays fades into the background', async (t) => {
  const md = new MotionDetector({ backgroundSeconds: 2 });
  md.update(frame(still, 0));
  const parked = withBlock(still, 300, 200, 80, 60);
  const motion = Array.from({ length: 50 }, (_, i) => md.update(frame(noisy(parked, 4, i), 200 + i * 200)).motion);
  t.ok(motion.slice(0, 5).every(Boolean), 'motion while it is new');
  const lastMotion = motion.lastIndexOf(true);
  t.ok(lastMotion > 4 && lastMotion < 25, `no motion from ${((lastMotion + 1) * 0.2).toFixed(1)} s on (time constant 2 s)`);
  t.ok(motion.slice(lastMotion + 1).every((m) => !m));
});

t.test('a change of the whole scene (lights) restarts the background instead of reporting motion forever', async (t) => {
  const md = new MotionDetector();
  md.update(frame(still, 0));
  const brighter = Buffer.from(still.map((v) => Math.min(255, v + 80)));
  t.match(md.update(frame(brighter, 200)), { motion: true, reset: true });
  t.notOk(md.update(frame(noisy(brighter, 4, 1), 400)).motion, 'quiet again on the next frame');
});

t.test('the real clip (people walking) has motion on nearly every frame, in a small part of the image', async (t) => {
  const md = new MotionDetector();
  const results = clip.filter((_, i) => i % 2 === 0).map((d, i) => md.update(frame(d, i * 200)));
  const moving = results.slice(1).filter((r) => r.motion).length / (results.length - 1);
  t.ok(moving > 0.9, `motion on ${(moving * 100).toFixed(0)} % of frames`);
  const meanChanged = results.slice(1).reduce((s, r) => s + r.changed, 0) / (results.length - 1);
  t.ok(meanChanged > 0.002 && meanChanged < 0.2, `mean changed fraction ${meanChanged.toFixed(4)}`);
});

t.test('the gate: detect on motion; without motion only at the refresh rate, and only while objects are tracked', async (t) => {
  const gate = new MotionGate(new MotionDetector(), { refreshMs: 2000 });
  const decisions: string[] = [];
  for (let i = 0; i < 25; i++) {
    const ts = i * 200;
    const tracked = i < 15;
    const { decision } = gate.decide(frame(noisy(still, 4, i), ts), tracked);
    if (decision !== 'skip') gate.detected(ts);
    decisions.push(decision);
  }
  t.same(
    decisions.map((d, i) => [i, d]).filter(([, d]) => d !== 'skip'),
    [
      [0, 'motion'],
      [10, 'refresh'],
    ],
    'first frame, then once per 2 s while objects are tracked (until frame 15)',
  );
  const ungated = new MotionGate(null, { refreshMs: 2000 });
  t.same(ungated.decide(frame(still, 0), false).decision, 'motion', 'no motion detector: every frame is detected');
});
