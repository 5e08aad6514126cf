import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  Candidates,
  decodeNanodet,
  inputTensor,
  iou,
  loadManifest,
  ModelError,
  nanodetCellCount,
  nativeVision,
  nms,
  openModelSession,
  Preprocessor,
  readVerifiedModel,
  resolveModel,
  type NanodetLayout,
} from '../src/vision/index.js';
import type { Preprocess } from '../src/vision/manifest.js';
import { quantizeInput } from '../src/vision/preprocess.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { defaultClip } from './helpers/rtsp.js';
import { drawLabel, drawRect, drawText, textSize, type Canvas } from '../src/evidence/draw.js';

const close = (t: Test, got: ArrayLike<number>, want: number[], eps = 1e-4, msg = ''): void => {
  t.equal(got.length, want.length, `${msg} length`);
  const diffs = want.map((w, i) => Math.abs((got[i] ?? NaN) - w));
  t.ok(
    diffs.every((d) => d <= eps),
    `${msg} [${Array.from(got)
      .map((v) => v.toFixed(4))
      .join(', ')}] ≈ [${want.join(', ')}]`,
  );
};

t.test('NanoDet decoder', async (t) => {
  // 32×32 input, strides 8 and 16: a 4×4 grid then a 2×2 grid; 3 classes, 11 bins a side.
  const layout: NanodetLayout = { inputWidth: 32, inputHeight: 32, strides: [8, 16], regMax: 10, numClasses: 3 };
  const C = 3 + 4 * 11;
  t.equal(nanodetCellCount(layout), 20);
  const out = new Float32Array(20 * C).fill(0);
  for (let cell = 0; cell < 20; cell++) out.fill(0.01, cell * C, cell * C + 3);
  /** Side logits at `cell`: a spike at `bin` (softmax ≈ one-hot), or equal logits at each of `bins`. */
  const side = (cell: number, s: number, bins: number[]): void => {
    for (const b of bins) out[cell * C + 3 + s * 11 + b] = 60;
  };
  // Stride 8, cell (x=1, y=2) → centre (12, 20); l=1, t=2, r=0, b=1 bins → box (4, 4, 12, 28); best class 2.
  const a = 2 * 4 + 1;
  out[a * C + 0] = 0.3;
  out[a * C + 2] = 0.9;
  side(a, 0, [1]);
  side(a, 1, [2]);
  side(a, 2, [0]);
  side(a, 3, [1]);
  // Stride 16, cell (x=1, y=0) → centre (24, 8); each side split evenly over bins 0 and 1 → 0.5 × 16 = 8 px.
  const b = 16 + 1;
  out[b * C + 1] = 0.6;
  for (let s = 0; s < 4; s++) side(b, s, [0, 1]);
  // Stride 8, cell (x=3, y=3) → centre (28, 28); b = 10 bins → 80 px, clipped to the 32 px input.
  const c = 15;
  out[c * C + 0] = 0.5;
  side(c, 0, [0]);
  side(c, 1, [0]);
  side(c, 2, [0]);
  side(c, 3, [10]);

  const cand = decodeNanodet(out, layout, 0.4, new Candidates(1));
  t.equal(cand.count, 3, 'three cells pass 0.4 (the store grows past its initial capacity)');
  close(t, cand.boxes.subarray(0, 4), [4, 4, 12, 28], 1e-4, 'peaked bins');
  t.equal(cand.classIds[0], 2, 'best class of the cell');
  t.ok(Math.abs(cand.scores[0]! - 0.9) < 1e-6);
  // Cells come out in output order: stride 8 (cells a, c) before stride 16 (cell b).
  close(t, cand.boxes.subarray(4, 8), [28, 28, 28, 32], 1e-4, 'clipped to the input');
  close(t, cand.boxes.subarray(8, 12), [16, 0, 32, 16], 1e-4, 'expected value of a two-bin distribution');
  t.equal(cand.classIds[2], 1);

  t.equal(decodeNanodet(out, layout, 0.95, cand).count, 0, 'nothing above 0.95; store cleared');
  t.throws(() => decodeNanodet(out.subarray(0, 10), layout, 0.4, cand), RangeError, 'short output is refused');

  // Uniform logits over 11 bins → expected bin 5 on every side.
  const u = new Float32Array(20 * C);
  u[0] = 0.9;
  const ucand = decodeNanodet(u, { ...layout, inputWidth: 200, inputHeight: 200, strides: [8, 16].map(() => 100) }, 0.5, new Candidates());
  t.equal(ucand.count, 1);
  close(t, ucand.boxes.subarray(0, 4), [0, 0, 200, 200], 1e-3, 'uniform bins, clipped');
});

