/**
 * YUV 4:2:0 frames (src/vision/yuv.ts): the frame sources' layout. Checked against ffmpeg's own RGB24 conversion of
 * the same frames, for a limited-range H.264-like source and a full-range (MJPEG, yuvj420p) one; the detector's
 * preprocessing and detections on YUV against RGB; C against JavaScript; motion and scene greys against RGB.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { greyThumb } from '../src/rules/scene.js';
import { frameBytes, i420Layout, nativeVision, Preprocessor, toRgb, type Frame, type YuvFrame } from '../src/vision/index.js';
import { openInlineDetector } from '../src/vision/inference.js';
import type { Preprocess } from '../src/vision/manifest.js';
import { MotionDetector } from '../src/vision/motion.js';
import { iou } from '../src/vision/nms.js';
import { readFrames } from './helpers/frames.js';
import { defaultClip } from './helpers/rtsp.js';

const nanodet: Preprocess = { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] };
const letterbox: Preprocess = { resize: 'letterbox', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255], pad: 114 };
const TIMES = [1, 6, 12];

const work = mkdtempSync(join(tmpdir(), 'edgepatrol-yuv-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

/** The same moments of a clip in both layouts, width×height. */
async function pairs(file: string, width: number, height: number, times = TIMES): Promise<{ rgb: Frame; yuv: YuvFrame }[]> {
  const rgb = await readFrames(file, { width, height, times });
  const yuv = await readFrames(file, { width, height, times, pixelFormat: 'yuv420p' });
  return rgb.map((data, i) => ({ rgb: { width, height, data, ts: i }, yuv: { width, height, data: yuv[i]!, ts: i, format: 'yuv420p' } }));
}

/** Mean and largest absolute difference of two equally long arrays. */
function diff(a: ArrayLike<number>, b: ArrayLike<number>): { mean: number; max: number } {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let sum = 0;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { mean: sum / a.length, max };
}

t.test('layout: plane offsets and sizes, odd sizes rounding the chroma planes up', async (t) => {
  t.same(i420Layout(768, 576), { cw: 384, ch: 288, u: 442_368, v: 552_960, bytes: 663_552 });
  t.same(i420Layout(161, 121), { cw: 81, ch: 61, u: 19_481, v: 24_422, bytes: 29_363 });
  t.equal(frameBytes('yuv420p', 640, 360), 345_600, 'half the bytes of RGB24');
  t.equal(frameBytes('rgb24', 640, 360), 691_200);
  // ffmpeg writes exactly that many bytes for an odd size (readFrames checks the length it gets).
  const [odd] = await readFrames(defaultClip, { width: 161, height: 121, times: [1], pixelFormat: 'yuv420p' });
  t.equal(odd!.length, 29_363);
});

t.test("to RGB: C and JavaScript agree, and both match ffmpeg's conversion of the same frames", async (t) => {
  const mjpeg = join(work, 'full-range.mkv');
  const made = spawnSync('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-i',
    defaultClip,
    '-t',
    '13',
    '-c:v',
    'mjpeg',
    '-pix_fmt',
    'yuvj420p',
    '-q:v',
    '3',
    mjpeg,
  ]);
  t.equal(made.status, 0, `a full-range MJPEG clip was made ${made.stderr}`);
  const native = nativeVision();
  t.ok(native.ok, 'the addon built at set-up is loaded');
  for (const [name, file] of [
    ['limited-range source (vtest.avi)', defaultClip],
    ['full-range source (MJPEG, yuvj420p)', mjpeg],
  ] as const) {
    for (const { rgb, yuv } of await pairs(file, 640, 360)) {
      const c = toRgb(yuv);
      t.equal(c.data.length, 640 * 360 * 3);
      t.equal(c.format, undefined, 'an RGB frame');
      t.equal(c.ts, yuv.ts);
      // ffmpeg interpolates the chroma; toRgb shares each chroma sample between 2×2 pixels: they differ at colour
      // edges only. A wrong range or matrix would shift the whole picture (mean) by several levels.
      const d = diff(c.data, rgb.data);
      t.ok(d.mean < 2.5, `${name} at ${TIMES[yuv.ts]} s: mean difference to ffmpeg's RGB ${d.mean.toFixed(2)} levels (max ${d.max})`);
    }
  }
  // The JavaScript conversion (no addon) gives the same bytes, to a rounding.
  const yuv = (await pairs(defaultClip, 161, 121, [3]))[0]!.yuv;
  const js = spawnSync(
    process.execPath,
    [
      '--import',
      '@tapjs/typescript/import',
      '-e',
      `const { toRgb } = await import('./src/vision/yuv.ts'); const { readFileSync } = await import('node:fs');
     const data = readFileSync(0); process.stdout.write(toRgb({ width: 161, height: 121, data, ts: 0, format: 'yuv420p' }).data);`,
    ],
    { input: yuv.data, env: { ...process.env, EDGEPATROL_NATIVE_VISION: 'off' }, cwd: join(import.meta.dirname, '..'), maxBuffer: 1 << 24 },
  );
  t.equal(js.status, 0, `the JavaScript conversion ran ${js.stderr}`);
  const d = diff(js.stdout, toRgb(yuv).data);
  t.ok(d.max <= 1, `JavaScript and C differ by at most one level (max ${d.max}) on a 161×121 frame`);
  const [plain] = await pairs(defaultClip, 64, 64, [1]);
  t.equal(toRgb(plain!.rgb), plain!.rgb, 'an RGB frame passes as it is');
  if (native.ok) {
    t.throws(() => native.addon.i420ToRgb(new Uint8Array(10), 4, 4, new Uint8Array(48)), /smaller than/, 'a short frame is refused');
    t.throws(() => native.addon.i420ToRgb(new Uint8Array(24), 4, 4, new Uint8Array(47)), /output smaller/, 'a short output is refused');
  }
  t.throws(
    () => toRgb({ width: 4, height: 4, data: Buffer.alloc(23), ts: 0, format: 'yuv420p' }),
    /4x4 needs 24 bytes of YUV 4:2:0, got 23/,
  );
});

