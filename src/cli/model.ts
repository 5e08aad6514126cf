import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { CALIBRATION_METHODS, type CalibrationMethod } from '../model/calibrate.js';
import { compareDetections, type FrameDetections } from '../model/compare.js';
import { benchModels } from '../model/bench.js';
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
import { classNamesFromMetadata, installModel, onnxInfo } from '../model/registry.js';
import {
  DECODER_KINDS,
  defaultModelsDir,
  loadManifest,
  loadModelSession,
  ModelError,
  openDetector,
  resolveModel,
  type DecoderSpec,
  type Detector,
  type LoadedManifest,
  type ModelSpec,
  type Preprocess,
} from '../vision/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';

const help = `usage: edgepatrol model <command> [options]

  list                      the models in the manifest: name, precision, decoder, input, sha256, source
      --json                  {"default":name,"models":[{"name","default","precision","decoder",
                              "input":{"width","height","type"},"classes":[names],"sha256","file",
                              "source","quantizedFrom","method"}]}; source is the npm package or file
                              (null if none), quantizedFrom/method null for a model that is not quantized
  verify [name…]            check each model's sha256 and run a test inference (default: every model)
      --json                  {"models":[{"name","ok","decoder","outputDims","ms","error"}],"failed":N};
                              a failure also goes to stderr, and the exit code is 1
  bench [name…]             ms/inference of each model on one real frame, models interleaved
      --threads 1,2           intra-op thread counts to measure (default 1,2)
      --runs N                timed runs per model and thread count (default 20)
      --json                  {"runs","node","baseline":name,"results":[{"threads","name","precision","ms",
                              "speedup"}]}; speedup is baseline ms ÷ ms at the same thread count
  add <file.onnx> --decoder nanodet|yolov5|yolov8
                            copy a model into the models folder and write its manifest entry (sha256 computed);
                            it must load and pass a test inference first, so a broken file never replaces a model
      --name NAME             manifest name (default: the file name without .onnx)
      --labels FILE           class names, one a line (default: the ONNX metadata 'names', as Ultralytics writes)
      --resize stretch|letterbox  (default: letterbox for YOLO, stretch for NanoDet)
      --channels rgb|bgr --mean R,G,B --std R,G,B   input normalisation (default YOLO: rgb, 0, 255)
      --strides 8,16,32 --reg-max 10               NanoDet head (defaults shown)
      --default               make it the default model
      --json                  {"name","file","sha256","decoder","classes":[names],"output":[dims],"default"}
  quantize <model> --calib <dir-or-video>
                            static INT8 (QDQ) model from an fp32 model in the manifest, calibrated on real frames
      --frames N              calibration frames (default 40)
      --start S --end S       video only: calibrate on this stretch, in seconds (keep other frames for compare)
      --method minmax|percentile|entropy   activation ranges (default percentile)
      --percentile P          share of |x| the percentile method keeps (default 99.999)
      --keep-float NODE       keep a node float (repeatable; the decoder head is always float)
      --quantize-head         also quantize the convs that feed the decoder head
      --weight-bits 7|8       conv weight precision (default 7: the same results on x86 with and without VNNI
                              and on arm64; 8 saturates on x86 CPUs without VNNI, see docs/decisions.md)
      --out NAME              manifest name of the INT8 model (default: <model>-int8)
      --default               make it the default model
      --json                  {"name","from","file","sha256","bytes","method","calibration":{"path","frames",
                              "start","end"},"quantizedNodes","headNodes":[…],"keptFloat":[…],"activationRanges",
                              "ranges","seconds","default"}
  compare <a> <b> --frames <dir-or-video>
                            a against b's detections as reference (IoU >= 0.5, same class): precision, recall,
                            F1, mAP@0.5 and score drift; use frames that calibration did not see
      --count N               frames (default 60)   --start S --end S   video stretch in seconds
      --threshold S           operating score threshold of both (default 0.35)
      --json                  {"a":{"name","sha256"},"b":{…},"threshold","frames","reference","detections",
                              "truePositives","precision","recall","f1","map50","scoreDrift":{"pairs","mean",
                              "meanAbs","maxAbs"},"perClass":{"<id>":{"class","reference","ap"}},"set":{"path",
                              "start","end"}}
  eval <model> --labels <dir-or-file.json>
                            precision, recall and AP@0.5 per class and mAP@0.5 against human-labelled boxes
      --labels DIR            YOLO labels: one <image name>.txt per image, a line 'class cx cy w h' per box
                              (normalised to the image; class = index in the model's class list, or in the
                              folder's classes.txt if it has one); an empty file = an image with no objects,
                              a missing one is an error
      --labels FILE.json      COCO detection JSON (bbox in pixels, category names the model knows)
      --images DIR            the labelled images (default: the labels' folder)
      --classes a,b,…         classes to score (default: those with at least one label; detections of
                              other classes are not counted, as nobody labelled them)
      --threshold S           operating score threshold for precision and recall (default 0.35)
      --iou X                 IoU a detection needs to match a label (default 0.5)
      --json                  {"model":{"name","sha256"},"imagesDir","labelsPath","threshold","iou","images",
                              "labels","detections","truePositives","precision","recall","f1","map50",
                              "perClass":{"<class>":{"labels","detections","truePositives","precision","recall",
                              "ap50"}},"perImage":[{"image","labels"}]}
common: --models-dir DIR (default: the project's models/), --threads N (default 2, bench excepted)
--json prints one JSON document on stdout and nothing else; errors and warnings go to stderr, exit codes unchanged.
exit codes: 0 done, 1 bad usage, a failed check (verify prints every failure), or a missing or refused model
`;