t.test('NMS', async (t) => {
  const c = new Candidates(2);
  c.push(0, 0, 10, 10, 0.9, 0);
  c.push(1, 1, 11, 11, 0.8, 0); // IoU with #0 = 81/119 ≈ 0.68 → suppressed at 0.5
  c.push(1, 1, 11, 11, 0.7, 1); // same box, other class → kept
  c.push(20, 20, 30, 30, 0.95, 0); // disjoint → kept
  c.push(0, 0, 10, 20, 0.6, 0); // IoU with #0 = 0.5 exactly → kept (suppression needs > threshold)
  t.ok(Math.abs(iou(c.boxes, 0, 1) - 81 / 119) < 1e-6, 'iou');
  t.equal(iou(c.boxes, 0, 3), 0);
  t.same(nms(c, 0.5), [3, 0, 2, 4], 'class-wise, best first');
  t.same(nms(c, 0.5, 2), [3, 0], 'top-k');
  t.same(nms(c, 0.9), [3, 0, 1, 2, 4], 'loose threshold keeps all');
  t.same(nms(new Candidates(), 0.5), []);
});

t.test('preprocess', async (t) => {
  const unit = {
    resize: 'stretch' as const,
    channels: 'rgb' as const,
    mean: [0, 0, 0] as [number, number, number],
    std: [255, 255, 255] as [number, number, number],
  };
  const img = (w: number, h: number, px: number[]): { width: number; height: number; data: Uint8Array } => ({
    width: w,
    height: h,
    data: Uint8Array.from(px),
  });

  // 2×2 → 2×2 is the identity; planes R, G, B.
  const same = new Preprocessor(2, 2, unit).run(img(2, 2, [255, 0, 0, 0, 255, 0, 0, 0, 255, 51, 102, 153]));
  close(t, same, [1, 0, 0, 0.2, 0, 1, 0, 0.4, 0, 0, 1, 0.6], 1e-6, 'identity NCHW');

  // 4×2 → 2×1 area average: each output is the mean of a 2×2 block.
  const down = new Preprocessor(2, 1, unit).run(
    img(4, 2, [0, 0, 0, 100, 100, 100, 10, 10, 10, 30, 30, 30, 50, 50, 50, 50, 50, 50, 20, 20, 20, 40, 40, 40]),
  );
  close(t, down, [50 / 255, 25 / 255, 50 / 255, 25 / 255, 50 / 255, 25 / 255], 1e-6, 'area downscale');

  // 3×1 → 2×1: output pixels cover 1.5 source pixels each.
  const frac = new Preprocessor(2, 1, unit).run(img(3, 1, [0, 0, 0, 90, 90, 90, 180, 180, 180]));
  close(t, frac.subarray(0, 2), [30 / 255, 150 / 255], 1e-6, 'area downscale, fractional coverage');

  // 2×1 → 4×1 bilinear with half-pixel centres: 0, 25, 75, 100.
  const up = new Preprocessor(4, 1, unit).run(img(2, 1, [0, 0, 0, 100, 100, 100]));
  close(t, up.subarray(0, 4), [0, 25 / 255, 75 / 255, 100 / 255], 1e-6, 'bilinear upscale');

  // BGR planes with mean/std: (v − mean) / std per model channel.
  const bgr = new Preprocessor(1, 1, { resize: 'stretch', channels: 'bgr', mean: [10, 20, 30], std: [2, 4, 5] });
  const first = bgr.run(img(1, 1, [130, 120, 110]));
  close(t, first, [(110 - 10) / 2, (120 - 20) / 4, (130 - 30) / 5], 1e-5, 'bgr mean/std');
  const second = bgr.run(img(1, 1, [0, 0, 0]));
  t.equal(second, first, 'the output buffer is reused');
  t.throws(() => bgr.run(img(2, 2, [1, 2, 3])), RangeError, 'short frame refused');

  // Bilinear: the 2×2 source pixels around each output centre, half-pixel centres, edges clamped.
  const bi = (w: number, h: number, src: ReturnType<typeof img>) => new Preprocessor(w, h, unit, 'bilinear').run(src);
  close(
    t,
    bi(2, 2, img(2, 2, [255, 0, 0, 0, 255, 0, 0, 0, 255, 51, 102, 153])),
    [1, 0, 0, 0.2, 0, 1, 0, 0.4, 0, 0, 1, 0.6],
    1e-6,
    'bilinear identity',
  );
  // 4×1 → 2×1: centres at source x = 0.5 and 2.5, halfway between two pixels each.
  close(
    t,
    bi(2, 1, img(4, 1, [0, 0, 0, 100, 100, 100, 10, 10, 10, 30, 30, 30])).subarray(0, 2),
    [50 / 255, 20 / 255],
    1e-6,
    'bilinear downscale',
  );
  // 2×2 → 1×1: the centre of the four.
  close(t, bi(1, 1, img(2, 2, [0, 0, 0, 40, 40, 40, 80, 80, 80, 120, 120, 120])).subarray(0, 1), [60 / 255], 1e-6, 'bilinear 2-D');
  close(
    t,
    bi(4, 1, img(2, 1, [0, 0, 0, 100, 100, 100])).subarray(0, 4),
    [0, 25 / 255, 75 / 255, 100 / 255],
    1e-6,
    'bilinear upscale, same as area',
  );
  // Letterbox with bilinear: a 4×2 frame into 4×4 keeps its aspect, rows 1–2, grey border.
  const lb = new Preprocessor(4, 4, { ...unit, resize: 'letterbox', pad: 51 }, 'bilinear');
  const boxed = lb.run(
    img(
      4,
      2,
      Array.from({ length: 24 }, () => 255),
    ),
  );
  close(t, boxed.subarray(0, 16), [0.2, 0.2, 0.2, 0.2, 1, 1, 1, 1, 1, 1, 1, 1, 0.2, 0.2, 0.2, 0.2], 1e-6, 'bilinear letterbox');
  t.same(lb.mapping, { scaleX: 1, scaleY: 1, padX: 0, padY: 1 });
  // Into a caller's buffer (what the worker detector sends): same values, border included, output untouched.
  const mine = new Float32Array(48).fill(-7);
  const before = Float32Array.from(lb.output);
  t.equal(
    lb.run(
      img(
        4,
        2,
        Array.from({ length: 24 }, (_, i) => (i * 10) % 256),
      ),
      mine,
    ),
    mine,
    'returns the buffer it filled',
  );
  t.same(Array.from(lb.output), Array.from(before), 'its own output is left as it was');
  t.same(
    Array.from(mine),
    Array.from(
      lb.run(
        img(
          4,
          2,
          Array.from({ length: 24 }, (_, i) => (i * 10) % 256),
        ),
      ),
    ),
    'the same input as in its own output',
  );
  t.throws(
    () =>
      lb.run(
        img(
          4,
          2,
          Array.from({ length: 24 }, () => 0),
        ),
        new Float32Array(47),
      ),
    /Float32Array of 47, the model takes a Float32Array of 48/,
  );

  // A quantized (uint8) input: the float value, then x / scale rounded half to even, plus the zero point, clamped.
  // An odd zero point: rounding must happen before it is added (3.5 + 11 would round to 14 + 1, not 15).
  const q = { scale: 0.5, zeroPoint: 11 };
  for (const [native, filter] of [
    [true, 'bilinear'],
    [false, 'bilinear'],
    [true, 'area'],
  ] as const) {
    const name = `${filter}${filter === 'bilinear' ? (native ? ' (C)' : ' (JavaScript)') : ''}`;
    // value = pixel (mean 0, std 1); scale 0.5 → q = pixel * 2 + 11.
    const p8 = new Preprocessor(4, 1, { ...unit, std: [1, 1, 1], mean: [0, 0, 0] }, filter, native, q);
    t.type(p8.output, Uint8Array, `${name}: a uint8 output`);
    const px = [0, 0.25, 0.75, 200];
    const out = p8.run(img(4, 1, px.flatMap((v) => [v, v, v]).map(Math.round)));
    // Pixels are whole bytes (0, 0, 1, 200): 11, 11, 13, and 411 clamped to 255.
    t.same(Array.from(out.subarray(0, 4)), [11, 11, 13, 255], `${name}: quantized and clamped`);
    const ties = new Preprocessor(4, 1, { ...unit, std: [4, 4, 4], mean: [0, 0, 0] }, filter, native, q);
    // value = pixel / 4, x / scale = pixel / 2: pixels 1, 3, 5, 7 are ties at 0.5, 1.5, 2.5, 3.5 → even: 0, 2, 2, 4.
    t.same(
      Array.from(
        ties
          .run(
            img(
              4,
              1,
              [1, 3, 5, 7].flatMap((v) => [v, v, v]),
            ),
          )
          .subarray(0, 4),
      ),
      [11, 13, 13, 15],
      `${name}: ties round to even before the zero point`,
    );
    const boxed8 = new Preprocessor(4, 4, { ...unit, resize: 'letterbox', pad: 51, std: [255, 255, 255] }, filter, native, {
      scale: 0.01,
      zeroPoint: 0,
    });
    t.same(
      Array.from(
        boxed8
          .run(
            img(
              4,
              2,
              Array.from({ length: 24 }, () => 255),
            ),
          )
          .subarray(0, 16),
      ),
      [20, 20, 20, 20, 100, 100, 100, 100, 100, 100, 100, 100, 20, 20, 20, 20],
      `${name}: the letterbox border quantized too`,
    );
    const mine8 = new Uint8Array(48);
    t.same(
      Array.from(
        boxed8.run(
          img(
            4,
            2,
            Array.from({ length: 24 }, () => 255),
          ),
          mine8,
        ),
      ),
      Array.from(boxed8.output),
      `${name}: into a caller's buffer, border included`,
    );
    t.throws(
      () =>
        p8.run(
          img(
            4,
            1,
            Array.from({ length: 12 }, () => 0),
          ),
          new Float32Array(12),
        ),
      /Float32Array of 12, the model takes a Uint8Array of 12/,
      `${name}: a float buffer is refused`,
    );
  }
  const x = Float32Array.from([-1, 0.25, 0.75, 1.25, 300, Number.NaN]);
  const dst = new Uint8Array(6);
  quantizeInput(x, { scale: 0.5, zeroPoint: 3 }, dst);
  t.same(Array.from(dst), [1, 3, 5, 5, 255, 0], 'quantizeInput: x / scale = −2, 0.5, 1.5, 2.5 (ties to even), then + 3; clamped; NaN → 0');
});

