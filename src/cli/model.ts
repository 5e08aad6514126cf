import { readFile } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { benchModels } from '../model/bench.js';
import { classNamesFromMetadata, installModel, onnxInfo } from '../model/registry.js';
import {
  DECODER_KINDS,
  defaultModelsDir,
  loadManifest,
  loadModelSession,
  ModelError,
  resolveModel,
  type DecoderSpec,
  type LoadedManifest,
  type ModelSpec,
  type Preprocess,
} from '../vision/index.js';
import { EXIT, parseCommandArgs, reportError, UsageError, writeJson, type CommandIo } from './io.js';
import { number, options, triple, type Values } from './model-args.js';
import { compare, evaluate, quantize } from './model-quality.js';
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
