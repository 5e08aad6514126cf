import t from 'tap';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelCommand } from '../src/cli/model.js';
import { compareModels } from '../src/cli/model-quality.js';
import { entropyThreshold, percentileThreshold } from '../src/model/calibrate.js';
import { averagePrecision, compareDetections, type Box } from '../src/model/compare.js';
import { buildInt8, readCalibrationRecord } from '../src/model/int8.js';
import { decodeModel, readModel, tensorFromProto } from '../src/model/onnx.js';
import { planQuantization, quantizeWeights, uint8Params } from '../src/model/quantize.js';
import * as ort from 'onnxruntime-node';
import { defaultModelsDir, inputTensor, loadManifest, Preprocessor, resolveModel, type ModelSpec } from '../src/vision/index.js';
import { openInlineDetector } from '../src/vision/inference.js';
import type { ResizeFilter } from '../src/vision/preprocess.js';
import { readFrames } from './helpers/frames.js';

const modelsDir = defaultModelsDir();
const clip = join(modelsDir, '..', 'assets', 'vtest.avi');
const manifest = loadManifest(modelsDir);
const int8Name = Object.entries(manifest.models).find(
  ([, m]) => m.precision === 'int8' && (m.quantization as { from?: string } | undefined)?.from === 'nanodet-m',
)?.[0];
/** Held-out frames: the second half of vtest.avi; the shipped model's record says it was calibrated before 40 s. */
const HELD_OUT = { path: clip, start: 40, end: 79.5 };

t.test('quantization arithmetic', async (t) => {
  t.same(uint8Params([-1, 3]), { scale: Math.fround(4 / 255), zeroPoint: 64 }, 'asymmetric: 0 maps to an integer');
  t.same(uint8Params([0.5, 2]), { scale: Math.fround(2 / 255), zeroPoint: 0 }, 'the range always holds 0');
  t.same(uint8Params([0, 0]), { scale: 1, zeroPoint: 0 }, 'an all-zero tensor still gets a valid scale');
  const { q, scales } = quantizeWeights(Float32Array.from([1, -0.5, 0.25, 0, 0, 0, -2, 1]), 4);
  t.same(Array.from(scales), [1 / 127, 0.25 / 127, 1, 2 / 127].map(Math.fround), 'per channel max|w| / 127; zero channel → 1');
  t.same(Array.from(q), [127, -64, 127, 0, 0, 0, -127, 64], 'symmetric int8, half away from zero');
  const w7 = quantizeWeights(Float32Array.from([1, -0.6, 0.25, 0, 0, 0, -2, 0.9]), 4, 7);
  t.same(Array.from(w7.scales), [1 / 63, 0.25 / 63, 1, 2 / 63].map(Math.fround), '7 bits: per channel max|w| / 63');
  t.same(Array.from(w7.q), [63, -38, 63, 0, 0, 0, -63, 28], '7 bits: within ±63');
  // 1000 values in bin 0..9 and one outlier in the last bin: the 99 % threshold drops the outlier.
  const h = new Float64Array(2048);
  for (let i = 0; i < 10; i++) h[i] = 100;
  h[2047] = 1;
  t.equal(percentileThreshold(h, 2048, 99), 10, 'percentile');
  t.equal(percentileThreshold(h, 2048, 100), 2048);
  // A decaying distribution whose far tail is empty: the KL search clips the empty tail and keeps the bulk.
  const d = Float64Array.from({ length: 2048 }, (_, k) => Math.round(1e6 * Math.exp(-k / 60)));
  const last = d.findLastIndex((v) => v > 0);
  const e = entropyThreshold(d, 2048);
  t.ok(e >= 128 && e <= last + 1, `entropy threshold ${e} lies between 128 and the last non-empty bin ${last + 1}`);
  t.equal(entropyThreshold(new Float64Array(2048).fill(5), 2048), 2048, 'a flat histogram is not clipped');
});

