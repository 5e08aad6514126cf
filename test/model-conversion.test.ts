// The default detector models/nanodet-m.onnx (built by scripts/build-model.ts) must compute what the TFJS
// graph it was converted from computes, on real frames, in the layout docs/contracts-wip.md fixes.
import t from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import ort from 'onnxruntime-node';
import { convertNanodet } from '../src/model/convert-nanodet.js';
import { decodeModel, encodeModel, tensorFromProto } from '../src/model/onnx.js';
import { readTfjsGraph } from '../src/model/tfjs.js';
import { readFrames } from './helpers/frames.js';

/** Max abs difference allowed between TFJS (wasm) and ORT outputs; measured about 1.4e-5 (float32 summation order). */
const TOLERANCE = 1e-4;
const SIZE = 416;
const STRIDES = [8, 16, 32];
const CLASSES = 80;
const BINS = 11;
const CHANNELS = CLASSES + 4 * BINS;
const FRAME_TIMES = [1, 20, 45, 70];

const root = fileURLToPath(new URL('..', import.meta.url));
const sourceDir = join(root, '.cache/human-models/nanodet');
const manifestFile = join(root, 'models/manifest.json');

interface Entry {
  file: string;
  sha256: string;
  input: { name: string; shape: number[] };
  output: { name: string; shape: number[] };
  preprocess: { channels: 'rgb' | 'bgr'; mean: number[]; std: number[] };
}

function toInput(rgb: Buffer, p: Entry['preprocess']): Float32Array {
  const plane = SIZE * SIZE;
  const out = new Float32Array(3 * plane);
  const order = p.channels === 'bgr' ? [2, 1, 0] : [0, 1, 2];
  for (let c = 0; c < 3; c++) {
    const src = order[c]!;
    const mean = p.mean[c]!;
    const std = p.std[c]!;
    for (let i = 0; i < plane; i++) out[c * plane + i] = (rgb[i * 3 + src]! - mean) / std;
  }
  return out;
}