function number(name: string, value: string | undefined, opts: { integer?: boolean; min?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || n < (opts.min ?? -Infinity)) {
    throw new UsageError(
      `--${name} must be ${opts.integer ? 'an integer' : 'a number'}${opts.min !== undefined ? ` >= ${opts.min}` : ''}, got '${value}'`,
    );
  }
  return n;
}

function triple(name: string, value: string | undefined): [number, number, number] | undefined {
  if (value === undefined) return undefined;
  const parts = value.split(',').map(Number);
  if (parts.length !== 3 || parts.some((p) => !Number.isFinite(p)))
    throw new UsageError(`--${name} takes three numbers R,G,B, got '${value}'`);
  return parts as [number, number, number];
}

const options = {
  'models-dir': { type: 'string' },
  threads: { type: 'string' },
  runs: { type: 'string' },
  decoder: { type: 'string' },
  name: { type: 'string' },
  labels: { type: 'string' },
  resize: { type: 'string' },
  channels: { type: 'string' },
  mean: { type: 'string' },
  std: { type: 'string' },
  strides: { type: 'string' },
  'reg-max': { type: 'string' },
  default: { type: 'boolean' },
  calib: { type: 'string' },
  frames: { type: 'string' },
  count: { type: 'string' },
  start: { type: 'string' },
  end: { type: 'string' },
  method: { type: 'string' },
  'keep-float': { type: 'string', multiple: true },
  'quantize-head': { type: 'boolean' },
  'weight-bits': { type: 'string' },
  percentile: { type: 'string' },
  out: { type: 'string' },
  threshold: { type: 'string' },
  images: { type: 'string' },
  classes: { type: 'string' },
  iou: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type Values = ReturnType<typeof parseCommandArgs<typeof options>>['values'];

const SUBCOMMANDS = ['list', 'verify', 'bench', 'add', 'quantize', 'compare', 'eval'] as const;
type Sub = (typeof SUBCOMMANDS)[number];

export async function modelCommand(argv: string[], io: CommandIo = process): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    if (sub === '--help' || sub === '-h') {
      io.stdout.write(help);
      return EXIT.ok;
    }
    if (sub === undefined) throw new UsageError(`a command is required: ${SUBCOMMANDS.join(', ')}`);
    const { values, positionals } = parseCommandArgs(rest, options, { positionals: true });
    if (values.help) {
      io.stdout.write(help);
      return EXIT.ok;
    }
    const modelsDir = values['models-dir'] ?? defaultModelsDir();
    switch (sub) {
      case 'list':
        return list(modelsDir, values.json ?? false, io);
      case 'verify':
        return await verify(modelsDir, positionals, values.json ?? false, io);
      case 'bench':
        return await bench(modelsDir, positionals, values, io);
      case 'add':
        return await add(modelsDir, positionals, values, io);
      case 'quantize':
        return await quantize(modelsDir, positionals, values, io);
      case 'compare':
        return await compare(modelsDir, positionals, values, io);
      case 'eval':
        return await evaluate(modelsDir, positionals, values, io);
      default:
        throw new UsageError(`unknown command '${sub}'`);
    }
  } catch (err) {
    // ModelError and frame-reading errors already name the file and what to do.
    return reportError(io, SUBCOMMANDS.includes(sub as Sub) ? `model ${sub}` : 'model', err, help, { modelExit: EXIT.failed });
  }
}

/** One manifest entry as `model list --json` prints it; the text table is printed from the same rows. */
export function modelRow(manifest: LoadedManifest, name: string, spec: ModelSpec) {
  const q = spec.quantization as { from?: string; method?: string } | undefined;
  const source = spec.source as { npm?: string; file?: string } | undefined;
  return {
    name,
    default: name === manifest.default,
    precision: spec.precision,
    decoder: spec.decoder.kind,
    input: { width: spec.input.shape[3], height: spec.input.shape[2], type: spec.input.type ?? 'float32' },
    classes: spec.classes,
    sha256: spec.sha256,
    file: resolve(manifest.dir, spec.file),
    source: source?.npm ?? source?.file ?? null,
    quantizedFrom: q?.from ?? null,
    method: q?.method ?? null,
  };
}

