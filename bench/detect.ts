/**
 * Detector benchmark on real frames: raw onnxruntime ms/inference on prepared tensors against the
 * `detect` path ms/frame (preprocess + run + decode + NMS) on the same vtest.avi frames, plus each stage.
 * The `detect` path is timed twice: in its worker thread (`openDetector`, what the agent uses) and on the
 * calling thread (`openInlineDetector`), with the turns this thread's event loop made meanwhile.
 * `--compare-preprocess` instead counts detections with the upstream BGR mean/std and the RGB/255
 * preprocessing on those frames (the measurement behind the manifest's `preprocess`,
 * docs/decisions/0007-nanodet-bgr-preprocessing.md).
 * `--compare-resize` times the `area` and `bilinear` resize and compares their detections (IoU ≥ 0.5, same class).
 *
 *   node dist/bench/detect.js [--video FILE] [--frames 20] [--rounds 3] [--threads 2] [--compare-preprocess|--compare-resize]
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import {
  Candidates,
  defaultModelsDir,
  iou,
  nativeVision,
  nms,
  openDetector,
  openModelSession,
  Preprocessor,
  type Detection,
  type Preprocess,
} from '../src/vision/index.js';
import { inputTensor, openInlineDetector, type Detector } from '../src/vision/inference.js';
import type { ResizeFilter } from '../src/vision/preprocess.js';
import { readVideoFrames, type VideoFrame } from '../src/vision/video.js';
import { yuvFrames } from './frames.js';

const { values } = parseArgs({
  options: {
    video: { type: 'string', default: join(defaultModelsDir(), '..', 'assets', 'vtest.avi') },
    frames: { type: 'string', default: '20' },
    rounds: { type: 'string', default: '3' },
    threads: { type: 'string', default: '2' },
    model: { type: 'string' },
    'compare-preprocess': { type: 'boolean', default: false },
    'compare-resize': { type: 'boolean', default: false },
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

/**
 * Appends to `samples` the ms per frame of detecting all `frames` with two in flight (as the agent's queue
 * does); returns how often a 1 ms timer of this thread fired meanwhile.
 */
