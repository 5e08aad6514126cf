/** `edgepatrol model quantize|compare|eval`: build an INT8 model, and measure a model against another or against labels. */
import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { CALIBRATION_METHODS, type CalibrationMethod } from '../model/calibrate.js';
import { compareDetections, type FrameDetections } from '../model/compare.js';
import { IMAGE_EXTENSIONS, readFrameSet, type FrameSet } from '../model/frames.js';
import {
  evaluateDetections,
  LabelError,
  parseClassNames,
  parseCocoLabels,
  parseYoloLabels,
  type ClassScore,
  type ImageResult,
} from '../model/ground-truth.js';
import { decodeImage } from '../common/jpeg.js';
import { buildInt8, calibrateModel, int8Entry, writeCalibrationRecord } from '../model/int8.js';
import { readModel } from '../model/onnx.js';
import { installModel } from '../model/registry.js';
import { loadManifest, loadModelSession, openDetector, resolveModel, type Detector } from '../vision/index.js';
import { EXIT, UsageError, writeJson, type CommandIo } from './io.js';
import { frameSet, number, type Values } from './model-args.js';

export async function quantize(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('one model name expected (from the manifest, see edgepatrol model list)');
  const method = (values.method ?? 'percentile') as CalibrationMethod;
  if (!CALIBRATION_METHODS.includes(method)) throw new UsageError(`--method must be one of ${CALIBRATION_METHODS.join(', ')}`);
  const threads = number('threads', values.threads, { integer: true, min: 1 }) ?? 2;
  const weightBits = number('weight-bits', values['weight-bits'], { integer: true }) ?? 7;
  if (weightBits !== 7 && weightBits !== 8) throw new UsageError(`--weight-bits must be 7 or 8, got '${values['weight-bits']}'`);
  const frames = frameSet(values.calib, number('frames', values.frames, { integer: true, min: 1 }) ?? 40, values, '--calib');
  const manifest = loadManifest(modelsDir);
  const from = resolveModel(manifest, positionals[0]);
  if (from.spec.precision !== 'fp32')
    throw new UsageError(`model '${from.name}' is ${from.spec.precision}; quantize its fp32 source instead`);
  const out = values.out ?? `${from.name}-int8`;
  // The source must be the file the manifest vouches for; loading it checks that too.
  const check = await loadModelSession(from, 1);
  await check.session.release();
  const fp32 = await readModel(from.path);
  const t0 = performance.now();
  const { record, plan } = await calibrateModel(fp32, {
    from: { name: from.name, spec: from.spec },
    frames,
    method,
    keepFloat: values['keep-float'] ?? [],
    quantizeHeadConvs: values['quantize-head'] ?? false,
    weightBits,
    percentile: number('percentile', values.percentile, { min: 50 }),
    threads,
  });
  const calibFile = `${out}.calib.json`;
  const bytes = buildInt8(fp32, record);
  const done = await installModel({
    modelsDir,
    name: out,
    bytes,
    entry: int8Entry(from.spec, record, calibFile, plan, fp32),
    makeDefault: values.default ?? false,
  });
  await writeCalibrationRecord(join(modelsDir, calibFile), record);
  const seconds = (performance.now() - t0) / 1000;
  if (values.json) {
    writeJson(io, {
      name: out,
      from: from.name,
      file: done.path,
      sha256: done.sha256,
      bytes: bytes.length,
      method,
      calibration: { path: frames.path, frames: frames.frames, start: frames.start ?? null, end: frames.end ?? null },
      quantizedNodes: plan.quantized.length,
      headNodes: plan.head,
      keptFloat: plan.keptFloat,
      activationRanges: plan.calibrate.length,
      ranges: join(modelsDir, calibFile),
      seconds: Number(seconds.toFixed(1)),
      default: values.default ?? false,
    });
    return EXIT.ok;
  }
  io.stdout.write(
    `quantized ${from.name} → ${out}: ${done.path} (sha256 ${done.sha256}, ${(bytes.length / 1e6).toFixed(1)} MB)\n` +
      `  ${plan.quantized.length} nodes int8, ${plan.head.length} head nodes and ${plan.keptFloat.length} kept nodes float; ` +
      `${plan.calibrate.length} activation ranges by ${method} on ${frames.frames} frames of ${frames.path} in ${seconds.toFixed(1)} s\n` +
      `  ranges: ${join(modelsDir, calibFile)}\n  check it: edgepatrol model compare ${out} ${from.name} --frames <frames calibration did not see>\n`,
  );
  return EXIT.ok;
}