t.test('agreement metrics', async (t) => {
  const box = (classId: number, score: number, x: number): Box => ({ classId, score, box: [x, 0, x + 10, 10] });
  t.equal(averagePrecision([true, false, true], 2), 1 * 0.5 + (2 / 3) * 0.5, 'all-point interpolation');
  t.equal(averagePrecision([], 3), 0);
  const r = compareDetections([
    {
      b: [box(0, 0.9, 0), box(0, 0.8, 20), box(1, 0.7, 40)],
      a: [box(0, 0.85, 1), box(1, 0.6, 20), box(1, 0.75, 40)],
      aAll: [box(0, 0.85, 1), box(1, 0.6, 20), box(1, 0.75, 40), box(0, 0.2, 20)],
    },
  ]);
  // a: class-0 box at 1 matches (IoU 9/11), class-1 box at 20 has no class-1 reference there, class-1 at 40 matches.
  t.same([r.truePositives, r.detections, r.reference], [2, 3, 3]);
  t.equal(r.f1, 2 / 3);
  t.equal(r.perClass[0]!.ap, 1, 'class 0: both found, the weak one ranked after the strong one');
  t.equal(r.map50, 1);
  t.ok(Math.abs(r.scoreDrift.mean - (-0.05 + 0.05) / 2) < 1e-9 && Math.abs(r.scoreDrift.maxAbs - 0.05) < 1e-9);
});