t.test('manifest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-manifest-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bytes = Buffer.from('not really onnx');
  writeFileSync(join(dir, 'm.onnx'), bytes);
  const spec = {
    file: 'm.onnx',
    sha256: createHash('sha256').update(bytes).digest('hex'),
    format: 'onnx',
    precision: 'fp32',
    input: { name: 'input', shape: [1, 3, 32, 32], layout: 'NCHW' },
    output: { name: 'output', shape: [1, 20, 3 + 44] },
    preprocess: { resize: 'stretch', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] },
    decoder: { kind: 'nanodet', strides: [8, 16], regMax: 10, numClasses: 3 },
    classes: ['a', 'b', 'c'],
  };
  const write = (m: unknown): void => writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m));

  write({ schema: 1, default: 'tiny', models: { tiny: spec, other: { ...spec, file: 'gone.onnx' } } });
  const manifest = loadManifest(dir);
  const model = resolveModel(manifest);
  t.equal(model.name, 'tiny');
  t.equal(model.path, join(dir, 'm.onnx'));
  t.same(model.classes, ['a', 'b', 'c']);
  t.same(await readVerifiedModel(model), bytes);
  t.throws(() => resolveModel(manifest, 'nope'), { name: 'ModelError', message: /unknown model 'nope'.*known models: tiny, other/ });
  await t.rejects(readVerifiedModel(resolveModel(manifest, 'other')), {
    message: new RegExp(`model file ${join(dir, 'gone.onnx')}.*missing: run scripts/setup.sh`),
  });
  writeFileSync(join(dir, 'm.onnx'), 'tampered');
  await t.rejects(readVerifiedModel(model), {
    name: 'ModelError',
    message: new RegExp(`${join(dir, 'm.onnx')}.*expected ${spec.sha256}, found [0-9a-f]{64}.*Refusing`),
  });

  write({ schema: 1, default: 'tiny', models: { tiny: { ...spec, output: { name: 'output', shape: [1, 21, 47] } } } });
  t.throws(() => loadManifest(dir), { message: /output\.shape: is \[1,21,47\] but the decoder needs \[1,20,47\]/ });
  write({ schema: 1, default: 'tiny', models: { tiny: { ...spec, input: { ...spec.input, type: 'uint8' } } } });
  t.throws(() => loadManifest(dir), { message: /models\.tiny\.input\.quantization: is required for a uint8 input/ });
  write({
    schema: 1,
    default: 'tiny',
    models: { tiny: { ...spec, input: { ...spec.input, quantization: { scale: 0.1, zeroPoint: 3 } } } },
  });
  t.throws(() => loadManifest(dir), { message: /models\.tiny\.input\.quantization: is only for an input of type uint8/ });
  write({
    schema: 1,
    default: 'tiny',
    models: { tiny: { ...spec, input: { ...spec.input, type: 'uint8', quantization: { scale: 0.1, zeroPoint: 300 } } } },
  });
  t.throws(() => loadManifest(dir), { message: /models\.tiny\.input\.quantization\.zeroPoint/ });
  write({ schema: 1, default: 'x', models: { tiny: { ...spec, classes: ['a'] } } });
  t.throws(() => loadManifest(dir), { message: /models\.tiny\.classes: has 1 names but decoder\.numClasses is 3/ });
  t.throws(() => loadManifest(dir), { message: /default: names 'x', which is not in models/ });
  writeFileSync(join(dir, 'manifest.json'), '{');
  t.throws(() => loadManifest(dir), { message: /manifest\.json is not valid JSON/ });
  t.throws(
    () => loadManifest(join(dir, 'none')),
    new ModelError(
      `model manifest ${join(dir, 'none', 'manifest.json')} is missing: run scripts/setup.sh (builds the default model)`,
      join(dir, 'none', 'manifest.json'),
    ),
  );
});