function list(modelsDir: string, json: boolean, io: CommandIo): number {
  const manifest = loadManifest(modelsDir);
  const rows = Object.entries(manifest.models).map(([name, spec]) => modelRow(manifest, name, spec));
  if (json) {
    writeJson(io, { default: manifest.default, models: rows });
    return EXIT.ok;
  }
  io.stdout.write(
    `${'name'.padEnd(20)}${'precision'.padEnd(10)}${'decoder'.padEnd(9)}${'input'.padEnd(10)}${'classes'.padEnd(8)}${'sha256'.padEnd(14)}source\n`,
  );
  for (const r of rows) {
    const source = r.quantizedFrom ? `quantized from ${r.quantizedFrom} (${r.method})` : (r.source ?? '');
    io.stdout.write(
      `${(r.name + (r.default ? ' *' : '')).padEnd(20)}${r.precision.padEnd(10)}${r.decoder.padEnd(9)}` +
        `${`${r.input.width}x${r.input.height}`.padEnd(10)}${String(r.classes.length).padEnd(8)}${r.sha256.slice(0, 12).padEnd(14)}${source}\n`,
    );
  }
  io.stdout.write('* default model\n');
  return EXIT.ok;
}

async function verify(modelsDir: string, names: string[], json: boolean, io: CommandIo): Promise<number> {
  const manifest = loadManifest(modelsDir);
  const results = [];
  for (const name of names.length ? names : Object.keys(manifest.models)) {
    const t0 = performance.now();
    try {
      const s = await loadModelSession(resolveModel(manifest, name), 1);
      await s.session.release();
      const r = {
        name,
        ok: true,
        decoder: s.model.spec.decoder.kind,
        outputDims: s.outputDims.map(Number),
        ms: Math.round(performance.now() - t0),
        error: null,
      };
      results.push(r);
      if (!json)
        io.stdout.write(
          `ok      ${name}: sha256 matches, test inference gave [${r.outputDims.join(',')}] for decoder ${r.decoder} (${r.ms} ms)\n`,
        );
    } catch (err) {
      const error = (err as Error).message;
      results.push({ name, ok: false, decoder: null, outputDims: null, ms: Math.round(performance.now() - t0), error });
      if (json) io.stderr.write(`edgepatrol model verify: ${name}: ${error}\n`);
      else io.stdout.write(`FAILED  ${name}: ${error}\n`);
    }
  }
  const failed = results.filter((r) => !r.ok).length;
  if (json) writeJson(io, { models: results, failed });
  return failed ? EXIT.failed : EXIT.ok;
}

async function bench(modelsDir: string, names: string[], values: Values, io: CommandIo): Promise<number> {
  const manifest = loadManifest(modelsDir);
  const chosen = names.length ? names : Object.keys(manifest.models);
  const threads = (values.threads ?? '1,2').split(',').map((t) => number('threads', t, { integer: true, min: 1 })!);
  const runs = number('runs', values.runs, { integer: true, min: 1 }) ?? 20;
  const measured = await benchModels(modelsDir, chosen, threads, runs);
  // Speed against the first model named, at the same thread count.
  const rows = measured.flatMap(({ threads: n, results }) => results.map((r) => ({ threads: n, ...r, speedup: results[0]!.ms / r.ms })));
  if (values.json) {
    writeJson(io, { runs, node: process.version, baseline: chosen[0], results: rows });
    return EXIT.ok;
  }
  for (const r of rows) {
    io.stdout.write(
      `${String(r.threads).padStart(2)} threads  ${r.name.padEnd(20)}${r.precision.padEnd(6)}${r.ms.toFixed(2).padStart(9)} ms/inference` +
        `${r.name === chosen[0] ? '' : `   ${r.speedup.toFixed(2)}x ${chosen[0]}'s speed`}\n`,
    );
  }
  io.stdout.write(`(${runs} interleaved runs per model, medians, node ${process.version}, onnxruntime CPU)\n`);
  return EXIT.ok;
}

function defaultPreprocess(kind: DecoderSpec['kind']): Preprocess {
  return kind === 'nanodet'
    ? { resize: 'stretch', channels: 'bgr', mean: [103.53, 116.28, 123.675], std: [57.375, 57.12, 58.395] }
    : { resize: 'letterbox', pad: 114, channels: 'rgb', mean: [0, 0, 0], std: [255, 255, 255] };
}