t.test(
  'the shipped INT8 default: rebuilt byte for byte, loads, and agrees with its FP32 source on held-out frames',
  { skip: int8Name ? false : 'no INT8 model in the manifest' },
  async (t) => {
    const spec = manifest.models[int8Name!]!;
    t.equal(manifest.default, int8Name, 'the INT8 model is the default');
    const q = spec.quantization as {
      from: string;
      ranges: string;
      method: string;
      calibration: { start?: number; end?: number; path: string };
    };
    const record = await readCalibrationRecord(join(modelsDir, q.ranges));
    // Calibrated on the calib image set (scripts/images.tsv): its vtest frames all lie before the held-out stretch,
    // and no image is also in the held-out set.
    t.equal(record.calibration.path, 'assets/images/calib', 'calibrated on the varied calib set');
    const sets = readFileSync(join(modelsDir, '..', 'scripts', 'images.tsv'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split('\t'));
    const calibVtest = sets
      .filter(([set, , source]) => set === 'calib' && source!.startsWith('vtest:'))
      .map(([, , source]) => Number(source!.slice(6)));
    t.ok(
      calibVtest.length > 0 && Math.max(...calibVtest) < HELD_OUT.start,
      `calib vtest frames up to ${Math.max(...calibVtest)} s, tested from ${HELD_OUT.start} s`,
    );
    const calibSums = new Set(sets.filter(([set]) => set === 'calib').map((r) => r[4]));
    t.notOk(
      sets.some(([set, , , , sum]) => set === 'heldout' && calibSums.has(sum)),
      'no held-out image is a calibration image',
    );
    const fp32 = await readModel(resolveModel(manifest, q.from).path);
    const bytes = buildInt8(fp32, record);
    t.equal(createHash('sha256').update(bytes).digest('hex'), spec.sha256, 'fp32 model + calibration record → the manifest sha256');

    // The QDQ form: int8 per-channel weights for the backbone convs, the decoder head's convs float.
    const model = decodeModel(bytes);
    const plan = planQuantization(fp32);
    const inits = new Map((model.graph!.initializer ?? []).map((i) => [i.name, i]));
    const convs = model.graph!.node!.filter((n) => n.opType === 'Conv');
    const int8Convs = convs.filter((n) => inits.get(`${n.input![1]!.replace(/_dequantized$/, '')}_quantized`));
    t.equal(int8Convs.length, convs.length - 3, 'every conv but the three head convs has int8 weights');
    t.equal(tensorFromProto(inits.get(`${int8Convs[0]!.input![1]!.replace(/_dequantized$/, '')}_quantized`)!).dtype, 'int8');
    t.ok(plan.head.filter((n) => n.includes('convolution')).length === 3, 'head convs are float');
    // 7-bit weights: no sum of two u8 × s8 products leaves int16, so x86 without VNNI computes what VNNI and arm64 do.
    t.equal(record.weightBits, 7, 'the shipped record asks for 7-bit weights');
    const maxAbs = Math.max(
      ...int8Convs.map((n) => {
        const w = tensorFromProto(inits.get(`${n.input![1]!.replace(/_dequantized$/, '')}_quantized`)!).data as Int8Array;
        return w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      }),
    );
    t.equal(maxAbs, 63, 'every int8 weight within ±63, and the range used');

    const r = await compareModels(modelsDir, int8Name!, q.from, { ...HELD_OUT, frames: 30 });
    t.comment(
      `held-out 30 frames: P ${r.precision.toFixed(4)} R ${r.recall.toFixed(4)} F1 ${r.f1.toFixed(4)} mAP@0.5 ${r.map50.toFixed(4)} ` +
        `drift ${r.scoreDrift.meanAbs.toFixed(4)}`,
    );
    t.ok(r.reference > 100, `a real test: ${r.reference} reference boxes`);
    t.ok(r.f1 >= 0.9, `F1 ${r.f1.toFixed(4)} >= 0.90`);
  },
);

t.test(
  "the uint8 input: the preprocessing quantizes as the model's first QuantizeLinear did, bit for bit",
  { skip: int8Name ? false : 'no INT8 model in the manifest' },
  async (t) => {
    const spec = manifest.models[int8Name!]!;
    const q = spec.quantization as { from: string; ranges: string };
    const record = await readCalibrationRecord(join(modelsDir, q.ranges));
    t.equal(record.uint8Input, true, 'the shipped record asks for a uint8 input');
    t.match(spec.input, { type: 'uint8', quantization: { scale: Number, zeroPoint: Number } }, 'and the manifest says how it is quantized');
    const fp32 = await readModel(resolveModel(manifest, q.from).path);
    const floatBytes = buildInt8(fp32, { ...record, uint8Input: false });
    // Records written before a field existed still build what they built: the record of the default shipped until
    // 2026-12 (8-bit weights, no weightBits field) gives its model, and without uint8Input the float-input one before it.
    const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
    const old = await readCalibrationRecord(join(import.meta.dirname, 'fixtures', 'nanodet-m-int8-461bffa8.calib.json'));
    t.equal(old.weightBits, undefined);
    t.equal(
      sha(buildInt8(fp32, old)),
      '461bffa88bfee25b16dd74a6c1b396063290ffb1139700b98f1567e4fa7841ba',
      'a record without weightBits: 8-bit weights, byte for byte',
    );
    t.equal(
      sha(buildInt8(fp32, { ...old, uint8Input: false })),
      '58b55a0e26a093473026ec98a1100ec0ba27a0977e923d4346431bb93f0ec922',
      'without uint8Input: the float-input model of before, byte for byte',
    );
    const graph = decodeModel(buildInt8(fp32, record)).graph!;
    t.equal(graph.input![0]!.type!.tensorType!.elemType, 2, 'the graph input is uint8');
    t.same(
      graph.node!.filter((n) => n.input!.includes(spec.input.name)).map((n) => n.opType),
      ['DequantizeLinear'],
      'read by its DequantizeLinear only',
    );
    t.notOk(
      graph.node!.some((n) => n.opType === 'QuantizeLinear' && n.input![0] === spec.input.name),
      'no QuantizeLinear of the input left',
    );

    const opts = { executionProviders: ['cpu'], intraOpNumThreads: 1, graphOptimizationLevel: 'all' } as const;
    const floatSession = await ort.InferenceSession.create(floatBytes, opts);
    const uint8Session = await ort.InferenceSession.create(buildInt8(fp32, record), opts);
    t.teardown(async () => {
      await floatSession.release();
      await uint8Session.release();
    });
    const floatSpec: ModelSpec = { ...spec, input: { name: spec.input.name, shape: spec.input.shape, layout: spec.input.layout } };
    const times = [3, 41];
    const frames = [
      ...(await readFrames(clip, { width: 768, height: 576, times })).map((data) => ({ width: 768, height: 576, data })),
      ...(await readFrames(clip, { width: 768, height: 576, times, pixelFormat: 'yuv420p' })).map((data) => ({
        width: 768,
        height: 576,
        data,
        format: 'yuv420p' as const,
      })),
      ...(await readFrames(clip, { width: 320, height: 180, times: [20], pixelFormat: 'yuv420p' })).map((data) => ({
        width: 320,
        height: 180,
        data,
        format: 'yuv420p' as const,
      })),
    ];
    const variants: [string, ResizeFilter, boolean, ModelSpec['preprocess']][] = [
      ['bilinear in C', 'bilinear', true, spec.preprocess],
      ['bilinear in JavaScript', 'bilinear', false, spec.preprocess],
      ['area', 'area', true, spec.preprocess],
      ['bilinear in C, letterbox', 'bilinear', true, { ...spec.preprocess, resize: 'letterbox', pad: 114 }],
      ['bilinear in JavaScript, letterbox', 'bilinear', false, { ...spec.preprocess, resize: 'letterbox', pad: 114 }],
    ];
    for (const [name, filter, native, preprocess] of variants) {
      const floatPre = Preprocessor.forModel({ ...floatSpec, preprocess }, filter, native);
      const uint8Pre = Preprocessor.forModel({ ...spec, preprocess }, filter, native);
      t.type(floatPre.output, Float32Array);
      t.type(uint8Pre.output, Uint8Array);
      for (const f of frames) {
        const a = (await floatSession.run({ [spec.input.name]: inputTensor(floatSpec, floatPre.run(f)) }))[spec.output.name]!
          .data as Float32Array;
        const b = (await uint8Session.run({ [spec.input.name]: inputTensor(spec, uint8Pre.run(f)) }))[spec.output.name]!
          .data as Float32Array;
        let differ = 0;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differ++;
        t.equal(differ, 0, `${name}, ${f.width}x${f.height} ${'format' in f ? 'YUV' : 'RGB'}: all ${a.length} outputs identical`);
      }
    }
    t.throws(() => inputTensor(spec, new Float32Array(3 * 416 * 416)), /model input 'input' takes uint8, got a Float32Array/);
    // Its input range was calibrated for its own preprocessing: another one is refused, naming the float model to use.
    await t.rejects(
      openInlineDetector({ model: int8Name!, preprocess: { resize: 'stretch', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] } }),
      { name: 'ModelError', message: /takes a uint8 input quantized for its own preprocessing.*fp32 source: nanodet-m/ },
    );
  },
);

