import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelCommand } from '../src/cli/model.js';
import { encodeModel, GraphBuilder } from '../src/model/onnx.js';
import { classNamesFromMetadata, installModel } from '../src/model/registry.js';
import {
  Candidates,
  decodeYolov5,
  decodeYolov8,
  loadManifest,
  openDetector,
  Preprocessor,
  remapClasses,
  type ModelSpec,
} from '../src/vision/index.js';

/**
 * A model that ignores its image and always emits `values` as `output` [dims]: the decoders and the load-time
 * checks then see exactly the tensor the test wrote, through real onnxruntime.
 */
function constantModel(inputShape: number[], dims: number[], values: Float32Array, names?: string[]): Uint8Array {
  const g = new GraphBuilder('constant');
  g.addInput('images', 'float32', inputShape);
  const k = g.addInitializer('values', { dtype: 'float32', shape: dims, data: values });
  // Output = values + 0 × mean(image), so the input is really read, as an exported detector's is.
  const mean = g.uniqueName('mean');
  g.addNode('ReduceMean', ['images'], [mean], { keepdims: { type: 2, i: 0 } });
  const zero = g.addInitializer('zero', { dtype: 'float32', shape: [], data: Float32Array.of(0) });
  const scaled = g.uniqueName('scaled');
  g.addNode('Mul', [mean, zero], [scaled]);
  g.addNode('Add', [k, scaled], ['output']);
  g.addOutput('output', 'float32', dims);
  const model = g.toModel({ opset: 13, producer: 'edgepatrol-test' });
  if (names) model.metadataProps = [{ key: 'names', value: `{${names.map((n, i) => `${i}: '${n}'`).join(', ')}}` }];
  return encodeModel(model);
}

const io = () => {
  let out = '';
  let err = '';
  return {
    stdout: {
      write: (s: string) => {
        out += s;
      },
    },
    stderr: {
      write: (s: string) => {
        err += s;
      },
    },
    get out() {
      return out;
    },
    get err() {
      return err;
    },
  };
};

const frame = (width: number, height: number) => ({ width, height, data: Buffer.alloc(width * height * 3, 90), ts: 0 });

t.test('YOLOv5 layout [1,N,5+C]: objectness × class, best class, clipped', async (t) => {
  const C = 3;
  const out = new Float32Array(3 * (5 + C));
  out.set([50, 40, 20, 10, 0.9, 0.1, 0.8, 0.3], 0); // score 0.72 class 1, box 40,35,60,45
  out.set([5, 5, 30, 30, 0.3, 1, 1, 1], 8); // objectness 0.3 fails 0.35 whatever the class
  out.set([95, 50, 20, 20, 0.8, 0.5, 0.2, 0.6], 16); // 0.48 class 2; x2 = 105 clipped to 100
  const c = decodeYolov5(out, 3, { inputWidth: 100, inputHeight: 100, numClasses: C }, 0.35, new Candidates(1));
  t.equal(c.count, 2);
  t.same(Array.from(c.boxes.subarray(0, 8)), [40, 35, 60, 45, 85, 40, 100, 60]);
  t.same(Array.from(c.classIds.subarray(0, 2)), [1, 2]);
  t.ok(Math.abs(c.scores[0]! - 0.72) < 1e-6 && Math.abs(c.scores[1]! - 0.48) < 1e-6, 'objectness × class score');
  t.throws(() => decodeYolov5(out, 4, { inputWidth: 100, inputHeight: 100, numClasses: C }, 0.35, c), RangeError);
});

t.test('YOLOv8 layout [1,4+C,N]: channel-major rows, no objectness', async (t) => {
  const C = 2;
  const N = 3;
  // rows: cx, cy, w, h, class 0, class 1 — each row lists the N boxes.
  const out = Float32Array.from([10, 50, 80, 10, 50, 80, 4, 20, 10, 4, 10, 10, 0.9, 0.2, 0.1, 0.1, 0.6, 0.2]);
  const c = decodeYolov8(out, N, { inputWidth: 100, inputHeight: 100, numClasses: C }, 0.35, new Candidates());
  t.equal(c.count, 2, 'the third box scores 0.2 at best');
  t.same(Array.from(c.boxes.subarray(0, 8)), [8, 8, 12, 12, 40, 45, 60, 55]);
  t.same(Array.from(c.classIds.subarray(0, 2)), [0, 1]);
});

t.test('letterbox preprocessing keeps the aspect ratio and fills the border', async (t) => {
  const unit = {
    resize: 'letterbox' as const,
    pad: 114,
    channels: 'rgb' as const,
    mean: [0, 0, 0] as [number, number, number],
    std: [1, 1, 1] as [number, number, number],
  };
  const pre = new Preprocessor(4, 4, unit);
  const out = pre.run({ width: 4, height: 2, data: new Uint8Array(4 * 2 * 3).fill(10) });
  t.same(pre.mapping, { scaleX: 1, scaleY: 1, padX: 0, padY: 1 }, '4x2 in 4x4: rows 1-2, one border row above and below');
  t.same(Array.from(out.subarray(0, 16)), [114, 114, 114, 114, 10, 10, 10, 10, 10, 10, 10, 10, 114, 114, 114, 114], 'R plane');
});

