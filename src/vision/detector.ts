import * as ort from 'onnxruntime-node';
import { loadManifest, readVerifiedModel, resolveModel, ModelError, type Preprocess, type ResolvedModel } from './manifest.js';
import { decodeNanodet, type NanodetLayout } from './nanodet.js';
import { Candidates, nms } from './nms.js';
import { Preprocessor } from './preprocess.js';
import type { Detection, RgbFrame } from './types.js';

export interface DetectorOptions {
  /** Model name in the manifest; default: the manifest's `default`. */
  model?: string;
  /** Folder holding manifest.json and the model files; default: the project's models/. */
  modelsDir?: string;
  /** ORT intra-op threads (fixed, so the detector's CPU share is predictable next to ffmpeg); default 2. */
  threads?: number;
  /** Minimum class score kept; default 0.35. */
  scoreThreshold?: number;
  /** Class-wise NMS IoU threshold; default 0.5. */
  iouThreshold?: number;
  /** At most this many detections per frame, best first; default 100. */
  maxDetections?: number;
  /** Overrides the manifest's preprocessing (used to measure alternatives, see bench/detect.ts). */
  preprocess?: Preprocess;
}

export interface Detector {
  model: { name: string; sha256: string };
  detect(frame: RgbFrame): Promise<Detection[]>;
  close(): Promise<void>;
}

/** A verified model loaded into an onnxruntime CPU session; the raw layer under `Detector`. */
export interface ModelSession {
  model: ResolvedModel;
  session: ort.InferenceSession;
  layout: NanodetLayout;
}

/** Resolves, verifies (sha256) and loads a model; ModelError names the file when any step fails. */
export async function openModelSession(opts: Pick<DetectorOptions, 'model' | 'modelsDir' | 'threads'> = {}): Promise<ModelSession> {
  const manifest = loadManifest(opts.modelsDir);
  const model = resolveModel(manifest, opts.model);
  const bytes = await readVerifiedModel(model);
  const threads = opts.threads ?? 2;
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: ['cpu'],
      intraOpNumThreads: threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
  } catch (err) {
    throw new ModelError(`onnxruntime cannot load model file ${model.path}: ${(err as Error).message}; rebuild it with scripts/setup.sh`, model.path);
  }
  const { input, output, decoder } = model.spec;
  if (!session.inputNames.includes(input.name) || !session.outputNames.includes(output.name)) {
    await session.release();
    throw new ModelError(
      `model file ${model.path} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], ` +
        `but its manifest names input '${input.name}' and output '${output.name}'; rebuild it with scripts/setup.sh`,
      model.path,
    );
  }
  const layout: NanodetLayout = {
    inputWidth: input.shape[3],
    inputHeight: input.shape[2],
    strides: decoder.strides,
    regMax: decoder.regMax,
    numClasses: decoder.numClasses,
  };
  return { model, session, layout };
}

export async function openDetector(opts: DetectorOptions = {}): Promise<Detector> {
  const { model, session, layout } = await openModelSession(opts);
  const scoreThreshold = opts.scoreThreshold ?? 0.35;
  const iouThreshold = opts.iouThreshold ?? 0.5;
  const maxDetections = opts.maxDetections ?? 100;
  const { input, output } = model.spec;
  const pre = new Preprocessor(layout.inputWidth, layout.inputHeight, opts.preprocess ?? model.spec.preprocess);
  // The tensor wraps the preprocessor's buffer: each frame is written in place and run without a copy.
  const tensor = new ort.Tensor('float32', pre.output, [...input.shape]);
  const candidates = new Candidates();
  const classes = model.classes;

  async function detectNow(frame: RgbFrame): Promise<Detection[]> {
    pre.run(frame);
    const result = await session.run({ [input.name]: tensor });
    const out = result[output.name];
    if (!out || out.type !== 'float32') throw new Error(`model ${model.name}: output '${output.name}' missing or not float32`);
    decodeNanodet(out.data as Float32Array, layout, scoreThreshold, candidates);
    const kept = nms(candidates, iouThreshold, maxDetections);
    const sx = frame.width / layout.inputWidth;
    const sy = frame.height / layout.inputHeight;
    const b = candidates.boxes;
    return kept.map((i) => {
      const classId = candidates.classIds[i]!;
      return {
        class: classes[classId] ?? `class${classId}`,
        classId,
        score: candidates.scores[i]!,
        box: [b[i * 4]! * sx, b[i * 4 + 1]! * sy, b[i * 4 + 2]! * sx, b[i * 4 + 3]! * sy],
      };
    });
  }

  // One frame at a time: the input buffer and candidates are shared, and ORT is given all its threads.
  let queue: Promise<unknown> = Promise.resolve();
  let closed = false;
  return {
    model: { name: model.name, sha256: model.spec.sha256 },
    detect(frame) {
      if (closed) return Promise.reject(new Error(`detector for model ${model.name} is closed`));
      const next = queue.then(() => detectNow(frame));
      queue = next.catch(() => undefined);
      return next;
    },
    async close() {
      if (closed) return;
      closed = true;
      await queue;
      await session.release();
    },
  };
}