t.test('edgepatrol model quantize on the real model, calibrated on a few frames, passes the F1 bar on held-out frames', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-quantize-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fp32 = resolveModel(manifest, 'nanodet-m');
  copyFileSync(fp32.path, join(dir, fp32.spec.file));
  const { writeManifestEntry } = await import('../src/model/manifest-file.js');
  await writeManifestEntry(join(dir, 'manifest.json'), 'nanodet-m', { ...fp32.spec });

  const out = { text: '', err: '' };
  const io = {
    stdout: {
      write: (s: string) => {
        out.text += s;
      },
    },
    stderr: {
      write: (s: string) => {
        out.err += s;
      },
    },
  };
  const code = await modelCommand(
    [
      'quantize',
      'nanodet-m',
      '--calib',
      clip,
      '--frames',
      '8',
      '--start',
      '0',
      '--end',
      '40',
      '--method',
      'minmax',
      '--out',
      'q',
      '--models-dir',
      dir,
    ],
    io,
  );
  t.equal(code, 0, out.err);
  t.match(out.text, /quantized nanodet-m → q: .*q\.onnx \(sha256 [0-9a-f]{64}, [\d.]+ MB\)/);
  const after = loadManifest(dir);
  t.equal(after.default, 'nanodet-m', 'not made the default without --default');
  const spec = after.models.q!;
  t.equal(spec.precision, 'int8');
  t.match(spec.quantization, {
    from: 'nanodet-m',
    method: 'minmax',
    calibration: { path: clip, frames: 8, start: 0, end: 40 },
    ranges: 'q.calib.json',
  });
  t.ok(readFileSync(join(dir, 'q.onnx')).length < readFileSync(join(dir, fp32.spec.file)).length / 3, 'under a third of the fp32 size');

  const list = { text: '', err: '' };
  await modelCommand(['list', '--models-dir', dir], {
    stdout: {
      write: (s: string) => {
        list.text += s;
      },
    },
    stderr: {
      write: (s: string) => {
        list.err += s;
      },
    },
  });
  t.match(list.text, /nanodet-m \*\s+fp32/);
  t.match(list.text, /q\s+int8\s+nanodet\s+416x416\s+80\s+[0-9a-f]{12}\s+quantized from nanodet-m \(minmax\)/);

  const r = await compareModels(dir, 'q', 'nanodet-m', { ...HELD_OUT, frames: 20 });
  t.comment(`8-frame minmax calibration, held-out 20 frames: F1 ${r.f1.toFixed(4)} mAP@0.5 ${r.map50.toFixed(4)}`);
  t.ok(r.f1 >= 0.9, `F1 ${r.f1.toFixed(4)} >= 0.90`);

  const bad = { text: '', err: '' };
  const badIo = {
    stdout: {
      write: (s: string) => {
        bad.text += s;
      },
    },
    stderr: {
      write: (s: string) => {
        bad.err += s;
      },
    },
  };
  t.equal(await modelCommand(['quantize', 'nanodet-m', '--calib', clip, '--keep-float', 'no-such-node', '--models-dir', dir], badIo), 1);
  t.match(bad.err, /--keep-float names no node or node output of this model: no-such-node/);
});