t.test('draw', async (t) => {
  const canvas = (w: number, h: number): Canvas => ({ width: w, height: h, data: new Uint8Array(w * h * 3) });
  const at = (c: Canvas, x: number, y: number): number[] => Array.from(c.data.subarray((y * c.width + x) * 3, (y * c.width + x) * 3 + 3));
  const red = [255, 0, 0] as const;

  const r = canvas(10, 10);
  drawRect(r, [2, 2, 8, 8], red, 2);
  t.same(at(r, 2, 2), [255, 0, 0], 'corner');
  t.same(at(r, 3, 5), [255, 0, 0], 'inside the 2-px left edge');
  t.same(at(r, 4, 5), [0, 0, 0], 'interior untouched');
  t.same(at(r, 7, 7), [255, 0, 0], 'last pixel inside x2, y2');
  t.same(at(r, 8, 8), [0, 0, 0], 'x2, y2 exclusive');
  drawRect(r, [-5, -5, 50, 50], red, 1);
  t.same(at(r, 0, 9), [255, 0, 0], 'a box larger than the image is outlined at the image border');

  const txt = canvas(40, 12);
  drawText(txt, 1, 1, 'Hi!', [255, 255, 255]);
  const { width, height } = textSize('Hi!');
  t.same([width, height], [17, 8]);
  let lit = 0;
  let outside = 0;
  for (let y = 0; y < 12; y++)
    for (let x = 0; x < 40; x++) {
      if (at(txt, x, y)[0]) {
        lit++;
        if (x < 1 || x >= 1 + width || y < 1 || y >= 1 + height) outside++;
      }
    }
  t.ok(lit > 20, `text lights pixels (${lit})`);
  t.equal(outside, 0, 'text stays inside its measured box');
  t.same(at(txt, 1, 1), [255, 255, 255], 'H top-left stroke');

  const lab = canvas(30, 30);
  t.same(
    drawLabel(lab, 25, 5, 'ab', { color: [0, 0, 0], background: [0, 255, 0], padding: 1 }),
    [17, 5, 30, 15],
    'no room above → placed below the anchor, pushed left to stay inside',
  );
});