/** Distance in pixels that one side's 11 bin logits predict: softmax expectation × stride. */
function sideDistance(row: Float32Array, offset: number, stride: number): number {
  const logits = Array.from(row.subarray(offset, offset + BINS));
  const max = Math.max(...logits);
  const e = logits.map((v) => Math.exp(v - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return (e.reduce((acc, v, i) => acc + v * i, 0) / sum) * stride;
}

t.test('nanodet-m.onnx equals its TFJS source on vtest.avi frames', async (t) => {
  if (!existsSync(join(sourceDir, 'nanodet.json'))) {
    t.fail(`${sourceDir} is missing: run scripts/setup.sh (it runs node dist/scripts/build-model.js, which extracts it)`);
    return;
  }
  const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { models: Record<string, Entry> };
  const entry = manifest.models['nanodet-m'];
  if (!entry) {
    t.fail(`${manifestFile} has no nanodet-m entry`);
    return;
  }
  const modelFile = join(root, 'models', entry.file);
  if (!existsSync(modelFile)) {
    t.fail(`${modelFile} is missing: run scripts/setup.sh`);
    return;
  }
  const modelBytes = readFileSync(modelFile);
  t.equal(createHash('sha256').update(modelBytes).digest('hex'), entry.sha256, 'model file sha256 equals the manifest');

  const graph = await readTfjsGraph(join(sourceDir, 'nanodet.json'));
  const rebuilt = encodeModel(convertNanodet(graph));
  t.equal(
    createHash('sha256').update(rebuilt).digest('hex'),
    entry.sha256,
    'a fresh conversion is byte-identical to the manifest (deterministic)',
  );

  // The rewrites the conversion promises: no Pad left, biases inside the Convs, only the 6 output Transposes.
  const onnxGraph = decodeModel(modelBytes).graph!;
  const ops = new Map<string, number>();
  for (const n of onnxGraph.node ?? []) ops.set(n.opType!, (ops.get(n.opType!) ?? 0) + 1);
  t.equal(ops.get('Pad') ?? 0, 0, 'every Pad folded into a Conv or MaxPool');
  t.equal(ops.get('Transpose'), 6, 'NCHW/NHWC Transpose pairs cancelled');
  const convs = (onnxGraph.node ?? []).filter((n) => n.opType === 'Conv');
  t.equal(convs.length, 34);
  t.ok(
    convs.every((n) => n.input?.length === 3),
    'every Conv has its bias folded in',
  );
  const initializers = new Map((onnxGraph.initializer ?? []).map((i) => [i.name, i]));
  const firstWeights = tensorFromProto(initializers.get(convs[0]!.input![1]!)!);
  t.same([firstWeights.dtype, firstWeights.shape], ['float32', [32, 3, 3, 3]], 'float16 weights expanded to float32 OIHW');

  const session = await ort.InferenceSession.create(modelFile, { intraOpNumThreads: 1 });
  t.teardown(() => session.release());
  t.same(session.inputNames, ['input'], 'one input named input');
  t.same(session.outputNames, ['output'], 'one output named output');
  const cells = STRIDES.reduce((n, s) => n + (SIZE / s) ** 2, 0);
  t.same(entry.input.shape, [1, 3, SIZE, SIZE]);
  t.same(entry.output.shape, [1, cells, CHANNELS]);

  const json = JSON.parse(readFileSync(join(sourceDir, 'nanodet.json'), 'utf8')) as {
    modelTopology: tf.io.ModelArtifacts['modelTopology'];
    weightsManifest: { paths: string[]; weights: tf.io.WeightsManifestEntry[] }[];
    signature: { outputs: Record<string, { name: string }> };
  };
  const bin = readFileSync(join(sourceDir, 'nanodet.bin'));
  setWasmPaths(join(root, 'node_modules/@tensorflow/tfjs-backend-wasm/dist/'));
  // One thread: the reference needs to be exact, not fast, and the machine is shared.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  t.ok(await tf.setBackend('wasm'), 'TFJS wasm backend');
  const tfModel = await tf.loadGraphModel({
    load: async () => ({
      modelTopology: json.modelTopology,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
      format: 'graph-model',
    }),
  });
  t.teardown(() => tfModel.dispose());
  const outputNames = Object.values(json.signature.outputs).map((o) => o.name);

  const frames = await readFrames(join(root, 'assets/vtest.avi'), { width: SIZE, height: SIZE, times: FRAME_TIMES });
  let maxDiff = 0;
  let ortMs = 0;
  for (const [f, frame] of frames.entries()) {
    const input = toInput(frame, entry.preprocess);
    const started = performance.now();
    const result = await session.run({ input: new ort.Tensor('float32', input, [1, 3, SIZE, SIZE]) });
    ortMs += performance.now() - started;
    const onnxOut = result.output!.data as Float32Array;
    t.same(result.output!.dims, [1, cells, CHANNELS], `frame at ${FRAME_TIMES[f]} s: output shape`);

    const tfOutputs = tf.tidy(() => {
      const x = tf.tensor4d(input, [1, 3, SIZE, SIZE]);
      return tfModel.execute(x, outputNames) as tf.Tensor[];
    });
    // Which TFJS output is which is decided from the data: cell count → stride, 80 values in [0,1]
    // (sigmoided) → class scores, 44 unbounded → box logits; names are not trusted.
    let cellOffset = 0;
    for (const stride of STRIDES) {
      const n = (SIZE / stride) ** 2;
      const of = (c: number): Float32Array => {
        const found = tfOutputs.find((o) => o.shape[1] === n && o.shape[2] === c);
        if (!found) throw new Error(`no TFJS output [1,${n},${c}]`);
        return found.dataSync() as Float32Array;
      };
      const scores = of(CLASSES);
      const boxes = of(4 * BINS);
      t.ok(
        scores.every((v) => v >= 0 && v <= 1),
        `stride ${stride}: the 80-channel output is sigmoided`,
      );
      t.ok(
        boxes.some((v) => v < 0 || v > 1),
        `stride ${stride}: the 44-channel output holds logits`,
      );
      for (let cell = 0; cell < n; cell++) {
        const row = (cellOffset + cell) * CHANNELS;
        for (let k = 0; k < CLASSES; k++) maxDiff = Math.max(maxDiff, Math.abs(onnxOut[row + k]! - scores[cell * CLASSES + k]!));
        for (let k = 0; k < 4 * BINS; k++) maxDiff = Math.max(maxDiff, Math.abs(onnxOut[row + CLASSES + k]! - boxes[cell * 4 * BINS + k]!));
      }
      cellOffset += n;
    }
    tf.dispose(tfOutputs);

    // The layout also has to mean what the decoder assumes: with sides read as l,t,r,b the best person
    // cell decodes to a box taller than wide (pedestrians); swapped sides or strides would not.
    let best = { score: -1, cell: 0 };
    for (let cell = 0; cell < cells; cell++) {
      const s = onnxOut[cell * CHANNELS]!;
      if (s > best.score) best = { score: s, cell };
    }
    let stride = STRIDES[0]!;
    let local = best.cell;
    for (const s of STRIDES) {
      const n = (SIZE / s) ** 2;
      if (local < n) {
        stride = s;
        break;
      }
      local -= n;
    }
    const row = onnxOut.subarray(best.cell * CHANNELS, (best.cell + 1) * CHANNELS);
    const [l, top, r, b] = [0, 1, 2, 3].map((side) => sideDistance(row, CLASSES + side * BINS, stride)) as [number, number, number, number];
    t.ok(best.score > 0.5, `frame at ${FRAME_TIMES[f]} s: a person is found (score ${best.score.toFixed(3)}, stride ${stride})`);
    t.ok(top + b > l + r, `frame at ${FRAME_TIMES[f]} s: best person box is ${(l + r).toFixed(1)} wide, ${(top + b).toFixed(1)} tall`);
  }
  t.ok(maxDiff < TOLERANCE, `max abs difference ORT vs TFJS ${maxDiff.toExponential(2)} < ${TOLERANCE}`);
  t.comment(`onnxruntime-node, 1 intra-op thread: ${(ortMs / frames.length).toFixed(1)} ms/inference (first run included)`);
});