async function timeDetector(d: Detector, frames: VideoFrame[], samples: number[]): Promise<number> {
  // A 1 ms timer, not a setImmediate spin: a spinning loop would take a core from onnxruntime.
  let turns = 0;
  const tick = setInterval(() => {
    turns++;
  }, 1);
  const t0 = performance.now();
  let inFlight: Promise<unknown> = Promise.resolve();
  for (const f of frames) {
    const next = d.detect(f);
    await inFlight;
    inFlight = next;
  }
  await inFlight;
  samples.push((performance.now() - t0) / frames.length);
  clearInterval(tick);
  return turns;
}

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
  const inline = await openInlineDetector({ model: values.model, threads });
  const { input, output } = model.spec;
  const pre = Preprocessor.forModel(model.spec);
  const bilinear = Preprocessor.forModel(model.spec, 'bilinear');
  const bilinearJs = Preprocessor.forModel(model.spec, 'bilinear', false);
  // A model with a uint8 input: the same resize into a float32 input, as before the input was quantized, on the
  // RGB frames and on the YUV frames the agent gets.
  const quantized = model.spec.input.quantization !== undefined;
  const bilinearFloat = new Preprocessor(inputWidth, inputHeight, model.spec.preprocess, 'bilinear');
  const yuv = yuvFrames(values.video, 1, frames[0]!.width, frames[0]!.height).slice(0, frames.length);
  const tensors = frames.map((f) => inputTensor(model.spec, pre.run(f).slice()));
  const outputs: Float32Array[] = [];
  for (const t of tensors) outputs.push((await session.run({ [input.name]: t }))[output.name]!.data as Float32Array);
  for (const f of frames.slice(0, 3)) await detector.detect(f);
  for (const f of frames.slice(0, 3)) await inline.detect(f);

  // Stages alternate within each round, so load from other processes on the machine hits them alike.
  const preMs: number[] = [];
  const runMs: number[] = [];
  const decodeMs: number[] = [];
  const bilinearMs: number[] = [];
  const bilinearJsMs: number[] = [];
  const floatMs: number[] = [];
  const yuvMs: number[] = [];
  const yuvFloatMs: number[] = [];
  const workerMs: number[] = [];
  const inlineMs: number[] = [];
  let workerTurns = 0;
  let inlineTurns = 0;
  const cand = new Candidates();
  for (let r = 0; r < rounds; r++) {
    await time(tensors, (t) => session.run({ [input.name]: t }), runMs);
    workerTurns += await timeDetector(detector, frames, workerMs);
    inlineTurns += await timeDetector(inline, frames, inlineMs);
    await time(frames, (f) => pre.run(f), preMs);
    await time(frames, (f) => bilinear.run(f), bilinearMs);
    await time(frames, (f) => bilinearJs.run(f), bilinearJsMs);
    if (quantized) {
      await time(frames, (f) => bilinearFloat.run(f), floatMs);
      await time(yuv, (f) => bilinear.run(f), yuvMs);
      await time(yuv, (f) => bilinearFloat.run(f), yuvFloatMs);
    }
    await time(outputs, (o) => nms(decode(o, 0.35, cand), 0.5, 100), decodeMs);
  }
  await session.release();
  await detector.close();
  await inline.close();

  const f0 = frames[0]!;
  process.stdout.write(
    `model ${model.name} (${model.spec.precision}, sha256 ${model.spec.sha256.slice(0, 12)}…), ${frames.length} frames of ${values.video} ` +
      `${f0.width}x${f0.height} → ${inputWidth}x${inputHeight}, ${threads} intra-op threads, ${rounds} rounds, node ${process.version}\n\n`,
  );
  const rows: [string, number[]][] = [
    ['preprocess, area resize', preMs],
    [`preprocess, bilinear resize${bilinear.native ? ' (C)' : ` (JS: ${(nativeVision() as { reason: string }).reason})`}`, bilinearMs],
    ['preprocess, bilinear resize in JavaScript', bilinearJsMs],
    ...(quantized
      ? ([
          ['  the same (C) into a float32 input', floatMs],
          ['  from YUV frames (C), into the uint8 input', yuvMs],
          ['  from YUV frames (C), into a float32 input', yuvFloatMs],
        ] as [string, number[]][])
      : []),
    ['onnxruntime session.run (raw)', runMs],
    ['decode + NMS', decodeMs],
    ['detect(), worker thread', workerMs],
    ['detect(), same thread', inlineMs],
  ];
  process.stdout.write(`${'stage (detect(): ms per frame, 2 in flight)'.padEnd(46)}${'median ms'.padStart(10)}${'mean ms'.padStart(10)}\n`);
  for (const [name, xs] of rows)
    process.stdout.write(`${name.padEnd(46)}${median(xs).toFixed(2).padStart(10)}${mean(xs).toFixed(2).padStart(10)}\n`);
  process.stdout.write(
    `${'raw / detect(), worker thread'.padEnd(46)}${(median(runMs) / median(workerMs)).toFixed(3).padStart(10)}${(mean(runMs) / mean(workerMs)).toFixed(3).padStart(10)}\n`,
  );
  process.stdout.write(
    `${'raw / detect(), same thread'.padEnd(46)}${(median(runMs) / median(inlineMs)).toFixed(3).padStart(10)}${(mean(runMs) / mean(inlineMs)).toFixed(3).padStart(10)}\n`,
  );
  process.stdout.write(
    `${'area / bilinear preprocess'.padEnd(46)}${(median(preMs) / median(bilinearMs)).toFixed(3).padStart(10)}${(mean(preMs) / mean(bilinearMs)).toFixed(3).padStart(10)}\n`,
  );
  if (quantized) {
    process.stdout.write(
      `${'bilinear (C) float32 / uint8 input, RGB'.padEnd(46)}${(median(floatMs) / median(bilinearMs)).toFixed(3).padStart(10)}${(mean(floatMs) / mean(bilinearMs)).toFixed(3).padStart(10)}\n`,
    );
    process.stdout.write(
      `${'bilinear (C) float32 / uint8 input, YUV'.padEnd(46)}${(median(yuvFloatMs) / median(yuvMs)).toFixed(3).padStart(10)}${(mean(yuvFloatMs) / mean(yuvMs)).toFixed(3).padStart(10)}\n`,
    );
  }
  process.stdout.write(
    `${'bilinear preprocess, JavaScript / C'.padEnd(46)}${(median(bilinearJsMs) / median(bilinearMs)).toFixed(3).padStart(10)}${(mean(bilinearJsMs) / mean(bilinearMs)).toFixed(3).padStart(10)}\n`,
  );
  const n = rounds * frames.length;
  process.stdout.write(
    `1 ms timer ticks per frame while detecting: worker thread ${(workerTurns / n).toFixed(1)}, same thread ${(inlineTurns / n).toFixed(1)}\n`,
  );
}