const here = dirname(fileURLToPath(import.meta.url));
/** The default model's preprocessing (upstream NanoDet: BGR, mean/std). */
const nanodet: Preprocess = { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] };

t.test("bilinear preprocessing in C gives the JavaScript loop's input", async (t) => {
  const js = (w: number, h: number, p: Preprocess) => new Preprocessor(w, h, p, 'bilinear', false);
  const c = (w: number, h: number, p: Preprocess) => new Preprocessor(w, h, p, 'bilinear');
  t.ok(
    c(2, 2, nanodet).native,
    `the addon built at set-up is used (${nativeVision().ok ? 'loaded' : (nativeVision() as { reason: string }).reason})`,
  );
  t.notOk(js(2, 2, nanodet).native);
  const frames: VideoFrame[] = [];
  for await (const f of readVideoFrames(defaultClip, { fps: 0.2, maxFrames: 3 })) frames.push(f);
  const small = { width: 160, height: 120, data: Uint8Array.from({ length: 160 * 120 * 3 }, (_, i) => (i * 7919) % 256) };
  const cases: [string, number, number, Preprocess, { width: number; height: number; data: Uint8Array }[]][] = [
    ['768×576 → 416×416 stretch, BGR mean/std (the default model)', 416, 416, nanodet, frames],
    [
      '768×576 → 320×320 letterbox, RGB /255',
      320,
      320,
      { resize: 'letterbox', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255], pad: 114 },
      frames,
    ],
    ['160×120 → 416×416 upscale', 416, 416, nanodet, [small]],
  ];
  for (const [name, w, h, p, images] of cases) {
    const a = js(w, h, p);
    const b = c(w, h, p);
    let worst = 0;
    for (const img of images) {
      const x = a.run(img);
      const y = b.run(img);
      for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
    }
    t.ok(worst <= 1e-4, `${name}: largest difference ${worst.toExponential(2)} (float rounding)`);
    t.same(b.mapping, a.mapping, `${name}: same mapping`);
  }
  // A frame smaller than its size says is refused before the native loop reads it.
  t.throws(() => c(416, 416, nanodet).run({ width: 768, height: 576, data: new Uint8Array(100) }), RangeError);
  // The addon checks the tables against the buffers itself: a bad call throws, it does not read out of bounds.
  const native = nativeVision();
  if (!native.ok) return;
  const i32 = (...v: number[]) => Int32Array.from(v);
  const f32 = (...v: number[]) => Float32Array.from(v);
  const call = (src: Uint8Array, x1: number, y1: number, out = new Float32Array(3)) =>
    native.addon.bilinear(src, 3, out, 1, 0, i32(0, 1, 2), i32(0), i32(x1), f32(0), i32(0), i32(y1), f32(0), f32(1, 1, 1), f32(0, 0, 0));
  t.doesNotThrow(() => call(new Uint8Array(6), 0, 1), 'a 1×2 frame, in bounds');
  t.throws(() => call(new Uint8Array(6), 3, 0), /past the frame/, 'a column past the row');
  t.throws(() => call(new Uint8Array(6), 0, 2), /past the frame/, 'a row past the frame');
  t.throws(() => call(new Uint8Array(6), 0, 1, new Float32Array(2)), /output too small/);
  t.throws(
    () =>
      native.addon.bilinear(
        new Uint8Array(6),
        3,
        new Float32Array(3),
        1,
        0,
        i32(0, 1),
        i32(0),
        i32(0),
        f32(0),
        i32(0),
        i32(0),
        f32(0),
        f32(1, 1, 1),
        f32(0, 0, 0),
      ),
    /do not match/,
  );
  const off = spawnSync(
    process.execPath,
    [
      '--import',
      '@tapjs/typescript/import',
      '-e',
      "const { Preprocessor } = await import('./src/vision/index.ts'); console.log(JSON.stringify(new Preprocessor(2, 2, { resize: " +
        "'stretch', channels: 'rgb', mean: [0, 0, 0], std: [1, 1, 1] }, 'bilinear').native));",
    ],
    { encoding: 'utf8', env: { ...process.env, EDGEPATROL_NATIVE_VISION: 'off' }, cwd: join(here, '..') },
  );
  t.equal(off.stdout.trim(), 'false', `EDGEPATROL_NATIVE_VISION=off keeps the JavaScript loop ${off.stderr}`);
});