/** Runs a and b over the frame set and measures a against b's detections. */
export async function compareModels(
  modelsDir: string,
  a: string,
  b: string,
  set: FrameSet,
  opts: { threshold?: number; threads?: number } = {},
) {
  const threshold = opts.threshold ?? 0.35;
  const open = (model: string, scoreThreshold: number): Promise<Detector> =>
    openDetector({ modelsDir, model, threads: opts.threads, scoreThreshold });
  const detectors: Detector[] = [];
  try {
    // a twice: at the operating threshold for precision/recall, and low for the ranking behind mAP.
    for (const [m, s] of [
      [a, threshold],
      [a, 0.05],
      [b, threshold],
    ] as const)
      detectors.push(await open(m, s));
    const [da, daAll, db] = detectors as [Detector, Detector, Detector];
    const frames: FrameDetections[] = [];
    for await (const img of readFrameSet(set)) {
      const frame = {
        width: img.width,
        height: img.height,
        data: Buffer.from(img.data.buffer, img.data.byteOffset, img.data.byteLength),
        ts: 0,
      };
      frames.push({ a: await da.detect(frame), aAll: await daAll.detect(frame), b: await db.detect(frame) });
    }
    return { a: da.model, b: db.model, threshold, ...compareDetections(frames) };
  } finally {
    for (const d of detectors) await d.close();
  }
}

export async function compare(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
  if (positionals.length !== 2) throw new UsageError('two model names expected: the one to judge, then the reference');
  const set = frameSet(values.frames, number('count', values.count, { integer: true, min: 1 }) ?? 60, values, '--frames');
  const threshold = number('threshold', values.threshold, { min: 0 });
  const r = await compareModels(modelsDir, positionals[0]!, positionals[1]!, set, {
    threshold,
    threads: number('threads', values.threads, { integer: true, min: 1 }),
  });
  const classes = resolveModel(loadManifest(modelsDir), positionals[1]).classes;
  if (values.json) {
    const perClass = Object.fromEntries(
      Object.entries(r.perClass).map(([id, c]) => [id, { class: classes[Number(id)] ?? `class${id}`, ...c }]),
    );
    writeJson(io, { ...r, perClass, set: { path: set.path, start: set.start ?? null, end: set.end ?? null } });
    return EXIT.ok;
  }
  const pct = (v: number): string => v.toFixed(4);
  io.stdout.write(
    `${r.a.name} (${r.a.sha256.slice(0, 12)}) against ${r.b.name} (${r.b.sha256.slice(0, 12)}) as reference, ${r.frames} frames of ${set.path}` +
      `${set.start !== undefined || set.end !== undefined ? ` from ${set.start ?? 0} s to ${set.end ?? 'the end'}` : ''}` +
      `, score >= ${r.threshold}, IoU >= 0.5, same class\n` +
      `reference boxes ${r.reference}, detections ${r.detections}, matched ${r.truePositives}\n` +
      `precision ${pct(r.precision)}  recall ${pct(r.recall)}  F1 ${pct(r.f1)}  mAP@0.5 ${pct(r.map50)}\n` +
      `score drift over ${r.scoreDrift.pairs} matched pairs: mean ${r.scoreDrift.mean.toFixed(4)}, ` +
      `mean |drift| ${r.scoreDrift.meanAbs.toFixed(4)}, max |drift| ${r.scoreDrift.maxAbs.toFixed(4)}\n`,
  );
  for (const [id, c] of Object.entries(r.perClass).sort((x, y) => y[1].reference - x[1].reference)) {
    io.stdout.write(
      `  ${(classes[Number(id)] ?? `class${id}`).padEnd(16)} reference ${String(c.reference).padStart(5)}  AP@0.5 ${pct(c.ap)}\n`,
    );
  }
  return EXIT.ok;
}