/** Detections of the `area` and `bilinear` resize on the same frames: matched boxes (same class, IoU ≥ 0.5). */
async function compareResize(frames: VideoFrame[]): Promise<void> {
  const filters: ResizeFilter[] = ['area', 'bilinear'];
  const found = new Map<ResizeFilter, Detection[][]>();
  for (const resize of filters) {
    const d = await openInlineDetector({ model: values.model, threads, resize });
    const per: Detection[][] = [];
    for (const f of frames) per.push(await d.detect(f));
    found.set(resize, per);
    await d.close();
  }
  const [ref, alt] = [found.get('area')!, found.get('bilinear')!];
  let matched = 0;
  let drift = 0;
  for (let i = 0; i < frames.length; i++) {
    const used = new Set<number>();
    for (const a of ref[i]!) {
      let best = -1;
      let bestIou = 0.5;
      alt[i]!.forEach((b, j) => {
        if (used.has(j) || b.classId !== a.classId) return;
        const c = new Candidates(2);
        c.push(...a.box, a.score, 0);
        c.push(...b.box, b.score, 0);
        const o = iou(c.boxes, 0, 1);
        if (o >= bestIou) {
          bestIou = o;
          best = j;
        }
      });
      if (best >= 0) {
        used.add(best);
        matched++;
        drift += Math.abs(alt[i]![best]!.score - a.score);
      }
    }
  }
  const nRef = ref.flat().length;
  const nAlt = alt.flat().length;
  const people = (ds: Detection[][]) => ds.flat().filter((d) => d.class === 'person' && d.score > 0.4).length;
  process.stdout.write(`${frames.length} frames of ${values.video}, score threshold 0.35; bilinear against area as reference\n`);
  process.stdout.write(
    `boxes: area ${nRef}, bilinear ${nAlt}, matched ${matched} (same class, IoU ≥ 0.5): precision ${(matched / nAlt).toFixed(3)}, recall ` +
      `${(matched / nRef).toFixed(3)}, ` +
      `F1 ${((2 * matched) / (nRef + nAlt)).toFixed(3)}; mean |score drift| of matched ${(drift / matched).toFixed(3)}; person > 0.4: ` +
      `area ${people(ref)}, bilinear ${people(alt)}\n`,
  );
  const byClass = (ds: Detection[][]) => {
    const m = new Map<string, number>();
    for (const d of ds.flat()) m.set(d.class, (m.get(d.class) ?? 0) + 1);
    return m;
  };
  const [ca, cb] = [byClass(ref), byClass(alt)];
  const classes = [...new Set([...ca.keys(), ...cb.keys()])].sort((x, y) => (ca.get(y) ?? 0) - (ca.get(x) ?? 0));
  process.stdout.write(`boxes per class (area / bilinear): ${classes.map((c) => `${c} ${ca.get(c) ?? 0}/${cb.get(c) ?? 0}`).join(', ')}\n`);
}

async function comparePreprocess(frames: VideoFrame[]): Promise<void> {
  const variants: [string, Preprocess][] = [
    ['BGR, upstream mean/std', { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] }],
    ['RGB / 255', { resize: 'stretch', channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] }],
  ];
  process.stdout.write(`${frames.length} frames of ${values.video}, score threshold 0.3, NMS IoU 0.5\n\n`);
  process.stdout.write(
    `${'preprocessing'.padEnd(24)}${'person>0.4'.padStart(11)}${'person>0.5'.padStart(11)}${'mean person score'.padStart(19)}${'other>0.4'.padStart(10)}  other classes >0.4\n`,
  );
  for (const [name, preprocess] of variants) {
    // The float model: the INT8 model's uint8 input is quantized for its own preprocessing only.
    const detector = await openDetector({ model: values.model ?? 'nanodet-m', threads, preprocess, scoreThreshold: 0.3 });
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
        `${[...counts]
          .sort((a, b) => b[1] - a[1])
          .map(([c, n]) => `${c} ${n}`)
          .join(', ')}\n`,
    );
  }
}

const frames = await loadFrames();
if (values['compare-preprocess']) await comparePreprocess(frames);
else if (values['compare-resize']) await compareResize(frames);
else await benchmark(frames);