t.test("the NanoDet class scan in C finds the JavaScript loop's candidates", async (t) => {
  t.ok(nativeVision().ok, 'the addon built at set-up is loaded');
  const same = (a: Candidates, b: Candidates, msg: string): void => {
    t.equal(a.count, b.count, `${msg}: ${a.count} candidates each`);
    t.same(Array.from(a.classIds.subarray(0, a.count)), Array.from(b.classIds.subarray(0, b.count)), `${msg}: classes`);
    t.same(Array.from(a.scores.subarray(0, a.count)), Array.from(b.scores.subarray(0, b.count)), `${msg}: scores`);
    t.same(Array.from(a.boxes.subarray(0, 4 * a.count)), Array.from(b.boxes.subarray(0, 4 * b.count)), `${msg}: boxes`);
  };
  // Real outputs of the default model on vtest.avi frames, at a low, the default and a high threshold.
  const { model, session, inputWidth, inputHeight } = await openModelSession({ threads: 1 });
  t.teardown(() => session.release());
  const pre = Preprocessor.forModel(model.spec, 'bilinear');
  const decoder = model.spec.decoder;
  if (decoder.kind !== 'nanodet') throw new Error(`the default model's decoder is ${decoder.kind}`);
  const layout: NanodetLayout = {
    inputWidth,
    inputHeight,
    strides: decoder.strides,
    regMax: decoder.regMax,
    numClasses: decoder.numClasses,
  };
  let found = 0;
  for await (const f of readVideoFrames(defaultClip, { fps: 0.1, maxFrames: 3 })) {
    const result = await session.run({ [model.spec.input.name]: inputTensor(model.spec, pre.run(f).slice()) });
    const out = result[model.spec.output.name]!.data as Float32Array;
    for (const threshold of [0.05, 0.35, 0.6]) {
      const c = decodeNanodet(out, layout, threshold, new Candidates());
      same(c, decodeNanodet(out, layout, threshold, new Candidates(), false), `frame at ${f.time} s, threshold ${threshold}`);
      found += c.count;
    }
  }
  t.ok(found > 0, `the frames have candidates to compare (${found})`);
  // At the threshold itself: a float just above a threshold given as a double passes in both, one just below in neither.
  const tiny: NanodetLayout = { inputWidth: 8, inputHeight: 8, strides: [8], regMax: 10, numClasses: 2 };
  const row = new Float32Array(2 + 44);
  for (const [score, threshold] of [
    [Math.fround(0.1), 0.1],
    [Math.fround(0.35), 0.35],
    [Math.fround(0.7), 0.7],
  ] as const) {
    row[1] = score;
    const js = decodeNanodet(row, tiny, threshold, new Candidates(), false);
    same(
      decodeNanodet(row, tiny, threshold, new Candidates()),
      js,
      `score ${score} at threshold ${threshold} (${js.count ? 'passes' : 'does not pass'})`,
    );
  }
});