t.test("preprocessing a YUV frame: C and JavaScript agree, and the input matches the RGB frame's", async (t) => {
  const frames = await pairs(defaultClip, 768, 576);
  const odd = await pairs(defaultClip, 161, 121, [2]);
  const cases: [string, number, number, Preprocess, typeof frames][] = [
    ['768×576 → 416×416 stretch, BGR mean/std (the default model)', 416, 416, nanodet, frames],
    ['768×576 → 320×320 letterbox, RGB /255', 320, 320, letterbox, frames],
    ['161×121 → 416×416 upscale, odd size', 416, 416, nanodet, odd],
  ];
  for (const [name, w, h, p, images] of cases) {
    const js = new Preprocessor(w, h, p, 'bilinear', false);
    const c = new Preprocessor(w, h, p, 'bilinear');
    const rgb = new Preprocessor(w, h, p, 'bilinear');
    t.ok(c.native, 'the C loop');
    let worst = 0;
    for (const { rgb: r, yuv } of images) {
      const a = js.run(yuv);
      const b = c.run(yuv);
      worst = Math.max(worst, diff(a, b).max);
      // In input units: one RGB level is 1/57 of the default model's std, 1/255 of the /255 one.
      const unit = 1 / p.std[0]!;
      const d = diff(b, rgb.run(r));
      t.ok(d.mean < 2 * unit, `${name}: mean difference to the RGB frame's input ${(d.mean / unit).toFixed(2)} levels`);
    }
    t.ok(worst <= 1e-3, `${name}: C and JavaScript differ by ${worst.toExponential(2)} at most (float rounding)`);
    t.same(c.mapping, rgb.mapping, `${name}: the same mapping back to the frame`);
  }
  // The area filter converts to RGB first, then resamples as for an RGB frame.
  const area = new Preprocessor(416, 416, nanodet, 'area');
  const { rgb, yuv } = frames[0]!;
  const d = diff(area.run(yuv).slice(), area.run(rgb));
  t.ok(d.mean < 2 / 57, `area filter: mean difference ${(d.mean * 57).toFixed(2)} levels`);
  t.throws(
    () =>
      new Preprocessor(416, 416, nanodet, 'bilinear').run({ width: 768, height: 576, data: new Uint8Array(663_551), format: 'yuv420p' }),
    /768x576 needs 663552 bytes of YUV 4:2:0, got 663551/,
  );

  const native = nativeVision();
  if (!native.ok) return;
  const i32 = (...v: number[]) => Int32Array.from(v);
  const f32 = (...v: number[]) => Float32Array.from(v);
  // A 2×2 frame (6 bytes): one output pixel from columns x0/x1, rows y0/y1, chroma column/row cx/cy.
  const call = (src: Uint8Array, x1: number, y1: number, cx: number, cy: number, out = new Float32Array(3)) =>
    native.addon.bilinearI420(
      src,
      2,
      2,
      out,
      1,
      0,
      i32(0, 1, 2),
      i32(0),
      i32(x1),
      f32(0),
      i32(0),
      i32(y1),
      f32(0),
      i32(0),
      i32(cx),
      f32(0),
      i32(0),
      i32(cy),
      f32(0),
      f32(1, 1, 1),
      f32(0, 0, 0),
    );
  const grey = Uint8Array.of(126, 126, 126, 126, 128, 128);
  const out = new Float32Array(3);
  t.doesNotThrow(() => call(grey, 1, 1, 0, 0, out), 'in bounds');
  const level = (126 - 16) * (255 / 219);
  t.ok(
    diff(out, [level, level, level]).max < 0.01,
    `Y 126 with neutral chroma is grey ${level.toFixed(2)} in full range (${Array.from(out).join(', ')})`,
  );
  t.throws(() => call(grey, 2, 0, 0, 0), /past the frame/, 'a column past the Y plane');
  t.throws(() => call(grey, 0, 2, 0, 0), /past the frame/, 'a row past the Y plane');
  t.throws(() => call(grey, 0, 0, 1, 0), /past the frame/, 'a column past the chroma planes');
  t.throws(() => call(grey, 0, 0, 0, 1), /past the frame/, 'a row past the chroma planes');
  t.throws(() => call(grey.subarray(0, 5), 0, 0, 0, 0), /smaller than/, 'a short frame');
  t.throws(() => call(grey, 0, 0, 0, 0, new Float32Array(2)), /output too small/);
});