t.test('class names from Ultralytics metadata, and per-camera remapping', async (t) => {
  t.same(classNamesFromMetadata({ names: "{0: 'person', 1: 'bicycle', 2: \"it's\"}" }), ['person', 'bicycle', "it's"]);
  t.equal(classNamesFromMetadata({ names: "{0: 'a', 2: 'c'}" }), undefined, 'a gap in the indices is refused');
  t.equal(classNamesFromMetadata({}), undefined);
  const dets = [
    { class: 'motorcycle', classId: 3, score: 0.9, box: [0, 0, 1, 1] as [number, number, number, number] },
    { class: 'person', classId: 0, score: 0.8, box: [0, 0, 1, 1] as [number, number, number, number] },
  ];
  const mapped = remapClasses(dets, { motorcycle: 'ebike_candidate', bicycle: 'ebike_candidate' });
  t.same(
    mapped.map((d) => d.class),
    ['ebike_candidate', 'person'],
  );
  t.equal(dets[0]!.class, 'motorcycle', "the detector's own list is left alone");
});

t.test('models users bring: add, detect through each layout, refusals', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-decoders-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const names = ['person', 'bicycle', 'motorcycle'];

  // YOLOv8 at 320x320 with letterbox, one person box at the centre of the input.
  const v8 = new Float32Array((4 + 3) * 2);
  v8.set([160, 0], 0);
  v8.set([160, 0], 2);
  v8.set([64, 0], 4);
  v8.set([32, 0], 6);
  v8.set([0.9, 0], 8);
  v8.set([0, 0], 10);
  v8.set([0, 0.1], 12);
  writeFileSync(join(dir, 'v8.onnx'), constantModel([1, 3, 320, 320], [1, 7, 2], v8, names));
  const a = io();
  t.equal(await modelCommand(['add', join(dir, 'v8.onnx'), '--decoder', 'yolov8', '--models-dir', dir], a), 0, a.err);
  t.match(a.out, /added v8: .*decoder yolov8, 3 classes, output \[1,7,2\]/);
  const spec = loadManifest(dir).models.v8!;
  t.same(spec.classes, names, 'class names read from the ONNX metadata');
  t.same(spec.preprocess, { resize: 'letterbox', pad: 114, channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] });

  // A 640x480 frame letterboxes to 320x240 at y offset 40: input box 128..192 x 144..176 → frame 256..384 x 208..272.
  const d8 = await openDetector({ modelsDir: dir, model: 'v8', threads: 1 });
  const dets = await d8.detect(frame(640, 480));
  await d8.close();
  t.equal(dets.length, 1);
  t.same(
    dets[0]!.box.map((v) => Math.round(v)),
    [256, 208, 384, 272],
    'box mapped back through the letterbox',
  );
  t.equal(dets[0]!.class, 'person');

  // YOLOv5 with a labels file and stretch resize.
  const v5 = new Float32Array(2 * 8);
  v5.set([50, 50, 20, 20, 0.9, 0.1, 0.1, 0.95], 0);
  writeFileSync(join(dir, 'v5.onnx'), constantModel([1, 3, 100, 100], [1, 2, 8], v5));
  writeFileSync(join(dir, 'labels.txt'), 'person\nbicycle\nmotorcycle\n');
  const noLabels = io();
  t.equal(await modelCommand(['add', join(dir, 'v5.onnx'), '--decoder', 'yolov5', '--models-dir', dir], noLabels), 1);
  t.match(noLabels.err, /has no class names in its metadata.*--labels/);
  const b = io();
  t.equal(
    await modelCommand(
      ['add', join(dir, 'v5.onnx'), '--decoder', 'yolov5', '--labels', join(dir, 'labels.txt'), '--resize', 'stretch', '--models-dir', dir],
      b,
    ),
    0,
    b.err,
  );
  const d5 = await openDetector({ modelsDir: dir, model: 'v5', threads: 1 });
  const d5dets = await d5.detect(frame(200, 100));
  await d5.close();
  t.same(
    d5dets.map((d) => [d.class, Math.round(d.score * 1000), d.box.map(Math.round)]),
    [['motorcycle', 855, [80, 40, 120, 60]]],
    'stretch: x × 2, y × 1',
  );

  // NanoDet layout at 32x32, strides 8/16 → 20 cells of 3 + 44 channels; one cell scores.
  const C = 3 + 44;
  const nd = new Float32Array(20 * C);
  nd[5 * C + 1] = 0.8; // stride 8, cell (1,1): centre (12,12); all bins equal → 5 × 8 = 40 px each side, clipped
  writeFileSync(join(dir, 'nd.onnx'), constantModel([1, 3, 32, 32], [1, 20, C], nd));
  const c = io();
  t.equal(
    await modelCommand(
      ['add', join(dir, 'nd.onnx'), '--decoder', 'nanodet', '--strides', '8,16', '--labels', join(dir, 'labels.txt'), '--models-dir', dir],
      c,
    ),
    0,
    c.err,
  );
  const dn = await openDetector({ modelsDir: dir, model: 'nd', threads: 1 });
  t.same(
    (await dn.detect(frame(32, 32))).map((d) => [d.class, d.box]),
    [['bicycle', [0, 0, 32, 32]]],
  );
  await dn.close();

  // Refusal: a YOLOv8 export declared as YOLOv5 names both shapes.
  const wrong = io();
  t.equal(await modelCommand(['add', join(dir, 'v8.onnx'), '--name', 'wrong', '--decoder', 'yolov5', '--models-dir', dir], wrong), 1);
  t.match(wrong.err, /output\.shape: is \[1,7,2\] but the decoder needs \[1,N,8\] \(YOLOv5/);
  t.notOk(existsSync(join(dir, 'wrong.onnx')), 'nothing was added');

  // Refusal at load: a manifest edited to a decoder the file does not fit.
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { models: Record<string, ModelSpec> };
  manifest.models.v5bad = {
    ...manifest.models.v5!,
    output: { name: 'output', shape: [1, 2, 9] },
    decoder: { kind: 'yolov5', numClasses: 4 },
    classes: [...names, 'x'],
  };
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
  await t.rejects(openDetector({ modelsDir: dir, model: 'v5bad', threads: 1 }), {
    name: 'ModelError',
    message:
      /model file .*v5\.onnx \(model 'v5bad', decoder yolov5\) outputs 'output' of shape \[1,2,8\]; its manifest declares \[1,2,9\] and the decoder expects \[1,N,9\]/,
  });

  // Refusal: a file whose bytes differ from its manifest sha256.
  const v5bytes = readFileSync(join(dir, 'v5.onnx'));
  writeFileSync(join(dir, 'v5.onnx'), Buffer.concat([v5bytes, Buffer.from([0])]));
  const verify = io();
  t.equal(await modelCommand(['verify', 'v5', 'v8', '--models-dir', dir], verify), 1);
  t.match(verify.out, /FAILED  v5: model file .*v5\.onnx does not match its manifest: sha256 expected/);
  t.match(verify.out, /ok      v8: sha256 matches, test inference gave \[1,7,2\]/);
  writeFileSync(join(dir, 'v5.onnx'), v5bytes);
});

