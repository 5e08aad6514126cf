/**
 * Detector benchmark on real frames: raw onnxruntime ms/inference on prepared tensors against the
 * `detect` path ms/frame (preprocess + run + decode + NMS) on the same vtest.avi frames, plus each stage.
 * `--compare-preprocess` instead counts detections with the upstream BGR mean/std and the RGB/255
 * preprocessing on those frames (the measurement behind the manifest's `preprocess`, docs/decisions.md).
 *
 *   node dist/bench/detect.js [--video FILE] [--frames 20] [--rounds 3] [--threads 2] [--compare-preprocess]
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import {
  Candidates, defaultModelsDir, nms, openDetector, openModelSession, Preprocessor,
  type Detection, type Preprocess,
} from '../src/vision/index.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';

const { values } = parseArgs({
  options: {
    video: { type: 'string', default: join(defaultModelsDir(), '..', 'assets', 'vtest.avi') },
    frames: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    model: { type: 'string' },
    'compare-preprocess': { type: 'boolean', default: false },
  },
});
const frameCount = Number(values.frames);
const rounds = Number(values.rounds);
const threads = Number(values.threads);

/** Frames spread over the whole clip (vtest.avi is 79.5 s), so the scene varies between them. */
async function loadFrames(): Promise<VideoFrame[]> {
  const frames: VideoFrame[] = [];
  for await (const f of readVideoFrames(values.video, { fps: frameCount / 80, maxFrames: frameCount })) frames.push(f);
  if (frames.length === 0) throw new Error(`no frames decoded from ${values.video}: run scripts/setup.sh (fetches assets/vtest.avi)`);
  return frames;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Appends to `samples` the ms of one call of `fn` per item. */
async function time<T>(items: T[], fn: (item: T) => unknown, samples: number[]): Promise<void> {
  for (const item of items) {
    const t0 = performance.now();
    await fn(item);
    samples.push(performance.now() - t0);
  }
}

async function benchmark(frames: VideoFrame[]): Promise<void> {
  const { model, session, inputWidth, inputHeight, decode } = await openModelSession({ model: values.model, threads });
  const detector = await openDetector({ model: values.model, threads });
  const { input, output } = model.spec;
  const pre = new Preprocessor(inputWidth, inputHeight, model.spec.preprocess);
  const tensors = frames.map((f) => new ort.Tensor('float32', pre.run(f).slice(), [...input.shape]));
  const outputs: Float32Array[] = [];
  for (const t of tensors) outputs.push((await session.run({ [input.name]: t }))[output.name]!.data as Float32Array);
  for (const f of frames.slice(0, 3)) await detector.detect(f);

  // Stages alternate within each round, so load from other processes on the machine hits them alike.
  const preMs: number[] = [];
  const runMs: number[] = [];
  const decodeMs: number[] = [];
  const detectMs: number[] = [];
  const cand = new Candidates();
  for (let r = 0; r < rounds; r++) {
    await time(tensors, (t) => session.run({ [input.name]: t }), runMs);
    await time(frames, (f) => detector.detect(f), detectMs);
    await time(frames, (f) => pre.run(f), preMs);
    await time(outputs, (o) => nms(decode(o, 0.35, cand), 0.5, 100), decodeMs);
  }
  await session.release();
  await detector.close();

  const f0 = frames[0]!;
  process.stdout.write(
    `model ${model.name} (${model.spec.precision}, sha256 ${model.spec.sha256.slice(0, 12)}…), ${frames.length} frames of ${values.video} ` +
      `${f0.width}x${f0.height} → ${inputWidth}x${inputHeight}, ${threads} intra-op threads, ${rounds} rounds, node ${process.version}\n\n`,
  );
  const rows: [string, number[]][] = [
    ['preprocess (resize + normalise)', preMs],
    ['onnxruntime session.run (raw)', runMs],
    ['decode + NMS', decodeMs],
    ['detect() end to end', detectMs],
  ];
  process.stdout.write(`${'stage'.padEnd(34)}${'median ms'.padStart(10)}${'mean ms'.padStart(10)}\n`);
  for (const [name, xs] of rows) process.stdout.write(`${name.padEnd(34)}${median(xs).toFixed(2).padStart(10)}${mean(xs).toFixed(2).padStart(10)}\n`);
  process.stdout.write(`${'detect / raw (median)'.padEnd(34)}${(median(detectMs) / median(runMs)).toFixed(3).padStart(10)}${(mean(detectMs) / mean(runMs)).toFixed(3).padStart(10)}\n`);
}

async function comparePreprocess(frames: VideoFrame[]): Promise<void> {
  const variants: [string, Preprocess][] = [
    ['BGR, upstream mean/std', { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] }],
    ['RGB / 255', { resize: 'stretch', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] }],
  ];
  process.stdout.write(`${frames.length} frames of ${values.video}, score threshold 0.3, NMS IoU 0.5\n\n`);
  process.stdout.write(`${'preprocessing'.padEnd(24)}${'person>0.4'.padStart(11)}${'person>0.5'.padStart(11)}${'mean person score'.padStart(19)}${'other>0.4'.padStart(10)}  other classes >0.4\n`);
  for (const [name, preprocess] of variants) {
    const detector = await openDetector({ model: values.model, threads, preprocess, scoreThreshold: 0.3 });
    const all: Detection[] = [];
    for (const f of frames) all.push(...(await detector.detect(f)));
    await detector.close();
    const persons = all.filter((d) => d.class === 'person' && d.score > 0.4);
    const others = all.filter((d) => d.class !== 'person' && d.score > 0.4);
    const counts = new Map<string, number>();
    for (const d of others) counts.set(d.class, (counts.get(d.class) ?? 0) + 1);
    process.stdout.write(
      `${name.padEnd(24)}${String(persons.length).padStart(11)}${String(persons.filter((d) => d.score > 0.5).length).padStart(11)}` +
        `${(persons.length ? mean(persons.map((d) => d.score)) : 0).toFixed(3).padStart(19)}${String(others.length).padStart(10)}  ` +
        `${[...counts].sort((a, b) => b[1] - a[1]).map(([c, n]) => `${c} ${n}`).join(', ')}\n`,
    );
  }
}

const frames = await loadFrames();
if (values['compare-preprocess']) await comparePreprocess(frames);
else await benchmark(frames);
