import * as ort from 'onnxruntime-node';
import { createDecoder, type OutputDecoder } from './decoders.js';
import {
  expectedOutput, loadManifest, outputFits, readVerifiedModel, resolveModel, ModelError, type Preprocess, type ResolvedModel,
} from './manifest.js';
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

/** A verified model loaded into an onnxruntime CPU session, its output checked; the raw layer under `Detector`. */
export interface ModelSession {
  model: ResolvedModel;
  session: ort.InferenceSession;
  inputWidth: number;
  inputHeight: number;
  /** Output dims the test inference produced. */
  outputDims: number[];
  /** The manifest's decoder bound to this model's input size and output dims. */
  decode: OutputDecoder;
}

/** Resolves a model in a manifest, then loads it as `loadModelSession` does. */
export async function openModelSession(opts: Pick<DetectorOptions, 'model' | 'modelsDir' | 'threads'> = {}): Promise<ModelSession> {
  return loadModelSession(resolveModel(loadManifest(opts.modelsDir), opts.model), opts.threads);
}

/**
 * Verifies the file's sha256, loads it, and runs one test inference, refusing (ModelError naming the file)
 * a model that does not load, lacks the declared input or output, or whose output does not fit its decoder.
 */
export async function loadModelSession(model: ResolvedModel, threads = 2): Promise<ModelSession> {
  const bytes = await readVerifiedModel(model);
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
  try {
    const { input, output, decoder } = model.spec;
    if (!session.inputNames.includes(input.name) || !session.outputNames.includes(output.name)) {
      throw new ModelError(
        `model file ${model.path} has inputs [${session.inputNames.join(', ')}] and outputs [${session.outputNames.join(', ')}], ` +
          `but its manifest names input '${input.name}' and output '${output.name}'; rebuild it with scripts/setup.sh`,
        model.path,
      );
    }
    const [, , height, width] = input.shape;
    let dims: number[];
    try {
      const zeros = new ort.Tensor('float32', new Float32Array(3 * width * height), [...input.shape]);
      const out = (await session.run({ [input.name]: zeros }, [output.name]))[output.name]!;
      if (out.type !== 'float32') throw new Error(`output '${output.name}' is ${out.type}, expected float32`);
      dims = out.dims.map(Number);
    } catch (err) {
      throw new ModelError(`model file ${model.path} failed its test inference on a ${width}x${height} input: ${(err as Error).message}`, model.path);
    }
    const expected = expectedOutput(decoder, width, height);
    if (!outputFits(expected.shape, dims) || dims.join() !== output.shape.join()) {
      throw new ModelError(
        `model file ${model.path} (model '${model.name}', decoder ${decoder.kind}) outputs '${output.name}' of shape [${dims.join(',')}]; ` +
          `its manifest declares [${output.shape.join(',')}] and the decoder expects ${expected.text}. ` +
          'Refusing to load it: add the model again with the decoder that matches its export (edgepatrol model add --decoder …).',
        model.path,
      );
    }
    return { model, session, inputWidth: width, inputHeight: height, outputDims: dims, decode: createDecoder(decoder, width, height, dims) };
  } catch (err) {
    await session.release();
    throw err;
  }
}

export async function openDetector(opts: DetectorOptions = {}): Promise<Detector> {
  const { model, session, inputWidth, inputHeight, decode } = await openModelSession(opts);
  const scoreThreshold = opts.scoreThreshold ?? 0.35;
  const iouThreshold = opts.iouThreshold ?? 0.5;
  const maxDetections = opts.maxDetections ?? 100;
  const { input, output } = model.spec;
  const pre = new Preprocessor(inputWidth, inputHeight, opts.preprocess ?? model.spec.preprocess);
  // The tensor wraps the preprocessor's buffer: each frame is written in place and run without a copy.
  const tensor = new ort.Tensor('float32', pre.output, [...input.shape]);
  const candidates = new Candidates();
  const classes = model.classes;

  async function detectNow(frame: RgbFrame): Promise<Detection[]> {
    pre.run(frame);
    const result = await session.run({ [input.name]: tensor });
    const out = result[output.name];
    if (!out || out.type !== 'float32') throw new Error(`model ${model.name}: output '${output.name}' missing or not float32`);
    decode(out.data as Float32Array, scoreThreshold, candidates);
    const kept = nms(candidates, iouThreshold, maxDetections);
    const { scaleX, scaleY, padX, padY } = pre.mapping;
    const clip = (v: number, max: number): number => Math.min(max, Math.max(0, v));
    const b = candidates.boxes;
    return kept.map((i) => {
      const classId = candidates.classIds[i]!;
      return {
        class: classes[classId] ?? `class${classId}`,
        classId,
        score: candidates.scores[i]!,
        box: [
          clip((b[i * 4]! - padX) / scaleX, frame.width), clip((b[i * 4 + 1]! - padY) / scaleY, frame.height),
          clip((b[i * 4 + 2]! - padX) / scaleX, frame.width), clip((b[i * 4 + 3]! - padY) / scaleY, frame.height),
        ],
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