t.test('an update never replaces a working model until the new one has passed a test inference', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'edgepatrol-update-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const entry = (dims: [1, number, number]) => ({
    format: 'onnx' as const,
    precision: 'fp32',
    input: { name: 'images', shape: [1, 3, 64, 64] as [1, 3, number, number], layout: 'NCHW' as const },
    output: { name: 'output', shape: dims },
    preprocess: {
      resize: 'letterbox' as const,
      channels: 'rgb' as const,
      mean: [0, 0, 0] as [number, number, number],
      std: [255, 255, 255] as [number, number, number],
    },
    decoder: { kind: 'yolov8' as const, numClasses: 1 },
    classes: ['thing'],
  });
  const good = constantModel([1, 3, 64, 64], [1, 5, 4], new Float32Array(20));
  const first = await installModel({ modelsDir: dir, name: 'cam', bytes: good, entry: entry([1, 5, 4]), makeDefault: true });
  t.equal(first.file, 'cam.onnx');

  // The new file declares [1,5,4] but really emits [1,5,6]: refused, the old model stays in place and working.
  const broken = constantModel([1, 3, 64, 64], [1, 5, 6], new Float32Array(30));
  await t.rejects(installModel({ modelsDir: dir, name: 'cam', bytes: broken, entry: entry([1, 5, 4]) }), {
    name: 'ModelError',
    message: /outputs 'output' of shape \[1,5,6\]/,
  });
  t.equal(loadManifest(dir).models.cam!.sha256, first.sha256, 'manifest unchanged');
  t.same(readFileSync(join(dir, 'cam.onnx')), Buffer.from(good), 'old file unchanged');
  t.same(readFileSync(join(dir, 'manifest.json'), 'utf8').match(/\.tmp/g), null);
  const still = await openDetector({ modelsDir: dir, threads: 1 });
  t.same(await still.detect(frame(64, 64)), [], 'the old model still loads and runs');
  await still.close();

  // A good update gets a new file; the old one goes once the manifest points away from it.
  const next = constantModel([1, 3, 64, 64], [1, 5, 6], new Float32Array(30));
  const second = await installModel({ modelsDir: dir, name: 'cam', bytes: next, entry: entry([1, 5, 6]) });
  t.equal(second.file, `cam-${second.sha256.slice(0, 12)}.onnx`);
  t.equal(loadManifest(dir).models.cam!.file, second.file);
  t.notOk(existsSync(join(dir, 'cam.onnx')), 'the replaced file is removed');
});