/** Boxes per image of a label set, in pixels, for the images of `imagesDir` (every image needs its labels). */
async function readLabelSet(
  labels: string,
  imagesDir: string,
  classes: readonly string[],
): Promise<{ image: string; file: string; labels: ImageResult['labels'] }[]> {
  const classId = (name: string): number | undefined => {
    const i = classes.indexOf(name);
    return i >= 0 ? i : undefined;
  };
  let images: string[];
  try {
    images = (await readdir(imagesDir)).filter((f) => IMAGE_EXTENSIONS.has(extname(f).toLowerCase())).sort();
  } catch {
    throw new UsageError(`--images ${imagesDir} is not a readable folder`);
  }
  if (images.length === 0)
    throw new UsageError(`${imagesDir} holds no images (${[...IMAGE_EXTENSIONS].join(' ')}); give the labelled images with --images DIR`);
  const isDir = (await stat(labels).catch(() => undefined))?.isDirectory();
  if (isDir === undefined) throw new UsageError(`--labels ${labels} does not exist: give a folder of YOLO .txt files or a COCO .json file`);
  const out: { image: string; file: string; labels: ImageResult['labels'] }[] = [];
  if (!isDir) {
    const byName = parseCocoLabels(await readFile(labels, 'utf8'), labels, classId);
    const stray = [...byName.keys()].filter((n) => !images.includes(n));
    if (stray.length)
      throw new LabelError(`${labels} lists images not in ${imagesDir}: ${stray.slice(0, 5).join(', ')}${stray.length > 5 ? ', …' : ''}`);
    for (const image of images) {
      const boxes = byName.get(image);
      if (!boxes)
        throw new LabelError(
          `${labels} does not list image ${image} of ${imagesDir}: add it to 'images' (with no annotations if it shows nothing)`,
        );
      out.push({ image, file: join(imagesDir, image), labels: boxes });
    }
    return out;
  }
  const txt = (await readdir(labels)).filter((f) => f.endsWith('.txt') && f !== 'classes.txt');
  const namesFile = join(labels, 'classes.txt');
  const names = await readFile(namesFile, 'utf8').then(
    (t) => parseClassNames(t, namesFile, (n) => classId(n) !== undefined),
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [...classes];
      throw err;
    },
  );
  const stem = (f: string): string => f.slice(0, f.length - extname(f).length);
  const stray = txt.filter((f) => !images.some((i) => stem(i) === stem(f)));
  if (stray.length)
    throw new LabelError(
      `${labels} has label files for images not in ${imagesDir}: ${stray.slice(0, 5).join(', ')}${stray.length > 5 ? ', …' : ''}`,
    );
  for (const image of images) {
    const labelFile = join(labels, `${stem(image)}.txt`);
    const text = await readFile(labelFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT')
        throw new LabelError(
          `no label file ${labelFile} for image ${join(imagesDir, image)}: write an empty one if the image shows none of the labelled classes`,
        );
      throw err;
    });
    const { width, height } = await decodeImage(join(imagesDir, image));
    out.push({
      image,
      file: join(imagesDir, image),
      labels: parseYoloLabels(text, labelFile, { width, height }, names, (n) => classId(n)!),
    });
  }
  return out;
}