async function add(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('one .onnx file expected');
  const file = positionals[0]!;
  const kind = values.decoder;
  if (!kind || !(DECODER_KINDS as readonly string[]).includes(kind))
    throw new UsageError(`--decoder must be one of ${DECODER_KINDS.join(', ')}`);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new Error(`cannot read model file ${file}: ${(err as Error).message}`);
  }
  let info;
  try {
    info = onnxInfo(bytes);
  } catch (err) {
    throw new ModelError(`${file} is not an ONNX model: ${(err as Error).message}`, file);
  }
  const input = info.inputs[0];
  const output = info.outputs[0];
  if (info.inputs.length !== 1 || !input || input.dims.length !== 4 || (input.dims[1] !== null && input.dims[1] !== 3)) {
    throw new ModelError(`${file}: expected one image input [1,3,H,W], found ${JSON.stringify(info.inputs)}`, file);
  }
  const h = input.dims[2] ?? 640;
  const w = input.dims[3] ?? 640;
  let classes: string[] | undefined;
  if (values.labels) {
    classes = (await readFile(values.labels, 'utf8'))
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  } else {
    classes = classNamesFromMetadata(info.metadata);
    if (!classes) throw new UsageError(`${file} has no class names in its metadata ('names'); give them with --labels FILE (one a line)`);
  }
  if (!output) throw new ModelError(`${file} has no output`, file);
  // The real output dims, from one inference: exports often leave the box count symbolic.
  let dims: number[];
  const probe = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const out = (await probe.run({ [input.name]: new ort.Tensor('float32', new Float32Array(3 * w * h), [1, 3, h, w]) }))[output.name]!;
    dims = out.dims.map(Number);
  } catch (err) {
    throw new ModelError(`${file} failed a test inference on a ${w}x${h} input: ${(err as Error).message}`, file);
  } finally {
    await probe.release();
  }
  const decoder: DecoderSpec =
    kind === 'nanodet'
      ? {
          kind,
          strides: values.strides ? values.strides.split(',').map((s) => number('strides', s, { integer: true, min: 1 })!) : [8, 16, 32],
          regMax: number('reg-max', values['reg-max'], { integer: true, min: 1 }) ?? 10,
          numClasses: classes.length,
        }
      : { kind: kind as 'yolov5' | 'yolov8', numClasses: classes.length };
  const base = defaultPreprocess(decoder.kind);
  const resize = values.resize ?? base.resize;
  if (resize !== 'stretch' && resize !== 'letterbox') throw new UsageError(`--resize must be stretch or letterbox, got '${resize}'`);
  const channels = values.channels ?? base.channels;
  if (channels !== 'rgb' && channels !== 'bgr') throw new UsageError(`--channels must be rgb or bgr, got '${channels}'`);
  const preprocess: Preprocess = {
    ...base,
    resize,
    channels,
    mean: triple('mean', values.mean) ?? base.mean,
    std: triple('std', values.std) ?? base.std,
  };
  if (resize === 'stretch') delete preprocess.pad;
  const name = values.name ?? basename(file).replace(/\.onnx$/i, '');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new UsageError(`model name '${name}' must be letters, digits, '.', '_' or '-'`);
  const shape = dims.length === 3 ? (dims as [number, number, number]) : undefined;
  if (!shape)
    throw new ModelError(
      `${file}: output '${output.name}' has shape [${dims.join(',')}]; every supported decoder reads a 3-d output`,
      file,
    );
  const entry = {
    format: 'onnx' as const,
    precision: 'fp32',
    input: { name: input.name, shape: [1, 3, h, w] as [1, 3, number, number], layout: 'NCHW' as const },
    output: { name: output.name, shape: shape as [1, number, number] },
    preprocess,
    decoder,
    classes,
    source: {
      file: basename(file),
      ...(info.metadata.description ? { description: info.metadata.description } : {}),
      addedBy: 'edgepatrol model add',
    },
  };
  const done = await installModel({ modelsDir, name, bytes, entry, makeDefault: values.default ?? false });
  if (values.json) {
    writeJson(io, {
      name,
      file: done.path,
      sha256: done.sha256,
      decoder: decoder.kind,
      classes,
      output: dims,
      default: values.default ?? false,
    });
    return EXIT.ok;
  }
  io.stdout.write(
    `added ${name}: ${done.path} (sha256 ${done.sha256}), decoder ${decoder.kind}, ${classes.length} classes, ` +
      `output [${dims.join(',')}]${values.default ? ', now the default' : ''}\n`,
  );
  return EXIT.ok;
}

function frameSet(path: string | undefined, count: number, values: Values, what: string): FrameSet {
  if (!path) throw new UsageError(`${what} is required: a folder of images or a video file`);
  const start = number('start', values.start, { min: 0 });
  const end = number('end', values.end, { min: 0 });
  return { path, frames: count, ...(start !== undefined ? { start } : {}), ...(end !== undefined ? { end } : {}) };
}

async function quantize(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
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

async function compare(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
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

async function evaluate(modelsDir: string, positionals: string[], values: Values, io: CommandIo): Promise<number> {
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