t.test('detections on YUV frames are the detections on the RGB frames', async (t) => {
  const detector = await openInlineDetector({ threads: 1 });
  t.teardown(() => detector.close());
  let matched = 0;
  let total = 0;
  for (const { rgb, yuv } of await pairs(defaultClip, 768, 576, [1, 4, 8, 12, 16])) {
    const a = await detector.detect(rgb);
    const b = await detector.detect(yuv);
    // Detections well above the score threshold (0.35); nearer it, a level's difference can tip one either way.
    const clear = a.filter((d) => d.score >= 0.45);
    total += clear.length;
    for (const d of clear) {
      const twin = b.find((e) => e.class === d.class && iou(Float32Array.from([...e.box, ...d.box]), 0, 1) > 0.8);
      if (twin && Math.abs(twin.score - d.score) < 0.1) matched++;
    }
    const clearYuv = b.filter((d) => d.score >= 0.45).length;
    t.ok(
      Math.abs(clear.length - clearYuv) <= 1,
      `${clear.length} detections of 0.45 or more on RGB, ${clearYuv} on YUV (${a.length} and ${b.length} in all)`,
    );
  }
  t.ok(total >= 10, `people found on the five frames (${total} with scores of 0.45 or more)`);
  t.ok(matched >= 0.95 * total, `${matched} of ${total} RGB detections have a YUV twin (same class, IoU > 0.8, score within 0.1)`);
});

t.test("motion and scene greys: a YUV frame gives the RGB frame's grey", async (t) => {
  const frames = await pairs(defaultClip, 320, 240, [1, 1.2, 1.4, 1.6, 1.8, 2, 6, 12]);
  for (const { rgb, yuv } of frames.slice(0, 3)) {
    const a = greyThumb(yuv);
    // The same picture converted to RGB: the grey formulas agree. Where a coloured highlight clips in RGB
    // (R, G or B at 255), its RGB grey is lower than the luma.
    const b = greyThumb(toRgb(yuv));
    const near = a.filter((v, i) => Math.abs(v - b[i]!) <= 2).length / a.length;
    t.ok(near >= 0.98, `scene thumbnail against its RGB conversion: ${(near * 100).toFixed(1)} % within 2 levels`);
    // ffmpeg's own RGB frame was resized by another filter (swscale's bicubic, zimg's bilinear for YUV).
    const d = diff(a, greyThumb(rgb));
    t.ok(d.mean < 2.5, `scene thumbnail against ffmpeg's RGB frame: mean difference ${d.mean.toFixed(2)}`);
  }
  const onRgb = new MotionDetector();
  const onYuv = new MotionDetector();
  let ts = 0;
  for (const { rgb, yuv } of frames) {
    ts += 200;
    const a = onRgb.update({ ...rgb, ts });
    const b = onYuv.update({ ...yuv, ts });
    t.equal(b.motion, a.motion, `motion ${a.motion} on both (changed ${a.changed.toFixed(4)} vs ${b.changed.toFixed(4)})`);
    t.ok(Math.abs(a.changed - b.changed) <= 0.1 * a.changed + 0.001, 'about the same area changed');
  }
});