/** Runs a model over labelled images and scores it against the labels. */
export async function evaluateModel(
  modelsDir: string,
  model: string,
  opts: { labels: string; images?: string; threshold?: number; iou?: number; classes?: readonly string[]; threads?: number },
) {
  const threshold = opts.threshold ?? 0.35;
  const iou = opts.iou ?? 0.5;
  const classes = resolveModel(loadManifest(modelsDir), model).classes;
  const scope = opts.classes?.map((name) => {
    const i = classes.indexOf(name);
    if (i < 0) throw new UsageError(`--classes: the model has no class '${name}'`);
    return i;
  });
  const imagesDir = opts.images ?? ((await stat(opts.labels).catch(() => undefined))?.isDirectory() ? opts.labels : dirname(opts.labels));
  const set = await readLabelSet(opts.labels, imagesDir, classes);
  const detectors: Detector[] = [];
  try {
    for (const s of [threshold, 0.05]) detectors.push(await openDetector({ modelsDir, model, threads: opts.threads, scoreThreshold: s }));
    const [atThreshold, ranked] = detectors as [Detector, Detector];
    const results: ImageResult[] = [];
    for (const item of set) {
      const img = await decodeImage(item.file);
      const frame = { width: img.width, height: img.height, data: img.data, ts: 0 };
      results.push({
        image: item.image,
        labels: item.labels,
        detections: await atThreshold.detect(frame),
        ranked: await ranked.detect(frame),
      });
    }
    const r = evaluateDetections(results, { iou, ...(scope ? { scope } : {}) });
    const perClass: Record<string, ClassScore> = {};
    for (const [id, c] of Object.entries(r.perClass).sort((x, y) => y[1].labels - x[1].labels || Number(x[0]) - Number(y[0])))
      perClass[classes[Number(id)]!] = c;
    const perImage = results.map((x) => ({ image: x.image, labels: x.labels.length }));
    return { model: atThreshold.model, imagesDir, labelsPath: opts.labels, threshold, iou, ...r, perClass, perImage };
  } finally {
    for (const d of detectors) await d.close();
  }
}

export async function evaluate(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('one model name expected (from the manifest, see edgepatrol model list)');
  if (!values.labels) throw new UsageError('--labels is required: a folder of YOLO .txt files or a COCO .json file');
  const iou = number('iou', values.iou, { min: 0 });
  if (iou !== undefined && !(iou > 0 && iou <= 1)) throw new UsageError(`--iou must be in (0, 1], got '${values.iou}'`);
  const r = await evaluateModel(modelsDir, positionals[0]!, {
    labels: values.labels,
    ...(values.images ? { images: values.images } : {}),
    ...(values.classes
      ? {
          classes: values.classes
            .split(',')
            .map((c) => c.trim())
            .filter(Boolean),
        }
      : {}),
    threshold: number('threshold', values.threshold, { min: 0 }),
    iou,
    threads: number('threads', values.threads, { integer: true, min: 1 }),
  });
  if (values.json) {
    writeJson(io, r);
    return EXIT.ok;
  }
  const f = (v: number): string => v.toFixed(3).padStart(10);
  io.stdout.write(
    `${r.model.name} (${r.model.sha256.slice(0, 12)}) on ${r.images} images of ${r.imagesDir} against ${r.labels} labelled boxes (${r.labelsPath}), ` +
      `score >= ${r.threshold}, IoU >= ${r.iou}, same class\n` +
      `${'class'.padEnd(16)}${'labels'.padStart(7)}${'detections'.padStart(11)}${'matched'.padStart(8)}` +
      `${'precision'.padStart(10)}${'recall'.padStart(10)}${'AP@0.5'.padStart(10)}\n`,
  );
  for (const [name, c] of Object.entries(r.perClass)) {
    io.stdout.write(
      `${name.padEnd(16)}${String(c.labels).padStart(7)}${String(c.detections).padStart(11)}${String(c.truePositives).padStart(8)}` +
        `${f(c.precision)}${f(c.recall)}${f(c.ap50)}\n`,
    );
  }
  io.stdout.write(
    `${'all'.padEnd(16)}${String(r.labels).padStart(7)}${String(r.detections).padStart(11)}${String(r.truePositives).padStart(8)}` +
      `${f(r.precision)}${f(r.recall)}${' '.repeat(10)}\n` +
      `mAP@0.5 ${r.map50.toFixed(4)} (mean over the ${Object.values(r.perClass).filter((c) => c.labels > 0).length} classes with labels)` +
      `   F1 ${r.f1.toFixed(4)}\n`,
  );
  return EXIT.ok;
}
